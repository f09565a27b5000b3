"""`soundlm train phonetic`: train the built-in phonetic encoder (CTC) for semantic tokens."""

from __future__ import annotations

from pathlib import Path

import typer


def train_phonetic_cmd(
    data: Path = typer.Argument(..., help="Corpus manifest.jsonl (or its folder) whose rows have a transcript; "
                                          "rows of split 'train' are learnt, 'heldout' ones scored."),
    out: Path = typer.Option(..., "--out", help="Run folder; the encoder lands in OUT/final."),
    steps: int = typer.Option(2000, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(16, "--batch-size", help="Utterances per step."),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (10% warm-up, cosine decay)."),
    hidden: int = typer.Option(192, "--hidden", help="GRU width per direction; features are 2 x this."),
    layers: int = typer.Option(2, "--layers", help="Bidirectional GRU layers."),
    seed: int = typer.Option(0, "--seed", help="Seed for the weights and the batch order."),
    stop_at: int | None = typer.Option(None, "--stop-at", help="Stop after this step (resume later)."),
) -> None:
    """Train a small CTC recogniser on a corpus's transcripts; its encoder gives speaker-robust features.

    Then: soundlm train semantic CORPUS --features phonetic --model OUT/final --out TOKENIZER.
    Re-running a stopped command resumes from its last checkpoint.
    """
    import logging

    from soundlm.train.phonetic import PhoneticTrainConfig, train_phonetic

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = PhoneticTrainConfig(data=str(data), out=str(out), steps=steps, batch_size=batch_size, lr=lr,
                              hidden=hidden, layers=layers, seed=seed, stop_at=stop_at)
    result = train_phonetic(cfg)
    typer.echo(f"trained on {result.train_files} files ({len(result.skipped)} skipped, see {out / 'errors.jsonl'})")
    if result.final_dir is None:
        typer.echo(f"stopped at step {max(result.losses, default=0)}; rerun the command to resume")
        return
    cer = "n/a (no held-out rows)" if result.heldout_cer is None else f"{result.heldout_cer:.3f}"
    typer.echo(f"saved encoder to {result.final_dir}; held-out character error rate {cer}")
