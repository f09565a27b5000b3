"""`soundlm train prefer`: DPO fine-tuning of one stage LM on preference pairs (MusicRL).

    soundlm train prefer --base BUNDLE_OR_STAGE --pairs judgements.jsonl --out RUN   # people's choices (MusicRL-U)
    soundlm train prefer --base BUNDLE_OR_STAGE --self 4 --captions CORPUS --out RUN # reward-ranked samples (MusicRL-R)

The base is a bundle (`--stage` picks the stage to tune, `semantic` by default) or a stage folder; a
flattened (TokenLM) or a delay-pattern (DelayLM, e.g. a `delay1` music bundle's coarse stage, which
decides the timbre) stage, conditioned or not.
The pairs are made first into RUN/pairs.jsonl (`music/pairs.py`: resumable), then the stage is
trained with `music/dpo.py` against a frozen copy of the base on `train/loop.run_training`: a
step's pairs are a function of (seed, step), so a killed run resumes to the same weights.

    RUN/train_config.json   settings (checked on resume)
    RUN/pairs.jsonl         the token pairs (+ .settings.json; pairs_errors.jsonl: skipped judgements)
    RUN/samples/            --self: every scored sample as a wav (people can judge them: --pairs)
    RUN/checkpoints/...     step checkpoints (the stage files + train_state.pt)
    RUN/final/              the tuned stage folder, same format as the base's stage (loads where it loads)
    RUN/model/              with a bundle base: the bundle with the tuned stage in place
    RUN/prefer.json         pairs used, rewards of the samples, log-prob margins before and after

Human judgements are tokenized by a pair tokenizer looked up by name (`--tokenizer`) in
`music.pairs`'s registry: `audiolm` (here) uses the base's own tokenizers, each clip cut to the
stage's window, the caption unused (an AudioLM stage is unconditioned); a conditioned (MusicLM)
stage registers one that puts the caption's condition tokens in the sequence. `--self` needs a
sampler from captions to token sequences and audio (the MusicLM pipeline), looked up the same way
(`--sampler`, `register_sampler`).
"""

from __future__ import annotations

import copy
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from soundlm.checkpoint import check_resume_settings
from soundlm.distributed import require_single_process
from soundlm.fileio import atomic_dir, read_json, write_json_atomic
from soundlm.lm.model import IGNORE_INDEX
from soundlm.music.dpo import delay_logprobs, dpo_loss, frozen_reference, sequence_logprobs
from soundlm.music.pairs import (DelaySequence, PairTokenizer, PreferencePair, StageSample, TokenSequence,
                                 preference_pairs, register_pair_tokenizer)
from soundlm.stages import Stage
from soundlm.train.loop import Trainer, run_training
from soundlm.train.metrics_log import MetricsLog
from soundlm.train.schedule import warmup_cosine

log = logging.getLogger(__name__)
_RESUME_MUST_MATCH = ("base", "stage", "pairs", "self_samples", "captions", "sampler", "tokenizer", "beta",
                      "sft_weight", "steps", "batch_size", "lr", "warmup", "seed", "strategy", "margin", "key_weight",
                      "tempo_weight", "instrument_weight", "mulan_weight", "instrument_model", "mulan", "max_captions")
PAIRS_FILE = "pairs.jsonl"
SUMMARY_FILE = "prefer.json"


