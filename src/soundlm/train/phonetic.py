"""Training the built-in phonetic encoder (`soundlm train phonetic`): CTC on a corpus's transcripts.

A run folder holds:

    RUN/train_config.json        the arguments of the run (checked on resume)
    RUN/errors.jsonl             `{"path", "reason"}` per skipped file
    RUN/checkpoints/step_*/      weights + optimizer + scheduler + RNG state
    RUN/metrics.jsonl            one JSON line per logged step
    RUN/final/                   the encoder (`PhoneticFeatures.load(RUN/final)`) and its held-out CER

Batches are a pure function of (seed, step) and the checkpoint restores weights, optimizer
and scheduler, so `k` steps + resume gives the same weights as the whole run straight
(the loop, checkpoints and metrics are `soundlm.train.loop`'s).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from soundlm import audio as audio_io
from soundlm.checkpoint import check_resume_settings
from soundlm.distributed import require_single_process
from soundlm.fileio import atomic_dir, write_text_atomic
from soundlm.semantic.phonetic import PhoneticFeatures, ctc_greedy, normalize_transcript
from soundlm.train.loop import OneModelTrainer, run_training
from soundlm.train.metrics_log import MetricsLog

log = logging.getLogger(__name__)

_RESUME_MUST_MATCH = ("data", "steps", "batch_size", "lr", "conv_dim", "hidden", "layers", "speed_perturb",
                      "seed", "max_seconds")


@dataclass
class PhoneticTrainConfig:
    """Arguments of `soundlm train phonetic` (see the CLI help for each)."""

    data: str  # corpus manifest (or its folder); rows need a `transcript`
    out: str
    steps: int = 2000
    batch_size: int = 16
    lr: float = 2e-3
    conv_dim: int = 256
    hidden: int = 192
    layers: int = 2
    speed_perturb: tuple[float, ...] = (0.88, 1.12)  # extra copies resampled by these factors
    max_seconds: float = 30.0  # longer files are skipped (a CTC batch is whole utterances)
    seed: int = 0
    ckpt_every: int = 200
    log_every: int = 50
    eval_files: int = 50  # held-out files for the final character error rate
    stop_at: int | None = None
    progress: bool = True

    def validate(self) -> None:
        for name in ("steps", "batch_size", "conv_dim", "hidden", "layers", "ckpt_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"--lr must be positive, got {self.lr}")
        if any(not 0.5 <= f <= 2.0 for f in self.speed_perturb):
            raise ValueError(f"speed factors must lie in [0.5, 2], got {self.speed_perturb}")


@dataclass
class PhoneticTrainResult:
    out_dir: Path
    final_dir: Path | None
    train_files: int
    skipped: list[dict] = field(default_factory=list)
    losses: dict[int, float] = field(default_factory=dict)  # step -> CTC loss of that step's batch
    heldout_cer: float | None = None


def character_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Edit distance over characters, summed, divided by the references' total length.

    Our own rather than `soundlm.palm.metrics.cer`: that one needs jiwer (the `eval` extra),
    and training the encoder needs no extra.
    """
    errors = total = 0
    for ref, hyp in zip(refs, hyps):
        prev = list(range(len(hyp) + 1))
        for i, rc in enumerate(ref, 1):
            cur = [i] + [0] * len(hyp)
            for j, hc in enumerate(hyp, 1):
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (rc != hc))
            prev = cur
        errors += prev[-1]
        total += len(ref)
    return errors / max(total, 1)


def _load_examples(rows: list[dict], manifest: Path, fx: PhoneticFeatures, alphabet: str | None,
                   factors: tuple[float, ...], max_seconds: float, progress: bool,
                   errors: list[dict]) -> list[tuple[list[torch.Tensor], str]]:
    """MFCC of every usable row (plus its speed-perturbed copies) and its normalised transcript."""
    import soxr
    from tqdm.auto import tqdm

    from soundlm.data import audio_path

    out = []
    for row in tqdm(rows, desc="features", unit="file", disable=not progress):
        path = audio_path(manifest, row)
        text = normalize_transcript(row.get("transcript") or "", alphabet)
        if not text:
            errors.append({"path": str(path), "reason": "no transcript (the encoder learns to spell it)"})
            continue
        try:
            audio = audio_io.load_audio(path, sample_rate=fx.sample_rate, min_seconds=0.1, max_seconds=max_seconds)
        except audio_io.AudioError as e:
            log.warning("skipping %s", e)
            errors.append({"path": str(path), "reason": str(e)})
            continue
        versions = [audio[0]] + [soxr.resample(audio[0], fx.sample_rate, int(round(fx.sample_rate * f)))
                                 .astype(np.float32) for f in factors]
        with torch.inference_mode():
            mfccs = [fx.mfcc(torch.from_numpy(v)[None, None])[0].clone() for v in versions]  # [T, 39] each
        if any(PhoneticFeatures.ctc_frames(m.shape[0]) < len(text) for m in mfccs):
            errors.append({"path": str(path), "reason": f"{len(text)} characters do not fit in "
                                                        f"{PhoneticFeatures.ctc_frames(mfccs[-1].shape[0])} frames"})
            continue
        out.append((mfccs, text))
    return out


