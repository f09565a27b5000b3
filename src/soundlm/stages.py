"""What makes the three AudioLM stages different: vocabulary, sequence format, window, model.

    semantic:  [BOS] s_1 ... s_T                        targets: semantic tokens
    coarse:    [BOS] s_1 ... s_T [SEP] flat(coarse)     targets: coarse acoustic tokens
    fine:      [BOS] flat(coarse) [SEP] flat(fine)      targets: fine acoustic tokens

A conditioned stage (MusicLM: the semantic and coarse stages, trained on a store written by
`soundlm tokenize --mulan`) reads Q condition ids, the quantized MuLan embedding of the whole
recording, right after BOS (the delay pattern: at the front of its prefix); training replaces
them by NULL for a fraction of the crops (`condition_dropout`), so the same model is also the
unconditional one that classifier-free guidance needs.

`flat` is the codebook interleaving pattern (`soundlm.patterns`): AudioLM's flattening
(frame by frame, coarsest level first) or the delay pattern (MusicGen's `DelayLM`, one
step per frame for all of a stage's codebooks, conditioned on a prefix).

A stage folder is `config.json` + `model.safetensors`; config.json holds the model, its
vocabulary `layout` and the stage's `StageMeta` as `meta`. Training (`soundlm.train.lm`)
builds a `Stage` with `build_stage`, inference and evaluation load one with `load_stage`:
both see the same type.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from soundlm.fileio import atomic_dir, read_json, write_json_atomic
from soundlm.lm.model import IGNORE_INDEX, DelayLM, DelayLMConfig, TokenLM, lm_preset, load_lm, write_lm_files
from soundlm.store import StoreManifest
from soundlm.vocab import VocabLayout

STAGES = ("semantic", "coarse", "fine")
# The stages a store's condition ids reach (MusicLM conditions semantic and acoustic modelling on MuLan).
CONDITIONED_STAGES = ("semantic", "coarse")
PATTERNS = ("flatten", "delay")

# AudioLM (Borsos et al. 2022, sec. 4) trained on 30 s / 10 s / 3 s windows per stage.
AUDIOLM_WINDOW_SECONDS = {"semantic": 30.0, "coarse": 10.0, "fine": 3.0}


@dataclass(frozen=True)
class StageMeta:
    """What a stage folder says about its stage (`meta` in its config.json)."""

    stage: str
    window_seconds: float  # the training crop; generation slides windows of this length
    coarse_codebooks: int
    num_codebooks: int  # coarse + fine codebooks the stages model together
    semantic_rate: float  # frames per second
    acoustic_rate: float
    pattern: str = "flatten"
    tokenizers: StoreManifest | None = None  # the manifest of the store the stage was trained on
    store: str | None = None  # that store's folder, as given to training
    condition_tokens: int = 0  # Q condition ids after BOS (0: unconditioned)
    condition_size: int = 0  # C: each condition id is in [0, C); id C is NULL

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, got {self.pattern!r}")
        if (self.condition_tokens > 0) != (self.condition_size > 0):
            raise ValueError(f"condition_tokens and condition_size must both be 0 or both > 0, got "
                             f"{self.condition_tokens}, {self.condition_size}")

    @property
    def delayed(self) -> bool:
        return self.pattern == "delay"

    @property
    def conditioned(self) -> bool:
        return self.condition_tokens > 0

    def to_json(self) -> dict:
        return {"stage": self.stage, "pattern": self.pattern, "window_seconds": float(self.window_seconds),
                "coarse_codebooks": int(self.coarse_codebooks), "num_codebooks": int(self.num_codebooks),
                "semantic_rate": float(self.semantic_rate), "acoustic_rate": float(self.acoustic_rate),
                "tokenizers": self.tokenizers.to_json(shards=False) if self.tokenizers is not None else {},
                **({"store": self.store} if self.store is not None else {}),
                # Only conditioned stages write these, so unconditioned folders read and write back unchanged.
                **({"condition_tokens": self.condition_tokens, "condition_size": self.condition_size}
                   if self.conditioned else {})}

    @classmethod
    def from_json(cls, data: dict, where: str | Path) -> "StageMeta":
        """Read `meta` of a stage folder's config.json (every format soundlm wrote)."""
        required = ("stage", "window_seconds", "coarse_codebooks", "num_codebooks", "semantic_rate", "acoustic_rate")
        missing = [k for k in required if not isinstance(data, dict) or data.get(k) is None]
        if missing:
            raise ValueError(f"{where}: its config.json 'meta' lacks {missing}; it is not an AudioLM stage folder "
                             "(export one with `soundlm train lm`)")
        tokenizers = data.get("tokenizers") or None
        return cls(stage=str(data["stage"]), window_seconds=float(data["window_seconds"]),
                   coarse_codebooks=int(data["coarse_codebooks"]), num_codebooks=int(data["num_codebooks"]),
                   semantic_rate=float(data["semantic_rate"]), acoustic_rate=float(data["acoustic_rate"]),
                   pattern=str(data.get("pattern") or "flatten"),
                   tokenizers=StoreManifest.from_json(tokenizers, f"{where} meta.tokenizers") if tokenizers else None,
                   store=data.get("store"), condition_tokens=int(data.get("condition_tokens") or 0),
                   condition_size=int(data.get("condition_size") or 0))


