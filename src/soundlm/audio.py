"""Audio I/O: load, check, resample, mix, normalise, crop/pad and chunk.

Everything returns float32 numpy arrays shaped [C, S] (channels first) unless a function
says otherwise. Bad input raises `AudioError` whose message names the file and the fix.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf
import soxr

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".au")
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000


class AudioError(ValueError):
    """A file that cannot be used as audio input; the message names file and problem."""

    def __init__(self, path: str | Path | None, problem: str, fix: str = ""):
        self.path = None if path is None else str(path)
        self.problem = problem
        where = f"{self.path}: " if self.path else ""
        super().__init__(f"{where}{problem}" + (f" ({fix})" if fix else ""))


@dataclass
class AudioInfo:
    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def list_audio_files(root: str | Path) -> list[Path]:
    """All audio files under `root` (recursively), sorted for determinism."""
    return list(iter_audio_files(root))


def iter_audio_files(root: str | Path) -> Iterator[Path]:
    """The audio files under `root` (or `root` itself, a file) one by one, in sorted path order.

    The order is that of sorting every path (which compares paths part by part), but the
    listing is walked folder by folder, so a corpus of millions of files is never held whole.
    """
    root = Path(root)
    if root.is_file():
        return iter([root])
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder (pass an audio file or a folder of audio)")
    return _walk_sorted(root)


def _walk_sorted(folder: Path) -> Iterator[Path]:
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        path = folder / entry.name
        # Like Path.rglob: into real folders, not through symlinks to folders.
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk_sorted(path)
        elif entry.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            yield path


def info(path: str | Path) -> AudioInfo:
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found", "check the path")
    try:
        i = sf.info(str(path))
    except Exception as e:  # libsndfile raises its own error types for unreadable data
        raise AudioError(path, f"unreadable audio ({type(e).__name__}: {e})",
                         "convert it to wav/flac/ogg/mp3 or remove it") from e
    return AudioInfo(str(path), int(i.samplerate), int(i.channels), int(i.frames))


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample [C, S] audio with soxr (high quality)."""
    if orig_sr == target_sr:
        return audio
    out = soxr.resample(np.ascontiguousarray(audio.T), orig_sr, target_sr, quality="HQ")
    out = out.reshape(out.shape[0], -1) if out.ndim == 2 else out[:, None]
    return np.ascontiguousarray(out.T, dtype=np.float32)


def to_mono(audio: np.ndarray) -> np.ndarray:
    return audio.mean(axis=0, keepdims=True)


def normalize_peak(audio: np.ndarray, peak: float = 0.95) -> np.ndarray:
    m = float(np.abs(audio).max()) if audio.size else 0.0
    return audio if m == 0.0 else audio * (peak / m)


def normalize_rms(audio: np.ndarray, target_db: float = -23.0, max_gain_db: float = 30.0) -> np.ndarray:
    """Scale to a target RMS level (dBFS), never by more than `max_gain_db`; clip to [-1, 1]."""
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2))) if audio.size else 0.0
    if rms == 0.0:
        return audio
    gain_db = min(target_db - 20 * math.log10(rms), max_gain_db)
    return np.clip(audio * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32)


def crop_or_pad(audio: np.ndarray, length: int, offset: int = 0) -> np.ndarray:
    """Take `length` samples starting at `offset`, zero-padding at the end if short."""
    out = audio[:, offset: offset + length]
    if out.shape[1] < length:
        out = np.pad(out, ((0, 0), (0, length - out.shape[1])))
    return out


def chunk(audio: np.ndarray, chunk_len: int, hop: int | None = None, pad_last: bool = True) -> list[np.ndarray]:
    """Split [C, S] audio into chunks of `chunk_len` samples every `hop` samples."""
    if chunk_len <= 0:
        raise ValueError(f"chunk_len must be positive, got {chunk_len}")
    if hop is not None and hop <= 0:
        raise ValueError(f"hop must be positive (or None for hop = chunk_len), got {hop}")
    hop = hop or chunk_len
    total = audio.shape[1]
    if total < chunk_len:
        # range() below would yield one window shorter than chunk_len; pad it instead.
        return [crop_or_pad(audio, chunk_len)] if pad_last and total > 0 else []
    starts = range(0, max(total - chunk_len, 0) + 1, hop)
    chunks = [audio[:, s: s + chunk_len] for s in starts]
    last_end = (starts[-1] + chunk_len) if len(starts) else 0
    if pad_last and last_end < total:
        chunks.append(crop_or_pad(audio, chunk_len, offset=last_end))
    return chunks


