"""Training loop for our codec (`soundlm train codec`).

Data: every usable file of an audio folder or a `manifest.jsonl`, resampled to the codec
rate and mixed to mono; unusable files are skipped and listed in RUN/errors.jsonl. Training
reads epochs of crops (`CropBatches`: each file cut into segment-long crops, every crop once
per epoch, so longer files give more crops), and the batch of step s is a pure function of
(seed, s), so a resumed run sees exactly the batches the uninterrupted run would have seen.
The loop, its checkpoints and metrics.jsonl are `soundlm.train.loop`'s.

Under a launcher (torchrun, `accelerate launch --multi_gpu`; see `soundlm.distributed`) the
run is data-parallel: step s draws the crops of a global batch of batch_size x processes,
each process loads and trains on its own rows only (together they read each crop once per
epoch, no crop twice), DDP
averages the gradients, and the quantizer's codebooks follow the gathered global batch;
rank 0 alone writes. FSDP, DeepSpeed and mixed precision are refused (`check_launch`).

Losses: multi-scale mel + multi-resolution STFT + small waveform L1 + RVQ commitment;
optionally, after `adv_start_step`, MS-STFT discriminator hinge/LSGAN loss and feature
matching (EnCodec recipe without the loss balancer).

Run folder:
    RUN/checkpoints/step_XXXXXXXX/  config.json, model.safetensors (loadable codec), train_state.pt
    RUN/metrics.jsonl               {"step", "kind": "train"|"eval", ...} one object per line
    RUN/samples/step_XXXXXXXX/      original and reconstructed held-out clips (wav)
    RUN/errors.jsonl                {"path", "reason"} per skipped file
    RUN/train_config.json, RUN/tb/  options of the run; TensorBoard events
    RUN/final/                      the exported codec (config.json + model.safetensors)
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from soundlm.audio import AudioError, crop_or_pad, load_audio, save_audio
from soundlm.checkpoint import TRAIN_CONFIG, latest_checkpoint, refuse_changed_settings, step_dir_name
from soundlm.codec.discriminator import (MultiScaleSTFTDiscriminator, discriminator_loss, feature_matching_loss,
                                         generator_adversarial_loss)
from soundlm.codec.losses import (LowBandSTFTLoss, MultiResolutionSTFTLoss, MultiScaleMelLoss, default_fft_sizes,
                                  si_sdr)
from soundlm.codec.rvq import codebook_stats
from soundlm.codec.soundstream import CodecConfig, CodecOutput, SoundStreamCodec, codec_preset
from soundlm.distributed import Processes, start_processes
from soundlm.fileio import atomic_dir, read_json, write_json_atomic, write_text_atomic
from soundlm.train.loop import Trainer, run_training
from soundlm.train.metrics_log import MetricsLog

# Options that must not change when a run is resumed (they change what the run computes).
RESUME_LOCKED = ("preset", "batch_size", "segment_seconds", "seed", "adversarial", "adv_start_step", "adv_kind",
                 "heldout_fraction", "lr", "disc_lr", "disc_filters", "init_from", "decoder_only")


@dataclass
class CodecTrainConfig:
    data: str  # an audio folder/file or a manifest.jsonl (or the corpus folder holding one)
    out: str  # run folder
    preset: str = "small"  # tiny | small | fast | base (soundlm.codec.soundstream presets)
    steps: int = 20_000
    batch_size: int = 8
    segment_seconds: float = 1.0
    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)
    grad_clip: float = 100.0
    adversarial: bool = True
    adv_start_step: int = 2_000
    adv_kind: str = "hinge"
    disc_lr: float = 3e-4
    disc_filters: int = 32
    mel_weight: float = 5.0
    stft_weight: float = 1.0
    lowband_weight: float = 0.0  # the long-window low-band log-STFT loss (`LowBandSTFTLoss`); 0: off
    # Start from this codec folder's weights (its config too, not the preset's); with decoder_only the encoder
    # and quantizer stay frozen, so the codes are the start codec's and stores and LMs trained on them stay valid
    init_from: str | None = None
    decoder_only: bool = False
    l1_weight: float = 0.1
    commit_weight: float = 1.0
    adv_weight: float = 1.0
    feat_weight: float = 2.0
    ckpt_every: int = 1_000
    keep_checkpoints: int = 3
    eval_every: int = 500
    sample_every: int = 1_000
    log_every: int = 10
    heldout_fraction: float = 0.05
    eval_clips: int = 8
    eval_seconds: float = 2.0
    num_samples: int = 2
    seed: int = 0
    num_workers: int = 0
    max_cache_seconds: float = 4 * 3600.0  # decoded audio kept in memory; beyond it, files are re-read
    tensorboard: bool = True
    device: str | None = None

    def check(self) -> None:
        for name in ("steps", "batch_size", "ckpt_every", "eval_every", "sample_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive, got {self.segment_seconds}")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in [0, 1), got {self.heldout_fraction}")
        if self.adv_kind not in ("hinge", "lsgan"):
            raise ValueError(f"adv_kind must be 'hinge' or 'lsgan', got {self.adv_kind!r}")
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.decoder_only and self.init_from is None:
            raise ValueError("decoder_only fine-tunes a trained codec's decoder; pass the codec with --init-from")
        if self.lowband_weight < 0:
            raise ValueError(f"lowband_weight must be >= 0, got {self.lowband_weight}")


@dataclass
class CodecTrainResult:
    run_dir: Path
    final_dir: Path
    step: int
    resumed_from: int  # 0 for a fresh run
    last_eval: dict | None  # None on the processes of a launched run that do not write
    main_process: bool = True  # False on those processes: they print nothing


# --- data ------------------------------------------------------------------------------------

@dataclass
class AudioItem:
    id: str
    path: str
    num_samples: int
    split: str  # "train" | "heldout"
    # What the hash-chosen hold-out hashes: a manifest row's id; a loose file's relative path with
    # its extension (this trainer's id for loose files before `open_corpus`), so that runs and
    # resumed runs keep holding out the same files.
    holdout_key: str


def scan_corpus(data: str | Path, sample_rate: int, heldout_fraction: float, max_cache_seconds: float,
                errors_path: Path | None) -> tuple[list[AudioItem], dict[str, np.ndarray]]:
    """Load every file once: keep the usable ones, log the rest to `errors_path` (None: the
    processes of a launched run other than the one that writes).

    Returns the items and a cache {path: [S] float32} of decoded audio (up to the budget).
    """
    from soundlm.data import find_manifest, open_corpus

    sources = open_corpus(data)
    loose = find_manifest(data) is None
    items: list[AudioItem] = []
    cache: dict[str, np.ndarray] = {}
    errors: list[dict] = []
    cached = 0
    for source in tqdm(sources, desc="scan audio", unit="file", leave=False, disable=errors_path is None):
        path = str(source.path)
        try:
            audio = load_audio(path, sample_rate=sample_rate, mono=True, min_seconds=0.05)[0]  # [S]
        except (AudioError, OSError, RuntimeError) as e:
            errors.append({"path": path, "reason": str(e)})
            continue
        items.append(AudioItem(id=source.id, path=path, num_samples=int(audio.shape[0]), split=source.split or "",
                               holdout_key=source.rel_path if loose else source.id))
        if cached + audio.shape[0] <= max_cache_seconds * sample_rate:
            cache[path] = audio
            cached += audio.shape[0]
    if errors_path is not None:
        write_text_atomic(errors_path, "".join(json.dumps(e) + "\n" for e in errors))
        if errors:
            tqdm.write(f"skipped {len(errors)} unusable file(s); see {errors_path}")
    if not items:
        where = f"reasons in {errors_path}" if errors_path is not None else errors[0]["reason"]
        raise ValueError(f"{data}: none of the {len(sources)} files is usable audio; {where}")
    _assign_splits(items, heldout_fraction)
    return items, cache


def _assign_splits(items: list[AudioItem], heldout_fraction: float) -> None:
    """Keep manifest splits; otherwise hold out a stable, hash-chosen fraction of the files."""
    if any(it.split for it in items):
        for it in items:
            it.split = it.split or "train"
        return
    for it in items:
        it.split = "train"
    n_held = math.ceil(heldout_fraction * len(items)) if heldout_fraction > 0 and len(items) >= 2 else 0
    n_held = min(n_held, len(items) - 1)
    # Hashing the id (not the listing order) keeps the split stable when files are added.
    for it in sorted(items, key=lambda it: zlib.crc32(it.holdout_key.encode()))[:n_held]:
        it.split = "heldout"


class CropBatches(torch.utils.data.Dataset):
    """Map-style dataset over step numbers: item s is this process's [B, 1, S] rows of the batch of step s.

    Training reads the audio in epochs: file i holds `max(1, n_i // S)` crops of S samples
    side by side (at a shift drawn per file and epoch, so over epochs every sample is seen),
    and an epoch reads every crop of every file once, in an order drawn from (seed, epoch).
    Long files thus give more crops than short ones, as their audio is longer. The global
    batch of step s (counted from 1) is the next `batch_size * world` crops of that sequence;
    process `rank` loads only its rows `[rank * B, (rank + 1) * B)`, so together the
    processes read each crop once per epoch, and the batches are those of one process with
    the global batch size.
    """

    def __init__(self, items: list[AudioItem], cache: dict[str, np.ndarray], sample_rate: int, segment: int,
                 batch_size: int, seed: int, world: int = 1, rank: int = 0):
        self.items = items
        self.cache = cache
        self.sample_rate = sample_rate
        self.segment = segment
        self.batch_size = batch_size
        self.seed = seed
        self.world = world
        self.rank = rank
        lengths = np.array([it.num_samples for it in items], dtype=np.int64)
        per_file = np.maximum(lengths // segment, 1)
        self.slack = np.maximum(lengths - per_file * segment, 0)  # samples left over after a file's crops
        self.crop_file = np.repeat(np.arange(len(items)), per_file)  # file of each crop of an epoch
        self.crop_place = np.arange(len(self.crop_file)) - np.repeat(np.cumsum(per_file) - per_file, per_file)
        self._epoch: tuple[int, np.ndarray, np.ndarray] | None = None  # (epoch, crop order, shifts): the last used

    def __len__(self) -> int:
        return 2 ** 62

    @property
    def crops_per_epoch(self) -> int:
        return len(self.crop_file)

    def audio(self, item: AudioItem) -> np.ndarray:
        if item.path in self.cache:
            return self.cache[item.path]
        return load_audio(item.path, sample_rate=self.sample_rate, mono=True)[0]

    def _order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """The crop order of `epoch` and each file's shift in it."""
        if self._epoch is None or self._epoch[0] != epoch:
            # Steps walk the sequence in order, so one cached epoch serves all of its batches.
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch = (epoch, rng.permutation(self.crops_per_epoch), rng.integers(0, self.slack + 1))
        return self._epoch[1], self._epoch[2]

    def crops(self, step: int) -> list[tuple[int, int]]:
        """(item index, offset) of every crop of the global batch of `step` (from 1), in batch order."""
        size = self.batch_size * self.world
        out = []
        for pos in range((step - 1) * size, step * size):
            epoch, place = divmod(pos, self.crops_per_epoch)
            order, shifts = self._order(epoch)
            crop = order[place]
            i = int(self.crop_file[crop])
            out.append((i, int(shifts[i] + self.crop_place[crop] * self.segment)))
        return out

    def rank_crops(self, step: int) -> list[tuple[int, int]]:
        """This process's rows of `crops(step)`: the crops it loads."""
        return self.crops(step)[self.rank * self.batch_size: (self.rank + 1) * self.batch_size]

    def __getitem__(self, step: int) -> torch.Tensor:
        crops = [crop_or_pad(self.audio(self.items[i])[None], self.segment, offset)  # [1, S]
                 for i, offset in self.rank_crops(step)]
        return torch.from_numpy(np.stack(crops))  # [B, 1, S]


