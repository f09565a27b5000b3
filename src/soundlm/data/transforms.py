"""Signal transforms that turn one synthetic voice into another (pseudo-speakers).

A `VoiceTransform` is a speaker's fixed set of parameters, drawn once from the corpus seed
(`random_transform`), and applied to every utterance of that speaker, so all of them sound
like one new person:
- pitch (semitones) by resampling, with the duration restored by WSOLA time stretching;
- vocal-tract length: the spectral envelope (cepstrally smoothed) is warped along frequency,
  which moves the formants and leaves the harmonics where the pitch put them;
- tempo by WSOLA (no pitch change);
- spectral tilt (dB per octave around 1 kHz) and a smooth random channel EQ;
- a small room: exponentially decaying noise as impulse response, with its own RT60;
- vibrato (a slow periodic pitch wobble): a kind of voice the wide inventory keeps for
  held-out speakers only, so the speaker test meets a kind of voice it never trained on.
Everything is numpy/scipy/soxr and a pure function of the audio and the parameters.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import soxr
from scipy.signal import fftconvolve, firwin2, istft, stft

# Ranges of the training transforms; held-out ones draw from the same ranges plus vibrato.
FORMANT_RANGE = (0.84, 1.2)  # envelope warp factor (>1: shorter vocal tract, higher formants)
PITCH_RANGE_ST = (-4.0, 4.0)
TEMPO_RANGE = (0.88, 1.14)
TILT_RANGE = (-4.0, 3.0)  # dB per octave
RT60_RANGE = (0.15, 0.45)  # seconds
EQ_DB = 4.0  # peak gain of the random channel curve
VIBRATO_CENTS = (25.0, 60.0)
VIBRATO_HZ = (4.5, 6.5)


@dataclass(frozen=True)
class VoiceTransform:
    """One pseudo-speaker's transform; the defaults leave the audio unchanged."""

    formant: float = 1.0  # vocal-tract-length factor on the spectral envelope
    pitch: float = 0.0  # semitones
    tempo: float = 1.0  # >1 speaks faster
    tilt: float = 0.0  # dB per octave around 1 kHz
    rt60: float = 0.0  # room reverberation time in seconds; 0 = dry
    room_mix: float = 0.0  # reverberant to direct energy ratio
    eq_seed: int | None = None  # seed of a smooth random channel EQ; None = flat
    vibrato_cents: float = 0.0
    vibrato_hz: float = 0.0
    seed: int = 0  # the room's impulse response noise

    def kinds(self) -> set[str]:
        """The kinds of change this transform makes (for checking held-out kinds against training)."""
        found = {"formant": self.formant != 1.0, "pitch": self.pitch != 0.0, "tempo": self.tempo != 1.0,
                 "tilt": self.tilt != 0.0, "room": self.rt60 > 0.0, "eq": self.eq_seed is not None,
                 "vibrato": self.vibrato_cents > 0.0}
        return {k for k, on in found.items() if on}


def random_transform(rng: random.Random, vibrato: bool = False) -> VoiceTransform:
    """A transform drawn from the training ranges; `vibrato` adds the held-out-only kind."""
    room = rng.random() < 0.5
    return VoiceTransform(
        formant=round(rng.uniform(*FORMANT_RANGE), 3), pitch=round(rng.uniform(*PITCH_RANGE_ST), 2),
        tempo=round(rng.uniform(*TEMPO_RANGE), 3), tilt=round(rng.uniform(*TILT_RANGE), 2),
        rt60=round(rng.uniform(*RT60_RANGE), 3) if room else 0.0, room_mix=round(rng.uniform(0.1, 0.4), 3) if room
        else 0.0, eq_seed=rng.randrange(2**31), vibrato_cents=round(rng.uniform(*VIBRATO_CENTS), 1) if vibrato
        else 0.0, vibrato_hz=round(rng.uniform(*VIBRATO_HZ), 2) if vibrato else 0.0, seed=rng.randrange(2**31))


def time_stretch(x: np.ndarray, ratio: float, sample_rate: int) -> np.ndarray:
    """WSOLA: [S] -> [round(S * ratio)] at the same pitch (ratio > 1 is slower)."""
    if ratio <= 0:
        raise ValueError(f"stretch ratio must be positive, got {ratio}")
    n_out = int(round(len(x) * ratio))
    if abs(ratio - 1.0) < 1e-6 or len(x) == 0:
        return x.copy()
    frame = int(0.03 * sample_rate)
    hop_out = frame // 2
    hop_in = hop_out / ratio
    delta = int(0.01 * sample_rate)  # how far a frame may move to line up with the previous one
    win = np.hanning(frame).astype(np.float64)
    padded = np.concatenate([np.zeros(delta), x.astype(np.float64), np.zeros(2 * frame + delta + int(hop_in) + 1)])
    n_frames = n_out // hop_out + 1
    out = np.zeros(n_frames * hop_out + frame)
    norm = np.zeros_like(out)
    prev = delta
    for k in range(n_frames):
        nominal = delta + int(round(k * hop_in))
        if k == 0:
            pos = nominal
        else:
            # Pick the frame near its nominal place that best continues the previous one.
            template = padded[prev + hop_out: prev + hop_out + frame]
            lo = max(nominal - delta, 0)
            seg = padded[lo: lo + 2 * delta + frame]
            corr = np.correlate(seg, template, mode="valid")
            pos = lo + int(np.argmax(corr))
        out[k * hop_out: k * hop_out + frame] += win * padded[pos: pos + frame]
        norm[k * hop_out: k * hop_out + frame] += win
        prev = pos
    out = out / np.maximum(norm, 1e-3)
    return out[:n_out].astype(np.float32)


