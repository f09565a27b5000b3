"""The training log every trainer writes: RUN/metrics.jsonl, optionally TensorBoard (RUN/tb/).

metrics.jsonl holds one JSON object per logged step, `{"step": N, ...values}` (with
`"kind"` after the step when the trainer names one, e.g. "train" / "eval"). A resumed run
first cuts the file back to the step it resumes from: lines a killed run wrote after its
last checkpoint are logged again by the steps it redoes, and must not appear twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from tqdm.auto import tqdm

from soundlm.fileio import write_text_atomic

METRICS = "metrics.jsonl"


def truncate_metrics(path: str | Path, step: int) -> None:
    """Drop the lines of a metrics.jsonl logged after `step`, and any line cut short by kill -9."""
    path = Path(path)
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except json.JSONDecodeError:
            continue
    if len(keep) != len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in keep))


class MetricsLog:
    """Appends to RUN/metrics.jsonl (and TensorBoard) for a run that starts or resumes at `start`.

    `enabled=False` makes every call a no-op (the non-main processes of a distributed run).
    """

    def __init__(self, run_dir: str | Path, start: int, tensorboard: bool = False, enabled: bool = True):
        self.path = Path(run_dir) / METRICS
        self.file: TextIO | None = None
        self.tb = None
        if not enabled:
            return
        truncate_metrics(self.path, start)
        self.file = open(self.path, "a", encoding="utf-8")
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                tqdm.write("tensorboard is not installed: metrics go to metrics.jsonl only")
            else:
                # Events of the steps after `start` are written again by this run: drop the old ones.
                self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=start + 1)

    def log(self, step: int, values: dict[str, float], kind: str | None = None) -> None:
        """One line `{"step", ["kind",] **values}`; TensorBoard tags are `kind/name` (or `name`)."""
        if self.file is None:
            return
        line = {"step": step, **({"kind": kind} if kind else {}), **values}
        self.file.write(json.dumps(line) + "\n")
        # Flushed at once: a run killed later keeps every line up to its last checkpoint.
        self.file.flush()
        if self.tb is not None:
            for name, value in values.items():
                self.tb.add_scalar(f"{kind}/{name}" if kind else name, value, step)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
