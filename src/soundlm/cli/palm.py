"""AudioPaLM commands: `soundlm train textlm`, `soundlm train palm`, `soundlm asr`, `soundlm translate`,
`soundlm tts` and `soundlm eval palm`."""

from __future__ import annotations

from pathlib import Path

import typer

from soundlm.cli.options import config_from
from soundlm.palm.evaluate import PalmEvalConfig, evaluate_palm
from soundlm.palm.text_lm import TextLMConfig, train_text_lm
from soundlm.palm.train import PalmTrainConfig, train_palm


def _split(values: str) -> tuple[str, ...]:
    """A comma-separated option (languages, tasks) as the tuple the configs hold."""
    return tuple(values.split(","))


def train_textlm_command(
    ctx: typer.Context,
    out: Path = typer.Option(..., help="Run folder; the Hugging Face model goes to OUT/final. Rerun to resume."),
    sentences: int = typer.Option(TextLMConfig.num_sentences,
                                  help="Parallel sentences drawn from soundlm.data.text (each in every language)."),
    languages: str = typer.Option(",".join(TextLMConfig.languages), help="Comma-separated languages."),
    vocab_size: int = typer.Option(TextLMConfig.vocab_size, help="Byte-level BPE vocabulary size."),
    hidden_size: int = typer.Option(TextLMConfig.hidden_size, help="Model width."),
    layers: int = typer.Option(TextLMConfig.num_layers, help="Transformer layers."),
    heads: int = typer.Option(TextLMConfig.num_heads, help="Attention heads."),
    steps: int = typer.Option(TextLMConfig.steps, help="Optimizer steps."),
    batch_size: int = typer.Option(TextLMConfig.batch_size, help="Sentences per step."),
    lr: float = typer.Option(TextLMConfig.lr, help="Peak learning rate."),
    ckpt_every: int = typer.Option(TextLMConfig.ckpt_every, help="Checkpoint every N steps."),
    seed: int = typer.Option(TextLMConfig.seed, help="Seed for sentences, weights and order."),
    progress: bool = typer.Option(TextLMConfig.progress, help="Show a progress bar."),
) -> None:
    """Train a tiny Llama text LM offline (the text initialisation for `soundlm train palm`)."""
    cfg = config_from(TextLMConfig, ctx.params, num_sentences=sentences, languages=_split(languages),
                      num_layers=layers, num_heads=heads)
    result = train_text_lm(cfg)
    loss = "" if result.loss is None else f", loss {result.loss:.4f}"
    typer.echo(f"text LM trained to step {result.step}{loss}: {result.folder}")


def train_palm_command(
    ctx: typer.Context,
    store: Path = typer.Option(..., help="Token store of parallel speech (written by `soundlm tokenize`)."),
    init: str = typer.Option(..., help="Text LM: Hugging Face hub id, HF folder, or a `soundlm train textlm` run."),
    out: Path = typer.Option(..., help="Run folder; rerunning the same command resumes from its latest checkpoint."),
    tasks: str = typer.Option(",".join(PalmTrainConfig.tasks),
                              help="Comma-separated: asr, tts, ast, s2st, asr_ast, continue."),
    scratch: bool = typer.Option(PalmTrainConfig.from_scratch, "--scratch",
                                 help="Same architecture as --init, random weights (ablation)."),
    tokenizer: str | None = typer.Option(None, help="Text tokenizer (default: the one of --init)."),
    languages: str | None = typer.Option(None, help="Comma-separated languages to use (default: all in the store)."),
    manifest: Path | None = typer.Option(None, help="Corpus manifest, if the store lacks text_id/transcript."),
    acoustic_vocab: bool = typer.Option(PalmTrainConfig.acoustic_vocab,
                                        help="Also append the store's acoustic codebooks to the vocabulary."),
    new_rows: str = typer.Option(PalmTrainConfig.new_rows, help="Init of the new embedding rows: mean or random."),
    steps: int = typer.Option(PalmTrainConfig.steps, help="Optimizer steps."),
    batch_size: int = typer.Option(PalmTrainConfig.batch_size,
                                   help="Examples per step and process (launched as N processes: N x this)."),
    lr: float = typer.Option(PalmTrainConfig.lr, help="Peak learning rate."),
    warmup: int = typer.Option(PalmTrainConfig.warmup, help="Linear warmup steps."),
    max_length: int = typer.Option(PalmTrainConfig.max_length, help="Drop examples longer than this many tokens."),
    ckpt_every: int = typer.Option(PalmTrainConfig.ckpt_every, help="Checkpoint every N steps."),
    seed: int = typer.Option(PalmTrainConfig.seed, help="Seed for new rows and order."),
    progress: bool = typer.Option(PalmTrainConfig.progress, help="Show a progress bar."),
) -> None:
    """Train one LM for ASR, TTS, speech translation and S2ST (AudioPaLM) from a text LM."""
    cfg = config_from(PalmTrainConfig, ctx.params, tasks=_split(tasks), from_scratch=scratch,
                      languages=_split(languages) if languages else None)
    result = train_palm(cfg)
    if not result.main_process:
        return
    loss = "" if result.last_loss is None else f", loss {result.last_loss:.4f}"
    dropped = f" ({result.dropped_too_long} too long, dropped)" if result.dropped_too_long else ""
    typer.echo(f"trained on {result.num_examples} examples {result.counts}{dropped} to step {result.step}{loss}; "
               f"model: {result.final_dir}")


