"""Run folders with step checkpoints that survive kill -9.

Layout of a run folder:
    run/
      checkpoints/step_00000100/   one folder per saved step, written by `atomic_dir`
      checkpoints/step_00000100/train_state.pt   what resuming needs besides the model files
      checkpoints/latest           text file naming the newest complete step folder
      train_config.json            the run's settings, checked when it is resumed

Each step folder is new (never overwritten), and `latest` is replaced atomically after
the folder exists, so a reader always finds a complete checkpoint.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Sequence

from soundlm.fileio import atomic_dir, write_text_atomic

TRAIN_STATE = "train_state.pt"  # in each step folder: optimizer, step, RNG states, ...
TRAIN_CONFIG = "train_config.json"  # in the run folder


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


def resolve_model_folder(path: str | Path, is_model: Callable[[Path], bool] | None = None) -> Path | None:
    """The model folder a path names: the folder itself, a run's `final/`, or its latest checkpoint.

    `is_model` tells a model folder apart (default: it holds a config.json). None if none fits.
    """
    is_model = is_model or (lambda p: (p / "config.json").is_file())
    path = Path(path)
    for candidate in (path, path / "final", latest_checkpoint(path)):
        if candidate is not None and is_model(candidate):
            return candidate
    return None


def rng_state() -> dict:
    """Every random number generator a training step draws from (python, numpy, torch, CUDA)."""
    import random

    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved (exact resume)."""
    import random

    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_train_state(folder: str | Path) -> dict:
    """The `train_state.pt` of a checkpoint folder, its tensors on the CPU."""
    import torch

    return torch.load(Path(folder) / TRAIN_STATE, map_location="cpu", weights_only=False)


def refuse_changed_settings(run_dir: str | Path, settings: dict, locked: Sequence[str]) -> None:
    """Raise ValueError naming every `locked` setting that differs from RUN/train_config.json.

    Resuming with other values would silently mix two runs. Settings compare as JSON (a
    tuple equals the list it was saved as); a setting the file lacks is not compared: the
    run predates it. Nothing to compare (no file) passes.
    """
    import json

    from soundlm.fileio import read_json

    path = Path(run_dir) / TRAIN_CONFIG
    if not path.exists():
        return
    old = read_json(path)
    wanted = json.loads(json.dumps(settings))
    diffs = [f"{k}: {old[k]!r} -> {wanted.get(k)!r}" for k in locked if k in old and old[k] != wanted.get(k)]
    if diffs:
        raise ValueError(f"{path}: this run was started with other settings ({'; '.join(diffs)}); rerun with the "
                         "original settings to resume, or pass a new --out to start a new run")


def check_resume_settings(run_dir: str | Path, settings: dict, locked: Sequence[str]) -> None:
    """Refuse to resume a run whose `locked` settings changed; record the settings otherwise.

    The settings live in RUN/train_config.json (see `refuse_changed_settings`).
    """
    from soundlm.fileio import write_json_atomic

    refuse_changed_settings(run_dir, settings, locked)
    write_json_atomic(Path(run_dir) / TRAIN_CONFIG, settings)
