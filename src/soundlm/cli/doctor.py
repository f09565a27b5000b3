"""`soundlm doctor RUN`: is a training run on track against the recipe's reference curves?"""

from __future__ import annotations

from pathlib import Path

import typer


def doctor_command(
    run: Path = typer.Argument(..., help="A run folder (the --out of `soundlm train codec|phonetic|lm` or a "
                                         "recipe's WORK/lm-semantic, ...; a fine-tuning run's runs/STAGE)."),
    plot: Path | None = typer.Option(None, help="Also draw the run over the reference band into this PNG."),
    reference: Path | None = typer.Option(None, help="Reference curves JSON (default: the shipped ones)."),
) -> None:
    """Say whether a run is on track against its recipe stage's reference band, and flag known failure modes
    (codebook collapse, first codebook taking all the energy, discriminator overpowering the generator, loss
    stuck at the unigram entropy, overfitting, NaN/inf, learning-rate schedule finished early) with their likely
    cause and fix. Exit code 0: on track; 1: problems found."""
    from soundlm.doctor import diagnose, load_reference, plot_diagnosis

    diag = diagnose(run, load_reference(reference))
    for line in diag.lines:
        typer.echo(line)
    if plot is not None:
        typer.echo(f"plot: {plot_diagnosis(diag, plot)}")
    if not diag.on_track:
        raise typer.Exit(code=1)
