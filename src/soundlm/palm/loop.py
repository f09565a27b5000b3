"""The resumable training loop shared by the text LM and the AudioPaLM model.

The data order is a pure function of (seed, step): batch `step` takes its slice of the
permutation of epoch `step * batch_size // n`, so resuming needs only the step number,
and a resumed run sees exactly the batches an uninterrupted run would. Each checkpoint
folder holds the model files (written by the caller) and `train_state.pt` (optimizer,
step, RNG states).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from soundlm.checkpoint import latest_checkpoint, rng_state, save_step_checkpoint, set_rng_state
from soundlm.fileio import write_text_atomic
from soundlm.palm.tasks import IGNORE_INDEX, Batch

TRAIN_STATE = "train_state.pt"
METRICS = "metrics.jsonl"


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


def lm_loss(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Next-token cross entropy on labelled positions (labels[t] is the target of position t-1)."""
    logits = model(input_ids=batch.tokens, attention_mask=batch.attention_mask, use_cache=False).logits  # [B, T, V]
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), batch.labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX)


def _lr_factor(step: int, warmup: int, total: int) -> float:
    from soundlm.train.lm import warmup_cosine

    return warmup_cosine(step, warmup, total, 0.1)



def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past the resumed step (written after the checkpoint a crash fell back to)."""
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [ln for ln in lines if ln.strip() and json.loads(ln).get("step", 0) <= step]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(kept))


def train_loop(model: torch.nn.Module, make_batch: Callable[[int], Batch], run_dir: str | Path,
               write_model: Callable[[Path], None], restore_model: Callable[[Path], None], cfg: LoopConfig,
               device: torch.device, desc: str = "train") -> LoopResult:
    """Train to `cfg.steps`, resuming from the run's latest checkpoint when there is one.

    write_model(folder) writes the model files of a checkpoint; restore_model(folder) loads
    them back into `model` (same architecture).
    """
    cfg.validate()
    run_dir = Path(run_dir)
    model.to(device).train()
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    start = 0
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        restore_model(ckpt)
        model.to(device).train()
        state = torch.load(ckpt / TRAIN_STATE, map_location="cpu", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        set_rng_state(state["rng"])
        start = int(state["step"])

    def save(step: int) -> None:
        def write(folder: Path) -> None:
            write_model(folder)
            torch.save({"optimizer": opt.state_dict(), "step": step, "rng": rng_state()}, folder / TRAIN_STATE)

        save_step_checkpoint(run_dir, step, write, keep=cfg.keep)

    metrics = run_dir / METRICS
    run_dir.mkdir(parents=True, exist_ok=True)
    _truncate_metrics(metrics, start)
    first: float | None = None
    window: list[float] = []
    last: float | None = None
    bar = tqdm(total=cfg.steps, initial=start, desc=desc, disable=not cfg.progress, dynamic_ncols=True)
    for step in range(start, cfg.steps):
        factor = _lr_factor(step, cfg.warmup, cfg.steps)
        for group in opt.param_groups:
            group["lr"] = cfg.lr * factor
        batch = make_batch(step)
        batch = Batch(batch.tokens.to(device), batch.labels.to(device), batch.attention_mask.to(device))
        loss = lm_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        value = float(loss.detach())
        if first is None:
            first = value
        window.append(value)
        bar.update(1)
        bar.set_postfix(loss=f"{value:.3f}")
        done = step + 1
        if done % 10 == 0 or done == cfg.steps:
            last = sum(window) / len(window)
            window.clear()
            with open(metrics, "a", encoding="utf-8") as f:
                f.write(json.dumps({"step": done, "loss": last, "lr": cfg.lr * factor}) + "\n")
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            model.eval()
            save(done)
            model.train()
    bar.close()
    if window:
        last = sum(window) / len(window)
    model.eval()
    return LoopResult(step=max(start, cfg.steps), last_loss=last, first_loss=first)
