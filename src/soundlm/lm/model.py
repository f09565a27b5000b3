"""The decoder-only transformer of each AudioLM stage.

Two model classes, one behaviour each:

- `TokenLM`: one token stream over the global vocabulary (`vocab.VocabLayout`); used by
  the semantic, coarse and fine stages (AudioLM flattening). It wraps a Hugging Face
  causal LM, by default `LlamaForCausalLM` built from our `LMConfig`, or any local
  pretrained causal LM folder (`TokenLM.from_hf_pretrained`), so training gets SDPA /
  flash attention, gradient checkpointing, PEFT and FSDP from `transformers`.
- `DelayLM`: MusicGen's delay pattern: K codebooks per step, one embedding table and one
  output head per codebook (embeddings summed at the input), over an HF `LlamaModel`.

Stage folders: `config.json` (with `"type"`: "token_lm" or "delay_lm") and
`model.safetensors`, written atomically by `save_lm` and read by `load_lm`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from soundlm.fileio import atomic_dir, read_json, write_json_atomic
from soundlm.lm.cache import KVCache
from soundlm.lm.decoder import LlamaDecoder, supports
from soundlm.lm.quantize import linear_rows
from soundlm.patterns import delay_inputs  # noqa: F401  (re-exported: DelayLM's input convention)
from soundlm.vocab import VocabLayout

FORMAT_VERSION = 1
IGNORE_INDEX = -100


@dataclass
class LMConfig:
    """Size of a Llama-style decoder. `num_kv_heads=None` means plain multi-head attention."""

    vocab_size: int
    hidden_size: int = 512
    num_layers: int = 6
    num_heads: int = 8
    num_kv_heads: int | None = None
    intermediate_size: int = 1408
    max_positions: int = 2048
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    dropout: float = 0.0
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.vocab_size <= 0:
            raise ValueError(f"vocab_size must be > 0, got {self.vocab_size}; use VocabLayout.vocab_size")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads {self.num_heads} must be a multiple of num_kv_heads {kv}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"head size {self.hidden_size // self.num_heads} must be even for rotary embeddings")

    def to_hf(self):
        """The equivalent `transformers.LlamaConfig`."""
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                           intermediate_size=self.intermediate_size, num_hidden_layers=self.num_layers,
                           num_attention_heads=self.num_heads,
                           num_key_value_heads=self.num_kv_heads or self.num_heads,
                           max_position_embeddings=self.max_positions, rope_theta=self.rope_theta,
                           rms_norm_eps=self.rms_norm_eps, attention_dropout=self.dropout,
                           tie_word_embeddings=self.tie_embeddings, bos_token_id=None, eos_token_id=None,
                           pad_token_id=None, attn_implementation="sdpa")

    @classmethod
    def from_dict(cls, d: dict) -> "LMConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown LMConfig keys {sorted(unknown)}; was this written by a newer soundlm?")
        return cls(**d)


# ---- presets ---------------------------------------------------------------------------
def lm_tiny(vocab_size: int, max_positions: int = 512) -> LMConfig:
    """~0.1M parameters plus embeddings: unit tests."""
    return LMConfig(vocab_size, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=176,
                    max_positions=max_positions)


def lm_micro(vocab_size: int, max_positions: int = 1024) -> LMConfig:
    """~1.2M parameters plus tied embeddings (hidden 160, 4 layers, 4 heads): the shipped fine stage, whose
    task (5 fine codebooks given 3 coarse ones of the same frame) is local and needs little capacity."""
    return LMConfig(vocab_size, hidden_size=160, num_layers=4, num_heads=4, intermediate_size=432,
                    max_positions=max_positions, tie_embeddings=True)


def lm_mini(vocab_size: int, max_positions: int = 1024) -> LMConfig:
    """~3M parameters plus tied embeddings (hidden 256, 4 layers, 4 heads): the shipped CPU-trained model."""
    return LMConfig(vocab_size, hidden_size=256, num_layers=4, num_heads=4, intermediate_size=688,
                    max_positions=max_positions, tie_embeddings=True)


def lm_small(vocab_size: int, max_positions: int = 2048) -> LMConfig:
    """~19M parameters plus embeddings (hidden 512, 6 layers, 8 heads): CPU experiments."""
    return LMConfig(vocab_size, hidden_size=512, num_layers=6, num_heads=8, intermediate_size=1408,
                    max_positions=max_positions)


def lm_base(vocab_size: int, max_positions: int = 2048) -> LMConfig:
    """~0.3B parameters per stage (hidden 1024, 24 layers, 16 heads), AudioLM's size."""
    return LMConfig(vocab_size, hidden_size=1024, num_layers=24, num_heads=16, intermediate_size=2816,
                    max_positions=max_positions)


