"""Codec training cost: seconds per generator training step, soundlm against its peers.

One step is what `soundlm.train.codec` does before the adversarial phase: forward, the
same reconstruction loss for every model (5 x multi-scale mel + multi-resolution STFT +
0.1 x L1 on the output audio, plus the model's own RVQ commitment loss), backward,
gradient clipping at norm 100 and an Adam step (lr 3e-4, betas (0.5, 0.9)). Batch 8 x
0.64 s of a synthetic harmonic signal at 16 kHz. Models (random weights; every one at
16 kHz, hop 320 = 50 Hz, 8 x 1024 residual codebooks, 4 kbps):

- soundlm-small: `SoundStreamCodec(codec_preset("small"))`, causal SEANet at the audio rate.
- soundlm-fast: `SoundStreamCodec(codec_preset("fast"))`, frame-rate ConvNeXt encoder and
  inverse-STFT decoder.
- audiolm-pytorch: `audiolm_pytorch.soundstream.SoundStream` with 16 base channels, strides
  (2, 4, 5, 8), 128-dim codebooks and no local attention (the nearest to our small preset),
  reconstruction from its own `forward(..., return_recons_only=True)`; its commitment loss
  is read from its quantizer's output by a forward hook. Its discriminators are not trained.
- audiocraft: `EncodecModel` from `audiocraft.modules.seanet` SEANetEncoder/Decoder
  (n_filters 16, ratios [8, 5, 4, 2], 1 residual layer, weight norm, causal, no LSTM: our
  small preset's settings) and `ResidualVectorQuantizer` (128 dims, 8 x 1024, dropout).
- loss-only: the loss's forward and backward on a leaf tensor, the floor every row pays.

The exact configurations go into the JSON. Two warm-up steps (the first with quantizer
dropout off, so that every codebook's k-means init happens there; Adam state), then rounds over all models (so load from other processes spreads over them),
median of the rounds.

    .bench-venv/bin/python bench/codec_train.py               # 5 rounds, ~2-4 min at 1 thread
    .bench-venv/bin/python bench/codec_train.py --quick       # 2 rounds
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py shares its name with the stdlib `tokenize` (imported by inspect,
# linecache, torch): move this folder to the end of sys.path so `import tokenize` still
# finds the stdlib, while `import common` (no stdlib namesake) finds ours.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import importlib  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from typing import Callable  # noqa: E402

import common  # noqa: E402

SAMPLE_RATE = 16_000
NUM_QUANTIZERS, CODEBOOK_SIZE, LATENT_DIM = 8, 1024, 128
REFERENCE = "soundlm-fast"


@dataclass
class StepSettings:
    """Loss weights and optimizer of one step: our trainer's defaults (`CodecTrainConfig`)."""

    mel_weight: float
    stft_weight: float
    l1_weight: float
    commit_weight: float
    lr: float
    betas: tuple[float, float]
    grad_clip: float

    @classmethod
    def from_trainer(cls) -> StepSettings:
        from soundlm.train.codec import CodecTrainConfig

        tc = CodecTrainConfig(data="", out="")
        return cls(tc.mel_weight, tc.stft_weight, tc.l1_weight, tc.commit_weight, tc.lr, tuple(tc.betas),
                   tc.grad_clip)


@dataclass
class Trainee:
    """A model ready to train: its parameters and a forward giving (audio [B, 1, S], commit loss)."""

    name: str
    model: object
    params: list  # what Adam updates (a peer's discriminators are left out)
    forward: Callable  # [B, 1, S] -> (reconstruction [B, 1, S], commit loss scalar)
    config: dict
    # Switches quantizer dropout. Every library initialises a codebook by k-means the first time
    # it quantizes with it; the warm-up step runs all codebooks so no init lands in a timed step.
    set_quantizer_dropout: Callable[[bool], None]


@dataclass
class Row:
    model: str
    params: int = 0
    params_m: float = 0.0
    seconds: list[float] = field(default_factory=list)
    median_s: float | None = None
    steps_per_s: float | None = None
    vs_fast: float | None = None  # this row's seconds per step / soundlm-fast's
    config: dict = field(default_factory=dict)
    error: str | None = None


