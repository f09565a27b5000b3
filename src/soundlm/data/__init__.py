"""Corpora: their manifest (`manifest.jsonl`, see docs/ARCHITECTURE.md), the one reader every job
uses (`open_corpus`) and the synthetic corpora.

A manifest is one JSON object per line: `id`, `path` (relative to the manifest's folder),
`duration`, `sample_rate`, `speaker`, `language`, `transcript`, and optionally `text_id`
and `split`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from soundlm.fileio import write_text_atomic

MANIFEST_NAME = "manifest.jsonl"
REQUIRED_KEYS = ("id", "path", "duration", "sample_rate", "speaker", "language", "transcript")
OPTIONAL_KEYS = ("text_id", "split")
SPLITS = ("train", "heldout")


class MissingToolError(RuntimeError):
    """An external program (espeak-ng, fluidsynth, a soundfont) is not installed."""


def manifest_path(path: str | Path) -> Path:
    """Accept a manifest file or the corpus folder holding `manifest.jsonl`."""
    path = Path(path)
    return path / MANIFEST_NAME if path.is_dir() else path


def check_manifest_row(row: Any, where: str) -> None:
    """Raise ValueError (naming `where` and the fix) for a manifest row that breaks the format."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__} (one object per line)")
    missing = [k for k in REQUIRED_KEYS if k not in row]
    if missing:
        raise ValueError(f"{where}: missing keys {missing} (every row needs {list(REQUIRED_KEYS)})")
    if not isinstance(row["path"], str) or Path(row["path"]).is_absolute():
        raise ValueError(f"{where}: 'path' must be a path relative to the manifest's folder, got {row['path']!r}")
    if not isinstance(row["duration"], (int, float)) or row["duration"] < 0:
        raise ValueError(f"{where}: 'duration' must be a non-negative number of seconds, got {row['duration']!r}")
    if not isinstance(row["sample_rate"], int) or row["sample_rate"] <= 0:
        raise ValueError(f"{where}: 'sample_rate' must be a positive integer, got {row['sample_rate']!r}")
    if "split" in row and row["split"] not in SPLITS:
        raise ValueError(f"{where}: 'split' must be one of {SPLITS}, got {row['split']!r}")


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a manifest (file, or corpus folder), validated; paths stay relative.

    Use `audio_path(manifest, row)` to get the absolute audio file of a row.
    """
    path = manifest_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no manifest here (create a corpus with `soundlm data speech --out DIR`)")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e}); fix or regenerate the manifest") from e
            check_manifest_row(row, f"{path}:{lineno}")
            rows.append(row)
    return rows


def write_manifest(path: str | Path, rows: list[dict]) -> Path:
    """Validate and write rows as JSON lines, atomically. Returns the manifest path."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    ids = set()
    for i, row in enumerate(rows):
        check_manifest_row(row, f"{path} row {i}")
        if row["id"] in ids:
            raise ValueError(f"{path} row {i}: duplicate id {row['id']!r} (ids must be unique)")
        ids.add(row["id"])
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    write_text_atomic(path, text)
    return path


def audio_path(manifest: str | Path, row: dict) -> Path:
    """The audio file of a manifest row (its `path` is relative to the manifest's folder)."""
    return manifest_path(manifest).parent / row["path"]


# Imported last: the corpus reader and builders use the helpers above.
from soundlm.data.corpus import CorpusIndex, CorpusItem, corpus_index, find_manifest, open_corpus  # noqa: E402
from soundlm.data.music import make_music_corpus  # noqa: E402
from soundlm.data.piano import make_piano_corpus  # noqa: E402
from soundlm.data.speech import make_speech_corpus  # noqa: E402

__all__ = ["MANIFEST_NAME", "CorpusIndex", "CorpusItem", "MissingToolError", "audio_path", "check_manifest_row",
           "corpus_index", "find_manifest", "make_music_corpus", "make_piano_corpus", "make_speech_corpus",
           "open_corpus", "read_manifest", "write_manifest"]
