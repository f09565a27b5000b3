"""`KMeansTokenizer`: frame features + k-means centroids -> semantic ids [B, T].

A tokenizer folder holds `config.json` (`"type": "soundlm-semantic"`, the feature
extractor config, cluster count) and `centroids.safetensors` (`centroids` [K, D]). For
Hugging Face features the config names the model (hub id or absolute folder) and layer;
the weights are not copied. Phonetic features (our own trained encoder) keep their weights
in the folder too (`phonetic.safetensors`), so the folder is self-contained.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from soundlm.fileio import atomic_path, read_json, write_json_atomic
from soundlm.semantic.features import FeatureExtractor, features_from_config
from soundlm.semantic.kmeans import assign

TOKENIZER_TYPE = "soundlm-semantic"
FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
CENTROIDS_NAME = "centroids.safetensors"


class KMeansTokenizer(nn.Module):
    """Maps audio to the id of the nearest centroid of each feature frame."""

    def __init__(self, features: FeatureExtractor, centroids: torch.Tensor):
        super().__init__()
        if centroids.dim() != 2 or centroids.shape[0] < 1:
            raise ValueError(f"centroids must be [K, D] with K >= 1, got shape {tuple(centroids.shape)}")
        if centroids.shape[1] != features.dim:
            raise ValueError(f"centroids have dimension {centroids.shape[1]} but the features have {features.dim}; "
                             "fit the centroids on these features")
        self.features = features
        self.register_buffer("centroids", centroids.detach().to(features.device, torch.float32).contiguous())
        self.source: str | None = None  # folder it was loaded from, for `describe`

    @property
    def sample_rate(self) -> int:
        return self.features.sample_rate

    @property
    def frame_rate(self) -> float:
        return self.features.frame_rate

    @property
    def vocab_size(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def min_samples(self) -> int:
        return self.features.min_samples

    def num_frames(self, num_samples: int) -> int:
        """Ids `encode` returns per item for `num_samples` input samples."""
        return self.features.num_frames(num_samples)

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """[B, 1, S] float audio at `sample_rate` -> [B, T] int64 ids in [0, vocab_size)."""
        feats = self.features(audio)  # [B, T, D]
        b, t, d = feats.shape
        ids = assign(feats.reshape(b * t, d), self.centroids).ids  # [B * T]
        return ids.view(b, t)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.encode(audio)

    def save(self, folder: str | Path) -> Path:
        """Write `config.json` and `centroids.safetensors` into `folder`, each atomically.

        The config is written last, so a folder with a config always has its centroids.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if hasattr(self.features, "save_weights"):
            # Trained features (the phonetic encoder) travel with the tokenizer.
            self.features.save_weights(folder)
        with atomic_path(folder / CENTROIDS_NAME, suffix=".safetensors") as tmp:
            save_file({"centroids": self.centroids.detach().cpu().contiguous()}, str(tmp))
        write_json_atomic(folder / CONFIG_NAME, self.config())
        return folder

    def config(self) -> dict:
        return {"type": TOKENIZER_TYPE, "version": FORMAT_VERSION, "features": self.features.describe(),
                "num_clusters": self.vocab_size, "dim": int(self.centroids.shape[1]),
                "sample_rate": self.sample_rate, "frame_rate": self.frame_rate}

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device | None = None) -> "KMeansTokenizer":
        """Load a folder written by `save` (features are rebuilt, HF weights loaded from their source)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        config_path = folder / CONFIG_NAME
        if not config_path.is_file():
            raise FileNotFoundError(f"{folder}: no {CONFIG_NAME}; pass a folder written by "
                                    "`soundlm train semantic` or KMeansTokenizer.save")
        config = read_json(config_path)
        if config.get("type") != TOKENIZER_TYPE:
            raise ValueError(f"{config_path}: type is {config.get('type')!r}, not {TOKENIZER_TYPE!r}; "
                             "this folder is not a semantic tokenizer")
        if int(config.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{config_path}: format version {config['version']} is newer than this soundlm "
                             f"understands ({FORMAT_VERSION}); upgrade soundlm")
        centroids_path = folder / CENTROIDS_NAME
        if not centroids_path.is_file():
            raise FileNotFoundError(f"{centroids_path}: missing; the tokenizer folder is incomplete, retrain it")
        centroids = load_file(str(centroids_path))["centroids"]
        tok = cls(features_from_config(config["features"], device=device, folder=folder), centroids)
        tok.source = str(folder.resolve())
        return tok

    def describe(self) -> dict:
        """JSON-able summary for token store manifests."""
        d = self.config()
        d["source"] = self.source
        return d


class Deduplicated(NamedTuple):
    ids: torch.Tensor | np.ndarray  # [T'] ids with consecutive repeats collapsed
    durations: torch.Tensor | np.ndarray  # [T'] int64, frames each id lasted


def dedup(ids: torch.Tensor | np.ndarray) -> Deduplicated:
    """Collapse runs of repeated ids (GSLM's unit deduplication) and keep the run lengths.

    ids [T] -> (ids [T'], durations [T']) with `expand(*dedup(ids))` equal to `ids`;
    returns the same array type it was given.
    """
    if ids.ndim != 1:
        raise ValueError(f"dedup takes one sequence [T], got shape {tuple(ids.shape)}; loop over the batch "
                         "(runs differ in length per item)")
    if isinstance(ids, torch.Tensor):
        values, counts = torch.unique_consecutive(ids, return_counts=True)
        return Deduplicated(values, counts.to(torch.int64))
    ids = np.asarray(ids)
    if ids.size == 0:
        return Deduplicated(ids.copy(), np.zeros(0, dtype=np.int64))
    starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
    durations = np.diff(np.append(starts, ids.size)).astype(np.int64)
    return Deduplicated(ids[starts], durations)


def expand(ids: torch.Tensor | np.ndarray, durations: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Inverse of `dedup`: repeat each id by its duration."""
    if isinstance(ids, torch.Tensor):
        return torch.repeat_interleave(ids, torch.as_tensor(durations, device=ids.device))
    return np.repeat(np.asarray(ids), np.asarray(durations))
