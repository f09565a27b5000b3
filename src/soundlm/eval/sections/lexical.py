"""`soundlm eval lexical`: sWUGGY-style word / non-word discrimination with the semantic LM."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundlm.eval.report import EvalSection, seed_everything

if TYPE_CHECKING:
    from soundlm.pipeline import AudioLMPipeline


@dataclass
class SemanticScore:
    """Log-likelihood of an audio clip's semantic ids under the semantic LM."""

    total_logprob: float  # nats, summed over ids
    num_tokens: int

    @property
    def mean_logprob(self) -> float:
        return self.total_logprob / self.num_tokens


def semantic_logprob(pipe: AudioLMPipeline, audio: np.ndarray, sample_rate: int) -> SemanticScore:
    """Tokenize [S] or [C, S] audio with the bundle's semantic tokenizer and score the ids with the
    semantic LM: log p(s_1..s_T | BOS), the full-vocabulary softmax the model was trained with."""
    import torch

    from soundlm.audio_tokenizer import AudioTokenizer

    tok, stage = pipe.semantic_tokenizer, pipe.semantic
    audio = np.asarray(audio, dtype=np.float32)
    audio = audio[None] if audio.ndim == 1 else audio
    # The ids `soundlm tokenize` would store for this clip: the path the LM's training data took.
    tokenizer = AudioTokenizer(tok, None, pipe.device, probe=False)
    prepared = tokenizer.prepare(audio, sample_rate)
    if prepared.semantic.shape[1] < tok.min_samples:
        raise ValueError(f"clip of {prepared.semantic.shape[1]} samples is shorter than the semantic tokenizer's "
                         f"minimum {tok.min_samples}; use longer audio")
    with torch.inference_mode():
        ids = torch.from_numpy(tokenizer.encode_prepared([prepared])[0].semantic)[None].to(pipe.device)  # [1, T]
        layout = stage.layout
        tokens = torch.cat([torch.full((1, 1), layout.bos_id, dtype=torch.long, device=ids.device),
                            layout.semantic_to_global(ids)], dim=1)  # [1, T+1]
        if tokens.shape[1] > stage.model.max_positions:
            raise ValueError(f"{ids.shape[1]} semantic ids exceed the semantic LM's {stage.model.max_positions} "
                             "positions; score shorter clips")
        logits = stage.model(tokens.to(pipe.device)).logits.float()  # [1, T+1, V]
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, tokens[:, 1:, None])  # [1, T, 1]
    return SemanticScore(total_logprob=float(logp.sum()), num_tokens=int(ids.shape[1]))


def lexical_word_list(data: str | Path | None, split: str = "train") -> tuple[list[str], str]:
    """Words for the lexical pairs and where they came from.

    With a corpus (manifest with transcripts), its `split` words: the vocabulary the LM was
    trained on. Without one, or if it has no transcripts, the built-in common English words.
    """
    from soundlm.data import open_corpus
    from soundlm.eval.lexical import COMMON_WORDS, corpus_words

    if data is not None:
        utts = open_corpus(data, split=split)
        words = corpus_words(u.transcript for u in utts if u.transcript)
        if words:
            return words, f"{data} ({split} transcripts, {len(words)} words of 4+ letters)"
    return list(COMMON_WORDS), "built-in common English words"


