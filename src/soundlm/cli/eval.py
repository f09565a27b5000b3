"""`soundlm eval ...`: the evaluation suite. Each command writes OUT/{name}.md and OUT/{name}.json;
`soundlm eval all` runs every evaluation and adds OUT/results.md + OUT/results.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import typer

from soundlm.cli import palm
from soundlm.cli.options import config_from
from soundlm.eval.suite import SuiteConfig
from soundlm.pipeline import AudioLMSampling

app = typer.Typer(no_args_is_help=True, help="Evaluate a codec and an AudioLM model (tables in markdown + JSON).")

_MODEL = "Model bundle folder (semantic/ coarse/ fine/ semantic_tokenizer/ codec/)."
_OUT = "Output folder for the markdown table and JSON (and resume state)."
_SPLIT = "Manifest/store split to evaluate ('heldout' or 'train')."
_DEVICE = "cpu or cuda (default: cuda when available)."
_SAMPLING = AudioLMSampling()  # the defaults `eval continuation` falls back to
_QUANTIZE = "Run the stage LMs with int8 or bf16 weights (none, int8, bf16), to measure what quantizing costs."
_RECOGNIZER = ("Speech recogniser: whisper (Whisper tiny.en, offline, int8) or pocketsphinx (closed corpus "
               "vocabulary, the fallback).")


def _run(fn: Callable[[], Any], out: Path) -> Any:
    """Run an evaluation, write its section to `out` and print it."""
    section = fn()
    from soundlm.eval.report import write_section

    md, _ = write_section(section, out)
    typer.echo(section.markdown())
    typer.echo(f"wrote {md} and {md.with_suffix('.json')}")
    return section


def _pipeline(model: Path, device: str | None, quantize: str = "none") -> Any:
    # Bundles, adapter bundles (`soundlm finetune --save adapters`) and hub ids alike.
    from soundlm.pretrained import load_pipeline

    return load_pipeline(model, device=device).quantize(quantize)


@app.command("codec")
def codec_command(
    codec: str = typer.Option(..., help="Codec: a soundlm codec folder/run, or a Hugging Face id or folder."),
    data: Path = typer.Option(..., help="Corpus manifest (or its folder), or a folder of audio files."),
    out: Path = typer.Option(Path("eval"), help=_OUT),
    split: str = typer.Option("heldout", help=_SPLIT + " Ignored for a folder of loose files."),
    max_files: int | None = typer.Option(None, help="Evaluate at most this many files."),
    num_codebooks: str | None = typer.Option(None, help="Comma-separated codebook counts (default: 1, 2, 4, .. K)."),
    max_seconds: float | None = typer.Option(None, help="Crop every file to this many seconds."),
    stoi: bool = typer.Option(True, help="Compute STOI (speech)."),
    pesq: bool = typer.Option(True, help="Compute wideband PESQ (speech)."),
    device: str | None = typer.Option(None, help=_DEVICE),
) -> None:
    """Mel / multi-resolution STFT distance, SI-SDR, STOI, PESQ-wb at each bitrate (mean over files)."""

    def go() -> Any:
        from soundlm.codec import load_codec
        from soundlm.eval.sections.codec import eval_codec

        counts = [int(k) for k in num_codebooks.split(",")] if num_codebooks else None
        c = load_codec(codec, device=device)
        return eval_codec(c, data, split, max_files, counts, max_seconds, stoi, pesq, out_dir=out)

    _run(go, out)


@app.command("lm")
def lm_command(
    model: Path = typer.Option(..., help=_MODEL),
    store: Path = typer.Option(..., help="Token store (from `soundlm tokenize`) whose records carry a split."),
    out: Path = typer.Option(Path("eval"), help=_OUT),
    split: str = typer.Option("heldout", help=_SPLIT),
    batch_size: int = typer.Option(8, help="Windows per forward pass."),
    device: str | None = typer.Option(None, help=_DEVICE),
    quantize: str = typer.Option("none", help=_QUANTIZE),
    full_windows: bool = typer.Option(False, "--full-windows",
                                      help="Score whole windows only in every stage, as delay-pattern stages always "
                                           "are: pass it for both bundles when comparing flatten with delay."),
) -> None:
    """Per-stage held-out loss (nats per predicted token, as training computes it), bits per token, and bits per
    acoustic code over the coarse and fine stages (comparable between flatten and delay bundles)."""

    def go() -> Any:
        from soundlm.eval.sections.lm import eval_lm

        pipe = _pipeline(model, device, quantize)
        return eval_lm(list(pipe.stages), store, split, batch_size, pipe.device,
                       full_windows=full_windows)

    _run(go, out)


@app.command("continuation")
def continuation_command(
    model: Path = typer.Option(..., help=_MODEL),
    data: Path = typer.Option(..., help="Corpus manifest (or its folder) with speakers and a held-out split; with "
                                        "--music, a corpus from `soundlm data music`."),
    out: Path = typer.Option(Path("eval"), help=_OUT),
    split: str = typer.Option("heldout", help=_SPLIT),
    prompt_seconds: float = typer.Option(3.0, help="Prompt length cut from each utterance."),
    seconds: float = typer.Option(3.0, help="Continuation length (what gets classified)."),
    music: bool = typer.Option(False, "--music", help="AudioLM's piano test instead of the speaker test: key, tempo "
                                                      "and instrument of each continuation against its prompt's, "
                                                      "beside the real next seconds and an unrelated clip's."),
    instrument_model: Path | None = typer.Option(None, help="With --music: the instrument classifier (`soundlm "
                                                            "train instrument`); without it no instrument agreement."),
    num_prompts: int = typer.Option(20, help="Prompts, taken round-robin over voices."),
    enrol_fraction: float = typer.Option(0.5, help="Share of each voice's utterances used to enrol it."),
    save_audio: bool = typer.Option(True, help="Also write the continuations under OUT/continuation_audio/."),
    temperature_coarse: float | None = typer.Option(
        None, help=f"Coarse stage temperature (default: AudioLM's {_SAMPLING.coarse.temperature})."),
    context: float | None = typer.Option(None, help="Fraction of each stage's window kept as context when "
                                                    f"generation slides past it (default {_SAMPLING.context})."),
    seed: int = typer.Option(0, help="Seed (utterance choice and sampling)."),
    recognizer: str = typer.Option("whisper", help=_RECOGNIZER + " 'none': skip the words-heard numbers."),
    device: str | None = typer.Option(None, help=_DEVICE),
    quantize: str = typer.Option("none", help=_QUANTIZE),
) -> None:
    """AudioLM's speaker test: voice accuracy of continuations, with vs without the acoustic prompt; and what a
    recogniser hears in them (dictionary words, repetition). With --music, AudioLM's piano test (OUT/music_continuation.md)."""

    def go() -> Any:
        from dataclasses import replace

        from soundlm.eval.sections.continuation import eval_continuation

        sampling = None  # the defaults, recorded as "default"
        if temperature_coarse is not None or context is not None:
            sampling = AudioLMSampling()
            if context is not None:
                sampling = replace(sampling, context=context)  # validated again by __post_init__
            if temperature_coarse is not None:
                sampling.coarse = replace(sampling.coarse, temperature=temperature_coarse)
        pipe = _pipeline(model, device, quantize)
        if music:
            from soundlm.eval.sections.music_continuation import eval_music_continuation

            return eval_music_continuation(pipe, data, split, prompt_seconds, seconds, num_prompts, instrument_model,
                                           sampling=sampling, seed=seed, out_dir=out, save_audio=save_audio)
        return eval_continuation(pipe, data, split, prompt_seconds, seconds, num_prompts, enrol_fraction,
                                 sampling=sampling, seed=seed, out_dir=out, save_audio=save_audio,
                                 recognizer=None if recognizer == "none" else recognizer)

    _run(go, out)


