"""The `soundlm tokenize` job: audio files -> semantic ids + codec codes in a token store.

The job is built to run for hours on large corpora and to be killed at any moment:
- the file list is sorted, so every run (and every machine) sees the same order;
  `--num-shards N --shard-index I` takes the files whose position % N == I;
- a shard's files are cut into fixed parts of `part_size` files; each finished part is
  written atomically as one Parquet file (its skipped files go to an error file written
  just before), so a rerun skips finished parts and redoes only the unfinished ones;
- worker processes load, check and resample audio; the main process runs both
  tokenizers on batches of files of similar length and crops each result back to the
  file's own frame count, so batching does not change the tokens;
- a bad file is skipped and logged with its reason, never fatal.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from soundlm import audio as audio_io
from soundlm.store import (
    ERRORS_NAME,
    MANIFEST_NAME,
    STORE_VERSION,
    ErrorEntry,
    TokenRecord,
    acoustic_value_type,
    list_parts,
    merge_errors,
    part_name,
    write_manifest,
    write_part,
)
from soundlm.fileio import read_json

MANIFEST_FILE = "manifest.jsonl"

# store.json keys that must match for a rerun to add to an existing store: different
# tokenizers, corpus or part layout would mix incompatible tokens or duplicate files.
_IDENTITY_KEYS = ("semantic", "acoustic", "semantic_spec", "acoustic_spec", "semantic_vocab_size",
                  "semantic_frame_rate", "acoustic_frame_rate", "acoustic_num_codebooks",
                  "acoustic_codebook_size", "source", "num_shards", "part_size", "min_seconds",
                  "max_seconds", "normalize")


@dataclass
class TokenizeConfig:
    source: str  # an audio folder, one audio file, or a corpus manifest.jsonl
    out: str  # the token store folder
    semantic: str  # a SemanticTokenizer folder
    codec: str  # a codec spec for soundlm.codec.load_codec
    batch_size: int = 16
    workers: int = 2
    num_shards: int = 1
    shard_index: int = 0
    part_size: int = 64
    device: str | None = None
    min_seconds: float = 0.1
    max_seconds: float | None = 120.0
    normalize: str | None = None  # None, "peak" or "rms", applied before tokenizing


@dataclass
class SourceFile:
    """One input file and the corpus metadata that travels with it into the store."""

    id: str
    path: str  # absolute, for loading
    rel_path: str  # as stored in the `path` column: relative to the folder or manifest
    speaker: str | None = None
    transcript: str | None = None
    language: str | None = None
    split: str | None = None
    text_id: str | None = None


@dataclass
class LoadedAudio:
    """What a worker hands the main process: audio at both tokenizer rates, or an error."""

    index: int  # position in the shard's file list
    codec_audio: np.ndarray | None = None  # [C, S_codec] float32
    semantic_audio: np.ndarray | None = None  # [1, S_sem] float32
    duration: float = 0.0
    sample_rate: int = 0
    error: str | None = None


@dataclass
class TokenizeSummary:
    store: str
    shard_index: int
    num_shards: int
    files: int  # files in this shard
    parts: int  # parts in this shard
    parts_before: int  # parts already finished when the run started
    parts_written: int = 0
    tokenized: int = 0  # files written by this run
    skipped: int = 0  # files skipped by this run (see errors.jsonl)
    audio_seconds: float = 0.0  # tokenized by this run
    elapsed: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def nothing_to_do(self) -> bool:
        return self.parts_before == self.parts

    @property
    def speed(self) -> float:
        """Seconds of audio tokenized per second of wall time."""
        return self.audio_seconds / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        where = f"shard {self.shard_index}/{self.num_shards} of {self.store}"
        if self.nothing_to_do:
            return (f"nothing to do: all {self.parts} parts ({self.files} files) of {where} are "
                    "already tokenized")
        resumed = f", resumed after {self.parts_before} finished parts" if self.parts_before else ""
        reasons = f" (reasons in {Path(self.store) / ERRORS_NAME})" if self.skipped else ""
        return (f"tokenized {self.tokenized} files, skipped {self.skipped}{reasons}, "
                f"{self.audio_seconds:.1f} s of audio in {self.elapsed:.1f} s "
                f"({self.speed:.1f}x real time){resumed}; {where}: "
                f"{self.parts_before + self.parts_written}/{self.parts} parts done")


# ---------------------------------------------------------------------------- file list

def list_sources(source: str | Path) -> list[SourceFile]:
    """The corpus as a sorted list: a manifest's rows (by id) or a folder's audio files.

    A folder that holds a `manifest.jsonl` (as `soundlm data` writes) is read through
    its manifest so speaker, transcript and language reach the store.
    """
    source = Path(source)
    if source.is_dir() and (source / MANIFEST_FILE).is_file():
        source = source / MANIFEST_FILE
    if source.is_file() and source.suffix == ".jsonl":
        return _sources_from_manifest(source)
    files = audio_io.list_audio_files(source)
    root = source.parent if source.is_file() else source
    rels = [f.relative_to(root).as_posix() for f in files]
    stems = [r.rsplit(".", 1)[0] for r in rels]
    # Ids are paths without extension; `a.wav` next to `a.flac` would collide, so those keep it.
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [SourceFile(id=s if counts[s] == 1 else r, path=str(f.resolve()), rel_path=r)
            for f, r, s in zip(files, rels, stems)]


def _sources_from_manifest(manifest: Path) -> list[SourceFile]:
    from soundlm.data import read_manifest

    rows = read_manifest(manifest)
    out: dict[str, SourceFile] = {}
    for row in rows:
        if "id" not in row or "path" not in row:
            raise ValueError(f"{manifest}: every row needs 'id' and 'path', got keys {sorted(row)}")
        rid = str(row["id"])
        if rid in out:
            raise ValueError(f"{manifest}: id {rid!r} appears twice; ids must be unique (fix the manifest)")

        def text(key: str) -> str | None:
            return None if row.get(key) is None else str(row[key])

        out[rid] = SourceFile(id=rid, path=str((manifest.parent / row["path"]).resolve()), rel_path=str(row["path"]),
                              speaker=text("speaker"), transcript=text("transcript"), language=text("language"),
                              split=text("split"), text_id=text("text_id"))
    return [out[k] for k in sorted(out)]


def select_shard(files: Sequence[SourceFile], num_shards: int, shard_index: int) -> list[SourceFile]:
    """Files whose position % num_shards == shard_index: disjoint shards that cover the list."""
    if num_shards < 1:
        raise ValueError(f"--num-shards must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard-index must be in [0, {num_shards - 1}] for --num-shards {num_shards}, "
                         f"got {shard_index}")
    return list(files[shard_index::num_shards])


def split_parts(n_files: int, part_size: int) -> list[range]:
    if part_size < 1:
        raise ValueError(f"--part-size must be >= 1, got {part_size}")
    return [range(s, min(s + part_size, n_files)) for s in range(0, n_files, part_size)]


# ---------------------------------------------------------------------------- loading

@dataclass
class LoadSpec:
    """What a worker needs to prepare one file for both tokenizers (picklable)."""

    codec_rate: int
    codec_channels: int
    semantic_rate: int
    min_seconds: float
    max_seconds: float | None
    normalize: str | None


def load_for_tokenizers(path: str, spec: LoadSpec) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Load, check and resample one file; returns (codec [C, S], semantic [1, S'], seconds, rate).

    Raises AudioError for anything unusable (unreadable, empty, NaN, silent, too short/long).
    """
    meta = audio_io.info(path)
    native = audio_io.load_audio(path, sample_rate=None, mono=False, max_seconds=spec.max_seconds,
                                 normalize=spec.normalize)  # [C, S]
    mono = audio_io.to_mono(native) if native.shape[0] > 1 else native  # [1, S]
    if spec.codec_channels == 1:
        codec_in = mono
    elif native.shape[0] == spec.codec_channels:
        codec_in = native
    elif native.shape[0] == 1:
        codec_in = np.repeat(native, spec.codec_channels, axis=0)
    else:
        raise audio_io.AudioError(path, f"{native.shape[0]} channels, the codec takes {spec.codec_channels}",
                                  "mix the file down to mono first")
    codec_audio = audio_io.resample(codec_in, meta.sample_rate, spec.codec_rate)
    semantic_audio = audio_io.resample(mono, meta.sample_rate, spec.semantic_rate)
    for x, rate in ((codec_audio, spec.codec_rate), (semantic_audio, spec.semantic_rate)):
        audio_io.check_audio(x, path, sample_rate=rate, min_seconds=spec.min_seconds)
    # Decoded length, not the header's frame count: compressed formats may not agree with it.
    return codec_audio, semantic_audio, native.shape[-1] / meta.sample_rate, meta.sample_rate


