"""Codec quality at equal CPU time: soundlm's codecs against audiocraft's EnCodec and audiolm-pytorch's SoundStream.

Every model is trained with the same generator step as `bench/codec_train.py` (our
reconstruction loss: 5 x multi-scale mel + multi-resolution STFT + 0.1 x L1, plus the
model's own commitment loss; Adam lr 3e-4, betas (0.5, 0.9), clip 100; no discriminator),
on the same batches (8 random 0.64 s crops of a speech corpus's training split, the same
crops in the same order for every model), for the same budget of **process CPU seconds**
(`time.process_time`, so that load from other jobs on a shared machine does not bill one
model more than another). Training runs in slices, round-robin over the models; after each
slice every model resynthesises the same held-out utterances at 4 kbps (8 x 1024 codes,
50 Hz), scored with STOI, wideband PESQ and mel distance (`soundlm.eval.codec_metrics`).
Evaluation time is not billed.

    .bench-venv/bin/python bench/codec_equal_time.py --data CORPUS --minutes 10
    .bench-venv/bin/python bench/codec_equal_time.py --data CORPUS --minutes 1 --evals 2 --quick

CORPUS is a `soundlm data speech` folder (its `train` split is trained on, `heldout` scored).
Rows whose library fails to import are recorded with the reason (run `bash bench/setup_env.sh`).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

import codec_train  # noqa: E402
import common  # noqa: E402

SAMPLE_RATE = codec_train.SAMPLE_RATE
HOP = 320  # every model here: 50 Hz frames at 16 kHz


@dataclass
class EvalPoint:
    cpu_seconds: float
    steps: int
    train_loss: float  # mean over the slice
    stoi: float
    pesq: float
    mel_distance: float


@dataclass
class Curve:
    model: str
    params_m: float = 0.0
    points: list[EvalPoint] = field(default_factory=list)
    config: dict = field(default_factory=dict)
    error: str | None = None


class Crops:
    """Random fixed-length crops of a corpus split held in memory; one seeded stream per model."""

    def __init__(self, clips: list[np.ndarray], batch: int, samples: int, seed: int):
        self.clips = [c for c in clips if len(c) >= samples]
        if not self.clips:
            raise SystemExit(f"no training file is at least {samples / SAMPLE_RATE:.2f} s long")
        self.batch, self.samples = batch, samples
        self.rng = np.random.default_rng(seed)

    def next(self):
        import torch

        out = np.empty((self.batch, 1, self.samples), dtype=np.float32)
        for b in range(self.batch):
            clip = self.clips[self.rng.integers(len(self.clips))]
            start = self.rng.integers(len(clip) - self.samples + 1)
            out[b, 0] = clip[start:start + self.samples]
        return torch.from_numpy(out)


def load_split(data: Path, split: str, limit: int, max_seconds: float | None) -> list[np.ndarray]:
    from soundlm.audio import AudioError, load_audio
    from soundlm.data import open_corpus

    items = open_corpus(data, split=split)
    if not items:
        raise SystemExit(f"{data}: no files in split {split!r}; give a `soundlm data speech` corpus")
    clips = []
    for item in items[:limit]:
        try:
            audio = load_audio(item.path, sample_rate=SAMPLE_RATE)[0]  # [C, S] -> mono [S]
        except AudioError as e:
            print(f"  skipped {item.path}: {e}", flush=True)
            continue
        if max_seconds is not None:
            audio = audio[: round(max_seconds * SAMPLE_RATE)]
        clips.append(audio.astype(np.float32))
    return clips


def evaluate(trainee: codec_train.Trainee, clips: list[np.ndarray]) -> tuple[float, float, float]:
    """Mean STOI, PESQ-wb and mel distance of the model's resynthesis of `clips` (all codebooks)."""
    import torch

    from soundlm.eval.codec_metrics import codec_report

    trainee.model.eval()
    trainee.set_quantizer_dropout(False)
    reports = []
    with torch.no_grad():
        for clip in clips:
            n = len(clip) // HOP * HOP
            x = torch.from_numpy(clip[:n]).view(1, 1, n)
            y, _ = trainee.forward(x)
            reports.append(codec_report(clip[:n], y.view(-1).numpy(), SAMPLE_RATE))
    trainee.model.train()
    trainee.set_quantizer_dropout(True)
    return (float(np.mean([r.stoi for r in reports])), float(np.mean([r.pesq for r in reports])),
            float(np.mean([r.mel_distance for r in reports])))


