import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from soundlm.store import (
    ERRORS_DIR,
    ERRORS_NAME,
    ErrorEntry,
    TokenRecord,
    TokenStore,
    acoustic_value_type,
    list_parts,
    merge_errors,
    part_name,
    records_to_table,
    store_schema,
    StoreManifest,
    write_part,
)


def _record(i: int, rng: np.random.Generator, k: int = 3, codebook: int = 1024) -> TokenRecord:
    t_sem, t_ac = int(rng.integers(1, 40)), int(rng.integers(1, 60))
    return TokenRecord(id=f"utt{i:03d}", path=f"spk{i % 2}/utt{i:03d}.wav", duration=t_ac / 50,
                       semantic=rng.integers(0, 500, t_sem), acoustic=rng.integers(0, codebook, (k, t_ac)),
                       speaker=f"spk{i % 2}", transcript=None if i % 3 == 0 else f"sentence {i}",
                       language="en", sample_rate=16000, split="train" if i % 4 else "heldout",
                       text_id=None)


def _make_store(tmp_path, n_parts=2, per_part=3, codebook=1024):
    rng = np.random.default_rng(0)
    StoreManifest.from_json({"version": 1, "semantic": {"kind": "test"}, "acoustic": {"backend": "test"},
                              "num_shards": 1, "source": "nowhere"}).write(tmp_path)
    records = [_record(i, rng, codebook=codebook) for i in range(n_parts * per_part)]
    for k in range(n_parts):
        write_part(tmp_path, 0, 1, k, records[k * per_part:(k + 1) * per_part],
                   [ErrorEntry(f"bad{k}.wav", f"bad{k}.wav: empty audio")], acoustic_value_type(codebook))
    return records


def test_schema_matches_the_documented_columns():
    schema = store_schema()
    assert schema.names[:10] == ["id", "path", "duration", "sample_rate", "semantic", "acoustic",
                                 "acoustic_shape", "speaker", "transcript", "language"]
    assert schema.field("semantic").type == pa.list_(pa.int32())
    assert schema.field("acoustic").type == pa.list_(pa.int16())
    assert schema.field("acoustic_shape").type == pa.list_(pa.int32())
    assert schema.field("duration").type == pa.float64() and schema.field("sample_rate").type == pa.int32()
    assert all(schema.field(c).nullable for c in ("speaker", "transcript", "language"))
    assert acoustic_value_type(1024) == pa.int16() and acoustic_value_type(65536) == pa.int32()


def test_round_trip_records(tmp_path):
    written = _make_store(tmp_path)
    store = TokenStore(tmp_path)
    assert len(store) == len(written)
    assert [p.name for p in store.shards()] == [part_name(0, 1, k) + ".parquet" for k in range(2)]
    read = list(store.records())
    assert [r.id for r in read] == [r.id for r in written]
    for a, b in zip(read, written):
        assert a.semantic.dtype == np.int64 and a.acoustic.dtype == np.int64
        np.testing.assert_array_equal(a.semantic, b.semantic)
        np.testing.assert_array_equal(a.acoustic, b.acoustic)  # [K, T] restored from the flat column
        assert (a.path, a.duration, a.speaker, a.transcript, a.language, a.sample_rate, a.split) == \
               (b.path, b.duration, b.speaker, b.transcript, b.language, b.sample_rate, b.split)


def test_records_with_selected_columns(tmp_path):
    written = _make_store(tmp_path)
    read = list(TokenStore(tmp_path).records(columns=["acoustic"]))
    assert all(r.semantic is None and r.speaker is None for r in read)
    np.testing.assert_array_equal(read[4].acoustic, written[4].acoustic)
    with pytest.raises(ValueError, match="unknown store columns"):
        list(TokenStore(tmp_path).records(columns=["codes"]))


def test_shards_read_by_plain_pyarrow_and_pandas(tmp_path):
    written = _make_store(tmp_path)
    files = list_parts(tmp_path)
    table = pa.concat_tables([pq.read_table(f) for f in files])
    assert table.num_rows == len(written)
    row = table.slice(1, 1).to_pylist()[0]
    k, t = row["acoustic_shape"]
    np.testing.assert_array_equal(np.array(row["acoustic"]).reshape(k, t), written[1].acoustic)
    df = pd.read_parquet(files[0])
    assert list(df["id"]) == [r.id for r in written[:3]]
    assert df["transcript"].isna().sum() == sum(r.transcript is None for r in written[:3])
    assert TokenStore(tmp_path).to_table().equals(table)


