"""A preallocated key/value cache for incremental decoding.

Memory for the whole decoding run is allocated once ([layers, B, kv_heads, max_len,
head_dim] for keys and values); each step writes its new keys in place. Nothing grows by
`torch.cat`, so a step costs the same at position 10 and position 1000, and the tensors
keep fixed shapes (friendly to `torch.compile` and CUDA graphs).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KVCache:
    """Keys/values of every layer plus the number of filled positions.

    k, v: [layers, B, kv_heads, max_len, head_dim]. pos: int64 scalar tensor, the number
    of positions written so far (a tensor, so compiled code sees no changing Python int).
    left_pad: int64 [B], how many leading positions of each row are padding (never attended
    to; the row's positions count from its first real token), or None when no row is padded.
    """

    k: torch.Tensor
    v: torch.Tensor
    pos: torch.Tensor
    left_pad: torch.Tensor | None = None

    @classmethod
    def allocate(cls, num_layers: int, batch_size: int, num_kv_heads: int, max_len: int, head_dim: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> "KVCache":
        if min(num_layers, batch_size, num_kv_heads, max_len, head_dim) <= 0:
            raise ValueError("KVCache sizes must all be > 0, got "
                             f"layers={num_layers} batch={batch_size} kv_heads={num_kv_heads} "
                             f"max_len={max_len} head_dim={head_dim}")
        shape = (num_layers, batch_size, num_kv_heads, max_len, head_dim)
        return cls(k=torch.zeros(shape, dtype=dtype, device=device),
                   v=torch.zeros(shape, dtype=dtype, device=device),
                   pos=torch.zeros((), dtype=torch.long, device=device))

    @property
    def num_layers(self) -> int:
        return self.k.shape[0]

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    @property
    def max_len(self) -> int:
        return self.k.shape[3]

    @property
    def length(self) -> int:
        """Filled positions, as a Python int (synchronises with the device)."""
        return int(self.pos)

    def reset(self, left_pad: torch.Tensor | None = None) -> None:
        """Forget all positions (old values stay in memory but are never attended to).

        left_pad: int64 [B] leading pad positions per row of what is written next; None or
        all zeros = no padding.
        """
        self.pos.zero_()
        if left_pad is not None and left_pad.shape != (self.batch_size,):
            raise ValueError(f"left_pad must be [B] = [{self.batch_size}], got {tuple(left_pad.shape)}")
        self.left_pad = left_pad.to(self.k.device) if left_pad is not None and bool(left_pad.any()) else None

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Store new k/v [B, kv_heads, T, head_dim] at positions start..start+T-1 of `layer`.

        Returns views of that layer's keys and values for positions 0..start+T-1.
        """
        end = start + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions, writing up to {end}; allocate a "
                             "longer cache or use windowed generation")
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def fits(self, batch_size: int, length: int, dtype: torch.dtype, device: torch.device) -> bool:
        """Whether this cache can be reused for a run of `batch_size` rows and `length` positions."""
        return (self.batch_size == batch_size and self.max_len >= length and self.k.dtype == dtype
                and self.k.device.type == torch.device(device).type)
