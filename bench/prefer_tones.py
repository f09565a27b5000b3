"""MusicRL-R's loop at toy scale: does DPO on reward-ranked samples raise the reward of fresh samples?

The model is the semantic stage of the tests' tiny random bundle; the sampler (the tests'
`ToneSampler`) plays each sampled id as a note (id s -> MIDI 60 + s % 12, 0.2 s). Every caption
asks for C major; `KeyReward` ranks 4 samples per caption, best against worst; `soundlm train
prefer` tunes the stage. Then base and tuned stage each draw one sample per held-out seed
(seed-matched, so a pair differs only by the weights), scored by the key reward and by a metric
the reward does not compute: the share of notes in the C major scale. The loop itself is
`tests/test_train_prefer.py`'s `tone_loop`, which a slow test also runs.

    PYTHONPATH=src:.:tests OMP_NUM_THREADS=1 python -m bench.prefer_tones [--captions 24 --steps 40]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from test_train_prefer import tone_loop  # tests/ on PYTHONPATH


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--captions", type=int, default=24)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--eval-samples", type=int, default=200)
    args = ap.parse_args()
    r = tone_loop(Path(tempfile.mkdtemp(prefix="prefer-tones-")), args.captions, args.samples, args.steps, args.lr,
                  args.beta, args.eval_samples)
    print(f"{args.captions} captions x {args.samples} samples, {args.steps} DPO steps (beta {args.beta}, "
          f"lr {args.lr}): {r.seconds:.1f} s; {args.eval_samples} held-out seeds\n")
    print("| model | key reward | notes in C major | win rate vs base (key reward, ties half) |\n|---|---|---|---|")
    print(f"| base | {r.base_reward.mean():.3f} | {r.base_in_scale.mean():.3f} | |")
    print(f"| tuned | {r.tuned_reward.mean():.3f} | {r.tuned_in_scale.mean():.3f} | {r.win_rate:.3f} |")


if __name__ == "__main__":
    main()
