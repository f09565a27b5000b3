"""Reward models for music: how well a generated clip does what its caption asked (MusicRL's rewards).

A request (`MusicRequest`) is what a caption asks for: key and mode, tempo, instrument, and the
caption text itself. It comes from a corpus row's `MusicAttributes` when they are at hand
(`request_from_attributes`), else from the caption's words (`request_from_caption`, which knows
the corpus's wordings: `data/music.py`'s key names, instrument words and "N BPM").

Each reward (`RewardModel`) scores one clip against a request, higher is better, in [0, 1]
(the MuLan cosine in [-1, 1]), and says whether the request asks for its attribute at all:

- `KeyReward`: `analysis.estimate_key` against the requested key, with the MIREX key-detection
  weights for near misses (`key_credit`);
- `TempoReward`: `analysis.estimate_tempo` within 8% of the requested BPM, half credit at the
  half or double beat level, falling linearly to 0 at twice the tolerance;
- `InstrumentReward`: an `InstrumentClassifier`'s probability of the requested instrument;
- `MuLanReward`: the cosine of the clip's and the caption's MuLan embeddings (text adherence);
- `WeightedReward`: a weighted mean of the rewards that apply to the request.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

# The corpus's own caption vocabulary: a caption names an instrument with one of these words.
from soundlm.data.music import _INSTRUMENT_WORDS, PITCH_NAMES, MusicAttributes
from soundlm.music.analysis import PITCH_CLASSES, estimate_key, estimate_tempo


@dataclass(frozen=True)
class MusicRequest:
    """What a caption asks for; None where it does not say."""

    caption: str
    tonic: int | None = None  # pitch class 0..11, C = 0
    mode: str | None = None  # "major" | "minor"
    tempo_bpm: float | None = None  # quarter notes per minute
    instrument: str | None = None  # a `data.music.INSTRUMENTS` name

    def to_json(self) -> dict:
        return {"caption": self.caption, "tonic": self.tonic, "mode": self.mode, "tempo_bpm": self.tempo_bpm,
                "instrument": self.instrument}

    @classmethod
    def from_json(cls, obj: dict) -> MusicRequest:
        return cls(caption=str(obj["caption"]), tonic=obj.get("tonic"), mode=obj.get("mode"),
                   tempo_bpm=obj.get("tempo_bpm"), instrument=obj.get("instrument"))


def request_from_attributes(music: MusicAttributes, caption: str) -> MusicRequest:
    """The request of a corpus clip: its rendered attributes (exact), not its caption's words."""
    return MusicRequest(caption=caption, tonic=music.tonic, mode=music.mode, tempo_bpm=float(music.tempo_bpm),
                        instrument=music.instrument)


_NOTE = {name: pc for names in (PITCH_NAMES["major"], PITCH_NAMES["minor"], PITCH_CLASSES)
         for pc, name in enumerate(names)}
_NOTE.update({"Db": 1, "D#": 3, "Gb": 6, "G#": 8, "A#": 10, "Cb": 11, "E#": 5, "Fb": 4, "B#": 0})
_KEY_RE = re.compile(r"\b([A-G](?:#|b)?)\s+(major|minor)\b", re.IGNORECASE)
_BPM_RE = re.compile(r"\b(\d{2,3}(?:\.\d+)?)\s*(?:bpm|beats per minute)\b", re.IGNORECASE)
# Longest wording first, so "choir (aahs)" or "string ensemble" wins over a shorter one inside it.
_INSTRUMENT_RE = sorted(((word.lower(), inst) for inst, words in _INSTRUMENT_WORDS.items() for word in words),
                        key=lambda wi: -len(wi[0]))


def request_from_caption(caption: str) -> MusicRequest:
    """Parse key ("G minor", "F# major"), tempo ("120 BPM") and instrument (the corpus's words) from a caption."""
    tonic = mode = tempo = instrument = None
    key = _KEY_RE.search(caption)
    if key:
        note = key.group(1)[0].upper() + key.group(1)[1:]
        tonic, mode = _NOTE[note], key.group(2).lower()
    bpm = _BPM_RE.search(caption)
    if bpm:
        tempo = float(bpm.group(1))
    lowered = caption.lower()
    for word, inst in _INSTRUMENT_RE:
        if re.search(rf"\b{re.escape(word)}\b", lowered):
            instrument = inst
            break
    return MusicRequest(caption=caption, tonic=tonic, mode=mode, tempo_bpm=tempo, instrument=instrument)


@runtime_checkable
class RewardModel(Protocol):
    name: str

    def applies(self, request: MusicRequest) -> bool:
        """Whether the request asks for what this reward measures."""

    def score(self, audio: np.ndarray, sample_rate: int, request: MusicRequest) -> float:
        """Reward of one clip (audio [S] float at `sample_rate`) for `request`; higher is better."""


def key_credit(tonic: int, mode: str, est_tonic: int, est_mode: str) -> float:
    """MIREX audio key detection's weighted score of an estimated key against the requested one.

    1 exact; 0.5 a fifth above in the same mode (the dominant: one accidental apart, and the
    harmonic series puts a fifth's energy on every note); 0.3 the relative key (the same seven
    pitch classes, another tonal centre: chroma alone barely tells them apart); 0.2 the parallel
    key (same tonic, three notes differ); else 0. These are the weights that key-estimation
    evaluations use (mir_eval.key.weighted_score), so the reward grades as the field does.
    """
    up = (est_tonic - tonic) % 12
    if up == 0 and est_mode == mode:
        return 1.0
    if est_mode == mode and up == 7:
        return 0.5
    if (mode == "major" and est_mode == "minor" and up == 9) or (mode == "minor" and est_mode == "major" and up == 3):
        return 0.3
    if up == 0:
        return 0.2
    return 0.0


