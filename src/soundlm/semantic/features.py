"""Frame-level features that semantic tokens are clustered from.

Two families behind one contract (`FeatureExtractor`):
- `HFSSLFeatures`: hidden states of a self-supervised speech model from Hugging Face
  (HuBERT, wav2vec 2.0, WavLM, w2v-BERT 2.0) at a chosen transformer layer, as in AudioLM
  (w2v-BERT) and GSLM / HuBERT units.
- `MelFeatures` / `MFCCFeatures`: deterministic spectral features computed in torch with no
  weights to download; MFCC + deltas is what HuBERT clusters in its first iteration.

Every extractor maps audio [B, 1, S] at `sample_rate` to features [B, T, D] at
`frame_rate` Hz; `num_frames(S)` gives T exactly (the formula is in each class docstring).
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from pathlib import Path

import torch
from torch import nn

from soundlm.devices import default_device


class FeatureExtractor(nn.Module, ABC):
    """Audio [B, 1, S] -> frame features [B, T, D]."""

    @property
    @abstractmethod
    def sample_rate(self) -> int:
        """Sample rate the input audio must have."""

    @property
    @abstractmethod
    def hop_length(self) -> int:
        """Input samples per output frame."""

    @property
    @abstractmethod
    def dim(self) -> int:
        """Feature dimension D."""

    @property
    @abstractmethod
    def min_samples(self) -> int:
        """Shortest input (in samples) that yields at least one frame."""

    @abstractmethod
    def num_frames(self, num_samples: int) -> int:
        """Frames T produced for an input of `num_samples` samples (0 if too short)."""

    @abstractmethod
    def describe(self) -> dict:
        """JSON-able config; `features_from_config(describe())` rebuilds the extractor."""

    @abstractmethod
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, 1, S] float -> [B, T, D] float32."""

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def device(self) -> torch.device:
        t = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if t is None else t.device

    def _check_audio(self, audio: torch.Tensor) -> torch.Tensor:
        """Validate [B, 1, S] input and return it as float32 [B, S] on the extractor's device."""
        if not isinstance(audio, torch.Tensor):
            raise ValueError(f"audio must be a torch.Tensor shaped [B, 1, S], got {type(audio).__name__} "
                             "(convert numpy with torch.from_numpy(x)[None])")
        if audio.dim() != 3 or audio.shape[1] != 1:
            raise ValueError(f"audio must be mono [B, 1, S], got shape {tuple(audio.shape)} "
                             "(mix down to one channel and add the batch axis)")
        if audio.shape[-1] < self.min_samples:
            raise ValueError(f"audio has {audio.shape[-1]} samples; {type(self).__name__} needs at least "
                             f"{self.min_samples} ({self.min_samples / self.sample_rate * 1000:.0f} ms at "
                             f"{self.sample_rate} Hz); pad or drop the clip")
        return audio[:, 0].to(self.device, torch.float32)  # [B, S]


# ---------------------------------------------------------------------------------------
# Built-in spectral features


