"""`soundlm train mulan`: the joint music-text embedding of `music/mulan.py` on a music corpus.

Learns from the training split of a corpus written by `soundlm data music`: random
`clip_seconds` crops of its clips against captions. With `augment_captions` a row's caption is
drawn afresh each time (`make_caption` on the clip's attributes: the corpus's several wordings
of one attribute set) half of the time, the manifest's caption otherwise. The front end has no
weights, so each clip's frames are computed once and the crops are cut from them.

Runs on `train/loop.run_training`, so a stopped run resumes exactly (a step's batch, crops and
captions are a function of seed and step). At the end the condition quantizer is fitted on the
audio embeddings of every training clip's windows (hop `quantizer_hop_seconds`).

    RUN/train_config.json   the run's settings (checked on resume)
    RUN/tokenizer.json      the caption tokenizer (trained once, reused on resume)
    RUN/skipped.jsonl       training clips that could not be read, with the reason
    RUN/checkpoints/...     step checkpoints
    RUN/final/              the MuLan folder (config.json, model.safetensors, tokenizer.json)
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from soundlm.checkpoint import check_resume_settings
from soundlm.distributed import require_single_process
from soundlm.fileio import write_text_atomic
from soundlm.music.mulan import (TOKENIZER_FILE, MuLan, MuLanConfig, load_text_tokenizer, tokenizer_pad_id,
                                 train_caption_tokenizer)
from soundlm.train.loop import OneModelTrainer, run_training
from soundlm.train.metrics_log import MetricsLog

log = logging.getLogger(__name__)
_RESUME_MUST_MATCH = ("data", "steps", "batch_size", "lr", "clip_seconds", "width", "layers", "embed_dim",
                      "augment_captions", "tokenizer", "vocab_size", "seed")
# Captions drawn per training clip to teach the tokenizer every wording `make_caption` uses.
_TOKENIZER_CAPTIONS_PER_CLIP = 20


@dataclass
class MuLanTrainConfig:
    data: str = ""
    out: str = ""
    steps: int = 3000
    batch_size: int = 32
    lr: float = 1e-3
    clip_seconds: float = MuLanConfig.clip_seconds
    width: int = MuLanConfig.width
    layers: int = MuLanConfig.layers
    embed_dim: int = MuLanConfig.embed_dim
    augment_captions: bool = True
    tokenizer: str | None = None  # a tokenizer.json or HF tokenizer folder; None: a BPE on the training captions
    vocab_size: int = 512
    condition_levels: int = MuLanConfig.condition_levels
    condition_codes: int = MuLanConfig.condition_codes
    quantizer_hop_seconds: float = 1.0
    seed: int = 0
    ckpt_every: int = 250
    log_every: int = 25
    stop_at: int | None = None
    device: str | None = None
    progress: bool = True

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"--steps must be >= 1 and --batch-size >= 2 (in-batch negatives), got {self.steps} "
                             f"and {self.batch_size}")
        if self.clip_seconds <= 0 or self.quantizer_hop_seconds <= 0:
            raise ValueError(f"--clip-seconds and the quantizer hop must be positive, got {self.clip_seconds} "
                             f"and {self.quantizer_hop_seconds}")


@dataclass
class TrainingClip:
    frames: torch.Tensor  # [T, bands], the front end's output for the whole clip
    caption: str
    music: object  # MusicAttributes


class _MuLanTrainer(OneModelTrainer):
    """Symmetric InfoNCE on in-batch negatives; batch, crops and captions are a function of (seed, step)."""

    def __init__(self, model: MuLan, clips: list[TrainingClip], cfg: MuLanTrainConfig, device: torch.device):
        super().__init__(model, lr=cfg.lr, weight_decay=1e-2, steps=cfg.steps, warmup=max(cfg.steps // 20, 1))
        self.clips, self.cfg, self.device = clips, cfg, device
        self.crop = model.clip_samples // model.config.hop_length  # frames

    def batch(self, step: int) -> tuple[torch.Tensor, list[str]]:
        """Frames [B, crop, bands] and captions of `step`: distinct clips, so no batch holds a pair twice."""
        from soundlm.data.music import make_caption

        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        rng = random.Random(f"mulan-{self.cfg.seed}-{step}")
        pick = torch.randperm(len(self.clips), generator=g)[: self.cfg.batch_size].tolist()
        frames, captions = [], []
        for i in pick:
            clip = self.clips[i]
            start = int(torch.randint(0, max(1, clip.frames.shape[0] - self.crop + 1), (1,), generator=g))
            crop = clip.frames[start: start + self.crop]
            if crop.shape[0] < self.crop:  # a short clip: repeat its last frame
                crop = torch.cat([crop, crop[-1:].expand(self.crop - crop.shape[0], -1)])
            frames.append(crop)
            fresh = self.cfg.augment_captions and rng.random() < 0.5
            captions.append(make_caption(clip.music, rng) if fresh else clip.caption)
        return torch.stack(frames).to(self.device), captions

    def train_step(self, step: int) -> tuple[float, float]:
        frames, captions = self.batch(step)
        audio = self.model.audio_embedding(frames)  # [B, D]
        text = self.model.text_embedding(*self.model.tokenize(captions))  # [B, D]
        loss = self.model.contrastive_loss(audio, text)
        self.update(loss)
        with torch.no_grad():
            hits = (audio @ text.t()).argmax(dim=1) == torch.arange(len(captions), device=audio.device)
        return loss.item(), hits.float().mean().item()

    def report(self, done: int, out: tuple[float, float], metrics: MetricsLog, last: bool) -> dict[str, str] | None:
        if done % self.cfg.log_every == 0 or last:
            loss, acc = out
            scale = self.model.logit_scale().item()
            metrics.log(done, {"loss": loss, "batch_a2t_top1": acc, "logit_scale": scale,
                               "lr": self.lr()})
            return {"loss": f"{loss:.3f}", "top1": f"{acc:.2f}", "scale": f"{scale:.1f}"}
        return None


def _caption_tokenizer(cfg: MuLanTrainConfig, out: Path, clips) -> object:
    """The run's tokenizer: RUN/tokenizer.json when a resumed run has it, else the user's or a new BPE."""
    from soundlm.data.music import make_caption

    saved = out / TOKENIZER_FILE
    if saved.is_file():
        return load_text_tokenizer(saved)
    if cfg.tokenizer is not None:
        tok = load_text_tokenizer(cfg.tokenizer)
    else:
        captions = [c.caption for c in clips]
        if cfg.augment_captions:
            captions += [make_caption(c.music, random.Random(f"mulan-tokenizer-{cfg.seed}-{c.item.id}-{k}"))
                         for c in clips for k in range(_TOKENIZER_CAPTIONS_PER_CLIP)]
        tok = train_caption_tokenizer(captions, cfg.vocab_size)
    tok.save(str(saved))
    return tok


def _read_clips(model: MuLan, clips, out: Path) -> list[TrainingClip]:
    """Each clip's front-end frames; clips that cannot be read are skipped and listed in RUN/skipped.jsonl."""
    from tqdm import tqdm

    from soundlm.audio import load_audio

    kept, skipped = [], []
    for c in tqdm(clips, desc="front end", unit="clip", disable=len(clips) < 50):
        try:
            audio = load_audio(c.item.path, sample_rate=model.sample_rate, mono=True)  # [1, S]
            if audio.shape[1] < model.config.n_fft:
                raise ValueError(f"{audio.shape[1]} samples, shorter than one analysis window")
        except (OSError, ValueError) as e:  # AudioError is a ValueError
            skipped.append({"path": str(c.item.path), "reason": f"{type(e).__name__}: {e}"[:500]})
            log.warning("skipping %s: %s", c.item.path, e)
            continue
        with torch.no_grad():
            frames = model.front_end(torch.from_numpy(audio).float())[0]  # [T, bands]
        kept.append(TrainingClip(frames, c.caption, c.music))
    write_text_atomic(out / "skipped.jsonl", "".join(json.dumps(s) + "\n" for s in skipped))
    return kept


