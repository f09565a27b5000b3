"""Reference training curves shipped with soundlm (`assets/reference_curves.json`) and the band a run is held to.

Each `ReferenceCurve` is one recipe training stage as the maintainers reran it
(`recipes/reference_curves.py`): its kind (codec, lm, phonetic), stage and preset, the
settings it ran with, a sentence saying exactly what it is (recipe, corpus, steps), and per
metric the logged steps and values. The band around a reference value is a tolerance, not a
spread over seeds (each reference is one run): `BAND` per metric, in the metric's own units,
around the value interpolated at the run's step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundlm.fileio import read_json

ASSET = Path(__file__).resolve().parents[1] / "assets" / "reference_curves.json"
REFERENCE_FORMAT = "soundlm-reference-curves"

# Metrics compared with the reference, per kind of run: (series name, higher is better, band).
# A band (below, above) is relative: [ref * (1 - below), ref * (1 + above)]; chosen so the step-to-step
# noise of a single run (smoothed train losses, fixed held-out crops) stays inside it.
COMPARED: dict[str, list[tuple[str, bool, tuple[float, float]]]] = {
    "lm": [("heldout/loss", False, (0.05, 0.05)), ("train/loss", False, (0.08, 0.08))],
    "codec": [("eval/mel_distance@8", False, (0.05, 0.05)), ("train/mel", False, (0.08, 0.08)),
              ("eval/codes_used@level1", True, (0.25, 1.0))],
    "phonetic": [("loss", False, (0.15, 0.15))],
}


@dataclass
class ReferenceCurve:
    name: str  # "lm-coarse", "codec", "phonetic"
    kind: str  # "lm" | "codec" | "phonetic"
    about: str  # what this run is: recipe, preset, corpus, steps
    settings: dict
    metrics: dict[str, tuple[list[int], list[float]]]  # series name -> (steps, values)
    stage: str | None = None
    preset: str | None = None
    unigram_entropy: float | None = None  # LM stages: nats per target token of the per-level unigram model
    extra: dict = field(default_factory=dict)  # e.g. the shipped model's final numbers, with their source

    def to_json(self) -> dict:
        return {"name": self.name, "kind": self.kind, "stage": self.stage, "preset": self.preset, "about": self.about,
                "settings": self.settings, "unigram_entropy": self.unigram_entropy, "extra": self.extra,
                "metrics": {k: {"steps": list(map(int, s)), "values": [round(float(x), 6) for x in v]}
                            for k, (s, v) in self.metrics.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "ReferenceCurve":
        return cls(name=d["name"], kind=d["kind"], stage=d.get("stage"), preset=d.get("preset"), about=d["about"],
                   settings=d.get("settings") or {}, unigram_entropy=d.get("unigram_entropy"),
                   extra=d.get("extra") or {},
                   metrics={k: (list(v["steps"]), list(v["values"])) for k, v in d["metrics"].items()})

    @property
    def last_step(self) -> int:
        return max(s[-1] for s, _ in self.metrics.values())

    def value_at(self, metric: str, step: int) -> float | None:
        """The reference value of `metric` at `step` (linear between logged steps; None outside them)."""
        if metric not in self.metrics:
            return None
        steps, values = self.metrics[metric]
        if not steps or step < steps[0] or step > steps[-1]:
            return None
        return float(np.interp(step, steps, values))


@dataclass
class ReferenceCurves:
    recipe: str
    made_by: str  # the commands that produced the curves
    curves: list[ReferenceCurve]
    version: int = 1

    def to_json(self) -> dict:
        return {"format": REFERENCE_FORMAT, "version": self.version, "recipe": self.recipe, "made_by": self.made_by,
                "curves": [c.to_json() for c in self.curves]}

    @classmethod
    def from_json(cls, d: dict, where: str | Path) -> "ReferenceCurves":
        if not isinstance(d, dict) or d.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"{where}: not a soundlm reference curves file (format {REFERENCE_FORMAT!r}); "
                             "rebuild it with `python recipes/reference_curves.py build`")
        return cls(recipe=d["recipe"], made_by=d.get("made_by", ""),
                   curves=[ReferenceCurve.from_json(c) for c in d["curves"]], version=int(d.get("version", 1)))

    def find(self, kind: str, stage: str | None = None) -> ReferenceCurve | None:
        """The reference of a kind of run (and LM stage); fine-tuning runs are held to their stage's LM curve only
        for the failure checks (a fine-tuning starts from a trained model)."""
        for c in self.curves:
            if c.kind == kind and (stage is None or c.stage == stage):
                return c
        return None


def load_reference(path: str | Path | None = None) -> ReferenceCurves:
    """The shipped reference curves (or another file written by `build_reference`)."""
    path = Path(path) if path is not None else ASSET
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no reference curves; reinstall soundlm or rebuild them with "
                                "`python recipes/reference_curves.py build`")
    return ReferenceCurves.from_json(read_json(path), path)


def band(value: float, relative: tuple[float, float]) -> tuple[float, float]:
    below, above = relative
    return value * (1 - below), value * (1 + above)


def smooth(values: np.ndarray, window: int = 5) -> np.ndarray:
    """Centred moving median (robust to single noisy train-loss points); same length."""
    if len(values) < 3:
        return values.copy()
    half = window // 2
    return np.array([np.median(values[max(0, i - half): i + half + 1]) for i in range(len(values))])


def thin(steps: np.ndarray, values: np.ndarray, max_points: int = 200) -> tuple[list[int], list[float]]:
    """At most `max_points` evenly spaced points (the asset stays small), last point kept."""
    if len(steps) <= max_points:
        return list(map(int, steps)), list(map(float, values))
    idx = np.unique(np.linspace(0, len(steps) - 1, max_points).round().astype(int))
    return list(map(int, steps[idx])), list(map(float, values[idx]))
