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
- a bad file is skipped and logged with its reason, never fatal;
- a file longer than `max_seconds` is cut into chunks (`soundlm.chunking`: at silences,
  else fixed windows with overlapping context trimmed off), stored as records `ID#k` with
  their offset in the file and the parent id; nothing is skipped for being long;
- with `mulan` (MusicLM), each file's condition ids (`MuLan.condition_tokens` of its whole
  audio's `embed_audio`, mono at the MuLan's rate; or, for a MuLan that conditions on text,
  `MuLan.caption_condition` of its transcript field) go into the `condition` column of its
  record, or of every chunk of it.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from soundlm import audio as audio_io
from soundlm.audio_tokenizer import AudioSpec, AudioTokenizer, PreparedAudio, Tokens, prepare_audio
from soundlm.chunking import ChunkSpan, plan_chunks, resolve_chunker, token_grid
from soundlm.distributed import die_with_parent
from soundlm.store import (
    ERRORS_NAME,
    STORE_JSON,
    ErrorEntry,
    StoreManifest,
    TokenRecord,
    acoustic_value_type,
    list_parts,
    merge_errors,
    part_name,
    write_part,
)

if TYPE_CHECKING:
    from soundlm.music.mulan import MuLan
    from soundlm.codec.base import AcousticTokenizer
    from soundlm.data import CorpusIndex, CorpusItem
    from soundlm.semantic.base import SemanticTokenizer

# Context on each side of a cut that found no silence, tokenized and trimmed off again.
CHUNK_OVERLAP_SECONDS = 1.0

@dataclass
class TokenizeConfig:
    source: str  # an audio folder, one audio file, or a corpus manifest.jsonl
    out: str  # the token store folder
    semantic: str  # a semantic tokenizer folder
    codec: str  # a codec spec for soundlm.codec.load_codec
    batch_size: int = 16
    workers: int = 2
    num_shards: int = 1
    shard_index: int = 0
    part_size: int = 64
    device: str | None = None
    min_seconds: float = 0.1
    max_seconds: float | None = 120.0  # chunk length: longer files are cut into chunks (None: never)
    normalize: str | None = None  # None, "peak" or "rms", applied before tokenizing
    chunker: str = "auto"  # where chunks end: auto (silero if installed, else energy), energy, silero, fixed
    mulan: str | None = None  # a MuLan folder: store each file's condition ids (MusicLM conditioning)


@dataclass
class Piece:
    """A whole file (`span` None) or one chunk of it, prepared for both tokenizers, or its error."""

    prepared: PreparedAudio | None
    span: ChunkSpan | None = None
    error: str | None = None


@dataclass
class LoadedAudio:
    """What a worker hands the main process: the file's pieces prepared for both tokenizers, or an error."""

    index: int  # position in the shard's file list
    pieces: list[Piece] = field(default_factory=list)
    duration: float = 0.0
    sample_rate: int = 0
    error: str | None = None
    condition_audio: np.ndarray | None = None  # [S] mono at the MuLan's rate (LoadSpec.condition_rate)


@dataclass
class TokenizeSummary:
    store: str
    shard_index: int
    num_shards: int
    files: int  # files in this shard
    parts: int  # parts in this shard
    parts_before: int  # parts already finished when the run started
    parts_written: int = 0
    tokenized: int = 0  # files written by this run (whole, or at least one chunk)
    skipped: int = 0  # files skipped by this run (see errors.jsonl)
    chunked_files: int = 0  # long files this run cut into chunks
    chunks: int = 0  # chunks of those it wrote
    skipped_chunks: int = 0  # chunks skipped alone (e.g. silent), each logged as PATH#k
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
        reasons = f" (reasons in {Path(self.store) / ERRORS_NAME})" if self.skipped or self.skipped_chunks else ""
        chunks = f" ({self.chunked_files} long files cut into {self.chunks} chunks)" if self.chunked_files else ""
        skipped = f"{self.skipped}" + (f" and {self.skipped_chunks} chunks" if self.skipped_chunks else "")
        return (f"tokenized {self.tokenized} files{chunks}, skipped {skipped}{reasons}, "
                f"{self.audio_seconds:.1f} s of audio in {self.elapsed:.1f} s "
                f"({self.speed:.1f}x real time){resumed}; {where}: "
                f"{self.parts_before + self.parts_written}/{self.parts} parts done")


# ---------------------------------------------------------------------------- file list

