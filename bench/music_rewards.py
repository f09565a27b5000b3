"""Do the MusicRL rewards rank a clip's own request above another clip's? (what making DPO pairs relies on)

For each held-out clip of a music corpus, every reward scores the clip against its own request
(its rendered attributes) and against the request of another clip (a seeded derangement). The
ranking accuracy is the share of clips whose own request scores higher (ties count half): 0.5
is a reward that cannot tell, 1.0 one that always can.

    PYTHONPATH=src:. OMP_NUM_THREADS=1 python -m bench.music_rewards --data DIR --instrument-model RUN [--split heldout]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from soundlm.audio import load_audio
from soundlm.data.music import read_music_corpus
from soundlm.music.instrument import load_instrument_classifier
from soundlm.music.rewards import InstrumentReward, KeyReward, TempoReward, WeightedReward, request_from_attributes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="corpus from `soundlm data music`")
    ap.add_argument("--instrument-model", required=True, help="`soundlm train instrument` run")
    ap.add_argument("--split", default="heldout")
    ap.add_argument("--max-clips", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    clips = read_music_corpus(args.data, split=args.split)[: args.max_clips]
    requests = [request_from_attributes(c.music, c.caption) for c in clips]
    rng = np.random.default_rng(args.seed)
    # A derangement: every clip is compared with some other clip's request.
    perm = rng.permutation(len(clips))
    other = np.roll(perm, 1)[np.argsort(perm)]
    key, tempo = KeyReward(), TempoReward()
    instrument = InstrumentReward(load_instrument_classifier(args.instrument_model))
    rewards = [key, tempo, instrument, WeightedReward([(key, 1.0), (tempo, 1.0), (instrument, 1.0)])]
    own = {r.name: [] for r in rewards}
    alien = {r.name: [] for r in rewards}
    t0 = time.perf_counter()
    for i, clip in enumerate(clips):
        audio = load_audio(clip.item.path, sample_rate=16_000)[0]
        for r in rewards:
            own[r.name].append(r.score(audio, 16_000, requests[i]))
            alien[r.name].append(r.score(audio, 16_000, requests[other[i]]))
    seconds = time.perf_counter() - t0
    print(f"{len(clips)} {args.split} clips of {args.data}; {seconds / len(clips):.2f} s per clip for all rewards "
          f"(each twice)\n")
    print("| reward | own request | another clip's request | ranking accuracy |\n|---|---|---|---|")
    for r in rewards:
        a, b = np.array(own[r.name]), np.array(alien[r.name])
        acc = np.mean((a > b) + 0.5 * (a == b))
        print(f"| {r.name} | {a.mean():.3f} | {b.mean():.3f} | {acc:.3f} |")


if __name__ == "__main__":
    main()
