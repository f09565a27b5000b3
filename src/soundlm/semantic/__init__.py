"""Semantic tokens: SSL or spectral frame features quantised by k-means (AudioLM, GSLM).

`SemanticTokenizer` is the contract (`semantic/base.py`); `KMeansTokenizer` (features +
k-means centroids) is the implementation; `load_semantic_tokenizer` reads its folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from soundlm.semantic.base import SemanticTokenizer
from soundlm.semantic.features import (
    FeatureExtractor,
    HFSSLFeatures,
    MelFeatures,
    MFCCFeatures,
    build_features,
    features_from_config,
)
from soundlm.semantic.pitch import ChromaFeatures, CQTFeatures
from soundlm.semantic.kmeans import Assignment, KMeansResult, assign, fit_kmeans
from soundlm.semantic.tokenizer import Deduplicated, KMeansTokenizer, dedup, expand

__all__ = [
    "Assignment", "ChromaFeatures", "CQTFeatures", "Deduplicated", "FeatureExtractor", "HFSSLFeatures", "KMeansResult", "KMeansTokenizer",
    "MFCCFeatures", "MelFeatures", "SemanticTokenizer", "assign", "build_features", "dedup", "expand",
    "features_from_config", "fit_kmeans", "load_semantic_tokenizer",
]


def load_semantic_tokenizer(spec: str | Path, device: str | torch.device | None = None) -> SemanticTokenizer:
    """A semantic tokenizer from its folder (written by `soundlm train semantic` or `.save`)."""
    if not Path(spec).exists():
        raise FileNotFoundError(f"{spec}: no such semantic tokenizer folder; train one with `soundlm train semantic`")
    return KMeansTokenizer.load(spec, device=device)
