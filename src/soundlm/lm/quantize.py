"""Fewer bytes per decoding step: weight-only int8 or bf16 copies of an LM for inference.

At batch 1 a decoding step reads every weight matrix once, so its time follows the bytes
it reads (`bench/generate.py`'s bandwidth floor). `quantize_lm(model, "int8")` swaps each
`nn.Linear` of the transformer blocks and the output head(s) for an `Int8Linear`: int8
weights with one scale per output row (symmetric, absmax / 127), a quarter of fp32's
bytes; the matmul is torch's weight-only int8 kernel (`torch._weight_int8pack_mm`, the
one torchao's int8 weight-only mode uses), which takes bf16 activations and returns bf16.
`quantize_lm(model, "bf16")` casts the whole model to bfloat16 (half the bytes).

Embedding tables stay as they are (a step reads one row). A quantized model is for
inference: the HF forward (held-out loss, `soundlm eval lm --quantize`) and the cached
decoder (`lm.generate`) both run the quantized weights, so the loss measured is the loss
of what generates. It is not for training: the int8 weights are buffers, not parameters.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Quantize = Literal["none", "bf16", "int8"]
QUANTIZE_MODES: tuple[str, ...] = ("none", "bf16", "int8")
# What the generation commands use unless told: int8 on CPU (held-out bits per token within
# 0.1% of fp32 for every stage of the shipped model, and fewer bytes per step), none elsewhere.
DEFAULT_QUANTIZE = "auto"


class Int8Linear(nn.Module):
    """y = x @ (q * scale).T + bias with q int8 [N, K] and scale [N] (weight-only quantization)."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.register_buffer("qweight", qweight)  # [N, K] int8
        self.register_buffer("scale", scale)  # [N] bf16, the kernel's scale dtype
        self.register_buffer("bias", bias)  # [N] float32 or None
        self.in_features, self.out_features = qweight.shape[1], qweight.shape[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        q, scale = int8_rows(linear.weight.detach())
        bias = linear.bias.detach().float().clone() if linear.bias is not None else None
        return cls(q, scale, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rows(x, 0, self.out_features)

    def rows(self, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
        """Output features lo..hi-1 only, [..., hi-lo] float32 (the head's allowed ids)."""
        shape = x.shape[:-1]
        y = torch._weight_int8pack_mm(x.reshape(-1, self.in_features).to(torch.bfloat16), self.qweight[lo:hi],
                                      self.scale[lo:hi]).float()  # [M, hi-lo]
        if self.bias is not None:
            y = y + self.bias[lo:hi]
        return y.view(*shape, hi - lo)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weights"


def int8_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row absmax int8 of a [N, K] matrix: q int8 [N, K] and scale bf16 [N], weight ~ q * scale.

    Quantizing `q * scale` again gives back the same q and scale exactly (q's row absmax is
    127, so the row's absmax is 127 * scale, exact in float32), so an int8-stored bundle
    (`pack_int8`) decodes with int8 weights identical to those of the float bundle it was made from.
    """
    w = weight.float()
    # The largest weight of a row maps to +-127 (float32 scale); the kernel takes the scale in bf16.
    scale = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)  # [N]
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q.contiguous(), scale.to(torch.bfloat16)


# int8 storage of a stage's float matrices (`pack_int8` / `unpack_int8`): "NAME" becomes these two tensors.
INT8_SUFFIX, SCALE_SUFFIX = "::int8", "::int8_scale"
PACK_MIN_NUMEL = 16384  # smaller matrices (and vectors) stay float: they weigh little


def pack_int8(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """A state dict with each float matrix of >= PACK_MIN_NUMEL values stored as int8 rows + bf16 scales;
    returns it and how many matrices were packed."""
    out, packed = {}, 0
    for name, t in tensors.items():
        if t.is_floating_point() and t.dim() == 2 and t.numel() >= PACK_MIN_NUMEL:
            out[name + INT8_SUFFIX], out[name + SCALE_SUFFIX] = int8_rows(t)
            packed += 1
        else:
            out[name] = t
    return out, packed


def unpack_int8(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float32 state dict of a `pack_int8` one (a state dict without packed matrices comes back as it is)."""
    out = {}
    for name, t in tensors.items():
        if name.endswith(SCALE_SUFFIX):
            continue
        if name.endswith(INT8_SUFFIX):
            base = name[:-len(INT8_SUFFIX)]
            scale = tensors.get(base + SCALE_SUFFIX)
            if scale is None:
                raise ValueError(f"int8 tensor {base!r} has no {SCALE_SUFFIX} scale; the file is damaged")
            out[base] = t.float() * scale.float()[:, None]
        else:
            out[name] = t
    return out


def linear_rows(linear: nn.Module, x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """The outputs lo..hi-1 of an `nn.Linear` or `Int8Linear` (a slice of the rows it reads)."""
    if isinstance(linear, Int8Linear):
        return linear.rows(x, lo, hi)
    bias = linear.bias[lo:hi] if linear.bias is not None else None
    return F.linear(x, linear.weight[lo:hi], bias)


def check_quantize(mode: str) -> str:
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, got {mode!r}")
    return mode


def resolve_quantize(mode: str, device: torch.device | str) -> str:
    """"auto" -> int8 on CPU, none on other devices (the int8 kernel path here is CPU's); else `mode`, checked."""
    if mode == "auto":
        return "int8" if torch.device(device).type == "cpu" else "none"
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"--quantize must be auto or one of {', '.join(QUANTIZE_MODES)}, got {mode!r}")
    return mode


def quantize_lm(model: nn.Module, mode: str) -> nn.Module:
    """Quantize a TokenLM or DelayLM in place for inference ("none" leaves it as is); returns it.

    int8: every `nn.Linear` (attention and MLP projections, output head or heads) whose input
    width is a multiple of 8 (the kernel's requirement; all presets qualify) becomes an
    `Int8Linear`; a tied output head stops sharing the embedding table. bf16: the whole model
    in bfloat16.
    """
    check_quantize(mode)
    if mode == "none":
        return model
    model.eval()
    model.quantized = mode
    if mode == "bf16":
        return model.to(torch.bfloat16)
    device = next(model.parameters()).device
    if device.type != "cpu":
        raise ValueError(f"int8 decoding runs on CPU; the model is on {device}: use --quantize bf16 there")
    replace = [(parent, name, child) for parent in model.modules() for name, child in parent.named_children()
               if type(child) is nn.Linear and child.in_features % 8 == 0]
    for parent, name, child in replace:
        setattr(parent, name, Int8Linear.from_linear(child))
    if hasattr(model, "hf"):
        # HF ties lm_head to the input embeddings on save/resize; the int8 head is its own now.
        model.hf.config.tie_word_embeddings = False
    return model


def quantized_mode(model: nn.Module) -> str:
    """The mode `quantize_lm` applied to `model` ("none" if it was never quantized)."""
    return getattr(model, "quantized", "none")
