"""A Hugging Face causal LM extended with audio tokens (AudioPaLM's initialisation).

`extend_causal_lm` loads any causal LM (hub id or local folder), keeps its text embedding
rows (and its output rows when the head is untied) and appends `vocab.num_new_tokens` rows
for task tags and audio ids. Text-only input therefore gives the same text logits as
before: the new rows only add logits for the new ids. `from_scratch=True` builds the same
architecture with random weights (the "no text pretraining" ablation).

A palm model folder (a run's `final/`, or a checkpoint):
    config.json        {"type": "palm", "hf_config": {...}, "meta": {...}}
    model.safetensors  the causal LM's weights
    palm_vocab.json    the combined vocabulary (`PalmVocab`)
    text_tokenizer/    the Hugging Face text tokenizer
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from soundlm.fileio import atomic_dir, read_json, write_json_atomic
from soundlm.palm.vocab import PalmTokenizer, PalmVocab, load_text_tokenizer

MODEL_TYPE = "palm"
FORMAT_VERSION = 1
NEW_ROW_INITS = ("mean", "random")


@dataclass
class PalmModel:
    """The extended causal LM, its tokenizer and free metadata (tokenizer specs, tasks, init)."""

    model: torch.nn.Module  # HF *ForCausalLM over the combined vocabulary
    tokenizer: PalmTokenizer
    meta: dict = field(default_factory=dict)

    @property
    def vocab(self) -> PalmVocab:
        return self.tokenizer.vocab


def resolve_init(spec: str | Path) -> str:
    """A text LM spec: a hub id, a HF folder, or a `soundlm train textlm` run folder (its `final/`)."""
    path = Path(spec)
    if path.is_dir() and not (path / "config.json").is_file() and (path / "final" / "config.json").is_file():
        return str(path / "final")
    return str(spec)


def _load_hf_causal_lm(spec: str | Path, from_scratch: bool, seed: int, dtype: torch.dtype) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(spec)
    if path.exists() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{spec}: no config.json; pass a Hugging Face causal LM folder (save_pretrained, "
                                "e.g. one made by `soundlm train textlm`) or a hub id")
    try:
        if from_scratch:
            config = AutoConfig.from_pretrained(str(spec))
            torch.manual_seed(seed)
            return AutoModelForCausalLM.from_config(config, dtype=dtype)
        return AutoModelForCausalLM.from_pretrained(str(spec), dtype=dtype)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{spec}: cannot load a causal LM ({e}); pass a local folder written by "
                                "save_pretrained or a hub id available offline") from None


@torch.no_grad()
def append_token_rows(model: Any, num_new: int, init: str = "mean", seed: int = 0) -> None:
    """Grow the input embeddings (and an untied output head) by `num_new` rows, keeping the old rows.

    init "mean": the mean of the old rows plus small noise (so new tokens start where text
    tokens are on average, yet stay distinguishable); "random": normal with the model's
    initializer_range.
    """
    if init not in NEW_ROW_INITS:
        raise ValueError(f"new row init must be one of {NEW_ROW_INITS}, got {init!r}")
    emb = model.get_input_embeddings()
    old = emb.num_embeddings
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    old_head = None if head is None or tied else head.weight.detach().clone()  # [V_old, H]
    old_bias = None if head is None or tied or getattr(head, "bias", None) is None else head.bias.detach().clone()
    # mean_resizing=False: we initialise the new rows ourselves, reproducibly from `seed`.
    model.resize_token_embeddings(old + num_new, mean_resizing=False)
    gen = torch.Generator().manual_seed(seed)
    std = float(getattr(model.config, "initializer_range", 0.02))

    def fill(weight: torch.Tensor, reference: torch.Tensor) -> None:
        shape = (num_new, weight.shape[1])
        noise = torch.randn(shape, generator=gen).to(weight.dtype)
        if init == "mean":
            ref = reference.float()
            weight[old:] = (ref.mean(0, keepdim=True) + noise.float() * ref.std() * 0.1).to(weight.dtype)
        else:
            weight[old:] = noise * std

    new_emb = model.get_input_embeddings().weight  # [V_old + N, H]
    fill(new_emb, new_emb[:old])
    new_head = model.get_output_embeddings()
    if old_head is not None and new_head is not None and new_head.weight is not new_emb:
        # resize keeps the old rows, but make sure of it: the text logits must not change.
        new_head.weight[:old] = old_head
        fill(new_head.weight, old_head)
        if old_bias is not None and getattr(new_head, "bias", None) is not None:
            new_head.bias[:old] = old_bias
            new_head.bias[old:] = old_bias.mean()


def extend_causal_lm(init: str | Path, languages: list[str], semantic_size: int, codebook_size: int = 0,
                     num_codebooks: int = 0, tokenizer: str | Path | None = None, from_scratch: bool = False,
                     new_rows: str = "mean", seed: int = 0, dtype: torch.dtype = torch.float32) -> PalmModel:
    """A causal LM (hub id or folder) with the AudioPaLM vocabulary appended to its text ids.

    tokenizer: text tokenizer spec (default: the same folder / hub id as `init`).
    from_scratch: same architecture, random weights (tokenizer and vocabulary unchanged).
    """
    init = resolve_init(init)
    text_tok = load_text_tokenizer(tokenizer if tokenizer is not None else init)
    model = _load_hf_causal_lm(init, from_scratch, seed, dtype)
    text_size = model.get_input_embeddings().num_embeddings
    vocab = PalmVocab.build(text_size, languages, semantic_size, codebook_size, num_codebooks)
    palm_tok = PalmTokenizer(vocab, text_tok)
    append_token_rows(model, vocab.num_new_tokens, new_rows, seed)
    meta = {"init": str(init), "from_scratch": from_scratch, "new_rows": new_rows}
    return PalmModel(model=model, tokenizer=palm_tok, meta=meta)


# ---- folders -------------------------------------------------------------------------------
def write_palm_files(palm: PalmModel, folder: str | Path) -> None:
    """Write a palm model into an existing folder (checkpoint writers own the folder)."""
    from safetensors.torch import save_model

    folder = Path(folder)
    cfg = {"type": MODEL_TYPE, "format_version": FORMAT_VERSION, "hf_config": palm.model.config.to_dict(),
           "meta": palm.meta}
    palm.tokenizer.save(folder)
    # save_model handles tied weights (shared tensors), which save_file refuses.
    save_model(palm.model, str(folder / "model.safetensors"))
    write_json_atomic(folder / "config.json", cfg)


def save_palm(palm: PalmModel, folder: str | Path) -> Path:
    """Write a palm model folder atomically (replaces `folder` as a whole)."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        write_palm_files(palm, tmp)
    return folder


