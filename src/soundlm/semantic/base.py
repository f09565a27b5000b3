"""The semantic tokenizer contract, beside the codec's (`soundlm.codec.base.AcousticTokenizer`).

Shapes: audio is [B, 1, S] float32 at `sample_rate`; ids are [B, T] int64 in
[0, vocab_size), T frames at `frame_rate` Hz. `soundlm.audio_tokenizer.AudioTokenizer`,
the pipeline and the token store see only this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class SemanticTokenizer(Protocol):
    """Audio -> discrete semantic units (AudioLM's w2v-BERT k-means ids, GSLM's HuBERT units)."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def frame_rate(self) -> float:
        """Ids per second of audio."""

    @property
    def vocab_size(self) -> int: ...

    def num_frames(self, num_samples: int) -> int:
        """Ids `encode` returns per item for `num_samples` input samples."""

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, 1, S] float audio at `sample_rate` -> [B, T] int64 ids."""

    def describe(self) -> dict:
        """JSON-able description (kind, rates, sizes) for token store manifests."""

    def save(self, folder: str | Path) -> Path:
        """Write a folder `load_semantic_tokenizer` reads back."""