def job_files(source: str | Path) -> CorpusIndex:
    """The job's file list: `open_corpus(source)`'s items with a manifest's rows sorted by id, as an
    index that makes each item when asked (a few dozen bytes per file held, not the items).

    Shards and parts take files by position, so the order is part of a store's layout.
    """
    from soundlm.data import corpus_index

    index = corpus_index(source)
    return index.by_id() if index.manifest is not None else index


def select_shard(files: Sequence[CorpusItem], num_shards: int, shard_index: int) -> Sequence[CorpusItem]:
    """Files whose position % num_shards == shard_index: disjoint shards that cover the list (a view)."""
    if num_shards < 1:
        raise ValueError(f"--num-shards must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"--shard-index must be in [0, {num_shards - 1}] for --num-shards {num_shards}, "
                         f"got {shard_index}")
    return files[shard_index::num_shards]


def split_parts(n_files: int, part_size: int) -> list[range]:
    if part_size < 1:
        raise ValueError(f"--part-size must be >= 1, got {part_size}")
    return [range(s, min(s + part_size, n_files)) for s in range(0, n_files, part_size)]


# ---------------------------------------------------------------------------- loading

@dataclass(frozen=True)
class LoadSpec:
    """What a worker needs to load one file and prepare it for both tokenizers (picklable)."""

    audio: AudioSpec
    min_seconds: float
    max_seconds: float | None  # chunk length (None: whole files only)
    normalize: str | None
    grid_seconds: float = 0.02  # chunk edges: a whole number of frames of both streams (`token_grid`)
    chunker: str = "energy"  # resolved (`chunking.resolve_chunker`)
    overlap_seconds: float = CHUNK_OVERLAP_SECONDS
    condition_rate: int | None = None  # also return the whole file mono at this rate (MuLan's), else None


def load_pieces(path: str, spec: LoadSpec) -> tuple[list[Piece], float, int]:
    """Load, check and prepare one file, cut into chunks when longer than `spec.max_seconds`;
    returns (pieces, seconds, native rate).

    Raises AudioError for a file that is unusable as a whole (unreadable, empty, NaN, silent,
    too short); a chunk that is unusable alone (e.g. silent) is a piece with an error.
    """
    meta = audio_io.info(path)
    native = audio_io.load_audio(path, sample_rate=None, mono=False, normalize=spec.normalize)  # [C, S]
    # Decoded length, not the header's frame count: compressed formats may not agree with it.
    seconds = native.shape[-1] / meta.sample_rate
    spans = plan_chunks(native, meta.sample_rate, spec.max_seconds, spec.grid_seconds, spec.overlap_seconds,
                        spec.chunker) if spec.max_seconds is not None and seconds > spec.max_seconds else []
    if len(spans) <= 1:
        return [Piece(prepare_audio(native, meta.sample_rate, spec.audio, path, min_seconds=spec.min_seconds))], \
            seconds, meta.sample_rate
    pieces = []
    for span in spans:
        try:
            pieces.append(Piece(prepare_audio(native[:, span.context_start: span.context_end], meta.sample_rate,
                                              spec.audio, f"{path}#{span.index}", min_seconds=spec.min_seconds),
                                span))
        except audio_io.AudioError as e:
            pieces.append(Piece(None, span, error=str(e)))
    return pieces, seconds, meta.sample_rate


def load_for_tokenizers(path: str, spec: LoadSpec) -> tuple[PreparedAudio, float, int]:
    """Load, check and prepare one whole file (never chunked); returns (prepared audio, seconds, native rate)."""
    pieces, seconds, rate = load_pieces(path, replace(spec, max_seconds=None))
    return pieces[0].prepared, seconds, rate


class _LoadDataset:
    """Map-style dataset over the shard's files (by position); workers call __getitem__."""

    def __init__(self, files: Sequence[CorpusItem], spec: LoadSpec):
        self.files = files
        self.spec = spec

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> LoadedAudio:
        path = str(self.files[index].path)
        try:
            pieces, duration, rate = load_pieces(path, self.spec)
            condition_audio = None
            if self.spec.condition_rate is not None:
                # The whole file, as MuLan hears it (one more decode: the pieces keep no native copy).
                native = audio_io.load_audio(path, sample_rate=None, mono=True, normalize=self.spec.normalize)
                condition_audio = audio_io.resample(native, rate, self.spec.condition_rate).reshape(-1)
        except audio_io.AudioError as e:
            return LoadedAudio(index, error=str(e))
        except Exception as e:  # a decoder or resampler bug on one file must not stop the corpus
            return LoadedAudio(index, error=f"{path}: failed to load ({type(e).__name__}: {e})")
        return LoadedAudio(index, pieces, duration, rate, condition_audio=condition_audio)


