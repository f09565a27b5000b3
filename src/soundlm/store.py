"""The token store: what `soundlm tokenize` writes and what LM training reads.

Layout of a store folder:
    STORE/store.json                                   manifest (tokenizers, shards, source)
    STORE/shard-{i:05d}-of-{n:05d}.part-{k:05d}.parquet  one Parquet file per finished part
    STORE/errors/shard-{i:05d}-of-{n:05d}.part-{k:05d}.jsonl  skipped files of that part
    STORE/errors.jsonl                                 all skipped files, merged at the end

A part is finished exactly when its Parquet file exists: its error file is written
(atomically) before the Parquet file is renamed into place, so a reader or a resumed job
never sees half a part. Every Parquet file is a plain table that pyarrow, pandas, duckdb
and `datasets` read without soundlm (glob `STORE/shard-*.parquet`; parts written before
the chunk columns existed lack them: read with `union_by_name` in duckdb, or through
`TokenStore`, which fills them with nulls).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from soundlm.fileio import atomic_path, read_json, write_json_atomic, write_text_atomic

if TYPE_CHECKING:
    from soundlm.codec.base import AcousticTokenizer
    from soundlm.semantic.base import SemanticTokenizer

STORE_VERSION = 1
STORE_JSON = "store.json"
ERRORS_NAME = "errors.jsonl"
ERRORS_DIR = "errors"

# Columns after `language` are additions to the documented schema: the corpus split and
# the id that pairs translations of one sentence (AudioPaLM), both nullable.
METADATA_COLUMNS = ("speaker", "transcript", "language", "split", "text_id")
# Added with long-file chunking, nullable (null for a whole file): the id of the file a chunk
# was cut from, and the chunk's start in it (seconds). Older parts lack both.
CHUNK_COLUMNS = ("parent", "offset")
# Added with MusicLM conditioning (`soundlm tokenize --mulan`), nullable: the record's condition ids
# (its recording's quantized MuLan audio embedding, [Q]). Older parts and stores without MuLan lack it.
CONDITION_COLUMN = "condition"
_PART_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})\.part-(\d{5})\.parquet$")


def part_name(shard_index: int, num_shards: int, part_index: int) -> str:
    """Base name (no extension) shared by a part's Parquet file and its error file."""
    return f"shard-{shard_index:05d}-of-{num_shards:05d}.part-{part_index:05d}"


def acoustic_value_type(codebook_size: int) -> pa.DataType:
    """int16 holds codes of codebooks up to 32768 entries and halves the store size."""
    return pa.int16() if codebook_size <= 2**15 else pa.int32()


