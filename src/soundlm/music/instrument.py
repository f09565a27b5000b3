"""Which instrument plays a clip: a small dilated 1-D conv net over log-mel frames.

Trained on a music corpus's training split (`soundlm train instrument`, `train/instrument.py`);
used to check that generated music sounds like the instrument its caption asked for, and by
`soundlm eval analysers`. The clip's mean log-mel level is removed first, so loudness (the
corpus renders every instrument quiet, medium and loud) does not decide the answer.

A model folder: `config.json` (`{"type": "instrument_classifier", "config": InstrumentConfig}`)
and `model.safetensors`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from soundlm.fileio import atomic_dir, read_json, write_json_atomic
from soundlm.semantic.features import MelFeatures

MODEL_TYPE = "instrument_classifier"


@dataclass
class InstrumentConfig:
    classes: list[str] = field(default_factory=list)
    sample_rate: int = 16_000
    n_mels: int = 64
    hop_length: int = 320  # 50 frames per second
    win_length: int = 1024
    channels: int = 96

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> InstrumentConfig:
        return cls(**obj)


@dataclass
class InstrumentPrediction:
    label: str
    probs: dict[str, float]


class InstrumentClassifier(nn.Module):
    """Audio [B, 1, S] at `sample_rate` -> logits [B, num_classes]."""

    def __init__(self, config: InstrumentConfig):
        super().__init__()
        if len(config.classes) < 2:
            raise ValueError(f"an instrument classifier needs >= 2 classes, got {config.classes}")
        self.config = config
        self.features = MelFeatures(config.sample_rate, config.hop_length, config.win_length, config.win_length,
                                    config.n_mels, preemphasis=0.0)
        c = config.channels
        layers: list[nn.Module] = []
        for i, dilation in enumerate((1, 2, 4, 8)):
            layers += [nn.Conv1d(config.n_mels if i == 0 else c, c, 5, padding=2 * dilation, dilation=dilation),
                       nn.BatchNorm1d(c), nn.GELU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(2 * c, len(config.classes))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        mel = self.features(audio)  # [B, T, n_mels]
        mel = mel - mel.mean(dim=(1, 2), keepdim=True)  # level-free: loudness is not the instrument
        h = self.body(mel.transpose(1, 2))  # [B, C, T]
        return self.head(torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=-1))  # [B, num_classes]

    @torch.inference_mode()
    def predict(self, audio: np.ndarray, sample_rate: int) -> InstrumentPrediction:
        """The instrument of one clip ([S] or [C, S] at `sample_rate`), from the whole clip."""
        from soundlm.audio import resample

        x = np.asarray(audio, dtype=np.float32)
        x = x[None] if x.ndim == 1 else x.mean(axis=0, keepdims=True)  # [1, S]
        if sample_rate != self.config.sample_rate:
            x = resample(x, sample_rate, self.config.sample_rate)
        if x.shape[1] < self.config.win_length:
            seconds = self.config.win_length / self.config.sample_rate
            raise ValueError(f"clip of {x.shape[1]} samples is shorter than one analysis window "
                             f"({self.config.win_length}); pass at least {seconds:.2f} s")
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            probs = self(torch.from_numpy(x)[None].to(device)).softmax(-1)[0].cpu().numpy()
        finally:
            self.train(was_training)
        return InstrumentPrediction(self.config.classes[int(probs.argmax())],
                                    {c: float(p) for c, p in zip(self.config.classes, probs)})

    def write_files(self, folder: Path) -> None:
        """config.json + model.safetensors into `folder` (a checkpoint or export being written)."""
        from safetensors.torch import save_file

        write_json_atomic(folder / "config.json", {"type": MODEL_TYPE, "config": self.config.to_json()})
        save_file({k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()},
                  str(folder / "model.safetensors"))

    def save(self, folder: str | Path) -> Path:
        with atomic_dir(folder) as tmp:
            self.write_files(tmp)
        return Path(folder)


def load_instrument_classifier(folder: str | Path, device: str | torch.device = "cpu") -> InstrumentClassifier:
    """A classifier from its folder (`soundlm train instrument`'s RUN/final, or a checkpoint)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    if (folder / "final" / "config.json").is_file():
        folder = folder / "final"
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder}: no config.json; pass the folder `soundlm train instrument --out RUN` "
                                "wrote (RUN or RUN/final)")
    meta = read_json(config_path)
    if meta.get("type") != MODEL_TYPE:
        raise ValueError(f"{config_path}: type {meta.get('type')!r} is not an instrument classifier "
                         f"({MODEL_TYPE!r}); pass a folder from `soundlm train instrument`")
    model = InstrumentClassifier(InstrumentConfig.from_json(meta["config"]))
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    return model.to(device).eval()