def test_errors_are_merged_from_finished_parts_only(tmp_path):
    _make_store(tmp_path)
    # An error file whose Parquet part never appeared (a killed run) does not count.
    (tmp_path / ERRORS_DIR / (part_name(0, 1, 7) + ".jsonl")).write_text('{"path": "x", "reason": "y"}\n')
    entries = merge_errors(tmp_path)
    assert [e["path"] for e in entries] == ["bad0.wav", "bad1.wav"]
    lines = (tmp_path / ERRORS_NAME).read_text().splitlines()
    assert [json.loads(x) for x in lines] == entries
    assert TokenStore(tmp_path).read_errors() == entries


def test_empty_part_is_a_valid_table(tmp_path):
    StoreManifest.from_json({"version": 1}).write(tmp_path)
    write_part(tmp_path, 0, 1, 0, [], [ErrorEntry("a.wav", "silent")])
    store = TokenStore(tmp_path)
    assert len(store) == 0 and list(store.records()) == []
    assert store.to_table().schema == store_schema()


def test_bad_input_raises_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a token store"):
        TokenStore(tmp_path)
    StoreManifest.from_json({"version": 99}).write(tmp_path)
    with pytest.raises(ValueError, match="version 99"):
        TokenStore(tmp_path)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="outside"):
        records_to_table([_record(0, rng, codebook=70000)], pa.int16())
    with pytest.raises(ValueError, match="incomplete"):
        records_to_table([TokenRecord(id="x")])


def _previous_version_store_json() -> dict:
    """store.json exactly as the soundlm before StoreManifest wrote it: the shipped model's
    coarse stage keeps a copy (less its "shards"), which is the literal file of that store."""
    from soundlm.pretrained import default_model_dir

    config = json.loads((default_model_dir() / "coarse" / "config.json").read_text())
    return {**config["meta"]["tokenizers"], "shards": {"0": {"files": 6, "parts": 2, "complete": True}}}


def test_store_written_by_the_previous_version_loads(tmp_path):
    from soundlm.stages import build_stage
    from soundlm.store import load_store_tokens

    (tmp_path / "store.json").write_text(json.dumps(_previous_version_store_json()))
    records = _make_parts_only(tmp_path)
    store = TokenStore(tmp_path)
    m = store.manifest
    assert (m.semantic_vocab_size, m.acoustic_num_codebooks, m.acoustic_frame_rate) == (100, 8, 50.0)
    assert m.shards["0"]["complete"] and m.semantic["features"]["kind"] == "phonetic"
    tokens = load_store_tokens(tmp_path, exclude_splits=("heldout",))
    assert [r.id for r in tokens.records] == [r.id for r in records if r.split != "heldout"]
    stage = build_stage("coarse", m, window_seconds=0.2, store=tmp_path)
    assert stage.meta.tokenizers.semantic_spec == m.semantic_spec and stage.layout.semantic_size == 100
    # Writing it back keeps every key the old readers read.
    m.write(tmp_path)
    assert json.loads((tmp_path / "store.json").read_text()) == {**_previous_version_store_json()}


def test_manifest_with_descriptions_only_is_upgraded(tmp_path):
    """Stores older still kept rates and sizes only inside the tokenizer descriptions."""
    old = _previous_version_store_json()
    flat = [k for k in old if k.startswith(("semantic_", "acoustic_")) and not k.endswith(("_spec", "_dtype"))]
    (tmp_path / "store.json").write_text(json.dumps({k: v for k, v in old.items() if k not in flat}))
    m = TokenStore(tmp_path).manifest
    assert (m.semantic_frame_rate, m.semantic_vocab_size, m.acoustic_codebook_size) == (50.0, 100, 1024)


def _make_parts_only(folder):
    rng = np.random.default_rng(0)
    records = [_record(i, rng, codebook=100) for i in range(6)]
    for r in records:
        r.semantic = r.semantic % 100
    for k in range(2):
        write_part(folder, 0, 1, k, records[k * 3:(k + 1) * 3], [], acoustic_value_type(1024))
    return records
