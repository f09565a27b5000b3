"""MusicLM (Agostinelli et al. 2023): text -> music over AudioLM's stages, conditioned through MuLan.

    caption --MuLan text tower--> embedding --RVQ--> Q condition ids (`MuLan.condition_tokens`)
            --conditioned semantic LM--> semantic ids --conditioned coarse LM--> coarse codes
            --fine LM--> fine codes --codec decode--> waveform

The stages were trained on the condition ids of MuLan's *audio* embedding of each recording
(`soundlm tokenize --mulan`); at inference the *text* embedding of the caption stands in for it,
as in the paper: the joint embedding space is what lets text take audio's place. (A MuLan with
`condition_from` "text" instead gives the caption's own tokens as the ids, at training and at
inference: `MuLan.caption_condition`, `soundlm recipe musiclm-tiny --condition-from text`.) Condition ids
of a fraction of the training crops were NULL, so each conditioned stage is also the
unconditional model, and classifier-free guidance (`guidance`, MusicLM: 3) mixes the two in
one batched forward per step (`soundlm.lm.generate`).

The stage loops, batching, seeds and decoding are `AudioLMPipeline`'s: this class turns
captions into condition ids and hands `generate_batch` one request per caption.

A music bundle is an AudioLM bundle (semantic/ coarse/ fine/ semantic_tokenizer/ codec/)
plus `mulan/` (the MuLan folder, `MuLan.save_pretrained`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from soundlm.pipeline import AudioLMPipeline, AudioLMSampling, BatchRequest

if TYPE_CHECKING:
    from soundlm.music.mulan import MuLan

MULAN_DIR = "mulan"
DEFAULT_MUSIC_MODEL_NAME = "musiclm-tiny"  # text to music; "music-tiny" is the unconditioned continuation recipe
DEFAULT_GUIDANCE = 3.0  # MusicLM's classifier-free guidance scale
REQUEST_JSON = "music.json"  # what a music request asked for, beside its wavs (`soundlm music`, `soundlm serve`)
MUSIC_BUNDLE_FIX = ("pass a music bundle: an AudioLM bundle whose semantic and coarse stages were trained on a "
                    "store tokenized with `soundlm tokenize --mulan`, plus that MuLan as mulan/ "
                    "(MusicLMPipeline.save_bundle writes one)")


class MusicLMPipeline:
    """Captions -> music: a MuLan (the contract of `soundlm.music.mulan`) over a conditioned AudioLM pipeline."""

    def __init__(self, audiolm: AudioLMPipeline, mulan: MuLan, where: str | Path = "the model"):
        self.audiolm = audiolm
        self.mulan = mulan
        _check_conditioned(audiolm, mulan, where)

    @classmethod
    def from_bundle(cls, spec: str | Path | None = None, device: torch.device | str | None = None,
                    mulan: MuLan | None = None) -> "MusicLMPipeline":
        """Load a music bundle (a folder, or a hub id; None: the music model shipped with soundlm).

        mulan: an already loaded MuLan instead of the bundle's mulan/ folder.
        """
        from soundlm.pretrained import load_pipeline

        folder = resolve_music_model(spec)
        mulan = mulan if mulan is not None else music_mulan(folder, device)
        return cls(load_pipeline(folder, device=device), mulan, where=folder)

    def save_bundle(self, folder: str | Path) -> Path:
        """The AudioLM bundle plus mulan/, written atomically."""
        from soundlm.fileio import atomic_dir

        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            self.audiolm.write_bundle(tmp)
            self.mulan.save_pretrained(tmp / MULAN_DIR)
        return folder

    @property
    def sample_rate(self) -> int:
        return self.audiolm.sample_rate

    def quantize(self, mode: str) -> "MusicLMPipeline":
        """Run the stage LMs int8 / bf16 (see `AudioLMPipeline.quantize`)."""
        self.audiolm.quantize(mode)
        return self

    @torch.inference_mode()
    def condition_tokens(self, captions: list[str]) -> torch.Tensor:
        """Captions -> condition ids [B, Q] in [0, C): the quantized MuLan text embeddings (or the captions'
        tokens, for a MuLan that conditions on text: `MuLan.caption_condition`)."""
        if not captions or any(not isinstance(c, str) or not c.strip() for c in captions):
            raise ValueError(f"captions must be non-empty strings, got {captions!r}; describe the music, "
                             "e.g. \"a calm piano piece in C major\"")
        return self.mulan.caption_condition(list(captions)).long()

    def generate(self, captions: list[str], seconds: float, num_samples: int = 1,
                 guidance: float = DEFAULT_GUIDANCE, sampling: AudioLMSampling | None = None, seed: int = 0,
                 progress: bool = False) -> list[list[np.ndarray]]:
        """`num_samples` waveforms [C, round(seconds * sample_rate)] per caption.

        Caption j samples with seed `seed + j`; all captions share each stage's generation calls,
        and each gets what it would get alone (`AudioLMPipeline.generate_batch`). guidance: the
        classifier-free guidance scale of the conditioned stages (1: the conditional model alone).
        """
        sampling = replace(sampling or AudioLMSampling(), guidance=guidance)
        return self.audiolm.generate_batch(self.requests(captions, seconds, num_samples, seed), sampling,
                                           progress=progress)

    def requests(self, captions: list[str], seconds: float, num_samples: int = 1,
                 seed: int = 0) -> list[BatchRequest]:
        """`generate`'s requests to the AudioLM pipeline, one per caption (caption j: seed + j): several music
        requests share one `generate_batch` call by concatenating their lists."""
        conditions = self.condition_tokens(captions).to(self.audiolm.device)  # [B, Q]
        return [BatchRequest(seconds=seconds, num_samples=num_samples, seed=seed + j, condition=cond)
                for j, cond in enumerate(conditions)]

    def request_record(self, captions: list[str], seconds: float, num_samples: int, guidance: float, seed: int,
                       model: str | None, sampling: dict) -> dict:
        """music.json: what was asked (`sampling`: the sampling settings by option name), the condition ids of
        the captions, and the files `music_files` names."""
        return {"captions": list(captions), "seconds": seconds, "num_samples": num_samples, "guidance": guidance,
                "seed": seed, "model": model, "sample_rate": self.sample_rate, "quantize": self.audiolm.quantized,
                "sampling": sampling, "condition_tokens": self.condition_tokens(captions).tolist(),
                "files": music_files(captions, num_samples, seed)}


def music_files(captions: list[str], num_samples: int, seed: int) -> list[dict]:
    """The wavs of a music request in `generate`'s order: music_CC_SSS.wav is caption CC's sample SSS."""
    return [{"file": f"music_{j:02d}_{i:03d}.wav", "caption": caption, "sample": i, "seed": seed + j}
            for j, caption in enumerate(captions) for i in range(num_samples)]


def resolve_music_model(spec: str | Path | None) -> Path:
    """A music bundle's folder: `spec` as `pretrained.resolve_model` reads it; None: the shipped music model."""
    from soundlm.pretrained import ASSETS_DIR, resolve_model

    if spec is None or str(spec) == DEFAULT_MUSIC_MODEL_NAME:
        folder = ASSETS_DIR / DEFAULT_MUSIC_MODEL_NAME
        if not folder.is_dir():
            raise FileNotFoundError(f"soundlm ships no music model ({folder} does not exist); {MUSIC_BUNDLE_FIX} "
                                    "with --model")
        return folder
    return resolve_model(spec)