def _no_collate(item: Any) -> Any:
    return item


def _die_with_parent(_worker_id: int) -> None:
    """A loader worker's init: die with the main process (after its kill -9, a worker blocked on
    its full result queue would otherwise live on forever)."""
    die_with_parent()


def _iter_loaded(dataset: _LoadDataset, positions: Iterable[int], workers: int, readahead: int):
    """Yield the LoadedAudio of `positions` in order, loading in `workers` processes."""
    import torch.utils.data

    if workers <= 0:
        yield from (dataset[i] for i in positions)
        return
    loader = torch.utils.data.DataLoader(
        # A generator of positions: the job never lists them all.
        dataset, batch_size=None, sampler=positions, num_workers=workers, collate_fn=_no_collate,
        worker_init_fn=_die_with_parent,
        # Read ahead about one part so loading overlaps the main process's inference.
        prefetch_factor=max(2, math.ceil(readahead / workers)))
    yield from loader


# ---------------------------------------------------------------------------- inference

def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (sorted, stable), to waste little padding."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[s: s + batch_size] for s in range(0, len(order), batch_size)]


# ---------------------------------------------------------------------------- the job

def store_manifest(cfg: TokenizeConfig, semantic: SemanticTokenizer, codec: AcousticTokenizer,
                   mulan: MuLan | None = None) -> StoreManifest:
    """store.json content for this job (identity of tokenizers, corpus, layout, chunking and MuLan)."""
    def spec(s: str) -> str:
        p = Path(s)
        return str(p.resolve()) if p.exists() else s

    condition = {} if mulan is None else dict(
        mulan_spec=spec(cfg.mulan) if cfg.mulan else None, condition_tokens=int(mulan.num_condition_tokens),
        condition_codebook_size=int(mulan.condition_codebook_size))
    return StoreManifest.for_tokenizers(
        semantic, codec, semantic_spec=spec(cfg.semantic), acoustic_spec=spec(cfg.codec),
        source=str(Path(cfg.source).resolve()), num_shards=cfg.num_shards, part_size=cfg.part_size,
        min_seconds=cfg.min_seconds, max_seconds=cfg.max_seconds, normalize=cfg.normalize,
        chunker=resolve_chunker(cfg.chunker) if cfg.max_seconds is not None else None, **condition)


def _update_shard_status(store: Path, shard_index: int, status: dict) -> None:
    # Re-read just before writing: other machines may have added their shards meanwhile.
    StoreManifest.read(store).with_shard_status(shard_index, status).write(store)


def _check_config(cfg: TokenizeConfig) -> None:
    if cfg.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {cfg.batch_size}")
    if cfg.workers < 0:
        raise ValueError(f"--workers must be >= 0 (0 loads audio in the main process), got {cfg.workers}")
    if cfg.max_seconds is not None and cfg.max_seconds <= cfg.min_seconds:
        raise ValueError(f"--max-seconds ({cfg.max_seconds}) must exceed --min-seconds ({cfg.min_seconds})")
    resolve_chunker(cfg.chunker)
    if cfg.normalize not in (None, "peak", "rms"):
        raise ValueError(f"--normalize must be 'none', 'peak' or 'rms', got {cfg.normalize!r}")
    if not Path(cfg.source).exists():
        raise FileNotFoundError(f"{cfg.source}: no such audio folder, file or manifest")
    if not Path(cfg.semantic).is_dir():
        raise FileNotFoundError(f"{cfg.semantic}: no such semantic tokenizer folder; "
                                "train one with `soundlm train semantic`")
    if cfg.mulan is not None and not Path(cfg.mulan).is_dir():
        raise FileNotFoundError(f"{cfg.mulan}: no such MuLan folder; train one with `soundlm train mulan`")


def load_tokenizers(semantic_spec: str, codec_spec: str, device: str) -> tuple[SemanticTokenizer, AcousticTokenizer]:
    from soundlm.codec import load_codec
    from soundlm.semantic import load_semantic_tokenizer

    semantic = load_semantic_tokenizer(semantic_spec, device=device)
    codec = load_codec(codec_spec, device=device)
    for model in (semantic, codec):
        if hasattr(model, "eval"):
            model.eval()
    return semantic, codec


