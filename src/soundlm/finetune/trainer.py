"""Fine-tuning one AudioLM stage on a user's tokens: LoRA adapters or every weight, with early stopping.

Runs on the shared scaffold (`soundlm.train.loop.run_training`): resume, RNG states, progress
bar, step checkpoints and RUN/metrics.jsonl are the loop's. This trainer adds:

- LoRA (`soundlm.adapters.add_lora`): only the adapters train and only they are checkpointed
  (a few hundred kB); `full=True` trains every weight instead;
- batches as the stage trainer crops them (`train.lm_data.stage_dataset`), batch s a pure
  function of (seed, s), so a resumed run is the run straight through;
- the held-out loss of the user's held-out files (every whole window, as `soundlm eval lm`
  scores it) before training (step 0: the base model) and every `eval_every` steps;
- early stopping: the best held-out weights are kept, and the run ends after `patience`
  evaluations without an improvement of `min_delta` nats; the result is the best weights.

Metric names are `soundlm train lm`'s (`train/loss`, `train/lr`, `heldout/loss`), so
A run-health check reads a fine-tuning run like a stage run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from soundlm.adapters import ADAPTER_WEIGHTS, LoraSettings, adapter_state, add_lora, load_adapter_state, save_adapters
from soundlm.stages import IGNORE_INDEX, Stage, collate, token_loss_sum
from soundlm.store import StoreTokens
from soundlm.train import lm_data
from soundlm.train.loop import Trainer
from soundlm.train.metrics_log import MetricsLog


@dataclass(frozen=True)
class StageFinetuneSettings:
    """How one stage is fine-tuned (the part of `FinetuneConfig` a stage run needs)."""

    steps: int
    batch_size: int
    lr: float
    warmup: int
    min_lr_ratio: float
    weight_decay: float
    grad_clip: float
    eval_every: int
    patience: int
    min_delta: float
    log_every: int
    seed: int
    lora: LoraSettings | None  # None: full fine-tuning


@dataclass
class StageOutcome:
    """What a stage's fine-tuning reached (finetune.json's `stages_result`)."""

    steps: int  # steps trained
    best_step: int  # 0: the base model was never beaten
    heldout_loss_base: float
    heldout_loss_best: float
    stopped_early: bool
    trainable_parameters: int


class StageFinetuner(Trainer):
    def __init__(self, stage: Stage, tokens: StoreTokens, train_ids: list[int], heldout: StoreTokens,
                 settings: StageFinetuneSettings, device: torch.device):
        from soundlm.train.lm import warmup_cosine

        self.stage, self.heldout, self.s, self.device = stage, heldout, settings, device
        stage.model.to(device)
        # The adapters' initial values and the dropout masks come from the global RNG: seed it, so a
        # run is a function of its settings (a resumed run restores the RNG of its checkpoint).
        torch.manual_seed(settings.seed)
        # PEFT injects the LoRA layers into stage.model itself, so stage.model runs them from here on.
        self.model = add_lora(stage.model, settings.lora) if settings.lora is not None else stage.model
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        decay = [p for p in self.params if p.dim() >= 2]
        no_decay = [p for p in self.params if p.dim() < 2]
        self.opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                                      {"params": no_decay, "weight_decay": 0.0}],
                                     lr=settings.lr, betas=(0.9, 0.95), eps=1e-8)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: warmup_cosine(s, settings.warmup, settings.steps, settings.min_lr_ratio))
        self.data = lm_data.stage_dataset(stage, tokens, train_ids, settings.seed, stream=lm_data._TRAIN_STREAM)
        self.base_loss: float | None = None
        self.best_loss = math.inf
        self.best_step = 0
        self.best_state = self.trainable_state()
        self.bad_evals = 0

    # ---- what is trained and saved ------------------------------------------------------
    @property
    def lora(self) -> bool:
        return self.s.lora is not None

    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The weights this run changes (adapters, or the whole model), as CPU copies."""
        if self.lora:
            return adapter_state(self.model)
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.lora:
            load_adapter_state(self.model, state)
        else:
            self.model.load_state_dict(state)

    def use_best(self) -> None:
        """Put the best held-out weights in place (early stopping's result)."""
        self.load_trainable_state(self.best_state)

    def outcome(self, steps: int, stopped_early: bool) -> StageOutcome:
        return StageOutcome(steps=steps, best_step=self.best_step, heldout_loss_base=float(self.base_loss),
                            heldout_loss_best=float(self.best_loss), stopped_early=stopped_early,
                            trainable_parameters=sum(p.numel() for p in self.params))

    # ---- Trainer ------------------------------------------------------------------------
    def restore(self, folder: Path, state: dict) -> None:
        from safetensors.torch import load_file, load_model

        if self.lora:
            self.load_trainable_state(load_file(str(folder / ADAPTER_WEIGHTS)))
        else:
            # Written by save_model, which stores tied weights once: load_model restores the ties.
            load_model(self.model, str(folder / "model.safetensors"), device=str(self.device))
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        stop = state["early_stopping"]
        self.base_loss, self.best_loss, self.best_step = stop["base_loss"], stop["best_loss"], stop["best_step"]
        self.bad_evals, self.best_state = stop["bad_evals"], stop["best_state"]

    def begin(self, start: int) -> None:
        if start == 0:
            # Step 0 is the base model: the number fine-tuning has to beat (and keeps if nothing does).
            self.base_loss = self.best_loss = self.heldout_loss()
        self.model.train()

    def train_step(self, step: int) -> float:
        b = self.s.batch_size
        batch = collate([self.data[step * b + i] for i in range(b)], self.stage.pad_id)
        logits = self.stage.logits(batch, self.device, self.model)  # [B, L, V] or [B, K, S, card]
        targets = batch["targets"].to(self.device)
        loss = token_loss_sum(logits, targets) / max(int((targets != IGNORE_INDEX).sum()), 1)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.s.grad_clip)
        self.opt.step()
        self.sched.step()
        return loss.item()

    def report(self, done: int, out: float, metrics: MetricsLog, last: bool) -> dict[str, str] | None:
        if done == 1 and self.base_loss is not None:
            metrics.log(0, {"heldout/loss": self.base_loss})
        shown = None
        if done % self.s.log_every == 0 or last or done == 1:
            metrics.log(done, {"train/loss": out, "train/lr": self.sched.get_last_lr()[0]})
            shown = {"loss": f"{out:.3f}"}
        if done % self.s.eval_every == 0 or last:
            loss = self.heldout_loss()
            metrics.log(done, {"heldout/loss": loss})
            if loss < self.best_loss - self.s.min_delta:
                self.best_loss, self.best_step, self.best_state, self.bad_evals = loss, done, self.trainable_state(), 0
            else:
                self.bad_evals += 1
            shown = {"loss": f"{out:.3f}", "heldout": f"{loss:.3f}", "best": f"{self.best_loss:.3f}@{self.best_step}"}
        return shown

    def should_stop(self, done: int) -> bool:
        return self.bad_evals >= self.s.patience

    def write_model(self, folder: Path) -> None:
        if self.lora:
            save_adapters(self.model, folder)
        else:
            self.stage.save(folder)

    def train_state(self, step: int) -> dict:
        return {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                "early_stopping": {"base_loss": self.base_loss, "best_loss": self.best_loss,
                                   "best_step": self.best_step, "bad_evals": self.bad_evals,
                                   "best_state": self.best_state}}

    # ---- evaluation ---------------------------------------------------------------------
    def heldout_loss(self) -> float:
        """Nats per target token over every whole window of the held-out files (`soundlm eval lm`'s loss)."""
        from soundlm.eval.sections.lm import stage_heldout_loss

        loss = stage_heldout_loss(self.stage, self.heldout, batch_size=self.s.batch_size, device=self.device,
                                  progress=False).loss_nats
        self.model.train()
        return loss


def stage_settings(cfg: Any, lora: LoraSettings | None) -> StageFinetuneSettings:
    """The per-stage settings of a `FinetuneConfig`."""
    return StageFinetuneSettings(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.learning_rate, warmup=cfg.warmup,
                                 min_lr_ratio=cfg.min_lr_ratio, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip,
                                 eval_every=cfg.eval_every, patience=cfg.patience, min_delta=cfg.min_delta,
                                 log_every=cfg.log_every, seed=cfg.seed, lora=lora)
