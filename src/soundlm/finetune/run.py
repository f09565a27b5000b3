"""`soundlm finetune DATA --base MODEL --out DIR`: adapt a bundle to a folder of a user's audio.

    DATA --tokenize (the base's own tokenizers, `soundlm tokenize`)--> DIR/store
         --split: the manifest's heldout rows, else a hash of the file ids (`--heldout-fraction`)
         --per stage (`--stages`, default coarse): LoRA adapters (or `--full`), early stopping on
           the held-out files (`StageFinetuner`)--> DIR/runs/STAGE/ (metrics.jsonl, checkpoints, best/)
         --> DIR/model/     the adapters merged into the weights: a normal bundle (`--save merged`)
             DIR/adapters/  the adapters alone, a few hundred kB per stage (`--save adapters`)
             DIR/finetune.json  settings, data, held-out loss before/after per stage, wall times

The voice of a continuation lives in the acoustic tokens: the coarse stage is the default (the
fine stage can be added; measured, it did not move a new voice closer), the semantic stage
(what is said) too. Every step resumes: rerunning
the same command after a kill continues where it stopped, and a finished run only exports.
Unreadable, silent or too short files are skipped and listed in DIR/store/errors.jsonl.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from soundlm.adapters import (AdapterManifest, LoraSettings, is_adapter_bundle, merge_lora, save_adapters,
                              weights_fingerprint)
from soundlm.checkpoint import check_resume_settings
from soundlm.fileio import atomic_dir, write_json_atomic, write_text_atomic
from soundlm.finetune.trainer import StageFinetuner, StageOutcome, stage_settings
from soundlm.pretrained import DEFAULT_MODEL_NAME
from soundlm.stages import STAGES
from soundlm.store import StoreTokens

SAVE_MODES = ("merged", "adapters", "both")
FINETUNE_JSON = "finetune.json"
# Settings that define the run; resuming with others would mix two fine-tunings.
_LOCKED = ("data", "base", "stages", "full", "steps", "batch_size", "lr", "warmup", "min_lr_ratio", "weight_decay",
           "rank", "alpha", "lora_dropout", "heldout_fraction", "eval_every", "seed")


@dataclass
class FinetuneConfig:
    """Arguments of `soundlm finetune` (see the CLI help for each)."""

    data: str  # a folder of audio files, one file, or a corpus manifest
    out: str
    base: str = DEFAULT_MODEL_NAME  # a bundle folder, the shipped model's name or a hub id
    # The voice lives in the acoustic stages; adapting the fine stage as well moved continuations no closer to a
    # new voice and cost 40% of the run's time (docs/RESULTS.md, section 4): the coarse stage alone by default.
    stages: tuple[str, ...] = ("coarse",)
    full: bool = False  # train every weight instead of LoRA adapters
    save: str = "merged"  # merged | adapters | both
    steps: int = 300  # per stage, at most (early stopping usually ends sooner)
    batch_size: int = 8
    lr: float | None = None  # None: 1e-3 for LoRA, 1e-4 for --full
    warmup: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    rank: int = 8
    alpha: float = 16.0
    lora_dropout: float = 0.05
    heldout_fraction: float = 0.15  # of the files, by id hash, when the manifest marks none
    eval_every: int = 25
    patience: int = 3  # evaluations without improvement before stopping
    min_delta: float = 0.002  # nats per token that count as an improvement
    log_every: int = 5
    ckpt_every: int = 25
    seed: int = 0
    workers: int = 1  # audio loading processes of the tokenize step
    device: str | None = None
    progress: bool = True

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.full else 1e-3)

    def lora(self) -> LoraSettings | None:
        return None if self.full else LoraSettings(rank=self.rank, alpha=self.alpha, dropout=self.lora_dropout)

    def validate(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if not self.stages or unknown or len(set(self.stages)) != len(self.stages):
            raise ValueError(f"--stages must be distinct names from {','.join(STAGES)}, got {','.join(self.stages)}")
        if self.save not in SAVE_MODES:
            raise ValueError(f"--save must be one of {', '.join(SAVE_MODES)}, got {self.save!r}")
        if self.full and self.save != "merged":
            raise ValueError("--full trains every weight: there are no adapters to save; use --save merged")
        for name in ("steps", "batch_size", "eval_every", "patience", "log_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"--heldout-fraction must be in (0, 1): early stopping needs held-out files, "
                             f"got {self.heldout_fraction}")
        if self.learning_rate <= 0 or self.warmup < 0:
            raise ValueError(f"need --lr > 0 and --warmup >= 0, got {self.learning_rate} and {self.warmup}")
        self.lora()  # checks rank, alpha, dropout


@dataclass
class FinetuneResult:
    out: Path
    model_dir: Path | None  # the merged bundle
    adapters_dir: Path | None
    stages: dict[str, StageOutcome] = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    wall_seconds: dict[str, float] = field(default_factory=dict)


def _heldout_split(tokens: StoreTokens, fraction: float, data: str) -> tuple[list[int], list[int]]:
    """(train, held-out) record indices: the manifest's heldout rows if it marks any, else by id hash."""
    from soundlm.train.lm_data import split_heldout

    marked = [i for i, r in enumerate(tokens.records) if r.split == "heldout"]
    if marked:
        train = [i for i in range(len(tokens.records)) if i not in set(marked)]
    else:
        if len(tokens.records) < 2:
            raise ValueError(f"{data}: {len(tokens.records)} usable file(s); fine-tuning holds some out for early "
                             "stopping, so it needs at least 2 (a few minutes of audio in several files)")
        split = split_heldout([r.id for r in tokens.records], fraction)
        train, marked = split.train, split.heldout
    if not train:
        raise ValueError(f"{data}: every file is in the held-out split; mark fewer rows heldout")
    return train, marked