@dataclass(frozen=True)
class Window:
    """Time-aligned semantic and acoustic tokens of one crop."""

    record_id: str
    start_seconds: float
    semantic: np.ndarray  # [T_s] int64
    acoustic: np.ndarray  # [K, T_a] int64
    condition: np.ndarray | None = None  # [Q] condition ids of the recording in [0, C] (C = NULL); None: none


@dataclass
class Example:
    """A training example: predict `targets[..., i]` from `inputs[..., :i+1]` (and `prefix`).

    Flattened stages: inputs/targets [L]. Delay-pattern stages: inputs/targets [K, S] delayed
    codes and a conditioning prefix [P] (see `soundlm.lm.model.DelayLM`).
    """

    inputs: np.ndarray  # [L] or [K, S] int64
    targets: np.ndarray  # same shape, IGNORE_INDEX where the stage does not train
    prefix: np.ndarray | None = None  # [P] int64


def default_coarse_codebooks(num_codebooks: int) -> int:
    """AudioLM modelled 4 of 12 SoundStream levels in the coarse stage: a third, at least one."""
    return max(1, round(num_codebooks / 3))


def stage_layout(stage: str, semantic_size: int, codebook_size: int, num_codebooks: int,
                 coarse_codebooks: int, condition_size: int = 0) -> VocabLayout:
    """The smallest vocabulary each stage needs (a stage never sees the streams it does not model).

    condition_size: C condition ids (+ NULL) for a conditioned semantic or coarse stage.
    """
    if condition_size and stage not in CONDITIONED_STAGES:
        raise ValueError(f"only the {' and '.join(CONDITIONED_STAGES)} stages take condition ids, not {stage}")
    if stage == "semantic":
        return VocabLayout(semantic_size=semantic_size, condition_size=condition_size)
    if stage == "coarse":
        return VocabLayout(semantic_size=semantic_size, codebook_size=codebook_size, num_codebooks=coarse_codebooks,
                           condition_size=condition_size)
    return VocabLayout(semantic_size=0, codebook_size=codebook_size, num_codebooks=num_codebooks)


def tokens_per_second(stage: str, semantic_rate: float, acoustic_rate: float, num_codebooks: int,
                      coarse_codebooks: int, pattern: str = "flatten") -> float:
    """Sequence positions per second of audio in a stage (what a context length buys).

    The delay pattern spends one position per frame on all its codebooks at once.
    """
    if stage == "semantic":
        return semantic_rate
    if stage == "coarse":
        return semantic_rate + acoustic_rate * (1 if pattern == "delay" else coarse_codebooks)
    if pattern == "delay":
        return acoustic_rate * (coarse_codebooks + 1)  # flattened coarse prefix + one step per frame
    return acoustic_rate * num_codebooks


def frame_index(seconds: float, rate: float) -> int:
    """The frame that contains time `seconds` (tolerant to float error at exact boundaries)."""
    return int(math.floor(seconds * rate + 1e-6))


