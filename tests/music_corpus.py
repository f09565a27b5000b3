"""A synthetic music corpus for tests: plucked-chord cadences written as `soundlm data music` writes its manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16_000
CADENCE = [[48, 60, 64, 67], [53, 60, 65, 69], [55, 59, 62, 67], [48, 60, 64, 67]]  # I IV V I in C


def chords(progression: list[list[int]], beat_seconds: float, transpose: int = 0, harmonics: int = 6) -> np.ndarray:
    """Plucked chords (decaying harmonics at 1/h), one per beat: a key and a tempo by construction. [S]"""
    t = np.arange(int(beat_seconds * SR)) / SR
    parts = []
    for chord in progression:
        f0s = [440.0 * 2 ** ((n + transpose - 69) / 12) for n in chord]
        parts.append(sum(np.sin(2 * np.pi * f * h * t) / h for f in f0s for h in range(1, harmonics + 1)
                         if f * h < SR / 2) * np.exp(-4 * t))
    audio = np.concatenate(parts)
    return (0.5 * audio / np.abs(audio).max()).astype(np.float32)


def write_music_corpus(root: Path, clips: list[dict], seconds: float = 4.0) -> Path:
    """One 120 BPM cadence clip per entry of `clips` ({"piece", "tonic", "instrument", "split"}); returns the
    manifest. An "organ" clip sounds with 2 harmonics, any other with 6, so instruments differ in timbre."""
    from soundlm.data import write_manifest

    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, c in enumerate(clips):
        cid = f"{c['piece'].replace('/', '-')}-{i}"
        audio = chords(CADENCE * 8, 0.5, c["tonic"], harmonics=2 if c["instrument"] == "organ" else 6)
        sf.write(root / f"{cid}.wav", audio[: int(seconds * SR)], SR)
        music = {"piece": c["piece"], "composer": "x", "form": "chorale", "instrument": c["instrument"],
                 "program": 0, "tonic": c["tonic"] % 12, "mode": "major", "key": "C major", "tempo_bpm": 120,
                 "meter": "4/4", "loudness": "medium", "velocity": 80, "loudness_db": -20.0, "key_confidence": 0.9,
                 "transposition": c["tonic"], "heldout": None if c["split"] == "train" else "piece"}
        rows.append({"id": cid, "path": f"{cid}.wav", "duration": seconds, "sample_rate": SR, "speaker": None,
                     "language": None, "transcript": "chords", "split": c["split"], "music": music})
    return write_manifest(root / "manifest.jsonl", rows)
