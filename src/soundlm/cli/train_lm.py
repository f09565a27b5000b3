"""`soundlm train lm`: train one AudioLM stage on a token store."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.train.lm import LMTrainConfig, train_lm


def train_lm_command(
    ctx: typer.Context,
    store: Path = typer.Argument(..., help="Token store folder written by `soundlm tokenize`."),
    stage: str = typer.Option(..., help="Which AudioLM stage: semantic, coarse or fine."),
    out: Path = typer.Option(..., help="Run folder; rerunning the same command resumes from its latest checkpoint."),
    preset: str = typer.Option(LMTrainConfig.preset, help="Model size preset: tiny, micro, mini, small or base."),
    init: Path | None = typer.Option(None, help="Start from a local Hugging Face causal LM folder "
                                                "(its embeddings are resized to the audio vocabulary)."),
    steps: int = typer.Option(LMTrainConfig.steps, help="Total optimizer steps."),
    batch_size: int = typer.Option(LMTrainConfig.batch_size, help="Sequences per micro-batch per process."),
    grad_accum: int = typer.Option(LMTrainConfig.grad_accum, help="Micro-batches accumulated per optimizer step."),
    lr: float = typer.Option(LMTrainConfig.lr, help="Peak learning rate (AdamW)."),
    warmup: int = typer.Option(LMTrainConfig.warmup, help="Linear warmup steps before the cosine decay."),
    window_seconds: float | None = typer.Option(
        None, help="Training crop length; default: the preset's window for the stage "
                   "(AudioLM used 30 s semantic, 10 s coarse, 3 s fine)."),
    coarse_codebooks: int | None = typer.Option(
        None, help="Codebooks in the coarse stage (Q_c); the fine stage models the rest. "
                   "Default: a third of the store's codebooks, at least 1 (AudioLM: 4 of 12)."),
    pattern: str = typer.Option(LMTrainConfig.pattern,
                                help="Codebook interleaving: flatten (AudioLM, one token per step) or delay "
                                     "(MusicGen, all codebooks per step); the semantic stage always uses flatten."),
    mixed_precision: str = typer.Option(LMTrainConfig.mixed_precision, help="no, bf16 or fp16 (GPU)."),
    ckpt_every: int = typer.Option(LMTrainConfig.ckpt_every, help="Save a checkpoint every N steps (and at the end)."),
    eval_every: int = typer.Option(LMTrainConfig.eval_every, help="Held-out loss every N steps."),
    heldout_fraction: float = typer.Option(LMTrainConfig.heldout_fraction,
                                           help="Fraction of records (by id hash) held out."),
    exclude_split: str = typer.Option(LMTrainConfig.exclude_split or "none",
                                      help="Never train on store records of this corpus split (held-out voices); "
                                           "'none' trains on every record."),
    condition_dropout: float = typer.Option(
        LMTrainConfig.condition_dropout,
        help="A store written by `soundlm tokenize --mulan` conditions the semantic and coarse stages on its "
             "condition ids: this fraction of crops gets NULL instead (classifier-free guidance needs it)."),
    seed: int = typer.Option(LMTrainConfig.seed, help="Seed for weights, crops and order."),
    num_workers: int = typer.Option(LMTrainConfig.num_workers, help="DataLoader worker processes."),
    log_every: int = typer.Option(LMTrainConfig.log_every, help="Write training metrics every N steps."),
    stop_at: int | None = typer.Option(None, help="End this invocation after this step (a time-sliced job); "
                                                  "rerun without it to go on. The schedule still spans --steps."),
    progress: bool = typer.Option(LMTrainConfig.progress, help="Show a progress bar."),
) -> None:
    """Train the semantic, coarse or fine AudioLM stage (CPU, GPU or `accelerate launch`)."""
    cfg = config_from(LMTrainConfig, ctx.params,
                      exclude_split=None if exclude_split.lower() in ("", "none") else exclude_split)
    result = train_lm(cfg)
    if not result.main_process:
        return
    loss = "" if result.heldout_loss is None else f", held-out loss {result.heldout_loss:.4f}"
    if result.final_dir.exists() and result.step >= steps:
        typer.echo(f"trained {stage} stage to step {result.step}{loss}; inference folder: {result.final_dir}")
    else:
        typer.echo(f"stopped at step {result.step}{loss}; rerun the command to resume")