def sequence_to_example(tokens: np.ndarray, trained: np.ndarray) -> Example:
    """Shift a full sequence into (inputs, targets); `trained[i]` says whether token i is a target."""
    if tokens.shape[0] < 2:
        raise ValueError("a training sequence needs at least 2 tokens; the window is too short")
    targets = np.where(trained[1:], tokens[1:], IGNORE_INDEX).astype(np.int64)
    return Example(inputs=tokens[:-1].astype(np.int64), targets=targets)


def stage_tokens(stage: str, semantic: torch.Tensor, acoustic: torch.Tensor, layout: VocabLayout,
                 coarse_codebooks: int, condition: torch.Tensor | None = None):
    """One stage's sequence (no EOS: training windows are crops, not whole recordings).

    semantic [B, T_s], acoustic [B, K, T_a] (+ condition ids [B, Q]) -> StageSequence with tokens [B, L].
    """
    from soundlm import patterns

    if stage == "semantic":
        return patterns.semantic_sequence(semantic, layout, eos=False, condition=condition)
    if stage == "coarse":
        return patterns.coarse_sequence(semantic, acoustic[:, :coarse_codebooks], layout, eos=False,
                                        condition=condition)
    return patterns.fine_sequence(acoustic[:, :coarse_codebooks], acoustic[:, coarse_codebooks:], layout, eos=False)


def window_condition(window: Window, condition_tokens: int, condition_size: int) -> torch.Tensor | None:
    """The condition ids [1, Q] a conditioned stage reads for a crop (NULLs when its recording has none)."""
    if not condition_tokens:
        return None
    if window.condition is None:
        return torch.full((1, condition_tokens), condition_size, dtype=torch.long)
    cond = torch.as_tensor(np.asarray(window.condition), dtype=torch.long)[None]
    if cond.shape[1] != condition_tokens:
        raise ValueError(f"record {window.record_id!r} has {cond.shape[1]} condition ids, the stage reads "
                         f"{condition_tokens}; train on a store tokenized with one MuLan")
    return cond


def window_example(window: Window, stage: str, layout: VocabLayout, coarse_codebooks: int,
                   condition_tokens: int = 0) -> Example:
    """A crop -> (inputs, targets) with targets only on the tokens the stage generates (never the condition)."""
    condition = window_condition(window, condition_tokens, layout.condition_size)
    seq = stage_tokens(stage, torch.from_numpy(window.semantic)[None], torch.from_numpy(window.acoustic)[None],
                       layout, coarse_codebooks, condition)
    tokens = seq.tokens[0].numpy()  # [L]
    trained = np.arange(tokens.shape[0]) >= seq.prefix_len
    return sequence_to_example(tokens, trained)


