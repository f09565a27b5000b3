"""Voice spread and duplicate voices (`soundlm.eval.speaker`) on constructed embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from soundlm.eval.speaker import distinct_voices, enrol_speakers, voice_spread


def unit(*xs: float) -> np.ndarray:
    v = np.array(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def enrolment():
    # a and c are nearly one voice (cosine 0.995); b is orthogonal to a; d sits between a and b.
    return enrol_speakers({"a": [unit(1, 0, 0)], "b": [unit(0, 1, 0)], "c": [unit(1, 0.1, 0)],
                           "d": [unit(1, 1, 0.2)]})


def test_voice_spread_is_the_nearest_other_voice():
    spread = voice_spread(enrolment())
    assert spread.speakers == ["a", "b", "c", "d"]
    assert spread.nearest == ["c", "d", "a", "c"]
    assert spread.nearest_cosine[0] == pytest.approx(float(unit(1, 0.1, 0)[0]), abs=1e-6)
    assert spread.nearest_cosine[1] == pytest.approx(float(unit(1, 1, 0.2)[1]), abs=1e-6)
    with pytest.raises(ValueError, match="at least two"):
        voice_spread(enrol_speakers({"a": [unit(1, 0)]}))


def test_distinct_voices_drop_the_later_duplicate():
    result = distinct_voices(enrolment(), threshold=0.95)
    assert result.kept == ["a", "b", "d"]
    assert [(v, d) for v, d, _ in result.dropped] == [("c", "a")] and result.dropped[0][2] > 0.99
    assert distinct_voices(enrolment(), threshold=0.999).kept == ["a", "b", "c", "d"]
    # At 0.6, d (cosine 0.70 to a) goes too.
    assert distinct_voices(enrolment(), threshold=0.6).kept == ["a", "b"]
    with pytest.raises(ValueError, match="cosine in"):
        distinct_voices(enrolment(), threshold=1.5)