def _load(model: Path):
    from soundlm.palm.model import load_palm

    return load_palm(model)


def asr_command(
    wav: Path = typer.Argument(..., help="Audio file to transcribe."),
    model: Path = typer.Option(..., help="Palm run folder (or its final/ folder)."),
    language: str = typer.Option("en", help="Language spoken in the file (selects the [ASR xx] tag)."),
    semantic_tokenizer: Path | None = typer.Option(None, help="Override the semantic tokenizer of the store."),
) -> None:
    """Transcribe speech with a palm model."""
    from soundlm.palm.infer import encode_audio, transcribe

    palm = _load(model)
    typer.echo(transcribe(palm, encode_audio(palm, wav, semantic_tokenizer), language))


def translate_command(
    wav: Path = typer.Argument(..., help="Audio file to translate."),
    to: str = typer.Option(..., "--to", help="Target language code, e.g. fr."),
    model: Path = typer.Option(..., help="Palm run folder (or its final/ folder)."),
    source: str = typer.Option("en", "--from", help="Language spoken in the file."),
    speech: bool = typer.Option(False, "--speech", help="Speech-to-speech: output translated speech (S2ST)."),
    multi_step: bool = typer.Option(False, help="Transcribe first, then translate ([ASR AST] tag)."),
    audiolm: Path | None = typer.Option(None, help="AudioLM bundle (coarse/fine stages + codec) to render speech."),
    out: Path | None = typer.Option(None, help="Output wav for --speech (default: WAV stem + .TO.wav)."),
    out_tokens: Path | None = typer.Option(None, help="Also save the output semantic ids (.npy) for --speech."),
    semantic_tokenizer: Path | None = typer.Option(None, help="Override the semantic tokenizer of the store."),
) -> None:
    """Translate speech into text (AST) or, with --speech, into speech in the source voice (S2ST)."""
    from soundlm.palm.infer import encode_audio, translate

    palm = _load(model)
    result = translate(palm, encode_audio(palm, wav, semantic_tokenizer), source, to, speech=speech,
                       multi_step=multi_step)
    if not speech:
        for step in result.steps or []:
            typer.echo(step)
        return
    _write_speech(result.semantic, audiolm, out or wav.with_suffix(f".{to}.wav"), out_tokens, voice_prompt=wav)


