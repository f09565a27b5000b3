"""Uploaded files: written under a name the server picks, size-limited, checked as the CLI checks a file.

The client's file name is only ever shown (in messages and labels), never used as a path:
the upload is stored as JOB_FOLDER/input + an extension from a fixed list. Audio is decoded
with `soundlm.audio.load_audio`, so unreadable, empty, NaN and silent files fail with the
same one-line reason `soundlm continue` prints, naming the uploaded file instead of the
server's copy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from soundlm.audio import AUDIO_EXTENSIONS, AudioError

CHUNK = 1 << 16
INPUT_STEM = "input"


class UploadTooLarge(ValueError):
    """An upload over the server's size limit (the API's 413)."""


@dataclass
class Prompt:
    """A decoded audio input: [C, S] float32 at its own rate, the file it came from and how to name it."""

    audio: np.ndarray  # [C, S]
    sample_rate: int
    path: Path  # the server's copy (the bundled prompt's own path for `prompt=bundled`)
    label: str  # what to call it in messages and results

    @property
    def seconds(self) -> float:
        return self.audio.shape[-1] / self.sample_rate


def display_name(filename: str | None) -> str:
    """The client's file name made safe to show: its last path part, printable characters, at most 80."""
    name = re.split(r"[\\/]", filename or "")[-1]
    name = re.sub(r"[^\w.\- ]", "_", name).strip() or "upload"
    return name[:80]


def save_upload(source: BinaryIO, folder: Path, filename: str | None, limit_bytes: int,
                suffixes: tuple[str, ...] = AUDIO_EXTENSIONS) -> Path:
    """Copy an upload into `folder` as `input` + its extension (if in `suffixes`); UploadTooLarge past the limit."""
    suffix = Path(display_name(filename)).suffix.lower()
    path = folder / (INPUT_STEM + (suffix if suffix in suffixes else ""))
    written = 0
    with open(path, "wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > limit_bytes:
                raise UploadTooLarge(f"{display_name(filename)}: the upload is over the server's limit of "
                                     f"{limit_bytes / 2**20:g} MB (--max-upload-mb); send a shorter or "
                                     "compressed file")
            out.write(chunk)
    if written == 0:
        raise AudioError(display_name(filename), "empty upload (zero bytes)", "choose an audio file")
    return path


def read_prompt(path: Path, label: str, max_seconds: float, allow_silent: bool = False) -> Prompt:
    """Decode and check an audio file; errors name `label`, and a file over `max_seconds` is refused."""
    from soundlm.audio import info, load_audio

    try:
        meta = info(path)
        if meta.duration > max_seconds:
            raise AudioError(path, f"{meta.duration:.1f} s is longer than this server's limit of {max_seconds:g} s "
                                   "(--max-prompt-seconds)", "cut the file")
        audio = load_audio(path, sample_rate=None, mono=False, allow_silent=allow_silent)
    except AudioError as e:
        # libsndfile's messages quote the path it opened: show the client's name, not the server's folders.
        raise AudioError(label, e.problem.replace(str(path), label), _fix_of(e)) from None
    return Prompt(audio=audio, sample_rate=meta.sample_rate, path=path, label=label)


def _fix_of(e: AudioError) -> str:
    """The fix part of an AudioError's message (the text in the last parentheses)."""
    message = str(e)
    head = (f"{e.path}: " if e.path else "") + e.problem
    rest = message[len(head):].strip()
    return rest[1:-1] if rest.startswith("(") and rest.endswith(")") else ""
