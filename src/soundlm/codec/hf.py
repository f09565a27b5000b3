"""Hugging Face codecs (EnCodec, DAC, Mimi) behind the `AcousticTokenizer` contract.

The model class is chosen from the checkpoint's `config.json` `model_type`. Inputs are
right-padded to a hop multiple, so every backend returns ceil(S / hop) frames. The number of
codebooks maps to each model's own knob: EnCodec's bandwidth, DAC's `n_quantizers`, Mimi's
`num_quantizers`.

EnCodec runs on the whole signal (the 24 kHz model's path). The 48 kHz model's per-chunk
loudness scales are not part of the `[B, K, T]` codes, so with it `decode` returns audio at
the normalised loudness the model was trained on, not the input's.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from soundlm.codec.base import AcousticTokenizer

SUPPORTED_MODEL_TYPES = ("encodec", "dac", "mimi")


class HFCodec(AcousticTokenizer):
    """A transformers `EncodecModel`, `DacModel` or `MimiModel` seen as a tokenizer."""

    def __init__(self, model: torch.nn.Module, source: str | None = None):
        super().__init__()
        model_type = getattr(model.config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(f"unsupported codec model_type {model_type!r}; soundlm wraps {SUPPORTED_MODEL_TYPES}")
        self.model = model.eval()
        self.model_type = model_type
        self.source = source
        cfg = model.config
        if model_type == "encodec":
            self._hop = math.prod(cfg.upsampling_ratios)
            self._total = model.quantizer.get_num_quantizers_for_bandwidth(max(cfg.target_bandwidths))
            self._channels = cfg.audio_channels
        elif model_type == "dac":
            self._hop = int(cfg.hop_length)
            self._total = int(cfg.n_codebooks)
            self._channels = 1
        else:
            self._hop = int(cfg.frame_size)
            self._total = int(cfg.num_quantizers)
            self._channels = cfg.audio_channels
        self._num_codebooks = self._total

    @classmethod
    def from_pretrained(cls, spec: str | Path, device: str | torch.device | None = None) -> HFCodec:
        """Load from a hub id or a local folder holding a transformers `config.json`."""
        from transformers import AutoConfig, DacModel, EncodecModel, MimiModel

        try:
            config = AutoConfig.from_pretrained(str(spec))
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"{spec}: not a soundlm codec folder, and transformers cannot load it "
                                    f"({e}); pass a codec folder, a run folder, or a hub id such as "
                                    "facebook/encodec_24khz") from e
        classes = {"encodec": EncodecModel, "dac": DacModel, "mimi": MimiModel}
        if config.model_type not in classes:
            raise ValueError(f"{spec}: model_type {config.model_type!r} is not a codec soundlm can wrap; "
                             f"use one of {SUPPORTED_MODEL_TYPES}")
        model = classes[config.model_type].from_pretrained(str(spec))
        codec = cls(model, source=str(spec))
        return codec.to(device) if device is not None else codec

    # --- contract -------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.model.config.sampling_rate)

    @property
    def channels(self) -> int:
        return int(self._channels)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self._hop

    @property
    def total_codebooks(self) -> int:
        return self._total

    @property
    def num_codebooks(self) -> int:
        return self._num_codebooks

    def set_num_codebooks(self, n: int) -> None:
        low = int(self.model.config.num_semantic_quantizers) if self.model_type == "mimi" else 1
        if not low <= n <= self._total:
            raise ValueError(f"num_codebooks must be in [{low}, {self._total}] for this {self.model_type} model, "
                             f"got {n}")
        self._num_codebooks = n

    @property
    def codebook_size(self) -> int:
        return int(self.model.config.codebook_size)

    def _encodec_bandwidth(self) -> float:
        """Smallest target bandwidth whose quantizer count covers the codebooks asked for."""
        q = self.model.quantizer
        for bw in sorted(self.model.config.target_bandwidths):
            if q.get_num_quantizers_for_bandwidth(bw) >= self._num_codebooks:
                return bw
        return max(self.model.config.target_bandwidths)

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        self._check_audio(audio)
        extra = (-audio.shape[-1]) % self._hop
        x = F.pad(audio.float(), (0, extra))  # [B, C, S'], S' a hop multiple
        n = self._num_codebooks
        if self.model_type == "encodec":
            # Whole-signal path (as the 24 kHz model runs): residual codes are prefix-stable, so
            # encoding at a covering bandwidth and keeping the first n equals encoding with n.
            z = self.model.encoder(x)  # [B, D, T]
            codes = self.model.quantizer.encode(z, self._encodec_bandwidth())  # [K, B, T]
            codes = codes.transpose(0, 1)[:, :n]
        elif self.model_type == "dac":
            codes = self.model.encode(x, n_quantizers=n).audio_codes[:, :n]
        else:
            codes = self.model.encode(x, num_quantizers=n).audio_codes
        return codes.long()  # [B, K, T]

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        self._check_codes(codes)
        codes = codes.long()
        if self.model_type == "encodec":
            emb = self.model.quantizer.decode(codes.transpose(0, 1))  # [B, D, T]
            audio = self.model.decoder(emb)
        elif self.model_type == "dac":
            audio = self.model.decode(audio_codes=codes).audio_values
        else:
            audio = self.model.decode(codes).audio_values
        if audio.dim() == 2:  # DAC returns [B, S]
            audio = audio[:, None]
        return audio  # [B, C, T * hop]

    def describe(self) -> dict:
        return {"backend": f"hf-{self.model_type}", "source": self.source, "sample_rate": self.sample_rate,
                "channels": self.channels, "frame_rate": self.frame_rate, "num_codebooks": self.num_codebooks,
                "total_codebooks": self.total_codebooks, "codebook_size": self.codebook_size,
                "bitrate": self.bitrate}