def delay_prefix(stage: str, semantic: torch.Tensor | None, coarse: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """The conditioning prefix of a delay-pattern stage, [B, P] ids of its prefix vocabulary.

    coarse stage: the semantic ids. fine stage: the coarse codes frame-major, level q's code c
    as q * codebook_size + c (one id per (level, code) pair, as in the flattened layout).
    """
    if stage == "coarse":
        return semantic.long()
    levels = torch.arange(coarse.shape[1], device=coarse.device).view(1, -1, 1) * codebook_size
    return (coarse.long() + levels).transpose(1, 2).reshape(coarse.shape[0], -1)  # [B, T*Qc]


def condition_prefix(condition: torch.Tensor, prefix_offset: int) -> torch.Tensor:
    """Condition ids [B, Q] in [0, C] -> the ids of a delay-pattern stage's prefix vocabulary, where the
    condition block (C ids and NULL) follows the `prefix_offset` ids of its own prefix stream."""
    return condition.long() + prefix_offset


def delay_example(window: Window, stage: str, coarse_codebooks: int, codebook_size: int,
                  condition_tokens: int = 0, condition_size: int = 0, prefix_offset: int = 0) -> Example:
    """A crop -> delayed codes (MusicGen) of the levels the stage generates, with its prefix
    (condition ids first, when the stage is conditioned)."""
    from soundlm.patterns import delay_codes, delay_inputs

    acoustic = torch.from_numpy(window.acoustic)[None]  # [1, K, T]
    own = acoustic[:, :coarse_codebooks] if stage == "coarse" else acoustic[:, coarse_codebooks:]
    labels = delay_codes(own, codebook_size)  # [1, K', T+K'-1], pad id = codebook_size
    inputs = delay_inputs(labels, codebook_size)
    targets = labels.masked_fill(labels == codebook_size, IGNORE_INDEX)
    prefix = delay_prefix(stage, torch.from_numpy(window.semantic)[None], acoustic[:, :coarse_codebooks],
                          codebook_size)
    condition = window_condition(window, condition_tokens, condition_size)
    if condition is not None:
        prefix = torch.cat([condition_prefix(condition, prefix_offset), prefix], dim=1)  # [1, Q+P]
    return Example(inputs=inputs[0].numpy(), targets=targets[0].numpy(), prefix=prefix[0].numpy())


def example_fn(meta: StageMeta, layout: VocabLayout) -> Callable[[Window], Example]:
    """crop -> Example as the stage trains on it; a plain function (picklable for loader workers)."""
    if meta.delayed:
        return partial(delay_example, stage=meta.stage, coarse_codebooks=meta.coarse_codebooks,
                       codebook_size=layout.codebook_size, condition_tokens=meta.condition_tokens,
                       condition_size=meta.condition_size, prefix_offset=delay_prefix_offset(meta, layout))
    return partial(window_example, stage=meta.stage, layout=layout, coarse_codebooks=meta.coarse_codebooks,
                   condition_tokens=meta.condition_tokens)


def delay_prefix_offset(meta: StageMeta, layout: VocabLayout) -> int:
    """Ids of a delay-pattern stage's own prefix stream; its condition block starts there."""
    return layout.semantic_size if meta.stage == "coarse" else meta.coarse_codebooks * layout.codebook_size


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions have no target, so causal attention needs no mask."""
    if examples[0].prefix is not None:
        return _collate_delayed(examples)
    length = max(e.inputs.shape[0] for e in examples)
    inputs = torch.full((len(examples), length), pad_id, dtype=torch.long)  # [B, L]
    targets = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)  # [B, L]
    for b, e in enumerate(examples):
        inputs[b, : e.inputs.shape[0]] = torch.from_numpy(e.inputs)
        targets[b, : e.targets.shape[0]] = torch.from_numpy(e.targets)
    return {"input_ids": inputs, "targets": targets}


def _collate_delayed(examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Stack delay-pattern examples, cut to the shortest prefix and sequence of the batch.

    The prefix sits before the codes, so it cannot be padded; crops of full windows (the
    delay stages only train on records at least a window long) have equal lengths anyway.
    """
    p = min(e.prefix.shape[0] for e in examples)
    s = min(e.inputs.shape[1] for e in examples)
    return {"input_ids": torch.stack([torch.from_numpy(e.inputs[:, :s]) for e in examples]),  # [B, K, S]
            "targets": torch.stack([torch.from_numpy(e.targets[:, :s]) for e in examples]),  # [B, K, S]
            "prefix": torch.stack([torch.from_numpy(e.prefix[:p]) for e in examples])}  # [B, P]


def token_loss_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy over positions with a target: logits [..., V], targets [...]."""
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]),
                                             targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum")


def write_stage_files(model: torch.nn.Module, folder: Path, meta: StageMeta, layout: VocabLayout) -> None:
    """config.json + model.safetensors of a stage, with its `meta` and `layout` in config.json.

    `write_lm_files` stores meta only for token LMs; a delay-pattern stage needs it just as much.
    """
    write_lm_files(model, folder)
    config = read_json(folder / "config.json")
    config["meta"], config["layout"] = meta.to_json(), layout.to_dict()
    write_json_atomic(folder / "config.json", config)


@dataclass
class Stage:
    """One AudioLM stage: its LM, vocabulary and `StageMeta`, as trained or as loaded."""

    model: TokenLM | DelayLM
    layout: VocabLayout
    meta: StageMeta
    folder: Path | None = None  # where it was loaded from

    @property
    def name(self) -> str:
        return self.meta.stage

    @property
    def delayed(self) -> bool:
        return self.meta.delayed

    @property
    def window_seconds(self) -> float:
        return self.meta.window_seconds

    @property
    def coarse_codebooks(self) -> int:
        return self.meta.coarse_codebooks

    @property
    def pad_id(self) -> int:
        return self.layout.pad_id

    def example(self, window: Window) -> Example:
        """A crop as this stage trains on it (and as evaluation scores it)."""
        return example_fn(self.meta, self.layout)(window)

    def logits(self, batch: dict[str, torch.Tensor], device: torch.device,
               model: torch.nn.Module | None = None) -> torch.Tensor:
        """Logits aligned with batch["targets"]: [B, L, V] (flattened) or [B, K, S, card] (delay).

        model: the module to run (e.g. the DDP/FSDP wrapper training prepared); default this stage's.
        """
        model = self.model if model is None else model
        if self.delayed:
            return model(batch["input_ids"].to(device), prefix=batch["prefix"].to(device)).logits
        return model(batch["input_ids"].to(device)).logits

    def save(self, folder: Path, model: torch.nn.Module | None = None,
             state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write config.json + model.safetensors into an existing folder.

        model: the module to write (default this stage's); state_dict: full weights gathered
        from a sharded (FSDP) model, written through a fresh copy of the model.
        """
        model = self.model if model is None else model
        if state_dict is not None:
            # The unwrapped module of a sharded (FSDP) model holds flat shards: write a full copy instead.
            if isinstance(model, DelayLM):
                model = DelayLM(model.config)
            elif model.lm_config is None:
                raise ValueError("saving a sharded model started from --init is not supported; train it with DDP")
            else:
                model = TokenLM.from_config(model.lm_config, layout=model.layout, meta=model.meta)
            model.load_state_dict(state_dict)
        write_stage_files(model, folder, self.meta, self.layout)

    def export(self, folder: Path, model: torch.nn.Module | None = None,
               state_dict: dict[str, torch.Tensor] | None = None) -> Path:
        """`save` into a new folder, atomically (the folder appears complete or not at all)."""
        with atomic_dir(folder) as tmp:
            self.save(tmp, model, state_dict)
        return folder


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def build_stage(stage: str, manifest: StoreManifest, preset: str = "tiny", pattern: str = "flatten",
                window_seconds: float | None = None, coarse_codebooks: int | None = None,
                init: str | Path | None = None, store: str | Path = "store") -> Stage:
    """A new stage model for the tokens of a store: its layout, window and (preset or `init`) model.

    manifest: the store's `StoreManifest` (rates and vocabulary sizes); store: its folder, for
    messages and the stage's record of what it was trained on. A store with condition ids
    (`soundlm tokenize --mulan`) makes the semantic and coarse stages conditioned on them.
    """
    if stage not in STAGES:
        raise ValueError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}")
    if pattern not in PATTERNS:
        raise ValueError(f"--pattern must be 'flatten' or 'delay', got {pattern!r}")
    lm_preset(preset, 1)  # an unknown preset is refused before any model is built
    # The semantic stage is a single stream: the codebook pattern does not apply to it.
    pattern = "flatten" if stage == "semantic" else pattern
    if pattern == "delay" and init is not None:
        raise ValueError("--init loads a Hugging Face causal LM, which has one token stream; use --pattern flatten")
    semantic_rate = float(manifest.required("semantic_frame_rate", store))
    semantic_size = int(manifest.required("semantic_vocab_size", store))
    acoustic_rate, codebook_size, k = 1.0, 0, 0
    if stage != "semantic":
        acoustic_rate = float(manifest.required("acoustic_frame_rate", store))
        codebook_size = int(manifest.required("acoustic_codebook_size", store))
        k = int(manifest.required("acoustic_num_codebooks", store))
    qc = coarse_codebooks if coarse_codebooks is not None else (default_coarse_codebooks(k) if k else 0)
    if stage == "coarse" and not 1 <= qc <= k:
        raise ValueError(f"--coarse-codebooks must be in [1, {k}] for this store's {k} codebooks, got {qc}")
    if stage == "fine" and not 1 <= qc < k:
        raise ValueError(f"the fine stage needs codebooks beyond the coarse ones: --coarse-codebooks must be in "
                         f"[1, {k - 1}] for this store's {k} codebooks, got {qc}")
    q = int(manifest.condition_tokens or 0) if stage in CONDITIONED_STAGES else 0
    c = int(manifest.required("condition_codebook_size", store)) if q else 0
    layout = stage_layout(stage, semantic_size, codebook_size, k, qc, condition_size=c)
    rate = tokens_per_second(stage, semantic_rate, acoustic_rate, k, qc, pattern)

    default_positions = lm_preset(preset, layout.vocab_size).max_positions
    if window_seconds is not None:
        window = window_seconds
    else:
        # AudioLM's window, shortened to what the preset's context holds (2 specials: BOS, SEP).
        window = min(AUDIOLM_WINDOW_SECONDS[stage], (default_positions - 2 - q) / rate)
        window = math.floor(window * 100) / 100
    # 2 specials (BOS, SEP) when flattened; K - 1 extra steps of the delay pattern's tail.
    # (+ Q condition ids after BOS, or at the front of the delay prefix.)
    needed = int(math.ceil(window * rate)) + (k + 1 if pattern == "delay" else 2) + q
    meta = StageMeta(stage=stage, window_seconds=float(window), coarse_codebooks=qc, num_codebooks=k,
                     semantic_rate=semantic_rate, acoustic_rate=acoustic_rate, pattern=pattern,
                     tokenizers=replace(manifest, shards={}), store=str(store), condition_tokens=q,
                     condition_size=c)
    positions = max(default_positions, _round_up(needed, 64))
    model: TokenLM | DelayLM
    if init is not None:
        model = TokenLM.from_hf_pretrained(init, layout=layout, meta=meta.to_json())
        if model.max_positions < needed:
            raise ValueError(f"{init}: the model holds {model.max_positions} positions but a "
                             f"{window:.2f} s {stage} window needs {needed}; lower --window-seconds")
    elif pattern == "delay":
        own = qc if stage == "coarse" else k - qc
        prefix_vocab = delay_prefix_offset(meta, layout) + (c + 1 if q else 0)
        model = DelayLM(DelayLMConfig(num_codebooks=own, codebook_size=codebook_size,
                                      backbone=lm_preset(preset, 1, max_positions=positions),
                                      prefix_vocab_size=prefix_vocab))
    else:
        model = TokenLM.from_config(lm_preset(preset, layout.vocab_size, max_positions=positions), layout=layout,
                                    meta=meta.to_json())
    return Stage(model=model, layout=layout, meta=meta)