LM_PRESETS: dict[str, Callable[..., LMConfig]] = {"tiny": lm_tiny, "micro": lm_micro, "mini": lm_mini,
                                                  "small": lm_small, "base": lm_base}


def lm_preset(name: str, vocab_size: int, max_positions: int | None = None) -> LMConfig:
    """The preset called `name` (`--preset`), with its own context length unless one is given."""
    if name not in LM_PRESETS:
        raise ValueError(f"--preset must be one of {', '.join(LM_PRESETS)}, got {name!r}")
    if max_positions is None:
        return LM_PRESETS[name](vocab_size)
    return LM_PRESETS[name](vocab_size, max_positions=max_positions)


@dataclass
class LMOutput:
    logits: torch.Tensor  # [B, T, V] (TokenLM) or [B, K, T, card] (DelayLM)
    loss: torch.Tensor | None = None


# ---- single-stream LM ------------------------------------------------------------------
class TokenLM(nn.Module):
    """A causal LM over global ids [B, T]; wraps an HF `*ForCausalLM` as `self.hf`.

    layout: the vocabulary layout the ids follow (stored in the stage folder).
    meta: free JSON-able stage metadata (stage name, num_coarse, window frames, ...).
    """

    def __init__(self, hf_model: nn.Module, layout: VocabLayout | None = None, meta: dict | None = None,
                 lm_config: LMConfig | None = None):
        super().__init__()
        self.hf = hf_model
        self.layout = layout
        self.meta = dict(meta or {})
        self.lm_config = lm_config
        if layout is not None and layout.vocab_size > self.vocab_size:
            raise ValueError(f"layout needs {layout.vocab_size} ids but the model has {self.vocab_size}; "
                             "build the model with vocab_size=layout.vocab_size")
        self._decoder: LlamaDecoder | None = None

    @classmethod
    def from_config(cls, config: LMConfig, layout: VocabLayout | None = None,
                    meta: dict | None = None) -> "TokenLM":
        """A randomly initialised `LlamaForCausalLM` of the given size."""
        from transformers import LlamaForCausalLM

        return cls(LlamaForCausalLM(config.to_hf()), layout=layout, meta=meta, lm_config=config)

    @classmethod
    def from_hf_pretrained(cls, path: str | Path, vocab_size: int | None = None, layout: VocabLayout | None = None,
                           meta: dict | None = None, dtype: torch.dtype = torch.float32) -> "TokenLM":
        """A local pretrained causal LM folder (HF `save_pretrained` layout).

        vocab_size: resize the token embeddings (e.g. a text LM extended with audio tokens,
        AudioPaLM style); defaults to layout.vocab_size when a layout is given.
        """
        from transformers import AutoModelForCausalLM

        path = Path(path)
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"{path} has no config.json; pass a folder written by save_pretrained")
        hf = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        target = vocab_size or (layout.vocab_size if layout is not None else None)
        if target is not None and target != hf.get_input_embeddings().num_embeddings:
            hf.resize_token_embeddings(target)
        return cls(hf, layout=layout, meta=meta)

    # ---- properties --------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.hf.get_input_embeddings().num_embeddings

    @property
    def max_positions(self) -> int:
        return int(self.hf.config.max_position_embeddings)

    @property
    def backbone(self) -> nn.Module:
        return self.hf.base_model if hasattr(self.hf, "base_model") else self.hf.model

    # ---- training ----------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> LMOutput:
        """tokens [B, T] -> logits [B, T, V]; with labels [B, T] also the next-token loss.

        labels[:, t] is the target of position t-1 (same convention as tokens, shifted
        here); IGNORE_INDEX (-100) positions do not count.
        """
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be [B, T], got shape {tuple(tokens.shape)}")
        if tokens.shape[1] > self.max_positions:
            raise ValueError(f"sequence of {tokens.shape[1]} tokens exceeds max_positions {self.max_positions}; "
                             "crop or window the sequences")
        logits = self.hf(input_ids=tokens, attention_mask=attention_mask, use_cache=False).logits  # [B, T, V]
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                   labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
        return LMOutput(logits, loss)

    # ---- decoding hooks (used by lm.generate) --------------------------------------------
    @property
    def fast_decoding(self) -> bool:
        """Whether `new_cache`/`step` run our cached decoder (else generation falls back to HF)."""
        return supports(self.backbone)

    def decoder(self) -> LlamaDecoder:
        if self._decoder is None or self._decoder.backbone is not self.backbone:
            self._decoder = LlamaDecoder(self.backbone)
        return self._decoder

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        return self.decoder().new_cache(batch_size, max_len or self.max_positions)

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, cache: KVCache, start: int,
             rows: tuple[int, int] | None = None) -> torch.Tensor:
        """Feed tokens [B, T] at positions start.. through the cache; logits of the last one [B, V].

        rows: (lo, hi) computes only the logits of ids lo..hi-1, [B, hi-lo]: constrained decoding
        reads just those rows of the output head (a 1024-code slice of the fine stage's 8196).
        """
        x = self.hf.get_input_embeddings()(tokens)  # [B, T, H]
        h = self.decoder()(x, cache, start)[:, -1]  # [B, H]
        head = self.hf.get_output_embeddings()
        if rows is None:
            return head(h)  # [B, V]
        lo, hi = rows
        if not 0 <= lo < hi <= self.vocab_size:
            raise ValueError(f"rows [{lo}, {hi}) are empty or outside the vocabulary [0, {self.vocab_size})")
        return linear_rows(head, h, lo, hi)  # [B, hi-lo]

    @torch.inference_mode()
    def last_logits(self, tokens: torch.Tensor, left_pad: torch.Tensor | None = None) -> torch.Tensor:
        """Uncached HF forward, logits of the last position [B, V] (fallback decoding).

        left_pad: int64 [B] leading pad tokens per row (masked out; positions count after them).
        """
        if left_pad is None or not bool(left_pad.any()):
            return self.hf(input_ids=tokens, use_cache=False).logits[:, -1]
        mask = (torch.arange(tokens.shape[1], device=tokens.device)[None] >= left_pad[:, None]).long()  # [B, T]
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
        return self.hf(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=False).logits[:, -1]