def store_schema(acoustic_type: pa.DataType = pa.int16()) -> pa.Schema:
    return pa.schema([
        pa.field("id", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("duration", pa.float64(), nullable=False),
        pa.field("sample_rate", pa.int32(), nullable=False),
        pa.field("semantic", pa.list_(pa.int32()), nullable=False),
        pa.field("acoustic", pa.list_(acoustic_type), nullable=False),  # row-major [K, T]
        pa.field("acoustic_shape", pa.list_(pa.int32()), nullable=False),  # [K, T]
        *[pa.field(name, pa.string(), nullable=True) for name in METADATA_COLUMNS],
        pa.field("parent", pa.string(), nullable=True),
        pa.field("offset", pa.float64(), nullable=True),
        pa.field(CONDITION_COLUMN, pa.list_(pa.int32()), nullable=True),
    ])


@dataclass(frozen=True)
class StoreManifest:
    """`store.json`: which tokenizers made a store's tokens, their rates and sizes, the corpus
    and the part layout. Training copies it into each stage folder (`StageMeta.tokenizers`),
    so a pipeline can find and check the tokenizers a model was trained with.

    `soundlm tokenize` fills every field; a field another writer left out is None, and
    `required` names it when a reader needs it.
    """

    semantic: dict = field(default_factory=dict)  # the semantic tokenizer's describe()
    acoustic: dict = field(default_factory=dict)  # the codec's describe()
    semantic_sample_rate: int | None = None
    semantic_frame_rate: float | None = None
    semantic_vocab_size: int | None = None
    acoustic_sample_rate: int | None = None
    acoustic_frame_rate: float | None = None
    acoustic_num_codebooks: int | None = None
    acoustic_codebook_size: int | None = None
    semantic_spec: str | None = None  # where the tokenizer loads from: a folder, or a hub id
    acoustic_spec: str | None = None
    acoustic_dtype: str | None = None
    source: str | None = None  # the corpus the job read
    num_shards: int | None = None
    part_size: int | None = None
    min_seconds: float | None = None
    max_seconds: float | None = None
    normalize: str | None = None
    shards: dict[str, dict] = field(default_factory=dict)  # shard index -> its job's status
    version: int = STORE_VERSION
    chunker: str | None = None  # how long files were cut (`chunking.resolve_chunker`); None: never
    # `soundlm tokenize --mulan`: each record's `condition` column holds the Q ids in [0, C) of its
    # recording's quantized MuLan audio embedding (MusicLM's conditioning); None: no condition ids.
    mulan_spec: str | None = None
    condition_tokens: int | None = None  # Q
    condition_codebook_size: int | None = None  # C

    @classmethod
    def for_tokenizers(cls, semantic: SemanticTokenizer, codec: AcousticTokenizer, semantic_spec: str | None = None,
                       acoustic_spec: str | None = None, **job: Any) -> "StoreManifest":
        """The manifest of tokens made by `semantic` and `codec`; `job` sets the corpus and
        layout fields (source, num_shards...)."""
        def jsonable(d: dict) -> dict:
            return json.loads(json.dumps(d, default=str))

        return cls(semantic=jsonable(semantic.describe()), acoustic=jsonable(codec.describe()),
                   semantic_sample_rate=int(semantic.sample_rate), semantic_frame_rate=float(semantic.frame_rate),
                   semantic_vocab_size=int(semantic.vocab_size), acoustic_sample_rate=int(codec.sample_rate),
                   acoustic_frame_rate=float(codec.frame_rate), acoustic_num_codebooks=int(codec.num_codebooks),
                   acoustic_codebook_size=int(codec.codebook_size),
                   acoustic_dtype=str(acoustic_value_type(int(codec.codebook_size))),
                   semantic_spec=semantic_spec, acoustic_spec=acoustic_spec, **job)

    def to_json(self, shards: bool = True) -> dict:
        """The JSON object of store.json; shards=False leaves out the jobs' status (for stage folders).

        Fields added after stage folders were first written (`chunker`) appear only when set,
        so those folders' copies read and write back unchanged.
        """
        out = asdict(self)
        if not shards:
            del out["shards"]
        for name in _LATER_FIELDS:
            if out[name] is None:
                del out[name]
        return out

    @classmethod
    def from_json(cls, data: dict, where: str = STORE_JSON) -> "StoreManifest":
        """Read store.json's object (or a stage folder's copy of it); unknown keys are ignored."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}; re-tokenize the corpus")
        data = upgrade_descriptions_only(data)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and v is not None})

    @classmethod
    def read(cls, store_dir: str | Path) -> "StoreManifest":
        path = Path(store_dir) / STORE_JSON
        return cls.from_json(read_json(path), str(path))

    def write(self, store_dir: str | Path) -> None:
        write_json_atomic(Path(store_dir) / STORE_JSON, self.to_json())

    def with_shard_status(self, shard_index: int, status: dict) -> "StoreManifest":
        return replace(self, shards={**self.shards, str(shard_index): status})

    def required(self, name: str, where: str | Path) -> Any:
        """A field's value, or a ValueError naming the store and the fix when it is missing."""
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"{where}/{STORE_JSON} has no {name!r} (nor in its tokenizer description); "
                             "re-tokenize the corpus with `soundlm tokenize`")
        return value

    def check_compatible(self, new: "StoreManifest", store: str | Path) -> None:
        """Refuse to add `new`'s tokens to this store: other tokenizers, corpus or layout."""
        if self.version != new.version:
            raise ValueError(f"{store}: store version {self.version!r} differs from {new.version}; "
                             "write to a new --out folder")
        mine, theirs = self.to_json(), new.to_json()
        diffs = [k for k in _IDENTITY_KEYS if _identity(mine.get(k)) != _identity(theirs.get(k))]
        # A store written before chunking existed only ever skipped long files; its rerun
        # chunks the long files of parts still to do, and is not refused for it.
        diffs += [k for k in _LATER_FIELDS if k in mine and mine[k] != theirs.get(k)]
        # Condition ids in some parts only would train a stage on NULLs it never chose to see.
        if "condition_tokens" in theirs and "condition_tokens" not in mine:
            diffs.append("condition_tokens")
        if diffs:
            detail = "; ".join(f"{k}: store has {mine.get(k)!r}, this run {theirs.get(k)!r}" for k in diffs)
            raise ValueError(f"{store} was made with different settings ({detail}). A store holds tokens of one "
                             "tokenizer pair over one corpus: pass a new --out folder, or the original settings")


