"""`soundlm continue` and `soundlm generate`: AudioLM's three stages from the command line."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import typer

from soundlm.lm.quantize import DEFAULT_QUANTIZE
from soundlm.pipeline import AudioLMSampling
from soundlm.sampler import SamplingParams

QUANTIZE_HELP = ("Stage LM weights: int8 (weight-only, a quarter of the bytes per step), bf16, none (as stored), "
                 "or auto (int8 on CPU, none elsewhere; int8's held-out bits per token are within 0.1% of fp32 "
                 "for the shipped model, docs/BENCHMARKS.md).")
STREAM_HELP = ("Write each wav as it is produced: NAME.part.wav grows chunk by chunk (playable while it grows) "
               "and is renamed to NAME.wav at the end; prints the time to first audio. Same samples as without.")
FIRST_WINDOW_HELP = ("Seconds each stage generates in its first window (0 = a whole window). Short, the first "
                     "streamed audio comes after that much of each stage; --stream or not, the same audio. Cost: the "
                     "acoustic stages' first window sees less semantic look-ahead (docs/BENCHMARKS.md, Streaming).")
_MODEL_HELP = ("A bundle folder with semantic/ coarse/ [fine/] (+ semantic_tokenizer/ codec/), instead of the runs "
               "(default, when neither is given: the model shipped with soundlm).")


def _sampling(params: Mapping[str, Any]) -> AudioLMSampling:
    """The sampling options of a command (its `ctx.params`) as an AudioLMSampling (which checks them)."""
    stages = {stage: SamplingParams(params[f"temperature_{stage}"], params[f"top_k_{stage}"] or None,
                                    params[f"top_p_{stage}"]) for stage in ("semantic", "coarse", "fine")}
    return AudioLMSampling(**stages, context=params["context"], first_window=params["first_window"] or None)


def _check_stream(sampling: AudioLMSampling, stream: bool) -> None:
    """A streamed first window must outreach the codes the codec decodes ahead, or it brings no early audio."""
    from soundlm.pipeline import DECODE_CONTEXT_SECONDS

    if stream and sampling.first_window is not None and sampling.first_window <= DECODE_CONTEXT_SECONDS:
        raise ValueError(f"--first-window {sampling.first_window:g} with --stream: the codec decodes "
                         f"{DECODE_CONTEXT_SECONDS:g} s ahead, so the first audio would wait for the second window "
                         f"of each stage; use --first-window above {DECODE_CONTEXT_SECONDS:g} (or 0: whole windows)")


def _load(model: Path | None, semantic_run: Path | None, coarse_run: Path | None, fine_run: Path | None,
          semantic_tokenizer: Path | None, codec: str | None, device: str | None) -> Any:
    from soundlm.pipeline import AudioLMPipeline
    from soundlm.pretrained import load_default_pipeline, load_pipeline

    if model is not None:
        if any(p is not None for p in (semantic_run, coarse_run, fine_run)):
            raise ValueError("pass either --model or the three --*-run folders, not both")
        return load_pipeline(model, device=device)
    if all(p is None for p in (semantic_run, coarse_run, fine_run)):
        return load_default_pipeline(device=device)  # no model named: the one shipped with soundlm
    missing = [n for n, p in (("--semantic-run", semantic_run), ("--coarse-run", coarse_run)) if p is None]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}; pass the stage runs (--fine-run unless the coarse stage "
                         "models every codebook) or one --model folder")
    return AudioLMPipeline.from_runs(semantic_run, coarse_run, fine_run, semantic_tokenizer=semantic_tokenizer,
                                     codec=codec, device=device)


def _names(out: Path, name: str, count: int) -> list[Path]:
    return [out / f"{name}_{i:03d}.wav" for i in range(count)]


def _write(out: Path, name: str, waves: list, sample_rate: int) -> list[Path]:
    from soundlm.audio import save_audio

    paths = _names(out, name, len(waves))
    for path, wave in zip(paths, waves):
        save_audio(path, wave, sample_rate)
    return paths


def _write_stream(out: Path, name: str, count: int, chunks: Iterator, sample_rate: int) -> list[Path]:
    """Write streamed chunks [B, C, S] into growing NAME.part.wav files (renamed to NAME.wav at the end),
    saying how long the first audio took."""
    from soundlm.audio import GrowingWavs

    started = time.perf_counter()
    first = None
    with GrowingWavs(_names(out, name, count), sample_rate) as files:
        for chunk in chunks:
            files.write(chunk.audio)
            if first is None:
                first = time.perf_counter() - started
                typer.echo(f"first audio after {first:.2f} s: growing in {files.parts[0].name}"
                           + (f" and {count - 1} more" if count > 1 else ""), err=True)
    total = time.perf_counter() - started
    typer.echo(f"time to first audio {first:.2f} s, whole output {total:.2f} s", err=True)
    return files.paths


# The sampling options are shared by both commands; typer needs them spelled out per command.
# Their defaults are AudioLMSampling's (None, meaning off, shows as 0 for top-k and 1 for top-p).
def _options() -> dict[str, Any]:
    s = AudioLMSampling()
    return dict(
        temperature_semantic=typer.Option(s.semantic.temperature, help="Semantic stage temperature (AudioLM: 0.6)."),
        temperature_coarse=typer.Option(s.coarse.temperature, help="Coarse stage temperature (AudioLM: 0.8)."),
        temperature_fine=typer.Option(s.fine.temperature, help="Fine stage temperature (AudioLM: 0.6)."),
        top_k_semantic=typer.Option(s.semantic.top_k or 0, help="Semantic top-k (0 = off)."),
        top_k_coarse=typer.Option(s.coarse.top_k or 0, help="Coarse top-k (0 = off)."),
        top_k_fine=typer.Option(s.fine.top_k or 0, help="Fine top-k (0 = off)."),
        top_p_semantic=typer.Option(s.semantic.top_p or 1.0, help="Semantic nucleus top-p (1 = off)."),
        top_p_coarse=typer.Option(s.coarse.top_p or 1.0, help="Coarse nucleus top-p (1 = off)."),
        top_p_fine=typer.Option(s.fine.top_p or 1.0, help="Fine nucleus top-p (1 = off)."),
        context=typer.Option(s.context, help="Fraction of each stage's training window kept as context when "
                             "generation slides past it, in (0, 1)."),
        first_window=typer.Option(s.first_window or 0.0, help=FIRST_WINDOW_HELP),
    )


_o = _options()


def continue_command(
    ctx: typer.Context,
    prompt: Path = typer.Argument(..., help="Audio prompt (wav/flac/ogg/mp3)."),
    seconds: float = typer.Option(..., help="Seconds of continuation after the prompt."),
    out: Path = typer.Option(..., help="Output folder for continuation_XXX.wav."),
    num_samples: int = typer.Option(1, help="Continuations to sample (one batch)."),
    model: Path | None = typer.Option(None, help=_MODEL_HELP),
    semantic_run: Path | None = typer.Option(None, help="Semantic stage run (or its final/ folder)."),
    coarse_run: Path | None = typer.Option(None, help="Coarse stage run (or its final/ folder)."),
    fine_run: Path | None = typer.Option(None, help="Fine stage run (or its final/ folder); leave it out when the "
                                           "coarse stage models every codebook (one delay stage)."),
    semantic_tokenizer: Path | None = typer.Option(None, help="Semantic tokenizer folder (default: the store's)."),
    codec: str | None = typer.Option(None, help="Codec folder or hub id (default: the store's)."),
    include_prompt: bool = typer.Option(True, help="Write prompt + continuation (else the continuation only)."),
    temperature_semantic: float = _o["temperature_semantic"], temperature_coarse: float = _o["temperature_coarse"],
    temperature_fine: float = _o["temperature_fine"], top_k_semantic: int = _o["top_k_semantic"],
    top_k_coarse: int = _o["top_k_coarse"], top_k_fine: int = _o["top_k_fine"],
    top_p_semantic: float = _o["top_p_semantic"], top_p_coarse: float = _o["top_p_coarse"],
    top_p_fine: float = _o["top_p_fine"], context: float = _o["context"],
    first_window: float = _o["first_window"],
    seed: int = typer.Option(0, help="Sampling seed."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    quantize: str = typer.Option(DEFAULT_QUANTIZE, help=QUANTIZE_HELP),
    stream: bool = typer.Option(False, help=STREAM_HELP),
) -> None:
    """Continue an audio prompt with AudioLM (semantic -> coarse -> fine -> codec)."""
    from soundlm.audio import info, load_audio

    # Decoded once, before any model loads: a bad prompt or option fails at once.
    audio, rate = load_audio(prompt, sample_rate=None, mono=False), info(prompt).sample_rate
    sampling = _sampling(ctx.params)
    _check_stream(sampling, stream)
    pipe = _load(model, semantic_run, coarse_run, fine_run, semantic_tokenizer, codec, device).quantize(quantize)
    kwargs = dict(num_samples=num_samples, sampling=sampling, seed=seed, prompt_sample_rate=rate,
                  include_prompt=include_prompt, progress=True, prompt_source=prompt)
    if stream:
        chunks = pipe.stream_continue(audio, seconds, **kwargs)
        paths = _write_stream(out, "continuation", num_samples, chunks, pipe.sample_rate)
    else:
        paths = _write(out, "continuation", pipe.continue_audio(audio, seconds, **kwargs), pipe.sample_rate)
    typer.echo(f"wrote {len(paths)} file(s) to {out}")


def generate_command(
    ctx: typer.Context,
    seconds: float = typer.Option(..., help="Seconds of audio per sample."),
    out: Path = typer.Option(..., help="Output folder for sample_XXX.wav."),
    num_samples: int = typer.Option(1, help="Samples to generate (one batch)."),
    model: Path | None = typer.Option(None, help=_MODEL_HELP),
    semantic_run: Path | None = typer.Option(None, help="Semantic stage run (or its final/ folder)."),
    coarse_run: Path | None = typer.Option(None, help="Coarse stage run (or its final/ folder)."),
    fine_run: Path | None = typer.Option(None, help="Fine stage run (or its final/ folder); leave it out when the "
                                           "coarse stage models every codebook (one delay stage)."),
    semantic_tokenizer: Path | None = typer.Option(None, help="Semantic tokenizer folder (default: the store's)."),
    codec: str | None = typer.Option(None, help="Codec folder or hub id (default: the store's)."),
    temperature_semantic: float = _o["temperature_semantic"], temperature_coarse: float = _o["temperature_coarse"],
    temperature_fine: float = _o["temperature_fine"], top_k_semantic: int = _o["top_k_semantic"],
    top_k_coarse: int = _o["top_k_coarse"], top_k_fine: int = _o["top_k_fine"],
    top_p_semantic: float = _o["top_p_semantic"], top_p_coarse: float = _o["top_p_coarse"],
    top_p_fine: float = _o["top_p_fine"], context: float = _o["context"],
    first_window: float = _o["first_window"],
    seed: int = typer.Option(0, help="Sampling seed."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    quantize: str = typer.Option(DEFAULT_QUANTIZE, help=QUANTIZE_HELP),
    stream: bool = typer.Option(False, help=STREAM_HELP),
) -> None:
    """Generate audio unconditionally with AudioLM."""
    sampling = _sampling(ctx.params)
    _check_stream(sampling, stream)
    pipe = _load(model, semantic_run, coarse_run, fine_run, semantic_tokenizer, codec, device).quantize(quantize)
    kwargs = dict(num_samples=num_samples, sampling=sampling, seed=seed, progress=True)
    if stream:
        paths = _write_stream(out, "sample", num_samples, pipe.stream_generate(seconds, **kwargs), pipe.sample_rate)
    else:
        paths = _write(out, "sample", pipe.generate(seconds, **kwargs), pipe.sample_rate)
    typer.echo(f"wrote {len(paths)} file(s) to {out}")
