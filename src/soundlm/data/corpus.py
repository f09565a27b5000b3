"""One reader for every corpus the jobs take: a manifest, the folder holding it, or loose audio files.

The tokenize job, the codec and semantic trainers and the evaluation suite all read their
input through `open_corpus`, so an utterance has the same id, path and split everywhere.
`corpus_index` is the same reader for jobs over millions of files (`soundlm tokenize`): it
holds one short string per file, not the items, and builds each item when asked.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from soundlm.audio import AUDIO_EXTENSIONS, iter_audio_files
from soundlm.data import MANIFEST_NAME, check_manifest_row

# A manifest row without `split` belongs to this one.
DEFAULT_SPLIT = "train"


@dataclass
class CorpusItem:
    """One audio file of a corpus and the metadata its manifest row gives (None for loose files)."""

    id: str
    path: Path  # absolute, for loading
    rel_path: str  # as the manifest writes it, or relative to the folder of loose files (POSIX)
    duration: float | None = None
    sample_rate: int | None = None
    speaker: str | None = None
    transcript: str | None = None
    language: str | None = None
    split: str | None = None  # as the manifest says: None when the row has no `split`
    text_id: str | None = None

    def in_split(self, split: str | None) -> bool:
        """Whether the item belongs to `split` (None: every split); a row without one is "train"."""
        return split is None or (self.split or DEFAULT_SPLIT) == split


def find_manifest(path: str | Path) -> Path | None:
    """The manifest a corpus path names: a `.jsonl` file itself, or `DIR/manifest.jsonl`; None for audio."""
    path = Path(path)
    if path.is_file() and path.suffix == ".jsonl":
        return path
    if path.is_dir() and (path / MANIFEST_NAME).is_file():
        return path / MANIFEST_NAME
    return None


def open_corpus(path: str | Path, split: str | None = None) -> list[CorpusItem]:
    """The items of a corpus: a `manifest.jsonl` (written by `soundlm data`), the folder holding one,
    a folder of loose audio files (searched recursively) or one audio file.

    Rules, the same for every job:
    - ids: a manifest's `id` column. A loose file's id is its path relative to the folder
      (POSIX), without extension; two files that differ only in extension (`a.wav`,
      `a.flac`) keep it, so ids stay unique. These are the ids token stores hold.
    - split: a manifest row without `split` belongs to "train". `split` keeps the rows of
      that split; None keeps every row. Loose files have no split: `split` does not filter them.
    - order: the manifest's row order; loose files sorted by path.
    - audio extensions: `soundlm.audio.AUDIO_EXTENSIONS`.

    Raises FileNotFoundError for a path that does not exist and ValueError when nothing is
    left (an empty folder or manifest, no row of `split`, two items with one id).
    """
    index = corpus_index(path)
    items = list(index)
    if index.manifest is None:
        return items
    chosen = [item for item in items if item.in_split(split)]
    if not chosen:
        present = sorted({item.split or DEFAULT_SPLIT for item in items})
        fix = ("build the corpus with held-out voices (`soundlm data speech --heldout-voices N`) or pass --split train"
               if split == "heldout" else "pass one of the splits present")
        raise ValueError(f"{index.manifest}: no rows with split {split!r} (splits present: {', '.join(present)}; a "
                         f"row without one counts as {DEFAULT_SPLIT!r}); {fix}")
    return chosen


class CorpusIndex(Sequence[CorpusItem]):
    """A corpus's items (every split), in `open_corpus`'s order, made when indexed.

    It holds, per file, a loose file's relative path, or a manifest row's id and byte offset
    (the row is read again when its item is asked for), so its memory is a few dozen bytes
    per file. `by_id()` orders it by id; slicing and `[i::n]` give views that share the lists.
    """

    def __init__(self, root: Path, keys: list[str], offsets: array | None, manifest: Path | None,
                 collide: frozenset[str] = frozenset(), order: Sequence[int] | None = None):
        self.root = root  # the folder of loose files or of the manifest
        self.keys = keys  # relative paths (loose files) or ids (manifest rows)
        self.offsets = offsets  # byte offset of each manifest row
        self.manifest = manifest
        self.collide = collide  # stems of loose files that differ only in extension: their ids keep it
        self.order = range(len(keys)) if order is None else order

    def __len__(self) -> int:
        return len(self.order)

    @overload
    def __getitem__(self, i: int) -> CorpusItem: ...

    @overload
    def __getitem__(self, i: slice) -> CorpusIndex: ...

    def __getitem__(self, i: int | slice) -> CorpusItem | CorpusIndex:
        if isinstance(i, slice):
            return CorpusIndex(self.root, self.keys, self.offsets, self.manifest, self.collide, self.order[i])
        j = self.order[i]
        if self.manifest is None:
            rel = self.keys[j]
            stem = rel.rsplit(".", 1)[0]
            return CorpusItem(id=rel if stem in self.collide else stem, path=(self.root / rel).resolve(), rel_path=rel)
        return _item(self.manifest, _read_row(self.manifest, self.offsets[j]))

    def __iter__(self) -> Iterator[CorpusItem]:
        return (self[i] for i in range(len(self)))

    def ids(self) -> Iterator[str]:
        """The items' ids, without building the items."""
        for j in self.order:
            if self.manifest is not None:
                yield self.keys[j]
            else:
                rel = self.keys[j]
                stem = rel.rsplit(".", 1)[0]
                yield rel if stem in self.collide else stem

    def by_id(self) -> CorpusIndex:
        """The same items sorted by id."""
        ids = list(self.ids())
        order = array("q", (self.order[k] for k in sorted(range(len(ids)), key=ids.__getitem__)))
        return CorpusIndex(self.root, self.keys, self.offsets, self.manifest, self.collide, order)