class _LoadDataset:
    """Map-style dataset over (shard position, path); workers call __getitem__."""

    def __init__(self, items: Sequence[tuple[int, str]], spec: LoadSpec):
        self.items = list(items)
        self.spec = spec

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> LoadedAudio:
        index, path = self.items[i]
        try:
            codec_audio, semantic_audio, duration, rate = load_for_tokenizers(path, self.spec)
        except audio_io.AudioError as e:
            return LoadedAudio(index, error=str(e))
        except Exception as e:  # a decoder or resampler bug on one file must not stop the corpus
            return LoadedAudio(index, error=f"{path}: failed to load ({type(e).__name__}: {e})")
        return LoadedAudio(index, codec_audio, semantic_audio, duration, rate)


def _no_collate(item: Any) -> Any:
    return item


def _die_with_parent(_worker_id: int) -> None:
    """Have the kernel kill this loader worker when the main process dies.

    After a kill -9 of the main process a worker blocked on its full result queue would
    otherwise live on forever. Linux only (prctl); elsewhere torch's own parent check
    remains.
    """
    import ctypes
    import signal

    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _iter_loaded(dataset: _LoadDataset, workers: int, readahead: int):
    """Yield LoadedAudio in dataset order, loading in `workers` processes."""
    import torch.utils.data

    if workers <= 0:
        yield from (dataset[i] for i in range(len(dataset)))
        return
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers, collate_fn=_no_collate,
        worker_init_fn=_die_with_parent,
        # Read ahead about one part so loading overlaps the main process's inference.
        prefetch_factor=max(2, math.ceil(readahead / workers)))
    yield from loader


