"""`soundlm eval analysers`: how often the music analysers read a corpus's known attributes right.

On the held-out clips of a corpus from `soundlm data music`: key (tonic and mode) from
chroma + Krumhansl-Kessler profiles, tempo from the onset autocorrelation, and the
instrument from the trained classifier, each against the clip's label and against chance.
These analysers are what judges generated music, so their own accuracy bounds what such a
judgement can show.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from soundlm.eval.report import EvalSection, RowState, state_path

TEMPO_TOLERANCE = 0.04
OCTAVE_FACTORS = (0.5, 1.0, 2.0)


def _key_score(tonic: int, mode: str, true_tonic: int, true_mode: str) -> float:
    """MIREX key score: 1 exact, 0.5 a fifth away (same mode), 0.3 relative, 0.2 parallel, else 0."""
    if (tonic, mode) == (true_tonic, true_mode):
        return 1.0
    if mode == true_mode and (tonic - true_tonic) % 12 in (5, 7):
        return 0.5
    if mode != true_mode and (tonic - true_tonic) % 12 == (9 if true_mode == "major" else 3):
        return 0.3
    if mode != true_mode and tonic == true_tonic:
        return 0.2
    return 0.0


def _majority(values: list) -> float:
    return Counter(values).most_common(1)[0][1] / len(values) if values else 0.0


def eval_analysers(data: str | Path, instrument_model: str | Path | None = None, split: str = "heldout",
                   max_files: int | None = None, out_dir: str | Path | None = None,
                   progress: bool = True) -> EvalSection:
    """Key, tempo and instrument accuracy of the analysers on `split` of a music corpus."""
    from tqdm import tqdm

    from soundlm.audio import load_audio
    from soundlm.data.music import INSTRUMENTS, read_music_corpus
    from soundlm.music.analysis import estimate_key, estimate_tempo, tempo_matches

    start = time.perf_counter()
    clips = read_music_corpus(data, split=split)[:max_files]
    classifier = None
    if instrument_model is not None:
        from soundlm.music.instrument import load_instrument_classifier

        classifier = load_instrument_classifier(instrument_model)
    settings = {"data": str(data), "split": split, "max_files": max_files,
                "instrument_model": None if instrument_model is None else str(instrument_model),
                "tempo_tolerance": TEMPO_TOLERANCE, "octave_factors": list(OCTAVE_FACTORS)}
    state = RowState(state_path(out_dir, "analysers"), settings)
    rows = []
    for clip in tqdm(clips, desc="analysers", unit="clip", disable=not progress):
        if clip.item.id in state:
            rows.append(state[clip.item.id])
            continue
        m = clip.music
        sr = clip.item.sample_rate  # a manifest row always has it
        audio = load_audio(clip.item.path, sample_rate=sr, mono=True)  # [1, S]
        key = estimate_key(audio, sr)
        tempo = estimate_tempo(audio, sr)
        row = {"id": clip.item.id, "heldout": m.heldout, "key": m.key, "key_est": key.name,
               "key_ok": key.tonic == m.tonic and key.mode == m.mode, "tonic_ok": key.tonic == m.tonic,
               "mode_ok": key.mode == m.mode, "key_score": _key_score(key.tonic, key.mode, m.tonic, m.mode),
               "tempo": m.tempo_bpm, "tempo_est": round(tempo.bpm, 1),
               "tempo_ok": tempo_matches(tempo.bpm, m.tempo_bpm, TEMPO_TOLERANCE),
               "tempo_octave_ok": tempo_matches(tempo.bpm, m.tempo_bpm, TEMPO_TOLERANCE, OCTAVE_FACTORS),
               "instrument": m.instrument}
        if classifier is not None:
            pred = classifier.predict(audio, sr)
            row |= {"instrument_est": pred.label, "instrument_ok": pred.label == m.instrument}
        state.put(clip.item.id, row)
        rows.append(row)
    if not rows:
        raise ValueError(f"{data}: no clips in split {split!r} to evaluate")

    def rate(key: str, subset: list[dict] | None = None) -> float | None:
        subset = rows if subset is None else subset
        values = [r[key] for r in subset if key in r]
        return sum(values) / len(values) if values else None

    keys = [r["key"] for r in rows]
    summary = {"clips": len(rows), "key_accuracy": rate("key_ok"), "key_chance_uniform": 1 / 24,
               "key_chance_majority": _majority(keys), "key_mirex_score": rate("key_score"),
               "tonic_accuracy": rate("tonic_ok"), "mode_accuracy": rate("mode_ok"),
               "mode_chance_majority": _majority([k.split()[1] for k in keys]),
               "tempo_accuracy_4pct": rate("tempo_ok"), "tempo_accuracy_octave": rate("tempo_octave_ok"),
               "tempo_chance_majority": _majority([r["tempo"] for r in rows])}
    if classifier is not None:
        summary |= {"instrument_accuracy": rate("instrument_ok"), "instrument_chance_uniform": 1 / len(INSTRUMENTS),
                    "instrument_chance_majority": _majority([r["instrument"] for r in rows])}
        for reason in ("piece", "combination"):
            subset = [r for r in rows if r["heldout"] == reason]
            summary[f"instrument_accuracy_{reason}"] = rate("instrument_ok", subset)
            summary[f"clips_{reason}"] = len(subset)
    notes = ["key_accuracy: tonic and mode both right; key_mirex_score: 1 exact, 0.5 fifth, 0.3 relative, "
             "0.2 parallel. Labels: music21's key analysis of the rendered notes, moved by the transposition.",
             f"tempo_accuracy_4pct: within {TEMPO_TOLERANCE:.0%} of the rendered quarter-note tempo; "
             "tempo_accuracy_octave: within 4% of half, the same or double it.",
             "chance_majority: always answering the most frequent label of these clips; chance_uniform: a "
             "uniform guess.",
             "instrument_accuracy_piece / _combination: clips of held-out pieces / of training pieces in an "
             "(instrument, tonic) pair no training clip has."]
    return EvalSection(name="analysers", title="Music analysers: key, tempo, instrument", settings=settings,
                       summary=summary, rows=rows, wall_seconds=time.perf_counter() - start, notes=notes)

