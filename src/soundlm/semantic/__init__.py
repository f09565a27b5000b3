"""Semantic tokens: SSL or spectral frame features quantised by k-means (AudioLM, GSLM)."""

from soundlm.semantic.features import (
    FeatureExtractor,
    HFSSLFeatures,
    MelFeatures,
    MFCCFeatures,
    build_features,
    features_from_config,
)
from soundlm.semantic.kmeans import Assignment, KMeansResult, assign, fit_kmeans
from soundlm.semantic.tokenizer import Deduplicated, SemanticTokenizer, dedup, expand

__all__ = [
    "Assignment", "Deduplicated", "FeatureExtractor", "HFSSLFeatures", "KMeansResult", "MFCCFeatures",
    "MelFeatures", "SemanticTokenizer", "assign", "build_features", "dedup", "expand", "features_from_config",
    "fit_kmeans",
]
