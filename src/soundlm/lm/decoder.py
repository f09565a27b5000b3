"""A compact inference forward over a Hugging Face Llama-family backbone, with `KVCache`.

Training uses the HF module as is (SDPA/flash attention, gradient checkpointing, PEFT,
FSDP). For decoding we run the same weights through this short loop instead: RMSNorm,
rotary embedding, SDPA over the preallocated cache, SwiGLU. It skips HF's per-call
bookkeeping (mask construction, cache objects, output dataclasses), which dominates at
batch 1 on CPU, and writes keys/values in place instead of growing a cache.

The weights are the HF module's own parameters (no copy), so a model keeps decoding with
its current weights during training. Architectures or wrappers this loop does not know
(e.g. a PEFT LoRA layer) are detected by `supports()`; generation then falls back to HF.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from soundlm.lm.cache import KVCache


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
        # type() is not isinstance(): LoRA and quantised layers subclass or wrap nn.Linear.
        if any(type(m) is not nn.Linear for m in linears):
            return False
        # HF uses its own SiLUActivation class in some versions, torch's nn.SiLU in others.
        if type(getattr(mlp, "act_fn", None)).__name__ not in ("SiLU", "SiLUActivation"):
            return False
        # Gemma-style q/k norms, sliding windows etc. are not implemented here.
        if hasattr(attn, "q_norm") or getattr(attn, "sliding_window", None):
            return False
    return True


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

    def new_cache(self, batch_size: int, max_len: int) -> KVCache:
        p = self.backbone.norm.weight
        return KVCache.allocate(self.num_layers, batch_size, self.num_kv_heads, max_len, self.head_dim,
                                dtype=p.dtype, device=p.device)

    def _rope_table(self, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cos is None or self._cos.shape[0] < length or self._cos.device != device or self._cos.dtype != dtype:
            # Same arithmetic as HF's rotary embedding (float32 outer product, cat(freqs, freqs)).
            inv_freq = self.backbone.rotary_emb.inv_freq.float().to(device)
            pos = torch.arange(max(length, 256), device=device, dtype=torch.float32)
            freqs = torch.outer(pos, inv_freq)  # [L, D/2]
            emb = torch.cat([freqs, freqs], dim=-1)  # [L, D]
            self._cos = (emb.cos() * self.scaling).to(dtype)
            self._sin = (emb.sin() * self.scaling).to(dtype)
        return self._cos, self._sin

    @torch.inference_mode()
    def forward(self, x: torch.Tensor, cache: KVCache, start: int) -> torch.Tensor:
        """x [B, T, H] at positions start..start+T-1 -> final-normed hidden states [B, T, H].

        Writes this chunk's keys/values into `cache` and sets `cache.pos` to start+T.
        """
        b, t, hidden = x.shape
        end = start + t
        cos, sin = self._rope_table(end, x.device, x.dtype)
        cos, sin = cos[start:end], sin[start:end]  # [T, D]
        mask = None
        if t > 1 and start > 0:
            # A chunk after earlier positions: query i sees keys 0..start+i.
            mask = torch.ones(t, end, dtype=torch.bool, device=x.device).tril(diagonal=start)
        gqa = self.num_kv_heads != self.num_heads
        for i, layer in enumerate(self.backbone.layers):
            attn, mlp = layer.self_attn, layer.mlp
            h = F.rms_norm(x, (hidden,), layer.input_layernorm.weight, self.eps)
            q = F.linear(h, attn.q_proj.weight, attn.q_proj.bias).view(b, t, self.num_heads, self.head_dim)
            k = F.linear(h, attn.k_proj.weight, attn.k_proj.bias).view(b, t, self.num_kv_heads, self.head_dim)
            v = F.linear(h, attn.v_proj.weight, attn.v_proj.bias).view(b, t, self.num_kv_heads, self.head_dim)
            q = _rotate(q.transpose(1, 2), cos, sin)  # [B, nh, T, D]
            k = _rotate(k.transpose(1, 2), cos, sin)  # [B, nkv, T, D]
            keys, values = cache.write(i, k, v.transpose(1, 2), start)  # [B, nkv, end, D]
            a = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, is_causal=(t > 1 and start == 0),
                                               enable_gqa=gqa)  # [B, nh, T, D]
            a = a.transpose(1, 2).reshape(b, t, self.num_heads * self.head_dim)
            x = x + F.linear(a, attn.o_proj.weight, attn.o_proj.bias)
            h = F.rms_norm(x, (hidden,), layer.post_attention_layernorm.weight, self.eps)
            gate = F.linear(h, mlp.gate_proj.weight, mlp.gate_proj.bias)
            up = F.linear(h, mlp.up_proj.weight, mlp.up_proj.bias)
            x = x + F.linear(F.silu(gate) * up, mlp.down_proj.weight, mlp.down_proj.bias)
        cache.pos.fill_(end)
        return F.rms_norm(x, (hidden,), self.backbone.norm.weight, self.eps)

    __call__ = forward


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in HF's rotate-half convention. x [B, h, T, D], cos/sin [T, D]."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin
