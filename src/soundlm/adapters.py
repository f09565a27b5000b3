"""LoRA adapters on the AudioLM stage LMs (PEFT): add them, merge them for decoding, save and load them alone.

Training wraps a stage's `TokenLM` or `DelayLM` with PEFT's LoRA layers (`add_lora`): the
base weights stay frozen and only the small A/B matrices of the attention and MLP
projections learn. PEFT swaps those `nn.Linear`s for its own layer type, which our KV-cached
decoder (`lm/decoder.py`) does not run, so generation with a wrapped model falls back to
uncached forwards. `merge_lora` folds W + (alpha / r) B A back into plain `nn.Linear`
weights (PEFT's `merge_and_unload`): the merged model is an ordinary stage model and
decodes at full speed.

A stage's adapters alone are a PEFT folder (`adapter_config.json` +
`adapter_model.safetensors`, what `PeftModel.from_pretrained` reads) of a few hundred kB;
an adapter bundle (`AdapterManifest`, adapters.json) names the base bundle they apply to and
the weights they were trained on, so they are never merged into another model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from soundlm.fileio import read_json, write_json_atomic

ADAPTER_CONFIG = "adapter_config.json"  # PEFT's names: the folder loads with PeftModel.from_pretrained
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTERS_JSON = "adapters.json"  # an adapter bundle's manifest
ADAPTERS_FORMAT = "soundlm-adapters"
# The Llama projections our stage LMs have (attention and MLP); embeddings and heads stay frozen.
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA's size: rank r, scale alpha / r, dropout on the adapter input, target projection names."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    targets: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA needs rank >= 1, alpha > 0 and dropout in [0, 1), got rank={self.rank}, "
                             f"alpha={self.alpha}, dropout={self.dropout}")
        if not self.targets:
            raise ValueError("LoRA needs at least one target module name (e.g. q_proj,v_proj)")

    def to_peft(self) -> Any:
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.targets), bias="none")

    def to_json(self) -> dict:
        return {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout, "targets": list(self.targets)}

    @classmethod
    def from_json(cls, data: dict) -> "LoraSettings":
        return cls(rank=int(data["rank"]), alpha=float(data["alpha"]), dropout=float(data["dropout"]),
                   targets=tuple(data["targets"]))


def add_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """`model` (a TokenLM or DelayLM) wrapped in a PEFT model whose LoRA weights alone train.

    PEFT injects its layers into `model` itself: calling `model` afterwards runs the adapters too.
    """
    from peft import get_peft_model

    found = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    missing = sorted(set(settings.targets) - found)
    if missing:
        raise ValueError(f"the model has no layers named {missing} for LoRA (its linear layers: "
                         f"{', '.join(sorted(found))}); choose targets among those")
    return get_peft_model(model, settings.to_peft())


def is_wrapped(model: nn.Module) -> bool:
    """Whether `model` is a PEFT model (or holds PEFT's LoRA layers)."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    return isinstance(model, PeftModel) or any(isinstance(m, LoraLayer) for m in model.modules())


def merge_lora(peft_model: nn.Module) -> nn.Module:
    """Fold the adapters into the base weights; returns the base model with plain nn.Linear layers.

    The returned TokenLM/DelayLM runs the KV-cached decoder again (`fast_decoding`).
    """
    merged = peft_model.merge_and_unload()
    # A decoder built while the LoRA layers were in place holds references to them.
    if hasattr(merged, "_decoder"):
        merged._decoder = None
    return merged


def adapter_state(peft_model: nn.Module) -> dict[str, torch.Tensor]:
    """The trainable LoRA tensors of a PEFT model, named as PEFT saves them (CPU copies)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(peft_model).items()}


def load_adapter_state(peft_model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Put `adapter_state` tensors back into a PEFT model of the same settings."""
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(peft_model, state)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise ValueError(f"adapter weights do not fit this model (unexpected {unexpected[:3]}); were they trained "
                         "with other LoRA settings or another stage?")


def save_adapters(peft_model: nn.Module, folder: str | Path, state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a PEFT adapter folder (adapter_config.json + adapter_model.safetensors) into `folder`.

    state: adapter tensors to write instead of the model's current ones (e.g. the best ones).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = state if state is not None else adapter_state(peft_model)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / ADAPTER_WEIGHTS),
              metadata={"format": "pt"})
    peft_model.peft_config["default"].save_pretrained(str(folder))
    return folder


def load_adapters(model: nn.Module, folder: str | Path, merge: bool = True) -> nn.Module:
    """Apply the adapter folder `folder` to `model`; merged into its weights unless `merge=False`."""
    from peft import PeftModel

    folder = Path(folder)
    if not (folder / ADAPTER_CONFIG).is_file() or not (folder / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder}: not an adapter folder (needs {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}); "
                                "pass a folder written by `soundlm finetune --save adapters`")
    peft_model = PeftModel.from_pretrained(model, str(folder))
    return merge_lora(peft_model) if merge else peft_model


def weights_fingerprint(path: str | Path) -> str:
    """sha256 of a weights file: which base an adapter was trained on."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class AdapterManifest:
    """adapters.json of an adapter bundle: the base it applies to and, per stage, its adapter folder.

    base: where the base bundle loads from (a folder, the shipped model's name, a hub id);
    fingerprints: stage -> sha256 of the base stage's model.safetensors the adapters were trained on.
    """

    base: str
    stages: list[str]
    lora: LoraSettings
    fingerprints: dict[str, str] = field(default_factory=dict)
    version: int = 1

    def to_json(self) -> dict:
        return {"format": ADAPTERS_FORMAT, "version": self.version, "base": self.base, "stages": list(self.stages),
                "lora": self.lora.to_json(), "fingerprints": dict(self.fingerprints)}

    @classmethod
    def from_json(cls, data: dict, where: str | Path) -> "AdapterManifest":
        if not isinstance(data, dict) or data.get("format") != ADAPTERS_FORMAT:
            raise ValueError(f"{where}: not a soundlm adapter manifest (format {ADAPTERS_FORMAT!r}); write one with "
                             "`soundlm finetune --save adapters`")
        missing = [k for k in ("base", "stages", "lora") if k not in data]
        if missing:
            raise ValueError(f"{where}: adapter manifest lacks {missing}; re-export the adapters")
        return cls(base=str(data["base"]), stages=list(data["stages"]), lora=LoraSettings.from_json(data["lora"]),
                   fingerprints=dict(data.get("fingerprints") or {}), version=int(data.get("version", 1)))

    def write(self, folder: str | Path) -> None:
        write_json_atomic(Path(folder) / ADAPTERS_JSON, self.to_json())

    @classmethod
    def read(cls, folder: str | Path) -> "AdapterManifest":
        path = Path(folder) / ADAPTERS_JSON
        if not path.is_file():
            raise FileNotFoundError(f"{folder}: no {ADAPTERS_JSON}; not an adapter bundle")
        return cls.from_json(read_json(path), path)


def is_adapter_bundle(folder: str | Path) -> bool:
    return (Path(folder) / ADAPTERS_JSON).is_file()
