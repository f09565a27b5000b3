"""Fit a semantic tokenizer: extract features over a corpus, sample frames, run k-means.

Output folder (`out`):
    config.json, centroids.safetensors   the tokenizer (`load_semantic_tokenizer(out)`)
    errors.jsonl                         `{"path", "reason"}` per skipped file
    train_log.json                       config, counts, inertia and cluster usage
    .work/                               sampled frames + progress while running; removed at the end

Feature extraction is the long part with SSL models, so it is resumable: every
`checkpoint_every` files the sampled frames so far go to `.work/part-XXXXX.npy` and
`.work/state.json` records the next file. Frame sampling is seeded per chunk (seed, file
index, chunk index), so a resumed run samples exactly the frames an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from soundlm import audio as audio_io
from soundlm.distributed import require_single_process
from soundlm.fileio import atomic_path, read_json, write_json_atomic, write_text_atomic
from soundlm.semantic.features import FeatureExtractor, build_features
from soundlm.semantic.kmeans import KMeansResult, fit_kmeans
from soundlm.semantic.tokenizer import KMeansTokenizer

log = logging.getLogger(__name__)

WORK_DIR = ".work"


@dataclass
class SemanticTrainConfig:
    features: str = "mfcc"  # "mfcc", "mel", "chroma", "cqt", "hf" or "phonetic"
    model: str | None = None  # HF hub id or folder, for features="hf"
    layer: int | None = None  # hidden-state layer, for features="hf"
    clusters: int = 500
    max_frames: int = 200_000  # frames sampled for k-means
    seed: int = 0
    batch_size: int = 8  # equal-length chunks per feature forward pass
    chunk_seconds: float = 10.0  # long files are cut into chunks of this length
    max_iter: int = 50  # Lloyd iterations
    split: str | None = "train"  # manifest rows of other splits are skipped (no split = "train"); None keeps all
    checkpoint_every: int = 200  # files between resume checkpoints


@dataclass
class SemanticTrainResult:
    out_dir: Path
    num_files: int  # input files considered
    num_errors: int  # files skipped (see errors.jsonl)
    total_frames: int  # feature frames extracted from the usable files
    sampled_frames: int  # frames k-means was fitted on
    inertia: float  # k-means objective on the sampled frames
    mean_sq_distance: float  # inertia / sampled_frames
    clusters_used: int  # clusters with at least one sampled frame
    usage_perplexity: float  # exp(entropy) of the cluster usage; equals `clusters` when uniform
    iterations: int
    converged: bool
    errors: list[dict] = field(default_factory=list)


# Settings that change which frames are sampled; the others (batch size, k-means
# settings) may change between a stopped run and its resumption.
_EXTRACTION_KEYS = ("features", "model", "layer", "max_frames", "seed", "chunk_seconds", "split")


def _fingerprint(config: SemanticTrainConfig, files: list[Path]) -> str:
    """Identifies the job a `.work` folder belongs to: same extraction settings and file list."""
    settings = {k: getattr(config, k) for k in _EXTRACTION_KEYS}
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for f in files:
        h.update(str(f).encode() + b"\0")
    return h.hexdigest()


def _estimate_frames(files: list[Path], features: FeatureExtractor) -> int:
    """Frames the corpus will yield, from file headers (unreadable files count as zero)."""
    total = 0
    for f in files:
        try:
            meta = audio_io.info(f)
        except audio_io.AudioError:
            continue
        samples = int(meta.frames * features.sample_rate / meta.sample_rate)
        total += features.num_frames(samples)
    return total


class _FrameSampler:
    """Keeps each frame with probability `rate`, seeded per (file, chunk) for exact resume."""

    def __init__(self, rate: float, seed: int):
        self.rate = rate
        self.seed = seed
        self.kept: list[np.ndarray] = []  # [n_i, D] float32 each
        self.total = 0

    def add(self, feats: torch.Tensor, file_index: int, chunk_index: int) -> None:
        """feats [T, D] of one chunk."""
        self.total += feats.shape[0]
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + file_index) * 65_537 + chunk_index)
        keep = torch.rand(feats.shape[0], generator=g) < self.rate
        if keep.any():
            self.kept.append(feats.cpu()[keep].numpy().astype(np.float32))

    def take(self) -> np.ndarray | None:
        if not self.kept:
            return None
        out = np.concatenate(self.kept)
        self.kept = []
        return out


class _ChunkBatcher:
    """Runs the extractor on chunks; full-length chunks from any files share a batch
    (equal lengths need no padding, which would change SSL features), tails run alone."""

    def __init__(self, features: FeatureExtractor, sampler: _FrameSampler, chunk_len: int, batch_size: int):
        self.features = features
        self.sampler = sampler
        self.chunk_len = chunk_len
        self.batch_size = batch_size
        self.pending: list[tuple[np.ndarray, int, int]] = []  # (audio [S], file index, chunk index)

    def add_file(self, audio: np.ndarray, file_index: int) -> None:
        """audio [1, S] at the extractor's rate."""
        x = audio[0]
        n_full = len(x) // self.chunk_len
        for c in range(n_full):
            self.pending.append((x[c * self.chunk_len: (c + 1) * self.chunk_len], file_index, c))
            if len(self.pending) >= self.batch_size:
                self.flush()
        tail = x[n_full * self.chunk_len:]
        if len(tail) >= self.features.min_samples:
            self._run([(tail, file_index, n_full)])

    def flush(self) -> None:
        if self.pending:
            self._run(self.pending)
            self.pending = []

    @torch.inference_mode()
    def _run(self, items: list[tuple[np.ndarray, int, int]]) -> None:
        batch = torch.from_numpy(np.stack([a for a, _, _ in items]))[:, None]  # [B, 1, S]
        feats = self.features(batch)  # [B, T, D]
        for (_, file_index, chunk_index), f in zip(items, feats):
            self.sampler.add(f, file_index, chunk_index)


