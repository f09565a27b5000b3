"""SEANet encoder and decoder (the convolutional backbone of SoundStream and EnCodec).

Encoder: conv -> [residual units, ELU, strided conv (x2 channels)] per ratio -> optional
LSTM -> ELU -> conv to `dimension`. Decoder mirrors it with transposed convolutions.
Every conv uses weight normalisation. With `causal=True` all padding goes on the left (and
transposed convs trim on the right), so encoder frame t only sees samples before
(t + 1) * hop: this is what makes streaming possible.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm


def extra_padding_for_conv1d(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Right padding so that the last window of a strided conv is complete (EnCodec's rule)."""
    # ceil((length - kernel_size + padding_total) / stride) + 1 in integers: math.ceil would turn the length into a
    # constant when the codec is traced for ONNX export (`codec/onnx.py`), fixing the graph to one input length.
    n_frames = -(-(length - kernel_size + padding_total) // stride) + 1
    ideal_length = (n_frames - 1) * stride + (kernel_size - padding_total)
    return max(ideal_length - length, 0)


class SConv1d(nn.Module):
    """Conv1d with weight norm and causal or centred "same"-style padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, causal: bool = False, pad_mode: str = "reflect"):
        super().__init__()
        self.conv = weight_norm(nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, dilation=dilation))
        self.causal = causal
        # Reflect padding on the left would copy future samples into the past: causal uses zeros.
        self.pad_mode = "constant" if causal else pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, L] -> [B, C_out, ceil(L / stride)]
        conv = self.conv
        kernel = (conv.kernel_size[0] - 1) * conv.dilation[0] + 1
        stride = conv.stride[0]
        padding_total = kernel - stride
        extra = extra_padding_for_conv1d(x.shape[-1], kernel, stride, padding_total)
        if self.causal:
            left, right = padding_total, extra
        else:
            right = padding_total // 2
            left = padding_total - right
            right += extra
        x = _pad1d(x, left, right, self.pad_mode)
        return conv(x)


class SConvTranspose1d(nn.Module):
    """ConvTranspose1d with weight norm; trims the overhang so output length is L * stride."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, causal: bool = False):
        super().__init__()
        self.convtr = weight_norm(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride=stride))
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C_in, T] -> [B, C_out, T * stride]
        kernel = self.convtr.kernel_size[0]
        stride = self.convtr.stride[0]
        padding_total = kernel - stride
        y = self.convtr(x)
        if self.causal:
            # Trimming only on the right keeps output sample s independent of later frames.
            left, right = 0, padding_total
        else:
            right = padding_total // 2
            left = padding_total - right
        return y[..., left: y.shape[-1] - right]


def _pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    if left == 0 and right == 0:
        return x
    if mode == "reflect":
        # Reflect padding needs the input to be longer than the pad; zero-extend short inputs first.
        max_pad = max(left, right)
        extra = max_pad - x.shape[-1] + 1
        if extra > 0:
            x = F.pad(x, (0, extra))
            out = F.pad(x, (left, right), mode="reflect")
            return out[..., : out.shape[-1] - extra]
        return F.pad(x, (left, right), mode="reflect")
    return F.pad(x, (left, right), mode=mode)


class ResidualUnit(nn.Module):
    """ELU -> dilated conv (dim -> dim/compress) -> ELU -> 1x1 conv back, plus identity skip."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, causal: bool, compress: int = 2):
        super().__init__()
        hidden = max(dim // compress, 1)
        self.block = nn.Sequential(
            nn.ELU(),
            SConv1d(dim, hidden, kernel_size, dilation=dilation, causal=causal),
            nn.ELU(),
            SConv1d(hidden, dim, 1, causal=causal),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class SLSTM(nn.Module):
    """Unidirectional LSTM over time with a skip connection (causal either way)."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, D, T]
        y, _ = self.lstm(x.permute(2, 0, 1))  # [T, B, D]
        return x + y.permute(1, 2, 0)


class SEANetEncoder(nn.Module):
    """[B, C, S] audio -> [B, dimension, S / prod(ratios)] latents."""

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 ratios: tuple[int, ...] = (8, 5, 4, 2), n_residual_layers: int = 1, dilation_base: int = 2,
                 kernel_size: int = 7, residual_kernel_size: int = 3, last_kernel_size: int = 7,
                 causal: bool = False, lstm_layers: int = 0):
        super().__init__()
        self.hop_length = math.prod(ratios)
        mult = 1
        layers: list[nn.Module] = [SConv1d(channels, n_filters, kernel_size, causal=causal)]
        # The decoder lists ratios from the latent side; the encoder downsamples in reverse order.
        for ratio in reversed(ratios):
            dim = mult * n_filters
            for j in range(n_residual_layers):
                layers.append(ResidualUnit(dim, residual_kernel_size, dilation_base ** j, causal))
            layers += [nn.ELU(), SConv1d(dim, dim * 2, ratio * 2, stride=ratio, causal=causal)]
            mult *= 2
        if lstm_layers > 0:
            layers.append(SLSTM(mult * n_filters, lstm_layers))
        layers += [nn.ELU(), SConv1d(mult * n_filters, dimension, last_kernel_size, causal=causal)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    """[B, dimension, T] latents -> [B, C, T * prod(ratios)] audio."""

    def __init__(self, channels: int = 1, dimension: int = 128, n_filters: int = 32,
                 ratios: tuple[int, ...] = (8, 5, 4, 2), n_residual_layers: int = 1, dilation_base: int = 2,
                 kernel_size: int = 7, residual_kernel_size: int = 3, last_kernel_size: int = 7,
                 causal: bool = False, lstm_layers: int = 0):
        super().__init__()
        self.hop_length = math.prod(ratios)
        mult = 2 ** len(ratios)
        layers: list[nn.Module] = [SConv1d(dimension, mult * n_filters, kernel_size, causal=causal)]
        if lstm_layers > 0:
            layers.append(SLSTM(mult * n_filters, lstm_layers))
        for ratio in ratios:
            dim = mult * n_filters
            layers += [nn.ELU(), SConvTranspose1d(dim, dim // 2, ratio * 2, stride=ratio, causal=causal)]
            for j in range(n_residual_layers):
                layers.append(ResidualUnit(dim // 2, residual_kernel_size, dilation_base ** j, causal))
            mult //= 2
        layers += [nn.ELU(), SConv1d(n_filters, channels, last_kernel_size, causal=causal)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)
