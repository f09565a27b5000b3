"""One reader for every corpus the jobs take: a manifest, the folder holding it, or loose audio files.

The tokenize job, the codec and semantic trainers and the evaluation suite all read their
input through `open_corpus`, so an utterance has the same id, path and split everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from soundlm.audio import AUDIO_EXTENSIONS, list_audio_files
from soundlm.data import MANIFEST_NAME, read_manifest

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
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; pass a corpus written by `soundlm data` (its "
                                "folder or manifest.jsonl), a folder of audio files or one audio file")
    manifest = find_manifest(path)
    items = _from_folder(path) if manifest is None else _from_manifest(manifest)
    seen: dict[str, CorpusItem] = {}
    for item in items:
        if item.id in seen:
            fix = ("ids must be unique (fix the manifest)" if manifest is not None else
                   f"{seen[item.id].rel_path} and {item.rel_path} both map to it; rename one")
            raise ValueError(f"{manifest or path}: id {item.id!r} appears twice; {fix}")
        seen[item.id] = item
    if manifest is None:
        return items
    chosen = [item for item in items if item.in_split(split)]
    if not chosen:
        present = sorted({item.split or DEFAULT_SPLIT for item in items})
        fix = ("build the corpus with held-out voices (`soundlm data speech --heldout-voices N`) or pass --split train"
               if split == "heldout" else "pass one of the splits present")
        raise ValueError(f"{manifest}: no rows with split {split!r} (splits present: {', '.join(present)}; a row "
                         f"without one counts as {DEFAULT_SPLIT!r}); {fix}")
    return chosen


def _from_folder(path: Path) -> list[CorpusItem]:
    files = list_audio_files(path)
    if not files:
        raise ValueError(f"{path}: no audio files found (extensions {', '.join(AUDIO_EXTENSIONS)}) and no "
                         f"{MANIFEST_NAME}; point at the corpus folder or its manifest, or at a folder of audio")
    root = path.parent if path.is_file() else path
    rels = [f.relative_to(root).as_posix() for f in files]
    stems = [r.rsplit(".", 1)[0] for r in rels]
    # Ids drop the extension; `a.wav` next to `a.flac` would collide, so those two keep it.
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    return [CorpusItem(id=s if counts[s] == 1 else r, path=f.resolve(), rel_path=r)
            for f, r, s in zip(files, rels, stems)]


def _from_manifest(manifest: Path) -> list[CorpusItem]:
    def text(row: dict, key: str) -> str | None:
        return None if row.get(key) is None else str(row[key])

    items = [CorpusItem(id=str(row["id"]), path=(manifest.parent / row["path"]).resolve(), rel_path=str(row["path"]),
                        duration=float(row["duration"]), sample_rate=int(row["sample_rate"]),
                        speaker=text(row, "speaker"), transcript=text(row, "transcript"),
                        language=text(row, "language"), split=text(row, "split"), text_id=text(row, "text_id"))
             for row in read_manifest(manifest)]
    if not items:
        raise ValueError(f"{manifest}: the manifest has no rows; regenerate the corpus with `soundlm data`")
    return items
