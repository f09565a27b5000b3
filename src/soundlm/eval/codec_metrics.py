"""Signal metrics for codec reconstructions, and a bitrate sweep over an AcousticTokenizer.

Every metric takes a reference and an estimate as numpy arrays or torch tensors shaped
[S] or [C, S] (same shape, same sample rate) and returns one float; multi-channel inputs
are scored per channel and averaged. Lower is better for the distances, higher for SI-SDR,
STOI and PESQ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from soundlm.fileio import write_json_atomic

if TYPE_CHECKING:
    import torch

    from soundlm.codec.base import AcousticTokenizer

PESQ_SAMPLE_RATE = 16_000  # wideband PESQ (ITU-T P.862.2) is defined at 16 kHz only
# pystoi needs at least 30 analysis frames of 384 samples at 10 kHz plus some speech.
MIN_STOI_SECONDS = 0.4


def _as_channels(x: "np.ndarray | torch.Tensor", name: str) -> np.ndarray:
    """Any [S] or [C, S] array/tensor -> float64 numpy [C, S]."""
    if hasattr(x, "detach"):  # a torch tensor, possibly on GPU or requiring grad
        x = x.detach().float().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be [S] or [C, S] audio, got shape {x.shape}; "
                         "squeeze the batch axis or pass one item of a batch")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has zero samples")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN/inf samples; check the decoder output")
    return x


def _pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    ref = _as_channels(reference, "reference")
    est = _as_channels(estimate, "estimate")
    if ref.shape != est.shape:
        raise ValueError(f"reference {ref.shape} and estimate {est.shape} differ in shape; "
                         "crop the estimate to the reference length first (codecs pad to whole frames)")
    return ref, est


# ----------------------------------------------------------------------------- spectra

@lru_cache(maxsize=16)
def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """HTK-scale triangular mel filters [n_mels, n_fft // 2 + 1], area-normalised (Slaney), float64.

    The codec's training loss uses the same filters (soundlm.codec.losses.mel_filterbank).
    """
    import torch

    from soundlm.codec.losses import mel_filterbank as _filters

    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sample_rate/2, got fmin={fmin}, fmax={fmax}, "
                         f"sample_rate={sample_rate}")
    return _filters(sample_rate, n_fft, n_mels, fmin, fmax, dtype=torch.float64).numpy()


def _stft_magnitude(x: np.ndarray, n_fft: int, hop: int, win: int) -> np.ndarray:
    """[C, S] -> [C, F, T] magnitudes (Hann window, centred, reflect-padded)."""
    import torch

    t = torch.from_numpy(x)
    if t.shape[-1] <= n_fft // 2:  # reflect padding needs more samples than half a window
        t = torch.nn.functional.pad(t, (0, n_fft // 2 + 1 - t.shape[-1]))
    spec = torch.stft(t, n_fft=n_fft, hop_length=hop, win_length=win,
                      window=torch.hann_window(win, dtype=t.dtype), center=True, return_complex=True)
    return spec.abs().numpy()  # [C, F, T]


def mel_distance(reference, estimate, sample_rate: int, n_fft: int = 1024, hop_length: int = 256,
                 n_mels: int = 80, fmin: float = 0.0, fmax: float | None = None,
                 eps: float = 1e-5) -> float:
    """Mean absolute difference of natural-log mel magnitude spectrograms.

    Defaults follow the HiFi-GAN/EnCodec evaluation setup: 1024-point Hann STFT, hop 256,
    80 mel bands over [0, sample_rate/2], log(max(mel, eps)). 0 means identical spectra.
    """
    ref, est = _pair(reference, estimate)
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    mel_ref = np.einsum("mf,cft->cmt", fb, _stft_magnitude(ref, n_fft, hop_length, n_fft))
    mel_est = np.einsum("mf,cft->cmt", fb, _stft_magnitude(est, n_fft, hop_length, n_fft))
    return float(np.mean(np.abs(np.log(np.maximum(mel_ref, eps)) - np.log(np.maximum(mel_est, eps)))))


def multi_resolution_stft_distance(reference, estimate,
                                   fft_sizes: Sequence[int] = (512, 1024, 2048),
                                   hop_sizes: Sequence[int] = (128, 256, 512),
                                   win_sizes: Sequence[int] = (512, 1024, 2048),
                                   eps: float = 1e-7) -> float:
    """Parallel WaveGAN's multi-resolution STFT loss as a metric.

    At each resolution: spectral convergence ||S_ref - S_est||_F / ||S_ref||_F plus the mean
    absolute log-magnitude difference; the result is the mean over resolutions.
    """
    if not len(fft_sizes) == len(hop_sizes) == len(win_sizes):
        raise ValueError("fft_sizes, hop_sizes and win_sizes must have the same length")
    ref, est = _pair(reference, estimate)
    total = 0.0
    for n_fft, hop, win in zip(fft_sizes, hop_sizes, win_sizes):
        s_ref = _stft_magnitude(ref, n_fft, hop, win)
        s_est = _stft_magnitude(est, n_fft, hop, win)
        convergence = np.linalg.norm(s_ref - s_est) / max(np.linalg.norm(s_ref), eps)
        log_mag = np.mean(np.abs(np.log(s_ref + eps) - np.log(s_est + eps)))
        total += convergence + log_mag
    return float(total / len(fft_sizes))


# ----------------------------------------------------------------------------- waveform

def si_sdr(reference, estimate, eps: float = 1e-12) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019).

    Both signals are made zero-mean; the estimate is projected on the reference, and the
    ratio of projected energy to residual energy is returned. Identical signals give a
    very large value (capped only by `eps`, about 100+ dB).
    """
    ref, est = _pair(reference, estimate)
    ref = ref - ref.mean(axis=1, keepdims=True)
    est = est - est.mean(axis=1, keepdims=True)
    values = []
    for r, e in zip(ref, est):
        energy = float(np.dot(r, r))
        if energy <= eps:
            raise ValueError("reference is silent (zero energy after removing the mean); "
                             "SI-SDR is undefined for it")
        target = (np.dot(e, r) / energy) * r
        noise = e - target
        values.append(10 * math.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))
    return float(np.mean(values))


