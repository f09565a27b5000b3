"""What a recogniser heard in generated speech (soundlm.eval.words), on constructed transcripts."""

import pytest

from soundlm.eval.words import HeardWords, heard_words, pool, repetition_rate


def test_repetition_rate_counts_ngrams_seen_before():
    assert repetition_rate("a b c d".split()) == (0, 3)
    # "the dog" x3: bigrams the-dog, dog-the, the-dog, dog-the, the-dog -> 3 of 5 repeat an earlier one.
    assert repetition_rate("the dog the dog the dog".split()) == (3, 5)
    assert repetition_rate("go go go go".split(), n=1) == (3, 4)
    assert repetition_rate(["one"]) == (0, 0)
    with pytest.raises(ValueError, match="n-gram length"):
        repetition_rate(["a"], n=0)


def test_heard_words_dictionary_fraction_and_rate():
    lexicon = {"the", "dog", "runs"}
    h = heard_words("The dog runs, blorf zibble!", seconds=2.0, lexicon=lexicon)
    assert (h.words, h.dictionary_words) == (5, 3)
    assert h.dictionary_fraction == pytest.approx(0.6) and h.words_per_second == pytest.approx(2.5)
    assert h.repetition_rate == 0.0
    # Whisper writes numbers as digits: they are words.
    assert heard_words("Twenty-one dogs", 1.0, lexicon={"dogs"}).dictionary_fraction == 1.0
    silent = heard_words("", 3.0, lexicon=lexicon)
    assert silent.dictionary_fraction is None and silent.repetition_rate is None and silent.words_per_second == 0


def test_heard_words_uses_the_cmu_dictionary_by_default():
    assert heard_words("the young doctor plays", 1.0).dictionary_fraction == 1.0
    assert heard_words("the zorblax quenfidd plays", 1.0).dictionary_fraction == pytest.approx(0.5)


def test_pool_weights_clips_by_their_words():
    clips = [HeardWords(words=8, dictionary_words=8, ngrams=7, repeated_ngrams=0, seconds=3.0),
             HeardWords(words=2, dictionary_words=0, ngrams=1, repeated_ngrams=1, seconds=3.0),
             HeardWords(words=0, dictionary_words=0, ngrams=0, repeated_ngrams=0, seconds=3.0)]
    s = pool(clips)
    assert s["dictionary_word_fraction"] == pytest.approx(0.8) and s["repetition_rate"] == pytest.approx(1 / 8)
    assert s["words_per_second"] == pytest.approx(10 / 9) and s["silent_clips"] == 1