def corpus_index(path: str | Path) -> CorpusIndex:
    """`open_corpus`'s items without holding them (same rules, same errors; no split filter)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; pass a corpus written by `soundlm data` (its "
                                "folder or manifest.jsonl), a folder of audio files or one audio file")
    manifest = find_manifest(path)
    return _folder_index(path) if manifest is None else _manifest_index(manifest)


def _folder_index(path: Path) -> CorpusIndex:
    root = path.parent if path.is_file() else path
    rels = [f.relative_to(root).as_posix() for f in iter_audio_files(path)]
    if not rels:
        raise ValueError(f"{path}: no audio files found (extensions {', '.join(AUDIO_EXTENSIONS)}) and no "
                         f"{MANIFEST_NAME}; point at the corpus folder or its manifest, or at a folder of audio")
    # Ids drop the extension; `a.wav` next to `a.flac` would collide, so those two keep it.
    stems: dict[str, int] = {}
    for r in rels:
        stem = r.rsplit(".", 1)[0]
        stems[stem] = stems.get(stem, 0) + 1
    index = CorpusIndex(root, rels, None, None, frozenset(s for s, n in stems.items() if n > 1))
    seen: dict[str, str] = {}
    for item_id, rel in zip(index.ids(), rels):
        if item_id in seen:  # `a.wav` kept whole next to a file `a.wav.flac`
            raise ValueError(f"{path}: id {item_id!r} appears twice; {seen[item_id]} and {rel} both map to it; "
                             "rename one")
        seen[item_id] = rel
    return index


def _manifest_index(manifest: Path) -> CorpusIndex:
    """Validate every row once (as `read_manifest` does) and keep its id and byte offset."""
    ids: list[str] = []
    offsets = array("q")
    seen: set[str] = set()
    offset = 0
    with open(manifest, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.decode("utf-8")
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{manifest}:{lineno}: not valid JSON ({e}); fix or regenerate the "
                                     "manifest") from e
                check_manifest_row(row, f"{manifest}:{lineno}")
                row_id = str(row["id"])
                if row_id in seen:
                    raise ValueError(f"{manifest}: id {row_id!r} appears twice; ids must be unique (fix the manifest)")
                seen.add(row_id)
                ids.append(row_id)
                offsets.append(offset)
            offset += len(raw)
    if not ids:
        raise ValueError(f"{manifest}: the manifest has no rows; regenerate the corpus with `soundlm data`")
    return CorpusIndex(manifest.parent, ids, offsets, manifest)


def _read_row(manifest: Path, offset: int) -> dict:
    with open(manifest, "rb") as f:
        f.seek(offset)
        return json.loads(f.readline().decode("utf-8"))


def _item(manifest: Path, row: dict) -> CorpusItem:
    def text(key: str) -> str | None:
        return None if row.get(key) is None else str(row[key])

    return CorpusItem(id=str(row["id"]), path=(manifest.parent / row["path"]).resolve(), rel_path=str(row["path"]),
                      duration=float(row["duration"]), sample_rate=int(row["sample_rate"]), speaker=text("speaker"),
                      transcript=text("transcript"), language=text("language"), split=text("split"),
                      text_id=text("text_id"))
