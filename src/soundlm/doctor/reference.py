"""Reference curves: what a healthy run of each recipe stage logs, step by step, with a band around it.

The shipped asset (`assets/reference_curves.json`) is made by `recipes/reference_curves.py build`
from the recipe's own runs. Per stage it keeps the settings the curves belong to, the step the
reference run reached (a run past it is "past the end of the reference": no band is made up
there), and per metric the reference values with a band:

    center = running median of the reference over `window` logged points
    half   = max(relative x |center|, absolute) + 3 x noise
    noise  = the reference's own point-to-point spread around its local trend (`step_noise`)

`lower`/`upper` = center -/+ half. Which side is bad depends on the metric (`better`): a loss
above the band is behind the reference, one below it is ahead of it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from soundlm.doctor.runlog import BITS_PER_TOKEN, LM_STAGES, RunLog, Series

ASSET = "reference_curves.json"
VERSION = 1
WINDOW = 5  # logged points per running median
NOISE_SIGMAS = 3.0
MAX_POINTS = 160  # a dense series (every 10 steps) is thinned to about this many points

# Settings that change what a stage's curves look like: a run that differs in one compares only loosely.
KEY_SETTINGS: dict[str, tuple[str, ...]] = {
    "codec": ("preset", "batch_size", "segment_seconds", "lr", "adversarial"),
    "phonetic": ("batch_size", "lr", "conv_dim", "hidden", "layers"),
    **{s: ("preset", "batch_size", "lr", "warmup", "window_seconds", "pattern") for s in LM_STAGES},
}
KEY_SETTINGS["coarse"] += ("coarse_codebooks",)
KEY_SETTINGS["fine"] += ("coarse_codebooks",)


@dataclass(frozen=True)
class Tolerance:
    relative: float = 0.0  # of |center|
    absolute: float = 0.0  # in the metric's unit


def metric_rule(name: str) -> tuple[str, Tolerance] | None:
    """(better: "lower" | "higher" | "either", tolerance) of a metric the reference keeps; None for the others
    (learning rate, gradient norm, throughput, the number of codebooks trained)."""
    base = name.split("/")[-1]
    if re.fullmatch(r"si_sdr@\d+", base):
        return "higher", Tolerance(absolute=3.0)  # dB
    if re.fullmatch(r"codes_used@level\d+", base):
        return "higher", Tolerance(absolute=0.1)  # share of the reachable codes
    if re.fullmatch(r"code_perplexity@level\d+", base) or base == "perplexity":
        return "higher", Tolerance(relative=0.3)
    if re.fullmatch(r"energy@level\d+", base):
        return "either", Tolerance(absolute=0.05)
    if base in ("loss", "mel", "stft", "l1", "commit", "bits_per_token") or re.fullmatch(r"mel_distance@\d+", base):
        return "lower", Tolerance(relative=0.1)
    return None


def verdict_metrics(stage: str, names: list[str]) -> list[str]:
    """The metrics whose band decides "on track" for a stage (the others are drawn and used by the checks)."""
    if stage in LM_STAGES:
        wanted = ["heldout/loss", "train/loss"]
    elif stage == "phonetic":
        wanted = ["loss"]
    elif stage == "codec":
        levels = sorted(int(m.group(1)) for n in names if (m := re.fullmatch(r"eval/mel_distance@(\d+)", n)))
        top = levels[-1] if levels else 0
        # Not SI-SDR: the iSTFT codec does not keep the phase, so it sits near -35 dB whatever the quality.
        wanted = [f"eval/mel_distance@{top}", "train/mel"]
    else:
        wanted = []
    return [n for n in wanted if n in names]


@dataclass
class MetricReference:
    better: str  # lower | higher | either
    tolerance: Tolerance
    steps: list[int]
    values: list[float]
    lower: list[float]
    upper: list[float]

    def band_at(self, steps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(center, lower, upper) interpolated at `steps` (within the reference's steps)."""
        s = np.asarray(self.steps, dtype=np.float64)
        center = (np.asarray(self.lower) + np.asarray(self.upper)) / 2
        return (np.interp(steps, s, center), np.interp(steps, s, self.lower), np.interp(steps, s, self.upper))

    def to_json(self) -> dict:
        return {"better": self.better, "tolerance": asdict(self.tolerance), "steps": self.steps,
                "values": self.values, "lower": self.lower, "upper": self.upper}

    @classmethod
    def from_json(cls, data: dict) -> "MetricReference":
        return cls(better=data["better"], tolerance=Tolerance(**data["tolerance"]), steps=list(data["steps"]),
                   values=list(data["values"]), lower=list(data["lower"]), upper=list(data["upper"]))


