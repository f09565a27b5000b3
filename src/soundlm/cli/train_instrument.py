"""`soundlm train instrument`: the instrument classifier that judges music clips."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.train.instrument import InstrumentTrainConfig, train_instrument


def train_instrument_command(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Music corpus from `soundlm data music` (folder or manifest.jsonl); "
                                          "its 'train' rows are learnt."),
    out: Path = typer.Option(..., "--out", help="Run folder; the classifier lands in OUT/final."),
    steps: int = typer.Option(InstrumentTrainConfig.steps, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(InstrumentTrainConfig.batch_size, "--batch-size", help="Crops per step."),
    lr: float = typer.Option(InstrumentTrainConfig.lr, "--lr", help="Peak learning rate (warm-up, cosine decay)."),
    crop_seconds: float = typer.Option(InstrumentTrainConfig.crop_seconds, "--crop-seconds",
                                       help="Length of the random training crops."),
    channels: int = typer.Option(InstrumentTrainConfig.channels, "--channels", help="Conv channels."),
    seed: int = typer.Option(InstrumentTrainConfig.seed, "--seed", help="Seed for the weights and the batches."),
    stop_at: int | None = typer.Option(None, "--stop-at", help="Stop after this step (rerun to resume)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
) -> None:
    """Train a small log-mel conv net to name the instrument of a music clip (for eval and rewards).

    Re-running a stopped command resumes from its last checkpoint.
    """
    final = train_instrument(config_from(InstrumentTrainConfig, ctx.params))
    if final is None:
        typer.echo(f"stopped at step {stop_at}; rerun the command to resume")
        return
    typer.echo(f"saved the instrument classifier to {final}; measure it with "
               f"`soundlm eval analysers --data {data} --instrument-model {final}`")