# Keys that must match for a rerun to add to an existing store: different tokenizers,
# corpus or part layout would mix incompatible tokens or duplicate files.
_IDENTITY_KEYS = ("semantic", "acoustic", "semantic_spec", "acoustic_spec", "semantic_vocab_size",
                  "semantic_frame_rate", "acoustic_frame_rate", "acoustic_num_codebooks",
                  "acoustic_codebook_size", "source", "num_shards", "part_size", "min_seconds",
                  "max_seconds", "normalize")


# Identity fields added later: compared only when the store has them (see `to_json`).
_LATER_FIELDS = ("chunker", "mulan_spec", "condition_tokens", "condition_codebook_size")


def _identity(value: Any) -> Any:
    # describe() may name the folder as typed (relative or absolute); the resolved
    # *_spec keys already pin the location, so the typed form must not cause a refusal.
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k != "source"}
    return value


# A flat key of store.json and where a manifest that lacks it keeps the same value: the
# tokenizer description's keys, in order of preference.
_FROM_DESCRIPTION = {
    "semantic_sample_rate": ("semantic", ("sample_rate",)),
    "semantic_frame_rate": ("semantic", ("frame_rate",)),
    "semantic_vocab_size": ("semantic", ("vocab_size", "num_clusters")),
    "acoustic_sample_rate": ("acoustic", ("sample_rate",)),
    "acoustic_frame_rate": ("acoustic", ("frame_rate",)),
    "acoustic_num_codebooks": ("acoustic", ("num_codebooks",)),
    "acoustic_codebook_size": ("acoustic", ("codebook_size",)),
}


def upgrade_descriptions_only(data: dict) -> dict:
    """Fill the flat rate and size keys of a manifest that has only the tokenizer descriptions
    (stores written before `soundlm tokenize` wrote them) from those descriptions."""
    data = dict(data)
    for key, (stream, desc_keys) in _FROM_DESCRIPTION.items():
        if data.get(key) is None:
            desc = data.get(stream) or {}
            data[key] = next((desc[k] for k in desc_keys if desc.get(k) is not None), None)
    return data


@dataclass
class TokenRecord:
    """One tokenized file. Columns not requested from `TokenStore.records` are None."""

    id: str
    path: str | None = None
    duration: float | None = None
    semantic: np.ndarray | None = None  # [T_sem] int64
    acoustic: np.ndarray | None = None  # [K, T_ac] int64
    speaker: str | None = None
    transcript: str | None = None
    language: str | None = None
    sample_rate: int | None = None  # of the source file
    split: str | None = None
    text_id: str | None = None
    parent: str | None = None  # a chunk's file id (`path` is that file); None for a whole file
    offset: float | None = None  # a chunk's start in its file, seconds
    condition: np.ndarray | None = None  # [Q] condition ids of the recording (store written with --mulan)


