"""`soundlm train phonetic`: train the built-in phonetic encoder (CTC) for semantic tokens."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.train.phonetic import PhoneticTrainConfig, train_phonetic


def train_phonetic_cmd(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Corpus manifest.jsonl (or its folder) whose rows have a transcript; "
                                          "rows of split 'train' are learnt, 'heldout' ones scored."),
    out: Path = typer.Option(..., "--out", help="Run folder; the encoder lands in OUT/final."),
    steps: int = typer.Option(PhoneticTrainConfig.steps, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(PhoneticTrainConfig.batch_size, "--batch-size", help="Utterances per step."),
    lr: float = typer.Option(PhoneticTrainConfig.lr, "--lr", help="Peak learning rate (10% warm-up, cosine decay)."),
    hidden: int = typer.Option(PhoneticTrainConfig.hidden, "--hidden",
                               help="GRU width per direction; features are 2 x this."),
    layers: int = typer.Option(PhoneticTrainConfig.layers, "--layers", help="Bidirectional GRU layers."),
    seed: int = typer.Option(PhoneticTrainConfig.seed, "--seed", help="Seed for the weights and the batch order."),
    stop_at: int | None = typer.Option(None, "--stop-at", help="Stop after this step (resume later)."),
) -> None:
    """Train a small CTC recogniser on a corpus's transcripts; its encoder gives speaker-robust features.

    Then: soundlm train semantic CORPUS --features phonetic --model OUT/final --out TOKENIZER.
    Re-running a stopped command resumes from its last checkpoint.
    """
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = train_phonetic(config_from(PhoneticTrainConfig, ctx.params))
    typer.echo(f"trained on {result.train_files} files ({len(result.skipped)} skipped, see {out / 'errors.jsonl'})")
    if result.final_dir is None:
        typer.echo(f"stopped at step {max(result.losses, default=0)}; rerun the command to resume")
        return
    cer = "n/a (no held-out rows)" if result.heldout_cer is None else f"{result.heldout_cer:.3f}"
    typer.echo(f"saved encoder to {result.final_dir}; held-out character error rate {cer}")