# ---- delay-pattern LM ------------------------------------------------------------------
@dataclass
class DelayLMConfig:
    """K codebooks of `codebook_size` codes each; id `codebook_size` is the pad/start token.

    prefix_vocab_size > 0 adds a conditioning prefix stream (e.g. semantic ids) embedded
    by its own table and placed before the delayed codes.
    """

    num_codebooks: int
    codebook_size: int
    backbone: LMConfig = field(default_factory=lambda: lm_tiny(1))
    prefix_vocab_size: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = LMConfig.from_dict(self.backbone)
        if self.num_codebooks <= 0 or self.codebook_size <= 0:
            raise ValueError(f"num_codebooks and codebook_size must be > 0, got {self.num_codebooks}, "
                             f"{self.codebook_size}")

    @property
    def pad_id(self) -> int:
        return self.codebook_size


class DelayLM(nn.Module):
    """Predicts all K codebooks of a delayed step at once (MusicGen)."""

    def __init__(self, config: DelayLMConfig):
        super().__init__()
        from transformers import LlamaModel

        self.config = config
        hf_cfg = config.backbone.to_hf()
        # The backbone's own token table is unused (we pass inputs_embeds); keep it minimal.
        hf_cfg.vocab_size = 1
        self.backbone = LlamaModel(hf_cfg)
        h = config.backbone.hidden_size
        self.embeddings = nn.ModuleList(nn.Embedding(config.codebook_size + 1, h) for _ in range(config.num_codebooks))
        self.heads = nn.ModuleList(nn.Linear(h, config.codebook_size, bias=False)
                                   for _ in range(config.num_codebooks))
        self.prefix_embedding = (nn.Embedding(config.prefix_vocab_size, h) if config.prefix_vocab_size else None)
        self._decoder: LlamaDecoder | None = None

    @property
    def max_positions(self) -> int:
        return self.config.backbone.max_positions

    def embed(self, codes: torch.Tensor, prefix: torch.Tensor | None = None) -> torch.Tensor:
        """codes [B, K, S] (ids in [0, card], card = pad) (+ prefix [B, P]) -> [B, P+S, H]."""
        if codes.dim() != 3 or codes.shape[1] != self.config.num_codebooks:
            raise ValueError(f"codes must be [B, {self.config.num_codebooks}, S], got {tuple(codes.shape)}")
        x = sum(emb(codes[:, k]) for k, emb in enumerate(self.embeddings))  # [B, S, H]
        if prefix is not None:
            if self.prefix_embedding is None:
                raise ValueError("this DelayLM has no prefix stream; build it with prefix_vocab_size > 0")
            x = torch.cat([self.prefix_embedding(prefix), x], dim=1)  # [B, P+S, H]
        return x

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """Hidden [B, S, H] -> logits [B, K, S, card]."""
        return torch.stack([head(h) for head in self.heads], dim=1)

    def forward(self, codes: torch.Tensor, prefix: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> LMOutput:
        """Delayed input codes [B, K, S] -> logits [B, K, S, card] for the code positions.

        Input column s predicts label column s (build inputs as start column + labels
        shifted right: see `delay_inputs`). labels [B, K, S]: IGNORE_INDEX or pad id
        positions do not count.
        """
        p = 0 if prefix is None else prefix.shape[1]
        if p + codes.shape[2] > self.max_positions:
            raise ValueError(f"{p + codes.shape[2]} positions exceed max_positions {self.max_positions}")
        h = self.backbone(inputs_embeds=self.embed(codes, prefix), use_cache=False).last_hidden_state
        logits = self.project(h[:, p:])  # [B, K, S, card]
        loss = None
        if labels is not None:
            target = labels.masked_fill(labels == self.config.pad_id, IGNORE_INDEX)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
                                   ignore_index=IGNORE_INDEX)
        return LMOutput(logits, loss)

    # ---- decoding hooks ------------------------------------------------------------------
    def decoder(self) -> LlamaDecoder:
        if self._decoder is None:
            self._decoder = LlamaDecoder(self.backbone)
        return self._decoder

    def new_cache(self, batch_size: int, max_len: int | None = None) -> KVCache:
        return self.decoder().new_cache(batch_size, max_len or self.max_positions)

    @torch.inference_mode()
    def step(self, codes: torch.Tensor, cache: KVCache, start: int,
             prefix: torch.Tensor | None = None) -> torch.Tensor:
        """Feed (prefix +) delayed columns [B, K, S]; logits of the last position [B, K, card]."""
        h = self.decoder()(self.embed(codes, prefix), cache, start)  # [B, T, H]
        return self.project(h[:, -1:])[:, :, 0]  # [B, K, card]