def _hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    # HTK / Kaldi mel scale.
    return 1127.0 * torch.log1p(torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, f_min: float = 20.0,
                   f_max: float | None = None) -> torch.Tensor:
    """Triangular mel filters [n_fft // 2 + 1, n_mels], Kaldi style (triangles in mel space)."""
    f_max = sample_rate / 2 if f_max is None else f_max
    mel_edges = torch.linspace(float(_hz_to_mel(f_min)), float(_hz_to_mel(f_max)), n_mels + 2,
                               dtype=torch.float64)
    bin_mels = _hz_to_mel(torch.arange(n_fft // 2 + 1, dtype=torch.float64) * sample_rate / n_fft)
    left, center, right = mel_edges[:-2], mel_edges[1:-1], mel_edges[2:]  # [n_mels]
    up = (bin_mels[:, None] - left) / (center - left)
    down = (right - bin_mels[:, None]) / (right - center)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()  # [F, n_mels]


def dct_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """Orthonormal DCT-II as a [n_in, n_out] matrix (x @ M gives the first n_out coefficients)."""
    n = torch.arange(n_in, dtype=torch.float64)
    k = torch.arange(n_out, dtype=torch.float64)
    m = torch.cos(math.pi / n_in * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2.0 / n_in)
    m[:, 0] /= math.sqrt(2.0)
    return m.float()


def compute_deltas(x: torch.Tensor, window: int = 2) -> torch.Tensor:
    """Regression deltas along time of [B, T, D] (Kaldi/HTK formula, edge frames repeated)."""
    if x.shape[1] == 0:
        return x
    padded = torch.cat([x[:, :1].expand(-1, window, -1), x, x[:, -1:].expand(-1, window, -1)], dim=1)
    t = x.shape[1]
    num = sum(n * (padded[:, window + n: window + n + t] - padded[:, window - n: window - n + t])
              for n in range(1, window + 1))
    return num / (2 * sum(n * n for n in range(1, window + 1)))


class _FramedFeatures(FeatureExtractor):
    """Shared framing for the built-in features.

    Frames are `win_length` samples every `hop_length` samples, with (win - hop) / 2 zeros
    on each side so that frame t is centred on samples [t * hop, (t + 1) * hop). Hence
    T = floor(S / hop_length): 50 Hz at the defaults, like HuBERT.
    """

    def __init__(self, sample_rate: int, hop_length: int, win_length: int, n_fft: int, preemphasis: float):
        super().__init__()
        if win_length < hop_length or (win_length - hop_length) % 2:
            raise ValueError(f"win_length ({win_length}) must be >= hop_length ({hop_length}) and differ from it "
                             "by an even number of samples")
        if n_fft < win_length:
            raise ValueError(f"n_fft ({n_fft}) must be >= win_length ({win_length})")
        self._sample_rate = sample_rate
        self._hop = hop_length
        self.win_length = win_length
        self.n_fft = n_fft
        self.preemphasis = preemphasis
        self.register_buffer("window", torch.hamming_window(win_length, periodic=False), persistent=False)

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def hop_length(self) -> int:
        return self._hop

    @property
    def min_samples(self) -> int:
        return self._hop

    def num_frames(self, num_samples: int) -> int:
        return num_samples // self._hop

    def power_spectrum(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, 1, S] -> |STFT|^2 of the centred frames [B, T, n_fft // 2 + 1]."""
        x = self._check_audio(audio)  # [B, S]
        pad = (self.win_length - self._hop) // 2
        x = nn.functional.pad(x, (pad, pad))
        frames = x.unfold(-1, self.win_length, self._hop)  # [B, T, win]
        # Kaldi's per-frame DC removal and pre-emphasis keep low-frequency hum and level
        # offsets from dominating the first cepstra.
        frames = frames - frames.mean(dim=-1, keepdim=True)
        frames = torch.cat([frames[..., :1] * (1 - self.preemphasis),
                            frames[..., 1:] - self.preemphasis * frames[..., :-1]], dim=-1)
        return torch.fft.rfft(frames * self.window, n=self.n_fft).abs().pow(2)  # [B, T, F]

    def _base_config(self) -> dict:
        return {"sample_rate": self._sample_rate, "hop_length": self._hop, "win_length": self.win_length,
                "n_fft": self.n_fft, "preemphasis": self.preemphasis}


class _SpectralFeatures(_FramedFeatures):
    """Framed features over a mel filterbank."""

    def __init__(self, sample_rate: int, hop_length: int, win_length: int, n_fft: int, n_mels: int,
                 preemphasis: float):
        super().__init__(sample_rate, hop_length, win_length, n_fft, preemphasis)
        self.n_mels = n_mels
        self.register_buffer("mel_fb", mel_filterbank(n_mels, n_fft, sample_rate), persistent=False)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, 1, S] -> log mel energies [B, T, n_mels]."""
        # Floor before the log so digital silence maps to a finite value.
        return torch.log(torch.clamp(self.power_spectrum(audio) @ self.mel_fb, min=1e-10))  # [B, T, n_mels]

    def _base_config(self) -> dict:
        return {**super()._base_config(), "n_mels": self.n_mels}


class MelFeatures(_SpectralFeatures):
    """Log-mel filterbank energies, D = n_mels (80).

    16 kHz input, 25 ms Hamming windows every 20 ms: T = floor(S / 320) frames at 50 Hz.
    """

    def __init__(self, sample_rate: int = 16_000, hop_length: int = 320, win_length: int = 400,
                 n_fft: int = 512, n_mels: int = 80, preemphasis: float = 0.97):
        super().__init__(sample_rate, hop_length, win_length, n_fft, n_mels, preemphasis)

    @property
    def dim(self) -> int:
        return self.n_mels

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.log_mel(audio)

    def describe(self) -> dict:
        return {"kind": "mel", **self._base_config()}


class MFCCFeatures(_SpectralFeatures):
    """MFCCs with first and second deltas, HuBERT's first-iteration clustering target.

    Kaldi defaults (23 mel bins, 13 cepstra, lifter 22) plus deltas and delta-deltas gives
    D = 39. 16 kHz input, 25 ms windows every 20 ms: T = floor(S / 320) frames at 50 Hz
    (HuBERT used 10 ms hops; 20 ms matches the 50 Hz of its later iterations).
    """

    def __init__(self, sample_rate: int = 16_000, hop_length: int = 320, win_length: int = 400,
                 n_fft: int = 512, n_mels: int = 23, n_mfcc: int = 13, lifter: float = 22.0,
                 deltas: bool = True, preemphasis: float = 0.97):
        super().__init__(sample_rate, hop_length, win_length, n_fft, n_mels, preemphasis)
        if not 0 < n_mfcc <= n_mels:
            raise ValueError(f"n_mfcc must be in [1, n_mels={n_mels}], got {n_mfcc}")
        self.n_mfcc = n_mfcc
        self.lifter = lifter
        self.deltas = deltas
        k = torch.arange(n_mfcc, dtype=torch.float32)
        lift = 1 + lifter / 2 * torch.sin(math.pi * k / lifter) if lifter > 0 else torch.ones(n_mfcc)
        self.register_buffer("dct", dct_matrix(n_mels, n_mfcc) * lift, persistent=False)  # [n_mels, n_mfcc]

    @property
    def dim(self) -> int:
        return self.n_mfcc * (3 if self.deltas else 1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mfcc = self.log_mel(audio) @ self.dct  # [B, T, n_mfcc]
        if not self.deltas:
            return mfcc
        d1 = compute_deltas(mfcc)
        return torch.cat([mfcc, d1, compute_deltas(d1)], dim=-1)  # [B, T, 3 * n_mfcc]

    def describe(self) -> dict:
        return {"kind": "mfcc", **self._base_config(), "n_mfcc": self.n_mfcc, "lifter": self.lifter,
                "deltas": self.deltas}


# ---------------------------------------------------------------------------------------
# Hugging Face self-supervised models

# config.model_type -> model class name in transformers.
HF_MODEL_CLASSES = {
    "hubert": "HubertModel",
    "wav2vec2": "Wav2Vec2Model",
    "wavlm": "WavLMModel",
    "wav2vec2-bert": "Wav2Vec2BertModel",
}


def _resolve_model_source(model: str | Path) -> str:
    """Local folders become absolute paths (so a saved tokenizer works from any cwd); hub ids stay."""
    p = Path(model).expanduser()
    return str(p.resolve()) if p.is_dir() else str(model)


class HFSSLFeatures(FeatureExtractor):
    """Hidden states of layer `layer` of a Hugging Face SSL speech model.

    `layer` counts like `output_hidden_states`: 0 is the transformer input, n the output of
    the n-th transformer layer. Layers above `layer` are dropped at load time (they would
    not change the result and cost most of the compute).

    Frame counts at 16 kHz: HuBERT / wav2vec 2.0 / WavLM (conv front end, 400-sample
    receptive field, stride 320): T = floor((S - 400) / 320) + 1. w2v-BERT 2.0 (80-bin
    fbank every 160 samples, 400-sample windows, pairs of frames stacked, an odd last
    frame padded): T = ceil((floor((S - 400) / 160) + 1) / 2). Both are 50 Hz.
    """

    def __init__(self, model_id_or_folder: str | Path, layer: int, device: str | torch.device | None = None):
        super().__init__()
        import transformers

        self.source = _resolve_model_source(model_id_or_folder)
        try:
            config = transformers.AutoConfig.from_pretrained(self.source)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"{model_id_or_folder}: cannot load a Hugging Face config ({e}); pass a hub id "
                                    "or a folder written by save_pretrained") from e
        self.model_type = config.model_type
        if self.model_type not in HF_MODEL_CLASSES:
            raise ValueError(f"{model_id_or_folder}: model_type {self.model_type!r} is not a supported SSL speech "
                             f"model; use one of {sorted(HF_MODEL_CLASSES)}")
        num_layers = config.num_hidden_layers
        if not 0 <= layer <= num_layers:
            raise ValueError(f"{model_id_or_folder}: layer must be in [0, {num_layers}] for this "
                             f"{num_layers}-layer model, got {layer}")
        self.layer = layer
        cls = getattr(transformers, HF_MODEL_CLASSES[self.model_type])
        model = cls.from_pretrained(self.source, config=config)
        # Keep one layer for layer 0 (the encoder needs one to report its input). Pre-LN
        # encoders of older transformers versions put a final LayerNorm on the last hidden
        # state, so there the next layer must stay for hidden_states[layer] to be unchanged.
        keep = max(layer, 1)
        if getattr(config, "do_stable_layer_norm", False):
            keep = min(layer + 1, num_layers)
        model.encoder.layers = model.encoder.layers[:keep]
        self.model = model.eval()
        self._dim = config.hidden_size
        self._load_input_processing(config)
        self.to(default_device(device))

    def _load_input_processing(self, config) -> None:
        """Read the model's feature extractor settings; folders saved without one get defaults."""
        import transformers

        try:
            fe = transformers.AutoFeatureExtractor.from_pretrained(self.source)
        except (OSError, ValueError):
            fe = None
        if self.model_type == "wav2vec2-bert":
            if not isinstance(fe, transformers.SeamlessM4TFeatureExtractor):
                # w2v-BERT 2.0's own preprocessor settings are the class defaults.
                fe = transformers.SeamlessM4TFeatureExtractor()
            self.fbank = fe
            self._sample_rate = int(fe.sampling_rate)
            self._hop = 160 * int(fe.stride)
            self.do_normalize = True
            return
        self.fbank = None
        self._sample_rate = int(getattr(fe, "sampling_rate", 16_000))
        # Models with LayerNorm in the conv front end were pre-trained on zero-mean,
        # unit-variance waveforms (HF's rule when no preprocessor config says otherwise).
        self.do_normalize = bool(getattr(fe, "do_normalize", config.feat_extract_norm == "layer"))
        self._hop = math.prod(config.conv_stride)
        self._conv = list(zip(config.conv_kernel, config.conv_stride))

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    @property
    def hop_length(self) -> int:
        return self._hop

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def min_samples(self) -> int:
        if self.fbank is not None:
            # Two fbank frames: the per-utterance mel normalisation (ddof=1) is NaN for one.
            return 400 + 160
        n = 1
        for kernel, stride in reversed(self._conv):
            n = (n - 1) * stride + kernel
        return n

    def num_frames(self, num_samples: int) -> int:
        if self.fbank is not None:
            if num_samples < 400:
                return 0
            stride = int(self.fbank.stride)
            return ((num_samples - 400) // 160 + stride) // stride
        t = num_samples
        for kernel, stride in self._conv:
            if t < kernel:
                return 0
            t = (t - kernel) // stride + 1
        return t

    @torch.inference_mode()
    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self._check_audio(audio)  # [B, S]
        if self.fbank is not None:
            # The fbank front end is numpy code in transformers; it also scales to int16
            # range and normalises each mel bin per utterance, as at pre-training.
            inputs = self.fbank(list(x.cpu().numpy()), sampling_rate=self._sample_rate, return_tensors="pt")
            out = self.model(input_features=inputs["input_features"].to(self.device), output_hidden_states=True)
        else:
            if self.do_normalize:
                x = (x - x.mean(dim=-1, keepdim=True)) / torch.sqrt(x.var(dim=-1, unbiased=False, keepdim=True) + 1e-7)
            out = self.model(input_values=x, output_hidden_states=True)
        return out.hidden_states[self.layer].float()  # [B, T, D]

    def describe(self) -> dict:
        return {"kind": "hf", "model": self.source, "layer": self.layer, "model_type": self.model_type,
                "sample_rate": self._sample_rate, "hop_length": self._hop, "dim": self._dim}


FEATURE_KINDS = ("mfcc", "mel", "chroma", "cqt", "hf", "phonetic")


def build_features(kind: str, model: str | Path | None = None, layer: int | None = None,
                   device: str | torch.device | None = None) -> FeatureExtractor:
    """The extractor a user names on the command line: "mfcc", "mel", "chroma", "cqt", "hf" (+ model, layer) or
    "phonetic" (+ model)."""
    from soundlm.semantic.pitch import ChromaFeatures, CQTFeatures

    if kind == "mfcc":
        fx: FeatureExtractor = MFCCFeatures()
    elif kind == "mel":
        fx = MelFeatures()
    elif kind == "chroma":
        fx = ChromaFeatures()
    elif kind == "cqt":
        fx = CQTFeatures()
    elif kind == "hf":
        if model is None or layer is None:
            raise ValueError("features 'hf' needs a model (hub id or folder) and a layer, e.g. "
                             "--model facebook/hubert-base-ls960 --layer 6")
        return HFSSLFeatures(model, layer, device=device)
    elif kind == "phonetic":
        from soundlm.semantic.phonetic import PhoneticFeatures

        if model is None:
            raise ValueError("features 'phonetic' needs --model: a folder written by `soundlm train phonetic`")
        return PhoneticFeatures.load(model, device=device)
    else:
        raise ValueError(f"unknown features {kind!r}; use one of {', '.join(FEATURE_KINDS)}")
    return fx.to(default_device(device))


def features_from_config(config: dict, device: str | torch.device | None = None,
                         folder: str | Path | None = None) -> FeatureExtractor:
    """Rebuild an extractor from its `describe()` output (`folder` holds trained weights, if any)."""
    cfg = dict(config)
    kind = cfg.pop("kind", None)
    if kind == "hf":
        return HFSSLFeatures(cfg["model"], int(cfg["layer"]), device=device)
    if kind == "phonetic":
        from soundlm.semantic.phonetic import phonetic_from_config

        return phonetic_from_config(cfg, folder, device=device)
    from soundlm.semantic.pitch import ChromaFeatures, CQTFeatures

    classes = {"mfcc": MFCCFeatures, "mel": MelFeatures, "chroma": ChromaFeatures, "cqt": CQTFeatures}
    if kind not in classes:
        raise ValueError(f"feature config has kind {kind!r}; expected one of {', '.join(FEATURE_KINDS)}")
    fx = classes[kind](**cfg)
    return fx.to(default_device(device))
