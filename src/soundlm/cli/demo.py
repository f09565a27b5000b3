"""`soundlm demo`: the shipped model continues the bundled prompt (see soundlm.demo)."""

from pathlib import Path

import typer

from soundlm.cli.generate import QUANTIZE_HELP
from soundlm.cli.options import keyword_defaults
from soundlm.demo import render_markdown, run_demo

_DEMO = keyword_defaults(run_demo)


def demo(out: Path = typer.Option(Path("demo_out"), help="Folder for the demo's audio, figure and report."),
         num_samples: int = typer.Option(_DEMO["num_samples"], help="Continuations to sample (one batch)."),
         seconds: float = typer.Option(_DEMO["seconds"], help="Seconds generated after the prompt."),
         seed: int = typer.Option(_DEMO["seed"], help="Sampling seed."),
         model: Path | None = typer.Option(None, help="A bundle folder (default: the model shipped with soundlm)."),
         prompt: Path | None = typer.Option(None, help="Prompt audio (default: the bundled 3 s prompt)."),
         device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
         quantize: str = typer.Option(_DEMO["quantize"], help=QUANTIZE_HELP)) -> None:
    """Continue a held-out voice's 3 s prompt with the shipped AudioLM model; write wavs, a figure and a report."""
    report = run_demo(out, model=model, prompt=prompt, num_samples=num_samples, seconds=seconds, seed=seed,
                      device=device, quantize=quantize, log=typer.echo)
    typer.echo(render_markdown(report))
    typer.echo(f"wrote {', '.join(report.files)} to {out}/")