def check_audio(audio: np.ndarray, path: str | Path | None = None, sample_rate: int | None = None,
                min_seconds: float = 0.0, allow_silent: bool = False, silence_db: float = -70.0) -> None:
    """Raise AudioError if the waveform cannot be used."""
    if audio.size == 0 or audio.shape[-1] == 0:
        raise AudioError(path, "empty audio (zero samples)", "remove the file or re-export it")
    finite = np.isfinite(audio)
    if not finite.all():
        what = "all samples are NaN/inf" if not finite.any() else f"{int((~finite).sum())} NaN/inf samples"
        raise AudioError(path, f"non-finite audio: {what}", "re-export the file; the data is corrupt")
    if sample_rate is not None and min_seconds > 0 and audio.shape[-1] < min_seconds * sample_rate:
        got = audio.shape[-1] / sample_rate
        raise AudioError(path, f"too short: {got:.3f} s, the model needs at least {min_seconds:.3f} s",
                         "drop the file or lower the minimum length")
    if not allow_silent:
        peak = float(np.abs(audio).max())
        if peak == 0.0 or 20 * math.log10(peak) < silence_db:
            raise AudioError(path, f"silent audio (peak below {silence_db:.0f} dBFS)", "remove the file")


def load_audio(path: str | Path, sample_rate: int | None = None, mono: bool = True,
               normalize: str | None = None, min_seconds: float = 0.0, max_seconds: float | None = None,
               allow_silent: bool = False) -> np.ndarray:
    """Load a file as float32 [C, S], optionally resampled, mixed down and normalised.

    normalize: None, "peak" or "rms". Raises AudioError for anything unusable.
    """
    meta = info(path)
    if not MIN_SAMPLE_RATE <= meta.sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(path, f"absurd sample rate {meta.sample_rate} Hz",
                         f"resample it into [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz")
    if max_seconds is not None and meta.duration > max_seconds:
        raise AudioError(path, f"too long: {meta.duration:.1f} s > {max_seconds:.1f} s",
                         "split the file or raise the limit")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # [S, C]
    except Exception as e:
        raise AudioError(path, f"unreadable audio ({type(e).__name__}: {e})",
                         "convert it to wav/flac/ogg/mp3 or remove it") from e
    audio = np.ascontiguousarray(data.T)  # [C, S]
    check_audio(audio, path, allow_silent=allow_silent)
    if mono and audio.shape[0] > 1:
        audio = to_mono(audio)
    if sample_rate is not None and sample_rate != sr:
        audio = resample(audio, sr, sample_rate)
        sr = sample_rate
    check_audio(audio, path, sample_rate=sr, min_seconds=min_seconds, allow_silent=allow_silent)
    if normalize == "peak":
        audio = normalize_peak(audio)
    elif normalize == "rms":
        audio = normalize_rms(audio)
    elif normalize is not None:
        raise ValueError(f"normalize must be None, 'peak' or 'rms', got {normalize!r}")
    return audio.astype(np.float32, copy=False)


def save_audio(path: str | Path, audio: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    """Write [C, S] (or [S]) float audio atomically; format from the file extension."""
    from soundlm.fileio import atomic_path

    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None]
    path = Path(path)
    fmt = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: cannot write this extension; use .wav, .flac or .ogg")
    if fmt == "OGG":
        subtype = "VORBIS"
    with atomic_path(path, suffix=path.suffix) as tmp:
        sf.write(str(tmp), np.clip(audio, -1, 1).T, sample_rate, subtype=subtype, format=fmt)


class GrowingWavs:
    """Write B wav files piece by piece as audio is produced, each renamed onto its path when complete.

    Each `path` grows as `NAME.part.wav` beside it (a player can open it while it grows: the
    header is rewritten after every piece); `close()` syncs each file and renames it atomically
    onto `NAME.wav`. On an error (a `with` block that raises) the part files are removed, so
    no half-written `NAME.wav` ever exists. Samples are clipped and stored as `save_audio` does.
    """

    def __init__(self, paths: list[str | Path], sample_rate: int, subtype: str = "PCM_16"):
        self.paths = [Path(p) for p in paths]
        bad = [p for p in self.paths if p.suffix.lower() != ".wav"]
        if bad:
            raise ValueError(f"{bad[0]}: a streamed file must be .wav (its header can be rewritten as it grows)")
        self.parts = [p.with_suffix(".part.wav") for p in self.paths]
        self.sample_rate, self.subtype = sample_rate, subtype
        self._files: list[sf.SoundFile] = []

    def write(self, audio: np.ndarray) -> None:
        """Append [B, C, S] samples: row b to file b."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 3 or audio.shape[0] != len(self.paths):
            raise ValueError(f"GrowingWavs.write takes [B, C, S] audio with B = {len(self.paths)} files, "
                             f"got shape {audio.shape}")
        if not self._files:
            for part in self.parts:
                part.parent.mkdir(parents=True, exist_ok=True)
                self._files.append(sf.SoundFile(str(part), "w", self.sample_rate, audio.shape[1], self.subtype,
                                                format="WAV"))
        for f, rows in zip(self._files, audio):
            f.write(np.clip(rows, -1, 1).T)
            f.flush()  # libsndfile rewrites the header: the part file is a valid, growing wav

    def close(self) -> list[Path]:
        """Finish every file and rename it onto its final path; returns the final paths."""
        for f, part, path in zip(self._files, self.parts, self.paths):
            f.close()
            with open(part, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(part, path)
        self._files = []
        return self.paths

    def discard(self) -> None:
        """Close and remove the part files (the output was not completed)."""
        for f in self._files:
            f.close()
        self._files = []
        for part in self.parts:
            part.unlink(missing_ok=True)

    def __enter__(self) -> "GrowingWavs":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()