# ---------------------------------------------------------------------------- inference

def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, stable), to waste little padding."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[s: s + batch_size] for s in range(0, len(order), batch_size)]


def _pad_stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """[C, S_i] arrays -> [B, C, max S_i], zero-padded on the right."""
    longest = max(a.shape[-1] for a in arrays)
    out = np.zeros((len(arrays), arrays[0].shape[0], longest), dtype=np.float32)
    for b, a in enumerate(arrays):
        out[b, :, : a.shape[-1]] = a
    return out


def semantic_num_frames(semantic: Any, num_samples: int) -> int:
    """Frames the semantic tokenizer emits for `num_samples` samples at its own rate."""
    if hasattr(semantic, "num_frames"):
        return int(semantic.num_frames(num_samples))
    return math.ceil(num_samples * semantic.frame_rate / semantic.sample_rate)


@dataclass
class BatchTokenizer:
    """One tokenizer as the job sees it: encode [B, C, S] -> [B, T] or [B, K, T], frame count.

    `pad_invariant` says whether right zero-padding and batch neighbours leave a file's
    own frames unchanged; if not, only files of identical length share a batch.
    """

    name: str
    encode: Any  # Callable[[torch.Tensor], torch.Tensor]
    num_frames: Any  # Callable[[int], int]
    sample_rate: int
    channels: int
    pad_invariant: bool = True


