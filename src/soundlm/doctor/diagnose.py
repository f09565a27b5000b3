"""`soundlm doctor RUN`: is a training run on track against its recipe stage's reference, and what is wrong if not.

`diagnose(folder)` reads the run (`runlog`), finds its stage's reference (`reference`),
compares the run's latest points with the reference band on the stage's verdict metrics,
runs every failure-mode check (`checks`) and returns a `Diagnosis`: plain lines and whether
any problem was found. Past the reference's last step there is no band: the doctor says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundlm.doctor import checks
from soundlm.doctor.checks import NOTE, PROBLEM, Finding
from soundlm.doctor.reference import ReferenceCurves, StageReference, draw_curves, figure_metrics, load_reference
from soundlm.doctor.runlog import RunLog, read_run

COMPARE_POINTS = 3  # the run's last logged points inside the reference that the band verdict averages


@dataclass
class BandStatus:
    """One verdict metric of the run at its latest step inside the reference."""

    name: str
    step: int
    value: float  # mean of the run's last COMPARE_POINTS points up to `step` (the band: its mean there)
    center: float
    lower: float
    upper: float
    state: str  # "on track" | "ahead" | "behind"
    past_end: bool  # the run has points after the reference's last step of this metric
    end: int  # that step


@dataclass
class Diagnosis:
    run: RunLog
    reference: StageReference | None
    recipe: str
    bands: list[BandStatus] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    unigram_entropy: float | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if f.level == PROBLEM]

    @property
    def on_track(self) -> bool:
        return not self.problems


def compare_band(run: RunLog, ref: StageReference, name: str) -> BandStatus | None:
    """The run's latest point of `name` inside the reference's steps against the band there; None when the run
    has no point inside them yet."""
    series, m = run.series.get(name), ref.metrics.get(name)
    if series is None or m is None:
        return None
    end = m.steps[-1]  # the band ends where the reference's points of this metric end
    inside = (series.steps >= m.steps[0]) & (series.steps <= end)
    if not inside.any():
        return None
    # The run's last few points against the band at the same steps: averaging both sides cuts the noise and
    # leaves no lag on a falling curve (a running median cut at the run's end would lag behind the band's).
    idx = np.flatnonzero(inside & np.isfinite(series.values))[-COMPARE_POINTS:]
    if idx.size == 0:
        return None
    steps = series.steps[idx].astype(np.float64)
    value = float(series.values[idx].mean())
    step = int(series.steps[idx[-1]])
    center, lower, upper = (float(x.mean()) for x in m.band_at(steps))
    if m.better == "lower":
        state = "behind" if value > upper else "ahead" if value < lower else "on track"
    elif m.better == "higher":
        state = "behind" if value < lower else "ahead" if value > upper else "on track"
    else:
        state = "on track" if lower <= value <= upper else "behind"
    return BandStatus(name=name, step=step, value=value, center=center, lower=lower, upper=upper, state=state,
                      past_end=bool((series.steps > end).any()), end=int(end))


def _unigram(run: RunLog, ref: StageReference | None, same_settings: bool) -> tuple[float | None, str]:
    """The unigram entropy of an LM run's targets, and where it came from (or why it is missing)."""
    from soundlm.doctor.unigram import stage_unigram_entropy

    store = run.settings.get("store")
    if store and (Path(store) / "store.json").exists():
        value = stage_unigram_entropy(store, run.lm_stage, run.settings.get("coarse_codebooks"),
                                      run.settings.get("exclude_split", "heldout"))
        return value, f"from {store}"
    if ref is not None and ref.unigram_entropy is not None and same_settings and run.stage == ref.stage:
        return ref.unigram_entropy, f"the reference's (the run's store {store} is not here)"
    return None, f"the run's store {store} is not here: the unigram check is skipped"


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else str(x)


