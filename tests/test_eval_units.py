"""Speaker identification from semantic-unit histograms (soundlm.eval.units)."""

import numpy as np
import pytest

from soundlm.eval.units import speaker_id_accuracy, unit_histograms


def test_histograms_are_unit_frequencies():
    h = unit_histograms([np.array([0, 0, 2, 3]), np.array([1])], vocab_size=4)
    np.testing.assert_allclose(h, [[0.5, 0.0, 0.25, 0.25], [0.0, 1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="outside"):
        unit_histograms([np.array([4])], vocab_size=4)
    with pytest.raises(ValueError, match="no units"):
        unit_histograms([np.array([], dtype=np.int64)], vocab_size=4)


def _utterances(rng: np.random.Generator, speakers: int, per_speaker: int, voice_in_units: bool) -> tuple:
    """Unit sequences whose distribution depends on the speaker only when `voice_in_units`."""
    ids, who = [], []
    for s in range(speakers):
        p = rng.dirichlet(np.full(32, 0.3)) if voice_in_units else np.full(32, 1 / 32)
        for _ in range(per_speaker):
            ids.append(rng.choice(32, size=200, p=p))
            who.append(f"spk{s}")
    return unit_histograms(ids, 32), who


def test_units_that_carry_the_voice_identify_it_and_units_that_do_not_score_chance():
    rng = np.random.default_rng(0)
    x, who = _utterances(rng, speakers=4, per_speaker=20, voice_in_units=True)
    voiced = speaker_id_accuracy(x, who, folds=5, seed=0)
    assert voiced.accuracy >= 0.95 and voiced.chance == 0.25 and voiced.num_speakers == 4
    assert set(voiced.per_speaker) == {"spk0", "spk1", "spk2", "spk3"}
    x, who = _utterances(rng, speakers=4, per_speaker=20, voice_in_units=False)
    blind = speaker_id_accuracy(x, who, folds=5, seed=0)
    # 80 guesses among 4 speakers: chance is 0.25 with a standard deviation of about 0.05.
    assert blind.accuracy < 0.45


def test_speaker_id_needs_two_speakers_and_enough_utterances_per_fold():
    x = np.random.default_rng(0).normal(size=(6, 3))
    with pytest.raises(ValueError, match="at least 2 speakers"):
        speaker_id_accuracy(x, ["a"] * 6)
    with pytest.raises(ValueError, match="'b' has 1"):
        speaker_id_accuracy(x, ["a"] * 5 + ["b"], folds=5)
    with pytest.raises(ValueError, match="one speaker per row"):
        speaker_id_accuracy(x, ["a", "b"])
