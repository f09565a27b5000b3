"""Voice transforms (`soundlm.data.transforms`): each changes what it says and keeps the rest sane."""

from __future__ import annotations

import random

import numpy as np
import pytest

from soundlm.data.transforms import VoiceTransform, apply_voice_transform, random_transform, time_stretch

SR = 16_000


def voiced(seconds: float = 1.5, f0: float = 150.0) -> np.ndarray:
    """[1, S] a buzz at f0 through two formant-like resonances (a crude vowel)."""
    from scipy.signal import lfilter

    n = int(seconds * SR)
    pulses = np.zeros(n)
    pulses[:: int(SR / f0)] = 1.0
    y = pulses
    for freq, bw in ((700.0, 90.0), (1200.0, 110.0)):
        r = np.exp(-np.pi * bw / SR)
        y = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * freq / SR), r * r], y)
    return (0.5 * y / np.abs(y).max())[None].astype(np.float32)


def f0_of(x: np.ndarray) -> float:
    """Pitch by autocorrelation over 60..500 Hz of the middle of [1, S] audio."""
    seg = x[0, len(x[0]) // 4: 3 * len(x[0]) // 4].astype(np.float64)
    ac = np.correlate(seg, seg, mode="full")[len(seg) - 1:]
    lo, hi = SR // 500, SR // 60
    return SR / (lo + int(np.argmax(ac[lo:hi])))


def centroid_hz(x: np.ndarray) -> float:
    mag = np.abs(np.fft.rfft(x[0]))
    freqs = np.fft.rfftfreq(len(x[0]), 1 / SR)
    return float((mag * freqs).sum() / mag.sum())


def test_identity_transform_keeps_the_audio():
    x = voiced()
    y = apply_voice_transform(x, SR, VoiceTransform())
    assert y.shape == x.shape and np.abs(y - x).max() < 1e-3


def test_pitch_moves_f0_and_keeps_length():
    x = voiced(f0=150.0)
    y = apply_voice_transform(x, SR, VoiceTransform(pitch=12.0))
    assert f0_of(x) == pytest.approx(150.0, rel=0.03)
    assert f0_of(y) == pytest.approx(300.0, rel=0.04)
    assert abs(y.shape[1] - x.shape[1]) <= 0.01 * x.shape[1]


def test_formant_warp_moves_the_envelope_not_the_pitch():
    x = voiced(f0=120.0)
    up = apply_voice_transform(x, SR, VoiceTransform(formant=1.2))
    down = apply_voice_transform(x, SR, VoiceTransform(formant=0.85))
    assert f0_of(up) == pytest.approx(f0_of(x), rel=0.03) and f0_of(down) == pytest.approx(f0_of(x), rel=0.03)
    assert centroid_hz(down) < centroid_hz(x) < centroid_hz(up)
    assert up.shape == x.shape


def test_tempo_changes_duration_not_pitch():
    x = voiced(2.0)
    fast = apply_voice_transform(x, SR, VoiceTransform(tempo=1.25))
    assert fast.shape[1] == pytest.approx(x.shape[1] / 1.25, rel=0.01)
    assert f0_of(fast) == pytest.approx(f0_of(x), rel=0.03)
    assert len(time_stretch(x[0], 0.8, SR)) == round(x.shape[1] * 0.8)
    with pytest.raises(ValueError, match="positive"):
        time_stretch(x[0], 0.0, SR)


def test_tilt_and_room():
    # White noise: its flat spectrum shows the tilt without the resonances' deep high-frequency floor.
    noise = (0.3 * np.random.default_rng(0).standard_normal((1, SR))).astype(np.float32)
    dark = apply_voice_transform(noise, SR, VoiceTransform(tilt=-4.0))
    bright = apply_voice_transform(noise, SR, VoiceTransform(tilt=3.0))
    assert centroid_hz(dark) < centroid_hz(noise) - 500 < centroid_hz(bright) - 1000
    coloured = apply_voice_transform(noise, SR, VoiceTransform(eq_seed=5))
    assert coloured.shape == noise.shape and not np.allclose(coloured, noise, atol=0.02)
    burst = np.zeros((1, SR), dtype=np.float32)
    burst[0, : SR // 4] = voiced(0.25)[0]
    wet = apply_voice_transform(burst, SR, VoiceTransform(rt60=0.4, room_mix=0.3, seed=3))
    # The reverberant tail rings on after the burst stops; the dry signal is silent there.
    assert np.abs(wet[0, SR // 4 + 800: SR // 4 + 2400]).max() > 1e-3 and np.abs(burst[0, SR // 4:]).max() == 0


def test_random_transforms_are_deterministic_from_the_seed():
    a = [random_transform(random.Random("s-0")) for _ in range(3)]
    assert a == [random_transform(random.Random("s-0")) for _ in range(3)]
    assert random_transform(random.Random("s-0")) != random_transform(random.Random("s-1"))
    t = random_transform(random.Random("s-0"), vibrato=True)
    assert "vibrato" in t.kinds() and "vibrato" not in random_transform(random.Random("s-0")).kinds()
    x = voiced()
    y1, y2 = apply_voice_transform(x, SR, t), apply_voice_transform(x, SR, t)
    assert np.array_equal(y1, y2)
    # Sane output: finite, same peak, duration within the tempo and vibrato ranges.
    assert np.isfinite(y1).all() and np.abs(y1).max() == pytest.approx(np.abs(x).max(), rel=1e-4)
    assert 0.8 < y1.shape[1] / x.shape[1] < 1.2


def test_stereo_is_refused():
    with pytest.raises(ValueError, match="mono"):
        apply_voice_transform(np.zeros((2, SR), dtype=np.float32), SR, VoiceTransform(pitch=1.0))