@dataclass
class PreferTrainConfig:
    base: str = ""  # a bundle folder or a stage folder
    out: str = ""
    pairs: str | None = None  # people's judgements, JSONL
    self_samples: int | None = None  # --self N: N samples per caption, reward-ranked
    captions: str | None = None  # --self: a music corpus (its train split) or a text file, one caption a line
    max_captions: int | None = None  # --self: at most this many of them (a seeded choice); None: all
    sampler: str = "musiclm"  # --self: the registered sampler's name
    tokenizer: str = "audiolm"  # --pairs: the registered pair tokenizer's name
    stage: str = "semantic"  # the stage of a bundle to tune
    beta: float = 0.1
    sft_weight: float = 0.0
    steps: int = 200
    batch_size: int = 8
    lr: float = 1e-5
    warmup: int = 10
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    seed: int = 0
    strategy: str = "best-worst"  # --self: best vs worst, or every pair over the margin ("all")
    margin: float = 0.05  # --self: smallest reward gap that makes a pair
    key_weight: float = 1.0
    tempo_weight: float = 1.0
    instrument_weight: float = 1.0  # used with --instrument-model
    mulan_weight: float = 1.0  # used with --mulan
    instrument_model: str | None = None
    mulan: str | None = None
    ckpt_every: int = 50
    log_every: int = 10
    stop_at: int | None = None
    device: str | None = None
    progress: bool = True

    def validate(self) -> None:
        if (self.pairs is None) == (self.self_samples is None):
            raise ValueError("pass exactly one of --pairs JUDGEMENTS.jsonl (people's choices) and --self N "
                             "(N reward-ranked samples per caption)")
        if self.self_samples is not None and self.captions is None:
            raise ValueError("--self needs --captions: a music corpus or a text file with one caption per line")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"--steps and --batch-size must be >= 1, got {self.steps} and {self.batch_size}")
        if self.max_captions is not None and self.max_captions < 1:
            raise ValueError(f"--max-captions must be >= 1, got {self.max_captions}")
        if self.beta <= 0 or self.lr <= 0:
            raise ValueError(f"--beta and --lr must be positive, got {self.beta} and {self.lr}")
        if self.sft_weight < 0:
            raise ValueError(f"--sft-weight must be >= 0, got {self.sft_weight}")


# ---------------------------------------------------------------------------- the base model

@dataclass
class PreferenceBase:
    stage: Stage
    bundle: Path | None  # the bundle the stage came from, else None (a stage folder)


def load_base(base: str | Path, stage: str, device: torch.device) -> PreferenceBase:
    """The stage to tune: `base/stage` of a bundle, or `base` itself when it is a stage folder."""
    from soundlm.pipeline import REQUIRED_PARTS
    from soundlm.stages import load_stage, resolve_stage_folder

    folder = Path(base)
    if not folder.exists():
        raise FileNotFoundError(f"{base}: no such model folder; pass a bundle (semantic/ coarse/ fine/) or a stage "
                                "folder (`soundlm train lm`'s run or final/)")
    if all((folder / p / "config.json").is_file() for p in REQUIRED_PARTS):
        if not (folder / stage / "config.json").is_file():
            raise FileNotFoundError(f"{folder}: this bundle has no {stage}/ stage (a one-stage acoustic model has no "
                                    "fine/); tune one of the stages it has")
        loaded, bundle = load_stage(folder / stage, stage, device), folder
    else:
        config = read_json(resolve_stage_folder(folder) / "config.json")
        name = (config.get("meta") or {}).get("stage")
        loaded, bundle = load_stage(folder, str(name), device), None
    return PreferenceBase(loaded, bundle)


def stage_pair_tokenizer(stage: Stage, audio_tokenizer,
                         condition: Callable[[str], torch.Tensor] | None = None) -> PairTokenizer:
    """audio -> the stage's sequence of its first window, the loss on what the stage generates.

    `audio_tokenizer`: a `soundlm.audio_tokenizer.AudioTokenizer` with the tokenizers the stage was trained on.
    `condition`: caption -> its condition ids [1, Q], for a conditioned (MusicLM) stage.
    """
    from soundlm.music.pairs import window_sequence

    def tokenize(audio: np.ndarray, sample_rate: int, caption: str) -> StageSample:
        audio = np.asarray(audio, dtype=np.float32)
        audio = audio[None] if audio.ndim == 1 else audio  # [C, S]
        audio = audio[:, : int(stage.window_seconds * sample_rate)]
        toks = audio_tokenizer.encode(audio, sample_rate)
        semantic = torch.from_numpy(toks.semantic)[None] if toks.semantic is not None else None  # [1, T_s]
        acoustic = torch.from_numpy(toks.acoustic)[None] if toks.acoustic is not None else None  # [1, K, T_a]
        return window_sequence(stage, semantic, acoustic, condition(caption) if condition is not None else None)

    return tokenize


