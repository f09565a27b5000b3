"""`soundlm train instrument`: the instrument classifier of `music/instrument.py` on a music corpus.

Learns from the training split of a corpus written by `soundlm data music` (its rows' `music.instrument`),
on random crops of `crop_seconds`; the held-out split is for `soundlm eval analysers`. Runs on
`train/loop.run_training`, so a stopped run resumes exactly (a step's batch is a function of seed and step).

    RUN/train_config.json   the run's settings (checked on resume)
    RUN/checkpoints/...     step checkpoints
    RUN/final/              config.json + model.safetensors
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from soundlm.checkpoint import check_resume_settings
from soundlm.distributed import require_single_process
from soundlm.fileio import atomic_dir
from soundlm.music.instrument import InstrumentClassifier, InstrumentConfig
from soundlm.train.loop import OneModelTrainer, run_training
from soundlm.train.metrics_log import MetricsLog

log = logging.getLogger(__name__)
_RESUME_MUST_MATCH = ("data", "steps", "batch_size", "lr", "crop_seconds", "channels", "n_mels", "seed")


@dataclass
class InstrumentTrainConfig:
    data: str = ""
    out: str = ""
    steps: int = 600
    batch_size: int = 32
    lr: float = 2e-3
    crop_seconds: float = 3.0
    channels: int = InstrumentConfig.channels
    n_mels: int = InstrumentConfig.n_mels
    seed: int = 0
    ckpt_every: int = 200
    log_every: int = 20
    stop_at: int | None = None
    device: str | None = None
    progress: bool = True

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"--steps and --batch-size must be >= 1, got {self.steps} and {self.batch_size}")
        if self.crop_seconds <= 0:
            raise ValueError(f"--crop-seconds must be positive, got {self.crop_seconds}")


class _InstrumentTrainer(OneModelTrainer):
    """Cross-entropy on random crops; the clips and crop starts of a step are a function of (seed, step)."""

    def __init__(self, model: InstrumentClassifier, clips: list[np.ndarray], labels: list[int],
                 cfg: InstrumentTrainConfig, device: torch.device):
        super().__init__(model, lr=cfg.lr, weight_decay=1e-2, steps=cfg.steps, warmup=max(cfg.steps // 20, 1))
        self.clips, self.labels, self.cfg, self.device = clips, labels, cfg, device
        self.crop = int(cfg.crop_seconds * model.config.sample_rate)

    def train_step(self, step: int) -> tuple[float, float]:
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        pick = torch.randint(0, len(self.clips), (self.cfg.batch_size,), generator=g).tolist()
        batch = []
        for i in pick:
            clip = self.clips[i]
            start = int(torch.randint(0, max(1, clip.size - self.crop + 1), (1,), generator=g))
            batch.append(np.pad(clip[start:start + self.crop], (0, max(0, self.crop - clip.size))))
        x = torch.from_numpy(np.stack(batch)).float()[:, None].to(self.device)  # [B, 1, S]
        y = torch.tensor([self.labels[i] for i in pick], device=self.device)
        logits = self.model(x)  # [B, num_classes]
        loss = nn.functional.cross_entropy(logits, y)
        self.update(loss)
        return loss.item(), (logits.argmax(-1) == y).float().mean().item()

    def report(self, done: int, out: tuple[float, float], metrics: MetricsLog, last: bool) -> dict[str, str] | None:
        if done % self.cfg.log_every == 0 or last:
            loss, acc = out
            metrics.log(done, {"loss": loss, "train_accuracy": acc, "lr": self.lr()})
            return {"loss": f"{loss:.3f}", "acc": f"{acc:.2f}"}
        return None


def train_instrument(cfg: InstrumentTrainConfig) -> Path | None:
    """Train (or resume) the classifier; returns RUN/final, or None when `stop_at` ended the run early."""
    from soundlm.audio import load_audio
    from soundlm.data.music import read_music_corpus
    from soundlm.devices import default_device

    cfg.validate()
    require_single_process("train instrument")
    clips = read_music_corpus(cfg.data, split="train")
    classes = sorted({c.music.instrument for c in clips})
    if len(classes) < 2:
        raise ValueError(f"{cfg.data}: the training split has {len(classes)} instrument(s); a classifier needs >= 2")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    check_resume_settings(out, {**asdict(cfg), "classes": classes}, (*_RESUME_MUST_MATCH, "classes"))
    config = InstrumentConfig(classes=classes, n_mels=cfg.n_mels, channels=cfg.channels)
    torch.manual_seed(cfg.seed)
    device = default_device(cfg.device)
    model = InstrumentClassifier(config).to(device)
    audio = [load_audio(c.item.path, sample_rate=config.sample_rate, mono=True)[0] for c in clips]  # [S] each
    labels = [classes.index(c.music.instrument) for c in clips]
    log.info("instrument classifier: %d training clips, classes %s", len(audio), classes)
    trainer = _InstrumentTrainer(model, audio, labels, cfg, device)
    run_training(trainer, out, cfg.steps, cfg.ckpt_every, stop_at=cfg.stop_at, progress=cfg.progress,
                 desc="instrument")
    if cfg.stop_at is not None and cfg.stop_at < cfg.steps:
        return None
    final = out / "final"
    model.eval()
    with atomic_dir(final) as tmp:
        model.write_files(tmp)
    return final
