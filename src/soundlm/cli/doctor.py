"""`soundlm doctor RUN`: is this training run on track, and is it failing in a known way?"""

from __future__ import annotations

from pathlib import Path

import typer


def doctor_command(
    run: Path = typer.Argument(..., help="A run folder of `soundlm train codec|lm|phonetic`, or a runs/STAGE folder "
                                         "of `soundlm finetune` (its metrics.jsonl and train_config.json)."),
    plot: Path | None = typer.Option(None, "--plot", help="Also write a PNG of the run against the reference band."),
    reference: Path | None = typer.Option(None, help="Reference curves file (default: the ones shipped with soundlm)."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the diagnosis as JSON."),
) -> None:
    """Compare a run with the reference curves of its recipe stage and flag known failure modes (codebook
    collapse, first codebook taking all the energy, discriminator winning, LM loss at the unigram entropy,
    held-out loss rising, NaN/inf, learning rate schedule finished early), each with its likely cause and fix."""
    from soundlm.doctor import diagnose
    from soundlm.doctor.reference import load_reference
    from soundlm.fileio import write_json_atomic

    curves = load_reference(reference)
    diagnosis = diagnose(run, curves)
    for line in diagnosis.lines():
        typer.echo(line)
    if json_out is not None:
        write_json_atomic(json_out, diagnosis.to_json())
    if plot is not None:
        from soundlm.doctor.plot import plot_run

        typer.echo(f"wrote {plot_run(run, plot, curves)}")
