"""A compact inference forward over a Hugging Face Llama-family backbone, with `KVCache`.

Training uses the HF module as is (SDPA/flash attention, gradient checkpointing, PEFT,
FSDP). For decoding we run the same weights through this short loop instead: RMSNorm,
rotary embedding, SDPA over the preallocated cache, SwiGLU. It skips HF's per-call
bookkeeping (mask construction, cache objects, output dataclasses), which dominates at
batch 1 on CPU, and writes keys/values in place instead of growing a cache.

The weights are the HF module's own parameters (no copy), so a model keeps decoding with
its current weights during training. `Int8Linear` layers (`lm.quantize`, inference only)
run their int8 kernel, with q/k/v and gate/up stacked into one call each: the int8 call
costs more than a float matmul of these small sizes, so fewer calls pay (10-25% of a step
of the shipped model, measured); stacking float weights saved 3 us a layer, not worth a
second copy of them. Architectures or wrappers this loop does not know (e.g. a PEFT LoRA
layer) are detected by `supports()`; generation then falls back to HF.

Left padding: a cache whose `left_pad` is set holds rows whose first positions are
padding; each row's rotary positions count from its first real token and no query attends
to a pad key, so a padded row decodes as it would alone (up to float rounding).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from soundlm.lm.cache import KVCache
from soundlm.lm.quantize import Int8Linear

_LINEARS = (nn.Linear, Int8Linear)


def supports(backbone: nn.Module) -> bool:
    """Whether `backbone` (an HF `LlamaModel`-like module) can run through `LlamaDecoder`."""
    layers = getattr(backbone, "layers", None)
    if layers is None or not hasattr(backbone, "norm") or not hasattr(backbone, "rotary_emb"):
        return False
    if not hasattr(backbone.rotary_emb, "inv_freq"):
        return False
    for layer in layers:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if attn is None or mlp is None:
            return False
        linears = [getattr(attn, n, None) for n in ("q_proj", "k_proj", "v_proj", "o_proj")]
        linears += [getattr(mlp, n, None) for n in ("gate_proj", "up_proj", "down_proj")]
        # type() is not isinstance(): LoRA and other quantised layers subclass or wrap nn.Linear.
        if any(type(m) not in _LINEARS for m in linears):
            return False
        # HF uses its own SiLUActivation class in some versions, torch's nn.SiLU in others.
        if type(getattr(mlp, "act_fn", None)).__name__ not in ("SiLU", "SiLUActivation"):
            return False
        # Gemma-style q/k norms, sliding windows etc. are not implemented here.
        if hasattr(attn, "q_norm") or getattr(attn, "sliding_window", None):
            return False
    return True


@dataclass
class _Layer:
    """One block as the decoder runs it: q/k/v and gate/up each one layer (stacked rows)."""

    qkv: nn.Module  # rows q (nh*D), k (nkv*D), v (nkv*D)
    o_proj: nn.Module
    gate_up: nn.Module  # rows gate (I), up (I)
    down_proj: nn.Module
    input_norm: nn.Module
    post_norm: nn.Module


def _stack(linears: list[nn.Module]) -> nn.Module:
    """Several layers with one input as one: Int8Linear rows stacked into one (a copy), else run in turn."""
    if all(type(m) is Int8Linear for m in linears):
        bias = None
        if any(m.bias is not None for m in linears):
            bias = torch.cat([m.bias if m.bias is not None else m.scale.new_zeros(m.out_features, dtype=torch.float32)
                              for m in linears])
        return Int8Linear(torch.cat([m.qweight for m in linears]), torch.cat([m.scale for m in linears]), bias)
    return _Concat(linears)


class _Concat(nn.Module):
    """Layers applied to one input, outputs concatenated (their own weights: no copy)."""

    def __init__(self, linears: list[nn.Module]):
        super().__init__()
        self.parts = linears

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([_linear(m, x) for m in self.parts], dim=-1)


def _modules_key(backbone: nn.Module) -> tuple[int, ...]:
    """Identity of every module a `_Layer` refers to (changes when `quantize_lm` swaps one)."""
    return tuple(id(m) for layer in backbone.layers
                 for m in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
                           layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj))


class LlamaDecoder:
    """Cached forward over an HF Llama-family backbone: embeddings in, final hidden states out."""

    def __init__(self, backbone: nn.Module):
        if not supports(backbone):
            raise ValueError(f"{type(backbone).__name__} is not a Llama-family backbone this decoder can run; "
                             "use the Hugging Face forward instead")
        self.backbone = backbone
        cfg = backbone.config
        self.num_heads = cfg.num_attention_heads
        self.num_kv_heads = getattr(cfg, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.num_heads
        self.num_layers = len(backbone.layers)
        self.eps = backbone.norm.variance_epsilon
        self.scaling = float(getattr(backbone.rotary_emb, "attention_scaling", 1.0))
        self._cos = self._sin = None
        self._layers: list[_Layer] = []
        self._layers_key: tuple | None = None

    def layers(self) -> list[_Layer]:
        """The blocks as `forward` runs them, rebuilt when a layer was swapped (e.g. by `quantize_lm`)."""
        key = _modules_key(self.backbone)
        if key != self._layers_key:
            self._layers = [_Layer(_stack([b.self_attn.q_proj, b.self_attn.k_proj, b.self_attn.v_proj]),
                                   b.self_attn.o_proj, _stack([b.mlp.gate_proj, b.mlp.up_proj]), b.mlp.down_proj,
                                   b.input_layernorm, b.post_attention_layernorm)
                            for b in self.backbone.layers]
            self._layers_key = key
        return self._layers

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        p = self.backbone.norm.weight
        return KVCache.allocate(self.num_layers, batch_size, self.num_kv_heads, max_len, self.head_dim,
                                dtype=p.dtype, device=p.device)

    def _rope_table(self, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cos is None or self._cos.shape[0] < length or self._cos.device != device or self._cos.dtype != dtype:
            # Built once for the whole context (rebuilding it as positions grow would cost a step each time).
            size = max(length, int(getattr(self.backbone.config, "max_position_embeddings", 0) or 0), 256)
            # Same arithmetic as HF's rotary embedding (float32 outer product, cat(freqs, freqs)).
            inv_freq = self.backbone.rotary_emb.inv_freq.float().to(device)
            pos = torch.arange(size, device=device, dtype=torch.float32)
            freqs = torch.outer(pos, inv_freq)  # [L, D/2]
            emb = torch.cat([freqs, freqs], dim=-1)  # [L, D]
            self._cos = (emb.cos() * self.scaling).to(dtype)
            # rotate_half(x) = cat(-x2, x1) = roll(x, D/2) * [-1.., +1..]: the sign lives in the sin table.
            sign = torch.cat([-torch.ones(emb.shape[1] // 2), torch.ones(emb.shape[1] // 2)]).to(device)
            self._sin = (emb.sin() * self.scaling * sign).to(dtype)
        return self._cos, self._sin

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
        """x [B, T, H] at positions start..start+T-1 -> final-normed hidden states [B, T, H].

        Writes this chunk's keys/values into `cache` and sets `cache.pos` to start+T.
        """
        b, t, hidden = x.shape
        end = start + t
        cos, sin = self._rope_table(end, x.device, x.dtype)
        mask = None
        if cache.left_pad is not None:
            # Row r's positions count from its first real token; its pad keys are never attended to,
            # except that a pad query sees itself (a query with no key at all gives NaN in SDPA).
            pad = cache.left_pad  # [B]
            positions = (torch.arange(start, end, device=x.device)[None] - pad[:, None]).clamp(min=0)  # [B, T]
            cos, sin = cos[positions][:, None], sin[positions][:, None]  # [B, 1, T, D]
            query = torch.arange(start, end, device=x.device)[:, None]  # [T, 1]
            key = torch.arange(end, device=x.device)[None]  # [1, end]
            mask = ((key <= query) & (key >= pad[:, None, None, None])) | (key == query)  # [B, 1, T, end]
        else:
            cos, sin = cos[start:end], sin[start:end]  # [T, D]
            if t > 1 and start > 0:
                # A chunk after earlier positions: query i sees keys 0..start+i.
                mask = torch.ones(t, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        causal = mask is None and t > 1
        gqa = self.num_kv_heads != self.num_heads
        nh, nkv, d = self.num_heads, self.num_kv_heads, self.head_dim
        for i, layer in enumerate(self.layers()):
            h = F.rms_norm(x, (hidden,), layer.input_norm.weight, self.eps)
            qkv = _linear(layer.qkv, h).view(b, t, nh + 2 * nkv, d).transpose(1, 2)  # [B, nh+2nkv, T, D]
            qk = _rotate(qkv[:, :nh + nkv], cos, sin)  # q and k heads in one go
            keys, values = cache.write(i, qk[:, nh:], qkv[:, nh + nkv:], start)  # [B, nkv, end, D]
            a = F.scaled_dot_product_attention(qk[:, :nh], keys, values, attn_mask=mask, is_causal=causal,
                                               enable_gqa=gqa)  # [B, nh, T, D]
            a = a.transpose(1, 2).reshape(b, t, nh * d)
            x = x + _linear(layer.o_proj, a)
            h = F.rms_norm(x, (hidden,), layer.post_norm.weight, self.eps)
            gate, up = _linear(layer.gate_up, h).chunk(2, dim=-1)
            x = x + _linear(layer.down_proj, F.silu(gate) * up)
        cache.pos.fill_(end)
        return F.rms_norm(x, (hidden,), self.backbone.norm.weight, self.eps)

    __call__ = forward


def _linear(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An nn.Linear or Int8Linear applied without nn.Module's call machinery (hooks are not used here)."""
    if type(layer) is nn.Linear:
        return F.linear(x, layer.weight, layer.bias)
    return layer.forward(x)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in HF's rotate-half convention. x [B, h, T, D], cos/sin [T, D] (sin signed, see
    `_rope_table`)."""
    return x * cos + torch.roll(x, x.shape[-1] // 2, dims=-1) * sin