def _vibrato(x: np.ndarray, sample_rate: int, cents: float, hz: float) -> np.ndarray:
    # Read the signal at a periodically varying speed: a pitch wobble of +-cents at hz.
    t = np.arange(len(x)) / sample_rate
    speed = 2.0 ** (cents / 1200.0 * np.sin(2 * np.pi * hz * t))
    pos = np.cumsum(speed) - speed[0]
    pos = pos[pos <= len(x) - 1]
    return np.interp(pos, np.arange(len(x)), x).astype(np.float32)


def _channel_gain(freqs: np.ndarray, tilt: float, eq_seed: int | None) -> np.ndarray:
    """[F] linear gain: a tilt around 1 kHz times a smooth random EQ curve (in dB on a log axis)."""
    octaves = np.log2(np.maximum(freqs, 60.0) / 1000.0)
    db = tilt * octaves
    if eq_seed is not None:
        rng = np.random.default_rng(eq_seed)
        knots = np.linspace(np.log2(60 / 1000), np.log2(8000 / 1000), 7)
        db = db + np.interp(octaves, knots, rng.uniform(-EQ_DB, EQ_DB, size=len(knots)))
    return 10 ** (db / 20)


def _envelope(mag: np.ndarray, lifter: int) -> np.ndarray:
    """[F, T] magnitudes -> [F, T] spectral envelope by cepstral smoothing."""
    ceps = np.fft.irfft(np.log(np.maximum(mag, 1e-8)), axis=0)  # [N, T]
    ceps[lifter: ceps.shape[0] - lifter + 1] = 0.0
    return np.exp(np.fft.rfft(ceps, axis=0).real)


def _channel(x: np.ndarray, sample_rate: int, tilt: float, eq_seed: int | None) -> np.ndarray:
    """Tilt and EQ as one linear-phase FIR filter, same length and no delay.

    A fixed filter, not a gain on STFT frames: there the frames' circular convolution leaks
    the boosted lows into the quiet highs of synthetic speech.
    """
    if tilt == 0.0 and eq_seed is None:
        return x
    freqs = np.linspace(0.0, sample_rate / 2, 257)
    taps = firwin2(511, freqs, _channel_gain(freqs, tilt, eq_seed), fs=sample_rate)
    return fftconvolve(x, taps, mode="same").astype(np.float32)


def _warp_envelope(x: np.ndarray, sample_rate: int, warp: float) -> np.ndarray:
    """Warp the spectral envelope along frequency by `warp`, keeping length, phase and harmonics."""
    if warp == 1.0:
        return x
    nfft = 512 if sample_rate <= 24_000 else 1024
    freqs, _, spec = stft(x, fs=sample_rate, nperseg=nfft, noverlap=nfft * 3 // 4)  # spec: [F, T]
    # The lifter keeps quefrencies under ~2 ms: below the pitch period of any voice we make.
    env = _envelope(np.abs(spec), lifter=int(0.002 * sample_rate))
    bins = np.arange(len(freqs))
    warped = np.stack([np.interp(bins / warp, bins, env[:, t]) for t in range(env.shape[1])], axis=1)
    gain = np.clip(warped / np.maximum(env, 1e-8), 0.05, 20.0)
    _, y = istft(spec * gain, fs=sample_rate, nperseg=nfft, noverlap=nfft * 3 // 4)
    return y[: len(x)].astype(np.float32)


def _room(x: np.ndarray, sample_rate: int, rt60: float, mix: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(rt60 * sample_rate)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * 10 ** (-3 * t / rt60)  # -60 dB at rt60
    tail[: int(0.003 * sample_rate)] = 0.0  # the first reflection arrives a few ms after the direct sound
    tail *= math.sqrt(mix / max(float(np.sum(tail**2)), 1e-12))
    rir = np.concatenate([[1.0], tail[1:]])
    return fftconvolve(x, rir)[: len(x)].astype(np.float32)


def apply_voice_transform(audio: np.ndarray, sample_rate: int, t: VoiceTransform) -> np.ndarray:
    """[1, S] or [S] audio -> the same audio spoken by `t`'s pseudo-speaker ([1, S'] or [S'],
    S' about S / t.tempo), peak-normalised to the input's peak."""
    x = np.asarray(audio, dtype=np.float32)
    squeeze = x.ndim == 1
    x = x.reshape(-1) if squeeze else x[0]
    if x.ndim != 1 or (not squeeze and audio.shape[0] != 1):
        raise ValueError(f"voice transforms take mono [S] or [1, S] audio, got shape {np.shape(audio)}")
    peak = float(np.abs(x).max()) if x.size else 0.0
    if x.size == 0 or peak == 0.0:
        return audio
    if t.vibrato_cents > 0:
        x = _vibrato(x, sample_rate, t.vibrato_cents, t.vibrato_hz)
    beta = 2.0 ** (t.pitch / 12.0)
    if beta != 1.0:
        # Fewer samples played at the same rate: pitch and formants go up by beta, duration down.
        x = soxr.resample(x, sample_rate * beta, sample_rate, quality="HQ").astype(np.float32)
    x = time_stretch(x, beta / t.tempo, sample_rate)
    # The resampling moved the formants by beta already; warp them the rest of the way.
    x = _channel(_warp_envelope(x, sample_rate, t.formant / beta), sample_rate, t.tilt, t.eq_seed)
    if t.rt60 > 0:
        x = _room(x, sample_rate, t.rt60, t.room_mix, t.seed)
    x = x * (peak / max(float(np.abs(x).max()), 1e-9))
    return x if squeeze else x[None]