# ---- models ----------------------------------------------------------------------------------
def soundlm(preset: str) -> Trainee:
    from soundlm.codec.soundstream import SoundStreamCodec, codec_preset

    cfg = codec_preset(preset)
    model = SoundStreamCodec(cfg).train()

    def forward(x):
        out = model(x)
        return out.audio, out.commit_loss

    def set_quantizer_dropout(on: bool) -> None:
        model.quantizer.quantizer_dropout = on and cfg.quantizer_dropout

    return Trainee(f"soundlm-{preset}", model, list(model.parameters()), forward,
                   {"preset": preset, **cfg.to_dict()}, set_quantizer_dropout)


def audiolm_soundstream() -> Trainee:
    soundstream = importlib.import_module("audiolm_pytorch.soundstream")
    # 16 base channels doubling to 256 over four stages (SEANet's widths at n_filters 16), hop
    # 2*4*5*8 = 320, 128-dim latents, our RVQ size and EMA decay. No local attention: our small
    # preset has none (the library's default adds a windowed transformer on both sides).
    kwargs = dict(channels=16, strides=(2, 4, 5, 8), channel_mults=(2, 4, 8, 16), codebook_dim=LATENT_DIM,
                  codebook_size=CODEBOOK_SIZE, rq_num_quantizers=NUM_QUANTIZERS, rq_ema_decay=0.99,
                  target_sample_hz=SAMPLE_RATE, use_local_attn=False)
    model = soundstream.SoundStream(**kwargs).train()
    # Its forward returns the reconstruction alone with return_recons_only=True and drops the
    # quantizer's commitment loss; a hook on the quantizer keeps it so the loss matches ours.
    captured: dict = {}

    def keep_commit(_module, _inputs, output):
        captured["commit"] = output[2]  # (quantized, indices, commit_loss)

    model.rq.register_forward_hook(keep_commit)

    def forward(x):
        y = model(x.squeeze(1), return_recons_only=True)  # [B, S] in -> [B, 1, S] out
        return y.reshape(x.shape), captured.pop("commit").sum()

    def set_quantizer_dropout(on: bool) -> None:
        for rvq in model.rq.rvqs:
            rvq.quantize_dropout = on

    discriminator_prefixes = ("discriminators.", "stft_discriminator.")
    params = [p for n, p in model.named_parameters() if not n.startswith(discriminator_prefixes)]
    return Trainee("audiolm-pytorch", model, params, forward,
                   {"class": "audiolm_pytorch.soundstream.SoundStream", **{k: _jsonable(v) for k, v in kwargs.items()},
                    "forward": "forward(x, return_recons_only=True); commit loss from model.rq's output",
                    "trained_params": "all but discriminators.* and stft_discriminator.*",
                    "other_settings": "library defaults (enc/dec_cycle_dilations (1, 3, 9), rq_rotation_trick, "
                                      "kmeans_init, threshold_ema_dead_code 2, quantize_dropout)"},
                   set_quantizer_dropout)


def audiocraft_encodec() -> Trainee:
    from audiocraft.models.encodec import EncodecModel
    from audiocraft.modules.seanet import SEANetDecoder, SEANetEncoder
    from audiocraft.quantization import ResidualVectorQuantizer

    ratios = [8, 5, 4, 2]
    # Our small preset's SEANet: n_filters 16, one residual unit per stage (compress 2, identity
    # skip), weight norm on every conv, causal padding, no LSTM.
    seanet = dict(channels=1, dimension=LATENT_DIM, n_filters=16, n_residual_layers=1, ratios=ratios,
                  norm="weight_norm", causal=True, true_skip=True, compress=2, lstm=0, kernel_size=7,
                  last_kernel_size=7, residual_kernel_size=3, dilation_base=2)
    rvq = dict(dimension=LATENT_DIM, n_q=NUM_QUANTIZERS, bins=CODEBOOK_SIZE, q_dropout=True, decay=0.99,
               kmeans_init=True, kmeans_iters=10, threshold_ema_dead_code=2)
    frame_rate = SAMPLE_RATE // (8 * 5 * 4 * 2)
    model = EncodecModel(SEANetEncoder(**seanet), SEANetDecoder(**seanet), ResidualVectorQuantizer(**rvq),
                         frame_rate=frame_rate, sample_rate=SAMPLE_RATE, channels=1, causal=True,
                         renormalize=False).train()

    def forward(x):
        q = model(x)  # QuantizedResult: x is the reconstruction, penalty the commitment loss
        return q.x, q.penalty

    def set_quantizer_dropout(on: bool) -> None:
        model.quantizer.q_dropout = on

    return Trainee("audiocraft", model, list(model.parameters()), forward,
                   {"class": "audiocraft.models.encodec.EncodecModel", "encoder": "SEANetEncoder(**seanet)",
                    "decoder": "SEANetDecoder(**seanet)", "seanet": seanet,
                    "quantizer": {"class": "ResidualVectorQuantizer", **rvq},
                    "frame_rate": frame_rate, "sample_rate": SAMPLE_RATE, "causal": True, "renormalize": False},
                   set_quantizer_dropout)


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


