"""The acoustic tokenizer contract: every codec backend implements it.

Shapes: audio is [B, C, S] float32 in [-1, 1]; codes are [B, K, T] int64, K codebooks
(coarsest first, residual order), T frames at `frame_rate` Hz.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class AcousticTokenizer(nn.Module, ABC):
    """A neural audio codec seen as a tokenizer (audiocraft's CompressionModel idea)."""

    @property
    @abstractmethod
    def sample_rate(self) -> int: ...

    @property
    @abstractmethod
    def channels(self) -> int: ...

    @property
    @abstractmethod
    def frame_rate(self) -> float:
        """Code frames per second of audio."""

    @property
    @abstractmethod
    def total_codebooks(self) -> int:
        """Codebooks the model has (the most it can emit)."""

    @property
    @abstractmethod
    def num_codebooks(self) -> int:
        """Codebooks `encode` emits now (see `set_num_codebooks`)."""

    @abstractmethod
    def set_num_codebooks(self, n: int) -> None:
        """Use only the first n codebooks: a lower bitrate from the same model."""

    @property
    @abstractmethod
    def codebook_size(self) -> int: ...

    @abstractmethod
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, C, S] float -> [B, K, T] int64 codes."""

    @abstractmethod
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, K', T] int64 (K' <= total_codebooks) -> [B, C, S] float."""

    @abstractmethod
    def describe(self) -> dict:
        """JSON-able description (backend, source, rates) for token store manifests."""

    @property
    def bitrate(self) -> float:
        """Bits per second at the current number of codebooks."""
        import math

        return self.frame_rate * self.num_codebooks * math.log2(self.codebook_size)

    def num_frames(self, num_samples: int) -> int:
        """Frames `encode` returns for `num_samples` samples (ceil; inputs are right-padded)."""
        import math

        return math.ceil(num_samples * self.frame_rate / self.sample_rate)

    def _check_audio(self, audio: torch.Tensor) -> None:
        if audio.dim() != 3:
            raise ValueError(f"audio must be [B, C, S], got shape {tuple(audio.shape)}")
        if audio.shape[1] != self.channels:
            raise ValueError(f"codec expects {self.channels} channel(s), got {audio.shape[1]}; "
                             "mix down or pick channels first")

    def _check_codes(self, codes: torch.Tensor) -> None:
        if codes.dim() != 3:
            raise ValueError(f"codes must be [B, K, T], got shape {tuple(codes.shape)}")
        if codes.shape[1] > self.total_codebooks:
            raise ValueError(f"got {codes.shape[1]} codebooks, the codec has {self.total_codebooks}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError(f"codes must lie in [0, {self.codebook_size}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
