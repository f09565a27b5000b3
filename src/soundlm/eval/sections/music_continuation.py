"""`soundlm eval continuation --music`: AudioLM's piano test, does a continuation keep the prompt's music.

AudioLM (sec. 6) continues piano prompts and has listeners judge whether the continuation
keeps the prompt's style. Here the judges are the analysers of `soundlm.music`: the key
(chroma + key profiles), the tempo (onset autocorrelation) and the instrument (the trained
classifier) of the continuation, compared with the prompt's. Two references frame the
numbers: the clip's real next seconds (what the corpus itself agrees with its own start:
the analysers' ceiling on short excerpts) and the real seconds of an unrelated clip (another
piece, drawn in a fixed derangement: the chance level of each agreement).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundlm.eval.report import EvalSection, RowState, seed_everything, state_path

if TYPE_CHECKING:
    from soundlm.data.music import MusicClip
    from soundlm.music.instrument import InstrumentClassifier
    from soundlm.pipeline import AudioLMPipeline, AudioLMSampling

TEMPO_TOLERANCE = 0.08  # the tempo target: within 8%
OCTAVE_FACTORS = (0.5, 1.0, 2.0)
KINDS = ("continuation", "ground_truth", "unrelated")


@dataclass
class ClipAnalysis:
    """What the analysers read from one excerpt."""

    tonic: int
    mode: str
    bpm: float
    instrument: str | None  # None without a classifier


@dataclass
class Agreement:
    key: bool  # tonic and mode both equal
    key_score: float  # MIREX score of b's key against a's (1, fifth above 0.5, relative 0.3, parallel 0.2)
    tonic: bool
    tempo: bool  # within TEMPO_TOLERANCE
    tempo_octave: bool  # within TEMPO_TOLERANCE of half, the same or double
    instrument: bool | None


def analyse_clip(audio: np.ndarray, sample_rate: int, classifier: InstrumentClassifier | None = None
                 ) -> ClipAnalysis:
    """Key, tempo and (with a classifier) instrument of `audio` ([S] or [C, S])."""
    from soundlm.music.analysis import estimate_key, estimate_tempo

    key = estimate_key(audio, sample_rate)
    instrument = classifier.predict(audio, sample_rate).label if classifier is not None else None
    return ClipAnalysis(key.tonic, key.mode, float(estimate_tempo(audio, sample_rate).bpm), instrument)


def agreement(a: ClipAnalysis, b: ClipAnalysis, tempo_tolerance: float = TEMPO_TOLERANCE) -> Agreement:
    """How far `b` (a continuation) keeps the key, tempo and instrument of `a` (its prompt)."""
    from soundlm.music.analysis import tempo_matches
    from soundlm.music.rewards import key_credit

    has_tempo = a.bpm > 0 and b.bpm > 0  # 0 BPM: no periodicity found, agrees with nothing
    return Agreement(
        key=(a.tonic, a.mode) == (b.tonic, b.mode), key_score=key_credit(a.tonic, a.mode, b.tonic, b.mode),
        tonic=a.tonic == b.tonic, tempo=has_tempo and tempo_matches(b.bpm, a.bpm, tempo_tolerance),
        tempo_octave=has_tempo and tempo_matches(b.bpm, a.bpm, tempo_tolerance, OCTAVE_FACTORS),
        instrument=None if a.instrument is None or b.instrument is None else a.instrument == b.instrument)


def unrelated_partners(pieces: list[str]) -> list[int]:
    """For each clip i, the index of a clip of another piece: the next such clip in the list, cyclically."""
    n = len(pieces)
    out = []
    for i in range(n):
        j = next((k % n for k in range(i + 1, i + n) if pieces[k % n] != pieces[i]), None)
        if j is None:
            raise ValueError("the unrelated-clip baseline needs clips of at least 2 pieces; use more prompts "
                             "(--num-prompts) or a larger split")
        out.append(j)
    return out


def pick_prompts(clips: list[MusicClip], min_seconds: float, num_prompts: int, seed: int) -> list[MusicClip]:
    """Up to `num_prompts` clips long enough, one per piece before a second from any piece, in a seeded order."""
    rng = random.Random(seed)
    by_piece: dict[str, list[MusicClip]] = {}
    for c in sorted(clips, key=lambda c: c.item.id):
        if c.item.duration is None or c.item.duration >= min_seconds:
            by_piece.setdefault(c.music.piece, []).append(c)
    ranked = []
    for piece in sorted(by_piece):
        rng.shuffle(by_piece[piece])
        ranked += [(rank, rng.random(), c) for rank, c in enumerate(by_piece[piece])]
    return [c for _, _, c in sorted(ranked, key=lambda t: t[:2])][:num_prompts]


def summarise(rows: list[dict]) -> dict:
    """Mean of each agreement over rows, for the continuation and both references (rows from the eval)."""
    summary: dict = {"num_prompts": len(rows)}
    for kind in KINDS:
        for field in ("key", "key_score", "tonic", "tempo", "tempo_octave", "instrument"):
            values = [r[f"{kind}_{field}"] for r in rows if r.get(f"{kind}_{field}") is not None]
            summary[f"{field}_{kind}"] = float(np.mean(values)) if values else None
    return summary


def eval_music_continuation(pipe: AudioLMPipeline, data: str | Path, split: str = "heldout",
                            prompt_seconds: float = 3.0, seconds: float = 4.0, num_prompts: int = 20,
                            instrument_model: str | Path | None = None, sampling: AudioLMSampling | None = None,
                            seed: int = 0, out_dir: str | Path | None = None, save_audio: bool = True,
                            progress: bool = True) -> EvalSection:
    """Key, tempo and instrument agreement between `prompt_seconds` prompts cut from `split` of a music
    corpus and their `seconds` continuations (prompt excluded), beside the real next seconds and an
    unrelated clip's."""
    from tqdm import tqdm

    from soundlm.audio import load_audio, save_audio as write_audio
    from soundlm.data.music import read_music_corpus

    if prompt_seconds <= 0 or seconds <= 0:
        raise ValueError(f"--prompt-seconds and --seconds must be positive, got {prompt_seconds} and {seconds}")
    start = time.perf_counter()
    seed_everything(seed)
    classifier = None
    if instrument_model is not None:
        from soundlm.music.instrument import load_instrument_classifier

        classifier = load_instrument_classifier(instrument_model)
    prompts = pick_prompts(read_music_corpus(data, split=split), prompt_seconds + seconds, num_prompts, seed)
    if not prompts:
        raise ValueError(f"{data}: no clip of split {split!r} lasts --prompt-seconds + --seconds "
                         f"({prompt_seconds + seconds} s); lower them or use longer clips")
    partners = unrelated_partners([c.music.piece for c in prompts])
    sr = pipe.sample_rate
    settings = {"data": str(data), "split": split, "prompt_seconds": prompt_seconds, "seconds": seconds,
                "num_prompts": len(prompts), "seed": seed, "tempo_tolerance": TEMPO_TOLERANCE,
                "instrument_model": None if instrument_model is None else str(instrument_model),
                "sampling": asdict(sampling) if sampling is not None else "default"}
    state = RowState(state_path(out_dir, "music_continuation"), settings)
    audio_dir = Path(out_dir) / "music_continuation_audio" if out_dir is not None and save_audio else None
    n, m = int(round(prompt_seconds * sr)), int(round(seconds * sr))
    analyses: list[dict] = []
    for i, clip in enumerate(tqdm(prompts, desc="music continuation", unit="prompt", disable=not progress)):
        if clip.item.id in state:
            analyses.append(state[clip.item.id])
            continue
        audio = load_audio(clip.item.path, sample_rate=sr, mono=True)  # [1, S]
        if audio.shape[1] < n + m:
            raise ValueError(f"{clip.item.path}: {audio.shape[1] / sr:.2f} s, shorter than --prompt-seconds + "
                             f"--seconds ({prompt_seconds + seconds} s); its manifest duration is wrong")
        prompt, truth = audio[:, :n], audio[:, n: n + m]
        cont = pipe.continue_audio(prompt, seconds, prompt_sample_rate=sr, sampling=sampling, seed=seed + i,
                                   include_prompt=False)[0]  # [C, S]
        if audio_dir is not None:
            write_audio(audio_dir / f"{i:04d}_{clip.item.id}.wav", np.concatenate([prompt, cont], axis=1), sr)
        record = {"id": clip.item.id, "piece": clip.music.piece, "key": clip.music.key,
                  "tempo_bpm": clip.music.tempo_bpm, "instrument": clip.music.instrument,
                  **{f"{name}_analysis": asdict(analyse_clip(x, sr, classifier))
                     for name, x in (("prompt", prompt), ("continuation", cont), ("ground_truth", truth))}}
        state.put(clip.item.id, record)
        analyses.append(record)
    rows = []
    for record, j in zip(analyses, partners):
        prompt = ClipAnalysis(**record["prompt_analysis"])
        row = {"id": record["id"], "key": record["key"], "tempo_bpm": record["tempo_bpm"],
               "instrument": record["instrument"], "unrelated_id": analyses[j]["id"]}
        others = {"continuation": record["continuation_analysis"], "ground_truth": record["ground_truth_analysis"],
                  "unrelated": analyses[j]["ground_truth_analysis"]}
        for kind, other in others.items():
            row |= {f"{kind}_{k}": v for k, v in asdict(agreement(prompt, ClipAnalysis(**other))).items()}
        rows.append(row)
    return EvalSection(name="music_continuation", title="Music continuation: key, tempo and instrument kept",
                       settings=settings, summary=summarise(rows), rows=rows, wall_seconds=time.perf_counter() - start,
                       notes=["Each agreement compares the analysers' reading of the prompt with that of the "
                              "continuation (prompt excluded), of the clip's real next seconds (ground_truth: the "
                              "ceiling these analysers reach on short excerpts) and of another piece's real "
                              "seconds (unrelated: the chance level).",
                              "key: tonic and mode equal; key_score: MIREX (fifth above 0.5, relative 0.3, "
                              f"parallel 0.2); tempo: within {TEMPO_TOLERANCE:.0%}; tempo_octave: also at half or double; "
                              "instrument: the classifier's labels equal."])