# ---- the step --------------------------------------------------------------------------------
def synthetic_batch(batch: int, samples: int):
    """Harmonic tones (random f0 90-300 Hz, 1/k amplitudes, slow vibrato) plus a little noise, [B, 1, S]."""
    import math

    import torch

    g = torch.Generator().manual_seed(0)
    t = torch.arange(samples) / SAMPLE_RATE
    f0 = 90 + 210 * torch.rand(batch, 1, generator=g)  # [B, 1]
    phase = 2 * math.pi * torch.cumsum(f0 * (1 + 0.02 * torch.sin(2 * math.pi * 5 * t)), dim=-1) / SAMPLE_RATE
    x = sum(torch.sin(k * phase) / k for k in range(1, 9))  # [B, S]
    x = 0.3 * x / x.abs().amax(dim=-1, keepdim=True) + 0.01 * torch.randn(batch, samples, generator=g)
    return x.unsqueeze(1)  # [B, 1, S]


def make_step(trainee: Trainee, x, loss_fn: Callable, settings: StepSettings) -> Callable[[], float]:
    """One training step of `trainee` with its own Adam; `x` is the batch [B, 1, S] or a callable giving each
    step's batch (bench/codec_equal_time.py draws new crops every step)."""
    import torch

    opt = torch.optim.Adam(trainee.params, lr=settings.lr, betas=settings.betas)
    next_batch = x if callable(x) else lambda: x

    def step() -> float:
        x = next_batch()
        y, commit = trainee.forward(x)
        if y.shape != x.shape:
            raise ValueError(f"{trainee.name}: reconstruction has shape {list(y.shape)}, expected {list(x.shape)}")
        total = loss_fn(y, x) + settings.commit_weight * commit
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(trainee.params, settings.grad_clip)
        opt.step()
        return total.item()

    return step