@dataclass
class ErrorEntry:
    path: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def records_to_table(records: Sequence[TokenRecord], acoustic_type: pa.DataType = pa.int16()) -> pa.Table:
    """Build one part's table; raises ValueError if a record lacks tokens or codes overflow."""
    max_code = np.iinfo(acoustic_type.to_pandas_dtype()).max
    cols: dict[str, list[Any]] = {f.name: [] for f in store_schema(acoustic_type)}
    for r in records:
        if r.semantic is None or r.acoustic is None or r.duration is None or r.sample_rate is None:
            raise ValueError(f"record {r.id!r} is incomplete: semantic, acoustic, duration and sample_rate "
                             "are needed to write it")
        acoustic = np.asarray(r.acoustic)
        if acoustic.ndim != 2:
            raise ValueError(f"record {r.id!r}: acoustic codes must be [K, T], got shape {acoustic.shape}")
        if acoustic.size and (acoustic.min() < 0 or acoustic.max() > max_code):
            raise ValueError(f"record {r.id!r}: acoustic codes outside [0, {max_code}] for {acoustic_type}; "
                             "write the store with a larger acoustic type")
        cols["id"].append(r.id)
        cols["path"].append(r.path if r.path is not None else r.id)
        cols["duration"].append(float(r.duration))
        cols["sample_rate"].append(int(r.sample_rate))
        cols["semantic"].append(np.asarray(r.semantic, dtype=np.int32).reshape(-1))
        cols["acoustic"].append(acoustic.reshape(-1))
        cols["acoustic_shape"].append([int(acoustic.shape[0]), int(acoustic.shape[1])])
        for name in METADATA_COLUMNS:
            value = getattr(r, name)
            cols[name].append(None if value is None else str(value))
        cols["parent"].append(r.parent)
        cols["offset"].append(None if r.offset is None else float(r.offset))
        cols[CONDITION_COLUMN].append(None if r.condition is None
                                      else np.asarray(r.condition, dtype=np.int64).reshape(-1).tolist())
    schema = store_schema(acoustic_type)
    arrays = []
    for field in schema:
        values = cols[field.name]
        if field.name in ("semantic", "acoustic"):
            arrays.append(_list_array(values, field.type.value_type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _list_array(rows: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
    """A list column from numpy rows without going through Python ints (fast for long files)."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.concatenate(rows) if rows else np.zeros(0)
    values = pa.array(flat.astype(value_type.to_pandas_dtype(), copy=False), type=value_type)
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values)


def write_part(store_dir: str | Path, shard_index: int, num_shards: int, part_index: int,
               records: Sequence[TokenRecord], errors: Sequence[ErrorEntry],
               acoustic_type: pa.DataType = pa.int16()) -> Path:
    """Write one finished part: its error file first, then its Parquet file, each atomically.

    The Parquet file's appearance marks the part as done, so a crash between the two
    writes only leaves an error file that the rerun overwrites.
    """
    store_dir = Path(store_dir)
    name = part_name(shard_index, num_shards, part_index)
    lines = "".join(json.dumps(e.to_json(), ensure_ascii=False) + "\n" for e in errors)
    write_text_atomic(store_dir / ERRORS_DIR / f"{name}.jsonl", lines)
    table = records_to_table(records, acoustic_type)
    target = store_dir / f"{name}.parquet"
    with atomic_path(target, suffix=".parquet") as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return target


def merge_errors(store_dir: str | Path) -> list[dict]:
    """Rewrite STORE/errors.jsonl from the error files of all finished parts; return its entries."""
    store_dir = Path(store_dir)
    entries = _errors_of_finished_parts(store_dir)
    text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
    write_text_atomic(store_dir / ERRORS_NAME, text)
    return entries


def _errors_of_finished_parts(store_dir: Path) -> list[dict]:
    entries: list[dict] = []
    for shard in list_parts(store_dir):
        err_file = store_dir / ERRORS_DIR / (shard.name[: -len(".parquet")] + ".jsonl")
        if err_file.exists():
            entries.extend(_read_jsonl(err_file))
    return entries


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{line_no}: not valid JSON ({e}); delete the file and rerun "
                                     "`soundlm tokenize` to rebuild it") from e
    return out


def list_parts(store_dir: str | Path, shard_index: int | None = None) -> list[Path]:
    """Finished Parquet parts, sorted by (shard, part); optionally of one shard only."""
    found = []
    for p in Path(store_dir).glob("shard-*.parquet"):
        m = _PART_RE.match(p.name)
        if m and (shard_index is None or int(m.group(1)) == shard_index):
            found.append(((int(m.group(1)), int(m.group(3))), p))
    return [p for _, p in sorted(found)]


class TokenStore:
    """Read a token store folder written by `soundlm tokenize`."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_file = self.path / STORE_JSON
        if not manifest_file.exists():
            raise FileNotFoundError(f"{self.path}: not a token store (no {STORE_JSON}); "
                                    "create one with `soundlm tokenize AUDIO --out STORE ...`")
        data = read_json(manifest_file)
        version = data.get("version") if isinstance(data, dict) else None
        if version != STORE_VERSION:
            raise ValueError(f"{manifest_file}: store version {version!r}, this soundlm reads version "
                             f"{STORE_VERSION}; re-tokenize the corpus with this soundlm")
        self.manifest = StoreManifest.from_json(data, str(manifest_file))

    def shards(self) -> list[Path]:
        """Parquet files of all finished parts, in (shard, part) order."""
        return list_parts(self.path)

    def __len__(self) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.shards())

    def __iter__(self) -> Iterator[TokenRecord]:
        return self.records()

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows as one Arrow table (in shard, part, row order); columns a part predates are null."""
        tables = [_read_part(p, columns) for p in self.shards()]
        if not tables:
            schema = store_schema()
            return schema.empty_table() if columns is None else pa.schema(
                [schema.field(c) for c in columns]).empty_table()
        return pa.concat_tables(tables, promote_options="default")

    def records(self, columns: Sequence[str] | None = None, batch_rows: int = 256) -> Iterator[TokenRecord]:
        """Yield TokenRecords; `columns` limits what is read (`id` is always read)."""
        wanted = None if columns is None else list(dict.fromkeys(["id", *columns]))
        if wanted is not None:
            known = set(store_schema().names)
            unknown = [c for c in wanted if c not in known]
            if unknown:
                raise ValueError(f"unknown store columns {unknown}; choose from {sorted(known)}")
            if "acoustic" in wanted and "acoustic_shape" not in wanted:
                wanted.append("acoustic_shape")
        for shard in self.shards():
            pf = pq.ParquetFile(shard)
            # Columns added to the schema later are missing from older parts: their fields stay None.
            present = None if wanted is None else [c for c in wanted if c in pf.schema_arrow.names]
            for batch in pf.iter_batches(batch_size=batch_rows, columns=present):
                yield from _batch_records(batch)

    def read_errors(self) -> list[dict]:
        """Skipped files ({"path", "reason"}) of all finished parts."""
        if (self.path / ERRORS_DIR).is_dir():
            return _errors_of_finished_parts(self.path)
        merged = self.path / ERRORS_NAME
        return _read_jsonl(merged) if merged.exists() else []


def _read_part(path: Path, columns: Sequence[str] | None) -> pa.Table:
    """One part's table with the current schema's columns (or `columns`); those it predates are null."""
    schema = store_schema()
    names = list(columns) if columns is not None else schema.names
    present = set(pq.ParquetFile(path).schema_arrow.names)
    table = pq.read_table(path, columns=[c for c in names if c in present])
    for name in names:
        if name not in present:
            table = table.append_column(schema.field(name), pa.nulls(len(table), schema.field(name).type))
    return table.select(names)


def _list_rows(column: pa.Array) -> list[np.ndarray]:
    """Split a list column into numpy rows; offsets index the unsliced child array."""
    offsets = column.offsets.to_numpy()
    values = column.values.to_numpy(zero_copy_only=False).astype(np.int64)
    return [values[offsets[i]: offsets[i + 1]] for i in range(len(column))]


def _batch_records(batch: pa.RecordBatch) -> Iterator[TokenRecord]:
    names = batch.schema.names
    cols: dict[str, list[Any]] = {}
    for name in names:
        if name in ("semantic", "acoustic"):
            cols[name] = _list_rows(batch.column(name))
        elif name == CONDITION_COLUMN:
            cols[name] = [None if v is None else np.asarray(v, dtype=np.int64) for v in batch.column(name).to_pylist()]
        else:
            cols[name] = batch.column(name).to_pylist()
    for i in range(batch.num_rows):
        fields = {name: cols[name][i] for name in names if name != "acoustic_shape"}
        if "acoustic" in fields:
            k, t = cols["acoustic_shape"][i]
            fields["acoustic"] = fields["acoustic"].reshape(k, t)  # [K, T]
        yield TokenRecord(**fields)


@dataclass
class StoreTokens:
    """The token arrays of a store's records, in memory, with the manifest that gives their rates."""

    records: list[TokenRecord]  # id, semantic [T_s] and acoustic [K, T_a] int64 set
    manifest: StoreManifest
    semantic_rate: float
    acoustic_rate: float  # 1.0 when the acoustic codes were not read


def load_store_tokens(store_path: str | Path, need_acoustic: bool = True, exclude_splits: Sequence[str] = (),
                      split: str | None = None) -> StoreTokens:
    """Read the tokens of every record whose corpus split is not in `exclude_splits` (records
    without a split are kept) or, with `split`, of the records of that split only.

    need_acoustic=False reads the semantic ids alone (acoustic is an empty [0, 0] array).
    """
    store = TokenStore(store_path)
    m, name = store.manifest, str(store_path)
    semantic_rate = float(m.required("semantic_frame_rate", name))
    acoustic_rate = float(m.required("acoustic_frame_rate", name)) if need_acoustic else 1.0
    records: list[TokenRecord] = []
    num_codebooks = None
    columns = ["semantic", "acoustic", "split"] if need_acoustic else ["semantic", "split"]
    if m.condition_tokens:
        columns.append(CONDITION_COLUMN)
    excluded, seen_splits = 0, set()
    for r in store.records(columns=columns):
        seen_splits.add(r.split)
        if (split is not None and r.split != split) or (r.split is not None and r.split in exclude_splits):
            excluded += 1
            continue
        acoustic = r.acoustic if need_acoustic else np.zeros((0, 0), dtype=np.int64)
        if need_acoustic:
            if num_codebooks is None:
                num_codebooks = int(acoustic.shape[0])
            elif acoustic.shape[0] != num_codebooks:
                raise ValueError(f"{name}: record {r.id!r} has {acoustic.shape[0]} codebooks, others "
                                 f"{num_codebooks}; a store must be tokenized with one codec setting")
        records.append(TokenRecord(id=r.id, semantic=r.semantic.astype(np.int64), acoustic=acoustic.astype(np.int64),
                                   split=r.split, condition=r.condition))
    if not records and split is not None:
        raise ValueError(f"{name}: no record has split {split!r} (splits present: {sorted(map(str, seen_splits))}); "
                         "tokenize a corpus whose manifest marks held-out voices (`soundlm data speech "
                         "--heldout-voices N`), or pass --split train")
    if not records and excluded:
        raise ValueError(f"{name}: all {excluded} records are in the excluded split(s) {list(exclude_splits)}; "
                         "tokenize training data or pass --exclude-split none")
    if not records:
        raise ValueError(f"{name}: the token store has no records; run `soundlm tokenize` to fill it")
    return StoreTokens(records=records, manifest=m, semantic_rate=semantic_rate, acoustic_rate=acoustic_rate)
