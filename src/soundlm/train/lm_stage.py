"""What makes the three AudioLM stages different: vocabulary, sequence format, window, model.

    semantic:  [BOS] s_1 ... s_T                        targets: semantic tokens
    coarse:    [BOS] s_1 ... s_T [SEP] flat(coarse)     targets: coarse acoustic tokens
    fine:      [BOS] flat(coarse) [SEP] flat(fine)      targets: fine acoustic tokens

`flat` is the codebook interleaving pattern (`soundlm.patterns`): AudioLM's flattening
(frame by frame, coarsest level first) or the delay pattern. The training loop in
`soundlm.train.lm` only sees `StageSetup`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from soundlm.fileio import atomic_dir
from soundlm.train import lm_data
from soundlm.train.lm_data import AUDIOLM_WINDOW_SECONDS, STAGES, Example, HeldoutSplit, TokenArrays, Window

if TYPE_CHECKING:
    from soundlm.patterns import StageSequence
    from soundlm.train.lm import LMTrainConfig
    from soundlm.vocab import VocabLayout

@dataclass
class StoreTokens:
    """A token store loaded into memory, with the rates and sizes the stages need."""

    records: list[TokenArrays]
    manifest: dict
    semantic_rate: float
    acoustic_rate: float
    semantic_size: int
    codebook_size: int
    num_codebooks: int


def _manifest_value(manifest: dict, flat_key: str, stream: str, keys: tuple[str, ...], store: str) -> Any:
    """A rate or size from store.json: the flat key `soundlm tokenize` writes, else the description."""
    if manifest.get(flat_key) is not None:
        return manifest[flat_key]
    desc = manifest.get(stream) or {}
    for k in keys:
        if desc.get(k) is not None:
            return desc[k]
    raise ValueError(f"{store}/store.json has no {flat_key!r} (nor {list(keys)} in its {stream!r} description); "
                     "re-tokenize the corpus with `soundlm tokenize`")


def load_store_tokens(store_path: str | Path, need_acoustic: bool = True,
                      exclude_splits: Sequence[str] = ()) -> StoreTokens:
    """Read the tokens of every record whose corpus split is not in `exclude_splits` (records
    without a split are kept); rates and sizes come from the store manifest."""
    from soundlm.store import TokenStore

    store = TokenStore(store_path)
    m, name = store.manifest, str(store_path)
    semantic_rate = float(_manifest_value(m, "semantic_frame_rate", "semantic", ("frame_rate",), name))
    semantic_size = int(_manifest_value(m, "semantic_vocab_size", "semantic", ("vocab_size", "num_clusters"), name))
    acoustic_rate, codebook_size = 1.0, 0
    if need_acoustic:
        acoustic_rate = float(_manifest_value(m, "acoustic_frame_rate", "acoustic", ("frame_rate",), name))
        codebook_size = int(_manifest_value(m, "acoustic_codebook_size", "acoustic", ("codebook_size",), name))
    records: list[TokenArrays] = []
    num_codebooks = None
    columns = ["semantic", "acoustic", "split"] if need_acoustic else ["semantic", "split"]
    excluded = 0
    for r in store.records(columns=columns):
        if r.split is not None and r.split in exclude_splits:
            excluded += 1
            continue
        acoustic = r.acoustic if need_acoustic else np.zeros((0, 0), dtype=np.int64)
        if need_acoustic:
            if num_codebooks is None:
                num_codebooks = int(acoustic.shape[0])
            elif acoustic.shape[0] != num_codebooks:
                raise ValueError(f"{name}: record {r.id!r} has {acoustic.shape[0]} codebooks, others "
                                 f"{num_codebooks}; a store must be tokenized with one codec setting")
        records.append(TokenArrays(id=r.id, semantic=r.semantic.astype(np.int64), acoustic=acoustic.astype(np.int64)))
    if not records and excluded:
        raise ValueError(f"{name}: all {excluded} records are in the excluded split(s) {list(exclude_splits)}; "
                         "tokenize training data or pass --exclude-split none")
    if not records:
        raise ValueError(f"{name}: the token store has no records; run `soundlm tokenize` to fill it")
    return StoreTokens(records=records, manifest=store.manifest, semantic_rate=semantic_rate,
                       acoustic_rate=acoustic_rate, semantic_size=semantic_size, codebook_size=codebook_size,
                       num_codebooks=num_codebooks or 0)


def default_coarse_codebooks(num_codebooks: int) -> int:
    """AudioLM modelled 4 of 12 SoundStream levels in the coarse stage: a third, at least one."""
    return max(1, round(num_codebooks / 3))


def stage_layout(stage: str, semantic_size: int, codebook_size: int, num_codebooks: int,
                 coarse_codebooks: int) -> VocabLayout:
    """The smallest vocabulary each stage needs (a stage never sees the streams it does not model)."""
    from soundlm.vocab import VocabLayout

    if stage == "semantic":
        return VocabLayout(semantic_size=semantic_size)
    if stage == "coarse":
        return VocabLayout(semantic_size=semantic_size, codebook_size=codebook_size, num_codebooks=coarse_codebooks)
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


def stage_tokens(stage: str, semantic: torch.Tensor, acoustic: torch.Tensor, layout: VocabLayout,
                 coarse_codebooks: int) -> StageSequence:
    """One stage's sequence (no EOS: training windows are crops, not whole recordings).

    semantic [B, T_s], acoustic [B, K, T_a] -> StageSequence with tokens [B, L].
    """
    from soundlm import patterns

    if stage == "semantic":
        return patterns.semantic_sequence(semantic, layout, eos=False)
    if stage == "coarse":
        return patterns.coarse_sequence(semantic, acoustic[:, :coarse_codebooks], layout, eos=False)
    return patterns.fine_sequence(acoustic[:, :coarse_codebooks], acoustic[:, coarse_codebooks:], layout, eos=False)


def window_example(window: Window, stage: str, layout: VocabLayout, coarse_codebooks: int) -> Example:
    """A crop -> (inputs, targets) with targets only on the tokens the stage generates."""
    seq = stage_tokens(stage, torch.from_numpy(window.semantic)[None], torch.from_numpy(window.acoustic)[None],
                       layout, coarse_codebooks)
    tokens = seq.tokens[0].numpy()  # [L]
    trained = np.arange(tokens.shape[0]) >= seq.prefix_len
    return lm_data.sequence_to_example(tokens, trained)


def delay_prefix(stage: str, semantic: torch.Tensor | None, coarse: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """The conditioning prefix of a delay-pattern stage, [B, P] ids of its prefix vocabulary.

    coarse stage: the semantic ids. fine stage: the coarse codes frame-major, level q's code c
    as q * codebook_size + c (one id per (level, code) pair, as in the flattened layout).
    """
    if stage == "coarse":
        return semantic.long()
    levels = torch.arange(coarse.shape[1], device=coarse.device).view(1, -1, 1) * codebook_size
    return (coarse.long() + levels).transpose(1, 2).reshape(coarse.shape[0], -1)  # [B, T*Qc]


def delay_example(window: Window, stage: str, coarse_codebooks: int, codebook_size: int) -> Example:
    """A crop -> delayed codes (MusicGen) of the levels the stage generates, with its prefix."""
    from soundlm.lm.model import delay_inputs
    from soundlm.patterns import delay_codes

    acoustic = torch.from_numpy(window.acoustic)[None]  # [1, K, T]
    own = acoustic[:, :coarse_codebooks] if stage == "coarse" else acoustic[:, coarse_codebooks:]
    labels = delay_codes(own, codebook_size)  # [1, K', T+K'-1], pad id = codebook_size
    inputs = delay_inputs(labels, codebook_size)
    targets = labels.masked_fill(labels == codebook_size, lm_data.IGNORE_INDEX)
    prefix = delay_prefix(stage, torch.from_numpy(window.semantic)[None], acoustic[:, :coarse_codebooks],
                          codebook_size)
    return Example(inputs=inputs[0].numpy(), targets=targets[0].numpy(), prefix=prefix[0].numpy())


def write_stage_files(model: torch.nn.Module, folder: Path, meta: dict, layout: VocabLayout) -> None:
    """config.json + model.safetensors of a stage, with its `meta` and `layout` in config.json.

    `save_lm` stores meta only for token LMs; a delay-pattern stage needs it just as much.
    """
    from soundlm.fileio import read_json, write_json_atomic
    from soundlm.lm.model import write_lm_files

    write_lm_files(model, folder)
    config = read_json(folder / "config.json")
    config["meta"], config["layout"] = meta, layout.to_dict()
    write_json_atomic(folder / "config.json", config)


def stage_meta(stage: str, window_seconds: float, coarse_codebooks: int, num_codebooks: int, semantic_rate: float,
               acoustic_rate: float, tokenizers: dict, pattern: str = "flatten") -> dict:
    """The stage description stored as `meta` in a stage folder's config.json (read by the pipeline).

    tokenizers: the token store's manifest (tokenizer descriptions, specs, rates, sizes), so
    a pipeline can find the tokenizers the model was trained with.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    return {"stage": stage, "pattern": pattern, "window_seconds": float(window_seconds),
            "coarse_codebooks": int(coarse_codebooks), "num_codebooks": int(num_codebooks),
            "semantic_rate": float(semantic_rate), "acoustic_rate": float(acoustic_rate), "tokenizers": tokenizers}


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