def _eval_clips(items: list[AudioItem], dataset: CropBatches, cfg: CodecTrainConfig,
                sample_rate: int) -> tuple[list[str], torch.Tensor]:
    held = [it for it in items if it.split == "heldout"]
    if not held:
        tqdm.write("no held-out files: evaluating on training files (raise --heldout-fraction)")
        held = items
    held = held[: cfg.eval_clips]
    length = int(cfg.eval_seconds * sample_rate)
    clips = [crop_or_pad(dataset.audio(it)[None], length) for it in held]
    return [it.id for it in held], torch.from_numpy(np.stack(clips))  # [N, 1, S]


# --- the loop --------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: SoundStreamCodec, clips: torch.Tensor, mel_loss: MultiScaleMelLoss,
             n_qs: tuple[int, ...]) -> dict:
    """Mel distance and SI-SDR of decode(encode(clip)) at each number of codebooks, and how each RVQ level
    uses its codebook on the clips (`codebook_stats`: what shows codebook collapse)."""
    was_training = model.training
    model.eval()
    keep = model.num_codebooks
    out = codebook_stats(model.quantizer, model.encoder(model._pad(clips)))
    for n in n_qs:
        model.set_num_codebooks(n)
        recon = model.decode(model.encode(clips))[..., : clips.shape[-1]]
        out[f"mel_distance@{n}"] = float(mel_loss(recon, clips))
        out[f"si_sdr@{n}"] = float(si_sdr(recon, clips).mean())
    model.set_num_codebooks(keep)
    model.train(was_training)
    return out


