"""Our trainable codec: SEANet encoder -> residual VQ -> SEANet decoder (SoundStream/EnCodec).

`CodecConfig` holds every hyperparameter; presets are plain functions. A saved codec is a
folder with `config.json` ({"type": "soundlm-codec", ...}) and `model.safetensors`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from soundlm.codec.base import AcousticTokenizer
from soundlm.codec.istft import ISTFTDecoder, STFTEncoder
from soundlm.codec.rvq import ResidualVectorQuantizer
from soundlm.codec.seanet import SEANetDecoder, SEANetEncoder
from soundlm.fileio import atomic_path, read_json, write_json_atomic

CONFIG_TYPE = "soundlm-codec"
CONFIG_VERSION = 1


@dataclass
class CodecConfig:
    sample_rate: int = 16_000
    channels: int = 1
    # SEANet
    n_filters: int = 16
    ratios: tuple[int, ...] = (8, 5, 4, 2)  # decoder order; hop = product
    dimension: int = 128
    n_residual_layers: int = 1
    dilation_base: int = 2
    kernel_size: int = 7
    residual_kernel_size: int = 3
    last_kernel_size: int = 7
    causal: bool = True
    lstm_layers: int = 0
    # "seanet" (convolutions at the audio rate) or "istft" (frame-rate ConvNeXt encoder and
    # inverse-STFT decoder, soundlm.codec.istft; non-causal). The fields below are istft's.
    architecture: str = "seanet"
    upsample: int = 2
    hidden: int = 192
    frame_blocks: int = 3
    fine_blocks: int = 1
    # RVQ
    n_q: int = 8
    codebook_size: int = 1024
    ema_decay: float = 0.99
    kmeans_iters: int = 10
    dead_code_threshold: float = 0.02  # dead below this fraction of the mean code usage (EMA)
    quantizer_dropout: bool = True

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["ratios"] = list(self.ratios)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> CodecConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known - {"type", "version"}
        if unknown:
            raise ValueError(f"unknown codec config keys {sorted(unknown)}; was this written by a newer soundlm?")
        kwargs = {k: v for k, v in d.items() if k in known}
        if "ratios" in kwargs:
            kwargs["ratios"] = tuple(kwargs["ratios"])
        return cls(**kwargs)


def codec_16k_tiny() -> CodecConfig:
    """A few thousand parameters: for tests and smoke runs only."""
    return CodecConfig(sample_rate=16_000, n_filters=4, ratios=(8, 5, 4, 2), dimension=16, n_q=4,
                       codebook_size=64, kmeans_iters=4)


def codec_16k_small() -> CodecConfig:
    """The CPU-trainable default: 16 kHz, hop 320 (50 Hz), 8 x 1024 codebooks = 4 kbps."""
    return CodecConfig(sample_rate=16_000, n_filters=16, ratios=(8, 5, 4, 2), dimension=128, n_q=8,
                       codebook_size=1024)


def codec_16k_fast() -> CodecConfig:
    """The small preset's bitrate (50 Hz, 8 x 1024 = 4 kbps) with the frame-rate iSTFT architecture:
    several times cheaper per step than SEANet and quicker to converge on CPU."""
    return CodecConfig(sample_rate=16_000, ratios=(8, 5, 4, 2), dimension=128, n_q=8, codebook_size=1024,
                       causal=False, architecture="istft", upsample=2, hidden=192, frame_blocks=3, fine_blocks=1)


def codec_24k_base() -> CodecConfig:
    """EnCodec-24k-sized: 75 Hz frames, 32 x 1024 codebooks (up to 24 kbps), 2-layer LSTM."""
    return CodecConfig(sample_rate=24_000, n_filters=32, ratios=(8, 5, 4, 2), dimension=128, n_q=32,
                       codebook_size=1024, lstm_layers=2)


PRESETS = {"tiny": codec_16k_tiny, "small": codec_16k_small, "fast": codec_16k_fast, "base": codec_24k_base}


def codec_preset(name: str) -> CodecConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown codec preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


@dataclass
class CodecOutput:
    audio: torch.Tensor  # [B, C, S] reconstruction, same length as the input
    codes: torch.Tensor  # [B, K, T], K = quantizers active in this pass
    commit_loss: torch.Tensor  # scalar
    perplexity: torch.Tensor  # [K]
    n_q: int
    latents: torch.Tensor = field(repr=False)  # [B, D, T] encoder output before quantization


class SoundStreamCodec(AcousticTokenizer):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        seanet = dict(channels=config.channels, dimension=config.dimension, n_filters=config.n_filters,
                      ratios=tuple(config.ratios), n_residual_layers=config.n_residual_layers,
                      dilation_base=config.dilation_base, kernel_size=config.kernel_size,
                      residual_kernel_size=config.residual_kernel_size, last_kernel_size=config.last_kernel_size,
                      causal=config.causal, lstm_layers=config.lstm_layers)
        if config.architecture == "seanet":
            self.encoder = SEANetEncoder(**seanet)
            self.decoder = SEANetDecoder(**seanet)
        elif config.architecture == "istft":
            if config.causal:
                raise ValueError("the istft architecture is not causal (its STFT windows see the future); "
                                 "set causal=False or use architecture='seanet'")
            frame = dict(channels=config.channels, dimension=config.dimension, hop_length=config.hop_length,
                         upsample=config.upsample, hidden=config.hidden, frame_blocks=config.frame_blocks,
                         fine_blocks=config.fine_blocks)
            self.encoder = STFTEncoder(**frame)
            self.decoder = ISTFTDecoder(**frame)
        else:
            raise ValueError(f"unknown codec architecture {config.architecture!r}; choose 'seanet' or 'istft'")
        self.quantizer = ResidualVectorQuantizer(
            config.dimension, n_q=config.n_q, codebook_size=config.codebook_size, decay=config.ema_decay,
            kmeans_iters=config.kmeans_iters, dead_code_threshold=config.dead_code_threshold,
            quantizer_dropout=config.quantizer_dropout)
        self._num_codebooks = config.n_q
        self.source: str | None = None

    # --- contract -------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def total_codebooks(self) -> int:
        return self.config.n_q

    @property
    def num_codebooks(self) -> int:
        return self._num_codebooks

    def set_num_codebooks(self, n: int) -> None:
        if not 1 <= n <= self.config.n_q:
            raise ValueError(f"num_codebooks must be in [1, {self.config.n_q}], got {n}")
        self._num_codebooks = n

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def _pad(self, audio: torch.Tensor) -> torch.Tensor:
        """Right-pad [B, C, S] with zeros to a multiple of the hop (so frames = ceil(S / hop))."""
        extra = (-audio.shape[-1]) % self.hop_length
        return F.pad(audio, (0, extra)) if extra else audio

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        self._check_audio(audio)
        z = self.encoder(self._pad(audio.float()))  # [B, D, T]
        return self.quantizer.encode(z, n_q=self._num_codebooks)  # [B, K, T]

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        self._check_codes(codes)
        z = self.quantizer.decode(codes.long())  # [B, D, T]
        return self.decoder(z)  # [B, C, T * hop]

    def forward(self, audio: torch.Tensor, n_q: int | None = None) -> CodecOutput:
        """Training pass: encode, quantize (with EMA updates and dropout in train mode), decode."""
        self._check_audio(audio)
        length = audio.shape[-1]
        z = self.encoder(self._pad(audio))  # [B, D, T]
        q = self.quantizer(z, n_q=n_q)
        y = self.decoder(q.quantized)[..., :length]  # [B, C, S]
        return CodecOutput(audio=y, codes=q.codes, commit_loss=q.commit_loss, perplexity=q.perplexity,
                           n_q=q.n_q, latents=z)

    def describe(self) -> dict:
        return {"backend": "soundlm", "source": self.source, "sample_rate": self.sample_rate,
                "channels": self.channels, "frame_rate": self.frame_rate, "num_codebooks": self.num_codebooks,
                "total_codebooks": self.total_codebooks, "codebook_size": self.codebook_size,
                "bitrate": self.bitrate, "config": self.config.to_dict()}

    # --- save / load ------------------------------------------------------------------------
    def config_dict(self) -> dict:
        return {"type": CONFIG_TYPE, "version": CONFIG_VERSION, **self.config.to_dict()}

    def save_pretrained(self, folder: str | Path) -> None:
        """Write config.json and model.safetensors (each atomically) into `folder`."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(folder / "model.safetensors", suffix=".safetensors") as tmp:
            save_file(state, str(tmp), metadata={"format": "pt"})
        write_json_atomic(folder / "config.json", self.config_dict())

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device | None = None) -> SoundStreamCodec:
        from safetensors.torch import load_file

        folder = Path(folder)
        config_path, weights_path = folder / "config.json", folder / "model.safetensors"
        if not config_path.exists() or not weights_path.exists():
            raise FileNotFoundError(f"{folder}: expected config.json and model.safetensors "
                                    "(pass a folder written by save_pretrained or `soundlm train codec`)")
        raw = read_json(config_path)
        if raw.get("type") != CONFIG_TYPE:
            raise ValueError(f"{config_path}: type is {raw.get('type')!r}, expected {CONFIG_TYPE!r}")
        model = cls(CodecConfig.from_dict(raw))
        state = load_file(str(weights_path))
        # Inference exports leave out the quantizers' EMA sums (`embed_avg`, read only by
        # training updates); a model loaded from one restarts them from its codebooks.
        for name, value in model.state_dict().items():
            if name.endswith(".embed_avg") and name not in state:
                state[name] = state[name.removesuffix("_avg")].clone()
        model.load_state_dict(state)
        model.source = str(folder)
        model.eval()
        return model.to(device) if device is not None else model
