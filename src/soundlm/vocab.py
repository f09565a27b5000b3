"""One global token id space for every stream an LM sees.

Layout (offsets grow in this order):

    [special tokens: PAD BOS EOS SEP + task tags] [semantic ids] [codebook 0] ... [codebook K-1]
    [condition ids 0..C-1, NULL]   (conditioned stages only: MusicLM's quantized MuLan tokens)

Each acoustic codebook level gets its own block of `codebook_size` ids, so the LM knows
which residual level a token belongs to (AudioLM flattening needs this: code 5 of level 0
and code 5 of level 3 are different tokens). A stage that does not use a stream sets its
size to 0 (e.g. the semantic LM has `num_codebooks=0`).

All functions are pure tensor arithmetic; the layout is a small JSON-able dataclass that
every LM checkpoint stores beside its weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

BASE_SPECIAL_TOKENS: tuple[str, ...] = ("PAD", "BOS", "EOS", "SEP")


@dataclass(frozen=True)
class VocabLayout:
    """Where each stream lives in the global id space.

    semantic_size: number of semantic (k-means) ids; 0 when a stage has none.
    codebook_size: ids per acoustic codebook.
    num_codebooks: acoustic codebook levels in the layout (coarse + fine).
    task_tokens: extra special tokens after PAD/BOS/EOS/SEP (task tags, language tags).
    condition_size: ids of the condition vocabulary C (0: an unconditioned stage). The block holds
    C + 1 ids, placed last so that every other id keeps its place: condition id c is
    `condition_offset + c` and id C is NULL ("no condition", the unconditional model of
    classifier-free guidance).
    """

    semantic_size: int
    codebook_size: int = 0
    num_codebooks: int = 0
    task_tokens: tuple[str, ...] = field(default_factory=tuple)
    condition_size: int = 0

    def __post_init__(self) -> None:
        for name in ("semantic_size", "codebook_size", "num_codebooks", "condition_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"VocabLayout.{name} must be a non-negative int, got {value!r}")
        if (self.codebook_size == 0) != (self.num_codebooks == 0):
            raise ValueError("codebook_size and num_codebooks must both be 0 (no acoustic stream) or both > 0, "
                             f"got codebook_size={self.codebook_size}, num_codebooks={self.num_codebooks}")
        names = self.special_tokens
        if len(set(names)) != len(names):
            raise ValueError(f"task_tokens repeat a special token name: {self.task_tokens}; use unique names")
        # A tuple keeps the dataclass hashable and immutable even if a list was passed.
        object.__setattr__(self, "task_tokens", tuple(self.task_tokens))

    # ---- sizes and offsets -------------------------------------------------------------
    @property
    def special_tokens(self) -> tuple[str, ...]:
        return BASE_SPECIAL_TOKENS + tuple(self.task_tokens)

    @property
    def num_special(self) -> int:
        return len(self.special_tokens)

    @property
    def semantic_offset(self) -> int:
        return self.num_special

    @property
    def acoustic_offset(self) -> int:
        return self.semantic_offset + self.semantic_size

    def codebook_offset(self, level: int) -> int:
        self._check_level(level)
        return self.acoustic_offset + level * self.codebook_size

    @property
    def condition_offset(self) -> int:
        return self.acoustic_offset + self.num_codebooks * self.codebook_size

    @property
    def vocab_size(self) -> int:
        return self.condition_offset + (self.condition_size + 1 if self.condition_size else 0)

    # ---- special tokens ----------------------------------------------------------------
    def special(self, name: str) -> int:
        """Global id of a special token or task tag, by name."""
        try:
            return self.special_tokens.index(name)
        except ValueError:
            raise ValueError(f"unknown special token {name!r}; this layout has {list(self.special_tokens)} "
                             "(add task tags through VocabLayout(task_tokens=...))") from None

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2

    @property
    def sep_id(self) -> int:
        return 3

    # ---- ranges ------------------------------------------------------------------------
    def range_of(self, stream: str) -> tuple[int, int]:
        """Half-open global id range [lo, hi) of a stream.

        stream: "special", "semantic", "acoustic" (all levels), "acoustic:q" (level q),
        "condition" (the C condition ids, NULL excluded) or the name of one special token.
        """
        if stream == "special":
            return 0, self.num_special
        if stream == "semantic":
            return self.semantic_offset, self.acoustic_offset
        if stream == "acoustic":
            return self.acoustic_offset, self.condition_offset
        if stream == "condition":
            self._check_conditioned()
            return self.condition_offset, self.condition_offset + self.condition_size
        if stream.startswith("acoustic:"):
            try:
                level = int(stream.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"bad stream {stream!r}; write 'acoustic:<level>', e.g. 'acoustic:0'") from None
            lo = self.codebook_offset(level)
            return lo, lo + self.codebook_size
        if stream in self.special_tokens:
            i = self.special(stream)
            return i, i + 1
        raise ValueError(f"unknown stream {stream!r}; use 'special', 'semantic', 'acoustic', 'acoustic:<q>' "
                         f"'condition' or a special token name {list(self.special_tokens)}")

    # ---- semantic ----------------------------------------------------------------------
    def semantic_to_global(self, ids: torch.Tensor) -> torch.Tensor:
        """Semantic ids (any shape) in [0, semantic_size) -> global ids."""
        _check_range(ids, 0, self.semantic_size, "semantic ids")
        return ids.long() + self.semantic_offset

    def global_to_semantic(self, ids: torch.Tensor) -> torch.Tensor:
        """Global ids (any shape) from the semantic block -> semantic ids."""
        lo, hi = self.range_of("semantic")
        _check_range(ids, lo, hi, "global semantic ids")
        return ids.long() - lo

    # ---- condition ---------------------------------------------------------------------
    @property
    def condition_null_id(self) -> int:
        """Global id of NULL, the "no condition" token."""
        self._check_conditioned()
        return self.condition_offset + self.condition_size

    def condition_to_global(self, ids: torch.Tensor) -> torch.Tensor:
        """Condition ids (any shape) in [0, C], C meaning NULL -> global ids."""
        self._check_conditioned()
        _check_range(ids, 0, self.condition_size + 1, "condition ids")
        return ids.long() + self.condition_offset

    def _check_conditioned(self) -> None:
        if not self.condition_size:
            raise ValueError("this layout has no condition ids (condition_size 0); build a conditioned stage "
                             "from a token store written by `soundlm tokenize --mulan`")

    # ---- acoustic ----------------------------------------------------------------------
    def acoustic_to_global(self, codes: torch.Tensor, first_level: int = 0) -> torch.Tensor:
        """Codes [K, T] or [B, K, T] (levels first_level..first_level+K-1) -> global ids, same shape."""
        offsets = self._level_offsets(codes, first_level)
        _check_range(codes, 0, self.codebook_size, "acoustic codes")
        return codes.long() + offsets

    def global_to_acoustic(self, ids: torch.Tensor, first_level: int = 0) -> torch.Tensor:
        """Inverse of `acoustic_to_global`: global ids [K, T] or [B, K, T] -> codes, checking each level."""
        offsets = self._level_offsets(ids, first_level)
        codes = ids.long() - offsets
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.codebook_size):
            raise ValueError("global ids do not belong to the expected codebook levels "
                             f"{first_level}..{first_level + ids.shape[-2] - 1}; check first_level and the "
                             "token order (a special token or a shifted level is in the sequence)")
        return codes

    def level_to_global(self, codes: torch.Tensor, level: int) -> torch.Tensor:
        """Codes of one codebook level (any shape) -> global ids."""
        _check_range(codes, 0, self.codebook_size, f"codes of level {level}")
        return codes.long() + self.codebook_offset(level)

    def _level_offsets(self, codes: torch.Tensor, first_level: int) -> torch.Tensor:
        if codes.dim() not in (2, 3):
            raise ValueError(f"codes must be [K, T] or [B, K, T], got shape {tuple(codes.shape)}")
        k = codes.shape[-2]
        self._check_level(first_level)
        self._check_level(first_level + k - 1)
        levels = torch.arange(first_level, first_level + k, device=codes.device)
        return (self.acoustic_offset + levels * self.codebook_size).view(k, 1)  # [K, 1] broadcasts over T

    def _check_level(self, level: int) -> None:
        if not 0 <= level < self.num_codebooks:
            raise ValueError(f"codebook level {level} is outside this layout's {self.num_codebooks} levels; "
                             "build the layout with the codec's num_codebooks")

    # ---- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        out = {"semantic_size": self.semantic_size, "codebook_size": self.codebook_size,
               "num_codebooks": self.num_codebooks, "task_tokens": list(self.task_tokens)}
        # Written only when set, so the layouts of unconditioned stages read and write back unchanged.
        if self.condition_size:
            out["condition_size"] = self.condition_size
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "VocabLayout":
        unknown = set(d) - {"semantic_size", "codebook_size", "num_codebooks", "task_tokens", "condition_size"}
        if unknown:
            raise ValueError(f"unknown VocabLayout keys {sorted(unknown)}; was the file written by a newer soundlm?")
        return cls(semantic_size=int(d["semantic_size"]), codebook_size=int(d.get("codebook_size", 0)),
                   num_codebooks=int(d.get("num_codebooks", 0)), task_tokens=tuple(d.get("task_tokens", ())),
                   condition_size=int(d.get("condition_size", 0)))


def _check_range(ids: torch.Tensor, lo: int, hi: int, what: str) -> None:
    if ids.dtype.is_floating_point:
        raise ValueError(f"{what} must be an integer tensor, got {ids.dtype}")
    if ids.numel() and (int(ids.min()) < lo or int(ids.max()) >= hi):
        raise ValueError(f"{what} must lie in [{lo}, {hi}), got [{int(ids.min())}, {int(ids.max())}]; "
                         "check that the tokenizer and the vocabulary layout agree on sizes")