def _write_samples(run: Path, step: int, model: SoundStreamCodec, ids: list[str], clips: torch.Tensor,
                   count: int) -> None:
    model.eval()
    folder = run / "samples" / step_dir_name(step)
    with torch.no_grad():
        recon = model.decode(model.encode(clips[:count]))[..., : clips.shape[-1]].cpu().numpy()
    for i, (id_, clip) in enumerate(zip(ids[:count], clips[:count].cpu().numpy())):
        name = f"{i:02d}_" + "".join(c if c.isalnum() or c in "-_" else "_" for c in id_)[:60]
        save_audio(folder / f"{name}_orig.wav", clip, model.sample_rate)
        save_audio(folder / f"{name}_recon.wav", recon[i], model.sample_rate)
    model.train()


@dataclass
class _StepLosses:
    total: torch.Tensor  # the generator's weighted loss
    losses: dict[str, torch.Tensor]  # its terms (and the discriminator's loss, once adversarial)
    out: CodecOutput


class _CodecTrainer(Trainer):
    """Reconstruction losses (+ the adversarial ones after `adv_start_step`); batch s is `dataset[s]`.

    `model` and `disc` are the modules (what checkpoints hold); `step_model` and `step_disc`
    what a training step runs them through (DDP under a launcher, the modules otherwise).
    """

    def __init__(self, run: Path, cfg: CodecTrainConfig, codec_config: CodecConfig, dataset: CropBatches,
                 eval_ids: list[str], eval_clips: torch.Tensor, procs: Processes,
                 start_weights: dict[str, torch.Tensor] | None = None):
        self.run, self.cfg, self.dataset, self.eval_ids, self.eval_clips = run, cfg, dataset, eval_ids, eval_clips
        self.procs = procs
        device = procs.device
        self.n_qs = tuple(sorted({1, codec_config.n_q}))
        sr = codec_config.sample_rate
        self.model = SoundStreamCodec(codec_config).to(device)
        if start_weights is not None:  # --init-from's codec (a resumed run restores its checkpoint instead)
            self.model.load_state_dict(start_weights)
        self.frozen = (self.model.encoder, self.model.quantizer) if cfg.decoder_only else ()
        for module in self.frozen:
            module.requires_grad_(False)
        self.model.source = str(run)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.Adam(self.params, lr=cfg.lr, betas=cfg.betas)
        self.disc = self.disc_opt = None
        if cfg.adversarial:
            self.disc = MultiScaleSTFTDiscriminator(channels=codec_config.channels, filters=cfg.disc_filters,
                                                    n_ffts=default_fft_sizes(sr)).to(device)
            self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=cfg.disc_lr, betas=cfg.betas)
        self.mel_loss = MultiScaleMelLoss(sr).to(device)
        self.stft_loss = MultiResolutionSTFTLoss(default_fft_sizes(sr)).to(device)
        self.lowband_loss = LowBandSTFTLoss(sr).to(device) if cfg.lowband_weight else None
        self.device = device
        self.step_model = procs.wrap(self.model)
        self.step_disc = None if self.disc is None else procs.wrap(self.disc)
        self.batches: Iterator[torch.Tensor] | None = None  # made by `begin`, from the resumed step on
        self.last_eval: dict | None = None

    def restore(self, folder: Path, state: dict) -> None:
        from safetensors.torch import load_file

        self.model.load_state_dict(load_file(str(folder / "model.safetensors")))
        self.opt.load_state_dict(state["optimizer"])
        if self.disc is not None:
            if state.get("discriminator") is None:
                raise ValueError(f"{folder} has no discriminator state; resume with --no-adversarial")
            self.disc.load_state_dict(state["discriminator"])
            self.disc_opt.load_state_dict(state["disc_optimizer"])
        if self.procs.is_main:
            tqdm.write(f"resuming {self.run} from step {state['step']}")

    def begin(self, start: int) -> None:
        # A private generator: creating the loader must not draw from the global RNG we restore.
        loader = torch.utils.data.DataLoader(self.dataset, batch_size=None,
                                             sampler=range(start + 1, self.cfg.steps + 1),
                                             num_workers=self.cfg.num_workers,
                                             generator=torch.Generator().manual_seed(self.cfg.seed))
        self.batches = iter(loader)
        self.model.train()

    def train_step(self, step: int) -> _StepLosses:
        cfg = self.cfg
        step += 1  # the dataset and the adversarial start count steps from 1
        x = next(self.batches).to(self.device)  # [B, 1, S]
        for module in self.frozen:  # every step (evaluation sets train mode back): no EMA codebook updates,
            module.eval()  # no dead-code restarts, no quantizer dropout
        out = self.step_model(x)
        y = out.audio
        losses = {"mel": self.mel_loss(y, x), "stft": self.stft_loss(y, x), "l1": F.l1_loss(y, x),
                  "commit": out.commit_loss}
        total = (cfg.mel_weight * losses["mel"] + cfg.stft_weight * losses["stft"]
                 + cfg.l1_weight * losses["l1"] + cfg.commit_weight * losses["commit"])
        if self.lowband_loss is not None:
            losses["lowband"] = self.lowband_loss(y, x)
            total = total + cfg.lowband_weight * losses["lowband"]
        use_adv = self.disc is not None and step > cfg.adv_start_step
        if use_adv:
            fake, real = self.step_disc(y), self.step_disc(x)
            losses["adv"] = generator_adversarial_loss(fake.logits, cfg.adv_kind)
            losses["feat"] = feature_matching_loss(real.features, fake.features)
            total = total + cfg.adv_weight * losses["adv"] + cfg.feat_weight * losses["feat"]
        if not torch.isfinite(total):
            raise FloatingPointError(f"loss became {float(total)} at step {step}; lower --lr and resume "
                                     f"from {latest_checkpoint(self.run)}")
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
        self.opt.step()
        if use_adv:
            # Discriminator step on the detached reconstruction (the generator step is done).
            d = discriminator_loss(self.step_disc(x).logits, self.step_disc(y.detach()).logits, cfg.adv_kind)
            self.disc_opt.zero_grad(set_to_none=True)
            d.backward()
            self.disc_opt.step()
            losses["disc"] = d
        return _StepLosses(total, losses, out)

    def report(self, done: int, out: _StepLosses, metrics: MetricsLog, last: bool) -> dict[str, str] | None:
        cfg = self.cfg
        shown = None
        if done % cfg.log_every == 0 or last:
            # .item() only on logged steps: each one waits for the GPU. With several processes the
            # values are means over them: the losses of the global batch.
            values = self.procs.mean({"loss": out.total.item(), **{k: v.item() for k, v in out.losses.items()},
                                      "perplexity": float(out.out.perplexity.mean())})
            values["n_q"] = out.out.n_q
            metrics.log(done, values, kind="train")
            shown = {"loss": f"{values['loss']:.3f}", "mel": f"{values['mel']:.3f}"}
        # Evaluation and samples are the writer's: the other processes go on to the next step's
        # collectives and wait there.
        if (done % cfg.eval_every == 0 or last) and self.procs.is_main:
            self.last_eval = evaluate(self.model, self.eval_clips, self.mel_loss, self.n_qs)
            metrics.log(done, self.last_eval, kind="eval")
        # Samples go with the checkpoints the loop writes after this step.
        if (done % cfg.ckpt_every == 0 or last) and (done % cfg.sample_every == 0 or last) and self.procs.is_main:
            _write_samples(self.run, done, self.model, self.eval_ids, self.eval_clips, cfg.num_samples)
        return shown

    def write_model(self, folder: Path) -> None:
        self.model.save_pretrained(folder)

    def train_state(self, step: int) -> dict:
        return {
            "optimizer": self.opt.state_dict(),
            "discriminator": None if self.disc is None else self.disc.state_dict(),
            "disc_optimizer": None if self.disc_opt is None else self.disc_opt.state_dict(),
            # Batches are a function of (seed, step): the next batch is that of step + 1.
            "data": {"seed": self.cfg.seed, "next_step": step + 1, "train_files": len(self.dataset.items)},
            "train_config": dataclasses.asdict(self.cfg),
        }


