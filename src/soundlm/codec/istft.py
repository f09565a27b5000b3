"""A frame-rate encoder and an inverse-STFT decoder (Vocos / WavTokenizer style).

SEANet's convolutions run at the audio rate and learn upsampling from scratch; these run
at the frame rate (50 Hz for hop 320, and `upsample` times that near the spectrum), so a
step costs a fraction of SEANet's and the decoder only has to predict a spectrogram:
the inverse STFT turns it into samples.

Encoder: log-magnitude STFT (hop = hop_length / upsample) -> conv -> ConvNeXt blocks ->
strided conv to the frame rate -> ConvNeXt blocks -> 1x1 conv to `dimension`.
Decoder: conv -> ConvNeXt blocks at the frame rate -> transposed conv (x upsample) ->
ConvNeXt blocks -> linear head to log-magnitude and phase -> inverse STFT.

Both are non-causal: the STFT windows reach half a window into the future.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def stft_geometry(hop_length: int, upsample: int) -> tuple[int, int]:
    """(STFT hop, FFT size) for a codec hop: `upsample` STFT frames per codec frame, windows of
    4 STFT hops (75% overlap). The encoder and the decoder must agree on it."""
    if upsample < 1 or hop_length % upsample:
        raise ValueError(f"hop_length {hop_length} must be a multiple of upsample {upsample} (>= 1)")
    stft_hop = hop_length // upsample
    return stft_hop, 4 * stft_hop


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> pointwise MLP (x3) -> layer scale, plus identity skip."""

    def __init__(self, dim: int, kernel_size: int = 7, layer_scale: float = 0.1):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up = nn.Linear(dim, 3 * dim)
        self.down = nn.Linear(3 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, H, T]
        y = self.dwconv(x).transpose(1, 2)  # [B, T, H]
        y = self.down(F.gelu(self.up(self.norm(y))))
        return x + (self.gamma * y).transpose(1, 2)


class _ChannelNorm(nn.Module):
    """LayerNorm over channels of [B, H, T]."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class STFTEncoder(nn.Module):
    """[B, C, S] audio (S a multiple of hop_length) -> [B, dimension, S / hop_length] latents."""

    def __init__(self, channels: int, dimension: int, hop_length: int, upsample: int = 2, hidden: int = 192,
                 frame_blocks: int = 3, fine_blocks: int = 1):
        super().__init__()
        self.hop_length = hop_length
        self.upsample = upsample
        self.stft_hop, self.n_fft = stft_geometry(hop_length, upsample)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        bins = self.n_fft // 2 + 1
        self.inp = nn.Conv1d(channels * bins, hidden, 3, padding=1)
        self.fine = nn.Sequential(*[ConvNeXtBlock(hidden) for _ in range(fine_blocks)])
        self.down = nn.Conv1d(hidden, hidden, upsample, stride=upsample)
        self.frame = nn.Sequential(*[ConvNeXtBlock(hidden) for _ in range(frame_blocks)])
        self.out = nn.Sequential(_ChannelNorm(hidden), nn.Conv1d(hidden, dimension, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, s = x.shape
        spec = torch.stft(x.reshape(b * c, s), self.n_fft, self.stft_hop, window=self.window, center=True,
                          return_complex=True)  # [B*C, F, frames * upsample + 1]
        return self.from_magnitude(spec.abs(), b)

    def from_magnitude(self, mag: torch.Tensor, batch: int) -> torch.Tensor:
        """|STFT| [B*C, F, T*up + 1] of the centred STFT -> latents [B, D, T] (the ONNX export computes |STFT|
        with convolutions and enters here)."""
        frames = (mag.shape[-1] - 1) // self.upsample
        # Drop the frame centred on the last sample: it belongs to the next codec frame.
        mag = mag[..., : frames * self.upsample]
        feats = torch.log(mag.clamp(min=1e-5)).reshape(batch, -1, frames * self.upsample)  # [B, C*F, T*up]
        h = self.fine(self.inp(feats))
        return self.out(self.frame(self.down(h)))  # [B, D, T]


class ISTFTDecoder(nn.Module):
    """[B, dimension, T] latents -> [B, C, T * hop_length] audio through an inverse STFT."""

    def __init__(self, channels: int, dimension: int, hop_length: int, upsample: int = 2, hidden: int = 192,
                 frame_blocks: int = 3, fine_blocks: int = 1):
        super().__init__()
        self.channels = channels
        self.hop_length = hop_length
        self.upsample = upsample
        self.stft_hop, self.n_fft = stft_geometry(hop_length, upsample)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.bins = self.n_fft // 2 + 1
        self.inp = nn.Conv1d(dimension, hidden, 7, padding=3)
        self.frame = nn.Sequential(_ChannelNorm(hidden), *[ConvNeXtBlock(hidden) for _ in range(frame_blocks)])
        self.up = nn.ConvTranspose1d(hidden, hidden, upsample, stride=upsample)
        self.fine = nn.Sequential(*[ConvNeXtBlock(hidden) for _ in range(fine_blocks)], _ChannelNorm(hidden))
        self.head = nn.Conv1d(hidden, channels * 2 * self.bins, 1)

    def spectrum(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents [B, D, T] -> (real, imaginary) parts [B*C, F, T*up + 1] of the centred STFT to invert."""
        b, _, t = z.shape
        h = self.fine(self.up(self.frame(self.inp(z))))  # [B, H, T*up]
        out = self.head(h).reshape(b * self.channels, 2, self.bins, t * self.upsample)
        # Vocos: exp of a clamped log-magnitude (no overflow) and a phase angle.
        mag = torch.exp(out[:, 0].clamp(max=6.0))
        phase = out[:, 1]
        real, imag = mag * torch.cos(phase), mag * torch.sin(phase)  # [B*C, F, T*up]
        # One extra frame so the centred inverse STFT covers the last hop; it mirrors the last.
        return torch.cat([real, real[..., -1:]], dim=-1), torch.cat([imag, imag[..., -1:]], dim=-1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, _, t = z.shape
        real, imag = self.spectrum(z)
        y = torch.istft(torch.complex(real, imag), self.n_fft, self.stft_hop, window=self.window, center=True,
                        length=t * self.hop_length)  # [B*C, S]
        return y.reshape(b, self.channels, -1)