@app.command("voice")
def voice_command(
    model: Path = typer.Option(..., help=_MODEL + " Also an adapter bundle or a hub id."),
    data: Path = typer.Option(..., help="Recordings of the target voice (a folder or a manifest): each file's start "
                                        "is a prompt."),
    reference: Path | None = typer.Option(None, help="Other recordings of the voice to enrol it (default: the other "
                                                     "files of --data, leave-one-out)."),
    out: Path = typer.Option(Path("eval"), help=_OUT),
    prompt_seconds: float = typer.Option(3.0, help="Prompt length cut from each file."),
    seconds: float = typer.Option(3.0, help="Continuation length (what is compared with the voice)."),
    num_prompts: int = typer.Option(10, help="Files used as prompts (the first ones long enough)."),
    save_audio: bool = typer.Option(True, help="Also write the continuations under OUT/voice_audio/."),
    seed: int = typer.Option(0, help="Seed for sampling."),
    device: str | None = typer.Option(None, help=_DEVICE),
) -> None:
    """Speaker similarity of continuations to a target voice, with and without the acoustic prompt: run it
    before and after `soundlm finetune` on the same files."""

    def go() -> Any:
        from soundlm.eval.sections.voice import eval_voice

        return eval_voice(_pipeline(model, device), data, reference, prompt_seconds, seconds, num_prompts, seed=seed,
                          out_dir=out, save_audio=save_audio)

    _run(go, out)


