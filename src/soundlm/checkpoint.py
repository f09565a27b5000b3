"""Run folders with step checkpoints that survive kill -9.

Layout of a run folder:
    run/
      checkpoints/step_00000100/   one folder per saved step, written by `atomic_dir`
      checkpoints/latest           text file naming the newest complete step folder

Each step folder is new (never overwritten), and `latest` is replaced atomically after
the folder exists, so a reader always finds a complete checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

from soundlm.fileio import atomic_dir, write_text_atomic


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def save_step_checkpoint(run_dir: str | Path, step: int, write: Callable[[Path], None], keep: int = 3) -> Path:
    """Write a checkpoint for `step` with `write(folder)` and point `latest` at it.

    Keeps the newest `keep` step folders and deletes older ones.
    """
    ckpt_root = Path(run_dir) / "checkpoints"
    target = ckpt_root / step_dir_name(step)
    with atomic_dir(target) as tmp:
        write(tmp)
    write_text_atomic(ckpt_root / "latest", target.name + "\n")
    steps = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None if it has none."""
    ckpt_root = Path(run_dir) / "checkpoints"
    pointer = ckpt_root / "latest"
    if pointer.exists():
        candidate = ckpt_root / pointer.read_text().strip()
        if candidate.is_dir():
            return candidate
    steps = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    return steps[-1] if steps else None
