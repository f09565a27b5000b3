"""The causal-LM trainer of the text LM and the AudioPaLM model, on the shared loop (`train.loop`).

The data order is a pure function of (seed, step): batch `step` takes its slice of the
permutation of epoch `step * batch_size // n`, so resuming needs only the step number,
and a resumed run sees exactly the batches an uninterrupted run would. Each checkpoint
folder holds the model files (written by the caller) and `train_state.pt` (optimizer,
step, RNG states, the losses of the current metrics window). metrics.jsonl gets the mean
loss of every 10 steps, the same in a resumed run as in an uninterrupted one.

Under a launcher (`soundlm.distributed`) the global batch of a step is batch_size x
processes examples of that permutation and each process trains on its own rows, so every
example is read once per epoch by one process. The loss is normalised by the target
tokens of the global batch, so N processes compute the gradient of one process's step on
the global batch (DDP averages, hence the factor N).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from soundlm.distributed import Processes
from soundlm.palm.tasks import IGNORE_INDEX, Batch, FormattedExample, collate
from soundlm.train.loop import Trainer, run_training
from soundlm.train.metrics_log import MetricsLog

LOG_EVERY = 10  # steps per metrics.jsonl line (their mean loss)


@dataclass
class LoopConfig:
    steps: int
    batch_size: int
    lr: float
    warmup: int
    ckpt_every: int
    seed: int = 0
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    keep: int = 3
    progress: bool = True

    def validate(self) -> None:
        for name in ("steps", "batch_size", "ckpt_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")


@dataclass
class LoopResult:
    step: int
    last_loss: float | None  # mean loss of the last logged window (None when nothing was trained)
    first_loss: float | None  # loss of the first step trained in this call


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> list[int]:
    """Example indices of batch `step`: consecutive slices of a per-epoch permutation."""
    if n <= 0:
        raise ValueError("no training examples")
    out: list[int] = []
    pos = step * batch_size
    while len(out) < batch_size:
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        take = min(batch_size - len(out), n - offset)
        out.extend(perm[offset: offset + take].tolist())
        pos += take
    return out


def rank_batch(step: int, batch_size: int, n: int, seed: int, procs: Processes) -> list[int]:
    """This process's example indices at `step`: its rows of the global batch of batch_size x processes."""
    return batch_indices(step, batch_size * procs.world, n, seed)[procs.rows(batch_size)]


def lm_loss_sum(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Summed next-token cross entropy on labelled positions (labels[t] is the target of position t-1)."""
    logits = model(input_ids=batch.tokens, attention_mask=batch.attention_mask, use_cache=False).logits  # [B, T, V]
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch.labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def num_targets(batch: Batch) -> int:
    """Labelled positions that `lm_loss_sum` sums over."""
    return int((batch.labels[:, 1:] != IGNORE_INDEX).sum())


def _lr_factor(step: int, warmup: int, total: int) -> float:
    from soundlm.train.schedule import warmup_cosine

    return warmup_cosine(step, warmup, total, 0.1)


class _CausalLMTrainer(Trainer):
    """AdamW with warmup + cosine decay on next-token loss; logs the mean loss of each window of steps."""

    def __init__(self, model: torch.nn.Module, examples: list[FormattedExample], pad_id: int,
                 write_model: Callable[[Path], None], restore_model: Callable[[Path], None], cfg: LoopConfig,
                 procs: Processes):
        self.model, self.examples, self.pad_id, self.cfg, self.procs = model, examples, pad_id, cfg, procs
        self.device = procs.device
        self._write_model, self._restore_model = write_model, restore_model
        model.to(self.device).train()
        self.step_model = procs.wrap(model)
        decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
        no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
        self.lr = cfg.lr
        self.first: float | None = None
        self.last: float | None = None
        self.window: list[float] = []

    def restore(self, folder: Path, state: dict) -> None:
        self._restore_model(folder)
        self.model.to(self.device).train()
        self.opt.load_state_dict(state["optimizer"])
        # The losses of the window being averaged when the checkpoint was written: without them the
        # resumed run's next line would average only the steps after the checkpoint (checkpoints
        # written before this was saved have none).
        self.window = [float(v) for v in state.get("loss_window", [])]

    def train_step(self, step: int) -> float:
        self.lr = self.cfg.lr * _lr_factor(step, self.cfg.warmup, self.cfg.steps)
        for group in self.opt.param_groups:
            group["lr"] = self.lr
        procs = self.procs
        rows = rank_batch(step, self.cfg.batch_size, len(self.examples), self.cfg.seed, procs)
        batch = collate([self.examples[i] for i in rows], self.pad_id)
        batch = Batch(batch.tokens.to(self.device), batch.labels.to(self.device),
                      batch.attention_mask.to(self.device))
        targets = float(procs.sum(torch.tensor([float(num_targets(batch))]))[0])
        loss_sum = lm_loss_sum(self.step_model, batch)
        self.opt.zero_grad(set_to_none=True)
        # DDP averages gradients over processes: scaling by their number makes it the gradient of the
        # global batch's mean loss.
        (loss_sum * procs.world / max(targets, 1.0)).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.opt.step()
        value = float(procs.sum(loss_sum.detach().reshape(1))[0]) / max(targets, 1.0)
        if self.first is None:
            self.first = value
        self.window.append(value)
        return value

    def report(self, done: int, out: float, metrics: MetricsLog, last: bool) -> dict[str, str]:
        if done % LOG_EVERY == 0 or last:
            self.last = sum(self.window) / len(self.window)
            self.window.clear()
            metrics.log(done, {"loss": self.last, "lr": self.lr})
        return {"loss": f"{out:.3f}"}

    def write_model(self, folder: Path) -> None:
        self._write_model(folder)

    def train_state(self, step: int) -> dict:
        return {"optimizer": self.opt.state_dict(), "loss_window": list(self.window)}


def train_loop(model: torch.nn.Module, examples: list[FormattedExample], pad_id: int, run_dir: str | Path,
               write_model: Callable[[Path], None], restore_model: Callable[[Path], None], cfg: LoopConfig,
               procs: Processes, desc: str = "train") -> LoopResult:
    """Train to `cfg.steps` on `examples` (batches padded with `pad_id`), resuming from the run's
    latest checkpoint when there is one.

    write_model(folder) writes the model files of a checkpoint; restore_model(folder) loads
    them back into `model` (same architecture). `procs`: this process's place in the run.
    """
    cfg.validate()
    if not examples:
        raise ValueError("no training examples")
    trainer = _CausalLMTrainer(model, examples, pad_id, write_model, restore_model, cfg, procs)
    trained = run_training(trainer, run_dir, cfg.steps, cfg.ckpt_every, keep=cfg.keep, progress=cfg.progress,
                           desc=desc, processes=procs)
    model.eval()
    return LoopResult(step=trained.step, last_loss=trainer.last, first_loss=trainer.first)