@dataclass
class StageReference:
    stage: str
    settings: dict  # the KEY_SETTINGS of the reference run
    planned_steps: int
    reached_step: int  # the last logged step of the reference run: the band ends here
    source: str  # the run folder / command the curves come from
    verdict: list[str]
    metrics: dict[str, MetricReference] = field(default_factory=dict)
    unigram_entropy: float | None = None  # nats per target token (LM stages): what "stuck" means

    @property
    def complete(self) -> bool:
        return self.reached_step >= self.planned_steps

    def differences(self, settings: dict) -> list[str]:
        """'name: run value vs reference value' for each key setting that differs."""
        return [f"{k} {settings.get(k)!r} (reference {v!r})" for k, v in self.settings.items()
                if settings.get(k) != v]

    def to_json(self) -> dict:
        return {"settings": self.settings, "planned_steps": self.planned_steps, "reached_step": self.reached_step,
                "complete": self.complete, "source": self.source, "verdict": self.verdict,
                "unigram_entropy": self.unigram_entropy,
                "metrics": {k: m.to_json() for k, m in self.metrics.items()}}

    @classmethod
    def from_json(cls, stage: str, data: dict) -> "StageReference":
        return cls(stage=stage, settings=data["settings"], planned_steps=int(data["planned_steps"]),
                   reached_step=int(data["reached_step"]), source=data["source"], verdict=list(data["verdict"]),
                   metrics={k: MetricReference.from_json(m) for k, m in data["metrics"].items()},
                   unigram_entropy=data.get("unigram_entropy"))


@dataclass
class ReferenceCurves:
    recipe: str
    stages: dict[str, StageReference]
    band: str = ""  # how the band is made, in words (the asset says it too)

    def to_json(self) -> dict:
        return {"version": VERSION, "recipe": self.recipe, "band": self.band,
                "stages": {k: s.to_json() for k, s in self.stages.items()}}

    @classmethod
    def from_json(cls, data: dict, where: str = ASSET) -> "ReferenceCurves":
        if data.get("version") != VERSION:
            raise ValueError(f"{where}: reference curves version {data.get('version')!r}, this soundlm reads "
                             f"{VERSION}; rebuild it with recipes/reference_curves.py build")
        return cls(recipe=data["recipe"], band=data.get("band", ""),
                   stages={k: StageReference.from_json(k, s) for k, s in data["stages"].items()})


BAND_TEXT = (f"center = running median of the reference over {WINDOW} logged points; half-width = "
             f"max(relative x |center|, absolute) + {NOISE_SIGMAS:g} x the point-to-point noise (1.4826 x running "
             "median of |second difference| / sqrt(1.5)); the band ends at the metric's last reference step; "
             "tolerances per metric in `tolerance`")


def load_reference(path: str | Path | None = None) -> ReferenceCurves:
    """The shipped reference curves, or the asset at `path`."""
    if path is None:
        source = resources.files("soundlm") / "assets" / ASSET
        if not source.is_file():
            raise FileNotFoundError(f"soundlm/assets/{ASSET} is missing from this install; reinstall soundlm or "
                                    "build it with recipes/reference_curves.py build")
        return ReferenceCurves.from_json(json.loads(source.read_text(encoding="utf-8")))
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such reference curves file; leave --reference out for the shipped one")
    try:
        return ReferenceCurves.from_json(json.loads(path.read_text(encoding="utf-8")), str(path))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a reference curves file ({e!r}); rebuild it with "
                         "recipes/reference_curves.py build") from e