def _base_spec(base: str, folder: Path) -> str:
    """How the adapter bundle names its base: the shipped name or a hub id as given, a folder absolute."""
    return base if base == DEFAULT_MODEL_NAME or not Path(base).exists() else str(folder.resolve())


def finetune(cfg: FinetuneConfig) -> FinetuneResult:
    """Run (or resume) a fine-tuning; returns where its outputs are and what each stage reached."""
    from soundlm.devices import default_device
    from soundlm.pipeline import CODEC_DIR, SEMANTIC_TOKENIZER_DIR
    from soundlm.pretrained import load_pipeline, resolve_model
    from soundlm.store import load_store_tokens
    from soundlm.tokenize import TokenizeConfig, tokenize_corpus
    from soundlm.train.loop import run_training

    cfg.validate()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {**asdict(cfg), "stages": list(cfg.stages)}
    check_resume_settings(out, settings, _LOCKED)
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    base_dir = resolve_model(cfg.base)
    if is_adapter_bundle(base_dir) and cfg.save != "merged":
        raise ValueError(f"{cfg.base} is an adapter bundle: adapters trained on top of it would need it merged first; "
                         "pass its base (or a merged bundle, `--save merged`) as --base, or save with --save merged")
    device = default_device(cfg.device)
    pipe = load_pipeline(base_dir, device=device)
    absent = [s for s in cfg.stages if getattr(pipe, s) is None]
    if absent:
        raise ValueError(f"{base_dir}: this model has no {'/'.join(absent)} stage (a one-stage acoustic model has no "
                         "fine/); pass --stages with the stages it has")

    store = out / "store"
    tokenized = tokenize_corpus(TokenizeConfig(source=cfg.data, out=str(store),
                                               semantic=str(base_dir / SEMANTIC_TOKENIZER_DIR),
                                               codec=str(base_dir / CODEC_DIR), workers=cfg.workers,
                                               device=str(device)),
                                progress=cfg.progress, tokenizers=(pipe.semantic_tokenizer, pipe.codec))
    tokens = load_store_tokens(store)
    train_ids, heldout_ids = _heldout_split(tokens, cfg.heldout_fraction, cfg.data)
    heldout = StoreTokens(records=[tokens.records[i] for i in heldout_ids], manifest=tokens.manifest,
                          semantic_rate=tokens.semantic_rate, acoustic_rate=tokens.acoustic_rate)
    from soundlm.store import TokenStore

    errors = TokenStore(store).read_errors()
    seconds = sum(r.acoustic.shape[1] for r in tokens.records) / tokens.acoustic_rate
    data = {"files": len(tokens.records), "train_files": len(train_ids), "heldout_files": len(heldout_ids),
            "minutes": seconds / 60, "skipped": len(errors), "errors": str(store / "errors.jsonl")}
    times["tokenize"] = time.perf_counter() - t0

    outcomes: dict[str, StageOutcome] = {}
    lora = cfg.lora()
    for name in cfg.stages:
        t1 = time.perf_counter()
        stage = getattr(pipe, name)
        run_dir = out / "runs" / name
        # What a run-health check needs to read this run like a `soundlm train lm` run.
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run_dir / "train_config.json",
                          {**settings, "kind": "finetune", "stage": name, "store": str(store.resolve()),
                           "steps": cfg.steps, "lr": cfg.learning_rate, "warmup": cfg.warmup,
                           "min_lr_ratio": cfg.min_lr_ratio})
        trainer = StageFinetuner(stage, tokens, train_ids, heldout, stage_settings(cfg, lora), device)
        trained = run_training(trainer, run_dir, cfg.steps, cfg.ckpt_every, progress=cfg.progress,
                               desc=f"finetune {name}")
        trainer.use_best()
        outcomes[name] = trainer.outcome(trained.step, trained.stopped_early)
        if lora is not None:
            with atomic_dir(run_dir / "best") as tmp:
                save_adapters(trainer.model, tmp)
            stage.model = merge_lora(trainer.model)
        stage.model.eval()
        times[f"stage {name}"] = time.perf_counter() - t1

    result = FinetuneResult(out=out, model_dir=None, adapters_dir=None, stages=outcomes, data=data,
                            wall_seconds=times)
    record = {**settings, "lr": cfg.learning_rate, "data_summary": data,
              "stages_result": {k: asdict(v) for k, v in outcomes.items()}, "wall_seconds": times,
              "tokenize": tokenized.line()}
    write_json_atomic(out / FINETUNE_JSON, record)
    _export(cfg, pipe, base_dir, out, result)
    times["total"] = time.perf_counter() - t0
    write_json_atomic(out / FINETUNE_JSON, {**record, "wall_seconds": times,
                                            "outputs": {"model": result.model_dir and str(result.model_dir),
                                                        "adapters": result.adapters_dir and str(result.adapters_dir)}})
    return result