class Run:
    """One model in training: its step, its batch stream and the CPU time billed to it."""

    def __init__(self, trainee: codec_train.Trainee, crops: Crops, loss_fn: Callable,
                 settings: codec_train.StepSettings):
        self.trainee = trainee
        self.step = codec_train.make_step(trainee, crops.next, loss_fn, settings)
        self.cpu_seconds, self.steps = 0.0, 0
        # Every library initialises its codebooks by k-means on the first batch it quantizes;
        # the first step runs all codebooks so that every one is initialised (billed like any step).
        trainee.set_quantizer_dropout(False)
        self.train_until(0.0, min_steps=1)
        trainee.set_quantizer_dropout(True)

    def train_until(self, cpu_budget: float, min_steps: int = 0) -> float:
        """Step until this model's billed CPU time reaches `cpu_budget`; the slice's mean loss."""
        losses = []
        while self.cpu_seconds < cpu_budget or len(losses) < min_steps:
            t0 = time.process_time()
            losses.append(self.step())
            self.cpu_seconds += time.process_time() - t0
            self.steps += 1
        return float(np.mean(losses)) if losses else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a `soundlm data speech` corpus folder")
    ap.add_argument("--minutes", type=float, default=10.0, help="CPU minutes of training per model (default 10)")
    ap.add_argument("--evals", type=int, default=4, help="evaluation points per model, evenly spaced (default 4)")
    ap.add_argument("--eval-files", type=int, default=12, help="held-out utterances scored (default 12)")
    ap.add_argument("--eval-seconds", type=float, default=4.0, help="scored length of each (default 4 s)")
    ap.add_argument("--train-files", type=int, default=2000, help="training files held in memory (default 2000)")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    ap.add_argument("--seconds", type=float, default=0.64, help="crop length (default 0.64 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["soundlm-small", "soundlm-fast", "audiolm-pytorch", "audiocraft"], help="rows to leave out")
    ap.add_argument("--quick", action="store_true", help="write codec_equal_time-quick.json")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/codec_equal_time.json)")
    args = ap.parse_args()
    if args.minutes <= 0 or args.evals < 1 or args.eval_files < 1 or args.threads < 1 or args.batch < 1:
        raise SystemExit("--minutes must be > 0 and --evals, --eval-files, --threads, --batch >= 1")

    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    import torch.nn.functional as F

    from soundlm.codec.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss, default_fft_sizes

    torch.set_num_threads(args.threads)
    started = time.time()
    settings = codec_train.StepSettings.from_trainer()
    samples = round(args.seconds * SAMPLE_RATE)
    train_clips = load_split(args.data, "train", args.train_files, None)
    eval_clips = [c for c in load_split(args.data, "heldout", 10 * args.eval_files, args.eval_seconds)
                  if len(c) >= SAMPLE_RATE][: args.eval_files]
    print(f"  {len(train_clips)} training files, {len(eval_clips)} held-out utterances", flush=True)
    mel_loss, stft_loss = MultiScaleMelLoss(SAMPLE_RATE), MultiResolutionSTFTLoss(default_fft_sizes(SAMPLE_RATE))

    def loss_fn(y, target):
        return (settings.mel_weight * mel_loss(y, target) + settings.stft_weight * stft_loss(y, target)
                + settings.l1_weight * F.l1_loss(y, target))

    alm, acr = common.import_audiolm_pytorch(), common.import_audiocraft()
    builders = [("soundlm-small", lambda: codec_train.soundlm("small"), None),
                ("soundlm-fast", lambda: codec_train.soundlm("fast"), None),
                ("audiolm-pytorch", codec_train.audiolm_soundstream if alm.module else None, alm.error),
                ("audiocraft", codec_train.audiocraft_encodec if acr.module else None, acr.error)]
    curves: list[Curve] = []
    runs: list[tuple[Curve, Run | None]] = []
    for name, build, import_error in builders:
        if name in args.skip:
            continue
        curve = Curve(name)
        curves.append(curve)
        if build is None:
            curve.error = f"import failed: {import_error}"
            runs.append((curve, None))
            continue
        try:
            torch.manual_seed(args.seed)
            trainee = build()
            curve.params_m = sum(p.numel() for p in trainee.params) / 1e6
            curve.config = trainee.config
            runs.append((curve, Run(trainee, Crops(train_clips, args.batch, samples, args.seed), loss_fn, settings)))
        except Exception as e:  # noqa: BLE001 - a model that fails to build is a result to record
            curve.error = common._short_error(e)
            runs.append((curve, None))
        print(f"  built {name}", flush=True)

    budget = 60.0 * args.minutes
    for k in range(1, args.evals + 1):
        for curve, run in runs:
            if run is None:
                continue
            loss = run.train_until(budget * k / args.evals)
            stoi, pesq, mel = evaluate(run.trainee, eval_clips)
            curve.points.append(EvalPoint(run.cpu_seconds, run.steps, loss, stoi, pesq, mel))
            print(f"  {curve.model}: {run.cpu_seconds / 60:.1f} CPU min, {run.steps} steps, loss {loss:.3f}, "
                  f"STOI {stoi:.3f}, PESQ {pesq:.2f}, mel {mel:.3f}", flush=True)

    rows = []
    for curve in curves:
        for p in curve.points:
            rows.append({"model": curve.model, "cpu_min": p.cpu_seconds / 60, "steps": p.steps, "stoi": p.stoi,
                         "pesq": p.pesq, "mel_distance": p.mel_distance})
        if curve.error:
            rows.append({"model": curve.model, "cpu_min": None, "steps": None, "stoi": None, "pesq": None,
                         "mel_distance": None})
    print()
    common.print_table(rows, [("model", "model", "s"), ("cpu_min", "CPU min", ".1f"), ("steps", "steps", "d"),
                              ("stoi", "STOI", ".3f"), ("pesq", "PESQ-wb", ".2f"),
                              ("mel_distance", "mel dist", ".3f")])
    for curve in curves:
        if curve.error:
            print(f"note: {curve.model}: {curve.error}")
    payload = {
        "benchmark": "codec_equal_time",
        "machine": common.machine_info(args.threads),
        "settings": {"data": str(args.data), "cpu_minutes_per_model": args.minutes, "evals": args.evals,
                     "train_files": len(train_clips), "eval_files": len(eval_clips),
                     "eval_seconds": args.eval_seconds, "batch": args.batch, "crop_seconds": args.seconds,
                     "seed": args.seed, "bitrate_kbps": 4.0, "clock": "time.process_time per model",
                     "step": "bench/codec_train.py's generator step (no discriminator)",
                     "loss_weights": asdict(settings)},
        "peers": [alm.describe(), acr.describe()],
        "results": [asdict(c) for c in curves],
        "wall_seconds": time.time() - started,
    }
    path = common.write_results("codec_equal_time-quick" if args.quick else "codec_equal_time", payload, args.out)
    print(f"\nwrote {path} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
