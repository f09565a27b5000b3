"""`soundlm doctor RUN`: is a training run on track against the reference, and is it failing in a known way?

`diagnose(run_dir)` reads the run (`metrics.read_run`), compares its latest values with the
reference band of its recipe stage (`reference.COMPARED`, at the same step), runs every
failure check (`checks`) and returns a `Diagnosis` whose `lines()` are the report:

    run: lm run, stage coarse, preset mini, step 600 of 2000
    on track: heldout/loss 4.512 at step 600, reference band [4.380, 4.841] (lm-coarse: ...)
    PROBLEM (overfitting): ... Likely cause: ... Fix: ...
    verdict: ...
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from soundlm.doctor import checks
from soundlm.doctor.metrics import RunMetrics, bits, read_run
from soundlm.doctor.reference import COMPARED, ReferenceCurve, ReferenceCurves, band, load_reference, smooth

# Settings that change a run's curves; a run that differs from its reference in one is compared with a caveat.
_SHAPING = {"lm": ("preset", "batch_size", "lr", "window_seconds", "coarse_codebooks", "pattern"),
            "codec": ("preset", "batch_size", "segment_seconds", "lr", "adversarial"),
            "phonetic": ("batch_size", "lr", "steps")}


@dataclass
class Comparison:
    metric: str
    step: int
    value: float
    reference: float
    low: float
    high: float
    higher_is_better: bool

    @property
    def verdict(self) -> str:
        if self.low <= self.value <= self.high:
            return "on track"
        better = self.value > self.high if self.higher_is_better else self.value < self.low
        return "ahead" if better else "behind"

    def line(self) -> str:
        return (f"{self.verdict}: {self.metric} {self.value:.4g} at step {self.step}, reference {self.reference:.4g}, "
                f"band [{self.low:.4g}, {self.high:.4g}]")


@dataclass
class Diagnosis:
    run: str
    kind: str
    summary: str  # "lm run, stage coarse, preset mini, step 600 of 2000"
    reference: str | None  # the reference curve compared against, or None
    comparisons: list[Comparison] = field(default_factory=list)
    findings: list[checks.Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def on_track(self) -> bool | None:
        """No problem found and no compared metric behind its band (None when nothing could be compared)."""
        if self.findings:
            return False
        if not self.comparisons:
            return None
        return all(c.verdict != "behind" for c in self.comparisons)

    def verdict(self) -> str:
        if self.findings:
            return f"verdict: not healthy: {len(self.findings)} problem(s) above"
        if self.on_track is None:
            return "verdict: no known failure found; nothing to compare with a reference at this step"
        if self.on_track:
            return "verdict: on track"
        behind = ", ".join(c.metric for c in self.comparisons if c.verdict == "behind")
        return (f"verdict: behind the reference in {behind}; no known failure found (a slower run with other "
                "settings, or a problem not in the checklist)")

    def lines(self) -> list[str]:
        out = [f"run: {self.summary}"]
        if self.comparisons:
            out.append(f"reference: {self.reference} (the run's own data and settings may differ: the band is a "
                       "guide, not a guarantee)")
        out += [c.line() for c in self.comparisons]
        out += [f.line() for f in self.findings]
        out += [f"note: {n}" for n in self.notes]
        return out + [self.verdict()]

    def to_json(self) -> dict:
        return {**asdict(self), "on_track": self.on_track, "verdict": self.verdict()}


def _summary(run: RunMetrics) -> str:
    parts = [f"{run.kind} run"]
    if run.stage:
        parts.append(f"stage {run.stage}")
    if run.kind == "finetune":
        parts.append(f"base {run.config.get('base')}")
        if run.config.get("full"):
            parts.append("full fine-tuning")
        else:
            parts.append(f"LoRA rank {run.config.get('rank')}")
    elif run.preset:
        parts.append(f"preset {run.preset}")
    planned = run.planned_steps
    parts.append(f"step {run.last_step}" + (f" of {planned}" if planned else ""))
    return ", ".join(parts)


def _unigram(run: RunMetrics, curve: ReferenceCurve | None, notes: list[str]) -> float | None:
    """The stage's unigram entropy: from the run's own store when it is here, else the reference's."""
    if run.kind not in ("lm", "finetune"):
        return None
    store = run.config.get("store")
    if store and Path(store).is_dir():
        from soundlm.doctor.entropy import stage_unigram_entropy

        exclude = run.config.get("exclude_split", "heldout") if run.kind == "lm" else None
        try:
            return stage_unigram_entropy(store, run.stage, run.config.get("coarse_codebooks"), exclude_split=exclude)
        except (ValueError, FileNotFoundError) as e:
            notes.append(f"could not read the run's store for the unigram entropy ({e})")
    if curve is not None and curve.unigram_entropy is not None:
        notes.append(f"unigram entropy {curve.unigram_entropy:.3f} nats/token taken from the reference's store (the "
                     f"run's store {store!r} is not here)")
        return curve.unigram_entropy
    return None