def _window_embeddings(model: MuLan, clips: list[TrainingClip], hop_seconds: float) -> torch.Tensor:
    """Audio embeddings [N, D] of every `clip_seconds` window of the clips, `hop_seconds` apart."""
    crop = model.clip_samples // model.config.hop_length
    hop = max(1, int(round(hop_seconds * model.sample_rate / model.config.hop_length)))
    out = []
    with torch.no_grad():
        for clip in clips:
            n = clip.frames.shape[0]
            starts = list(range(0, max(1, n - crop + 1), hop))
            windows = torch.stack([clip.frames[s: s + crop] for s in starts])  # [W, <=crop, bands]
            out.append(model.audio_embedding(windows.to(model.codebooks.device)).cpu())
    return torch.cat(out)


def train_mulan(cfg: MuLanTrainConfig) -> Path | None:
    """Train (or resume) a MuLan; returns RUN/final, or None when `stop_at` ended the run early."""
    from soundlm.data.music import read_music_corpus
    from soundlm.devices import default_device

    cfg.validate()
    require_single_process("train mulan")
    clips = read_music_corpus(cfg.data, split="train")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    check_resume_settings(out, asdict(cfg), _RESUME_MUST_MATCH)
    tokenizer = _caption_tokenizer(cfg, out, clips)
    config = MuLanConfig(clip_seconds=cfg.clip_seconds, width=cfg.width, layers=cfg.layers, embed_dim=cfg.embed_dim,
                         audio_channels=cfg.width, vocab_size=tokenizer.get_vocab_size(),
                         pad_id=tokenizer_pad_id(tokenizer), condition_levels=cfg.condition_levels,
                         condition_codes=cfg.condition_codes)
    torch.manual_seed(cfg.seed)
    device = default_device(cfg.device)
    model = MuLan(config, tokenizer)
    training = _read_clips(model, clips, out)
    if len(training) < 2:
        raise ValueError(f"{cfg.data}: {len(training)} readable training clip(s) (see {out / 'skipped.jsonl'}); "
                         "contrastive training needs >= 2")
    if cfg.batch_size > len(training):
        raise ValueError(f"--batch-size {cfg.batch_size} is larger than the {len(training)} training clips; "
                         "pass a smaller one")
    model.to(device)
    log.info("mulan: %d training clips, vocabulary %d", len(training), config.vocab_size)
    trainer = _MuLanTrainer(model, training, cfg, device)
    run_training(trainer, out, cfg.steps, cfg.ckpt_every, stop_at=cfg.stop_at, progress=cfg.progress, desc="mulan")
    if cfg.stop_at is not None and cfg.stop_at < cfg.steps:
        return None
    model.eval()
    model.fit_condition_quantizer(_window_embeddings(model, training, cfg.quantizer_hop_seconds), seed=cfg.seed)
    return model.save_pretrained(out / "final")
