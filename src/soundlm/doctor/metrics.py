"""A training run as `soundlm doctor` reads it: RUN/metrics.jsonl as named series, RUN/train_config.json, its kind.

Series names: `kind/name` when a line has a `"kind"` (the codec's `train/mel`,
`eval/codes_used@level1`), else the logged name (`train/loss`, `heldout/loss` of the LM
stages and fine-tuning, `loss` of the phonetic encoder). Kinds of run: `codec`, `lm`
(`soundlm train lm`), `finetune` (a stage run of `soundlm finetune`), `phonetic`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundlm.checkpoint import TRAIN_CONFIG
from soundlm.fileio import read_json
from soundlm.train.metrics_log import METRICS


@dataclass
class Series:
    steps: np.ndarray  # [N] int, increasing
    values: np.ndarray  # [N] float (NaN and inf kept: the doctor reports them)

    def last(self) -> tuple[int, float]:
        return int(self.steps[-1]), float(self.values[-1])

    def at_or_before(self, step: int) -> "Series":
        keep = self.steps <= step
        return Series(self.steps[keep], self.values[keep])


@dataclass
class RunMetrics:
    path: Path
    kind: str
    config: dict
    series: dict[str, Series] = field(default_factory=dict)
    bad_lines: int = 0  # unparseable lines (a run killed mid-write)

    @property
    def last_step(self) -> int:
        return max((int(s.steps[-1]) for s in self.series.values() if len(s.steps)), default=0)

    @property
    def planned_steps(self) -> int | None:
        steps = self.config.get("steps")
        return int(steps) if isinstance(steps, (int, float)) else None

    @property
    def stage(self) -> str | None:
        return self.config.get("stage")

    @property
    def preset(self) -> str | None:
        if self.kind == "finetune":
            return self.config.get("base")
        return self.config.get("preset")

    def get(self, *names: str) -> Series | None:
        """The first of `names` the run logged (with at least one point)."""
        for name in names:
            s = self.series.get(name)
            if s is not None and len(s.steps):
                return s
        return None


def _kind(config: dict, names: set[str]) -> str:
    if config.get("kind") == "finetune":
        return "finetune"
    if "stage" in config:
        return "lm"
    if "segment_seconds" in config or "codec" in config or any(n.startswith("eval/mel_distance") for n in names):
        return "codec"
    if "conv_dim" in config or "speed_perturb" in config:
        return "phonetic"
    if "heldout/loss" in names:
        return "lm"
    raise ValueError("cannot tell which trainer wrote this run (no train_config.json with a known setting, and "
                     f"metrics {sorted(names)[:6]}); pass a run folder of `soundlm train codec|lm|phonetic` or "
                     "`soundlm finetune` (its runs/STAGE folders)")


def read_run(run_dir: str | Path) -> RunMetrics:
    """Parse RUN/metrics.jsonl (and RUN/train_config.json) into series."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS
    if not path.is_file():
        hint = " (a `soundlm finetune` folder: pass one of its runs/STAGE folders)" if (run_dir / "runs").is_dir() \
            else ""
        raise FileNotFoundError(f"{run_dir}: no {METRICS}{hint}; pass the --out folder of a training run")
    config = read_json(run_dir / TRAIN_CONFIG) if (run_dir / TRAIN_CONFIG).is_file() else {}
    points: dict[str, dict[int, float]] = {}
    bad = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            step = int(row["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1
            continue
        prefix = f"{row['kind']}/" if isinstance(row.get("kind"), str) else ""
        for name, value in row.items():
            if name in ("step", "kind") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            # A resumed run may log a step twice (before truncation existed): the later line wins.
            points.setdefault(prefix + name, {})[step] = float(value)
    if not points:
        raise ValueError(f"{path}: no metric values; the run has not logged a step yet")
    series = {name: Series(np.array(sorted(p), dtype=np.int64), np.array([p[s] for s in sorted(p)], dtype=np.float64))
              for name, p in points.items()}
    return RunMetrics(path=run_dir, kind=_kind(config, set(series)), config=config, series=series, bad_lines=bad)


def bits(nats: float) -> float:
    return nats / math.log(2)