def stoi(reference, estimate, sample_rate: int, extended: bool = False) -> float:
    """Short-time objective intelligibility in [0, 1] (pystoi; extended=True gives ESTOI)."""
    from pystoi import stoi as _stoi

    ref, est = _pair(reference, estimate)
    if ref.shape[1] < MIN_STOI_SECONDS * sample_rate:
        raise ValueError(f"STOI needs at least {MIN_STOI_SECONDS} s of audio, got "
                         f"{ref.shape[1] / sample_rate:.3f} s; evaluate longer clips")
    return float(np.mean([_stoi(r, e, sample_rate, extended=extended) for r, e in zip(ref, est)]))


def pesq_wideband(reference, estimate, sample_rate: int) -> float:
    """Wideband PESQ MOS-LQO (about 1.0 to 4.64); audio is resampled to 16 kHz with soxr."""
    import soxr
    from pesq import pesq as _pesq
    from pesq import PesqError

    ref, est = _pair(reference, estimate)
    scores = []
    for r, e in zip(ref, est):
        if sample_rate != PESQ_SAMPLE_RATE:
            r = soxr.resample(r, sample_rate, PESQ_SAMPLE_RATE, quality="HQ")
            e = soxr.resample(e, sample_rate, PESQ_SAMPLE_RATE, quality="HQ")
        try:
            scores.append(_pesq(PESQ_SAMPLE_RATE, r, e, "wb"))
        except PesqError as err:  # the C library rejects silence and clips under 1/4 s
            raise ValueError(f"PESQ failed ({type(err).__name__}: {err}); it needs speech-like audio "
                             "of at least 0.25 s; skip PESQ for this clip (include_pesq=False)") from err
    return float(np.mean(scores))


# ----------------------------------------------------------------------------- report

@dataclass
class CodecReport:
    """All signal metrics for one reference/estimate pair (None: not computed)."""

    mel_distance: float
    stft_distance: float
    si_sdr: float
    stoi: float | None
    pesq: float | None


def codec_report(reference, estimate, sample_rate: int, include_stoi: bool = True,
                 include_pesq: bool = True) -> CodecReport:
    """Compute every metric; STOI and PESQ are speech metrics, switch them off for music."""
    return CodecReport(
        mel_distance=mel_distance(reference, estimate, sample_rate),
        stft_distance=multi_resolution_stft_distance(reference, estimate),
        si_sdr=si_sdr(reference, estimate),
        stoi=stoi(reference, estimate, sample_rate) if include_stoi else None,
        pesq=pesq_wideband(reference, estimate, sample_rate) if include_pesq else None,
    )


@dataclass
class CodecEvalRow:
    """Mean metrics of one codec at one number of codebooks over a set of files."""

    num_codebooks: int
    bitrate_kbps: float
    num_files: int
    mel_distance: float
    stft_distance: float
    si_sdr: float
    stoi: float | None
    pesq: float | None


def default_codebook_counts(total_codebooks: int) -> list[int]:
    """Powers of two up to the codec's total, plus the total itself: 8 -> [1, 2, 4, 8]."""
    counts = [1 << i for i in range(total_codebooks.bit_length()) if (1 << i) <= total_codebooks]
    return counts if counts[-1] == total_codebooks else counts + [total_codebooks]