def tts_command(
    text: str = typer.Argument(..., help="Text to speak."),
    model: Path = typer.Option(..., help="Palm run folder (or its final/ folder)."),
    language: str = typer.Option("en", help="Language of the text."),
    audiolm: Path | None = typer.Option(None, help="AudioLM bundle (coarse/fine stages + codec) to render speech."),
    voice: Path | None = typer.Option(None, help="A wav of the voice to use (acoustic prompt)."),
    out: Path = typer.Option(Path("tts.wav"), help="Output wav."),
    out_tokens: Path | None = typer.Option(None, help="Also save the semantic ids (.npy)."),
) -> None:
    """Text to speech: the palm model writes semantic ids, the AudioLM acoustic stages render them."""
    from soundlm.palm.infer import synthesize

    palm = _load(model)
    _write_speech(synthesize(palm, text, language), audiolm, out, out_tokens, voice_prompt=voice)


def _write_speech(semantic, audiolm: Path | None, out: Path, out_tokens: Path | None,
                  voice_prompt: Path | None) -> None:
    import numpy as np

    from soundlm.audio import save_audio
    from soundlm.fileio import atomic_path
    from soundlm.palm.infer import semantic_to_audio

    if out_tokens is not None:
        with atomic_path(out_tokens, suffix=".npy") as tmp:
            np.save(tmp, np.asarray(semantic))
        typer.echo(f"{len(semantic)} semantic ids: {out_tokens}")
        if audiolm is None:
            return
    wav, sr = semantic_to_audio(semantic, audiolm, voice_prompt=voice_prompt)
    save_audio(out, wav, sr)
    typer.echo(f"wrote {out} ({wav.shape[-1] / sr:.2f} s)")


def eval_palm_command(
    ctx: typer.Context,
    model: Path = typer.Option(..., help="Palm run folder (or its final/ folder or a checkpoint)."),
    store: Path = typer.Option(..., help="Token store holding the evaluation split (written by `soundlm tokenize`)."),
    manifest: Path | None = typer.Option(None, help="Corpus manifest.jsonl: fills missing store columns and locates "
                                                    "the audio for voice transfer."),
    split: str = typer.Option(PalmEvalConfig.split,
                              help="Split of the source utterances (held-out voices by default)."),
    out: Path | None = typer.Option(None, help="Report folder (default: MODEL/eval_SPLIT). Rerun to resume."),
    tasks: str | None = typer.Option(None, help="Comma-separated subset of asr,ast,asr_ast,tts,s2st "
                                               "(default: those the model was trained on)."),
    languages: str | None = typer.Option(None, help="Comma-separated source languages (default: all)."),
    max_examples: int = typer.Option(PalmEvalConfig.max_examples or 0, help="Examples per task (0: all)."),
    max_semantic_tokens: int = typer.Option(PalmEvalConfig.max_semantic_tokens,
                                            help="Longest TTS/S2ST output, in semantic ids."),
    audiolm: Path | None = typer.Option(None, help="AudioLM bundle (coarse/fine + codec): renders S2ST in the source "
                                                   "voice for the speaker-similarity score; skipped without it."),
    voice_examples: int = typer.Option(PalmEvalConfig.voice_examples,
                                       help="S2ST outputs rendered to audio for voice transfer."),
    recognizer: str = typer.Option(PalmEvalConfig.recognizer or "none",
                                   help="Recogniser for the rendered English TTS/S2ST audio (with --audiolm): "
                                        "whisper or none."),
    device: str | None = typer.Option(None, help="cpu, cuda, ...; default: cuda if available."),
    progress: bool = typer.Option(PalmEvalConfig.progress, help="Show progress bars."),
) -> None:
    """Score a palm model on a split: ASR WER/CER, AST BLEU vs the copy baseline, multi-step, TTS and S2ST
    intelligibility (through the model's own ASR), voice transfer. Writes report.md and report.json."""
    cfg = config_from(PalmEvalConfig, ctx.params, out=str(out or Path(model) / f"eval_{split}"),
                      languages=_split(languages) if languages else None, tasks=_split(tasks) if tasks else None,
                      max_examples=max_examples or None, recognizer=None if recognizer == "none" else recognizer)
    result = evaluate_palm(cfg)
    typer.echo(result.md_path.read_text(encoding="utf-8"))
    typer.echo(f"wrote {result.md_path} and {result.json_path}")
