"""Atomic writes: every file soundlm produces appears whole or not at all.

A writer fills a temporary file in the destination folder (same filesystem), flushes and
fsyncs it, then renames it over the target. A crash (even kill -9) leaves at worst a
stray `.tmp-*` file, never a truncated result. A write that fails because the disk is
full (or over quota, or read-only) removes its temporary file or folder and raises
`DiskFullError`, which names the target and the fix: free space, then rerun the same
command, which resumes from what was written whole.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

# What a full disk, an exhausted quota or a read-only filesystem raise.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


class DiskFullError(OSError):
    """A write that found no space (or quota, or a writable filesystem); nothing partial was left."""

    def __init__(self, target: str | Path, cause: BaseException):
        reason = getattr(cause, "strerror", None) or str(cause)
        code = getattr(cause, "errno", None) or errno.ENOSPC
        super().__init__(code, f"{target}: could not be written ({reason}); nothing partial was left: free space "
                               "(or write elsewhere) and rerun the same command to resume")

    def __str__(self) -> str:
        return self.strerror


def is_disk_full(error: BaseException) -> bool:
    """Whether `error` says the disk is full: an OSError with ENOSPC/EDQUOT/EROFS, or a library's
    error carrying that OS error in its message (safetensors, torch's C++ writer)."""
    if isinstance(error, OSError) and error.errno in _NO_SPACE:
        return True
    text = str(error)
    return "No space left on device" in text or "Disk quota exceeded" in text or "Read-only file system" in text


@contextlib.contextmanager
def _disk_full_reported(target: Path) -> Iterator[None]:
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        if is_disk_full(e):
            raise DiskFullError(target, e) from e
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _give_default_mode(path: Path, directory: bool = False) -> None:
    """`mkstemp`/`mkdtemp` make 0600 files and 0700 folders; give what a plain `open`/`mkdir` would (umask)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to `target`; rename it onto `target` on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    _give_default_mode(tmp_path)
    try:
        with _disk_full_reported(target):
            yield tmp_path
            with open(tmp_path, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | Path, text: str) -> None:
    write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: str | Path, obj: Any) -> None:
    write_text_atomic(target, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


@contextlib.contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `target` as a whole.

    Used for checkpoints (config + weights + optimizer state must match each other).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}.", dir=target.parent))
    _give_default_mode(tmp, directory=True)
    try:
        with _disk_full_reported(target):
            yield tmp
            for f in tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb+") as fh:
                        os.fsync(fh.fileno())
        old = None
        if target.exists():
            old = target.with_name(f".old-{target.name}.{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