def probe_pad_invariance(tok: BatchTokenizer, device: str, seconds: Sequence[float] = (0.53, 0.81, 1.27)) -> bool:
    """Whether padding a file (and batching it with another) changes its tokens.

    Causal codecs are exact under right padding; features with utterance-level steps
    (deltas with edge replication, per-utterance normalisation, self-attention over the
    padding) are not. This checks a few seeded test signals with rich spectra, so a
    tokenizer that passes is exact on them, not proven exact on every input.
    """
    import torch

    g = torch.Generator().manual_seed(1234)
    for sec in seconds:
        n = int(sec * tok.sample_rate)
        t = torch.arange(n) / tok.sample_rate
        # A chirp under a slow tremolo plus noise: frames differ from each other, so the
        # tokens near the end are sensitive to what the tokenizer sees after it.
        chirp = torch.sin(2 * math.pi * (100 + 1500 * t) * t) * (0.5 + 0.4 * torch.sin(2 * math.pi * 3 * t))
        x = (0.3 * chirp + 0.05 * torch.randn(n, generator=g)).expand(tok.channels, n)[None]  # [1, C, S]
        other = 0.2 * torch.randn(1, tok.channels, n + n // 2 + 97, generator=g)  # [1, C, S + pad]
        padded = torch.cat([torch.nn.functional.pad(x, (0, other.shape[-1] - n)), other])  # [2, C, S + pad]
        with torch.inference_mode():
            alone = tok.encode(x.float().to(device)).cpu()
            batched = tok.encode(padded.float().to(device)).cpu()
        frames = tok.num_frames(n)
        if alone.shape[-1] != frames or not torch.equal(alone[0, ..., :frames], batched[0, ..., :frames]):
            return False
    return True


@dataclass
class Encoded:
    semantic: np.ndarray  # [T_sem] int64
    acoustic: np.ndarray  # [K, T_ac] int64


def encode_group(tok: BatchTokenizer, arrays: Sequence[np.ndarray], device: str) -> list[np.ndarray]:
    """Tokenize files [C, S_i] together where that is exact; return each file's own frames."""
    import torch

    if tok.pad_invariant:
        groups = [list(range(len(arrays)))]
    else:
        by_length: dict[int, list[int]] = {}
        for i, a in enumerate(arrays):
            by_length.setdefault(a.shape[-1], []).append(i)
        groups = list(by_length.values())
    out: list[np.ndarray | None] = [None] * len(arrays)
    for group in groups:
        x = torch.from_numpy(_pad_stack([arrays[i] for i in group])).to(device)  # [B, C, S]
        with torch.inference_mode():
            tokens = tok.encode(x).cpu().numpy()  # [B, T] or [B, K, T]
        for b, i in enumerate(group):
            n = tok.num_frames(arrays[i].shape[-1])
            if n > tokens.shape[-1]:
                raise ValueError(f"{tok.name} tokenizer returned {tokens.shape[-1]} frames for a file it says "
                                 f"has {n}")
            out[i] = tokens[b, ..., :n].astype(np.int64)
    return out  # type: ignore[return-value]


def encode_batch(semantic: BatchTokenizer, codec: BatchTokenizer, codec_audio: Sequence[np.ndarray],
                 semantic_audio: Sequence[np.ndarray], device: str) -> list[Encoded]:
    """Tokenize a batch of files with both tokenizers; each result has its file's own length."""
    sem = encode_group(semantic, semantic_audio, device)  # [T_sem] each
    codes = encode_group(codec, codec_audio, device)  # [K, T_ac] each
    return [Encoded(s, c) for s, c in zip(sem, codes)]


def batch_tokenizers(semantic: Any, codec: Any, device: str, probe: bool = True) -> tuple[BatchTokenizer, BatchTokenizer]:
    sem = BatchTokenizer("semantic", lambda x: semantic.encode(x), lambda n: semantic_num_frames(semantic, n),
                         int(semantic.sample_rate), 1)
    ac = BatchTokenizer("acoustic", lambda x: codec.encode(x), codec.num_frames, int(codec.sample_rate),
                        int(codec.channels))
    if probe:
        for tok in (sem, ac):
            tok.pad_invariant = probe_pad_invariance(tok, device)
    return sem, ac


# ---------------------------------------------------------------------------- the job

def store_manifest(cfg: TokenizeConfig, semantic: Any, codec: Any) -> dict:
    """store.json content for this job (identity of tokenizers, corpus and layout)."""
    import json

    def spec(s: str) -> str:
        p = Path(s)
        return str(p.resolve()) if p.exists() else s

    def jsonable(d: dict) -> dict:
        return json.loads(json.dumps(d, default=str))

    return {
        "version": STORE_VERSION,
        "semantic": jsonable(semantic.describe()),
        "acoustic": jsonable(codec.describe()),
        "semantic_spec": spec(cfg.semantic),
        "acoustic_spec": spec(cfg.codec),
        "semantic_sample_rate": int(semantic.sample_rate),
        "semantic_frame_rate": float(semantic.frame_rate),
        "semantic_vocab_size": int(semantic.vocab_size),
        "acoustic_sample_rate": int(codec.sample_rate),
        "acoustic_frame_rate": float(codec.frame_rate),
        "acoustic_num_codebooks": int(codec.num_codebooks),
        "acoustic_codebook_size": int(codec.codebook_size),
        "acoustic_dtype": str(acoustic_value_type(int(codec.codebook_size))),
        "source": str(Path(cfg.source).resolve()),
        "num_shards": cfg.num_shards,
        "part_size": cfg.part_size,
        "min_seconds": cfg.min_seconds,
        "max_seconds": cfg.max_seconds,
        "normalize": cfg.normalize,
        "shards": {},
    }


def _identity(value: Any) -> Any:
    # describe() may name the folder as typed (relative or absolute); the resolved
    # *_spec keys already pin the location, so the typed form must not cause a refusal.
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "source"}
    return value


