"""`soundlm tokenize`: audio -> semantic ids + codec codes in a token store."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.tokenize import TokenizeConfig, tokenize_corpus


def tokenize_command(
    ctx: typer.Context,
    source: Path = typer.Argument(..., help="Audio folder (searched recursively), one audio file, or a corpus "
                                            "manifest.jsonl. A folder holding manifest.jsonl is read through it "
                                            "so speaker/transcript/language reach the store."),
    out: Path = typer.Option(..., help="Token store folder. Rerunning the same command resumes: finished parts "
                                       "are kept, unfinished ones redone."),
    semantic: Path = typer.Option(..., help="Semantic tokenizer folder (from `soundlm train semantic`)."),
    codec: str = typer.Option(..., help="Codec: a soundlm codec folder, or a Hugging Face EnCodec/DAC/Mimi "
                                        "folder or hub id."),
    batch_size: int = typer.Option(TokenizeConfig.batch_size,
                                   help="Files per inference batch (files of similar length go together)."),
    workers: int = typer.Option(TokenizeConfig.workers,
                                help="Processes that load and resample audio (0: in the main process)."),
    num_shards: int = typer.Option(TokenizeConfig.num_shards, help="Split the corpus over this many machines/jobs."),
    shard_index: int = typer.Option(TokenizeConfig.shard_index, help="Which shard this job does: the files at "
                                                                     "positions i with i % num_shards == shard_index."),
    part_size: int = typer.Option(TokenizeConfig.part_size, help="Files per Parquet part, the unit of resuming."),
    device: str | None = typer.Option(None, help="Torch device; default: cuda if available, else cpu."),
    min_seconds: float = typer.Option(TokenizeConfig.min_seconds, help="Skip files shorter than this."),
    max_seconds: float = typer.Option(TokenizeConfig.max_seconds or 0,
                                      help="Chunk length: a longer file is cut into chunks of at most this length, "
                                           "stored as ID#0, ID#1, ... with their offset and parent id (0: never cut)."),
    chunker: str = typer.Option(TokenizeConfig.chunker,
                                help="Where chunks end: auto (silero if installed, else energy), energy (quiet "
                                     "frames), silero (Silero VAD's pauses; pip install silero-vad) or fixed "
                                     "(windows only); without a pause, fixed windows with 1 s of overlapping "
                                     "context trimmed off."),
    normalize: str = typer.Option(TokenizeConfig.normalize or "none",
                                  help="Level before tokenizing: none, peak or rms. Use what the tokenizers were "
                                       "trained with."),
    mulan: Path | None = typer.Option(None, help="A MuLan folder (`soundlm train mulan`): store each file's condition "
                                                 "ids (its quantized MuLan audio embedding), on which `soundlm train "
                                                 "lm` conditions the semantic and coarse stages (MusicLM)."),
    progress: bool = typer.Option(True, help="Show a progress bar."),
) -> None:
    """Tokenize a corpus into a sharded, resumable Parquet token store."""
    cfg = config_from(TokenizeConfig, ctx.params, max_seconds=max_seconds if max_seconds > 0 else None,
                      normalize=None if normalize == "none" else normalize)
    summary = tokenize_corpus(cfg, progress=progress)
    typer.echo(summary.line())
