"""Music analysers on signals whose key and tempo are known by construction, and the instrument
classifier's contract (level invariance, save/load)."""

from __future__ import annotations

import numpy as np
import pytest

from soundlm.music.analysis import (estimate_key, estimate_tempo, key_from_chroma, onset_envelope,
                                    tempo_matches)

SR = 16_000


def tone(midi: float, seconds: float, harmonics: int = 6) -> np.ndarray:
    """A plucked note with decaying harmonics (amplitude 1/h), like a simple instrument."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    wave = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, harmonics + 1) if f0 * h < SR / 2)
    return wave * np.exp(-3 * t)


def chords(progression: list[list[int]], seconds: float = 0.8, transpose: int = 0) -> np.ndarray:
    parts = [sum(tone(n + transpose, seconds) for n in chord) for chord in progression]
    audio = np.concatenate(parts)
    return (audio / np.abs(audio).max()).astype(np.float32)


C_MAJOR_SCALE = [[60], [62], [64], [65], [67], [69], [71], [72]]
C_MAJOR_CADENCE = [[48, 60, 64, 67], [53, 60, 65, 69], [55, 59, 62, 67], [48, 60, 64, 67]] * 2
# i - iv - V - i in A minor (the V chord's G# is what makes it minor and not C major).
A_MINOR_CADENCE = [[45, 57, 60, 64], [50, 57, 62, 65], [52, 56, 59, 64], [45, 57, 60, 64]] * 2


def test_c_major_scale_and_chords_read_as_c_major():
    audio = np.concatenate([chords(C_MAJOR_SCALE, 0.4), chords(C_MAJOR_CADENCE)])
    key = estimate_key(audio, SR)
    assert (key.tonic, key.mode) == (0, "major"), key.name
    assert key.name == "C major"
    assert key.correlation > 0.6


def test_a_minor_cadence_reads_as_a_minor():
    key = estimate_key(chords(A_MINOR_CADENCE), SR)
    assert (key.tonic, key.mode) == (9, "minor"), key.name


@pytest.mark.parametrize("shift", [2, 5, 7, 10])
def test_transposing_moves_the_key_by_the_same_interval(shift):
    major = estimate_key(chords(C_MAJOR_CADENCE, transpose=shift), SR)
    minor = estimate_key(chords(A_MINOR_CADENCE, transpose=shift), SR)
    assert (major.tonic, major.mode) == (shift % 12, "major"), major.name
    assert (minor.tonic, minor.mode) == ((9 + shift) % 12, "minor"), minor.name


def test_stereo_input_is_averaged_and_silence_has_no_key():
    audio = chords(C_MAJOR_CADENCE)
    assert estimate_key(np.stack([audio, audio]), SR).name == "C major"
    silent = estimate_key(np.zeros(SR), SR)
    assert silent.correlation == 0.0


def test_key_from_chroma_checks_its_input():
    with pytest.raises(ValueError, match="12 bins"):
        key_from_chroma(np.ones(13))
    with pytest.raises(ValueError, match=r"\[S\] or \[C, S\]"):
        estimate_key(np.zeros((1, 2, 100)), SR)


def click_track(bpm: float, seconds: float = 12.0, jitter: float = 0.0, seed: int = 0) -> np.ndarray:
    """Short noise bursts every beat (louder on the first of four), optionally jittered."""
    rng = np.random.default_rng(seed)
    audio = np.zeros(int(seconds * SR), dtype=np.float32)
    burst = (rng.standard_normal(int(0.02 * SR)) * np.exp(-np.linspace(0, 8, int(0.02 * SR)))).astype(np.float32)
    for i, t in enumerate(np.arange(0, seconds - 0.05, 60 / bpm)):
        start = int((t + rng.uniform(-jitter, jitter)) * SR)
        if 0 <= start < audio.size - burst.size:
            audio[start:start + burst.size] += burst * (1.0 if i % 4 == 0 else 0.6)
    return audio


def test_click_track_at_120_bpm_reads_120():
    est = estimate_tempo(click_track(120), SR)
    assert abs(est.bpm - 120) <= 0.02 * 120, est
    assert est.strength > 0.3


@pytest.mark.parametrize("bpm", [72, 90, 104, 138])
def test_click_tracks_read_their_tempo(bpm):
    est = estimate_tempo(click_track(bpm, jitter=0.005, seed=bpm), SR)
    assert tempo_matches(est.bpm, bpm, 0.04), (bpm, est)


def test_chord_changes_give_the_chord_rate():
    # One chord every 0.5 s is 120 changes per minute.
    est = estimate_tempo(chords(C_MAJOR_CADENCE * 3, seconds=0.5), SR)
    assert tempo_matches(est.bpm, 120, 0.04), est


def test_silence_and_short_audio_have_no_tempo():
    assert estimate_tempo(np.zeros(4 * SR), SR).bpm == 0.0
    assert estimate_tempo(np.zeros(10), SR).bpm == 0.0
    assert onset_envelope(np.zeros(10), SR).shape == (1,)


def test_tempo_matches_strict_and_octave():
    assert tempo_matches(123.0, 120, 0.04)
    assert not tempo_matches(126.0, 120, 0.04)
    assert not tempo_matches(240.0, 120, 0.04)
    assert tempo_matches(240.0, 120, 0.04, factors=(0.5, 1.0, 2.0))
    assert tempo_matches(61.0, 120, 0.04, factors=(0.5, 1.0, 2.0))
    assert not tempo_matches(180.0, 120, 0.04, factors=(0.5, 1.0, 2.0))


# ------------------------------------------------------------------------------ instrument classifier

def test_instrument_classifier_ignores_level_and_round_trips(tmp_path):
    import torch

    from soundlm.music.instrument import InstrumentClassifier, InstrumentConfig, load_instrument_classifier

    torch.manual_seed(0)
    model = InstrumentClassifier(InstrumentConfig(classes=["flute", "organ", "piano"], channels=16)).eval()
    audio = chords(C_MAJOR_CADENCE)[: 2 * SR]
    loud, quiet = model.predict(audio, SR), model.predict(audio * 0.1, SR)
    assert np.allclose(list(loud.probs.values()), list(quiet.probs.values()), atol=1e-4)
    assert sum(loud.probs.values()) == pytest.approx(1.0, abs=1e-5)
    # Other sample rates are resampled to the model's.
    assert model.predict(audio[::2], SR // 2).label in model.config.classes

    model.save(tmp_path / "clf")
    again = load_instrument_classifier(tmp_path / "clf")
    assert again.predict(audio, SR).probs == pytest.approx(loud.probs, abs=1e-6)


def test_instrument_classifier_errors(tmp_path):
    from soundlm.music.instrument import InstrumentClassifier, InstrumentConfig, load_instrument_classifier

    with pytest.raises(ValueError, match=">= 2 classes"):
        InstrumentClassifier(InstrumentConfig(classes=["piano"]))
    with pytest.raises(FileNotFoundError, match="soundlm train instrument"):
        load_instrument_classifier(tmp_path)
    (tmp_path / "config.json").write_text('{"type": "token_lm"}')
    with pytest.raises(ValueError, match="not an instrument classifier"):
        load_instrument_classifier(tmp_path)
    model = InstrumentClassifier(InstrumentConfig(classes=["a", "b"], channels=8))
    with pytest.raises(ValueError, match="shorter than one analysis window"):
        model.predict(np.zeros(100, dtype=np.float32), SR)