def make_loss_only(x, loss_fn: Callable) -> Callable[[], float]:
    """The loss alone, forward and backward into a leaf standing in for the model's output."""
    y = (x + 0.05 * x.roll(1, dims=-1)).detach().requires_grad_(True)

    def step() -> float:
        y.grad = None
        total = loss_fn(y, x)
        total.backward()
        return total.item()

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 timed rounds instead of 5")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 5; 2 with --quick)")
    ap.add_argument("--batch", type=int, default=8, help="clips per step (default 8)")
    ap.add_argument("--seconds", type=float, default=0.64, help="clip length in seconds (default 0.64)")
    ap.add_argument("--skip", nargs="*", default=[],
                    choices=["soundlm-small", "soundlm-fast", "audiolm-pytorch", "audiocraft", "loss-only"],
                    help="rows to leave out")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default bench/results/codec_train.json, codec_train-quick.json with --quick)")
    args = ap.parse_args()
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.repeats < 1 or args.batch < 1 or args.seconds <= 0 or args.threads < 1:
        raise SystemExit("--repeats, --batch and --threads must be >= 1 and --seconds > 0")

    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch
    import torch.nn.functional as F

    from soundlm.codec.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss, default_fft_sizes

    settings = StepSettings.from_trainer()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.time()
    samples = round(args.seconds * SAMPLE_RATE)
    x = synthetic_batch(args.batch, samples)  # [B, 1, S]
    mel_loss, stft_loss = MultiScaleMelLoss(SAMPLE_RATE), MultiResolutionSTFTLoss(default_fft_sizes(SAMPLE_RATE))

    def loss_fn(y, target):
        return (settings.mel_weight * mel_loss(y, target) + settings.stft_weight * stft_loss(y, target)
                + settings.l1_weight * F.l1_loss(y, target))

    alm = common.import_audiolm_pytorch()
    if alm.module is not None:
        try:
            importlib.import_module("audiolm_pytorch.soundstream")
        except Exception as e:  # noqa: BLE001 - recorded as the peer's import error
            alm.module, alm.error = None, common._short_error(e)
    acr = common.import_audiocraft()
    if acr.module is not None:
        try:
            for name in ("audiocraft.models.encodec", "audiocraft.modules.seanet", "audiocraft.quantization"):
                importlib.import_module(name)
        except Exception as e:  # noqa: BLE001
            acr.module, acr.error = None, common._short_error(e)

    builders: list[tuple[str, Callable[[], Trainee] | None, str | None]] = [
        ("soundlm-small", lambda: soundlm("small"), None),
        ("soundlm-fast", lambda: soundlm("fast"), None),
        ("audiolm-pytorch", audiolm_soundstream if alm.module else None, alm.error),
        ("audiocraft", audiocraft_encodec if acr.module else None, acr.error),
    ]
    cases: list[tuple[Row, Callable[[], float] | None]] = []
    for name, build, import_error in builders:
        if name in args.skip:
            continue
        row = Row(name)
        if build is None:
            row.error = f"import failed: {import_error}"
            cases.append((row, None))
            continue
        try:
            torch.manual_seed(0)
            trainee = build()
            row.params = sum(p.numel() for p in trainee.params)  # trained parameters only
            row.params_m = row.params / 1e6
            row.config = trainee.config
            step = make_step(trainee, x, loss_fn, settings)
            # Warm-up: k-means init of all codebooks, Adam state, allocations; then one step as trained.
            trainee.set_quantizer_dropout(False)
            common.time_runs(step, repeats=1, warmup=0)
            trainee.set_quantizer_dropout(True)
            common.time_runs(step, repeats=1, warmup=0)
            cases.append((row, step))
        except Exception as e:  # noqa: BLE001 - a model that fails to build or step is a result to record
            row.error = common._short_error(e)
            cases.append((row, None))
        print(f"  built and warmed {name}", flush=True)
    if "loss-only" not in args.skip:
        cases.append((Row("loss-only", config={"what": "loss forward + backward into a leaf tensor"}),
                      make_loss_only(x, loss_fn)))

    for r in range(args.repeats):
        for row, step in cases:
            if step is not None:
                # One timed run per model per round: rounds interleave the models.
                row.seconds += common.time_runs(step, repeats=1, warmup=0).seconds
        print(f"  round {r + 1}/{args.repeats} done", flush=True)

    for row, _ in cases:
        if row.seconds:
            row.median_s = statistics.median(row.seconds)
            row.steps_per_s = 1.0 / row.median_s
    ref = next((row for row, _ in cases if row.model == REFERENCE and row.median_s), None)
    for row, _ in cases:
        if ref is not None and row.median_s:
            row.vs_fast = row.median_s / ref.median_s
    rows = [asdict(row) for row, _ in cases]

    print()
    common.print_table([r | {"params_m": r["params_m"] or None} for r in rows],
                       [("model", "model", "s"), ("params_m", "params M", ".2f"), ("median_s", "s / step", ".3f"),
                        ("steps_per_s", "steps/s", ".2f"), ("vs_fast", "time x fast", ".2f")])
    for r in rows:
        if r["error"]:
            print(f"note: {r['model']}: {r['error']}")
    payload = {
        "benchmark": "codec_train",
        "machine": common.machine_info(args.threads),
        "settings": {"batch": args.batch, "clip_seconds": args.seconds, "samples": samples,
                     "sample_rate": SAMPLE_RATE, "signal": "harmonic tones (f0 90-300 Hz, 8 partials) + noise",
                     "loss": f"{settings.mel_weight} * MultiScaleMelLoss + {settings.stft_weight} * "
                             f"MultiResolutionSTFTLoss{list(default_fft_sizes(SAMPLE_RATE))} + {settings.l1_weight} "
                             f"* L1 + {settings.commit_weight} * the model's commit loss",
                     "optimizer": f"Adam(lr={settings.lr}, betas={list(settings.betas)}), "
                                  f"clip_grad_norm {settings.grad_clip}",
                     "repeats": args.repeats, "warmup_steps": 2,
                     "warmup": "one step with quantizer dropout off (k-means init of every codebook), one as trained", "dtype": "float32", "quick": args.quick,
                     "reference": REFERENCE, "vs_fast": "seconds per step / soundlm-fast's seconds per step"},
        "peers": [alm.describe(), acr.describe()],
        "results": rows,
        "wall_seconds": time.time() - started,
    }
    path = common.write_results("codec_train-quick" if args.quick else "codec_train", payload, args.out)
    print(f"\nwrote {path} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
