"""`soundlm train prefer`: DPO preference tuning of a stage LM (MusicRL), from judgements or reward-ranked samples."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.train.prefer import PreferTrainConfig, train_prefer

D = PreferTrainConfig


def train_prefer_command(
    ctx: typer.Context,
    base: Path = typer.Option(..., "--base", help="The model to tune: a bundle folder (tunes --stage) or a stage "
                                                  "folder."),
    out: Path = typer.Option(..., "--out", help="Run folder: pairs.jsonl, checkpoints, final/ (the tuned stage) and, "
                                                "for a bundle, model/ (the bundle with it). Rerun to resume."),
    pairs: Path | None = typer.Option(None, "--pairs", help="People's judgements, JSONL: "
                                                            '{"caption", "chosen": "a.wav", "rejected": "b.wav"} per '
                                                            "line (paths relative to the file; `soundlm serve`'s "
                                                            "preference lines too)."),
    self_samples: int | None = typer.Option(None, "--self", help="Instead of --pairs: sample N outputs per caption "
                                                                 "and pair the best against the worst by reward."),
    captions: Path | None = typer.Option(None, "--captions", help="--self: a music corpus (its train split, with "
                                                                  "attributes) or a .txt file, one caption per line."),
    max_captions: int | None = typer.Option(None, "--max-captions", help="--self: use at most this many captions "
                                                                          "(a choice drawn by --seed); default all."),
    sampler: str = typer.Option(D.sampler, "--sampler", help="--self: the registered sampler that turns captions "
                                                             "into tokens and audio."),
    tokenizer: str = typer.Option(D.tokenizer, "--tokenizer", help="--pairs: the registered pair tokenizer that "
                                                                   "turns a clip (and caption) into the stage's "
                                                                   "tokens; audiolm: the base's own tokenizers."),
    stage: str = typer.Option(D.stage, "--stage", help="The stage of a bundle to tune: semantic or coarse, "
                                                       "flattened or delay-pattern (a delay1 music bundle's "
                                                       "coarse stage, which decides the timbre)."),
    beta: float = typer.Option(D.beta, "--beta", help="DPO's KL strength: how far the policy may move from the base."),
    sft_weight: float = typer.Option(D.sft_weight, "--sft-weight", help="Weight of the chosen samples' NLL per token "
                                                                        "added to the loss (0: plain DPO)."),
    steps: int = typer.Option(D.steps, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(D.batch_size, "--batch-size", help="Pairs per step."),
    lr: float = typer.Option(D.lr, "--lr", help="Peak learning rate (warm-up, cosine decay)."),
    warmup: int = typer.Option(D.warmup, "--warmup", help="Warm-up steps."),
    seed: int = typer.Option(D.seed, "--seed", help="Seed of the batches and of --self's sampling."),
    strategy: str = typer.Option(D.strategy, "--strategy", help="--self: best-worst, or all (every pair over the "
                                                                "margin)."),
    margin: float = typer.Option(D.margin, "--margin", help="--self: the smallest reward gap that makes a pair."),
    key_weight: float = typer.Option(D.key_weight, "--key-weight", help="--self: weight of the key/mode reward."),
    tempo_weight: float = typer.Option(D.tempo_weight, "--tempo-weight", help="--self: weight of the tempo reward."),
    instrument_model: Path | None = typer.Option(None, "--instrument-model", help="--self: an instrument classifier "
                                                                                  "(`soundlm train instrument`)."),
    instrument_weight: float = typer.Option(D.instrument_weight, "--instrument-weight",
                                            help="--self: weight of the instrument reward."),
    mulan: Path | None = typer.Option(None, "--mulan", help="--self: a MuLan folder, for the text-adherence reward."),
    mulan_weight: float = typer.Option(D.mulan_weight, "--mulan-weight", help="--self: weight of the MuLan reward."),
    ckpt_every: int = typer.Option(D.ckpt_every, "--ckpt-every", help="Checkpoint every N steps (and at the end)."),
    log_every: int = typer.Option(D.log_every, "--log-every", help="Write metrics every N steps."),
    stop_at: int | None = typer.Option(None, "--stop-at", help="Stop after this step (rerun to resume)."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    progress: bool = typer.Option(D.progress, help="Show progress bars."),
) -> None:
    """Tune a stage LM toward preferred samples with DPO (MusicRL): people's A/B choices or reward-ranked samples.

    Re-running a stopped command resumes (pairs and training alike).
    """
    final = train_prefer(config_from(PreferTrainConfig, ctx.params))
    if final is None:
        typer.echo(f"stopped at step {stop_at}; rerun the command to resume")
        return
    typer.echo(f"tuned stage saved to {final}; summary in {out / 'prefer.json'}")
