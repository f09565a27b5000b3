"""`soundlm compress`, `soundlm decompress` and `soundlm train compressor`: the LM as a lossless compressor."""

from __future__ import annotations

from pathlib import Path

import typer


def compress_command(
    inputs: list[Path] = typer.Argument(..., help="Audio files and folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="Output folder: one OUT/REL.slmc per input file."),
    mode: str = typer.Option("lossless", "--mode", help="lossless: bit-exact 16-bit PCM with a sample model "
                                                        "(needs --model); tokens: the codec's codes coded by the "
                                                        "AudioLM stage LMs (lossy, the codec's quality)."),
    model: Path | None = typer.Option(None, "--model", help="lossless: a `soundlm train compressor` run or its "
                                                            "final/; tokens: an AudioLM bundle (default: the "
                                                            "shipped speech-tiny)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Compress audio files; a bad file is skipped and listed in OUT/errors.jsonl (exit code 1)."""
    from soundlm.compress.files import compress_files, open_codec

    summary = compress_files(inputs, out, open_codec(mode, model), progress=progress)
    _report(summary, "compressed")


def decompress_command(
    inputs: list[Path] = typer.Argument(..., help=".slmc files and folders (searched recursively)."),
    out: Path = typer.Option(..., "--out", help="Output folder: one OUT/REL.wav per input file."),
    mode: str | None = typer.Option(None, "--mode", help="lossless or tokens (default: the first file's mode)."),
    model: Path | None = typer.Option(None, "--model", help="The model that compressed the files (its hash is "
                                                            "checked; token mode defaults to the shipped bundle)."),
    files_per_batch: int = typer.Option(16, "--files-per-batch", help="Files decoded together (lossless mode "
                                                                      "steps their segments in lockstep); the "
                                                                      "output does not depend on it."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Decompress .slmc files to wav; lossless mode gives back the original samples bit for bit."""
    from soundlm.compress.files import decompress_files, first_mode, open_codec

    summary = decompress_files(inputs, out, open_codec(mode or first_mode(inputs), model), progress=progress,
                               files_per_batch=files_per_batch)
    _report(summary, "decompressed")


def train_compressor_command(
    data: Path = typer.Argument(..., help="Corpus manifest.jsonl (or its folder): 'train' rows are learnt, "
                                          "'heldout' ones measured; or a folder of wav/flac files."),
    out: Path = typer.Option(..., "--out", help="Run folder; the model lands in OUT/final."),
    bits: int = typer.Option(16, "--bits", help="PCM bits the model codes: 16, or 8 (the paper's setting; "
                                                "16-bit files are reduced to their top byte)."),
    steps: int | None = typer.Option(None, "--steps", help="Optimizer steps (default: CompressorTrainConfig)."),
    hidden: int | None = typer.Option(None, "--hidden", help="MLP width."),
    seed: int = typer.Option(0, "--seed", help="Seed for the weights and the batch order."),
    stop_at: int | None = typer.Option(None, "--stop-at", help="Stop after this step (rerun to resume)."),
) -> None:
    """Train the sample model of lossless mode. Re-running a stopped or killed command resumes it."""
    import logging

    from soundlm.compress.trainer import CompressorTrainConfig, train_compressor

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in {"steps": steps, "hidden": hidden}.items() if v is not None}
    cfg = CompressorTrainConfig(data=str(data), out=str(out), bits=bits, seed=seed, stop_at=stop_at, **overrides)
    result = train_compressor(cfg)
    typer.echo(f"trained on {result.train_files} files ({len(result.skipped)} skipped, see {out / 'errors.jsonl'})")
    if result.final_dir is None:
        typer.echo(f"stopped at step {max(result.losses, default=0)}; rerun the command to resume")
        return
    m = result.metrics
    rate = (f"; held-out files compress to {m['heldout_ratio']:.3f} of their PCM size "
            f"({m['heldout_bits_per_sample']:.2f} bits per sample)") if "heldout_ratio" in m else ""
    typer.echo(f"saved model to {result.final_dir}{rate}")


def _report(summary, verb: str) -> None:
    for o in summary.failed:
        typer.echo(f"skipped: {o.error}", err=True)
    typer.echo(summary.line(verb))
    if summary.failed:
        raise typer.Exit(code=1)
