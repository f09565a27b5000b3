"""`soundlm serve`: the web page and HTTP API (soundlm.serve) on uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.serve.config import ServeConfig

C = ServeConfig


def serve_command(
    ctx: typer.Context,
    model: Path | None = typer.Option(None, help="AudioLM bundle folder (default: the model shipped with soundlm)."),
    palm: Path | None = typer.Option(None, help="AudioPaLM run (or final/) folder: adds text to speech, speech "
                                                "recognition and translation."),
    compressor: Path | None = typer.Option(None, help="`soundlm train compressor` run: adds lossless compression."),
    music_model: str | None = typer.Option(None, help="Music bundle folder or hub id: adds text to music (default: "
                                                      "the music model shipped with soundlm, when it ships one; "
                                                      "none: no music)."),
    host: str = typer.Option(C.host, help="Address to bind; the default serves this machine only."),
    port: int = typer.Option(C.port, help="Port."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    workers: int = typer.Option(C.workers, help="Generation batches run at the same time."),
    max_batch: int = typer.Option(C.max_batch, help="Samples one generation batch may hold (compatible requests "
                                                    "share a batch; 1 turns batching off)."),
    queue_size: int = typer.Option(C.queue_size, help="Jobs that may wait; past that, submits get 503."),
    max_upload_mb: float = typer.Option(C.max_upload_mb, help="Largest upload (413 past it)."),
    max_prompt_seconds: float = typer.Option(C.max_prompt_seconds, help="Longest uploaded audio."),
    max_seconds: float = typer.Option(C.max_seconds, help="Longest generation a request may ask for."),
    max_samples: int = typer.Option(C.max_samples, help="Most samples per request."),
    max_music_seconds: float = typer.Option(C.max_music_seconds, help="Longest music a request may ask for."),
    max_music_samples: int = typer.Option(C.max_music_samples, help="Most music samples per request, all its "
                                                                    "captions together."),
    abandon_seconds: float = typer.Option(C.abandon_seconds, help="Drop a job nobody watched or polled this long."),
    keep_jobs: int = typer.Option(C.keep_jobs, help="Finished jobs whose files are kept."),
    jobs_dir: Path | None = typer.Option(None, help="Folder for uploads and results (default: a temporary folder "
                                                    "removed at exit)."),
    speaker_similarity: bool = typer.Option(C.speaker_similarity, help="Score results with Resemblyzer."),
    preferences: Path | None = typer.Option(None, help="JSONL file the A/B page (/ab) appends preferences to."),
) -> None:
    """Serve a web page and a JSON API (OpenAPI at /docs) for continuation, generation, music and the other tasks."""
    from soundlm.serve import serve

    config = config_from(ServeConfig, ctx.params)
    typer.echo(f"soundlm serve: loading the models, then http://{config.host}:{config.port}/ (Ctrl-C stops)")
    serve(config)