def check_compatible(existing: dict, new: dict, store: Path) -> None:
    """Refuse to add to a store made with other tokenizers, corpus or layout."""
    if existing.get("version") != new["version"]:
        raise ValueError(f"{store}: store version {existing.get('version')!r} differs from "
                         f"{new['version']}; write to a new --out folder")
    diffs = [k for k in _IDENTITY_KEYS if _identity(existing.get(k)) != _identity(new.get(k))]
    if diffs:
        detail = "; ".join(f"{k}: store has {existing.get(k)!r}, this run {new.get(k)!r}" for k in diffs)
        raise ValueError(f"{store} was made with different settings ({detail}). A store holds tokens of one "
                         "tokenizer pair over one corpus: pass a new --out folder, or the original settings")


def _update_shard_status(store: Path, shard_index: int, status: dict) -> None:
    # Re-read just before writing: other machines may have added their shards meanwhile.
    manifest = read_json(store / MANIFEST_NAME)
    manifest.setdefault("shards", {})[str(shard_index)] = status
    write_manifest(store, manifest)


def _check_config(cfg: TokenizeConfig) -> None:
    if cfg.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.workers < 0:
        raise ValueError(f"--workers must be >= 0 (0 loads audio in the main process), got {cfg.workers}")
    if cfg.max_seconds is not None and cfg.max_seconds <= cfg.min_seconds:
        raise ValueError(f"--max-seconds ({cfg.max_seconds}) must exceed --min-seconds ({cfg.min_seconds})")
    if cfg.normalize not in (None, "peak", "rms"):
        raise ValueError(f"--normalize must be 'none', 'peak' or 'rms', got {cfg.normalize!r}")
    if not Path(cfg.source).exists():
        raise FileNotFoundError(f"{cfg.source}: no such audio folder, file or manifest")
    if not Path(cfg.semantic).is_dir():
        raise FileNotFoundError(f"{cfg.semantic}: no such semantic tokenizer folder; "
                                "train one with `soundlm train semantic`")