def _write_errors(out_dir: Path, errors: list[dict]) -> None:
    write_text_atomic(out_dir / "errors.jsonl", "".join(json.dumps(e) + "\n" for e in errors))


def _usage_perplexity(counts: torch.Tensor) -> float:
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def train_semantic(source: str | Path, out_dir: str | Path, config: SemanticTrainConfig | None = None,
                   device: str | torch.device | None = None, progress: bool = True) -> SemanticTrainResult:
    """Fit k-means centroids on features of the audio in `source` and save the tokenizer in `out_dir`."""
    from tqdm import tqdm

    config = config or SemanticTrainConfig()
    require_single_process("train semantic")
    if config.clusters < 2:
        raise ValueError(f"clusters must be at least 2, got {config.clusters}")
    if config.max_frames < config.clusters:
        raise ValueError(f"max_frames ({config.max_frames}) must be at least clusters ({config.clusters})")
    if config.batch_size < 1 or config.chunk_seconds <= 0:
        raise ValueError("batch_size must be >= 1 and chunk_seconds > 0")
    out_dir = Path(out_dir)
    from soundlm.data import open_corpus

    files = [item.path for item in open_corpus(source, split=config.split)]
    features = build_features(config.features, config.model, config.layer, device=device)
    work = out_dir / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    fingerprint = _fingerprint(config, files)

    state_path = work / "state.json"
    state = read_json(state_path) if state_path.is_file() else None
    if state is not None and state.get("fingerprint") != fingerprint:
        log.warning("%s belongs to a different job (config or files changed); starting over", work)
        shutil.rmtree(work)
        work.mkdir(parents=True)
        state = None
    if state is None:
        # Sampling rate chosen once from file headers so the frames spread over the whole corpus.
        estimate = _estimate_frames(files, features)
        rate = min(1.0, config.max_frames / max(estimate, 1))
        state = {"fingerprint": fingerprint, "next_file": 0, "parts": [], "errors": [], "total_frames": 0,
                 "rate": rate, "estimated_frames": estimate}
    elif state["next_file"] > 0:
        log.info("resuming feature extraction at file %d of %d", state["next_file"], len(files))

    sampler = _FrameSampler(state["rate"], config.seed)
    sampler.total = state["total_frames"]
    chunk_len = int(round(config.chunk_seconds * features.sample_rate))
    batcher = _ChunkBatcher(features, sampler, max(chunk_len, features.min_samples), config.batch_size)
    min_seconds = features.min_samples / features.sample_rate

    def checkpoint(next_file: int) -> None:
        batcher.flush()
        part = sampler.take()
        if part is not None:
            name = f"part-{len(state['parts']):05d}.npy"
            with atomic_path(work / name, suffix=".npy") as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, part)
            state["parts"].append(name)
        state["next_file"] = next_file
        state["total_frames"] = sampler.total
        write_json_atomic(state_path, state)
        _write_errors(out_dir, state["errors"])

    bar = tqdm(total=len(files), initial=state["next_file"], desc="features", unit="file", disable=not progress)
    for i in range(state["next_file"], len(files)):
        path = files[i]
        try:
            audio = audio_io.load_audio(path, sample_rate=features.sample_rate, mono=True, min_seconds=min_seconds)
        except audio_io.AudioError as e:
            log.warning("skipping %s", e)
            state["errors"].append({"path": str(path), "reason": str(e)})
        else:
            batcher.add_file(audio, i)
        bar.update(1)
        if (i + 1) % config.checkpoint_every == 0:
            checkpoint(i + 1)
    bar.close()
    checkpoint(len(files))

    parts = [np.load(work / name) for name in state["parts"]]
    frames = np.concatenate(parts) if parts else np.zeros((0, features.dim), np.float32)
    if frames.shape[0] > config.max_frames:
        # The header estimate can undershoot (e.g. resampling); trim to the budget, seeded.
        keep = np.random.default_rng(config.seed).choice(frames.shape[0], config.max_frames, replace=False)
        frames = frames[np.sort(keep)]
    if frames.shape[0] < config.clusters:
        raise ValueError(f"{source}: only {frames.shape[0]} frames sampled from {len(files) - len(state['errors'])} "
                         f"usable files, fewer than {config.clusters} clusters; add audio, raise --max-frames "
                         "or lower --clusters (see errors.jsonl for skipped files)")

    km: KMeansResult = fit_kmeans(torch.from_numpy(frames), config.clusters, max_iter=config.max_iter,
                                  seed=config.seed, device=features.device, progress=progress)
    tokenizer = KMeansTokenizer(features, km.centroids)
    tokenizer.save(out_dir)
    result = SemanticTrainResult(
        out_dir=out_dir, num_files=len(files), num_errors=len(state["errors"]), total_frames=state["total_frames"],
        sampled_frames=int(frames.shape[0]), inertia=km.inertia, mean_sq_distance=km.inertia / frames.shape[0],
        clusters_used=km.clusters_used, usage_perplexity=_usage_perplexity(km.counts),
        iterations=km.iterations, converged=km.converged, errors=list(state["errors"]),
    )
    summary = {k: v for k, v in asdict(result).items() if k not in ("errors", "out_dir")}
    write_json_atomic(out_dir / "train_log.json", {"config": asdict(config), "source": str(source),
                                                   "features": features.describe(), **summary,
                                                   "cluster_counts": km.counts.tolist()})
    log.info("k-means: inertia %.4g (%.4g per frame), %d/%d clusters used, usage perplexity %.1f",
             km.inertia, result.mean_sq_distance, km.clusters_used, config.clusters, result.usage_perplexity)
    shutil.rmtree(work, ignore_errors=True)
    return result
