"""How much of the voice semantic units carry: speaker identification from unit histograms.

AudioLM's design rests on semantic tokens that keep the content and drop most of the
voice, so that the acoustic stages (conditioned on the prompt's acoustic tokens) decide
who speaks. This measures that property directly: each utterance becomes the normalised
histogram of its unit ids, and a logistic-regression classifier predicts its speaker
under stratified k-fold cross-validation. Accuracy near chance means the units say little
about who is speaking; near 1 means they identify the voice (as MFCC k-means units do).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class SpeakerIdResult:
    """Cross-validated speaker identification from per-utterance feature vectors."""

    accuracy: float
    chance: float  # share of the most frequent speaker: what always guessing it scores
    per_speaker: dict[str, float]  # speaker -> accuracy on that speaker's utterances
    num_utterances: int
    num_speakers: int
    folds: int


def unit_histograms(ids: Sequence[np.ndarray], vocab_size: int) -> np.ndarray:
    """Unit id sequences -> [N, vocab_size] rows that sum to 1 (each utterance's unit frequencies)."""
    if vocab_size < 1:
        raise ValueError(f"vocab_size must be >= 1, got {vocab_size}")
    out = np.zeros((len(ids), vocab_size), dtype=np.float64)
    for i, seq in enumerate(ids):
        seq = np.asarray(seq, dtype=np.int64).ravel()
        if seq.size == 0:
            raise ValueError(f"utterance {i} has no units")
        if seq.min() < 0 or seq.max() >= vocab_size:
            raise ValueError(f"utterance {i} has ids outside [0, {vocab_size})")
        out[i] = np.bincount(seq, minlength=vocab_size) / seq.size
    return out


def speaker_id_accuracy(features: np.ndarray, speakers: Sequence[str], folds: int = 5,
                        seed: int = 0) -> SpeakerIdResult:
    """Stratified `folds`-fold cross-validated accuracy of a logistic-regression speaker classifier."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(list(speakers))
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"features must be [N, D] with one speaker per row, got {x.shape} for {y.shape[0]} speakers")
    names, counts = np.unique(y, return_counts=True)
    if names.size < 2:
        raise ValueError("speaker identification needs at least 2 speakers")
    if counts.min() < folds:
        raise ValueError(f"every speaker needs >= {folds} utterances for {folds}-fold cross-validation; "
                         f"{str(names[counts.argmin()])!r} has {counts.min()} (lower --folds or add utterances)")
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    pred = cross_val_predict(clf, x, y, cv=cv)
    right = pred == y
    per_speaker = {str(s): float(right[y == s].mean()) for s in names}
    return SpeakerIdResult(accuracy=float(right.mean()), chance=float(counts.max() / counts.sum()),
                           per_speaker=per_speaker, num_utterances=int(y.size), num_speakers=int(names.size),
                           folds=folds)
