"""MusicRL's self-generated samples from MusicLM: `soundlm train prefer --self N --sampler musiclm`.

Each caption becomes condition ids (the bundle's MuLan, as `soundlm music` makes them), the
whole MusicLM pipeline generates `num_samples` clips of the tuned stage's window length, and each
sample carries the ids the tuned stage drew, laid out as that stage reads them (BOS, the
caption's condition ids, its context, its own ids: `music.pairs.window_sequence`), with the
loss mask on its own ids, beside the decoded audio the rewards hear. A delay-pattern stage's sample
is its training example of that window (delayed codes, targets, prefix: `DelaySequence`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from soundlm.music.pairs import GeneratedSample, window_sequence
from soundlm.music.pipeline import DEFAULT_GUIDANCE, MusicLMPipeline
from soundlm.pipeline import AudioLMSampling, BatchRequest

if TYPE_CHECKING:
    from soundlm.stages import Stage


def caption_seed(seed: int, index: int) -> int:
    """Caption `index`'s seed within a call drawn from `seed`: independent of every other (seed, index)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


class MusicLMSampler:
    """Captions -> samples of one stage of a MusicLM pipeline (the `Sampler` contract of `music.pairs`)."""

    def __init__(self, music: MusicLMPipeline, stage: Stage, seconds: float | None = None,
                 guidance: float = DEFAULT_GUIDANCE, sampling: AudioLMSampling | None = None):
        self.music, self.stage = music, stage
        self.seconds = stage.window_seconds if seconds is None else seconds
        if self.seconds <= 0:
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        self.sampling = replace(sampling or AudioLMSampling(), guidance=guidance)

    def sample(self, captions: list[str], num_samples: int, seed: int) -> list[list[GeneratedSample]]:
        conditions = self.music.condition_tokens(captions).to(self.music.audiolm.device)  # [B, Q]
        requests = [BatchRequest(seconds=self.seconds, num_samples=num_samples, seed=caption_seed(seed, j),
                                 condition=cond) for j, cond in enumerate(conditions)]
        out = []
        for generated, cond in zip(self.music.audiolm.generate_batch_tokens(requests, self.sampling), conditions):
            condition = cond[None].cpu() if self.stage.meta.conditioned else None  # [1, Q]
            samples = []
            for k, audio in enumerate(generated.audio):
                seq = window_sequence(self.stage, generated.semantic[k: k + 1].cpu(), generated.codes[k: k + 1].cpu(),
                                      condition)
                samples.append(GeneratedSample.of(seq, audio.mean(axis=0), self.music.sample_rate))  # [C, S] -> [S]
            out.append(samples)
        return out


def musiclm_sampler(base: Path, stage: Stage, device: torch.device) -> MusicLMSampler:
    """The `musiclm` sampler factory: the music bundle `base`, samples of its stage `stage`."""
    return MusicLMSampler(MusicLMPipeline.from_bundle(base, device=device), stage)