@dataclass
class StageSetup:
    """Everything the training loop needs for one stage."""

    model: torch.nn.Module  # TokenLM
    layout: VocabLayout
    meta: dict  # stage metadata stored in config.json ("meta")
    split: HeldoutSplit
    tokens: StoreTokens
    window_seconds: float
    coarse_codebooks: int
    seed: int

    @property
    def pad_id(self) -> int:
        return self.layout.pad_id

    @property
    def delayed(self) -> bool:
        return self.meta["pattern"] == "delay"

    def dataset(self, indices: list[int], stream: int) -> lm_data.StageDataset:
        records = [self.tokens.records[i] for i in indices]
        if self.delayed:
            build = partial(delay_example, stage=self.meta["stage"], coarse_codebooks=self.coarse_codebooks,
                            codebook_size=self.layout.codebook_size)
            # A delay batch cannot pad its prefix (it precedes the codes): train on full windows only.
            records = [r for r in records if min(r.semantic.shape[0] / self.tokens.semantic_rate,
                                                 r.acoustic.shape[1] / self.tokens.acoustic_rate)
                       >= self.window_seconds]
            if not records and indices:
                raise ValueError(f"no record is at least --window-seconds {self.window_seconds} long; the delay "
                                 "pattern trains on full windows, so lower --window-seconds")
        else:
            build = partial(window_example, stage=self.meta["stage"], layout=self.layout,
                            coarse_codebooks=self.coarse_codebooks)
        return lm_data.StageDataset(records, self.window_seconds, self.tokens.semantic_rate,
                                    self.tokens.acoustic_rate, build, self.seed, stream)

    def logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor:
        """Logits aligned with batch["targets"]: [B, L, V] (flattened) or [B, K, S, card] (delay)."""
        if self.delayed:
            return model(batch["input_ids"].to(device), prefix=batch["prefix"].to(device)).logits
        return model(batch["input_ids"].to(device)).logits

    def save(self, folder: Path, model: torch.nn.Module, state_dict: dict[str, torch.Tensor] | None = None) -> None:
        """Write config.json + model.safetensors of `model` into an existing folder.

        state_dict: full weights gathered from a sharded (FSDP) model; None = the model's own.
        """
        from soundlm.lm.model import DelayLM, TokenLM

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

    def export_final(self, folder: Path, model: torch.nn.Module,
                     state_dict: dict[str, torch.Tensor] | None = None) -> None:
        with atomic_dir(folder) as tmp:
            self.save(tmp, model, state_dict)


