"""Build the reference curves from the recipe's own runs: `recipes/reference_curves.py build --work DIR`.

WORK is a `soundlm recipe` working folder (phonetic/, lm-semantic/, lm-coarse/, lm-fine/, and
codec/ when the recipe trained its codec); a codec run made apart (`soundlm train codec` with
the recipe's settings) is given with `codec_run`. A stage whose run folder is missing is left
out and named; a partial run gives a partial reference that says how far it reaches.
"""

from __future__ import annotations

from pathlib import Path

from soundlm.doctor.reference import (ASSET, BAND_TEXT, ReferenceCurves, StageReference, draw_curves,
                                      figure_metrics, reference_title, stage_reference)
from soundlm.doctor.runlog import LM_STAGES, STAGES, read_run

DEFAULT_ASSET = Path(__file__).resolve().parent.parent / "assets" / ASSET


def recipe_runs(work: Path, codec_run: Path | None = None) -> dict[str, Path]:
    """Stage -> run folder of a recipe working folder (those that exist)."""
    runs = {"codec": codec_run or work / "codec", "phonetic": work / "phonetic",
            **{s: work / f"lm-{s}" for s in LM_STAGES}}
    return {s: p for s, p in runs.items() if (p / "metrics.jsonl").exists()}


def build_reference(work: str | Path, out: str | Path = DEFAULT_ASSET, figures: str | Path | None = None,
                    codec_run: str | Path | None = None, recipe: str = "speech-tiny") -> ReferenceCurves:
    """Read the runs, write the asset (JSON) and one PNG per stage into `figures`; returns the curves."""
    from soundlm.doctor.unigram import stage_unigram_entropy
    from soundlm.fileio import write_json_atomic

    work = Path(work)
    runs = recipe_runs(work, Path(codec_run) if codec_run else None)
    if not runs:
        raise FileNotFoundError(f"{work}: no run folder with a metrics.jsonl (phonetic/, lm-semantic/, ...); give "
                                "the --work folder of `soundlm recipe`")
    stages: dict[str, StageReference] = {}
    for stage in STAGES:
        if stage not in runs:
            print(f"{stage}: no run under {work} (left out)")
            continue
        run = read_run(runs[stage])
        if run.stage != stage:
            raise ValueError(f"{runs[stage]} is a {run.stage} run, expected {stage}")
        entropy = None
        if stage in LM_STAGES:
            entropy = stage_unigram_entropy(run.settings["store"], stage, run.settings.get("coarse_codebooks"),
                                            run.settings.get("exclude_split", "heldout"))
        stages[stage] = stage_reference(run, str(runs[stage]), entropy)
        ref = stages[stage]
        print(f"{stage}: {reference_title(ref)}; metrics {', '.join(ref.verdict)}")
        if figures is not None:
            draw_curves(Path(figures) / f"{stage}.png", figure_metrics(stage, list(ref.metrics)), ref,
                        title=f"{recipe} {reference_title(ref)}")
    curves = ReferenceCurves(recipe=recipe, stages=stages, band=BAND_TEXT)
    write_json_atomic(out, curves.to_json())
    return curves
