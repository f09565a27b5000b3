"""Tempo estimation on a music corpus's TRAINING clips: the onset envelope from linear STFT bins
(the first version) against log-spaced bands (what `soundlm.music.analysis` uses).

    PYTHONPATH=src:. OMP_NUM_THREADS=1 python -m bench.music_tempo --data DIR [--max-clips 150]
"""

from __future__ import annotations

import argparse
from unittest import mock

import numpy as np
from scipy import signal

from soundlm.audio import load_audio
from soundlm.data.music import read_music_corpus
from soundlm.music import analysis
from soundlm.music.analysis import estimate_tempo, tempo_matches


def linear_bins_envelope(audio: np.ndarray, sample_rate: int, frame_rate: float = 100.0) -> np.ndarray:
    """Flux of log1p(1000 |X| / max) over every STFT bin: the first version."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    hop = int(round(sample_rate / frame_rate))
    _, _, spec = signal.stft(x, fs=sample_rate, nperseg=4 * hop, noverlap=3 * hop, boundary=None)
    logmag = np.log1p(1000 * np.abs(spec) / (np.abs(spec).max() + 1e-12))
    return np.maximum(np.diff(logmag, axis=1), 0).sum(axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="corpus from `soundlm data music`")
    ap.add_argument("--max-clips", type=int, default=150)
    args = ap.parse_args()
    clips = read_music_corpus(args.data, split="train")[: args.max_clips]
    audio = [load_audio(c.item.path, sample_rate=16_000)[0] for c in clips]
    print(f"{len(clips)} training clips of {args.data}\n")
    print("| onset envelope | within 4% | within 4% of x1/2, x1, x2 |\n|---|---|---|")
    for name, envelope in (("linear STFT bins", linear_bins_envelope), ("40 log bands", analysis.onset_envelope)):
        with mock.patch.object(analysis, "onset_envelope", envelope):
            bpm = [estimate_tempo(a, 16_000).bpm for a in audio]
        strict = np.mean([tempo_matches(b, c.music.tempo_bpm) for b, c in zip(bpm, clips)])
        octave = np.mean([tempo_matches(b, c.music.tempo_bpm, 0.04, (0.5, 1.0, 2.0)) for b, c in zip(bpm, clips)])
        print(f"| {name} | {strict:.3f} | {octave:.3f} |")


if __name__ == "__main__":
    main()
