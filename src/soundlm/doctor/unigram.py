"""The unigram entropy of an AudioLM stage's targets: the loss of a model that learned token frequencies only.

A stage whose loss stays there has learned nothing about context. The targets are the
semantic ids (semantic stage), the first `coarse_codebooks` acoustic levels (coarse) or the
rest (fine); each position of a flattened acoustic sequence belongs to a known level, so the
frequency-only model predicts with that level's histogram: the entropy is the mean over the
levels of each level's unigram entropy (the BOS/SEP/EOS tokens are left out: a few per window).
"""

from __future__ import annotations

import numpy as np


def entropy_nats(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def stage_unigram_entropy(store: str, stage: str, coarse_codebooks: int | None,
                          exclude_split: str | None = "heldout") -> float:
    """Nats per target token of the stage's frequency-only model on the store's training records."""
    from soundlm.stages import default_coarse_codebooks
    from soundlm.store import load_store_tokens

    tokens = load_store_tokens(store, need_acoustic=stage != "semantic",
                               exclude_splits=(exclude_split,) if exclude_split else ())
    if stage == "semantic":
        return entropy_nats(np.bincount(np.concatenate([r.semantic for r in tokens.records])))
    codes = np.concatenate([r.acoustic for r in tokens.records], axis=1)  # [K, sum T]
    split = coarse_codebooks if coarse_codebooks is not None else default_coarse_codebooks(codes.shape[0])
    levels = range(split) if stage == "coarse" else range(split, codes.shape[0])
    if not levels:
        raise ValueError(f"{store}: the {stage} stage has no codebooks to predict (coarse_codebooks {split} of "
                         f"{codes.shape[0]})")
    return float(np.mean([entropy_nats(np.bincount(codes[q])) for q in levels]))