def base_audio_tokenizer(base: Path, stage: Stage, device: torch.device):
    """The tokenizers `stage` reads audio with: those of the bundle `base`, else the ones its meta names."""
    from soundlm.audio_tokenizer import AudioTokenizer
    from soundlm.codec import load_codec
    from soundlm.pipeline import CODEC_DIR, SEMANTIC_TOKENIZER_DIR
    from soundlm.semantic import load_semantic_tokenizer

    if (base / SEMANTIC_TOKENIZER_DIR).is_dir():
        sem_spec, codec_spec = base / SEMANTIC_TOKENIZER_DIR, base / CODEC_DIR
    elif stage.meta.tokenizers is not None:
        sem_spec, codec_spec = stage.meta.tokenizers.semantic_spec, stage.meta.tokenizers.acoustic_spec
    else:
        raise ValueError(f"{stage.folder}: the stage names no tokenizers (no meta.tokenizers); pass its bundle "
                         "as --base")
    semantic = load_semantic_tokenizer(str(sem_spec), device=device) if stage.name != "fine" else None
    codec = load_codec(str(codec_spec), device=device) if stage.name != "semantic" else None
    return AudioTokenizer(semantic, codec, device, probe=False)


def audiolm_pair_tokenizer(base: Path, stage: Stage, device: torch.device) -> PairTokenizer:
    """`--tokenizer audiolm`: an unconditioned AudioLM stage's sequences of a clip (the caption unused)."""
    if stage.meta.conditioned:
        raise ValueError(f"{stage.folder}: a conditioned (MusicLM) stage reads the caption's condition ids; pass "
                         "--tokenizer musiclm")
    return stage_pair_tokenizer(stage, base_audio_tokenizer(base, stage, device))


def musiclm_pair_tokenizer(base: Path, stage: Stage, device: torch.device) -> PairTokenizer:
    """`--tokenizer musiclm`: a conditioned stage's sequences of a clip, the caption's condition ids (as
    `soundlm music` makes them with the bundle's MuLan: `MuLan.caption_condition`) after BOS."""
    from soundlm.music.pipeline import MUSIC_BUNDLE_FIX, music_mulan

    if not stage.meta.conditioned:
        raise ValueError(f"{stage.folder}: the {stage.name} stage takes no condition ids; pass --tokenizer audiolm "
                         f"(or {MUSIC_BUNDLE_FIX})")
    mulan = music_mulan(base, device)

    @torch.inference_mode()
    def condition(caption: str) -> torch.Tensor:
        return mulan.caption_condition([caption]).long().cpu()  # [1, Q]

    return stage_pair_tokenizer(stage, base_audio_tokenizer(base, stage, device), condition)


register_pair_tokenizer("audiolm", audiolm_pair_tokenizer)
register_pair_tokenizer("musiclm", musiclm_pair_tokenizer)


# ---------------------------------------------------------------------------- training