@app.command("lexical")
def lexical_command(
    model: Path = typer.Option(..., help=_MODEL),
    out: Path = typer.Option(Path("eval"), help=_OUT + " The spoken pairs go to OUT/lexical_audio/."),
    num_pairs: int = typer.Option(50, help="Word / non-word pairs to score."),
    voice: str = typer.Option("en-us", help="espeak-ng voice for every item (e.g. en-us, en-us+f3), or several, "
                                            "comma-separated: accuracy is then the mean over voices."),
    seed: int = typer.Option(0, help="Seed for the non-words."),
    data: Path | None = typer.Option(None, help="Training corpus manifest: build the pairs from its words "
                                                "(default: built-in common English words)."),
    words_split: str = typer.Option("train", help="Split of --data whose transcripts give the words."),
    device: str | None = typer.Option(None, help=_DEVICE),
) -> None:
    """sWUGGY-style lexical accuracy: the semantic LM's total log-prob of word vs non-word."""

    def go() -> Any:
        from soundlm.eval.sections.lexical import eval_lexical

        return eval_lexical(_pipeline(model, device), num_pairs, voice, seed, work_dir=out, data=data,
                            words_split=words_split)

    _run(go, out)


@app.command("units")
def units_command(
    tokenizer: Path = typer.Option(..., help="Semantic tokenizer folder, or a model bundle (its semantic_tokenizer/)."),
    data: Path = typer.Option(..., help="Corpus manifest (or its folder) with a speaker per row."),
    out: Path = typer.Option(Path("eval"), help=_OUT),
    split: str = typer.Option("heldout", help=_SPLIT),
    max_files: int | None = typer.Option(None, help="Use at most this many files."),
    folds: int = typer.Option(5, help="Cross-validation folds (every speaker needs at least this many files)."),
    seed: int = typer.Option(0, help="Seed for the fold split."),
    device: str | None = typer.Option(None, help=_DEVICE),
) -> None:
    """Speaker information in the semantic units: cross-validated speaker ID from unit histograms."""

    def go() -> Any:
        from soundlm.eval.sections.units import eval_units
        from soundlm.pipeline import SEMANTIC_TOKENIZER_DIR
        from soundlm.semantic import load_semantic_tokenizer

        in_bundle = tokenizer / SEMANTIC_TOKENIZER_DIR
        folder = in_bundle if in_bundle.is_dir() else tokenizer
        return eval_units(load_semantic_tokenizer(folder, device=device), data, split, max_files, folds, seed)

    _run(go, out)


@app.command("analysers")
def analysers_command(
    data: Path = typer.Option(..., help="Music corpus from `soundlm data music` (folder or manifest.jsonl)."),
    instrument_model: Path | None = typer.Option(None, help="Instrument classifier (`soundlm train instrument` "
                                                           "run or its final/); without it, key and tempo only."),
    out: Path = typer.Option(Path("eval"), help=_OUT),
    split: str = typer.Option("heldout", help=_SPLIT),
    max_files: int | None = typer.Option(None, help="Use at most this many clips."),
) -> None:
    """Music analysers against the corpus's labels: key/mode, tempo (4%, and half/double), instrument; chance beside."""

    def go() -> Any:
        from soundlm.eval.sections.analysers import eval_analysers

        return eval_analysers(data, instrument_model, split, max_files, out_dir=out)

    _run(go, out)