def tokenize_corpus(cfg: TokenizeConfig, progress: bool = True,
                    tokenizers: tuple[SemanticTokenizer, AcousticTokenizer] | None = None,
                    mulan: MuLan | None = None) -> TokenizeSummary:
    """Run (or resume) the tokenize job for one shard; returns what this run did.

    `tokenizers` passes already loaded (semantic, codec) models instead of loading
    `cfg.semantic` / `cfg.codec` (their specs are still recorded in store.json); `mulan` an
    already loaded MuLan instead of `cfg.mulan`.
    """
    from tqdm import tqdm

    from soundlm.devices import default_device

    start = time.perf_counter()
    _check_config(cfg)
    corpus = job_files(cfg.source)
    files = select_shard(corpus, cfg.num_shards, cfg.shard_index)
    parts = split_parts(len(files), cfg.part_size)
    store = Path(cfg.out)
    device = str(default_device(cfg.device))
    semantic, codec = tokenizers if tokenizers is not None else load_tokenizers(cfg.semantic, cfg.codec, device)
    if mulan is None and cfg.mulan is not None:
        from soundlm.music.mulan import load_mulan

        mulan = load_mulan(cfg.mulan, device=device)
    if mulan is not None and hasattr(mulan, "eval"):
        mulan.eval()

    manifest = store_manifest(cfg, semantic, codec, mulan)
    if (store / STORE_JSON).exists():
        StoreManifest.read(store).check_compatible(manifest, store)
    else:
        store.mkdir(parents=True, exist_ok=True)
        manifest.write(store)

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
        tokenizer = AudioTokenizer(semantic, codec, device)
        spec = LoadSpec(tokenizer.spec, min_seconds=cfg.min_seconds, max_seconds=cfg.max_seconds,
                        normalize=cfg.normalize, grid_seconds=token_grid([semantic.frame_rate, codec.frame_rate]),
                        chunker=manifest.chunker or "fixed",
                        condition_rate=int(mulan.sample_rate) if mulan is not None else None)
        for tok in tokenizer.tokenizers():
            if not tok.pad_invariant:
                summary.notes.append(
                    f"the {tok.name} tokenizer's tokens near a file's end depend on padding, so files are "
                    f"{tok.name}-encoded in batches of equal length only (exact, slower)")
        for note in summary.notes:
            tqdm.write(f"note: {note}", file=sys.stderr)
        positions = (i for k in todo for i in parts[k])
        loaded = _iter_loaded(_LoadDataset(files, spec), positions, cfg.workers, readahead=cfg.part_size)
        done_files = sum(len(parts[k]) for k in range(len(parts)) if k not in set(todo))
        bar = tqdm(total=len(files), initial=done_files, unit="file", desc="tokenize", disable=not progress,
                   dynamic_ncols=True)
        try:
            for k in todo:
                batch = [next(loaded) for _ in parts[k]]
                _run_part(store, cfg, k, files, batch, tokenizer, acoustic_type, summary, bar, mulan)
                summary.parts_written += 1
        finally:
            bar.close()
            loaded.close()
    shard_status = StoreManifest.read(store).shards.get(str(cfg.shard_index), {})
    # A finished shard whose status says so is left untouched: a rerun writes nothing.
    if todo or not shard_status.get("complete") or not (store / ERRORS_NAME).exists():
        merge_errors(store)
        status["complete"] = True
        _update_shard_status(store, cfg.shard_index, status)
    summary.elapsed = time.perf_counter() - start
    return summary