def collate_sequences(seqs: list[TokenSequence], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token sequences: tokens [B, T] (pad_id), loss masks [B, T] (False on padding)."""
    length = max(s.tokens.shape[0] for s in seqs)
    tokens = torch.full((len(seqs), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.bool)
    for b, s in enumerate(seqs):
        tokens[b, : s.tokens.shape[0]] = s.tokens
        mask[b, : s.tokens.shape[0]] = s.loss_mask
    return tokens, mask


def collate_delay(seqs: list[DelaySequence], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack delay samples of one prefix length, codes right-padded (inputs pad_id, no target there):
    inputs [B, K, S], targets [B, K, S], prefix [B, P]. Causal attention keeps padding out of every real
    position, which the prefix (before the codes) could not be."""
    if len({s.prefix.shape[0] for s in seqs}) != 1:
        raise ValueError("collate_delay takes samples of one prefix length; group them first")
    k, length = seqs[0].inputs.shape[0], max(s.inputs.shape[1] for s in seqs)
    inputs = torch.full((len(seqs), k, length), pad_id, dtype=torch.long)
    targets = torch.full((len(seqs), k, length), IGNORE_INDEX, dtype=torch.long)
    for b, s in enumerate(seqs):
        inputs[b, :, : s.inputs.shape[1]] = s.inputs
        targets[b, :, : s.targets.shape[1]] = s.targets
    return inputs, targets, torch.stack([s.prefix for s in seqs])


def sample_logprobs(model: torch.nn.Module, samples: list[StageSample], pad_id: int,
                    device: torch.device) -> torch.Tensor:
    """Summed log-probability of each sample's generated ids under `model`, [N] (differentiable).

    Flat samples run as one right-padded batch; delay samples as one batch per prefix length.
    pad_id: the flat stage's padding id (a DelayLM pads its codes with its own `config.pad_id`).
    """
    if all(isinstance(s, TokenSequence) for s in samples):
        tokens, mask = collate_sequences(samples, pad_id)
        return sequence_logprobs(model, tokens.to(device), mask.to(device))
    if not all(isinstance(s, DelaySequence) for s in samples):
        raise ValueError("the pairs mix flat and delay-pattern samples; a pairs file holds one stage's samples")
    out = torch.zeros(len(samples), device=device)
    for p in sorted({s.prefix.shape[0] for s in samples}):
        rows = [i for i, s in enumerate(samples) if s.prefix.shape[0] == p]
        inputs, targets, prefix = collate_delay([samples[i] for i in rows], model.config.pad_id)
        lp = delay_logprobs(model, inputs.to(device), targets.to(device), prefix.to(device))  # [len(rows)]
        out = out.index_put((torch.tensor(rows, device=device),), lp)
    return out


@torch.no_grad()
def logprob_margins(model: torch.nn.Module, pairs: list[PreferencePair], pad_id: int, device: torch.device,
                    batch_size: int = 16) -> np.ndarray:
    """log p(chosen) - log p(rejected) of each pair under `model`, [N]."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        lp = sample_logprobs(model, [p.chosen for p in chunk] + [p.rejected for p in chunk], pad_id, device).cpu()
        out.append((lp[: len(chunk)] - lp[len(chunk):]).numpy())  # [B]
    model.train(was_training)
    return np.concatenate(out)


class PreferenceTrainer(Trainer):
    """DPO steps on random pairs; the pairs of step s are drawn by a generator seeded with (seed, s)."""

    def __init__(self, stage: Stage, pairs: list[PreferencePair], cfg: PreferTrainConfig, device: torch.device):
        self.stage, self.pairs, self.cfg, self.device = stage, pairs, cfg, device
        self.policy = stage.model.to(device)
        # The reference is the base: copied before `restore` puts a resumed run's weights in the policy.
        self.reference = frozen_reference(self.policy)
        kind = DelaySequence if stage.delayed else TokenSequence
        wrong = sum(not isinstance(s, kind) for p in pairs for s in (p.chosen, p.rejected))
        if wrong:
            raise ValueError(f"{wrong} samples are not {kind.__name__}s, the samples of the {stage.name} stage "
                             f"({'delay-pattern' if stage.delayed else 'flattened'}); make the pairs with a sampler "
                             "or tokenizer for this stage (`music.pairs.window_sequence`), into a new --out")
        limit = self.policy.max_positions
        too_long = [s.positions for p in pairs for s in (p.chosen, p.rejected) if s.positions > limit]
        if too_long:
            raise ValueError(f"{len(too_long)} sequences are longer ({max(too_long)} positions) than the stage's "
                             f"{limit} positions; cut the clips to the stage's window")
        self.params = [p for p in self.policy.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: warmup_cosine(s, cfg.warmup, cfg.steps, cfg.min_lr_ratio))

    def restore(self, folder: Path, state: dict) -> None:
        from safetensors.torch import load_model

        load_model(self.policy, str(folder / "model.safetensors"), device=str(self.device))
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])

    def begin(self, start: int) -> None:
        self.policy.train()

    def batch(self, step: int) -> list[PreferencePair]:
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        return [self.pairs[i] for i in torch.randint(0, len(self.pairs), (self.cfg.batch_size,), generator=g).tolist()]

    def train_step(self, step: int) -> dict[str, float]:
        pairs = self.batch(step)
        n = len(pairs)
        samples = [p.chosen for p in pairs] + [p.rejected for p in pairs]  # chosen rows, then rejected rows
        policy = sample_logprobs(self.policy, samples, self.stage.pad_id, self.device)  # [2B]
        with torch.no_grad():
            ref = sample_logprobs(self.reference, samples, self.stage.pad_id, self.device)  # [2B]
        out = dpo_loss(policy[:n], policy[n:], ref[:n], ref[n:], self.cfg.beta, self.cfg.sft_weight,
                       chosen_tokens=torch.tensor([p.chosen.kept for p in pairs], device=self.device))
        self.opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        return {"loss": out.loss.item(), "accuracy": out.accuracy, "margin": float(out.margin.mean()),
                "chosen_reward": float(out.chosen_reward.mean()), "rejected_reward": float(out.rejected_reward.mean())}

    def report(self, done: int, out: dict[str, float], metrics: MetricsLog, last: bool) -> dict[str, str] | None:
        if done % self.cfg.log_every == 0 or last or done == 1:
            metrics.log(done, {f"train/{k}": v for k, v in out.items()} | {"train/lr": self.sched.get_last_lr()[0]})
            return {"loss": f"{out['loss']:.3f}", "acc": f"{out['accuracy']:.2f}", "margin": f"{out['margin']:.3f}"}
        return None

    def write_model(self, folder: Path) -> None:
        self.stage.save(folder, self.policy)

    def train_state(self, step: int) -> dict:
        return {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict()}


# ---------------------------------------------------------------------------- the job

def build_reward(cfg: PreferTrainConfig, device: torch.device):
    """The weighted reward of `--self`: key and tempo always, instrument and MuLan when their models are given."""
    from soundlm.music.rewards import InstrumentReward, KeyReward, MuLanReward, TempoReward, WeightedReward

    items = [(KeyReward(), cfg.key_weight), (TempoReward(), cfg.tempo_weight)]
    if cfg.instrument_model:
        from soundlm.music.instrument import load_instrument_classifier

        items.append((InstrumentReward(load_instrument_classifier(cfg.instrument_model, device)),
                      cfg.instrument_weight))
    if cfg.mulan:
        from soundlm.music.mulan import load_mulan  # written beside this module (issue 17's MuLan)

        items.append((MuLanReward(load_mulan(cfg.mulan, device=device)), cfg.mulan_weight))
    return WeightedReward(items)


def read_requests(captions: str | Path, limit: int | None = None, seed: int = 0) -> list:
    """The requests of `--captions`: a music corpus's training clips (their attributes), or one caption per line;
    with `limit`, that many of them drawn by `seed`, in their file order."""
    from soundlm.music.rewards import request_from_attributes, request_from_caption

    path = Path(captions)
    if not path.exists():
        raise FileNotFoundError(f"{captions}: no such caption source; pass a music corpus (`soundlm data music`) or a "
                                "text file with one caption per line")
    if path.is_file() and path.suffix in (".txt", ".text"):
        requests = [request_from_caption(line.strip()) for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
    else:
        from soundlm.data.music import read_music_corpus

        requests = [request_from_attributes(c.music, c.caption) for c in read_music_corpus(path, split="train")]
    if limit is None or limit >= len(requests):
        return requests
    keep = np.sort(np.random.default_rng(seed).choice(len(requests), limit, replace=False))
    return [requests[i] for i in keep]


def train_prefer(cfg: PreferTrainConfig) -> Path | None:
    """Make the pairs, then DPO-tune the stage; returns RUN/final, or None when `stop_at` ended the run early."""
    from soundlm.devices import default_device
    from soundlm.music.pairs import generate_pairs, load_pair_tokenizer, load_sampler, read_human_pairs

    cfg.validate()
    require_single_process("train prefer")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = asdict(cfg)
    check_resume_settings(out, settings, _RESUME_MUST_MATCH)
    device = default_device(cfg.device)
    torch.manual_seed(cfg.seed)
    base = load_base(cfg.base, cfg.stage, device)
    summary: dict = {"base": cfg.base, "stage": base.stage.name}
    if cfg.pairs is not None:
        tokenize = load_pair_tokenizer(cfg.tokenizer, Path(cfg.base), base.stage, device)
        human = read_human_pairs(cfg.pairs, tokenize, out / PAIRS_FILE, progress=cfg.progress)
        groups = human.groups
        summary["skipped_judgements"] = len(human.skipped)
    else:
        sampler = load_sampler(cfg.sampler, Path(cfg.base), base.stage, device)
        requests = read_requests(cfg.captions, cfg.max_captions, cfg.seed)
        groups = generate_pairs(requests, sampler, build_reward(cfg, device), out / PAIRS_FILE,
                                num_samples=cfg.self_samples, seed=cfg.seed, strategy=cfg.strategy,
                                margin=cfg.margin, progress=cfg.progress)
        rewards = [r for g in groups for r in g.rewards if r is not None and not np.isnan(r)]
        summary["sample_reward_mean"] = float(np.mean(rewards)) if rewards else None
        summary["captions"] = len(groups)
    pairs = preference_pairs(groups)
    if not pairs:
        raise ValueError(f"{out / PAIRS_FILE}: no preference pairs to learn from (every judgement was skipped, or no "
                         "caption's samples differed by --margin); see the log above")
    summary["pairs"] = len(pairs)
    log.info("preference tuning the %s stage on %d pairs", base.stage.name, len(pairs))
    trainer = PreferenceTrainer(base.stage, pairs, cfg, device)
    before = logprob_margins(trainer.reference, pairs, base.stage.pad_id, device)
    trained = run_training(trainer, out, cfg.steps, cfg.ckpt_every, stop_at=cfg.stop_at, progress=cfg.progress,
                           desc="prefer")
    if trained.step < cfg.steps:
        return None
    after = logprob_margins(trainer.policy, pairs, base.stage.pad_id, device)
    summary.update(steps=trained.step, logprob_margin_before=float(before.mean()),
                   logprob_margin_after=float(after.mean()), preferred_before=float((before > 0).mean()),
                   preferred_after=float((after > 0).mean()))
    trainer.policy.eval()
    tuned = as_stored(trainer.policy, base.stage.folder)
    final = base.stage.export(out / "final", tuned)
    if base.bundle is not None:
        summary["model"] = str(export_bundle(base.bundle, base.stage, tuned, out / "model"))
    write_json_atomic(out / SUMMARY_FILE, summary)
    return final


def as_stored(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    """`model` in the float dtype of the weights in `folder` (a float16 bundle, as shipped, stays float16)."""
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        dtypes = {f.get_slice(name).get_dtype() for name in f.keys()}
    return copy.deepcopy(model).half() if dtypes == {"F16"} else model


def export_bundle(bundle: Path, stage: Stage, model: torch.nn.Module, target: Path) -> Path:
    """A copy of `bundle` with `stage`'s folder holding `model` (every other part as it was)."""
    with atomic_dir(target) as tmp:
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
        shutil.rmtree(tmp / stage.name)
        (tmp / stage.name).mkdir()
        stage.save(tmp / stage.name, model)
    return target
