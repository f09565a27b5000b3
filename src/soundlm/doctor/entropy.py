"""The unigram entropy of an AudioLM stage's targets: the loss of a model that learned token frequencies only.

An LM whose loss sits at this value uses no context at all. For the acoustic stages the
frequencies are per codebook level (the level of the next token is fixed by the sequence
format, so even a context-free model knows it): the mean over the stage's levels of each
level's code entropy. Semantic stage: the entropy of the semantic ids.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def entropy_nats(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def stage_unigram_entropy(store: str | Path, stage: str, coarse_codebooks: int | None = None,
                          num_codebooks: int | None = None, exclude_split: str | None = "heldout") -> float:
    """Nats per target token of the per-level unigram model of `stage`'s targets over a token store's records."""
    from soundlm.store import load_store_tokens

    tokens = load_store_tokens(store, need_acoustic=stage != "semantic",
                               exclude_splits=(exclude_split,) if exclude_split else ())
    if stage == "semantic":
        return entropy_nats(np.bincount(np.concatenate([r.semantic for r in tokens.records])))
    k = num_codebooks or int(tokens.records[0].acoustic.shape[0])
    qc = coarse_codebooks if coarse_codebooks is not None else max(1, round(k / 3))
    levels = range(qc) if stage == "coarse" else range(qc, k)
    codes = np.concatenate([r.acoustic[:k] for r in tokens.records], axis=1)  # [K, total frames]
    return float(np.mean([entropy_nats(np.bincount(codes[q])) for q in levels]))
