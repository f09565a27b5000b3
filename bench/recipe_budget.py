"""What a full `soundlm recipe speech-tiny` run would cost, from short timed runs: wall time and package size.

Time: every trainer runs at the recipe's own settings (`soundlm.recipe.phonetic_config`, `codec_config`,
`lm_config`: presets, batch, windows, pattern) for `--short` and then `--long` steps on the corpus and
token store of a shrunken recipe run (`--work`, e.g. the smoke run in docs/RESULTS.md section 1), with
`--threads` torch threads. Seconds per step = (t_long - t_short) / (long - short), which cancels what a run
costs once (data scan, model build, export, the phonetic encoder's final error rate); the recipe's time is
that per step times its steps, plus the once-per-run part of the long run. Step cost does not depend on the
corpus size (fixed batch and crop), so the small corpus times the full recipe's steps. On a shared machine
the rates move with the load (each row records the 1-minute load average after it): run it twice.

Size: the recipe's three stage models built at its presets and vocabulary sizes (untrained: the size
does not depend on the weights), written as a bundle with the shipped model's semantic tokenizer and codec
(the recipe's presets; the codec is 8 x 1024 either way) and converted to float16 as the recipe ships it
(`export_bundle_fp16`).

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/recipe_budget.py --work WORK \
        --inventory wide --acoustic-pattern delay
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py would shadow the stdlib `tokenize`: put this folder last on sys.path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

ROOT = _HERE.parent

SHIPPED = ROOT / "src" / "soundlm" / "assets" / "speech-tiny"


def recipe(inventory: str, pattern: str):
    from soundlm.recipe import speech_tiny, with_wide_inventory

    cfg = speech_tiny()
    if inventory == "wide":
        cfg = with_wide_inventory(cfg)
    return replace(cfg, acoustic_pattern=pattern)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_trainers(cfg, work: Path, short: int, long: int) -> list[dict]:
    """Per trainer: seconds per step from a `short` and a `long` run, and the recipe's steps at that rate."""
    from soundlm.data import manifest_path
    from soundlm.recipe import LM_STAGES, codec_config, lm_config, phonetic_config
    from soundlm.train.codec import train_codec
    from soundlm.train.lm import train_lm
    from soundlm.train.phonetic import train_phonetic

    manifest, store = manifest_path(work / "corpus"), work / "store"
    trainers = [("phonetic encoder", cfg.phonetic_steps,
                 lambda out, n: train_phonetic(replace(phonetic_config(cfg, manifest, out), steps=n, progress=False))),
                ("codec", cfg.codec_steps,
                 lambda out, n: train_codec(replace(codec_config(cfg, manifest, out, "cpu"), steps=n)))]
    for stage in LM_STAGES:
        steps = getattr(cfg, f"{stage}_lm").steps
        trainers.append((f"lm {stage}", steps, lambda out, n, stage=stage: train_lm(
            replace(lm_config(cfg, stage, store, out), steps=n, progress=False))))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, steps, run in trainers:
            t_short = _timed(lambda: run(Path(tmp) / f"{name}-{short}", short))
            t_long = _timed(lambda: run(Path(tmp) / f"{name}-{long}", long))
            per_step = (t_long - t_short) / (long - short)
            once = max(t_long - long * per_step, 0.0)
            rows.append({"step": name, "recipe_steps": steps, "load_average_1min": round(os.getloadavg()[0], 2),
                         "seconds_short": round(t_short, 2), "seconds_long": round(t_long, 2),
                         "seconds_per_step": round(per_step, 4),
                         "steps_per_second": round(1 / per_step, 2) if per_step > 0 else None,
                         "estimate_seconds": round(steps * per_step + once, 1)})
            print(f"{name:<18} {per_step:7.3f} s/step x {steps} = {rows[-1]['estimate_seconds']:8.1f} s", flush=True)
    return rows


def package_size(cfg, codec_dir: Path, tokenizer_dir: Path) -> dict:
    """MiB of each part of the fp16 package the recipe would ship (untrained stages at its presets)."""
    from soundlm.pretrained import export_bundle_fp16
    from soundlm.recipe import LM_STAGES
    from soundlm.stages import build_stage, write_stage_files
    from soundlm.store import StoreManifest

    from soundlm.codec import load_codec

    codec = load_codec(str(codec_dir))
    # Both streams run at 50 Hz in speech-tiny (phonetic encoder and codec).
    manifest = StoreManifest(semantic_frame_rate=50.0, semantic_vocab_size=cfg.clusters,
                             acoustic_frame_rate=float(codec.frame_rate), acoustic_num_codebooks=codec.total_codebooks,
                             acoustic_codebook_size=codec.codebook_size)
    with tempfile.TemporaryDirectory() as tmp:
        bundle, out = Path(tmp) / "bundle", Path(tmp) / "fp16"
        for stage in LM_STAGES:
            s = getattr(cfg, f"{stage}_lm")
            built = build_stage(stage, manifest, preset=s.preset or cfg.lm_preset,
                                pattern="flatten" if stage == "semantic" else cfg.acoustic_pattern,
                                window_seconds=s.window_seconds, coarse_codebooks=cfg.coarse_codebooks)
            (bundle / stage).mkdir(parents=True)
            write_stage_files(built.model, bundle / stage, built.meta, built.layout)
        shutil.copytree(codec_dir, bundle / "codec")
        shutil.copytree(tokenizer_dir, bundle / "semantic_tokenizer")
        export_bundle_fp16(bundle, out)
        parts = {p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20
                 for p in sorted(out.iterdir()) if p.is_dir()}
    return {"parts_mib": {k: round(v, 2) for k, v in parts.items()}, "total_mib": round(sum(parts.values()), 2),
            "total_mb": round(sum(parts.values()) * 2**20 / 1e6, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="a (shrunken) recipe work folder with corpus/ and store/; "
                                              "without it only the package size is computed")
    ap.add_argument("--inventory", default="classic", choices=("classic", "wide"))
    ap.add_argument("--acoustic-pattern", default="flatten", choices=("flatten", "delay"))
    ap.add_argument("--short", type=int, default=4)
    ap.add_argument("--long", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "recipe_budget.json")
    args = ap.parse_args()
    if not 0 < args.short < args.long:
        raise SystemExit(f"need 0 < --short < --long, got {args.short} and {args.long}")
    import torch

    torch.set_num_threads(args.threads)
    cfg = recipe(args.inventory, args.acoustic_pattern)
    result = {"inventory": args.inventory, "acoustic_pattern": args.acoustic_pattern, "threads": args.threads,
              "package": package_size(cfg, SHIPPED / "codec", SHIPPED / "semantic_tokenizer")}
    print("package", json.dumps(result["package"]), flush=True)
    if args.work is not None:
        result["trainers"] = time_trainers(cfg, args.work, args.short, args.long)
        result["trainers_total_seconds"] = round(sum(r["estimate_seconds"] for r in result["trainers"]), 1)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results[f"{args.inventory}-{args.acoustic_pattern}"] = result
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
