"""`soundlm music`: text -> music with MusicLM (MuLan-conditioned AudioLM stages)."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.generate import QUANTIZE_HELP, _o, _sampling
from soundlm.lm.quantize import DEFAULT_QUANTIZE
from soundlm.music.pipeline import DEFAULT_GUIDANCE, MUSIC_BUNDLE_FIX, REQUEST_JSON


def music_command(
    ctx: typer.Context,
    captions: list[str] = typer.Argument(..., help="What to play, e.g. \"a calm piano piece in C major\"; several "
                                                   "captions run in one batch."),
    seconds: float = typer.Option(8.0, help="Seconds of music per sample."),
    out: Path = typer.Option(..., help="Output folder: music_CC_SSS.wav (caption CC, sample SSS) and music.json "
                                       "(what was asked)."),
    num_samples: int = typer.Option(1, help="Samples per caption."),
    guidance: float = typer.Option(DEFAULT_GUIDANCE, help="Classifier-free guidance scale of the conditioned stages "
                                                          "(1: none; MusicLM used 3)."),
    model: str | None = typer.Option(None, help=f"Music bundle folder or hub id (default: the music model shipped "
                                                f"with soundlm). A music bundle: {MUSIC_BUNDLE_FIX}."),
    temperature_semantic: float = _o["temperature_semantic"], temperature_coarse: float = _o["temperature_coarse"],
    temperature_fine: float = _o["temperature_fine"], top_k_semantic: int = _o["top_k_semantic"],
    top_k_coarse: int = _o["top_k_coarse"], top_k_fine: int = _o["top_k_fine"],
    top_p_semantic: float = _o["top_p_semantic"], top_p_coarse: float = _o["top_p_coarse"],
    top_p_fine: float = _o["top_p_fine"], context: float = _o["context"],
    first_window: float = _o["first_window"],
    seed: int = typer.Option(0, help="Sampling seed of the first caption (caption j: seed + j)."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    quantize: str = typer.Option(DEFAULT_QUANTIZE, help=QUANTIZE_HELP),
) -> None:
    """Generate music from text captions (MusicLM: MuLan condition ids, guided semantic -> coarse -> fine)."""
    from soundlm.audio import save_audio
    from soundlm.fileio import write_json_atomic
    from soundlm.music.pipeline import MusicLMPipeline

    if seconds <= 0 or num_samples < 1:
        raise ValueError(f"need --seconds > 0 and --num-samples >= 1, got {seconds} and {num_samples}")
    sampling = _sampling(ctx.params)
    pipe = MusicLMPipeline.from_bundle(model, device=device).quantize(quantize)
    waves = pipe.generate(captions, seconds, num_samples=num_samples, guidance=guidance, sampling=sampling, seed=seed,
                          progress=True)
    record = pipe.request_record(captions, seconds, num_samples, guidance, seed, model,
                                 {name: ctx.params[name] for name in _o})
    for entry, wave in zip(record["files"], (w for samples in waves for w in samples)):
        save_audio(out / entry["file"], wave, pipe.sample_rate)
    write_json_atomic(out / REQUEST_JSON, record)
    typer.echo(f"wrote {len(record['files'])} file(s) and {REQUEST_JSON} to {out}")