def load_tokenizers(semantic_spec: str, codec_spec: str, device: str) -> tuple[Any, Any]:
    from soundlm.codec import load_codec
    from soundlm.semantic.tokenizer import SemanticTokenizer

    semantic = SemanticTokenizer.load(semantic_spec, device=device)
    codec = load_codec(codec_spec, device=device)
    for model in (semantic, codec):
        if hasattr(model, "eval"):
            model.eval()
    return semantic, codec


def tokenize_corpus(cfg: TokenizeConfig, progress: bool = True,
                    tokenizers: tuple[Any, Any] | None = None) -> TokenizeSummary:
    """Run (or resume) the tokenize job for one shard; returns what this run did.

    `tokenizers` passes already loaded (semantic, codec) models instead of loading
    `cfg.semantic` / `cfg.codec` (their specs are still recorded in store.json).
    """
    from tqdm import tqdm

    from soundlm.devices import default_device

    start = time.perf_counter()
    _check_config(cfg)
    corpus = list_sources(cfg.source)
    if not corpus:
        raise ValueError(f"{cfg.source}: no audio files found (extensions {', '.join(audio_io.AUDIO_EXTENSIONS)}) "
                         "and no manifest.jsonl; point at the corpus folder or its manifest")
    files = select_shard(corpus, cfg.num_shards, cfg.shard_index)
    parts = split_parts(len(files), cfg.part_size)
    store = Path(cfg.out)
    device = str(default_device(cfg.device))
    semantic, codec = tokenizers if tokenizers is not None else load_tokenizers(cfg.semantic, cfg.codec, device)

    manifest = store_manifest(cfg, semantic, codec)
    if (store / MANIFEST_NAME).exists():
        check_compatible(read_json(store / MANIFEST_NAME), manifest, store)
    else:
        store.mkdir(parents=True, exist_ok=True)
        write_manifest(store, manifest)

    finished = {p.name for p in list_parts(store, cfg.shard_index)}
    names = [part_name(cfg.shard_index, cfg.num_shards, k) + ".parquet" for k in range(len(parts))]
    todo = [k for k in range(len(parts)) if names[k] not in finished]
    summary = TokenizeSummary(store=str(store), shard_index=cfg.shard_index, num_shards=cfg.num_shards,
                              files=len(files), parts=len(parts), parts_before=len(parts) - len(todo))
    status = {"files": len(files), "parts": len(parts), "complete": False}
    if todo:
        _update_shard_status(store, cfg.shard_index, status)
        _remove_stale_temp_files(store, cfg.shard_index, cfg.num_shards)
        acoustic_type = acoustic_value_type(int(codec.codebook_size))
        spec = LoadSpec(codec_rate=int(codec.sample_rate), codec_channels=int(codec.channels),
                        semantic_rate=int(semantic.sample_rate), min_seconds=cfg.min_seconds,
                        max_seconds=cfg.max_seconds, normalize=cfg.normalize)
        sem_tok, ac_tok = batch_tokenizers(semantic, codec, device)
        for tok in (sem_tok, ac_tok):
            if not tok.pad_invariant:
                summary.notes.append(
                    f"the {tok.name} tokenizer's tokens near a file's end depend on padding, so files are "
                    f"{tok.name}-encoded in batches of equal length only (exact, slower)")
        for note in summary.notes:
            tqdm.write(f"note: {note}", file=sys.stderr)
        items = [(i, files[i].path) for k in todo for i in parts[k]]
        loaded = _iter_loaded(_LoadDataset(items, spec), cfg.workers, readahead=cfg.part_size)
        done_files = sum(len(parts[k]) for k in range(len(parts)) if k not in set(todo))
        bar = tqdm(total=len(files), initial=done_files, unit="file", desc="tokenize", disable=not progress,
                   dynamic_ncols=True)
        try:
            for k in todo:
                batch = [next(loaded) for _ in parts[k]]
                _run_part(store, cfg, k, files, batch, sem_tok, ac_tok, device, acoustic_type, summary, bar)
                summary.parts_written += 1
        finally:
            bar.close()
            loaded.close()
    shard_status = read_json(store / MANIFEST_NAME).get("shards", {}).get(str(cfg.shard_index), {})
    # A finished shard whose status says so is left untouched: a rerun writes nothing.
    if todo or not shard_status.get("complete") or not (store / ERRORS_NAME).exists():
        merge_errors(store)
        status["complete"] = True
        _update_shard_status(store, cfg.shard_index, status)
    summary.elapsed = time.perf_counter() - start
    return summary