# ---- stage folders -----------------------------------------------------------------------
def save_lm(model: TokenLM | DelayLM, folder: str | Path) -> Path:
    """Write config.json + model.safetensors into `folder` atomically (replaces it as a whole)."""
    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        write_lm_files(model, tmp)
    return folder


def write_lm_files(model: TokenLM | DelayLM, folder: str | Path) -> None:
    """Write the stage files into an existing folder (for checkpoint writers that own the folder)."""
    from safetensors.torch import save_model

    folder = Path(folder)
    if isinstance(model, TokenLM):
        cfg: dict = {"type": "token_lm", "format_version": FORMAT_VERSION, "meta": model.meta,
                     "layout": model.layout.to_dict() if model.layout is not None else None}
        if model.lm_config is not None:
            cfg["lm"] = asdict(model.lm_config)
        else:
            cfg["hf_config"] = model.hf.config.to_dict()
    elif isinstance(model, DelayLM):
        c = model.config
        cfg = {"type": "delay_lm", "format_version": FORMAT_VERSION, "num_codebooks": c.num_codebooks,
               "codebook_size": c.codebook_size, "prefix_vocab_size": c.prefix_vocab_size,
               "backbone": asdict(c.backbone)}
    else:
        raise ValueError(f"save_lm takes a TokenLM or DelayLM, got {type(model).__name__}")
    write_json_atomic(folder / "config.json", cfg)
    # save_model handles tied weights (shared tensors), which save_file refuses.
    save_model(model, str(folder / "model.safetensors"))


