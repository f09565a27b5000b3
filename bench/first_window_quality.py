"""What a short first window costs the acoustic stage: held-out bits per code, whole vs short window.

A short first window (`AudioLMSampling.first_window`) makes the coarse (or one-stage
acoustic) stage generate its first frames in a window that ends right after them, so it
reads the semantic ids of that shorter span only. This scores the same real codes both ways,
teacher-forced, on held-out recordings: every whole window of `window_seconds` of each file,
with its frames [c, c+f) scored (c = the context a window keeps, f = the first window's
frames) once in the whole window (what generation did before) and once in the window cut
after frame c+f (what a short first window does). Two cases: a continuation's first window
(c = the kept context, half a window by default) and generation from scratch (c = 0).

    .venv/bin/python bench/first_window_quality.py --corpus CORPUS --first-window 0.5 0.4
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

import common  # noqa: E402


def scored_bits(stage, window, first: int, last: int) -> tuple[float, int]:
    """Summed bits and count of the stage's targets on acoustic frames [first, last) of a crop `Window`."""
    from soundlm.stages import IGNORE_INDEX, collate, example_fn

    batch = collate([example_fn(stage.meta, stage.layout)(window)], stage.layout.pad_id)
    targets = batch["targets"][0]  # [L] or [K, S]
    frames = window.acoustic.shape[1]
    if stage.delayed:  # column s of codebook k holds frame s - k
        k, s = targets.shape
        frame = torch.arange(s).view(1, -1) - torch.arange(k).view(-1, 1)  # [K, S]
    else:  # target j is token j+1; the acoustic tokens, frame-major, end the sequence
        qc = stage.meta.coarse_codebooks
        first_token = targets.shape[0] + 1 - frames * qc
        frame = torch.div(torch.arange(targets.shape[0]) + 1 - first_token, qc, rounding_mode="floor")
    keep = (frame >= first) & (frame < last)
    batch["targets"] = targets.masked_fill(~keep, IGNORE_INDEX)[None]
    with torch.inference_mode():
        logits = stage.logits(batch, "cpu", stage.model)[0]  # [L, V] or [K, S, card]
    picked = batch["targets"][0]
    nats = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), picked.reshape(-1),
                                             ignore_index=IGNORE_INDEX, reduction="sum")
    return float(nats) / math.log(2), int((picked != IGNORE_INDEX).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shipped", help="'shipped' or a bundle folder of any kind.")
    ap.add_argument("--corpus", type=Path, required=True, help="A corpus folder (manifest.jsonl) to score.")
    ap.add_argument("--split", default="heldout")
    ap.add_argument("--max-files", type=int, default=30)
    ap.add_argument("--first-window", nargs="+", type=float, default=[0.5], help="First-window seconds.")
    ap.add_argument("--out", type=Path, default=_HERE / "results" / "first_window_quality.json")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from soundlm.pipeline import AudioLMSampling
    from soundlm.pretrained import default_model_dir, load_pipeline
    from soundlm.stages import Window

    manifest = args.corpus / "manifest.jsonl"
    if not manifest.is_file():
        raise SystemExit(f"{args.corpus}: no manifest.jsonl; pass a corpus folder written by `soundlm data`")
    pipe = load_pipeline(default_model_dir() if args.model == "shipped" else Path(args.model), device="cpu")
    stage = pipe.coarse
    sem_rate, ac_rate = stage.meta.semantic_rate, stage.meta.acoustic_rate
    window = int(stage.window_seconds * ac_rate)
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == args.split and r["duration"] >= stage.window_seconds]
    if not rows:
        raise SystemExit(f"{manifest}: no {args.split} recording of {stage.window_seconds} s or more")
    rows = rows[: args.max_files]
    tokens = [pipe.tokenize_prompt(args.corpus / r["path"]) for r in tqdm(rows, desc="tokenize")]
    out = []
    for seconds in args.first_window:
        sampling = AudioLMSampling(first_window=seconds)
        f = sampling.first_frames(ac_rate)
        for case, context in (("continuation", sampling.keep(window)), ("from scratch", 0)):
            f_case = min(f, window - context)
            sums = {"whole": [0.0, 0], "short": [0.0, 0]}
            for semantic, codes in tqdm(tokens, desc=f"{seconds:g} s {case}"):
                sem, ac = semantic[0].numpy(), codes[0].numpy()
                for a0 in range(0, ac.shape[1] - window + 1, window):
                    for name, length in (("whole", window), ("short", context + f_case)):
                        s0 = int(math.ceil(a0 * sem_rate / ac_rate - 1e-6))
                        n_sem = int(math.ceil(length * sem_rate / ac_rate - 1e-6))
                        crop = Window("", a0 / ac_rate, sem[s0: s0 + n_sem], ac[:, a0: a0 + length])
                        bits, count = scored_bits(stage, crop, context, context + f_case)
                        sums[name][0] += bits
                        sums[name][1] += count
            whole, short = (sums[k][0] / max(sums[k][1], 1) for k in ("whole", "short"))
            out.append({"first_window": seconds, "case": case, "context_frames": context, "scored_frames": f_case,
                        "codes": sums["whole"][1], "bits_whole": round(whole, 4), "bits_short": round(short, 4),
                        "cost_percent": round(100 * (short / whole - 1), 2)})
    print(f"\n{args.model}: {stage.name} stage ({'delay' if stage.delayed else 'flattened'}), window {window} "
          f"frames, {len(rows)} {args.split} files of {args.corpus}\n")
    common.print_table(out, [("first_window", "first window s", ".2f"), ("case", "case", "s"),
                             ("context_frames", "context", "d"), ("scored_frames", "frames", "d"),
                             ("codes", "codes", "d"), ("bits_whole", "bits whole", ".4f"),
                             ("bits_short", "bits short", ".4f"), ("cost_percent", "cost %", "+.2f")])
    path = common.write_results("first_window_quality", {"benchmark": "first_window_quality",
                                                         "settings": {k: str(v) for k, v in vars(args).items()},
                                                         "rows": out}, args.out)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
