"""Next-token sampling: a pure function of logits, kept apart from any model.

Order of operations: mask disallowed ids -> temperature -> top-k -> top-p -> draw.
temperature == 0 means greedy (argmax over the allowed ids).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

Allowed = tuple[int, int] | torch.Tensor | None


class RowGenerators:
    """One random generator per batch row, so that rows of different requests draw as they would alone.

    Rows may share a generator object (the samples of one request): consecutive rows with the
    same generator draw in one call, exactly the draws one call for those rows alone makes.
    `live` (bool [B]) leaves rows out: they draw nothing (their stream does not move) and get
    u = 0, for rows whose output is already complete and will be thrown away. A logits batch
    of `rows * m` rows (the delay pattern's [B*K]) gives each batch row m consecutive draws.
    """

    def __init__(self, generators: list[torch.Generator], live: torch.Tensor | None = None):
        if not generators:
            raise ValueError("RowGenerators needs one generator per batch row, got none")
        self.generators = list(generators)
        self.live = None if live is None else live.bool().tolist()

    def __len__(self) -> int:
        return len(self.generators)

    def only(self, live: torch.Tensor) -> "RowGenerators":
        """The same generators, drawing only for rows where `live` [B] is True."""
        return RowGenerators(self.generators, live)

    def rand(self, rows: int, device: torch.device) -> torch.Tensor:
        """Uniform draws [rows, 1] on `device`, each batch row's from its own generator."""
        b = len(self.generators)
        if rows % b:
            raise ValueError(f"{rows} logits rows do not split over {b} batch rows of generators")
        per = rows // b
        u = torch.zeros(rows, 1, device=device)
        i = 0
        while i < b:
            j = i + 1  # rows i..j-1 share a generator and are all live (or all not)
            while j < b and self.generators[j] is self.generators[i] and self._live(j) == self._live(i):
                j += 1
            if self._live(i):
                u[i * per: j * per] = torch.rand((j - i) * per, 1, generator=self.generators[i], device=device)
            i = j
        return u

    def _live(self, row: int) -> bool:
        return self.live is None or self.live[row]


Generator = torch.Generator | RowGenerators | None


@dataclass(frozen=True)
class SamplingParams:
    """temperature: 0 = greedy. top_k: keep the k most likely ids (None/0 = off).
    top_p: keep the smallest set whose probability reaches p (None/1.0 = off)."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 or None = off), got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (None or 1.0 = off), got {self.top_p}")


def allowed_mask(allowed: Allowed, vocab_size: int, device: torch.device) -> torch.Tensor | None:
    """An `allowed` spec -> bool mask [V] or [B, V] (True = allowed), or None for no constraint."""
    if allowed is None:
        return None
    if isinstance(allowed, tuple):
        lo, hi = allowed
        if not 0 <= lo < hi <= vocab_size:
            raise ValueError(f"allowed range [{lo}, {hi}) is empty or outside the vocabulary [0, {vocab_size})")
        mask = torch.zeros(vocab_size, dtype=torch.bool, device=device)
        mask[lo:hi] = True
        return mask
    if allowed.dtype != torch.bool or allowed.shape[-1] != vocab_size or allowed.dim() not in (1, 2):
        raise ValueError(f"allowed mask must be bool [V] or [B, V] with V={vocab_size}, "
                         f"got {allowed.dtype} {tuple(allowed.shape)}")
    if not bool(allowed.any(dim=-1).all()):
        raise ValueError("allowed mask leaves no valid token for some row; allow at least one id per row")
    return allowed.to(device)


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, generator: Generator = None,
                      allowed: Allowed = None) -> torch.Tensor:
    """Draw one id per row from logits [B, V]; returns [B] int64.

    allowed: (lo, hi) global id range or bool mask [V] / [B, V]; ids outside never come out.
    generator: a torch.Generator on the logits' device, for reproducible draws, or `RowGenerators`
    (one per row: a row draws what it would draw alone).
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must be [B, V], got shape {tuple(logits.shape)}")
    SamplingParams(temperature, top_k, top_p)  # validates the values
    vocab = logits.shape[-1]
    if isinstance(allowed, tuple):
        lo, hi = allowed
        if not 0 <= lo < hi <= vocab:
            raise ValueError(f"allowed range [{lo}, {hi}) is empty or outside the vocabulary [0, {vocab})")
        # Only the allowed slice takes part: sorting and drawing over 1024 codes instead of the
        # whole vocabulary (8196 ids for the fine stage) is what keeps sampling off the step's critical path.
        return draw(logits[:, lo:hi], temperature, top_k, top_p, generator) + lo
    mask = allowed_mask(allowed, vocab, logits.device)
    # float32 so that top-p cumulative sums and masking behave the same for bf16 models.
    logits = logits.float()
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return draw(logits, temperature, top_k, top_p, generator)


def draw(logits: torch.Tensor, temperature: float, top_k: int | None, top_p: float | None,
         generator: Generator) -> torch.Tensor:
    """Index of one draw per row of logits [B, N] (-inf = never), after temperature, top-k and top-p.

    One uniform number per row picks the id by inverse CDF (`searchsorted` on the cumulative
    probabilities): `torch.multinomial` draws an exponential per id instead, which costs more than
    the rest of sampling together at a few thousand ids.
    """
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    b, n = logits.shape
    logits = logits / temperature
    k = top_k if top_k is not None and 0 < top_k < n else None
    order = None
    if top_p is not None and top_p < 1.0:
        logits, order = torch.sort(logits, dim=-1, descending=True)  # [B, N], order: sorted -> original index
        if k is not None:
            logits[:, k:] = float("-inf")
        probs = logits.softmax(dim=-1)
        # Drop an id when the mass before it already reaches top_p; the most likely id always stays.
        probs = probs.masked_fill((probs.cumsum(dim=-1) - probs) >= top_p, 0.0)
    else:
        if k is not None:
            kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # [B, 1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(dim=-1)  # [B, N]
    cdf = probs.cumsum(dim=-1)  # [B, N]
    if isinstance(generator, RowGenerators):
        u = generator.rand(b, logits.device)
    else:
        u = torch.rand(b, 1, generator=generator, device=logits.device)
    u = u * cdf[:, -1:]
    # The first index whose cumulative mass exceeds u; ids of zero mass never qualify.
    idx = torch.searchsorted(cdf, u, right=True).clamp_(max=n - 1)  # [B, 1]
    if order is not None:
        idx = order.gather(1, idx)
    return idx.squeeze(1)