def eval_lexical(pipe: AudioLMPipeline, num_pairs: int = 50, voice: str = "en-us", seed: int = 0,
                 work_dir: str | Path | None = None, progress: bool = True, data: str | Path | None = None,
                 words_split: str = "train") -> EvalSection:
    """sWUGGY-style lexical discrimination with the semantic LM.

    Word / non-word pairs are spoken by an espeak-ng voice; each clip is scored by the
    semantic LM's total log-probability of its semantic ids (AudioLM and ZeroSpeech 2021
    score sWUGGY with the summed log-probability). A pair is right when the word scores
    higher (ties half). Accuracy with the per-token mean is reported alongside.

    `voice` may list several voices, comma-separated ("en-us,en-us+f2"): every pair is then
    spoken by each, the summary is the mean over voices with the lowest and highest, and
    each row names its voice. The voice moves accuracy by several points on its own, so
    compare models over several.

    The words are those of `data`'s `words_split` transcripts when a corpus is given (an
    LM trained on a closed vocabulary cannot know other words), else common English words.
    """
    import tempfile

    from soundlm.eval.lexical import lexical_accuracy, make_lexical_pairs, synthesize_pairs

    if num_pairs < 1:
        raise ValueError(f"--num-pairs must be >= 1, got {num_pairs}")
    voices = [v.strip() for v in voice.split(",") if v.strip()]
    if not voices or len(set(voices)) != len(voices):
        raise ValueError(f"--voice must name one or more distinct espeak-ng voices, comma-separated, got {voice!r}")
    start = time.perf_counter()
    seed_everything(seed)
    words, words_source = lexical_word_list(data, words_split)
    pairs = make_lexical_pairs(words, seed=seed)[:num_pairs]
    sr = int(pipe.semantic_tokenizer.sample_rate)
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="soundlm-lexical-")
        work_dir = tmp.name
    rows: list[dict] = []
    per_voice: list[tuple[float, float]] = []  # (accuracy, accuracy_mean_logprob) per voice
    try:
        for v in voices:
            voiced = synthesize_pairs(pairs, Path(work_dir) / "lexical_audio" / v.replace("/", "_"), voice=v,
                                      sample_rate=sr, progress=progress)
            scores: list[SemanticScore] = []

            def score_fn(audio: np.ndarray, rate: int) -> float:
                s = semantic_logprob(pipe, audio, rate)
                scores.append(s)
                return s.total_logprob

            result = lexical_accuracy(score_fn, voiced, sample_rate=sr, progress=progress)
            # lexical_accuracy scores word then non-word for each pair, in order.
            word_s, non_s = scores[0::2], scores[1::2]
            mean_correct = [1.0 if w.mean_logprob > n.mean_logprob else 0.5 if w.mean_logprob == n.mean_logprob
                            else 0.0 for w, n in zip(word_s, non_s)]
            per_voice.append((result.accuracy, float(np.mean(mean_correct))))
            rows += [{**({"voice": v} if len(voices) > 1 else {}), "word": p.word, "nonword": p.nonword,
                      "word_logprob": w.total_logprob, "nonword_logprob": n.total_logprob,
                      "word_tokens": w.num_tokens, "nonword_tokens": n.num_tokens, "correct": c}
                     for p, w, n, c in zip(voiced, word_s, non_s, result.correct)]
    finally:
        if tmp is not None:
            tmp.cleanup()
    accuracies = [a for a, _ in per_voice]
    summary = {"accuracy": float(np.mean(accuracies)),
               "accuracy_mean_logprob": float(np.mean([m for _, m in per_voice])), "chance": 0.5,
               "num_pairs": result.num_pairs}
    if len(voices) > 1:
        summary.update(accuracy_min=min(accuracies), accuracy_max=max(accuracies), num_voices=len(voices))
    settings = {"num_pairs": len(pairs), "voice": ",".join(voices), "seed": seed, "sample_rate": sr,
                "score": "total log-prob", "words": words_source}
    notes = ["accuracy: the word's total semantic log-probability beats the non-word's (ties count half); "
             "accuracy_mean_logprob: the same with the per-token mean."]
    if len(voices) > 1:
        by_voice = ", ".join(f"{v} {a:.4f}" for v, a in zip(voices, accuracies))
        notes.append("With several voices: accuracy is the mean over voices; accuracy_min / accuracy_max the "
                     f"lowest and highest single voice. Per voice: {by_voice}.")
    return EvalSection(name="lexical", title="Lexical discrimination (sWUGGY-style)", settings=settings,
                       summary=summary, rows=rows, wall_seconds=time.perf_counter() - start, notes=notes)