def _run_part(store: Path, cfg: TokenizeConfig, part_index: int, files: Sequence[SourceFile],
              loaded: Sequence[LoadedAudio], semantic: BatchTokenizer, codec: BatchTokenizer, device: str,
              acoustic_type: Any, summary: TokenizeSummary, bar: Any) -> None:
    """Tokenize one part's loaded files and write the part (Parquet + error file)."""
    errors = {x.index: x.error for x in loaded if x.error is not None}
    good = [x for x in loaded if x.error is None]
    encoded: dict[int, Encoded] = {}
    for batch_idx in length_batches([x.codec_audio.shape[-1] for x in good], cfg.batch_size):
        batch = [good[i] for i in batch_idx]
        for x, enc in zip(batch, _encode_or_isolate(semantic, codec, batch, device)):
            if isinstance(enc, Encoded):
                encoded[x.index] = enc
            else:
                errors[x.index] = enc
        bar.update(len(batch))
    records, error_entries = [], []
    for x in loaded:  # file-list order, whatever order the batches ran in
        f = files[x.index]
        if x.index in errors:
            error_entries.append(ErrorEntry(f.rel_path, errors[x.index]))
            continue
        enc = encoded[x.index]
        records.append(TokenRecord(id=f.id, path=f.rel_path, duration=x.duration, semantic=enc.semantic,
                                   acoustic=enc.acoustic, speaker=f.speaker, transcript=f.transcript,
                                   language=f.language, sample_rate=x.sample_rate, split=f.split,
                                   text_id=f.text_id))
        summary.audio_seconds += x.duration
    write_part(store, cfg.shard_index, cfg.num_shards, part_index, records, error_entries, acoustic_type)
    bar.update(len(loaded) - len(good))
    summary.tokenized += len(records)
    summary.skipped += len(error_entries)
    bar.set_postfix(skipped=summary.skipped)


def _encode_or_isolate(semantic: BatchTokenizer, codec: BatchTokenizer, batch: Sequence[LoadedAudio], device: str) -> list[Encoded | str]:
    """Encode a batch; if it fails, encode its files one by one so one bad file costs only itself."""
    try:
        return list(encode_batch(semantic, codec, [x.codec_audio for x in batch],
                                 [x.semantic_audio for x in batch], device))
    except Exception as batch_error:
        if len(batch) == 1:
            return [f"tokenizer failed ({type(batch_error).__name__}: {batch_error})"]
    return [_encode_or_isolate(semantic, codec, [x], device)[0] for x in batch]


def _remove_stale_temp_files(store: Path, shard_index: int, num_shards: int) -> None:
    """Delete temp files a killed run of this shard left behind (other shards' are theirs)."""
    prefix = f".tmp-shard-{shard_index:05d}-of-{num_shards:05d}."
    for folder in (store, store / "errors"):
        if folder.is_dir():
            for p in folder.glob(prefix + "*"):
                p.unlink(missing_ok=True)