def _run_part(store: Path, cfg: TokenizeConfig, part_index: int, files: Sequence[CorpusItem],
              loaded: Sequence[LoadedAudio], tokenizer: AudioTokenizer, acoustic_type: Any,
              summary: TokenizeSummary, bar: Any, mulan: MuLan | None = None) -> None:
    """Tokenize one part's loaded files (their pieces, batched by length) and write the part."""
    errors = {x.index: x.error for x in loaded if x.error is not None}
    # (file, piece) pairs to encode; the bar advances by each file's share per piece.
    todo = [(x, k) for x in loaded if x.error is None for k, p in enumerate(x.pieces) if p.error is None]
    encoded: dict[tuple[int, int], Tokens | str] = {}
    bar.update(sum(1 / len(x.pieces) for x in loaded if x.error is None for p in x.pieces if p.error is not None))
    for batch_idx in length_batches([x.pieces[k].prepared.codec.shape[-1] for x, k in todo], cfg.batch_size):
        batch = [todo[i] for i in batch_idx]
        for (x, k), enc in zip(batch, _encode_or_isolate(tokenizer, [x.pieces[k].prepared for x, k in batch])):
            encoded[x.index, k] = enc
        bar.update(sum(1 / len(x.pieces) for x, _ in batch))
    records, error_entries = [], []
    for x in loaded:  # file-list order, whatever order the batches ran in
        f = files[x.index]
        if x.index in errors:
            error_entries.append(ErrorEntry(f.rel_path, errors[x.index]))
            summary.skipped += 1
            continue
        kept = 0
        for k, piece in enumerate(x.pieces):
            enc = encoded.get((x.index, k), piece.error)
            if not isinstance(enc, Tokens):
                error_entries.append(ErrorEntry(f.rel_path if piece.span is None else f"{f.rel_path}#{k}", enc))
                summary.skipped_chunks += piece.span is not None
                continue
            records.append(_record(f, x, piece.span, enc, tokenizer))
            kept += 1
        if kept and mulan is not None:
            try:
                condition = _condition_ids(mulan, x.condition_audio, f.transcript)
            except ValueError as e:  # a caption-conditioning MuLan, and a file without a caption
                del records[len(records) - kept:]
                error_entries.append(ErrorEntry(f.rel_path, str(e)))
                kept = 0
            else:
                for r in records[len(records) - kept:]:  # the file's record, or each of its chunks
                    r.condition = condition
        summary.tokenized += kept > 0
        summary.skipped += kept == 0
        if x.pieces[0].span is not None:
            summary.chunked_files += 1
            summary.chunks += kept
        summary.audio_seconds += x.duration
    write_part(store, cfg.shard_index, cfg.num_shards, part_index, records, error_entries, acoustic_type)
    bar.update(len(errors))
    bar.set_postfix(skipped=summary.skipped)


def _record(f: CorpusItem, x: LoadedAudio, span: ChunkSpan | None, enc: Tokens,
            tokenizer: AudioTokenizer) -> TokenRecord:
    """The store record of a whole file, or of one chunk: `ID#k`, its offset, its own frames, the parent id."""
    common = dict(path=f.rel_path, speaker=f.speaker, language=f.language, sample_rate=x.sample_rate, split=f.split)
    if span is None:
        return TokenRecord(id=f.id, duration=x.duration, semantic=enc.semantic, acoustic=enc.acoustic,
                           transcript=f.transcript, text_id=f.text_id, **common)
    s0, s1 = span.frames(x.sample_rate, tokenizer.semantic.frame_rate, enc.semantic.shape[-1])
    a0, a1 = span.frames(x.sample_rate, tokenizer.codec.frame_rate, enc.acoustic.shape[-1])
    # A chunk has no transcript of its own, and is no translation of a chunk in another language.
    return TokenRecord(id=f"{f.id}#{span.index}", duration=(span.end - span.start) / x.sample_rate,
                       semantic=enc.semantic[s0:s1], acoustic=enc.acoustic[:, a0:a1], parent=f.id,
                       offset=span.start / x.sample_rate, **common)


def _condition_ids(mulan: MuLan, audio: np.ndarray, caption: str | None = None) -> np.ndarray:
    """A whole file's condition ids [Q]: the quantized MuLan embedding of its audio (mono, MuLan's rate), or,
    for a MuLan that conditions on text, its caption's tokens (the corpus's transcript field)."""
    import torch

    if getattr(mulan, "conditions_on_text", False):
        if not caption or not caption.strip():
            raise ValueError("no caption (the manifest's transcript field) to take condition ids from; this MuLan "
                             "conditions on captions: give every file one, or use a MuLan with condition_from audio")
        with torch.inference_mode():
            return mulan.caption_condition([caption])[0].long().cpu().numpy()
    device = next(mulan.parameters()).device if isinstance(mulan, torch.nn.Module) else "cpu"
    with torch.inference_mode():
        emb = mulan.embed_audio(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None].to(device))
        return mulan.condition_tokens(emb)[0].long().cpu().numpy()


def _encode_or_isolate(tokenizer: AudioTokenizer, batch: Sequence[PreparedAudio]) -> list[Tokens | str]:
    """Encode a batch; if it fails, encode its items one by one so one bad file costs only itself."""
    try:
        return tokenizer.encode_prepared(list(batch))
    except Exception as batch_error:
        if len(batch) == 1:
            return [f"tokenizer failed ({type(batch_error).__name__}: {batch_error})"]
    return [_encode_or_isolate(tokenizer, [x])[0] for x in batch]


def _remove_stale_temp_files(store: Path, shard_index: int, num_shards: int) -> None:
    """Delete temp files a killed run of this shard left behind (other shards' are theirs)."""
    prefix = f".tmp-shard-{shard_index:05d}-of-{num_shards:05d}."
    for folder in (store, store / "errors"):
        if folder.is_dir():
            for p in folder.glob(prefix + "*"):
                p.unlink(missing_ok=True)
