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

`--recipe musiclm-tiny` times that recipe's trainers instead (MuLan, codec, the conditioned semantic and
delay-pattern coarse stages, DPO) and its generation-bound steps from the packaged model of a shrunken run:
one `train prefer --self` caption (its samples and rewards), one `eval music` caption of the base and of the
tuned-against-base evaluation, and the speed test itself (8 s at batch 4; untrained weights cost what trained
ones do). Without WORK/store it first makes that shrunken run: `--corpus` cut to `--clips` clips (the held-out
ones kept), MuLan `--mulan`, 20 codec and LM steps, 2 captions for tuning and evaluation.

    OMP_NUM_THREADS=1 nice -n 19 .venv/bin/python bench/recipe_budget.py --recipe musiclm-tiny \
        --work /tmp/musiclm-budget --corpus /work/music-data/music400 --mulan /work/mulan-run/final
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


def recipe(inventory: str, pattern: str, name: str = "speech-tiny"):
    from soundlm.recipe import recipe_config, speech_tiny, with_wide_inventory

    if name != "speech-tiny":
        return recipe_config(name)
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
    from soundlm.recipe import codec_config, lm_config, lm_stages, phonetic_config
    from soundlm.store import StoreManifest
    from soundlm.train.codec import train_codec
    from soundlm.train.lm import train_lm
    from soundlm.train.phonetic import train_phonetic

    manifest, store = _work_manifest(work), work / "store"
    codebooks = int(StoreManifest.read(store).required("acoustic_num_codebooks", store))
    trainers = []
    if cfg.semantic_features == "phonetic":
        trainers.append(("phonetic encoder", cfg.phonetic_steps, lambda out, n: train_phonetic(
            replace(phonetic_config(cfg, manifest, out), steps=n, progress=False))))
    if cfg.conditioned:
        from soundlm.recipe_musiclm import mulan_config
        from soundlm.train.mulan import train_mulan

        trainers.append(("mulan", cfg.mulan_steps, lambda out, n: train_mulan(
            replace(mulan_config(cfg, manifest, out, "cpu"), steps=n))))
    trainers.append(("codec", cfg.codec_steps,
                     lambda out, n: train_codec(replace(codec_config(cfg, manifest, out, "cpu"), steps=n))))
    for stage in lm_stages(cfg):
        steps = getattr(cfg, f"{stage}_lm").steps
        trainers.append((f"lm {stage}", steps, lambda out, n, stage=stage: train_lm(
            replace(lm_config(cfg, stage, store, out, codebooks), steps=n, progress=False))))
    if cfg.conditioned:
        trainers.append(("prefer (DPO steps + pairs of 2 captions)", cfg.prefer_steps,
                         lambda out, n: _prefer_run(cfg, work, out, n)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, steps, run in trainers:
            # A warm-up run first: what a process pays once (store and clip caches, imports) is not a step's cost.
            run(Path(tmp) / f"{name}-warm-up", short)
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


def _work_manifest(work: Path) -> Path:
    """The corpus manifest a recipe work folder trained on (its own corpus/, or the --corpus in recipe.json)."""
    from soundlm.data import manifest_path
    from soundlm.fileio import read_json

    source = read_json(work / "recipe.json")["settings"].get("corpus_from")
    return manifest_path(source if source is not None else work / "corpus")


def _prefer_run(cfg, work: Path, out: Path, steps: int) -> None:
    """`train prefer --self` on the shrunken run's model at the recipe's settings, 2 captions, `steps` steps."""
    from soundlm.recipe_musiclm import prefer_config
    from soundlm.train.prefer import train_prefer

    train_prefer(replace(prefer_config(cfg, work / "model", _work_manifest(work), work / "instrument",
                                       work / "mulan", out, "cpu"), max_captions=2, steps=steps))


def shrunken_musiclm_run(cfg, work: Path, corpus: Path, mulan: Path, clips: int) -> None:
    """A musiclm-tiny run at the recipe's model sizes on `clips` clips of `corpus` (all held-out clips kept, so
    the evaluation has its captions), 20 codec and LM steps, 2 captions for tuning and evaluation."""
    from soundlm.data import manifest_path, read_manifest, write_manifest
    from soundlm.recipe import run_recipe

    rows = read_manifest(manifest_path(corpus))
    train = [r for r in rows if r["split"] == "train"][:clips]
    heldout = [r for r in rows if r["split"] != "train"][: max(clips // 4, 4)]
    subset = work / "subset"
    subset.mkdir(parents=True, exist_ok=True)
    root = manifest_path(corpus).parent.resolve()
    for r in train + heldout:  # the rows' paths stay relative: link each file into the subset's folder
        link = subset / r["path"]
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(root / r["path"])
    write_manifest(subset / "manifest.jsonl", train + heldout)
    lm = {f"{s}_lm": replace(getattr(cfg, f"{s}_lm"), steps=20) for s in ("semantic", "coarse", "fine")}
    run_recipe(replace(cfg, corpus_from=str(subset), mulan_from=str(mulan), codec_steps=20, instrument_steps=20,
                       prefer_captions=2, prefer_steps=4, music_eval_captions=2, **lm),
               work, work / "model", prompt_path=work / "prompt.wav", device="cpu")


def time_music_generation(cfg, work: Path) -> list[dict]:
    """Seconds of the generation-bound steps, from the shrunken run's packaged model: per `train prefer --self`
    caption, per `eval music` caption (base; tuned against base), and the speed test; times the recipe's counts."""
    import numpy as np
    import torch

    from soundlm.eval.sections.music import score_clip
    from soundlm.music.instrument import load_instrument_classifier
    from soundlm.music.pipeline import MusicLMPipeline
    from soundlm.music.rewards import request_from_caption
    from soundlm.music.sampler import MusicLMSampler
    from soundlm.pipeline import BatchRequest
    from soundlm.recipe_musiclm import time_generation
    from soundlm.train.prefer import build_reward

    model, caption = work / "model", "a slow, quiet church organ chorale in G minor, 3/4, 72 bpm"
    music = MusicLMPipeline.from_bundle(model, device="cpu")
    sampler = MusicLMSampler(music, music.audiolm.semantic)
    reward = build_reward(_prefer_cfg(cfg, work), "cpu")
    request = request_from_caption(caption)
    classifier = load_instrument_classifier(work / "instrument")
    with torch.inference_mode():
        text = music.mulan.embed_text([caption])[0].float().numpy()
    sampler.sample([caption], 1, 0)  # warm-up

    def one_prefer_caption() -> None:
        for s in sampler.sample([caption], cfg.prefer_samples, 1)[0]:
            reward.combine(reward.components(s.audio, s.sample_rate, request))

    def one_clip(condition: bool) -> None:
        if condition:
            audio = music.generate([caption], cfg.music_eval_seconds, seed=2)[0][0]
        else:
            audio = music.audiolm.generate_batch([BatchRequest(seconds=cfg.music_eval_seconds, seed=2)])[0][0]
        score_clip(np.asarray(audio), music.sample_rate, request, music.mulan, text, classifier)

    t_prefer = _timed(one_prefer_caption)
    t_cond, t_null = _timed(lambda: one_clip(True)), _timed(lambda: one_clip(False))
    speed = time_generation(model, "cpu")
    n = cfg.music_eval_captions
    rows = [{"step": "prefer pairs (per caption)", "seconds_each": round(t_prefer, 2), "count": cfg.prefer_captions,
             "estimate_seconds": round(t_prefer * cfg.prefer_captions, 1)},
            # base: caption + NULL; tuned against base: tuned caption + NULL + base caption
            {"step": "eval base (per caption)", "seconds_each": round(t_cond + t_null, 2), "count": n,
             "estimate_seconds": round((t_cond + t_null) * n, 1)},
            {"step": "eval tuned (per caption)", "seconds_each": round(2 * t_cond + t_null, 2), "count": n,
             "estimate_seconds": round((2 * t_cond + t_null) * n, 1)},
            {"step": f"speed ({speed.seconds:g} s at batch {speed.batch})", "seconds_each": speed.wall_seconds,
             "count": 1, "estimate_seconds": speed.wall_seconds, "real_time_factor": speed.real_time_factor,
             "quantize": speed.quantize}]
    for r in rows:
        print(f"{r['step']:<32} {r['seconds_each']:7.2f} s x {r['count']} = {r['estimate_seconds']:8.1f} s", flush=True)
    return rows


def _prefer_cfg(cfg, work: Path):
    from soundlm.recipe_musiclm import prefer_config

    return prefer_config(cfg, work / "model", _work_manifest(work), work / "instrument", work / "mulan",
                         work / "prefer-bench", "cpu")


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
    ap.add_argument("--recipe", default="speech-tiny", choices=("speech-tiny", "musiclm-tiny"))
    ap.add_argument("--corpus", type=Path, help="musiclm-tiny without WORK/store: the music corpus to cut")
    ap.add_argument("--mulan", type=Path, help="musiclm-tiny without WORK/store: the trained MuLan to reuse")
    ap.add_argument("--clips", type=int, default=40, help="musiclm-tiny: training clips of the shrunken run")
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
    cfg = recipe(args.inventory, args.acoustic_pattern, args.recipe)
    result = {"recipe": args.recipe, "inventory": args.inventory, "acoustic_pattern": cfg.acoustic_pattern,
              "threads": args.threads}
    if cfg.conditioned:
        if args.work is None:
            raise SystemExit("--recipe musiclm-tiny times a shrunken run: pass --work (and --corpus and --mulan to "
                             "make one)")
        if not (args.work / "store" / "store.json").is_file():
            if args.corpus is None or args.mulan is None:
                raise SystemExit(f"{args.work} has no store/: pass --corpus and --mulan to make the shrunken run")
            shrunken_musiclm_run(cfg, args.work, args.corpus, args.mulan, args.clips)
        from soundlm.recipe import _folder_megabytes

        result["package"] = {"total_mib": round(_folder_megabytes(args.work / "model"), 2)}
    else:
        result["package"] = package_size(cfg, SHIPPED / "codec", SHIPPED / "semantic_tokenizer")
    print("package", json.dumps(result["package"]), flush=True)
    if args.work is not None:
        result["trainers"] = time_trainers(cfg, args.work, args.short, args.long)
        if cfg.conditioned:
            result["trainers"] += time_music_generation(cfg, args.work)
        result["trainers_total_seconds"] = round(sum(r["estimate_seconds"] for r in result["trainers"]), 1)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    key = args.recipe if cfg.conditioned else f"{args.inventory}-{args.acoustic_pattern}"
    results[key] = result
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