def build_stage(cfg: LMTrainConfig, init_weights_from: Path | None = None) -> StageSetup:
    """Read the store, pick layout/window/model for `cfg.stage`, optionally load checkpoint weights."""
    from soundlm.lm.model import DelayLM, DelayLMConfig, TokenLM, lm_base, lm_micro, lm_mini, lm_small, lm_tiny

    presets: dict[str, Callable[..., Any]] = {"tiny": lm_tiny, "micro": lm_micro, "mini": lm_mini,
                                                 "small": lm_small, "base": lm_base}
    if cfg.preset not in presets:
        raise ValueError(f"--preset must be one of {', '.join(presets)}, got {cfg.preset!r}")
    # The semantic stage is a single stream: the codebook pattern does not apply to it.
    pattern = "flatten" if cfg.stage == "semantic" else cfg.pattern
    if pattern == "delay" and cfg.init is not None:
        raise ValueError("--init loads a Hugging Face causal LM, which has one token stream; use --pattern flatten")
    # The corpus's held-out split (e.g. held-out voices) is for evaluation: never train on it.
    tokens = load_store_tokens(cfg.store, need_acoustic=cfg.stage != "semantic",
                               exclude_splits=(cfg.exclude_split,) if cfg.exclude_split else ())
    k = tokens.num_codebooks
    qc = cfg.coarse_codebooks if cfg.coarse_codebooks is not None else (default_coarse_codebooks(k) if k else 0)
    if cfg.stage == "coarse" and not 1 <= qc <= k:
        raise ValueError(f"--coarse-codebooks must be in [1, {k}] for this store's {k} codebooks, got {qc}")
    if cfg.stage == "fine" and not 1 <= qc < k:
        raise ValueError(f"the fine stage needs codebooks beyond the coarse ones: --coarse-codebooks must be in "
                         f"[1, {k - 1}] for this store's {k} codebooks, got {qc}")
    layout = stage_layout(cfg.stage, tokens.semantic_size, tokens.codebook_size, k, qc)
    rate = tokens_per_second(cfg.stage, tokens.semantic_rate, tokens.acoustic_rate, k, qc, pattern)

    default_positions = presets[cfg.preset](layout.vocab_size).max_positions
    if cfg.window_seconds is not None:
        window = cfg.window_seconds
    else:
        # AudioLM's window, shortened to what the preset's context holds (2 specials: BOS, SEP).
        window = min(AUDIOLM_WINDOW_SECONDS[cfg.stage], (default_positions - 2) / rate)
        window = math.floor(window * 100) / 100
    # 2 specials (BOS, SEP) when flattened; K - 1 extra steps of the delay pattern's tail.
    needed = int(math.ceil(window * rate)) + (k + 1 if pattern == "delay" else 2)
    meta = stage_meta(cfg.stage, window, qc, k, tokens.semantic_rate, tokens.acoustic_rate,
                      {key: v for key, v in tokens.manifest.items() if key != "shards"}, pattern)
    meta["store"] = str(cfg.store)
    if cfg.init is not None:
        model = TokenLM.from_hf_pretrained(cfg.init, layout=layout, meta=meta)
        if model.max_positions < needed:
            raise ValueError(f"{cfg.init}: the model holds {model.max_positions} positions but a "
                             f"{window:.2f} s {cfg.stage} window needs {needed}; lower --window-seconds")
    elif pattern == "delay":
        own = qc if cfg.stage == "coarse" else k - qc
        prefix_vocab = tokens.semantic_size if cfg.stage == "coarse" else qc * tokens.codebook_size
        backbone = presets[cfg.preset](1, max_positions=max(default_positions, _round_up(needed, 64)))
        model = DelayLM(DelayLMConfig(num_codebooks=own, codebook_size=tokens.codebook_size, backbone=backbone,
                                      prefix_vocab_size=prefix_vocab))
    else:
        model_cfg = presets[cfg.preset](layout.vocab_size, max_positions=max(default_positions, _round_up(needed, 64)))
        model = TokenLM.from_config(model_cfg, layout=layout, meta=meta)
    if init_weights_from is not None:
        from safetensors.torch import load_model

        load_model(model, str(Path(init_weights_from) / "model.safetensors"))
    split = lm_data.split_heldout([r.id for r in tokens.records], cfg.heldout_fraction)
    return StageSetup(model=model, layout=layout, meta=meta, split=split, tokens=tokens, window_seconds=window,
                      coarse_codebooks=qc, seed=cfg.seed)