def _compare(run: RunMetrics, curve: ReferenceCurve, notes: list[str]) -> list[Comparison]:
    out = []
    for metric, higher, rel in COMPARED.get(curve.kind, []):
        s = run.get(metric)
        if s is None or metric not in curve.metrics:
            continue
        # The latest logged step the reference covers; train losses compared smoothed, as the reference is.
        values = smooth(s.values) if metric.startswith("train/") or metric == "loss" else s.values
        inside = np.flatnonzero(s.steps <= curve.last_step)
        if inside.size == 0:
            continue
        i = int(inside[-1])
        ref = curve.value_at(metric, int(s.steps[i]))
        if ref is None or not np.isfinite(values[i]):
            continue
        low, high = band(ref, rel)
        out.append(Comparison(metric, int(s.steps[i]), float(values[i]), ref, low, high, higher))
    if run.last_step > curve.last_step:
        notes.append(f"the reference ends at step {curve.last_step}: later steps are not compared")
    return out


def diagnose(run_dir: str | Path, reference: ReferenceCurves | None = None) -> Diagnosis:
    """Compare a run with its reference curve and run every failure check on it."""
    run = read_run(run_dir)
    reference = reference or load_reference()
    notes: list[str] = []
    if run.bad_lines:
        notes.append(f"{run.bad_lines} unreadable line(s) in metrics.jsonl were skipped")
    ref_kind = "lm" if run.kind == "finetune" else run.kind
    curve = reference.find(ref_kind, run.stage if ref_kind == "lm" else None)
    diagnosis = Diagnosis(run=str(run.path), kind=run.kind, summary=_summary(run),
                          reference=f"{curve.name}: {curve.about}" if curve is not None else None, notes=notes)
    if run.kind == "finetune":
        notes.append("a fine-tuning run starts from a trained model: it is checked for failures, not compared with "
                     "the from-scratch reference curve")
    elif curve is None:
        notes.append(f"no reference curve for a {run.kind} run{' of stage ' + run.stage if run.stage else ''}")
    else:
        differs = [k for k in _SHAPING.get(run.kind, ()) if k in run.config and k in curve.settings
                   and run.config[k] != curve.settings[k]]
        if differs:
            notes.append("settings differ from the reference's (" + "; ".join(
                f"{k}: {run.config[k]!r} vs {curve.settings[k]!r}" for k in differs) + "): the band is approximate")
        diagnosis.comparisons = _compare(run, curve, notes)
    held = run.get("heldout/loss")
    if held is not None and run.kind in ("lm", "finetune"):
        step, value = held.last()
        notes.append(f"held-out loss {value:.4f} nats/token = {bits(value):.3f} bits/token at step {step}")
    unigram = _unigram(run, curve, notes)
    codebook_size = (run.config.get("codec") or {}).get("codebook_size")
    found = [checks.check_non_finite(run), checks.check_lr_finished_early(run),
             checks.check_loss_at_unigram(run, unigram), checks.check_heldout_rising(run),
             checks.check_codebook_collapse(run, codebook_size), checks.check_first_level_energy(run),
             checks.check_discriminator(run)]
    # A fine-tuning run keeps its best held-out weights itself: a rising held-out loss there is what early stopping
    # is for, not a failure of the result.
    if run.kind == "finetune" and any(f is not None and f.check == "overfitting" for f in found):
        found = [f for f in found if f is None or f.check != "overfitting"]
        notes.append("the held-out loss rose after its best evaluation; early stopping kept the best weights")
    diagnosis.findings = [f for f in found if f is not None]
    return diagnosis
