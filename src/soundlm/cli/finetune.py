"""`soundlm finetune DATA --base MODEL --out DIR`: adapt a model to a folder of your audio (LoRA or full)."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.finetune.run import FinetuneConfig, finetune

_D = FinetuneConfig  # option defaults are the config's


def finetune_command(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="A folder of audio files (searched recursively), one file, or a corpus "
                                          "manifest.jsonl; a few minutes of one voice or instrument is enough."),
    out: Path = typer.Option(..., help="Output folder: model/ (merged bundle), adapters/, runs/, store/, "
                                       "finetune.json. Rerunning the same command resumes."),
    base: str = typer.Option(_D.base, help="The model to adapt: a bundle folder, 'speech-tiny' (shipped) or a "
                                           "Hugging Face hub id."),
    stages: str = typer.Option(",".join(_D.stages), help="Comma-separated stages to adapt (semantic, coarse, fine); "
                                                        "a voice is adapted by coarse alone."),
    full: bool = typer.Option(_D.full, "--full", help="Train every weight of the stages instead of LoRA adapters."),
    save: str = typer.Option(_D.save, help="merged (a normal bundle), adapters (LoRA adapters alone, small) or both."),
    steps: int = typer.Option(_D.steps, help="Most optimizer steps per stage (early stopping usually ends sooner)."),
    batch_size: int = typer.Option(_D.batch_size, help="Training windows per step."),
    lr: float | None = typer.Option(None, help="Peak learning rate (default 1e-3 for LoRA, 1e-4 with --full)."),
    warmup: int = typer.Option(_D.warmup, help="Linear warmup steps before the cosine decay."),
    rank: int = typer.Option(_D.rank, help="LoRA rank."),
    alpha: float = typer.Option(_D.alpha, help="LoRA alpha (the adapters are scaled by alpha / rank)."),
    lora_dropout: float = typer.Option(_D.lora_dropout, help="Dropout on the LoRA adapters' input."),
    heldout_fraction: float = typer.Option(_D.heldout_fraction,
                                           help="Fraction of the files held out (by id hash) for early stopping, "
                                                "unless the manifest marks heldout rows."),
    eval_every: int = typer.Option(_D.eval_every, help="Held-out loss every N steps."),
    patience: int = typer.Option(_D.patience, help="Stop after this many evaluations without improvement."),
    min_delta: float = typer.Option(_D.min_delta, help="Improvement in nats per token that resets the patience."),
    ckpt_every: int = typer.Option(_D.ckpt_every, help="Checkpoint every N steps (and when a stage stops)."),
    seed: int = typer.Option(_D.seed, help="Seed for the adapters' initial values, crops and order."),
    workers: int = typer.Option(_D.workers, help="Audio loading processes while tokenizing."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    progress: bool = typer.Option(_D.progress, help="Show progress bars."),
) -> None:
    """Fine-tune a model on your audio: tokenize it, train LoRA adapters (or every weight) with early
    stopping on held-out files, and write a merged bundle and/or the adapters alone."""
    cfg = config_from(FinetuneConfig, ctx.params, stages=tuple(s.strip() for s in stages.split(",") if s.strip()))
    result = finetune(cfg)
    data_line = result.data
    typer.echo(f"data: {data_line['files']} files ({data_line['minutes']:.1f} min), {data_line['heldout_files']} held "
               f"out, {data_line['skipped']} skipped (see {data_line['errors']})")
    for name, r in result.stages.items():
        stop = ", stopped early" if r.stopped_early else ""
        typer.echo(f"{name}: held-out loss {r.heldout_loss_base:.4f} -> {r.heldout_loss_best:.4f} nats/token "
                   f"(best at step {r.best_step} of {r.steps}{stop})")
    for what, folder in (("merged model", result.model_dir), ("adapters", result.adapters_dir)):
        if folder is not None:
            typer.echo(f"{what}: {folder}  (soundlm continue PROMPT --model {folder})")
