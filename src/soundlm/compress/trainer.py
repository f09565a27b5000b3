"""`soundlm train compressor`: fit the sample model of lossless mode on a corpus.

A run folder holds:

    RUN/train_config.json        the arguments of the run (checked on resume)
    RUN/errors.jsonl             `{"path", "reason"}` per skipped file
    RUN/checkpoints/step_*/      train_state.pt: float weights, optimizer, scheduler, RNG
    RUN/metrics.jsonl            one JSON line per logged step (training bits per sample)
    RUN/final/                   the integer model (`SampleModel.load(RUN/final)`) and its held-out rates

The training examples are what the encoder itself computes: block LPC predictions and
residuals of every segment (`lossless.analyse`), the integer features of `sample_model`.
The loss is the discretised logistic's code length in bits per sample. Batches are a
pure function of (seed, step) and checkpoints restore weights, optimizer and scheduler,
so a killed run resumes where its last checkpoint left it, to the same weights (the
shared loop, `soundlm.train.loop`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from soundlm.checkpoint import check_resume_settings
from soundlm.compress.lossless import DEFAULT_SEGMENT, analyse, encode_pcm, read_pcm, residual_history
from soundlm.compress.sample_model import A_FRAC, SampleModel, SampleModelConfig, features
from soundlm.distributed import require_single_process
from soundlm.fileio import write_text_atomic
from soundlm.train.loop import OneModelTrainer, run_training
from soundlm.train.metrics_log import MetricsLog

log = logging.getLogger(__name__)

_RESUME_MUST_MATCH = ("data", "bits", "history", "hidden", "layers", "steps", "batch_size", "lr", "seed",
                      "max_train_samples")


@dataclass
class CompressorTrainConfig:
    """Arguments of `soundlm train compressor` (see the CLI help for each)."""

    data: str  # corpus manifest.jsonl (or its folder), or a folder of wav/flac files
    out: str
    bits: int = 16
    history: int = 16
    hidden: int = 64
    layers: int = 2
    steps: int = 3000
    batch_size: int = 4096  # samples per step
    lr: float = 5e-3
    seed: int = 0
    max_train_samples: int = 2_000_000  # positions drawn once (seeded) from the training files
    eval_files: int = 20  # held-out files whose real compressed size is measured at the end
    ckpt_every: int = 500
    log_every: int = 50
    stop_at: int | None = None
    progress: bool = True

    def validate(self) -> None:
        for name in ("steps", "batch_size", "max_train_samples", "ckpt_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        self.model_config()  # checks bits, history, hidden, layers

    def model_config(self) -> SampleModelConfig:
        return SampleModelConfig(bits=self.bits, history=self.history, hidden=self.hidden, layers=self.layers)


@dataclass
class CompressorTrainResult:
    out_dir: Path
    final_dir: Path | None
    train_files: int
    skipped: list[dict] = field(default_factory=list)
    losses: dict[int, float] = field(default_factory=dict)  # step -> bits per sample of that step's batch
    metrics: dict = field(default_factory=dict)  # held-out rates of the final model


class FloatSampleNet(nn.Module):
    """The float twin of `SampleModel`'s MLP: inputs [N, H+1] (integers / 2**A_FRAC) -> [N, 2]."""

    def __init__(self, config: SampleModelConfig):
        super().__init__()
        dims = [config.input_size] + [config.hidden] * config.layers
        mods: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.ReLU()]
        mods.append(nn.Linear(dims[-1], 2))
        self.net = nn.Sequential(*mods)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def layers(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(m.weight.detach().double().numpy(), m.bias.detach().double().numpy())
                for m in self.net if isinstance(m, nn.Linear)]


@dataclass
class Examples:
    """Training positions: integer features as floats, residual level, log2 level, target residual."""

    inputs: torch.Tensor  # [N, H+1]
    level: torch.Tensor  # [N] v (mean |residual| + 1)
    log_level: torch.Tensor  # [N] log2 v as the integer model computes it
    target: torch.Tensor  # [N] x - LPC prediction


def code_length_bits(out: torch.Tensor, ex: Examples, idx: torch.Tensor | slice) -> torch.Tensor:
    """Bits of each target under the discretised logistic the net's outputs [N, 2] give."""
    v = ex.level[idx]
    mean = out[:, 0] * v
    scale = torch.exp2(out[:, 1] + ex.log_level[idx]).clamp_min(1e-3)
    e = ex.target[idx]
    upper = torch.sigmoid((e + 0.5 - mean) / scale)
    lower = torch.sigmoid((e - 0.5 - mean) / scale)
    return -torch.log2((upper - lower).clamp_min(1e-12))


def file_examples(model_config: SampleModelConfig, pcm: np.ndarray) -> list[np.ndarray]:
    """Integer features, v, log2 v and targets of every sample of a PCM file [C, S] (as the encoder sees them)."""
    parts: list[list[np.ndarray]] = [[], [], [], []]
    for ch in pcm:
        for s in range(0, len(ch), DEFAULT_SEGMENT):
            x = ch[s: s + DEFAULT_SEGMENT].astype(np.int64)
            _, pred = analyse(model_config, x)
            e = x - pred
            inputs, v, lvl = features(residual_history(e, model_config.history), model_config.bits)
            for part, a in zip(parts, (inputs, v, lvl, e)):
                part.append(a)
    return [np.concatenate(p) for p in parts]


def _corpus(data: str) -> tuple[list[Path], list[Path]]:
    """(training files, held-out files): a manifest's splits, or every audio file of a folder for training."""
    from soundlm.data import open_corpus

    items = open_corpus(data)
    return [x.path for x in items if x.in_split("train")], [x.path for x in items if x.in_split("heldout")]


