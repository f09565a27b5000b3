"""The token store read without soundlm (pandas, duckdb, `datasets` streaming), and a store written
before the chunk columns existed read with this soundlm."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from soundlm.store import CHUNK_COLUMNS, TokenRecord, TokenStore, load_store_tokens, store_schema, write_part

# Written by soundlm at d7e4f36 (before `parent` and `offset`): 3 records, 1 skipped file.
OLD_STORE = Path(__file__).resolve().parent / "data" / "store-d7e4f36"


def _store(root: Path) -> Path:
    """Two parts; the second holds two chunks of one long file."""
    rng = np.random.default_rng(0)

    def rec(id_: str, t: int, **kw) -> TokenRecord:
        return TokenRecord(id=id_, path=kw.pop("path", f"{id_}.wav"), duration=t / 50, sample_rate=16000,
                           semantic=rng.integers(0, 16, t), acoustic=rng.integers(0, 64, (2, t)), **kw)

    write_part(root, 0, 1, 0, [rec("a", 10, speaker="s1"), rec("b", 12, speaker="s2")], [])
    write_part(root, 0, 1, 1, [rec("book#0", 20, path="book.wav", parent="book", offset=0.0),
                               rec("book#1", 15, path="book.wav", parent="book", offset=0.4)], [])
    shutil.copy(OLD_STORE / "store.json", root / "store.json")
    return root


def _expected(store: Path) -> dict[str, TokenRecord]:
    return {r.id: r for r in TokenStore(store).records()}


def test_pandas_reads_every_part(tmp_path):
    pd = pytest.importorskip("pandas")
    store = _store(tmp_path)
    frame = pd.concat([pd.read_parquet(p) for p in sorted(store.glob("shard-*.parquet"))], ignore_index=True)
    expected = _expected(store)
    assert list(frame["id"]) == list(expected)
    row = frame.set_index("id").loc["book#1"]
    assert row["parent"] == "book" and row["offset"] == pytest.approx(0.4)
    k, t = row["acoustic_shape"]
    assert np.array_equal(np.asarray(row["acoustic"]).reshape(k, t), expected["book#1"].acoustic)
    assert pd.isna(frame.set_index("id").loc["a", "parent"])


def test_duckdb_queries_the_store(tmp_path):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is in the test extra")
    store = _store(tmp_path)
    shutil.copytree(OLD_STORE, tmp_path / "mixed", ignore=shutil.ignore_patterns("store.json"))
    glob = str(store / "shard-*.parquet")
    rows = duckdb.sql(f"SELECT id, len(semantic) AS frames, parent FROM read_parquet('{glob}') ORDER BY id").fetchall()
    expected = _expected(store)
    assert rows == [(i, len(r.semantic), r.parent) for i, r in sorted(expected.items())]
    chunks = duckdb.sql(f"SELECT parent, count(*), sum(duration) FROM read_parquet('{glob}') "
                        "WHERE parent IS NOT NULL GROUP BY parent").fetchall()
    assert chunks == [("book", 2, pytest.approx(0.7))]
    # Old parts (no chunk columns) and new ones in one query: union_by_name fills the gap with NULL.
    both = f"['{glob}', '{tmp_path / 'mixed' / 'shard-*.parquet'}']"
    mixed = duckdb.sql(f"SELECT count(*), count(parent) FROM read_parquet({both}, union_by_name=true)").fetchall()[0]
    assert mixed == (len(expected) + 3, 2)


def test_datasets_streams_the_store(tmp_path):
    datasets = pytest.importorskip("datasets", reason="datasets is in the test extra")
    store = _store(tmp_path)
    stream = datasets.load_dataset("parquet", data_files=sorted(str(p) for p in store.glob("shard-*.parquet")),
                                   split="train", streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    expected = _expected(store)
    seen = []
    for row in stream:
        r = expected[row["id"]]
        assert row["semantic"] == r.semantic.tolist() and row["parent"] == r.parent
        assert np.array_equal(np.asarray(row["acoustic"]).reshape(row["acoustic_shape"]), r.acoustic)
        seen.append(row["id"])
    assert seen == list(expected)


def test_a_store_written_before_the_chunk_columns_reads(tmp_path):
    store = TokenStore(OLD_STORE)
    recs = list(store.records())
    assert [r.id for r in recs] == ["spk0/utt0", "spk1/utt1", "spk0/utt2"]
    assert all(r.parent is None and r.offset is None for r in recs)
    assert recs[1].acoustic.shape == (2, 15) and recs[1].transcript == "utterance 1"
    # Asking for the new columns by name works too, and the table has the current schema.
    assert [r.parent for r in store.records(columns=["parent", "offset"])] == [None] * 3
    table = store.to_table()
    assert table.schema.names == store_schema().names and table.column("offset").null_count == 3
    assert store.read_errors() == [{"path": "broken.wav", "reason": "broken.wav: unreadable audio"}]
    tokens = load_store_tokens(OLD_STORE)
    assert len(tokens.records) == 3 and tokens.semantic_rate == 50.0
    # A store that has old and new parts: one table, the old rows' chunk columns null.
    mixed = tmp_path / "mixed"
    shutil.copytree(OLD_STORE, mixed)
    write_part(mixed, 0, 1, 1, [TokenRecord("long#0", "long.wav", 1.0, np.arange(50), np.zeros((2, 50), int),
                                            sample_rate=16000, parent="long", offset=0.0)], [])
    table = TokenStore(mixed).to_table(columns=["id", *CHUNK_COLUMNS])
    assert table.to_pylist()[-2:] == [{"id": "spk0/utt2", "parent": None, "offset": None},
                                      {"id": "long#0", "parent": "long", "offset": 0.0}]
