"""Classifier-free guidance: one batched forward of 2B rows against two forwards of B rows.

A conditioned semantic-stage LM (hidden 512, 6 layers, 8 heads, fp32, random weights, 1024
semantic ids + 16 condition ids + NULL) continues B prompts of BOS + 3 condition ids + 16
semantic ids by N tokens with `lm.generate`:

- unguided: the conditional rows alone (what g = 1 runs);
- guided, one batch: `guidance=3` with the NULL-condition twins in the same call (2B rows
  through one KV cache, logits mixed before sampling);
- two passes: two unguided calls of B rows each, the forwards a two-pass guidance would run
  per token (a lower bound of its time: it leaves out the mixing and the bookkeeping).

ms/step is wall time per generated token step of the whole batch; best of interleaved rounds.

    OMP_NUM_THREADS=1 .venv/bin/python bench/guidance.py --threads 1   # ~5 min
    OMP_NUM_THREADS=1 .venv/bin/python bench/guidance.py --threads 1 --quick
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py shares its name with the stdlib `tokenize` (imported by torch): keep this folder off the
# front of sys.path, as bench/generate.py does.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402


def run(batch: int, new_tokens: int, rounds: int, threads: int) -> dict:
    from soundlm.lm.generate import generate
    from soundlm.lm.model import LMConfig, TokenLM
    from soundlm.patterns import null_condition, semantic_sequence
    from soundlm.sampler import SamplingParams
    from soundlm.vocab import VocabLayout

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    layout = VocabLayout(semantic_size=1024, condition_size=16)
    cfg = LMConfig(layout.vocab_size, hidden_size=512, num_layers=6, num_heads=8, intermediate_size=1408,
                   max_positions=1024)
    model = TokenLM.from_config(cfg, layout=layout).eval()
    semantic = torch.randint(0, 1024, (batch, 16))
    cond = semantic_sequence(semantic, layout, eos=False, condition=torch.randint(0, 16, (batch, 3))).tokens
    uncond = semantic_sequence(semantic, layout, eos=False, condition=null_condition(3, layout, batch)).tokens
    params = SamplingParams(temperature=1.0)
    allowed = layout.range_of("semantic")

    def unguided() -> None:
        generate(model, cond, new_tokens, params, allowed_fn=lambda pos: allowed,
                 generator=torch.Generator().manual_seed(0))

    def guided() -> None:
        generate(model, cond, new_tokens, params, allowed_fn=lambda pos: allowed,
                 generator=torch.Generator().manual_seed(0), guidance=3.0, uncond_prompt=uncond)

    def two_passes() -> None:
        unguided()
        generate(model, uncond, new_tokens, params, allowed_fn=lambda pos: allowed,
                 generator=torch.Generator().manual_seed(0))

    runs = {"unguided": unguided, "guided_one_batch": guided, "two_passes": two_passes}
    for fn in runs.values():
        fn()  # warm-up
    best = {name: float("inf") for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], (time.perf_counter() - t) / new_tokens * 1e3)
    return {"batch": batch, "new_tokens": new_tokens, "threads": threads, "rounds": rounds,
            "ms_per_step": {k: round(v, 3) for k, v in best.items()},
            "guided_over_unguided": round(best["guided_one_batch"] / best["unguided"], 3),
            "two_passes_over_guided": round(best["two_passes"] / best["guided_one_batch"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="32 tokens, 2 rounds; writes guidance-quick.json")
    args = ap.parse_args()
    new_tokens, rounds = (32, 2) if args.quick else (args.new_tokens, args.rounds)
    results = []
    for batch in args.batches:
        r = run(batch, new_tokens, rounds, args.threads)
        results.append(r)
        ms = r["ms_per_step"]
        print(f"batch {r['batch']}: unguided {ms['unguided']:.2f} ms/step, guided (one batch of 2B) "
              f"{ms['guided_one_batch']:.2f}, two passes {ms['two_passes']:.2f}; guided/unguided "
              f"{r['guided_over_unguided']:.2f}x, two passes/guided {r['two_passes_over_guided']:.2f}x", flush=True)
    out = Path(__file__).resolve().parent / "results" / ("guidance-quick.json" if args.quick else "guidance.json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
