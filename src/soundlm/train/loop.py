"""The resumable training loop that the codec, phonetic-encoder, text-LM and AudioPaLM trainers run on.

A `Trainer` says how to train one step, what to log and what its checkpoints hold;
`run_training` does the rest, the same way for each of them:

- resume from the run's latest checkpoint: the trainer restores its model and optimizer,
  the loop the step number and every RNG state;
- train steps `start .. end - 1` (`stop_at` ends a call early, for time-sliced jobs; the
  trainer's schedules still span `steps`), with a progress bar; a trainer that says it is
  done (`should_stop`: early stopping) ends the run at that step, and a resumed run that had
  stopped stays stopped;
- RUN/metrics.jsonl, cut back to `start` first (`MetricsLog`);
- a checkpoint every `ckpt_every` steps and at the end of the call:
  `checkpoints/step_XXXXXXXX/` holds the trainer's model files and `train_state.pt`
  (`{"step", "rng", **trainer.train_state(step)}`); the newest `keep` are kept.

Resume is exact when the batch of a step is a pure function of (seed, step): k steps, then
resume to N, gives the losses and weights of N steps straight.

Under a launcher (`soundlm.distributed`: torchrun, `accelerate launch --multi_gpu`) every
process runs this loop with its `Processes`; only rank 0 writes checkpoints and
metrics.jsonl, after gathering every rank's RNG states into train_state.pt (`rng_by_rank`),
and all ranks meet at a barrier after each checkpoint. The trainer wraps its model for
data parallelism and takes its rows of each global batch. The AudioLM stage trainer
(`train/lm.py`) keeps its own loop, because Accelerate saves collectively and keeps one RNG
state per process, and shares the parts: `MetricsLog`, `refuse_changed_settings`,
`save_step_checkpoint`, `load_train_state`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from soundlm.checkpoint import (TRAIN_STATE, latest_checkpoint, load_train_state, rng_state, save_step_checkpoint,
                                set_rng_state)
from soundlm.distributed import Processes
from soundlm.train.metrics_log import MetricsLog
from soundlm.train.schedule import warmup_cosine

log = logging.getLogger(__name__)


class Trainer(ABC):
    """One model's training as `run_training` drives it. Steps count from 0; `done` is step + 1."""

    @abstractmethod
    def restore(self, folder: Path, state: dict) -> None:
        """Load the checkpoint being resumed: the model files in `folder` and `state` (its train_state.pt)."""

    def begin(self, start: int) -> None:
        """Called once before the first step of a call, `start` steps being done (data loaders, train mode)."""

    @abstractmethod
    def train_step(self, step: int) -> Any:
        """Train on the batch of `step`; returns what `report` needs."""

    @abstractmethod
    def report(self, done: int, out: Any, metrics: MetricsLog, last: bool) -> dict[str, str] | None:
        """After step `done` (`last`: the final step of this call): log what is due, evaluate what is due.

        Returns the values to show beside the progress bar, or None to leave them as they are.
        """

    def write_model(self, folder: Path) -> None:
        """Write the model files of a checkpoint into `folder` (none when `train_state` holds the weights)."""

    @abstractmethod
    def train_state(self, step: int) -> dict:
        """What train_state.pt holds besides the step and the RNG states (optimizer, scheduler, ...)."""

    def should_stop(self, done: int) -> bool:
        """Whether the run ends after step `done` before reaching `steps` (early stopping); asked after
        `report`, and of a resumed run before its first step. The state it decides on belongs in `train_state`."""
        return False


class OneModelTrainer(Trainer):
    """A `Trainer` of one module with AdamW, linear warm-up then cosine decay (`warmup_cosine`) and gradient
    clipping: the optimizer and scheduler every small trainer here (phonetic encoder, MuLan, instrument
    classifier, sample compressor) sets up, restores and checkpoints the same way.

    train_state.pt holds {"model", "optimizer", "scheduler"}; `update(loss)` takes one optimizer step.
    """

    def __init__(self, model: torch.nn.Module, *, lr: float, weight_decay: float, steps: int, warmup: int,
                 min_lr_ratio: float = 0.05, clip: float = 1.0):
        self.model, self.clip = model, clip
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda step: warmup_cosine(step, warmup, steps, min_lr_ratio))

    def restore(self, folder: Path, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        log.info("resuming from %s (step %d)", folder, state["step"])

    def begin(self, start: int) -> None:
        self.model.train()

    def update(self, loss: torch.Tensor) -> None:
        """Backward `loss`, clip the gradient norm, step the optimizer and the schedule."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        self.sched.step()

    def lr(self) -> float:
        return self.sched.get_last_lr()[0]

    def train_state(self, step: int) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict()}


@dataclass
class TrainedSteps:
    start: int  # the step this call resumed from (0 for a fresh run)
    step: int  # the step the run has reached
    stopped_early: bool = False  # the trainer's `should_stop` ended the run before `steps`


def run_training(trainer: Trainer, run_dir: str | Path, steps: int, ckpt_every: int, keep: int = 3,
                 stop_at: int | None = None, progress: bool = True, desc: str = "train",
                 tensorboard: bool = False, processes: Processes | None = None) -> TrainedSteps:
    """Train `trainer` to `steps` (or `stop_at`) in `run_dir`, resuming from its latest checkpoint.

    `processes`: this process's place in a launched run (default: the only process).
    """
    if steps < 1 or ckpt_every < 1:
        raise ValueError(f"steps and ckpt_every must be positive, got {steps} and {ckpt_every}")
    if stop_at is not None and stop_at < 1:
        raise ValueError(f"stop_at must be a positive step, got {stop_at}")
    procs = processes or Processes()
    run_dir = Path(run_dir)
    if procs.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    start = 0
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        state = load_train_state(ckpt)
        trainer.restore(ckpt, state)
        # Checkpoints of phonetic runs made before this loop hold no RNG states (nothing in them drew any).
        by_rank = state.get("rng_by_rank")
        if by_rank is not None and len(by_rank) == procs.world:
            set_rng_state(by_rank[procs.rank])
        elif "rng" in state:
            set_rng_state(state["rng"])
        start = int(state["step"])
    end = steps if stop_at is None else min(stop_at, steps)
    stopped = start > 0 and start < steps and trainer.should_stop(start)
    if stopped:
        end = start

    def save(step: int) -> None:
        rngs = procs.gather(rng_state())  # every rank takes part; rank 0 writes
        if procs.is_main:
            def write(folder: Path) -> None:
                trainer.write_model(folder)
                extra = {"rng_by_rank": rngs} if procs.world > 1 else {}
                torch.save({"step": step, "rng": rngs[0], **extra, **trainer.train_state(step)},
                           folder / TRAIN_STATE)

            save_step_checkpoint(run_dir, step, write, keep=keep)
        procs.barrier()

    metrics = MetricsLog(run_dir, start, tensorboard, enabled=procs.is_main)
    bar = tqdm(total=steps, initial=start, desc=desc, unit="step", disable=not (progress and procs.is_main),
               dynamic_ncols=True)
    try:
        trainer.begin(start)
        for step in range(start, end):
            out = trainer.train_step(step)
            done = step + 1
            bar.update(1)
            shown = trainer.report(done, out, metrics, last=done == end)
            if shown:
                bar.set_postfix(shown)
            stopped = done < steps and trainer.should_stop(done)
            if done % ckpt_every == 0 or done == end or stopped:
                save(done)
            if stopped:
                end = done
                break
    finally:
        bar.close()
        metrics.close()
    return TrainedSteps(start=start, step=max(start, end), stopped_early=stopped)
