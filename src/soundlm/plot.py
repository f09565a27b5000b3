"""Figures of prompts and continuations: waveform and log-mel spectrogram per clip.

matplotlib is drawn through a bare `Figure` (the Agg canvas), never `pyplot`, so plotting
works without a display and leaves the process's global backend alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

N_FFT = 1024
HOP = 256
N_MELS = 80
DYNAMIC_RANGE_DB = 80.0  # quieter bins are drawn as the floor, so silence stays dark instead of noisy


@dataclass
class Clip:
    """One row of the figure: mono audio [S] and what to write above it."""

    audio: np.ndarray  # [S] or [C, S]
    title: str
    boundary_seconds: float | None = None  # where the prompt ends, drawn as a vertical line


def log_mel_db(audio: np.ndarray, sample_rate: int, n_fft: int = N_FFT, hop: int = HOP,
               n_mels: int = N_MELS) -> np.ndarray:
    """[S] audio -> [n_mels, T] log-mel power in dB (HTK mel scale over 0 .. sample_rate / 2)."""
    import torch

    from soundlm.eval.codec_metrics import mel_filterbank

    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if x.shape[-1] <= n_fft // 2:  # reflect padding needs more than half a window
        x = torch.nn.functional.pad(x, (0, n_fft // 2 + 1 - x.shape[-1]))
    spec = torch.stft(x, n_fft=n_fft, hop_length=hop, window=torch.hann_window(n_fft), center=True,
                      return_complex=True).abs().numpy() ** 2  # [F, T]
    mel = mel_filterbank(sample_rate, n_fft, n_mels) @ spec  # [n_mels, T]
    return 10.0 * np.log10(np.maximum(mel, 1e-10))


def _mel_band_ticks(sample_rate: int, n_mels: int) -> tuple[list[float], list[str]]:
    """Positions (in band units, as drawn) and labels of round frequencies on the mel axis."""
    def mel(f: float) -> float:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    # Band i is centred on the (i + 1)-th of n_mels + 2 points spread evenly over [0, mel(sr / 2)].
    top = mel(sample_rate / 2)
    freqs = [f for f in (250, 500, 1000, 2000, 4000, 8000, 16000) if f < sample_rate / 2 * 0.95]
    return ([mel(f) / top * (n_mels + 1) - 0.5 for f in freqs],
            [f"{f // 1000}k" if f >= 1000 else str(f) for f in freqs])


def plot_clips(clips: Sequence[Clip], sample_rate: int, path: str | Path, suptitle: str | None = None) -> Path:
    """Draw each clip as a row (waveform left, log-mel spectrogram right) and save a PNG atomically.

    All rows share one time axis, so a prompt and its continuations line up at the boundary.
    """
    from matplotlib.figure import Figure

    from soundlm.fileio import atomic_path

    if not clips:
        raise ValueError("nothing to plot; pass at least one clip")
    monos = [np.asarray(c.audio, dtype=np.float32).reshape(-1, np.shape(c.audio)[-1]).mean(axis=0) for c in clips]
    longest = max(len(m) for m in monos) / sample_rate
    peak = max(float(np.abs(m).max()) for m in monos) or 1.0
    mels = [log_mel_db(m, sample_rate) for m in monos]  # [n_mels, T] each
    # One colour scale for every row, so loudness compares across clips; the floor keeps silence dark.
    vmax = max(float(m.max()) for m in mels)
    vmin = vmax - DYNAMIC_RANGE_DB
    ticks, labels = _mel_band_ticks(sample_rate, N_MELS)
    fig = Figure(figsize=(13, 2.3 * len(clips) + (0.6 if suptitle else 0.2)), dpi=100, layout="constrained")
    axes = fig.subplots(len(clips), 2, squeeze=False, width_ratios=[1, 1.25])
    for row, (clip, mono, mel) in enumerate(zip(clips, monos, mels)):
        wave_ax, mel_ax = axes[row]
        t = np.arange(len(mono)) / sample_rate
        wave_ax.plot(t, mono, linewidth=0.4, color="#1f4e79")
        wave_ax.set_xlim(0, longest)
        wave_ax.set_ylim(-peak * 1.05, peak * 1.05)
        wave_ax.set_ylabel("amplitude")
        wave_ax.set_title(clip.title, loc="left", fontsize=10)
        image = mel_ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                              vmin=vmin, vmax=vmax, extent=(0, len(mono) / sample_rate, 0, mel.shape[0]))
        mel_ax.set_xlim(0, longest)
        mel_ax.set_facecolor("black")  # past the end of a shorter clip: silence, drawn as the floor
        mel_ax.set_yticks(ticks, labels)
        mel_ax.set_ylabel("frequency (Hz, mel scale)")
        if row == 0:
            mel_ax.set_title("log-mel spectrogram", loc="left", fontsize=10)
        fig.colorbar(image, ax=mel_ax, pad=0.01, label="dB")
        if clip.boundary_seconds is not None:
            for ax in (wave_ax, mel_ax):
                ax.axvline(clip.boundary_seconds, color="#2ca02c", linestyle="--", linewidth=1.6)
            wave_ax.text(clip.boundary_seconds, peak * 0.95, " prompt | continuation", color="#2ca02c",
                         fontsize=8, va="top")
        for ax in (wave_ax, mel_ax):
            if row == len(clips) - 1:
                ax.set_xlabel("time (s)")
    if suptitle:
        fig.suptitle(suptitle, fontsize=12)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    return path