@app.command("mulan")
def mulan_command(
    model: Path = typer.Argument(..., help="MuLan folder (`soundlm train mulan` run or its final/)."),
    data: Path = typer.Option(..., help="Music corpus from `soundlm data music` (folder or manifest.jsonl)."),
    out: Path = typer.Option(Path("eval"), help=_OUT),
    split: str = typer.Option("heldout", help=_SPLIT),
    max_files: int | None = typer.Option(None, help="Use at most this many clips."),
    seed: int = typer.Option(0, help="Seed of the shuffled-caption pairing."),
    reference_split: str | None = typer.Option(None, help="Also the Frechet distance of the split's audio "
                                                          "embeddings to this split's (e.g. train)."),
    device: str | None = typer.Option(None, help=_DEVICE),
) -> None:
    """MuLan retrieval recall@1/5/10 (text->audio, audio->text) with chance, matched vs shuffled cosine, and
    key/instrument/tempo/loudness text probes."""

    def go() -> Any:
        from soundlm.eval.sections.mulan import eval_mulan

        return eval_mulan(model, data, split, max_files, seed=seed, device=device,
                          reference_split=reference_split)

    _run(go, out)


@app.command("music")
def music_command(
    model: str = typer.Argument(..., help="Music bundle (an AudioLM bundle with conditioned stages + mulan/), "
                                          "or a hub id."),
    data: Path = typer.Option(..., help="Music corpus from `soundlm data music` (folder or manifest.jsonl)."),
    out: Path = typer.Option(Path("eval"), help=_OUT),
    split: str = typer.Option("heldout", help=_SPLIT),
    captions: int = typer.Option(16, help="Captions of the split to generate from (one clip each)."),
    guidance: float | None = typer.Option(None, help="Classifier-free guidance scale (default: MusicLM's 3)."),
    seconds: float = typer.Option(4.0, help="Seconds generated per caption."),
    mulan: Path | None = typer.Option(None, help="The MuLan that judges (default: the model's own mulan/)."),
    instrument_model: Path | None = typer.Option(None, help="Instrument classifier (`soundlm train instrument` "
                                                           "run or its final/); without it, key and tempo only."),
    against: str | None = typer.Option(None, help="A second music bundle: generate on the same captions and seeds "
                                                  "and print MODEL's win rate over it by each metric."),
    reward_saw: str = typer.Option("", help="With --against: the metrics the tuning reward used (comma-separated "
                                            "of mulan, key, tempo, instrument); the win rate on the others is "
                                            "MusicRL's unseen-metric target."),
    seed: int = typer.Option(0, help="Caption i generates with seed + i; also the caption pick and shuffles."),
    device: str | None = typer.Option(None, help=_DEVICE),
) -> None:
    """MusicLM on held-out captions: MuLan text adherence (vs NULL condition and shuffled captions), key / tempo /
    instrument accuracy with chance, Frechet distance in MuLan audio space with the real-vs-real floor."""

    def go() -> Any:
        from soundlm.eval.sections.music import eval_music
        from soundlm.music.pipeline import MusicLMPipeline

        music = MusicLMPipeline.from_bundle(model, device=device)
        judge = None
        if mulan is not None:
            from soundlm.music.mulan import load_mulan

            judge = load_mulan(mulan, device=device or "cpu")
        other = MusicLMPipeline.from_bundle(against, device=device) if against is not None else None
        return eval_music(music, data, split, captions, guidance, seconds, judge, instrument_model, other,
                          seed=seed, out_dir=out, reward_saw=tuple(m for m in reward_saw.split(",") if m),
                          settings_extra={"model": model, "mulan": None if mulan is None else str(mulan),
                                          "against": against})

    _run(go, out)


@app.command("asr")
def asr_command(
    codec: str = typer.Option(..., help="Codec: a soundlm codec folder/run, or a Hugging Face id or folder."),
    data: Path = typer.Option(..., help="Corpus manifest (or its folder) with transcripts."),
    out: Path = typer.Option(Path("eval"), help=_OUT),
    split: str = typer.Option("heldout", help=_SPLIT),
    max_files: int | None = typer.Option(None, help="Evaluate at most this many files."),
    num_codebooks: int | None = typer.Option(None, help="Codebooks for the resynthesis (default: the codec's)."),
    recognizer: str = typer.Option("whisper", help=_RECOGNIZER),
    seed: int = typer.Option(0, help="Seed for pocketsphinx's dither."),
    max_hmm_per_frame: int = typer.Option(10_000, help="pocketsphinx search bound; lower is faster on noisy audio."),
    device: str | None = typer.Option(None, help=_DEVICE),
) -> None:
    """Recogniser WER/CER (Whisper tiny.en by default) of the original audio and of the codec resynthesis."""

    def go() -> Any:
        from soundlm.codec import load_codec
        from soundlm.eval.sections.asr import eval_asr

        c = load_codec(codec, device=device)
        return eval_asr(c, data, split, max_files, num_codebooks, seed, out_dir=out,
                        max_hmm_per_frame=max_hmm_per_frame, recognizer=recognizer)

    _run(go, out)