class KeyReward:
    """Key and mode agreement (`key_credit`) of `estimate_key` with the requested key."""

    name = "key"

    def applies(self, request: MusicRequest) -> bool:
        return request.tonic is not None and request.mode is not None

    def score(self, audio: np.ndarray, sample_rate: int, request: MusicRequest) -> float:
        est = estimate_key(audio, sample_rate)
        if est.correlation == 0.0:  # silence: no key at all
            return 0.0
        return key_credit(int(request.tonic), str(request.mode), est.tonic, est.mode)


def tempo_credit(estimate: float, target: float, tolerance: float = 0.08, octave_credit: float = 0.5) -> float:
    """1 within `tolerance` (relative) of `target`, `octave_credit` at half or double the tempo, each
    falling linearly to 0 at twice the tolerance; the best of the three beat levels."""
    if estimate <= 0 or target <= 0:
        return 0.0
    best = 0.0
    for factor, credit in ((1.0, 1.0), (0.5, octave_credit), (2.0, octave_credit)):
        error = abs(estimate - target * factor) / (target * factor)
        best = max(best, credit * float(np.clip(2.0 - error / tolerance, 0.0, 1.0)))
    return best


class TempoReward:
    """Tempo agreement (`tempo_credit`) of `estimate_tempo` with the requested BPM."""

    name = "tempo"

    def __init__(self, tolerance: float = 0.08, octave_credit: float = 0.5):
        self.tolerance, self.octave_credit = tolerance, octave_credit

    def applies(self, request: MusicRequest) -> bool:
        return request.tempo_bpm is not None

    def score(self, audio: np.ndarray, sample_rate: int, request: MusicRequest) -> float:
        est = estimate_tempo(audio, sample_rate)
        return tempo_credit(est.bpm, float(request.tempo_bpm), self.tolerance, self.octave_credit)


class InstrumentReward:
    """The classifier's probability of the requested instrument (a soft score: ranks near misses)."""

    name = "instrument"

    def __init__(self, classifier):
        self.classifier = classifier  # soundlm.music.instrument.InstrumentClassifier

    def applies(self, request: MusicRequest) -> bool:
        return request.instrument is not None and request.instrument in self.classifier.config.classes

    def score(self, audio: np.ndarray, sample_rate: int, request: MusicRequest) -> float:
        return float(self.classifier.predict(audio, sample_rate).probs[request.instrument])


class TextAudioEmbedder(Protocol):
    """The part of MuLan (`soundlm.music.mulan`) a text-adherence reward needs."""

    sample_rate: int

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor: ...  # [B, N] mono -> [B, D], L2-normalised

    def embed_text(self, texts: list[str]) -> torch.Tensor: ...  # -> [B, D], L2-normalised


class MuLanReward:
    """Text adherence: cosine of the clip's MuLan audio embedding and its caption's text embedding."""

    name = "mulan"

    def __init__(self, mulan: TextAudioEmbedder):
        self.mulan = mulan
        self._text: dict[str, torch.Tensor] = {}  # caption -> [D]: a caption scores many samples

    def applies(self, request: MusicRequest) -> bool:
        return bool(request.caption.strip())

    @torch.inference_mode()
    def score(self, audio: np.ndarray, sample_rate: int, request: MusicRequest) -> float:
        if request.caption not in self._text:
            self._text[request.caption] = self.mulan.embed_text([request.caption])[0].float().cpu()
        emb = torch.from_numpy(embed_clip(self.mulan, audio, sample_rate))  # [D]
        return float(emb @ self._text[request.caption])


@torch.inference_mode()
def embed_clip(mulan: TextAudioEmbedder, audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The MuLan audio embedding [D] of one clip ([S] or [C, S] at `sample_rate`; mixed to mono, resampled)."""
    from soundlm.audio import resample

    x = np.asarray(audio, dtype=np.float32)
    x = x if x.ndim == 1 else x.mean(axis=0)
    if sample_rate != mulan.sample_rate:
        x = resample(x[None], sample_rate, mulan.sample_rate)[0]
    return mulan.embed_audio(torch.from_numpy(np.ascontiguousarray(x))[None])[0].float().cpu().numpy()


class WeightedReward:
    """The weighted mean of the rewards that apply to a request (weights renormalised over those).

    A request that names no key is scored on the rest, not penalised for the key it never asked for.
    """

    name = "weighted"

    def __init__(self, rewards: dict[RewardModel, float] | list[tuple[RewardModel, float]]):
        items = list(rewards.items()) if isinstance(rewards, dict) else list(rewards)
        if not items:
            raise ValueError("a weighted reward needs at least one reward")
        if any(w < 0 for _, w in items) or not any(w > 0 for _, w in items):
            raise ValueError(f"reward weights must be >= 0 and not all 0, got {[w for _, w in items]}")
        self.items = items

    def applies(self, request: MusicRequest) -> bool:
        return any(w > 0 and r.applies(request) for r, w in self.items)

    def components(self, audio: np.ndarray, sample_rate: int, request: MusicRequest) -> dict[str, float]:
        """Each applicable reward's score, by name."""
        return {r.name: r.score(audio, sample_rate, request) for r, w in self.items if w > 0 and r.applies(request)}

    def combine(self, parts: dict[str, float]) -> float:
        """The weighted mean of `components`' scores (nan when none applied)."""
        if not parts:
            return math.nan
        weights = {r.name: w for r, w in self.items}
        return sum(weights[n] * s for n, s in parts.items()) / sum(weights[n] for n in parts)

    def score(self, audio: np.ndarray, sample_rate: int, request: MusicRequest) -> float:
        return self.combine(self.components(audio, sample_rate, request))
