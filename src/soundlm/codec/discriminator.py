"""Multi-scale STFT discriminator (EnCodec's MS-STFTD) and the GAN losses that use it.

Each sub-discriminator looks at the complex STFT (real and imaginary parts as two input
channels) at one resolution through a stack of 2D convolutions dilated in time and strided
in frequency. It returns logits and every intermediate feature map, which the generator
matches (feature matching loss, L1 relative to the real features' scale as in EnCodec).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import weight_norm


@dataclass
class DiscriminatorOutput:
    logits: list[torch.Tensor]  # one [B, 1, frames, freq'] map per scale
    features: list[list[torch.Tensor]]  # per scale, every intermediate activation


class STFTDiscriminator(nn.Module):
    """One resolution of MS-STFTD."""

    def __init__(self, n_fft: int, channels: int = 1, filters: int = 32, max_filters: int = 1024,
                 dilations: tuple[int, ...] = (1, 2, 4), kernel: tuple[int, int] = (3, 9)):
        super().__init__()
        self.n_fft = n_fft
        self.hop = n_fft // 4
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        in_ch = 2 * channels
        self.convs = nn.ModuleList([weight_norm(nn.Conv2d(in_ch, filters, kernel, padding=(1, 4)))])
        ch = filters
        for i, d in enumerate(dilations):
            out = min(filters * 2 ** (i + 1), max_filters)
            # Dilate along time to see longer context; stride along frequency to shrink it.
            self.convs.append(weight_norm(nn.Conv2d(ch, out, kernel, stride=(1, 2), dilation=(d, 1),
                                                    padding=(d, 4))))
            ch = out
        self.convs.append(weight_norm(nn.Conv2d(ch, ch, (3, 3), padding=(1, 1))))
        self.out = weight_norm(nn.Conv2d(ch, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:  # x: [B, C, S]
        b, c, s = x.shape
        spec = torch.stft(x.reshape(b * c, s), self.n_fft, hop_length=self.hop, window=self.window,
                          center=True, normalized=True, return_complex=True)  # [B*C, F, frames]
        spec = torch.view_as_real(spec).view(b, c, spec.shape[-2], spec.shape[-1], 2)
        z = spec.permute(0, 1, 4, 3, 2).reshape(b, c * 2, spec.shape[3], spec.shape[2])  # [B, 2C, frames, F]
        features = []
        for conv in self.convs:
            z = F.leaky_relu(conv(z), 0.2)
            features.append(z)
        return self.out(z), features


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, channels: int = 1, filters: int = 32, n_ffts: tuple[int, ...] = (1024, 2048, 512)):
        super().__init__()
        self.discriminators = nn.ModuleList([STFTDiscriminator(n, channels=channels, filters=filters)
                                             for n in n_ffts])

    def forward(self, x: torch.Tensor) -> DiscriminatorOutput:
        logits, features = [], []
        for d in self.discriminators:
            logit, feats = d(x)
            logits.append(logit)
            features.append(feats)
        return DiscriminatorOutput(logits=logits, features=features)


def _check_kind(kind: str) -> None:
    if kind not in ("hinge", "lsgan"):
        raise ValueError(f"adversarial loss kind must be 'hinge' or 'lsgan', got {kind!r}")


def generator_adversarial_loss(fake_logits: list[torch.Tensor], kind: str = "hinge") -> torch.Tensor:
    """Generator side: push the discriminator's logits on fakes towards 'real'."""
    _check_kind(kind)
    losses = [F.relu(1 - l).mean() if kind == "hinge" else (1 - l).pow(2).mean() for l in fake_logits]
    return torch.stack(losses).mean()


def discriminator_loss(real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor],
                       kind: str = "hinge") -> torch.Tensor:
    """Discriminator side: real -> +1, fake -> -1 (hinge) or 0 (LSGAN)."""
    _check_kind(kind)
    losses = []
    for r, f in zip(real_logits, fake_logits):
        if kind == "hinge":
            losses.append(F.relu(1 - r).mean() + F.relu(1 + f).mean())
        else:
            losses.append((1 - r).pow(2).mean() + f.pow(2).mean())
    return torch.stack(losses).mean()


def feature_matching_loss(real_features: list[list[torch.Tensor]],
                          fake_features: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean over layers of L1(fake, real) / mean|real| (EnCodec's relative feature loss)."""
    losses = []
    for reals, fakes in zip(real_features, fake_features):
        for r, f in zip(reals, fakes):
            r = r.detach()
            losses.append(F.l1_loss(f, r) / r.abs().mean().clamp(min=1e-8))
    return torch.stack(losses).mean()
