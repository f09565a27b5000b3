"""Tests for soundlm.audio: loading every supported container, the transforms, and that
every kind of unusable input raises AudioError naming the file."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundlm.audio import (
    AudioError,
    check_audio,
    chunk,
    crop_or_pad,
    info,
    list_audio_files,
    load_audio,
    normalize_peak,
    normalize_rms,
    resample,
    save_audio,
    to_mono,
)

SR = 16_000


def sine(freq: float, seconds: float, sr: int = SR, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)  # [S]


def dominant_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


def write_raw_wav(path: Path, sample_rate: int, samples: np.ndarray) -> None:
    """A PCM16 mono wav written byte by byte, so any header value can be forced."""
    data = (samples * 32767).astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", len(data))
    path.write_bytes(header + data)


# ---------------------------------------------------------------- loading formats


@pytest.mark.parametrize("ext,subtype", [(".wav", "PCM_16"), (".flac", "PCM_16"), (".ogg", "VORBIS")])
def test_load_formats_roundtrip(tmp_path, ext, subtype):
    x = sine(440, 0.5)
    path = tmp_path / f"a{ext}"
    sf.write(str(path), x, SR, subtype=subtype)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 2 and audio.shape[0] == 1  # [C, S]
    assert abs(audio.shape[1] - len(x)) <= 1
    assert dominant_freq(audio[0], SR) == pytest.approx(440, abs=5)
    if ext != ".ogg":  # lossless containers must give the samples back
        np.testing.assert_allclose(audio[0], x, atol=1e-3)


def test_load_mp3(tmp_path):
    path = tmp_path / "a.mp3"
    try:
        sf.write(str(path), sine(440, 0.5), SR, format="MP3", subtype="MPEG_LAYER_III")
    except Exception as e:  # older libsndfile builds cannot encode mp3
        pytest.skip(f"this libsndfile cannot write mp3: {e}")
    audio = load_audio(path)
    # mp3 encoders add priming/padding frames, so only check the length roughly.
    assert audio.shape[0] == 1 and abs(audio.shape[1] - 0.5 * SR) < 0.1 * SR
    assert dominant_freq(audio[0], SR) == pytest.approx(440, abs=10)


def test_save_audio_roundtrip_and_extension_check(tmp_path):
    x = sine(300, 0.25)[None]  # [1, S]
    for ext in (".wav", ".flac", ".ogg"):
        save_audio(tmp_path / f"b{ext}", x, SR)
        assert info(tmp_path / f"b{ext}").sample_rate == SR
    assert not list(tmp_path.glob(".tmp-*")), "atomic write left a temporary file behind"
    with pytest.raises(ValueError, match="mp4"):
        save_audio(tmp_path / "b.mp4", x, SR)


def test_mono_mixdown_and_keep_channels(tmp_path):
    left, right = sine(440, 0.3, amp=0.6), sine(440, 0.3, amp=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([left, right], axis=1), SR, subtype="FLOAT")
    both = load_audio(path, mono=False)
    assert both.shape == (2, len(left))
    np.testing.assert_allclose(both[0], left, atol=1e-6)
    mono = load_audio(path)
    assert mono.shape == (1, len(left))
    np.testing.assert_allclose(mono[0], (left + right) / 2, atol=1e-6)
    np.testing.assert_allclose(to_mono(both), mono, atol=1e-6)


def test_resample_preserves_length_and_frequency(tmp_path):
    x = sine(1000, 1.0, sr=44_100)
    path = tmp_path / "hi.wav"
    sf.write(str(path), x, 44_100, subtype="FLOAT")
    audio = load_audio(path, sample_rate=SR)
    assert audio.shape == (1, SR)
    assert dominant_freq(audio[0], SR) == pytest.approx(1000, abs=2)
    # Multi-channel arrays keep their channel axis through soxr.
    stereo = resample(np.stack([x, x]), 44_100, 22_050)
    assert stereo.shape == (2, 22_050) and stereo.dtype == np.float32
    assert resample(x[None], 44_100, 44_100) is not None


def test_list_audio_files_sorted_and_filtered(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("sub/b.flac", "a.wav", "notes.txt", "c.OGG"):
        (tmp_path / name).write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in list_audio_files(tmp_path)] == ["a.wav", "c.OGG", "sub/b.flac"]
    with pytest.raises(FileNotFoundError, match="missing"):
        list_audio_files(tmp_path / "missing")


# ---------------------------------------------------------------- transforms


def test_normalize_peak_and_rms():
    x = sine(200, 0.5, amp=0.1)[None]
    assert np.abs(normalize_peak(x)).max() == pytest.approx(0.95, rel=1e-5)
    assert np.abs(normalize_peak(x, peak=0.5)).max() == pytest.approx(0.5, rel=1e-5)
    y = normalize_rms(x, target_db=-20.0)
    assert 20 * np.log10(np.sqrt(np.mean(y.astype(np.float64) ** 2))) == pytest.approx(-20.0, abs=0.01)
    # The gain cap stops near-silence being blown up into noise.
    quiet = sine(200, 0.5, amp=1e-4)[None]
    gain = np.abs(normalize_rms(quiet, target_db=-10, max_gain_db=20)).max() / np.abs(quiet).max()
    assert gain == pytest.approx(10.0, rel=1e-3)
    zeros = np.zeros((1, 10), np.float32)
    assert np.array_equal(normalize_peak(zeros), zeros) and np.array_equal(normalize_rms(zeros), zeros)


def test_load_normalize_options(tmp_path):
    path = tmp_path / "q.wav"
    sf.write(str(path), sine(200, 0.5, amp=0.1), SR)
    assert np.abs(load_audio(path, normalize="peak")).max() == pytest.approx(0.95, rel=1e-3)
    with pytest.raises(ValueError, match="normalize"):
        load_audio(path, normalize="loud")


def test_crop_or_pad():
    x = np.arange(10, dtype=np.float32)[None]  # [1, 10]
    assert crop_or_pad(x, 4, offset=3).tolist() == [[3, 4, 5, 6]]
    padded = crop_or_pad(x, 14, offset=2)
    assert padded.shape == (1, 14) and padded[0, :8].tolist() == list(range(2, 10)) and not padded[0, 8:].any()


def test_chunk_covers_audio():
    x = np.arange(10, dtype=np.float32)[None]
    parts = chunk(x, 4)
    assert [p.shape for p in parts] == [(1, 4)] * 3
    assert parts[2].tolist() == [[8, 9, 0, 0]]
    assert len(chunk(x, 4, pad_last=False)) == 2
    overlapping = chunk(x, 4, hop=2)
    assert [p[0, 0] for p in overlapping] == [0, 2, 4, 6]  # the window at 6 already reaches the end
    assert all(p.shape == (1, 4) for p in overlapping)
    # Audio shorter than one chunk: padded to a full chunk, or nothing when padding is off.
    short = chunk(x[:, :3], 4)
    assert len(short) == 1 and short[0].shape == (1, 4)
    assert chunk(x[:, :3], 4, pad_last=False) == []
    with pytest.raises(ValueError, match="chunk_len"):
        chunk(x, 0)
    with pytest.raises(ValueError, match="hop"):
        chunk(x, 4, hop=-1)


# ---------------------------------------------------------------- bad input


def _assert_names_file(err: pytest.ExceptionInfo, path: Path) -> None:
    assert str(path) in str(err.value) and err.value.path == str(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(AudioError, match="not found") as err:
        load_audio(path)
    _assert_names_file(err, path)


def test_unreadable_random_bytes(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError, match="unreadable") as err:
        load_audio(path)
    _assert_names_file(err, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(str(path), np.zeros(0, np.float32), SR)
    with pytest.raises(AudioError, match="empty") as err:
        load_audio(path)
    _assert_names_file(err, path)


def test_all_nan_and_some_inf(tmp_path):
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.full(1000, np.nan, np.float32), SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="all samples are NaN") as err:
        load_audio(nan)
    _assert_names_file(err, nan)
    inf = tmp_path / "inf.wav"
    x = sine(440, 0.1)
    x[[5, 50, 500]] = np.inf
    sf.write(str(inf), x, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match="3 NaN/inf") as err:
        load_audio(inf)
    _assert_names_file(err, inf)


def test_too_short(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(str(path), sine(440, 0.2), SR)
    with pytest.raises(AudioError, match="too short") as err:
        load_audio(path, min_seconds=1.0)
    _assert_names_file(err, path)
    assert load_audio(path, min_seconds=0.1).shape[1] == int(0.2 * SR)


def test_too_long(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(str(path), sine(440, 1.0), SR)
    with pytest.raises(AudioError, match="too long") as err:
        load_audio(path, max_seconds=0.5)
    _assert_names_file(err, path)


@pytest.mark.parametrize("rate", [500, 1_000_000])
def test_absurd_sample_rate(tmp_path, rate):
    path = tmp_path / f"rate{rate}.wav"
    write_raw_wav(path, rate, sine(5, 0.5, sr=2000))
    with pytest.raises(AudioError, match=f"absurd sample rate {rate}") as err:
        load_audio(path)
    _assert_names_file(err, path)


def test_silent(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(str(path), np.zeros(SR, np.float32), SR)
    with pytest.raises(AudioError, match="silent") as err:
        load_audio(path)
    _assert_names_file(err, path)
    assert load_audio(path, allow_silent=True).shape == (1, SR)


def test_check_audio_without_path_has_clean_message():
    with pytest.raises(AudioError) as err:
        check_audio(np.zeros((1, 0), np.float32))
    assert err.value.path is None and str(err.value).startswith("empty audio")


def test_growing_wavs_grow_readable_then_rename_and_vanish_on_error(tmp_path):
    from soundlm.audio import GrowingWavs

    rng = np.random.default_rng(0)
    pieces = [0.5 * rng.standard_normal((2, 1, n)).astype(np.float32) for n in (700, 1300)]
    paths = [tmp_path / "out" / "a.wav", tmp_path / "out" / "b.wav"]
    with GrowingWavs(paths, 16000) as files:
        files.write(pieces[0])
        # The part file is a valid wav holding what was written so far; the final name does not exist yet.
        assert sf.info(files.parts[0]).frames == 700 and not paths[0].exists()
        files.write(pieces[1])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.wav", "b.wav"]
    data, rate = sf.read(paths[1], dtype="float32")
    expected = np.clip(np.concatenate([p[1, 0] for p in pieces]), -1, 1)
    assert rate == 16000 and np.abs(data - expected).max() <= 1 / 32768
    with pytest.raises(RuntimeError):
        with GrowingWavs([tmp_path / "bad" / "c.wav"], 16000) as files:
            files.write(pieces[0][:1])
            raise RuntimeError("generation failed")
    assert list((tmp_path / "bad").iterdir()) == []
    with pytest.raises(ValueError, match="must be .wav"):
        GrowingWavs([tmp_path / "x.flac"], 16000)