def _read(path: Path, bits: int) -> np.ndarray:
    """Integer PCM of a file at `bits`; 8-bit training reads 16-bit files and keeps their top byte."""
    if bits == 16:
        return read_pcm(path, 16).pcm
    try:
        return read_pcm(path, 8).pcm
    except ValueError:
        return read_pcm(path, 16).pcm >> 8


def _load_examples(paths: list[Path], cfg: CompressorTrainConfig, errors: list[dict]) -> tuple[Examples, int]:
    from tqdm.auto import tqdm

    from soundlm.audio import AudioError

    parts: list[list[np.ndarray]] = [[], [], [], []]
    used = 0
    for path in tqdm(paths, desc="features", unit="file", disable=not cfg.progress):
        try:
            pcm = _read(path, cfg.bits)
        except (AudioError, ValueError) as e:
            log.warning("skipping %s", e)
            errors.append({"path": str(path), "reason": str(e)})
            continue
        used += 1
        for part, a in zip(parts, file_examples(cfg.model_config(), pcm)):
            part.append(a)
    if not used:
        raise ValueError(f"{cfg.data}: no usable {cfg.bits}-bit PCM training files (see errors.jsonl)")
    inputs, v, lvl, e = (np.concatenate(p) for p in parts)
    if len(e) > cfg.max_train_samples:
        keep = np.sort(np.random.default_rng(cfg.seed).choice(len(e), cfg.max_train_samples, replace=False))
        inputs, v, lvl, e = inputs[keep], v[keep], lvl[keep], e[keep]
    scale = float(1 << A_FRAC)
    ex = Examples(inputs=torch.from_numpy(inputs / scale).float(), level=torch.from_numpy(v).float(),
                  log_level=torch.from_numpy(lvl / scale).float(), target=torch.from_numpy(e).float())
    return ex, used


def heldout_rates(model: SampleModel, paths: list[Path], bits: int) -> dict:
    """Real compressed size of held-out files (streams + 4 bytes of length each) over their PCM bytes."""
    raw = coded = samples = 0
    for path in paths:
        try:
            pcm = _read(path, bits)
        except ValueError:
            continue
        streams = encode_pcm(model, pcm)
        raw += pcm.size * bits // 8
        coded += sum(len(s) + 4 for s in streams)
        samples += pcm.size
    if not samples:
        return {}
    return {"heldout_files": len(paths), "heldout_ratio": coded / raw, "heldout_bits_per_sample": 8 * coded / samples}


class _CompressorTrainer(OneModelTrainer):
    """The float sample network on random positions of the training files (the shared loop drives it)."""

    def __init__(self, cfg: CompressorTrainConfig, ex: Examples, result: CompressorTrainResult):
        torch.manual_seed(cfg.seed)
        super().__init__(FloatSampleNet(cfg.model_config()), lr=cfg.lr, weight_decay=1e-4, steps=cfg.steps,
                         warmup=max(cfg.steps // 20, 1))
        self.cfg, self.ex, self.result = cfg, ex, result

    def train_step(self, step: int) -> float:
        # The batch is a function of (seed, step): a resumed run sees the batches it would have seen.
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        idx = torch.randint(0, len(self.ex.target), (self.cfg.batch_size,), generator=g)
        loss = code_length_bits(self.model(self.ex.inputs[idx]), self.ex, idx).mean()
        self.update(loss)
        self.result.losses[step + 1] = loss.item()
        return loss.item()

    def report(self, done: int, out: float, metrics: MetricsLog, last: bool) -> dict[str, str] | None:
        if done % self.cfg.log_every and not last:
            return None
        metrics.log(done, {"bits_per_sample": out, "lr": self.lr()})
        return {"bits": f"{out:.3f}"}


def train_compressor(cfg: CompressorTrainConfig) -> CompressorTrainResult:
    """Train (or resume) the sample model; final/ holds the integer model and its held-out rates."""
    cfg.validate()
    require_single_process("train compressor")
    out = Path(cfg.out)
    train_paths, held_paths = _corpus(cfg.data)
    if not train_paths:
        raise ValueError(f"{cfg.data}: no training files (rows of split 'train', or audio files in the folder)")
    out.mkdir(parents=True, exist_ok=True)
    check_resume_settings(out, asdict(cfg), _RESUME_MUST_MATCH)

    errors: list[dict] = []
    ex, used = _load_examples(train_paths, cfg, errors)
    write_text_atomic(out / "errors.jsonl", "".join(json.dumps(e) + "\n" for e in errors))
    result = CompressorTrainResult(out_dir=out, final_dir=None, train_files=used, skipped=errors)
    trainer = _CompressorTrainer(cfg, ex, result)
    run_training(trainer, out, cfg.steps, cfg.ckpt_every, stop_at=cfg.stop_at, progress=cfg.progress,
                 desc="compressor")
    if cfg.stop_at is not None and cfg.stop_at < cfg.steps:
        return result

    trainer.model.eval()
    model = SampleModel.from_float(cfg.model_config(), trainer.model.layers())
    rates = heldout_rates(model, held_paths[: cfg.eval_files], cfg.bits)
    model.metrics = {"train_files": used, "steps": cfg.steps, "train_samples": len(ex.target),
                     "final_train_bits_per_sample": result.losses.get(cfg.steps), **rates}
    final = out / "final"
    model.save(final)
    result.final_dir, result.metrics = final, model.metrics
    if rates:
        log.info("compressor: held-out %.3f of raw PCM size (%.2f bits per sample) on %d files",
                 rates["heldout_ratio"], rates["heldout_bits_per_sample"], len(held_paths[: cfg.eval_files]))
    return result


__all__ = ["CompressorTrainConfig", "CompressorTrainResult", "FloatSampleNet", "code_length_bits", "heldout_rates",
           "train_compressor"]