def diagnose(folder: str | Path, curves: ReferenceCurves | None = None) -> Diagnosis:
    """Read the run in `folder` and say whether it is on track (see the module docstring)."""
    run = read_run(folder)
    curves = curves if curves is not None else load_reference()
    ref = curves.stages.get(run.stage)
    diag = Diagnosis(run=run, reference=ref, recipe=curves.recipe)
    planned = run.planned_steps
    lines = diag.lines
    lines.append(f"run: {run.folder} ({run.stage} stage, step {run.last_step}"
                 + (f" of {planned})" if planned else ")"))
    if run.bad_lines:
        lines.append(f"  {run.bad_lines} line(s) of metrics.jsonl could not be read and were skipped")
    same = True
    if ref is None:
        lines.append(f"reference: none for a {run.stage} run in the {curves.recipe} curves; failure-mode checks "
                     "only")
    else:
        extent = ("complete" if ref.complete else
                  f"reaches step {ref.reached_step} of its {ref.planned_steps}")
        lines.append(f"reference: {curves.recipe} {ref.stage} ({extent}; "
                     + ", ".join(f"{k} {v}" for k, v in ref.settings.items()) + ")")
        lines.append(f"  (each value: the mean of the run's last {COMPARE_POINTS} logged points inside the reference, "
                     "against the band's mean at those steps)")
        differs = ref.differences(run.settings)
        same = not differs
        if differs:
            lines.append("  settings differ from the reference's: " + "; ".join(differs)
                         + ": the band is a rough guide, not a verdict")
        for name in ref.verdict:
            status = compare_band(run, ref, name)
            if status is None:
                if name in run.series:
                    lines.append(f"  {name}: no logged point inside the reference's steps yet")
                continue
            diag.bands.append(status)
            lines.append(f"  {name}: {_fmt(status.value)} up to step {status.step}; reference band "
                         f"{_fmt(status.lower)} .. {_fmt(status.upper)} (reference {_fmt(status.center)}): "
                         f"{status.state if status.state != 'ahead' else 'ahead of the reference'}")
            if status.past_end:
                lines.append(f"  {name}: past the end of the reference after step {status.end}: no band "
                             "there")
            if status.state == "behind":
                level = PROBLEM if same else NOTE
                diag.findings.append(Finding(
                    level, "behind the reference",
                    f"{name} is {_fmt(status.value)} at step {status.step}, outside the reference band "
                    f"{_fmt(status.lower)} .. {_fmt(status.upper)}",
                    cause="see the checks below; with none of them flagged: a slower start (a lower learning "
                          "rate, a smaller batch) or different data",
                    fix="compare the settings with the recipe's (soundlm recipe speech-tiny) and the data with "
                        "its corpus; `soundlm doctor RUN --plot run.png` draws the run over the band"))
    if run.lm_stage is not None:
        diag.unigram_entropy, source = _unigram(run, ref, same)
        held = run.series.get("heldout/loss")
        if diag.unigram_entropy is None:
            lines.append(f"  unigram entropy: {source}")
        elif held is not None and len(held):
            lines.append(f"  unigram entropy of the targets: {diag.unigram_entropy:.3f} nats ({source}); the "
                         f"held-out loss is {diag.unigram_entropy - float(held.values[-1]):.3f} nats below it")
    for check in (checks.check_nonfinite, checks.check_codebooks, checks.check_first_level_energy,
                  checks.check_discriminator, checks.check_overfitting, checks.check_schedule,
                  checks.check_still_improving, checks.check_incomplete):
        diag.findings.extend(check(run, ref))
    diag.findings.extend(checks.check_unigram(run, ref, diag.unigram_entropy))
    for finding in sorted(diag.findings, key=lambda f: f.level != PROBLEM):
        lines.extend(finding.lines())
    problems = diag.problems
    lines.append("verdict: on track" if not problems else
                 f"verdict: {len(problems)} problem(s): " + ", ".join(f.name for f in problems))
    return diag


def plot_diagnosis(diag: Diagnosis, path: str | Path) -> Path:
    """The run's curves over its reference band (the run alone when there is no reference)."""
    names = list(diag.run.series)
    if diag.reference is not None:
        names = sorted(set(names) | set(diag.reference.metrics))
    stage = diag.run.stage.split(":")[-1]
    shown = [n for n in figure_metrics(stage, names) if n in diag.run.series] or sorted(diag.run.series)[:6]
    verdict = "on track" if diag.on_track else f"{len(diag.problems)} problem(s)"
    return draw_curves(Path(path), shown, diag.reference, diag.run, title=f"{diag.run.folder.name}: {verdict}")