def resolve_stage_folder(path: str | Path) -> Path:
    """A stage folder from a path: the folder itself, a run's `final/`, or its latest checkpoint."""
    from soundlm.checkpoint import resolve_model_folder

    folder = resolve_model_folder(path)
    if folder is not None:
        return folder
    raise FileNotFoundError(f"{path}: no stage model here (no config.json, no final/ and no checkpoints); pass a "
                            "`soundlm train lm` run folder or its final/ folder")


def load_stage(path: str | Path, expected_stage: str, device: torch.device | str = "cpu") -> Stage:
    """Load a stage folder (or a run's final/ or latest checkpoint) and check it is the stage asked for."""
    folder = resolve_stage_folder(path)
    config = read_json(folder / "config.json")
    raw = config.get("meta") or {}
    stage = raw.get("stage") if isinstance(raw, dict) else None
    if stage != expected_stage:
        raise ValueError(f"{folder} holds a {stage or 'non-AudioLM'} model, but the {expected_stage} stage was "
                         f"asked for; pass the run of `soundlm train lm --stage {expected_stage}`")
    if not config.get("layout"):
        raise ValueError(f"{folder}/config.json has no vocabulary layout; export the stage with `soundlm train lm`")
    meta = StageMeta.from_json(raw, folder)
    layout = VocabLayout.from_dict(config["layout"])
    if layout.condition_size != meta.condition_size:
        raise ValueError(f"{folder}: its layout has {layout.condition_size} condition ids but its meta "
                         f"{meta.condition_size}; the folder is inconsistent, re-export it")
    model = load_lm(folder, device=device)
    if isinstance(model, DelayLM) != meta.delayed:
        raise ValueError(f"{folder}: config.json says pattern {meta.pattern!r} but holds a "
                         f"{type(model).__name__}; the folder is inconsistent, re-export it")
    return Stage(model=model, layout=layout, meta=meta, folder=folder)
