"""`soundlm train mulan`: the joint music-text embedding that conditions and judges music."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.train.mulan import MuLanTrainConfig, train_mulan


def train_mulan_command(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Music corpus from `soundlm data music` (folder or manifest.jsonl); "
                                          "its 'train' rows are learnt."),
    out: Path = typer.Option(..., "--out", help="Run folder; the MuLan lands in OUT/final."),
    steps: int = typer.Option(MuLanTrainConfig.steps, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(MuLanTrainConfig.batch_size, "--batch-size",
                                   help="(clip, caption) pairs per step; the others in the batch are the negatives."),
    lr: float = typer.Option(MuLanTrainConfig.lr, "--lr", help="Peak learning rate (warm-up, cosine decay)."),
    clip_seconds: float = typer.Option(MuLanTrainConfig.clip_seconds, "--clip-seconds",
                                       help="The audio tower's window (training crops; longer audio is averaged)."),
    width: int = typer.Option(MuLanTrainConfig.width, "--width", help="Width of both towers."),
    layers: int = typer.Option(MuLanTrainConfig.layers, "--layers", help="Transformer layers of each tower."),
    embed_dim: int = typer.Option(MuLanTrainConfig.embed_dim, "--embed-dim", help="Joint embedding dimension."),
    augment_captions: bool = typer.Option(MuLanTrainConfig.augment_captions, "--augment-captions/--no-augment",
                                          help="Draw new wordings of a clip's attributes half of the time."),
    tokenizer: Path | None = typer.Option(None, "--tokenizer", help="A tokenizer.json or Hugging Face tokenizer "
                                                                    "folder (default: a BPE on the captions)."),
    condition_levels: int = typer.Option(MuLanTrainConfig.condition_levels, "--condition-levels",
                                         help="Q: condition ids per clip (RVQ levels)."),
    condition_codes: int = typer.Option(MuLanTrainConfig.condition_codes, "--condition-codes",
                                        help="C: codes per RVQ level."),
    seed: int = typer.Option(MuLanTrainConfig.seed, "--seed", help="Seed for the weights, batches and captions."),
    ckpt_every: int = typer.Option(MuLanTrainConfig.ckpt_every, "--ckpt-every", help="Checkpoint every N steps."),
    stop_at: int | None = typer.Option(None, "--stop-at", help="Stop after this step (rerun to resume)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
) -> None:
    """Train a MuLan-style audio tower and text tower contrastively on (clip, caption) pairs, then fit its
    condition-token quantizer. Re-running a stopped command resumes from its last checkpoint.
    """
    final = train_mulan(config_from(MuLanTrainConfig, ctx.params))
    if final is None:
        typer.echo(f"stopped at step {stop_at}; rerun the command to resume")
        return
    typer.echo(f"saved the MuLan to {final}; measure it with `soundlm eval mulan {final} --data {data}`")
