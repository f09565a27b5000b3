"""Big corpora: the file list is walked and indexed, not held as items, and the tokenize job holds
one part's records at a time (memory and speed at 20,000 files: bench/tokenize.py --many-files-only)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from soundlm.audio import iter_audio_files
from soundlm.data import CorpusItem, corpus_index, open_corpus
from soundlm.store import TokenRecord, TokenStore
from soundlm.tokenize import job_files, select_shard, tokenize_corpus
from test_tokenize import _cfg, models  # noqa: F401 - the module-scoped tokenizer fixture


def _touch(root: Path, names: list[str]) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _live(cls: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is cls)


def test_the_walk_lists_files_in_sorted_path_order(tmp_path):
    # Names that sort differently as whole strings ("a/..." vs "a.wav", "a-b") than part by part.
    names = ["a.wav", "a/x.wav", "a-b/y.flac", "a/b/z.ogg", "a0.wav", "B.wav", "b/a.wav", "b.wav", "notes.txt",
             "deep/er/est/w.mp3", "c.WAV"]
    _touch(tmp_path, names)
    (tmp_path / "link").symlink_to(tmp_path / "b", target_is_directory=True)  # rglob does not enter it
    expected = sorted(p for p in tmp_path.rglob("*") if p.is_file() and p.suffix.lower() in (".wav", ".flac", ".ogg",
                                                                                              ".mp3"))
    walked = iter_audio_files(tmp_path)
    assert not isinstance(walked, list)
    assert list(walked) == expected and len(expected) == 10


def test_the_index_holds_no_items_and_gives_open_corpus_items(tmp_path):
    names = [f"spk{i % 3}/utt{i:03d}.wav" for i in range(30)] + ["dup.wav", "dup.flac"]
    _touch(tmp_path / "loose", names)
    gc.collect()
    before = _live(CorpusItem)
    index = corpus_index(tmp_path / "loose")
    gc.collect()
    assert _live(CorpusItem) == before  # strings, not items
    assert list(index) == open_corpus(tmp_path / "loose")
    assert [i.id for i in index[3::7]] == [item.id for item in open_corpus(tmp_path / "loose")[3::7]]
    assert {"dup.wav", "dup.flac"} <= set(index.ids())
    # A manifest: rows read back by offset, in manifest order, or sorted by id for the tokenize job.
    rows = [{"id": f"u{(7 * i) % 30:02d}", "path": names[i], "duration": 1.0, "sample_rate": 16000,
             "speaker": f"s{i % 3}", "language": "en", "transcript": f"t {i} ünïcode"} for i in range(30)]
    (tmp_path / "loose" / "manifest.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                                               for r in rows), encoding="utf-8")
    index = corpus_index(tmp_path / "loose")
    assert list(index) == open_corpus(tmp_path / "loose")
    assert [i.id for i in job_files(tmp_path / "loose")] == sorted(r["id"] for r in rows)
    shard = select_shard(job_files(tmp_path / "loose"), 4, 1)
    assert [i.id for i in shard] == sorted(r["id"] for r in rows)[1::4]
    assert shard[2].transcript == next(r["transcript"] for r in rows if r["id"] == shard[2].id)


def test_the_job_holds_one_part_of_records_at_a_time(tmp_path, models, monkeypatch):  # noqa: F811
    import soundlm.tokenize as job

    src = tmp_path / "audio"
    rng = np.random.default_rng(0)
    for i in range(40):
        (src / f"d{i // 10}").mkdir(parents=True, exist_ok=True)
        sf.write(src / f"d{i // 10}" / f"f{i:03d}.wav", 0.3 * rng.standard_normal(2000).astype(np.float32), 16000)
    seen = []
    real_write_part = job.write_part

    def counting_write_part(*args, **kwargs):
        gc.collect()
        seen.append((_live(TokenRecord), _live(CorpusItem)))
        return real_write_part(*args, **kwargs)

    monkeypatch.setattr(job, "write_part", counting_write_part)
    summary = tokenize_corpus(_cfg(src, tmp_path / "store", models, part_size=4, workers=0), progress=False)
    assert summary.tokenized == 40 and len(seen) == 10
    # Records of the part being written only; no list of every file's item.
    assert max(records for records, _ in seen) <= 4
    assert max(items for _, items in seen) <= 4
    assert len(TokenStore(tmp_path / "store")) == 40
