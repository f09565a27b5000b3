"""Key estimation settings on a music corpus's TRAINING clips: how the chroma band and the
overtone spreading of the key profiles change exact-key accuracy.

`soundlm.music.analysis` uses the setting this table picked (fmax 800 Hz, 6 overtones at
decay 0.8); `soundlm eval analysers` then measures it on the held-out clips, which this
script never reads.

    PYTHONPATH=src:. OMP_NUM_THREADS=1 python -m bench.music_key --data DIR [--max-clips 120]
"""

from __future__ import annotations

import argparse

import numpy as np

from soundlm.audio import load_audio
from soundlm.data.music import read_music_corpus
from soundlm.music.analysis import MAJOR_PROFILE, MINOR_PROFILE, chroma, harmonic_profile, key_from_chroma


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="corpus from `soundlm data music`")
    ap.add_argument("--max-clips", type=int, default=120)
    args = ap.parse_args()
    clips = read_music_corpus(args.data, split="train")[: args.max_clips]
    audio = [load_audio(c.item.path, sample_rate=16_000)[0] for c in clips]
    print(f"{len(clips)} training clips of {args.data}\n")
    print("| fmax Hz | overtones | decay | exact key | tonic | mode |\n|---|---|---|---|---|---|")
    for fmax in (800, 1000, 2100):
        chromas = [chroma(a, 16_000, fmax=fmax) for a in audio]
        for harmonics, decay in ((1, 0.0), (4, 0.6), (6, 0.6), (6, 0.8), (8, 0.9)):
            profiles = (harmonic_profile(MAJOR_PROFILE, harmonics, decay),
                        harmonic_profile(MINOR_PROFILE, harmonics, decay))
            keys = [key_from_chroma(c, profiles) for c in chromas]
            tonic = np.mean([k.tonic == c.music.tonic for k, c in zip(keys, clips)])
            mode = np.mean([k.mode == c.music.mode for k, c in zip(keys, clips)])
            exact = np.mean([(k.tonic, k.mode) == (c.music.tonic, c.music.mode) for k, c in zip(keys, clips)])
            print(f"| {fmax} | {harmonics} | {decay} | {exact:.3f} | {tonic:.3f} | {mode:.3f} |")


if __name__ == "__main__":
    main()