def _codec_device(codec: "AcousticTokenizer") -> "torch.device":
    import torch

    param = next(iter(codec.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


def resynthesize(codec: "AcousticTokenizer", audio: np.ndarray) -> np.ndarray:
    """decode(encode(audio)) for [C, S] float audio at the codec's rate: [C, S], the same length
    (frame padding cut off, a short decode zero-padded)."""
    import torch

    with torch.inference_mode():
        x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None].to(_codec_device(codec))
        y = codec.decode(codec.encode(x))  # [1, C, S'] with S' >= S (frame padding)
    est = y[0, :, : audio.shape[1]].float().cpu().numpy()  # [C, S]
    if est.shape[1] < audio.shape[1]:
        est = np.pad(est, ((0, 0), (0, audio.shape[1] - est.shape[1])))
    return est


def evaluate_codec(codec: "AcousticTokenizer", files: Sequence[str | Path],
                   num_codebooks: Sequence[int] | None = None, include_stoi: bool = True,
                   include_pesq: bool = True, max_seconds: float | None = None,
                   state_path: str | Path | None = None, progress: bool = True) -> list[CodecEvalRow]:
    """Encode and decode every file at each number of codebooks; one row per bitrate.

    Files are loaded one at a time at the codec's sample rate and channel count; decoded
    audio is cropped to the input length (codecs pad to whole frames). With `state_path`,
    per-file reports are saved (atomically) after each file and a rerun with the same codec
    and settings skips the files already scored. The codec's own codebook setting is
    restored afterwards, even on error.
    """
    from tqdm import tqdm

    if not files:
        raise ValueError("no files to evaluate; pass at least one audio file")
    counts = list(num_codebooks) if num_codebooks is not None else default_codebook_counts(codec.total_codebooks)
    bad = [k for k in counts if not 1 <= k <= codec.total_codebooks]
    if bad:
        raise ValueError(f"num_codebooks {bad} out of range: this codec has 1..{codec.total_codebooks}")

    settings = {"codec": codec.describe(), "num_codebooks": counts, "include_stoi": include_stoi,
                "include_pesq": include_pesq, "max_seconds": max_seconds}
    done = _load_state(state_path, settings)
    original = codec.num_codebooks
    kbps = {}
    try:
        for path in tqdm(files, desc="codec eval", unit="file", disable=not progress):
            key = str(path)
            if key in done:
                continue
            audio = _load_for_codec(path, codec.sample_rate, codec.channels, max_seconds)  # [C, S]
            per_k = {}
            for k in counts:
                codec.set_num_codebooks(k)
                kbps[k] = codec.bitrate / 1000.0
                est = resynthesize(codec, audio)  # [C, S]
                per_k[str(k)] = asdict(codec_report(audio, est, codec.sample_rate, include_stoi, include_pesq))
            done[key] = per_k
            if state_path is not None:
                write_json_atomic(state_path, {"settings": settings, "files": done})
        for k in counts:  # bitrates of resumed runs, where no file was encoded this time
            if k not in kbps:
                codec.set_num_codebooks(k)
                kbps[k] = codec.bitrate / 1000.0
    finally:
        codec.set_num_codebooks(original)
    return [_mean_row(k, kbps[k], [CodecReport(**done[str(f)][str(k)]) for f in files]) for k in counts]


def _load_for_codec(path: str | Path, sample_rate: int, channels: int, max_seconds: float | None) -> np.ndarray:
    from soundlm.audio import load_audio

    audio = load_audio(path, sample_rate=sample_rate, mono=channels == 1, max_seconds=max_seconds)  # [C, S]
    if audio.shape[0] != channels:
        if audio.shape[0] != 1:
            raise ValueError(f"{path}: has {audio.shape[0]} channels, the codec takes {channels}; "
                             "mix it down or pick channels first")
        audio = np.repeat(audio, channels, axis=0)  # mono file into a multi-channel codec
    return audio


def _load_state(state_path: str | Path | None, settings: dict) -> dict:
    """Per-file reports of an earlier run with identical settings (else start afresh)."""
    import json

    if state_path is None or not Path(state_path).exists():
        return {}
    state = json.loads(Path(state_path).read_text(encoding="utf-8"))
    if state.get("settings") != json.loads(json.dumps(settings)):
        raise ValueError(f"{state_path}: was written with other settings (codec or codebook counts); "
                         "delete it or pass another state_path")
    return state["files"]


def _mean_row(k: int, kbps: float, reports: list[CodecReport]) -> CodecEvalRow:
    def mean(name: str) -> float | None:
        values = [getattr(r, name) for r in reports]
        return None if values[0] is None else float(np.mean(values))

    return CodecEvalRow(num_codebooks=k, bitrate_kbps=kbps, num_files=len(reports),
                        mel_distance=mean("mel_distance"), stft_distance=mean("stft_distance"),
                        si_sdr=mean("si_sdr"), stoi=mean("stoi"), pesq=mean("pesq"))


def render_markdown_table(rows: Sequence[object], digits: int = 3) -> str:
    """Any list of same-type dataclass rows as a GitHub markdown table (None shows as '-')."""
    if not rows:
        raise ValueError("no rows to render")
    names = [f.name for f in fields(rows[0])]

    def cell(v) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return str(v)

    lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
    lines += ["| " + " | ".join(cell(getattr(r, n)) for n in names) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_rows_json(path: str | Path, rows: Sequence[object], meta: dict | None = None) -> None:
    """Write `{"meta": ..., "rows": [...]}` atomically (rows are dataclasses)."""
    write_json_atomic(path, {"meta": meta or {}, "rows": [asdict(r) for r in rows]})