def load_lm(folder: str | Path, device: torch.device | str = "cpu") -> TokenLM | DelayLM:
    """Load a stage folder written by `save_lm` (or a training run's `final/` folder)."""
    folder = Path(folder)
    cfg_path, weights = folder / "config.json", folder / "model.safetensors"
    if not cfg_path.exists() or not weights.exists():
        raise FileNotFoundError(f"{folder} is not an LM stage folder (needs config.json and model.safetensors); "
                                "pass the folder written by save_lm or a run's final/ folder")
    try:
        cfg = read_json(cfg_path)
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON ({e}); the file is damaged, re-export the model") from None
    kind = cfg.get("type")
    if kind == "token_lm":
        layout = VocabLayout.from_dict(cfg["layout"]) if cfg.get("layout") else None
        if "lm" in cfg:
            model = TokenLM.from_config(LMConfig.from_dict(cfg["lm"]), layout=layout, meta=cfg.get("meta"))
        else:
            from transformers import AutoConfig, AutoModelForCausalLM

            hf_cfg = dict(cfg["hf_config"])
            hf = AutoModelForCausalLM.from_config(AutoConfig.for_model(hf_cfg.pop("model_type"), **hf_cfg))
            model = TokenLM(hf, layout=layout, meta=cfg.get("meta"))
    elif kind == "delay_lm":
        model = DelayLM(DelayLMConfig(num_codebooks=cfg["num_codebooks"], codebook_size=cfg["codebook_size"],
                                      backbone=LMConfig.from_dict(cfg["backbone"]),
                                      prefix_vocab_size=cfg.get("prefix_vocab_size", 0)))
    else:
        raise ValueError(f"{cfg_path} has type {kind!r}; expected 'token_lm' or 'delay_lm' "
                         "(is this a codec or tokenizer folder?)")
    load_stage_weights(model, weights)
    return model.to(device).eval()


def load_stage_weights(model: nn.Module, weights: Path) -> None:
    """model.safetensors into `model`: float tensors as they are, int8-packed matrices (`pack_int8`, from
    `export_bundle_fp16(..., lm_int8=True)`) dequantized; tied weights stored once, as `save_model` writes them."""
    from safetensors import safe_open
    from safetensors.torch import load_file, load_model

    from soundlm.lm.quantize import INT8_SUFFIX, unpack_int8

    with safe_open(str(weights), framework="pt") as f:
        packed = any(name.endswith(INT8_SUFFIX) for name in f.keys())
    if not packed:
        load_model(model, str(weights))
        return
    state = unpack_int8(load_file(str(weights)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # save_model keeps one name of tied tensors: a missing name must share storage with a loaded one.
    params = model.state_dict()
    loaded = {params[name].data_ptr() for name in state if name in params}
    untied = [name for name in missing if params[name].data_ptr() not in loaded]
    if unexpected or untied:
        raise ValueError(f"{weights} does not fit its config.json (missing {untied}, unexpected {unexpected}); "
                         "re-export the model")
