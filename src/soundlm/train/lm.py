"""Training one AudioLM stage (semantic, coarse or fine) on a token store with Accelerate.

The same loop runs on CPU, one GPU, or many (`accelerate launch`, DDP or FSDP), with
bf16/fp16 mixed precision and gradient accumulation. A run folder holds:

    RUN/train_config.json        the arguments of the run (checked on resume)
    RUN/checkpoints/step_*/      config.json + model.safetensors + train_state.pt
    RUN/metrics.jsonl            one JSON line per logged step (train and held-out loss)
    RUN/tb/                      TensorBoard event files
    RUN/final/                   the inference folder (config.json + model.safetensors)

Resume is exact: batches are a pure function of (seed, step) (see `lm_data`), and the
checkpoint restores weights, optimizer, scheduler and every RNG, so `k` steps + resume to
`N` gives the same losses and weights as `N` steps straight.

Several processes (`soundlm.distributed`: `accelerate launch --multi_gpu` or `--use_fsdp`,
torchrun; gloo on a machine without GPUs): `--batch-size` is per process, and the loss of
a step is normalised by the target tokens of all processes' micro-batches, so N processes
compute the gradient one process would on the N-times larger batch. Rank 0 alone writes;
under FSDP the weights and the optimizer state are gathered whole before it writes them
(`optimizer_layout: "fqn"` in train_state.pt), so a checkpoint does not depend on how the
model was sharded. Accelerate applies FSDP on GPUs (and other accelerators) only: on CPU
processes it would train DDP instead, so there soundlm shards the model itself with
torch's FSDP2 `fully_shard` (each decoder layer, then the whole model) and leaves it out of
`accelerator.prepare`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from soundlm.checkpoint import (TRAIN_CONFIG, TRAIN_STATE, latest_checkpoint, load_train_state, refuse_changed_settings,
                                rng_state, save_step_checkpoint, set_rng_state)
from soundlm.distributed import (adopt_mpi_launch, check_launch, die_with_parent, launched_world_size,
                                 use_cpu_backend)
from soundlm.fileio import write_json_atomic
from soundlm.stages import IGNORE_INDEX, PATTERNS, STAGES, Stage, build_stage, collate, token_loss_sum
from soundlm.store import StoreTokens, load_store_tokens
from soundlm.train import lm_data
from soundlm.train.metrics_log import MetricsLog
from soundlm.train.schedule import warmup_cosine

# Arguments that define what is trained; resuming with different values would silently mix runs.
_RESUME_MUST_MATCH = ("store", "stage", "preset", "init", "window_seconds", "coarse_codebooks", "pattern",
                      "batch_size", "grad_accum", "seed", "heldout_fraction", "exclude_split", "processes",
                      "condition_dropout")


@dataclass
class LMTrainConfig:
    """Arguments of `soundlm train lm` (see the CLI help for each)."""

    store: str
    out: str
    stage: str
    preset: str = "tiny"
    init: str | None = None
    steps: int = 20_000
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    warmup: int = 500
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    window_seconds: float | None = None
    coarse_codebooks: int | None = None
    pattern: str = "flatten"
    mixed_precision: str = "no"
    ckpt_every: int = 1000
    eval_every: int = 500
    eval_batches: int = 8
    heldout_fraction: float = 0.05  # of the trained records, by id hash: the training curve's held-out loss
    exclude_split: str | None = "heldout"  # store records of this corpus split are never trained on
    condition_dropout: float = 0.1  # conditioned stages: fraction of crops trained with NULL condition ids
    seed: int = 0
    num_workers: int = 0
    log_every: int = 10
    stop_at: int | None = None
    keep_checkpoints: int = 3
    progress: bool = True

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"--pattern must be 'flatten' or 'delay', got {self.pattern!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"--mixed-precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        for name in ("steps", "batch_size", "grad_accum", "ckpt_every", "eval_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.warmup < 0 or self.lr <= 0:
            raise ValueError(f"need --lr > 0 and --warmup >= 0, got lr={self.lr}, warmup={self.warmup}")
        if self.stop_at is not None and self.stop_at <= 0:
            raise ValueError(f"--stop-at must be a positive step, got {self.stop_at}")
        if not 0.0 <= self.condition_dropout <= 1.0:
            raise ValueError(f"--condition-dropout must be in [0, 1], got {self.condition_dropout}")
        if self.window_seconds is not None and self.window_seconds <= 0:
            raise ValueError(f"--window-seconds must be positive, got {self.window_seconds}")


@dataclass
class LMTrainResult:
    run_dir: Path
    final_dir: Path
    step: int
    train_losses: dict[int, float] = field(default_factory=dict)  # step -> loss, this invocation
    heldout_loss: float | None = None
    main_process: bool = True  # False on the processes of a launched run that do not write


def _is_fsdp(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def _fsdp_requested() -> bool:
    import os

    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"


def _shard_on_cpu(model: torch.nn.Module) -> None:
    """FSDP2 on CPU processes: `fully_shard` each decoder layer (FSDP_TRANSFORMER_CLS_TO_WRAP, as
    `accelerate launch --fsdp_transformer_layer_cls_to_wrap` sets it; default LlamaDecoderLayer),
    then the whole model. In place: build the optimizer afterwards, on the sharded parameters."""
    import os

    from torch.distributed.fsdp import fully_shard

    if os.environ.get("FSDP_VERSION", "1") != "2":
        raise ValueError("Accelerate runs FSDP on GPUs only; on CPU processes soundlm shards with torch's FSDP2 "
                         "(`fully_shard`): launch with --fsdp_version 2")
    layers = set(os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "LlamaDecoderLayer").split(","))
    for module in list(model.modules()):
        if type(module).__name__ in layers:
            fully_shard(module)
    fully_shard(model)


def _gathered_weights(accelerator: Any, model: torch.nn.Module, sharded: bool) -> dict[str, torch.Tensor] | None:
    """Full weights of a sharded model (every process must call this; rank 0 gets them); None otherwise."""
    if _is_fsdp(accelerator):
        return accelerator.get_state_dict(model)
    if not sharded:
        return None
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The whole optimizer state keyed by parameter names, gathered from every shard (every process calls this)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _load_full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load `_full_optimizer_state`'s dict into a (possibly sharded) prepared model's optimizer."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))


def _make_accelerator(mixed_precision: str) -> Any:
    """The run's Accelerator: gloo on the CPU when launched on a machine without GPUs."""
    import os

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    check_launch("lm", accelerate_features=True)
    adopt_mpi_launch()
    # Accelerate keeps its settings in a process-wide singleton that refuses a second, different
    # mixed_precision; clear it (not the distributed process state) so one Python process can
    # train several stages or settings in turn (notebooks, tests).
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    cpu = launched_world_size() > 1 and use_cpu_backend(None)
    fsdp_plugin = None
    if cpu and _fsdp_requested() and os.environ.get("FSDP_VERSION", "1") == "1":
        from accelerate import FullyShardedDataParallelPlugin

        # Accelerate ignores the plugin on CPU processes (see the module docstring), but builds an
        # FSDP1 one from the launch's settings and refuses its `sync_module_states` there: this gets
        # the run as far as `_shard_on_cpu`'s message.
        fsdp_plugin = FullyShardedDataParallelPlugin(sync_module_states=False, cpu_ram_efficient_loading=False)
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu, fsdp_plugin=fsdp_plugin)
    if accelerator.num_processes > 1 and "TORCHELASTIC_RUN_ID" in os.environ:
        die_with_parent()
    return accelerator