def running_median(values: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Centered running median over `window` points (shorter at the ends); non-finite points are skipped."""
    out = np.empty_like(values, dtype=np.float64)
    half = window // 2
    for i in range(len(values)):
        chunk = values[max(i - half, 0): i + half + 1]
        chunk = chunk[np.isfinite(chunk)]
        out[i] = np.median(chunk) if chunk.size else math.nan
    return out


def step_noise(values: np.ndarray) -> np.ndarray:
    """The point-to-point noise (a standard deviation) of a series around its local trend, at each point.

    From second differences d_i = v_i - (v_{i-1} + v_{i+1}) / 2, which a linear trend leaves out: for white
    noise of deviation s, d has deviation s * sqrt(1.5); 1.4826 x median |d| estimates that robustly.
    """
    if len(values) < 3:
        return np.zeros(len(values))
    d = np.abs(values[1:-1] - (values[:-2] + values[2:]) / 2)
    d = np.concatenate([d[:1], d, d[-1:]])  # the ends take their neighbour's
    return 1.4826 * running_median(d) / math.sqrt(1.5)


def make_band(series: Series, tolerance: Tolerance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(center, lower, upper) of a reference series (see the module docstring)."""
    center = running_median(series.values)
    noise = step_noise(series.values)
    half = np.maximum(tolerance.relative * np.abs(center), tolerance.absolute) + NOISE_SIGMAS * noise
    return center, center - half, center + half


def _thin(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indices of about `limit` of n points, evenly spaced, first and last kept."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, limit)).astype(int))


def _sig(x: float, digits: int = 5) -> float:
    return float(f"{x:.{digits}g}")


def stage_reference(run: RunLog, source: str, unigram_entropy: float | None = None) -> StageReference:
    """The reference of one finished or partial recipe run."""
    stage = run.stage
    metrics: dict[str, MetricReference] = {}
    for name, series in sorted(run.series.items()):
        rule = metric_rule(name)
        if rule is None or len(series) == 0:
            continue
        if not np.isfinite(series.values).all():
            raise ValueError(f"{run.folder}: {name} has NaN/inf values; a reference run must be healthy")
        better, tolerance = rule
        center, lower, upper = make_band(series, tolerance)
        keep = _thin(len(series))
        metrics[name] = MetricReference(
            better=better, tolerance=tolerance, steps=[int(s) for s in series.steps[keep]],
            values=[_sig(v) for v in series.values[keep]], lower=[_sig(v) for v in lower[keep]],
            upper=[_sig(v) for v in upper[keep]])
    if not metrics:
        raise ValueError(f"{run.folder}/metrics.jsonl has no metric the reference keeps; train the stage first")
    return StageReference(stage=stage, settings={k: run.settings.get(k) for k in KEY_SETTINGS[stage]},
                          planned_steps=run.planned_steps or run.last_step, reached_step=run.last_step,
                          source=source, verdict=verdict_metrics(stage, list(metrics)), metrics=metrics,
                          unigram_entropy=None if unigram_entropy is None else _sig(unigram_entropy))


def draw_curves(path: Path, names: list[str], ref: StageReference | None = None, run: RunLog | None = None,
                title: str = "") -> Path:
    """A PNG with one panel per metric: the reference band and curve (when `ref`), the run's curve (when `run`)."""
    from matplotlib.figure import Figure

    from soundlm.fileio import atomic_path

    if not names:
        raise ValueError("nothing to draw: no metric of the run or the reference was named")
    cols = min(len(names), 3)
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows + 0.4), dpi=80, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, name in zip(axes, names):
        m = ref.metrics.get(name) if ref is not None else None
        if m is not None:
            ax.fill_between(m.steps, m.lower, m.upper, color="#9ecae1", alpha=0.6, linewidth=0,
                            label="reference band")
            ax.plot(m.steps, m.values, color="#08519c", linewidth=1.0, label="reference")
            ax.axvline(m.steps[-1], color="#636363", linestyle=":", linewidth=1.0,
                       label="end of the reference")
        if run is not None and name in run.series:
            s = run.series[name]
            ax.plot(s.steps, s.values, color="#d94801", linewidth=1.0, label="this run")
        if name.endswith("loss") or "mel" in name:
            ax.set_yscale("log")  # losses fall by orders of magnitude early, then by percents
        ax.set_title(name, fontsize=9, loc="left")
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path


def reference_title(ref: StageReference) -> str:
    if ref.complete:
        return f"{ref.stage}: reference of {ref.reached_step} steps (complete)"
    return f"{ref.stage}: reference reaches step {ref.reached_step} of {ref.planned_steps}"


def figure_metrics(stage: str, names: list[str]) -> list[str]:
    """What a stage's figure shows: the verdict metrics, then codebook usage and bits per token where kept."""
    extra = [n for n in ("eval/codes_used@level1", "eval/codes_used@level8", "eval/energy@level1",
                         BITS_PER_TOKEN) if n in names]
    return verdict_metrics(stage, names) + extra
