"""`soundlm data ...`: synthetic corpora."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.errors import reported
from soundlm.cli.options import keyword_defaults
from soundlm.data.music import make_music_corpus
from soundlm.data.piano import make_piano_corpus
from soundlm.data.speech import make_speech_corpus
from soundlm.data.text import LANGUAGES

app = typer.Typer(no_args_is_help=True)

_SPEECH = keyword_defaults(make_speech_corpus)
_PIANO = keyword_defaults(make_piano_corpus)
_MUSIC = keyword_defaults(make_music_corpus)
# `soundlm data` has always exited 1 on a documented error (the other commands 2).
_EXIT_CODE = 1


@app.command()
def speech(
    out: Path = typer.Option(..., "--out", help="Output folder (created; an existing one is resumed)."),
    hours: float = typer.Option(..., "--hours", help="Approximate total duration of the corpus, in hours."),
    seed: int = typer.Option(_SPEECH["seed"], "--seed",
                             help="Seed for speakers and sentences; same seed, same corpus."),
    languages: str = typer.Option(",".join(LANGUAGES), "--languages",
                                  help="Comma-separated languages (en, fr, de, es); each sentence is read in all."),
    voices: int = typer.Option(_SPEECH["voices"], "--voices", help="Training speakers per language."),
    heldout_voices: int = typer.Option(_SPEECH["heldout_voices"], "--heldout-voices",
                                       help="Held-out speakers per language (split=heldout), voices unused in "
                                            "training."),
    sample_rate: int = typer.Option(_SPEECH["sample_rate"], "--sample-rate",
                                    help="Output sample rate in Hz (mono wav)."),
    workers: int | None = typer.Option(None, "--workers", help="Parallel processes (default: number of CPUs)."),
    sentences_per_utterance: int = typer.Option(_SPEECH["sentences_per_utterance"], "--sentences-per-utterance",
                                                help="Sentences joined into one recording (longer utterances)."),
    voice: str | None = typer.Option(None, "--voice",
                                     help="Read everything with this one voice, ENGINE:NAME (festival:ked_diphone, "
                                          "flite:slt, espeak-ng:en-us+m3); replaces --voices/--heldout-voices."),
    inventory: str = typer.Option(_SPEECH["inventory"], "--inventory",
                                  help="How speakers are made: classic (the recipe's espeak-ng/flite voices) or wide "
                                       "(hundreds: pitch/rate variants and signal-transformed pseudo-speakers; "
                                       "held-out voices of kinds absent from training)."),
) -> None:
    """Multi-speaker parallel speech from espeak-ng/flite/festival, with manifest.jsonl and speakers.json."""
    with reported(exit_code=_EXIT_CODE):
        manifest = make_speech_corpus(out, hours, seed=seed, languages=[x.strip() for x in languages.split(",") if x.strip()],
                                      voices=voices, heldout_voices=heldout_voices, sample_rate=sample_rate,
                                      workers=workers, sentences_per_utterance=sentences_per_utterance, voice=voice,
                                      inventory=inventory)
    typer.echo(f"wrote {manifest}")


@app.command()
def piano(
    out: Path = typer.Option(..., "--out", help="Output folder (created; an existing one is resumed)."),
    pieces: int = typer.Option(_PIANO["pieces"], "--pieces", help="Number of scores to render."),
    max_seconds: float = typer.Option(_PIANO["max_seconds"], "--max-seconds",
                                      help="Crop each piece to this many seconds."),
    seed: int = typer.Option(_PIANO["seed"], "--seed", help="Seed for choosing pieces; same seed, same corpus."),
    sample_rate: int = typer.Option(_PIANO["sample_rate"], "--sample-rate",
                                    help="Output sample rate in Hz (mono wav)."),
    composer: str = typer.Option(_PIANO["composer"], "--composer", help="Composer in music21's bundled corpus."),
    heldout_fraction: float = typer.Option(_PIANO["heldout_fraction"], "--heldout-fraction",
                                           help="Fraction of pieces with split=heldout."),
    soundfont: Path | None = typer.Option(None, "--soundfont",
                                          help="General MIDI .sf2 (default: FluidR3_GM from /usr/share/sounds/sf2)."),
    workers: int | None = typer.Option(None, "--workers", help="Parallel processes (default: number of CPUs)."),
) -> None:
    """Solo piano from music21 scores rendered with fluidsynth, with manifest.jsonl."""
    with reported(exit_code=_EXIT_CODE):
        manifest = make_piano_corpus(out, pieces=pieces, max_seconds=max_seconds, seed=seed, sample_rate=sample_rate,
                                     composer=composer, heldout_fraction=heldout_fraction, soundfont=soundfont,
                                     workers=workers)
    typer.echo(f"wrote {manifest}")


@app.command()
def music(
    out: Path = typer.Option(..., "--out", help="Output folder (created; an existing one is resumed)."),
    clips: int = typer.Option(_MUSIC["clips"], "--clips", help="Number of clips (about; failed pieces are skipped)."),
    seed: int = typer.Option(_MUSIC["seed"], "--seed",
                             help="Seed for pieces, attributes, held-out pairs and captions; same seed, same corpus."),
    max_seconds: float = typer.Option(_MUSIC["max_seconds"], "--max-seconds", help="Length of each clip."),
    clips_per_piece: int = typer.Option(_MUSIC["clips_per_piece"], "--clips-per-piece",
                                        help="Clips rendered from each score (own instrument, key, tempo, dynamic)."),
    heldout_fraction: float = typer.Option(_MUSIC["heldout_fraction"], "--heldout-fraction",
                                           help="Fraction of pieces whose clips are all split=heldout."),
    sample_rate: int = typer.Option(_MUSIC["sample_rate"], "--sample-rate", help="Output sample rate in Hz (mono wav)."),
    soundfont: Path | None = typer.Option(None, "--soundfont",
                                          help="General MIDI .sf2 (default: FluidR3_GM from /usr/share/sounds/sf2)."),
    workers: int | None = typer.Option(None, "--workers", help="Parallel processes (default: number of CPUs)."),
) -> None:
    """Music from music21 scores: 8 GM instruments, drawn keys/tempi/dynamics, attributes and captions."""
    with reported(exit_code=_EXIT_CODE):
        manifest = make_music_corpus(out, clips=clips, seed=seed, max_seconds=max_seconds,
                                     clips_per_piece=clips_per_piece, heldout_fraction=heldout_fraction,
                                     sample_rate=sample_rate, soundfont=soundfont, workers=workers)
    typer.echo(f"wrote {manifest}")
