"""Does generated speech speak words? Numbers on what a recogniser heard in it.

A transcript of a continuation has no reference to score against, so these look at the
transcript alone:

- dictionary-word fraction: share of the heard words found in an English word list (the
  CMU dictionary shipped with pocketsphinx, see `soundlm.eval.lexical.load_lexicon`);
  numbers the normaliser wrote as digits count as words;
- repetition rate: share of the transcript's word n-grams that repeat an earlier n-gram
  of the same transcript ("the dog the dog the dog" is mostly repeats), the loop a
  language model falls into;
- words per second: how much speech the recogniser found at all (babble is often heard
  as nothing).

Whisper's own language model turns much babble into plausible English, so a high
dictionary fraction says little on its own: read it beside the same numbers for real
speech (the continuation section's ground-truth clips) and beside the WER of audio whose
words are known (`soundlm eval acoustic`). Whisper's loop guard (`soundlm.eval.asr`)
re-decodes a transcript that compresses like a loop with a repetition penalty, so the
repetition rate undercounts the longest loops.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

REPEAT_NGRAM = 2  # bigrams: a 3 s continuation holds ~8 words, too few for longer n-grams to recur by chance


@dataclass
class HeardWords:
    """What was heard in one clip (counts, so several clips pool exactly)."""

    words: int
    dictionary_words: int
    ngrams: int
    repeated_ngrams: int
    seconds: float

    @property
    def dictionary_fraction(self) -> float | None:
        return self.dictionary_words / self.words if self.words else None

    @property
    def repetition_rate(self) -> float | None:
        return self.repeated_ngrams / self.ngrams if self.ngrams else None

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds > 0 else 0.0


def repetition_rate(words: Sequence[str], n: int = REPEAT_NGRAM) -> tuple[int, int]:
    """(repeated n-grams, all n-grams) of a word sequence: an n-gram counts as repeated
    when the same n-gram occurred earlier in the sequence."""
    if n < 1:
        raise ValueError(f"n-gram length must be >= 1, got {n}")
    seen: set[tuple[str, ...]] = set()
    grams = [tuple(words[i: i + n]) for i in range(len(words) - n + 1)]
    repeated = 0
    for g in grams:
        repeated += g in seen
        seen.add(g)
    return repeated, len(grams)


def heard_words(text: str, seconds: float, lexicon: Iterable[str] | None = None, n: int = REPEAT_NGRAM) -> HeardWords:
    """Count the words of a recogniser's `text` for a clip of `seconds`, normalised as for WER."""
    from soundlm.eval.asr import whisper_normalize
    from soundlm.eval.lexical import load_lexicon

    vocab = load_lexicon() if lexicon is None else lexicon
    words = whisper_normalize(text).split()
    in_dict = sum(1 for w in words if w in vocab or w.isdigit())
    repeated, ngrams = repetition_rate(words, n)
    return HeardWords(len(words), in_dict, ngrams, repeated, seconds)


def pool(clips: Sequence[HeardWords]) -> dict[str, float | None]:
    """Summary over clips: pooled dictionary fraction and repetition rate, words per second overall."""
    total = HeardWords(sum(c.words for c in clips), sum(c.dictionary_words for c in clips),
                       sum(c.ngrams for c in clips), sum(c.repeated_ngrams for c in clips),
                       sum(c.seconds for c in clips))
    return {"dictionary_word_fraction": total.dictionary_fraction, "repetition_rate": total.repetition_rate,
            "words_per_second": total.words_per_second, "silent_clips": sum(1 for c in clips if c.words == 0)}