@app.command("acoustic")
def acoustic_command(
    model: Path = typer.Option(..., help=_MODEL),
    data: Path = typer.Option(..., help="Corpus manifest (or its folder) with transcripts."),
    out: Path = typer.Option(Path("eval"), help=_OUT + " The audio goes to OUT/acoustic_audio/."),
    split: str = typer.Option("heldout", help=_SPLIT),
    max_files: int | None = typer.Option(SuiteConfig.acoustic_max_files, help="Evaluate at most this many files."),
    recognizer: str = typer.Option("whisper", help=_RECOGNIZER),
    save_audio: bool = typer.Option(True, help="Write the resynthesis and the generated audio."),
    seed: int = typer.Option(0, help="Seed for sampling (utterance i uses seed + i)."),
    device: str | None = typer.Option(None, help=_DEVICE),
    quantize: str = typer.Option("none", help=_QUANTIZE),
) -> None:
    """AudioLM's acoustic-generation test: WER/CER of audio generated from ground-truth semantic ids by the coarse
    and fine stages, beside the codec resynthesis and the original."""

    def go() -> Any:
        from soundlm.eval.sections.acoustic import eval_acoustic

        return eval_acoustic(_pipeline(model, device, quantize), data, split, max_files, seed=seed, out_dir=out,
                             save_audio=save_audio, recognizer=recognizer)

    _run(go, out)


@app.command("all")
def all_command(
    ctx: typer.Context,
    model: Path = typer.Option(..., help=_MODEL),
    data: Path = typer.Option(..., help="Corpus manifest (or its folder) with speakers, transcripts, splits."),
    store: Path = typer.Option(..., help="Token store of that corpus (for the held-out LM loss)."),
    out: Path = typer.Option(..., help="Output folder: results.md, results.json and one file pair per section."),
    split: str = typer.Option(SuiteConfig.split, help=_SPLIT),
    max_files: int | None = typer.Option(SuiteConfig.max_files, help="Files for the codec evaluation."),
    asr_max_files: int | None = typer.Option(SuiteConfig.asr_max_files, help="Files for the ASR evaluation."),
    acoustic_max_files: int | None = typer.Option(SuiteConfig.acoustic_max_files,
                                                  help="Files for the acoustic-generation test."),
    recognizer: str = typer.Option(SuiteConfig.recognizer, help=_RECOGNIZER),
    prompt_seconds: float = typer.Option(SuiteConfig.prompt_seconds, help="Continuation prompt length."),
    seconds: float = typer.Option(SuiteConfig.seconds, help="Continuation length."),
    num_prompts: int = typer.Option(SuiteConfig.num_prompts, help="Continuation prompts."),
    num_pairs: int = typer.Option(SuiteConfig.num_pairs, help="Lexical word / non-word pairs."),
    voice: str = typer.Option(SuiteConfig.voice, help="espeak-ng voice of the lexical pairs (comma-separated: "
                                                      "several, averaged)."),
    skip: str = typer.Option(",".join(SuiteConfig.skip), help="Comma-separated sections to leave out "
                                                              "(codec,lm,units,continuation,lexical,asr,acoustic)."),
    seed: int = typer.Option(SuiteConfig.seed, help="Seed for every evaluation."),
    device: str | None = typer.Option(None, help=_DEVICE),
) -> None:
    """Run every evaluation on one model; writes OUT/results.md and OUT/results.json."""
    from soundlm.eval.suite import run_all

    sections = run_all(config_from(SuiteConfig, ctx.params,
                                   skip=tuple(s.strip() for s in skip.split(",") if s.strip())))
    for s in sections:
        typer.echo(f"{s.name}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                            for k, v in s.summary.items()))
    typer.echo(f"wrote {out / 'results.md'} and {out / 'results.json'}")


# AudioPaLM's evaluation is defined beside the other palm commands.
app.command("palm")(palm.eval_palm_command)