def _export(cfg: FinetuneConfig, pipe, base_dir: Path, out: Path, result: FinetuneResult) -> None:
    """DIR/model (merged bundle) and/or DIR/adapters (adapters alone), each with its model card."""
    from soundlm.hub import save_pretrained
    from soundlm.model_card import CARD_NAME, card_for_bundle

    base = _base_spec(cfg.base, base_dir)
    if cfg.save in ("merged", "both"):
        result.model_dir = save_pretrained(pipe, out / "model", records_from=out, name=f"{out.name} (fine-tuned)")
    if cfg.save in ("adapters", "both"):
        manifest = AdapterManifest(base=base, stages=list(cfg.stages), lora=cfg.lora(),
                                   fingerprints={s: weights_fingerprint(base_dir / s / "model.safetensors")
                                                 for s in cfg.stages})
        with atomic_dir(out / "adapters") as tmp:
            for name in cfg.stages:
                shutil.copytree(out / "runs" / name / "best", tmp / name)
            manifest.write(tmp)
            shutil.copyfile(out / FINETUNE_JSON, tmp / FINETUNE_JSON)
            card = card_for_bundle(tmp, name=f"{out.name} (LoRA adapters)", base_model=base)
            card.description = (f"LoRA adapters for the {', '.join(cfg.stages)} stage(s) of `{base}`; "
                                "`soundlm.from_pretrained` loads the base and merges them. " + card.description)
            write_text_atomic(tmp / CARD_NAME, card.render())
        result.adapters_dir = out / "adapters"
