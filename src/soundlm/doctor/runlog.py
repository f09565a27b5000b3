"""A training run as the doctor reads it: which recipe stage it is, its settings and its metric series.

Every soundlm trainer writes RUN/train_config.json (its settings) and RUN/metrics.jsonl
(`soundlm.train.metrics_log`). A series is named as TensorBoard names it: `kind/name` for
the codec's lines (`train/mel`, `eval/codes_used@level1`), the name itself otherwise
(`train/loss`, `heldout/loss` of the LM stages, `loss` and `lr` of the phonetic encoder).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from soundlm.checkpoint import TRAIN_CONFIG
from soundlm.train.metrics_log import METRICS

LM_STAGES = ("semantic", "coarse", "fine")
STAGES = ("codec", "phonetic", *LM_STAGES)  # the recipe stages a reference can cover
BITS_PER_TOKEN = "heldout/bits_per_token"  # derived: heldout/loss (nats) / ln 2


@dataclass
class Series:
    steps: np.ndarray  # [N] int64, increasing
    values: np.ndarray  # [N] float64; NaN/inf kept (the doctor reports them)

    def __len__(self) -> int:
        return int(self.steps.shape[0])


@dataclass
class RunLog:
    folder: Path
    stage: str  # one of STAGES; a fine-tuning run is "finetune:<stage>"
    settings: dict
    series: dict[str, Series] = field(default_factory=dict)
    bad_lines: int = 0  # lines of metrics.jsonl that are not JSON objects with a step

    @property
    def last_step(self) -> int:
        return max((int(s.steps[-1]) for s in self.series.values() if len(s)), default=0)

    @property
    def planned_steps(self) -> int | None:
        steps = self.settings.get("steps")
        return int(steps) if isinstance(steps, (int, float)) else None

    @property
    def lm_stage(self) -> str | None:
        """semantic / coarse / fine for an LM stage run or a fine-tuning run of one; None otherwise."""
        name = self.stage.split(":", 1)[-1]
        return name if name in LM_STAGES else None


def run_stage(settings: dict, where: Path) -> str:
    """Which trainer wrote a run, from its train_config.json."""
    if settings.get("kind") == "finetune" and settings.get("stage") in LM_STAGES:
        return f"finetune:{settings['stage']}"
    if settings.get("stage") in LM_STAGES and "store" in settings:
        return str(settings["stage"])
    if "codec" in settings and "segment_seconds" in settings:
        return "codec"
    if "conv_dim" in settings and "speed_perturb" in settings:
        return "phonetic"
    raise ValueError(f"{where}: not the train_config.json of a soundlm codec, phonetic-encoder, LM-stage or "
                     "fine-tuning run; point soundlm doctor at the folder that `soundlm train ...` wrote")


def read_metrics(path: Path) -> tuple[dict[str, Series], int]:
    """The series of a metrics.jsonl and how many of its lines could not be read (a line cut by kill -9)."""
    points: dict[str, dict[int, float]] = {}
    bad = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)  # json reads the NaN / Infinity that json.dumps writes
            step = int(row["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1
            continue
        kind = row.get("kind")
        for name, value in row.items():
            if name in ("step", "kind") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            key = f"{kind}/{name}" if isinstance(kind, str) and kind else name
            points.setdefault(key, {})[step] = float(value)  # a step logged twice keeps its last value
    series = {}
    for key, by_step in points.items():
        steps = sorted(by_step)
        series[key] = Series(np.array(steps, dtype=np.int64), np.array([by_step[s] for s in steps], dtype=np.float64))
    return series, bad


def read_run(folder: str | Path) -> RunLog:
    """Read RUN/train_config.json and RUN/metrics.jsonl; LM runs get `heldout/bits_per_token` too."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such run folder; give the folder a `soundlm train ...` run wrote")
    config_path, metrics_path = folder / TRAIN_CONFIG, folder / METRICS
    if not config_path.exists():
        raise FileNotFoundError(f"{config_path} is missing: {folder} is not a training run folder (point soundlm "
                                "doctor at RUN, the folder holding checkpoints/ and metrics.jsonl)")
    if not metrics_path.exists():
        raise FileNotFoundError(f"{metrics_path} is missing: the run has not logged a step yet; rerun soundlm "
                                "doctor after its first logged steps")
    try:
        settings = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path}: not valid JSON ({e}); restore it from the run's latest checkpoint "
                         "settings or rerun the training command") from e
    series, bad = read_metrics(metrics_path)
    run = RunLog(folder=folder, stage=run_stage(settings, config_path), settings=settings, series=series,
                 bad_lines=bad)
    held = series.get("heldout/loss")
    if run.lm_stage is not None and held is not None:
        series[BITS_PER_TOKEN] = Series(held.steps, held.values / math.log(2))
    return run
