"""Reconstruction losses and metrics for codec training.

- Multi-resolution STFT loss (Parallel WaveGAN): spectral convergence + L1 log magnitude,
  averaged over several FFT sizes so no single time/frequency trade-off dominates.
- Multi-scale mel loss (EnCodec / DAC): L1 on log mel spectrograms at several resolutions.
- SI-SDR, the scale-invariant signal-to-distortion ratio, for held-out evaluation.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10 ** (m / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                   f_max: float | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """HTK-scale triangular filters [n_mels, n_fft // 2 + 1], area-normalised (Slaney), in float64 then `dtype`."""
    f_max = f_max if f_max is not None else sample_rate / 2
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    mel_range = hz_to_mel(torch.tensor([f_min, f_max], dtype=torch.float64))
    mels = torch.linspace(float(mel_range[0]), float(mel_range[1]), n_mels + 2, dtype=torch.float64)
    hz = mel_to_hz(mels)
    lower, centre, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lower) / (centre - lower)
    down = (upper - freqs[None]) / (upper - centre)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    fb = fb * (2.0 / (upper - lower))
    return fb.to(dtype)


def _stft_mag(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    """[B, C, S] -> magnitude [B*C, n_fft // 2 + 1, frames]."""
    x = x.reshape(-1, x.shape[-1])
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=window, center=True,
                      pad_mode="reflect" if x.shape[-1] > n_fft // 2 else "constant", return_complex=True)
    # Clamp before sqrt: the gradient of |z| at z = 0 is NaN.
    return (spec.real.pow(2) + spec.imag.pow(2)).clamp(min=1e-8).sqrt()


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over FFT sizes."""

    def __init__(self, fft_sizes: tuple[int, ...] = (512, 1024, 2048)):
        super().__init__()
        self.fft_sizes = tuple(fft_sizes)
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # [B, C, S] each
        total = pred.new_zeros(())
        for n in self.fft_sizes:
            window = getattr(self, f"window_{n}")
            p = _stft_mag(pred, n, n // 4, window)
            t = _stft_mag(target, n, n // 4, window)
            sc = torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp(min=1e-7)
            log_mag = F.l1_loss(torch.log(p), torch.log(t))
            total = total + sc + log_mag
        return total / len(self.fft_sizes)


class LowBandSTFTLoss(nn.Module):
    """L1 between log magnitudes of long-window STFTs (~4 Hz bins at 16 kHz) below `max_hz`.

    Mel scales and 32-128 ms windows blur what lies between partials at low frequencies, so a
    decoder can add lines there (e.g. a buzz at multiples of its frame rate, which reads as a
    chord to a chroma or key analyser) at little cost to the other losses; this one sees them.
    """

    def __init__(self, sample_rate: int, n_fft: int = 4096, max_hz: float = 2000.0):
        super().__init__()
        self.n_fft, self.bins = n_fft, int(max_hz * n_fft / sample_rate) + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # [B, C, S] each
        p = _stft_mag(pred, self.n_fft, self.n_fft // 4, self.window)[:, : self.bins]
        t = _stft_mag(target, self.n_fft, self.n_fft // 4, self.window)[:, : self.bins]
        return F.l1_loss(torch.log(p), torch.log(t))


class MultiScaleMelLoss(nn.Module):
    """L1 between log mel spectrograms at several (n_fft, n_mels) resolutions."""

    def __init__(self, sample_rate: int, scales: tuple[tuple[int, int], ...] = ((256, 32), (512, 64), (1024, 64),
                                                                              (2048, 128))):
        super().__init__()
        self.scales = tuple(scales)
        for n_fft, n_mels in self.scales:
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)
            self.register_buffer(f"mel_{n_fft}", mel_filterbank(sample_rate, n_fft, n_mels), persistent=False)

    def log_mel(self, x: torch.Tensor, n_fft: int) -> torch.Tensor:
        """[B, C, S] -> [B*C, n_mels, frames] log mel (natural log, floor 1e-5)."""
        mag = _stft_mag(x, n_fft, n_fft // 4, getattr(self, f"window_{n_fft}"))
        mel = getattr(self, f"mel_{n_fft}") @ mag
        return torch.log(mel.clamp(min=1e-5))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = pred.new_zeros(())
        for n_fft, _ in self.scales:
            total = total + F.l1_loss(self.log_mel(pred, n_fft), self.log_mel(target, n_fft))
        return total / len(self.scales)


def si_sdr(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB per item: [B, C, S] x2 -> [B] (channels flattened)."""
    pred = pred.reshape(pred.shape[0], -1).double()
    target = target.reshape(target.shape[0], -1).double()
    pred = pred - pred.mean(-1, keepdim=True)
    target = target - target.mean(-1, keepdim=True)
    scale = (pred * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    proj = scale * target
    noise = pred - proj
    ratio = proj.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps)
    return (10 * torch.log10(ratio + eps)).float()


def default_fft_sizes(sample_rate: int) -> tuple[int, ...]:
    """FFT sizes of ~32, 64 and 128 ms at any sample rate (powers of two)."""
    base = 2 ** round(math.log2(sample_rate * 0.032))
    return (base, base * 2, base * 4)