def resolve_model_folder(path: str | Path) -> Path:
    """A palm model folder, a run folder (its `final/`, else its latest checkpoint)."""
    from soundlm.checkpoint import resolve_model_folder as resolve

    folder = resolve(path)  # checkpoints hold config.json too (write_palm_files)
    if folder is not None:
        return folder
    raise FileNotFoundError(f"{path}: not a palm model folder or run folder (no config.json, final/ or "
                            "checkpoints/); train one with `soundlm train palm --out RUN`")


def load_palm(path: str | Path, device: torch.device | str = "cpu") -> PalmModel:
    """Load a palm model folder or a run folder (see `resolve_model_folder`)."""
    from safetensors.torch import load_model
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = resolve_model_folder(path)
    try:
        cfg = read_json(folder / "config.json")
    except json.JSONDecodeError as e:
        raise ValueError(f"{folder / 'config.json'} is not valid JSON ({e}); re-export the model") from None
    if cfg.get("type") != MODEL_TYPE:
        raise ValueError(f"{folder / 'config.json'} has type {cfg.get('type')!r}, not {MODEL_TYPE!r}; pass a "
                         "folder written by `soundlm train palm`")
    if int(cfg.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{folder}: palm format {cfg['format_version']} is newer than this soundlm reads; upgrade")
    tokenizer = PalmTokenizer.load(folder)
    hf_cfg = dict(cfg["hf_config"])
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg))
    if model.get_input_embeddings().num_embeddings != tokenizer.vocab.vocab_size:
        raise ValueError(f"{folder}: the model has {model.get_input_embeddings().num_embeddings} token rows but "
                         f"palm_vocab.json describes {tokenizer.vocab.vocab_size}; the folder is inconsistent")
    load_model(model, str(folder / "model.safetensors"), device=str(device))
    return PalmModel(model=model.to(device).eval(), tokenizer=tokenizer, meta=dict(cfg.get("meta") or {}))