def train_lm(cfg: LMTrainConfig) -> LMTrainResult:
    """Train (or resume) one stage; returns where the final inference folder is."""
    from accelerate.utils import DistributedType, set_seed
    from tqdm.auto import tqdm

    cfg.validate()
    run_dir = Path(cfg.out)
    accelerator = _make_accelerator(cfg.mixed_precision)
    is_main = accelerator.is_main_process
    world = accelerator.num_processes
    # The number of processes is part of the run: with --batch-size it sets the global batch.
    settings = {**asdict(cfg), "processes": world}
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        refuse_changed_settings(run_dir, settings, _RESUME_MUST_MATCH)

    set_seed(cfg.seed)
    # The corpus's held-out split (e.g. held-out voices) is for evaluation: never train on it.
    tokens = load_store_tokens(cfg.store, need_acoustic=cfg.stage != "semantic",
                               exclude_splits=(cfg.exclude_split,) if cfg.exclude_split else ())
    stage = build_stage(cfg.stage, tokens.manifest, preset=cfg.preset, pattern=cfg.pattern,
                        window_seconds=cfg.window_seconds, coarse_codebooks=cfg.coarse_codebooks, init=cfg.init,
                        store=cfg.store)
    if ckpt is not None:
        from safetensors.torch import load_model

        load_model(stage.model, str(ckpt / "model.safetensors"))
    split = lm_data.split_heldout([r.id for r in tokens.records], cfg.heldout_fraction)
    model = stage.model
    fsdp = _is_fsdp(accelerator)
    shard_here = _fsdp_requested() and accelerator.distributed_type == DistributedType.MULTI_CPU
    if shard_here:
        _shard_on_cpu(model)
    sharded = fsdp or shard_here
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, cfg.warmup, cfg.steps, cfg.min_lr_ratio))

    start_step, state = 0, None
    if ckpt is not None:
        state = load_train_state(ckpt)
        whole = state.get("optimizer_layout") == "fqn"
        if sharded and not whole:
            raise ValueError(f"{ckpt}: this checkpoint's optimizer state was saved without FSDP, as one process's "
                             "parameter list, which an FSDP-sharded model cannot take; resume it launched as it "
                             "was started (without --use_fsdp)")
        if not whole:
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step = int(state["step"])
        rng = state["rng"][accelerator.process_index] if accelerator.process_index < len(state["rng"]) \
            else state["rng"][0]
        set_rng_state(rng)

    if shard_here:
        optimizer = accelerator.prepare(optimizer)  # the model is sharded already; DDP must not wrap it
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
    if state is not None and state.get("optimizer_layout") == "fqn":
        _load_full_optimizer_state(model, optimizer.optimizer, state["optimizer"])
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / TRAIN_CONFIG, settings)

    train_set = lm_data.stage_dataset(stage, tokens, split.train, cfg.seed, stream=lm_data._TRAIN_STREAM,
                                      condition_dropout=cfg.condition_dropout)
    sampler = lm_data.StepSampler(start_step, cfg.steps, cfg.batch_size, cfg.grad_accum,
                                  accelerator.num_processes, accelerator.process_index)
    loader = torch.utils.data.DataLoader(
        train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
        collate_fn=partial(collate, pad_id=stage.pad_id), pin_memory=torch.cuda.is_available())
    batches = iter(loader)

    def save_checkpoint(step: int) -> None:
        accelerator.wait_for_everyone()
        rng_states = accelerator.gather_for_metrics([rng_state()]) if accelerator.num_processes > 1 \
            else [rng_state()]
        weights = _gathered_weights(accelerator, model, sharded)
        # A sharded optimizer's state is gathered whole, keyed by parameter names.
        optim_state = _full_optimizer_state(model, optimizer.optimizer) if sharded else optimizer.state_dict()
        if is_main:
            def write(folder: Path) -> None:
                stage.save(folder, accelerator.unwrap_model(model), weights)
                torch.save({"optimizer": optim_state, "optimizer_layout": "fqn" if sharded else "index",
                            "scheduler": scheduler.state_dict(), "step": step, "rng": rng_states,
                            "data": {"seed": cfg.seed, "next_step": step}}, folder / TRAIN_STATE)
            save_step_checkpoint(run_dir, step, write, keep=cfg.keep_checkpoints)
        accelerator.wait_for_everyone()

    metrics = MetricsLog(run_dir, start_step, tensorboard=True, enabled=is_main)

    result = LMTrainResult(run_dir=run_dir, final_dir=run_dir / "final", step=start_step, main_process=is_main)
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not (is_main and cfg.progress),
               desc=f"train lm {cfg.stage}", dynamic_ncols=True)
    tokens_seen, t0 = 0, time.perf_counter()
    # --stop-at ends this invocation early (a time-sliced job); the schedule still spans --steps.
    end_step = cfg.steps if cfg.stop_at is None else min(cfg.stop_at, cfg.steps)
    for step in range(start_step, end_step):
        model.train()
        micro_batches = [next(batches) for _ in range(cfg.grad_accum)]
        # Normalise by the target count of the whole step, over every process, so accumulation and
        # N processes equal one big batch.
        n_targets = sum(int((mb["targets"] != IGNORE_INDEX).sum()) for mb in micro_batches)
        if world > 1:
            n_targets = int(accelerator.reduce(torch.tensor(float(n_targets), device=accelerator.device), "sum"))
        step_loss = 0.0
        for micro, mb in enumerate(micro_batches):
            sync = micro == cfg.grad_accum - 1
            ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
            with ctx:
                with accelerator.autocast():
                    logits = stage.logits(mb, accelerator.device, model)  # [B, L, V] or [B, K, S, card]
                loss = token_loss_sum(logits, mb["targets"].to(accelerator.device)) / max(n_targets, 1)
                # DDP and FSDP average gradients over processes; this process's share of the
                # step's loss is a sum term, hence the factor.
                accelerator.backward(loss * world)
            step_loss += loss.item()
            tokens_seen += mb["input_ids"].numel()
        if world > 1:
            step_loss = float(accelerator.reduce(torch.tensor(step_loss, device=accelerator.device), "sum"))
        grad_norm = accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        if hasattr(grad_norm, "full_tensor"):  # a DTensor when the parameters are FSDP2 shards
            grad_norm = grad_norm.full_tensor()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        done = step + 1
        result.train_losses[done] = step_loss
        result.step = done
        elapsed = time.perf_counter() - t0
        tok_s = tokens_seen * accelerator.num_processes / max(elapsed, 1e-9)
        bar.update(1)
        bar.set_postfix(loss=f"{step_loss:.3f}", tok_s=f"{tok_s:,.0f}")
        if done % cfg.log_every == 0 or done == cfg.steps or done == 1:
            metrics.log(done, {"train/loss": step_loss, "train/lr": scheduler.get_last_lr()[0],
                               "train/grad_norm": float(grad_norm), "train/tokens_per_s": tok_s})
        if split.heldout and (done % cfg.eval_every == 0 or done == cfg.steps):
            result.heldout_loss = evaluate(model, stage, tokens, split.heldout, cfg, accelerator)
            metrics.log(done, {"heldout/loss": result.heldout_loss})
            if is_main:
                bar.write(f"step {done}: held-out loss {result.heldout_loss:.4f}")
        if done % cfg.ckpt_every == 0 or done == end_step:
            save_checkpoint(done)
    bar.close()
    if end_step < cfg.steps:
        metrics.close()
        return result

    if start_step >= cfg.steps and is_main:
        print(f"{run_dir}: already trained to step {start_step} (--steps {cfg.steps}); exporting final")
    accelerator.wait_for_everyone()
    weights = _gathered_weights(accelerator, model, sharded)
    if is_main:
        stage.export(result.final_dir, accelerator.unwrap_model(model), weights)
    metrics.close()
    accelerator.wait_for_everyone()
    return result


@torch.no_grad()
def evaluate(model: torch.nn.Module, stage: Stage, tokens: StoreTokens, heldout: list[int], cfg: LMTrainConfig,
             accelerator: Any) -> float:
    """Mean token loss on a fixed set of held-out crops (the same crops at every evaluation)."""
    model.eval()
    data = lm_data.stage_dataset(stage, tokens, heldout, cfg.seed, stream=lm_data._EVAL_STREAM)
    total, count = 0.0, 0
    for b in range(cfg.eval_batches):
        idx = range((b * accelerator.num_processes + accelerator.process_index) * cfg.batch_size,
                    (b * accelerator.num_processes + accelerator.process_index + 1) * cfg.batch_size)
        batch = collate([data[i] for i in idx], stage.pad_id)
        with accelerator.autocast():
            logits = stage.logits(batch, accelerator.device, model)
        targets = batch["targets"].to(accelerator.device)
        sums = accelerator.reduce(torch.stack([token_loss_sum(logits, targets),
                                               (targets != IGNORE_INDEX).sum().float()]), "sum")
        total += float(sums[0])
        count += int(sums[1])
    model.train()
    return total / max(count, 1)