def music_mulan(folder: str | Path, device: torch.device | str | None = None) -> MuLan:
    """The MuLan of the music bundle `folder` (its mulan/ folder)."""
    folder = Path(folder)
    if not (folder / MULAN_DIR).is_dir():
        raise FileNotFoundError(f"{folder} has no {MULAN_DIR}/ folder, so captions cannot become condition "
                                f"ids; {MUSIC_BUNDLE_FIX}")
    from soundlm.music.mulan import load_mulan

    return load_mulan(folder / MULAN_DIR, device=device or "cpu")


def _check_conditioned(audiolm: AudioLMPipeline, mulan: MuLan, where: str | Path) -> None:
    """Refuse stages that take no condition ids, or ids of another shape than this MuLan makes."""
    bare = [s.name for s in (audiolm.semantic, audiolm.coarse) if not s.meta.conditioned]
    if bare:
        raise ValueError(f"{where}: its {' and '.join(bare)} stage{'s' if len(bare) > 1 else ''} take no condition "
                         f"ids (trained on a store without them); {MUSIC_BUNDLE_FIX}")
    q, c = audiolm.condition_shape
    mine = (int(mulan.num_condition_tokens), int(mulan.condition_codebook_size))
    if mine != (q, c):
        raise ValueError(f"{where}: the stages read {q} condition ids of {c}, but the MuLan makes {mine[0]} of "
                         f"{mine[1]}; load the MuLan the store was tokenized with")
