"""Where computation runs when the caller does not say: CUDA when present, else the CPU.

Low in the layering on purpose (it imports nothing from soundlm), so every layer, from
the tokenizers to the pipeline, makes this choice the same way.
"""

from __future__ import annotations

import torch


def default_device(device: str | torch.device | None = None) -> torch.device:
    """`device` as a torch.device; when none is named, CUDA if available, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
