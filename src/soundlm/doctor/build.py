"""Build the shipped reference curves from the reference runs (`python recipes/reference_curves.py build`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from soundlm.doctor.metrics import read_run
from soundlm.doctor.reference import ReferenceCurve, ReferenceCurves, smooth, thin
from soundlm.fileio import read_json, write_json_atomic

# What each kind of reference keeps (exact names, or a prefix ending in "@").
_KEEP = {"lm": ("heldout/loss", "train/loss", "train/lr"),
         "codec": ("train/loss", "train/mel", "train/stft", "train/commit", "train/perplexity", "eval/mel_distance@",
                   "eval/si_sdr@", "eval/codes_used@", "eval/code_perplexity@", "eval/energy@"),
         "phonetic": ("loss", "lr")}
_SETTINGS = {"lm": ("stage", "preset", "steps", "batch_size", "lr", "warmup", "min_lr_ratio", "window_seconds",
                    "coarse_codebooks", "pattern", "heldout_fraction", "exclude_split", "seed"),
             "codec": ("preset", "steps", "batch_size", "segment_seconds", "lr", "adversarial", "heldout_fraction",
                       "seed"),
             "phonetic": ("steps", "batch_size", "lr", "conv_dim", "hidden", "layers", "seed")}


def _kept(kind: str, name: str) -> bool:
    return any(name == k or (k.endswith("@") and name.startswith(k)) for k in _KEEP[kind])


def _corpus_line(work: Path) -> str:
    manifest = work / "corpus" / "manifest.jsonl"
    if not manifest.is_file():
        return "the recipe's corpus"
    import json

    rows = [json.loads(x) for x in manifest.read_text().splitlines()]
    train = [r for r in rows if r.get("split") != "heldout"]
    voices = len({r["speaker"] for r in train})
    return (f"the recipe's corpus ({len(rows)} utterances, {sum(r['duration'] for r in rows) / 3600:.2f} h; "
            f"{len(train)} utterances of {voices} training voices trained on)")


def build_reference(work: str | Path, asset: str | Path, figures: str | Path | None = None) -> ReferenceCurves:
    """Read WORK/{lm-semantic, lm-coarse, lm-fine, codec, phonetic} runs; write the asset (and figures)."""
    from soundlm.doctor.entropy import stage_unigram_entropy

    work = Path(work)
    corpus = _corpus_line(work)
    shipped = Path(__file__).resolve().parents[1] / "assets" / "speech-tiny" / "eval.json"
    final_bpt = {}
    if shipped.is_file():
        rows = read_json(shipped)["sections"].get("lm", {}).get("rows", [])
        final_bpt = {r["stage"]: r["bits_per_token"] for r in rows}
    curves = []
    for name in ("lm-semantic", "lm-coarse", "lm-fine", "codec", "phonetic"):
        run_dir = work / name
        if not (run_dir / "metrics.jsonl").is_file():
            continue
        run = read_run(run_dir)
        kind = run.kind
        settings = {k: run.config[k] for k in _SETTINGS[kind] if k in run.config}
        metrics = {}
        for metric, s in sorted(run.series.items()):
            if not _kept(kind, metric) or not np.isfinite(s.values).all():
                continue
            values = smooth(s.values) if metric in ("train/loss", "train/mel", "loss") else s.values
            metrics[metric] = thin(s.steps, values)
        planned = run.planned_steps
        steps_line = f"steps 0-{run.last_step}" + (f" of the recipe's {planned}" if planned else "")
        curve = ReferenceCurve(name=name, kind=kind, stage=run.stage, preset=settings.get("preset"),
                               settings=settings, metrics=metrics, about="")
        if kind == "lm":
            curve.unigram_entropy = stage_unigram_entropy(work / "store", run.stage,
                                                          run.config.get("coarse_codebooks"))
            curve.about = (f"speech-tiny recipe, {run.stage} LM, preset {settings.get('preset')}, batch "
                           f"{settings.get('batch_size')}, {settings.get('window_seconds')} s windows, lr "
                           f"{settings.get('lr')} (warmup {settings.get('warmup')}, cosine over {planned} steps); "
                           f"{steps_line}; {corpus}, tokenized with the shipped model's tokenizers; held-out loss on "
                           f"{settings.get('heldout_fraction')} of the training voices' records (id hash); one run, "
                           f"seed {settings.get('seed')}")
            if run.stage in final_bpt:
                curve.extra = {"shipped_heldout_voices_bits_per_token": final_bpt[run.stage],
                               "shipped_source": "src/soundlm/assets/speech-tiny/eval.json (soundlm eval lm on the 4 "
                                                 "held-out voices, after the recipe's full run)"}
        elif kind == "codec":
            curve.about = (f"speech-tiny recipe's codec settings (preset {settings.get('preset')}, batch "
                           f"{settings.get('batch_size')} x {settings.get('segment_seconds')} s, lr {settings.get('lr')}, "
                           f"no adversary, constant lr), {steps_line} (the recipe trains 20000); {corpus}; held-out "
                           f"clips: {settings.get('heldout_fraction')} of files; one run, seed {settings.get('seed')}")
        else:
            curve.about = (f"speech-tiny recipe's phonetic encoder (CTC, batch {settings.get('batch_size')}, lr "
                           f"{settings.get('lr')}, warmup-cosine over {planned} steps), {steps_line}; {corpus}; "
                           f"one run, seed {settings.get('seed')}")
        curves.append(curve)
    if not curves:
        raise FileNotFoundError(f"{work}: no reference runs (lm-semantic/, lm-coarse/, lm-fine/, codec/, phonetic/); "
                                "run `python recipes/reference_curves.py train` first")
    made_by = ("python recipes/reference_curves.py train --work work/ref --lm-stop-at 600 --codec-steps 2000 "
               "--phonetic-stop-at 600 && python recipes/reference_curves.py build --work work/ref")
    reference = ReferenceCurves(recipe="speech-tiny", made_by=made_by, curves=curves)
    write_json_atomic(asset, reference.to_json())
    if figures is not None:
        from soundlm.doctor.plot import plot_reference

        plot_reference(reference, figures)
    return reference

