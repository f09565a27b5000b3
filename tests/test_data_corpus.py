"""`open_corpus`: one id rule, one split rule and one extension list for every job."""

import json
from pathlib import Path

import pytest

from soundlm.audio import AUDIO_EXTENSIONS
from soundlm.data import MANIFEST_NAME, CorpusItem, find_manifest, open_corpus


def _touch(root: Path, *names: str) -> None:
    # open_corpus lists files, it does not decode them: empty files are enough.
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def _manifest(root: Path, rows: list[dict]) -> Path:
    full = [{"duration": 1.0, "sample_rate": 16000, "speaker": "s", "language": "en", "transcript": "hi", **r}
            for r in rows]
    path = root / MANIFEST_NAME
    path.write_text("".join(json.dumps(r) + "\n" for r in full))
    return path


def test_loose_files_are_ids_without_extension_unless_two_share_a_stem(tmp_path):
    _touch(tmp_path, "a.wav", "sub/b.flac", "c.wav", "c.flac", "d.OGG", "e.opus", "notes.txt")
    items = open_corpus(tmp_path)
    assert [i.id for i in items] == ["a", "c.flac", "c.wav", "d", "e", "sub/b"]  # sorted by path
    by_rel = {i.rel_path: i for i in items}
    assert sorted(by_rel) == ["a.wav", "c.flac", "c.wav", "d.OGG", "e.opus", "sub/b.flac"]  # notes.txt is no audio
    assert {r: i.id for r, i in by_rel.items()} == {"a.wav": "a", "c.flac": "c.flac", "c.wav": "c.wav", "d.OGG": "d",
                                                      "e.opus": "e", "sub/b.flac": "sub/b"}
    for item in items:
        assert item.path.is_absolute() and item.path == (tmp_path / item.rel_path).resolve()
        assert (item.split, item.speaker, item.transcript, item.duration) == (None, None, None, None)


def test_one_audio_file_is_a_corpus_of_one(tmp_path):
    _touch(tmp_path, "clip.flac")
    assert [(i.id, i.rel_path) for i in open_corpus(tmp_path / "clip.flac")] == [("clip", "clip.flac")]


def test_loose_files_have_no_split_to_filter(tmp_path):
    _touch(tmp_path, "a.wav", "b.wav")
    assert [i.id for i in open_corpus(tmp_path, split="heldout")] == ["a", "b"]


def test_manifest_rows_keep_their_ids_order_and_relative_paths(tmp_path):
    _touch(tmp_path, "wav/z.wav", "wav/y.wav")
    rows = [{"id": "z1", "path": "wav/z.wav", "text_id": 7}, {"id": "y1", "path": "wav/y.wav", "speaker": 3}]
    manifest = _manifest(tmp_path, rows)
    for source in (tmp_path, manifest):
        assert find_manifest(source) == manifest
        items = open_corpus(source)
        assert [i.id for i in items] == ["z1", "y1"]  # manifest order
        assert [i.rel_path for i in items] == ["wav/z.wav", "wav/y.wav"]  # what token stores keep in `path`
        assert items[0].path == (tmp_path / "wav/z.wav").resolve()
        assert (items[0].text_id, items[1].speaker, items[0].duration, items[0].sample_rate) == ("7", "3", 1.0, 16000)
    assert find_manifest(tmp_path / "wav") is None


def test_a_row_without_split_is_train_and_none_keeps_every_row(tmp_path):
    _touch(tmp_path, "a.wav", "b.wav", "c.wav")
    _manifest(tmp_path, [{"id": "a", "path": "a.wav", "split": "heldout"}, {"id": "b", "path": "b.wav"},
                         {"id": "c", "path": "c.wav", "split": "train"}])
    assert [i.id for i in open_corpus(tmp_path, split="train")] == ["b", "c"]
    assert [i.id for i in open_corpus(tmp_path, split="heldout")] == ["a"]
    every = open_corpus(tmp_path, split=None)
    assert [i.id for i in every] == ["a", "b", "c"]
    assert [i.split for i in every] == ["heldout", None, "train"]  # the manifest's value, as the store keeps it
    assert [i.in_split("train") for i in every] == [False, True, True]
    assert all(i.in_split(None) for i in every)
    assert CorpusItem(id="x", path=Path("x"), rel_path="x").in_split("train")


def test_errors_name_the_path_and_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such file or folder.*soundlm data"):
        open_corpus(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no audio files found") as err:
        open_corpus(tmp_path / "empty")
    assert all(ext in str(err.value) for ext in AUDIO_EXTENSIONS) and "manifest" in str(err.value)

    _touch(tmp_path / "c", "a.wav")
    _manifest(tmp_path / "c", [{"id": "a", "path": "a.wav", "split": "train"}])
    with pytest.raises(ValueError, match=r"manifest.jsonl: no rows with split 'heldout'.*--heldout-voices"):
        open_corpus(tmp_path / "c", split="heldout")
    with pytest.raises(ValueError, match="no rows with split 'dev'.*splits present: train"):
        open_corpus(tmp_path / "c", split="dev")

    _manifest(tmp_path / "c", [{"id": "a", "path": "a.wav"}, {"id": "a", "path": "a.wav"}])
    with pytest.raises(ValueError, match="id 'a' appears twice; ids must be unique"):
        open_corpus(tmp_path / "c")
    (tmp_path / "c" / MANIFEST_NAME).write_text("")
    with pytest.raises(ValueError, match="the manifest has no rows"):
        open_corpus(tmp_path / "c")


def test_loose_files_whose_ids_collide_are_refused(tmp_path):
    # `a.wav` keeps its extension (it shares the stem `a` with `a.flac`), which is the stem of `a.wav.flac`.
    _touch(tmp_path, "a.wav", "a.flac", "a.wav.flac")
    with pytest.raises(ValueError, match="id 'a.wav' appears twice.*rename one"):
        open_corpus(tmp_path)