class _PhoneticTrainer(OneModelTrainer):
    """CTC on whole utterances; the batch and the copy of each file are a function of (seed, step)."""

    def __init__(self, model: PhoneticFeatures, examples: list[tuple[list[torch.Tensor], str]],
                 targets: list[torch.Tensor], cfg: PhoneticTrainConfig, result: PhoneticTrainResult):
        # Linear warm-up over the first 10% of the steps, then cosine decay to 5%.
        super().__init__(model, lr=cfg.lr, weight_decay=1e-2, steps=cfg.steps, warmup=max(cfg.steps // 10, 1))
        self.examples, self.targets, self.cfg, self.result = examples, targets, cfg, result
        self.ctc = nn.CTCLoss(zero_infinity=True)

    def train_step(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        pick = torch.randperm(len(self.examples), generator=g)[: self.cfg.batch_size].tolist()
        copies = torch.randint(0, len(self.examples[0][0]), (len(pick),), generator=g).tolist()
        xs = [self.examples[i][0][c] for i, c in zip(pick, copies)]
        x = nn.utils.rnn.pad_sequence(xs, batch_first=True)  # [B, T, 39]
        in_lens = PhoneticFeatures.ctc_frames(torch.tensor([len(t) for t in xs]))
        ys = [self.targets[i] for i in pick]
        logits = self.model.ctc_logits(x)  # [B, T', V]
        loss = self.ctc(logits.log_softmax(-1).transpose(0, 1), torch.cat(ys), in_lens,
                        torch.tensor([len(y) for y in ys]))
        self.update(loss)
        return loss

    def report(self, done: int, out: torch.Tensor, metrics: MetricsLog, last: bool) -> dict[str, str] | None:
        loss = out.item()
        self.result.losses[done] = loss
        if done % self.cfg.log_every == 0 or last:
            metrics.log(done, {"loss": loss, "lr": self.lr()})
            return {"loss": f"{loss:.3f}"}
        return None


def train_phonetic(cfg: PhoneticTrainConfig) -> PhoneticTrainResult:
    """Train (or resume) the phonetic encoder; returns the run's result (final/ holds the encoder)."""
    from soundlm.data import read_manifest
    from soundlm.data import manifest_path as resolve_manifest

    cfg.validate()
    require_single_process("train phonetic")
    out = Path(cfg.out)
    manifest = resolve_manifest(cfg.data)
    rows = read_manifest(manifest)
    train_rows = [r for r in rows if r.get("split", "train") == "train"]
    held_rows = [r for r in rows if r.get("split") == "heldout"][: cfg.eval_files]
    if not train_rows:
        raise ValueError(f"{manifest}: no rows of split 'train' to learn from")
    alphabet = "".join(sorted({c for r in train_rows for c in normalize_transcript(r.get("transcript") or "")}
                              | {" "}))
    out.mkdir(parents=True, exist_ok=True)
    check_resume_settings(out, {**asdict(cfg), "data": str(manifest)}, _RESUME_MUST_MATCH)

    torch.manual_seed(cfg.seed)
    model = PhoneticFeatures(alphabet, cfg.conv_dim, cfg.hidden, cfg.layers)
    errors: list[dict] = []
    examples = _load_examples(train_rows, manifest, model, alphabet, tuple(cfg.speed_perturb), cfg.max_seconds,
                              cfg.progress, errors)
    write_text_atomic(out / "errors.jsonl", "".join(json.dumps(e) + "\n" for e in errors))
    if len(examples) < cfg.batch_size:
        raise ValueError(f"{manifest}: only {len(examples)} usable transcribed training files, fewer than "
                         f"--batch-size {cfg.batch_size} (see {out / 'errors.jsonl'})")
    frames = torch.cat([m[0] for m, _ in examples])  # [N, 39] originals only
    model.feat_mean.copy_(frames.mean(0))
    model.feat_std.copy_(frames.std(0).clamp_min(1e-3))
    targets = [torch.tensor([alphabet.index(c) + 1 for c in text]) for _, text in examples]

    result = PhoneticTrainResult(out_dir=out, final_dir=None, train_files=len(examples), skipped=errors)
    trainer = _PhoneticTrainer(model, examples, targets, cfg, result)
    run_training(trainer, out, cfg.steps, cfg.ckpt_every, stop_at=cfg.stop_at, progress=cfg.progress,
                 desc="phonetic")
    if cfg.stop_at is not None and cfg.stop_at < cfg.steps:
        return result

    model.eval()
    result.heldout_cer = _heldout_cer(model, held_rows, manifest, alphabet, cfg.max_seconds)
    final = out / "final"
    with atomic_dir(final) as tmp:
        model.save(tmp, extra={"train_files": len(examples), "steps": cfg.steps,
                               "heldout_cer": result.heldout_cer, "heldout_files": len(held_rows)})
    result.final_dir = final
    log.info("phonetic encoder: held-out character error rate %s on %d files",
             "n/a" if result.heldout_cer is None else f"{result.heldout_cer:.3f}", len(held_rows))
    return result


def _heldout_cer(model: PhoneticFeatures, rows: list[dict], manifest: Path, alphabet: str,
                 max_seconds: float) -> float | None:
    """Greedy-decoded character error rate on held-out files (None without any)."""
    from soundlm.data import audio_path

    refs, hyps = [], []
    for row in rows:
        text = normalize_transcript(row.get("transcript") or "", alphabet)
        try:
            audio = audio_io.load_audio(audio_path(manifest, row), sample_rate=model.sample_rate,
                                        min_seconds=0.1, max_seconds=max_seconds)
        except audio_io.AudioError:
            continue
        if text:
            refs.append(text)
            hyps.append(model.transcribe(torch.from_numpy(audio)[None])[0])
    return character_error_rate(refs, hyps) if refs else None


__all__ = ["PhoneticTrainConfig", "PhoneticTrainResult", "character_error_rate", "ctc_greedy", "train_phonetic"]
