"""The token store: what `soundlm tokenize` writes and what LM training reads.

Layout of a store folder:
    STORE/store.json                                   manifest (tokenizers, shards, source)
    STORE/shard-{i:05d}-of-{n:05d}.part-{k:05d}.parquet  one Parquet file per finished part
    STORE/errors/shard-{i:05d}-of-{n:05d}.part-{k:05d}.jsonl  skipped files of that part
    STORE/errors.jsonl                                 all skipped files, merged at the end

A part is finished exactly when its Parquet file exists: its error file is written
(atomically) before the Parquet file is renamed into place, so a reader or a resumed job
never sees half a part. Every Parquet file is a plain table that pyarrow and pandas read
without soundlm.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from soundlm.fileio import atomic_path, read_json, write_json_atomic, write_text_atomic

STORE_VERSION = 1
MANIFEST_NAME = "store.json"
ERRORS_NAME = "errors.jsonl"
ERRORS_DIR = "errors"

# Columns after `language` are additions to the documented schema: the corpus split and
# the id that pairs translations of one sentence (AudioPaLM), both nullable.
METADATA_COLUMNS = ("speaker", "transcript", "language", "split", "text_id")
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
    ])


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


def write_manifest(store_dir: str | Path, manifest: dict) -> None:
    write_json_atomic(Path(store_dir) / MANIFEST_NAME, manifest)


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
        manifest_file = self.path / MANIFEST_NAME
        if not manifest_file.exists():
            raise FileNotFoundError(f"{self.path}: not a token store (no {MANIFEST_NAME}); "
                                    "create one with `soundlm tokenize AUDIO --out STORE ...`")
        self.manifest: dict = read_json(manifest_file)
        version = self.manifest.get("version")
        if version != STORE_VERSION:
            raise ValueError(f"{manifest_file}: store version {version!r}, this soundlm reads version "
                             f"{STORE_VERSION}; re-tokenize the corpus with this soundlm")

    def shards(self) -> list[Path]:
        """Parquet files of all finished parts, in (shard, part) order."""
        return list_parts(self.path)

    def __len__(self) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.shards())

    def __iter__(self) -> Iterator[TokenRecord]:
        return self.records()

    def to_table(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All rows as one Arrow table (in shard, part, row order)."""
        tables = [pq.read_table(p, columns=list(columns) if columns is not None else None) for p in self.shards()]
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
            for batch in pf.iter_batches(batch_size=batch_rows, columns=wanted):
                yield from _batch_records(batch)

    def read_errors(self) -> list[dict]:
        """Skipped files ({"path", "reason"}) of all finished parts."""
        if (self.path / ERRORS_DIR).is_dir():
            return _errors_of_finished_parts(self.path)
        merged = self.path / ERRORS_NAME
        return _read_jsonl(merged) if merged.exists() else []


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
        else:
            cols[name] = batch.column(name).to_pylist()
    for i in range(batch.num_rows):
        fields = {name: cols[name][i] for name in names if name != "acoustic_shape"}
        if "acoustic" in fields:
            k, t = cols["acoustic_shape"][i]
            fields["acoustic"] = fields["acoustic"].reshape(k, t)  # [K, T]
        yield TokenRecord(**fields)
