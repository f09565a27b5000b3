"""Acoustic codecs behind one contract, and `load_codec` to get one from a string."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from soundlm.codec.base import AcousticTokenizer
from soundlm.codec.hf import HFCodec
from soundlm.codec.soundstream import (CONFIG_TYPE, CodecConfig, SoundStreamCodec, codec_16k_fast,
                                       codec_16k_small, codec_16k_tiny, codec_24k_base, codec_preset)
from soundlm.devices import default_device

__all__ = ["AcousticTokenizer", "HFCodec", "CodecConfig", "SoundStreamCodec", "codec_16k_tiny", "codec_16k_small",
           "codec_16k_fast", "codec_24k_base", "codec_preset", "load_codec", "resolve_codec_folder"]


def _is_soundlm_folder(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("type") == CONFIG_TYPE
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def resolve_codec_folder(path: Path) -> Path | None:
    """Our codec folder for `path`: itself, RUN/final, or the run's latest checkpoint; else None."""
    from soundlm.checkpoint import resolve_model_folder

    return resolve_model_folder(path, _is_soundlm_folder)


def load_codec(spec: str | Path, device: str | torch.device | None = None) -> AcousticTokenizer:
    """Load a codec from our folder / run folder, a local HF folder, or an HF hub id.

    The model is returned in eval mode on `device` (default: CUDA when available).
    """
    device = default_device(device)
    path = Path(spec)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{spec}: is a file; pass the codec folder that holds config.json")
        folder = resolve_codec_folder(path)
        if folder is not None:
            return SoundStreamCodec.from_pretrained(folder, device=device)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"{spec}: no config.json here, no RUN/final and no checkpoints; pass a codec "
                                    "folder, a finished `soundlm train codec` run, or a hub id")
    elif str(spec).startswith((".", "/", "~")) or str(spec).count("/") > 1:
        raise FileNotFoundError(f"{spec}: no such folder; pass an existing codec folder, a run folder, "
                                "or a Hugging Face hub id such as facebook/encodec_24khz")
    return HFCodec.from_pretrained(str(spec), device=device).eval()
