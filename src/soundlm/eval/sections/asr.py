"""`soundlm eval asr`: intelligibility, recogniser WER/CER of the original audio and its codec resynthesis."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from soundlm.eval.report import EvalSection, RowState, seed_everything, state_path

if TYPE_CHECKING:
    from soundlm.codec.base import AcousticTokenizer
    from soundlm.data import CorpusItem
    from soundlm.eval.asr import Recognizer, WERResult


def english_utterances(data: str | Path, split: str, max_files: int | None) -> tuple[list[CorpusItem], list[CorpusItem]]:
    """The English rows of `split` to score (at most `max_files`), and every English row of the corpus."""
    from soundlm.data import open_corpus

    every = open_corpus(data)
    if any(u.transcript is None for u in every):
        raise ValueError(f"{data}: ASR evaluation needs a manifest with transcripts; pass a corpus manifest")
    english = [u for u in every if (u.language or "en").lower().startswith("en")]
    utts = [u for u in english if u.in_split(split)][:max_files]
    if not utts:
        raise ValueError(f"{data}: no English rows with split {split!r}; the recognisers only know English")
    return utts, english


def corpus_recognizer(name: str, english: list[CorpusItem], split: str, seed: int = 0,
                      max_hmm_per_frame: int = 10_000) -> Recognizer:
    """The recogniser `name` set up for this corpus.

    Whisper needs nothing from the corpus. pocketsphinx decodes with a trigram LM of the
    transcripts of the other splits (never the evaluated utterances' own), over the closed
    vocabulary of every transcript word; without other splits, a word loop over that vocabulary.
    """
    from soundlm.eval.asr import load_recognizer

    others = [u.transcript for u in english if not u.in_split(split)]
    return load_recognizer(name, sentences=others, vocabulary=[u.transcript for u in english], seed=seed,
                           max_hmm_per_frame=max_hmm_per_frame)


def error_summary(name: str, result: WERResult) -> dict[str, float]:
    return {f"wer_{name}": result.wer, f"cer_{name}": result.cer}


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, None when the denominator is 0 (a perfect reference: no ratio to report)."""
    return numerator / denominator if denominator > 0 else None


def eval_asr(codec: AcousticTokenizer, data: str | Path, split: str = "heldout", max_files: int | None = None,
             num_codebooks: int | None = None, seed: int = 0, out_dir: str | Path | None = None,
             progress: bool = True, max_hmm_per_frame: int = 10_000, recognizer: str = "whisper") -> EvalSection:
    """Recogniser WER/CER of the original audio and of its codec resynthesis (English rows only).

    recognizer: "whisper" (tiny.en, open vocabulary; the default) or "pocketsphinx" (closed
    corpus vocabulary, see `corpus_recognizer`; max_hmm_per_frame bounds its search: with the
    word loop, noise-like resyntheses took minutes per clip).
    """
    from tqdm import tqdm

    from soundlm.audio import load_audio
    from soundlm.eval.asr import word_error_rate
    from soundlm.eval.codec_metrics import resynthesize

    start = time.perf_counter()
    seed_everything(seed)
    utts, english = english_utterances(data, split, max_files)
    asr = corpus_recognizer(recognizer, english, split, seed, max_hmm_per_frame)
    k = num_codebooks or codec.num_codebooks
    if not 1 <= k <= codec.total_codebooks:
        raise ValueError(f"--num-codebooks must be in 1..{codec.total_codebooks}, got {k}")
    settings = {"codec": codec.describe(), "data": str(data), "split": split, "num_files": len(utts),
                "num_codebooks": k, **asr.describe(), "seed": seed}
    if recognizer == "pocketsphinx":
        settings["max_hmm_per_frame"] = max_hmm_per_frame
    state = RowState(state_path(out_dir, "asr"), settings)
    original = codec.num_codebooks
    rows = []
    try:
        codec.set_num_codebooks(k)
        bitrate = codec.bitrate / 1000.0
        for u in tqdm(utts, desc="asr", unit="file", disable=not progress):
            if u.id not in state:
                audio = load_audio(u.path, sample_rate=codec.sample_rate, mono=codec.channels == 1)  # [C, S]
                resynth = resynthesize(codec, audio)  # [C, S]
                state.put(u.id, {"id": u.id, "reference": u.transcript,
                                 "original": asr.transcribe(audio, codec.sample_rate),
                                 "resynthesized": asr.transcribe(resynth, codec.sample_rate)})
            rows.append(state[u.id])
    finally:
        codec.set_num_codebooks(original)
    refs = [r["reference"] for r in rows]
    wer_orig = word_error_rate(refs, [r["original"] for r in rows])
    wer_codec = word_error_rate(refs, [r["resynthesized"] for r in rows])
    summary = {**error_summary("original", wer_orig), **error_summary("resynthesized", wer_codec),
               "wer_ratio_resynthesized_to_original": ratio(wer_codec.wer, wer_orig.wer),
               "num_files": len(rows), "num_reference_words": wer_orig.num_reference_words, "num_codebooks": k,
               "bitrate_kbps": bitrate}
    notes = ["The gap between wer_resynthesized and wer_original is what the codec costs in intelligibility. "
             "Texts are normalised with Whisper's English normaliser before scoring."]
    if recognizer == "pocketsphinx":
        notes.append("Closed-vocabulary pocketsphinx (all corpus transcript words) with a trigram LM of the other "
                     "splits' transcripts (settings.language_model).")
    return EvalSection(name="asr", title=f"Intelligibility: {recognizer} WER", settings=settings, summary=summary,
                       rows=rows, wall_seconds=time.perf_counter() - start, notes=notes)