def train_codec(cfg: CodecTrainConfig, codec_config: CodecConfig | None = None) -> CodecTrainResult:
    """Train (or resume) a codec run in `cfg.out`; export RUN/final at the end.

    `codec_config` overrides the preset (for experiments and tests). Under a launcher every
    process calls this; rank 0 alone writes (see the module docstring).
    """
    cfg.check()
    procs = start_processes("codec", cfg.device)
    run = Path(cfg.out)
    # The number of processes is part of the run: it sets the global batch.
    settings = {**dataclasses.asdict(cfg), "processes": procs.world}

    ckpt = latest_checkpoint(run)
    start_weights = None
    if ckpt is not None:
        refuse_changed_settings(run, settings, RESUME_LOCKED + ("processes",))
        codec_config = CodecConfig.from_dict(read_json(ckpt / "config.json"))
    elif cfg.init_from is not None:
        from soundlm.codec import load_codec

        start = load_codec(cfg.init_from, device="cpu")
        codec_config, start_weights = start.config, start.state_dict()
    elif codec_config is None:
        codec_config = codec_preset(cfg.preset)
    if codec_config.channels != 1:
        raise ValueError(f"training reads audio as mono, but the codec has {codec_config.channels} channels; "
                         "use a mono preset (channels=1)")
    if procs.is_main:
        run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run / TRAIN_CONFIG, {**settings, "codec": codec_config.to_dict()})

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)

    sr = codec_config.sample_rate
    items, cache = scan_corpus(cfg.data, sr, cfg.heldout_fraction, cfg.max_cache_seconds,
                               run / "errors.jsonl" if procs.is_main else None)
    train_items = [it for it in items if it.split == "train"] or items
    segment = int(round(cfg.segment_seconds * sr))
    dataset = CropBatches(train_items, cache, sr, segment, cfg.batch_size, cfg.seed, procs.world, procs.rank)
    eval_ids, eval_clips = _eval_clips(items, dataset, cfg, sr)
    trainer = _CodecTrainer(run, cfg, codec_config, dataset, eval_ids, eval_clips.to(procs.device), procs,
                            start_weights)
    trained = run_training(trainer, run, cfg.steps, cfg.ckpt_every, keep=cfg.keep_checkpoints, desc="train codec",
                           tensorboard=cfg.tensorboard, processes=procs)

    final = run / "final"
    if procs.is_main:
        with atomic_dir(final) as tmp:
            trainer.model.save_pretrained(tmp)
    procs.barrier()
    return CodecTrainResult(run_dir=run, final_dir=final, step=trained.step, resumed_from=trained.start,
                            last_eval=trainer.last_eval, main_process=procs.is_main)
