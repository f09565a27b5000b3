"""How `soundlm` reports the errors the library documents: one line, `error: MESSAGE`, on stderr.

The library raises ValueError (AudioError is one), FileNotFoundError or MissingToolError with
a message that names the file, the problem and the fix, so the command line prints that
message and no traceback; so it does for a full disk (`fileio.DiskFullError`, or any write
failing with ENOSPC/EDQUOT/EROFS): the jobs resume once there is space. Every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from typer.core import TyperGroup

from soundlm.data import MissingToolError
from soundlm.fileio import DiskFullError, is_disk_full

# Most commands exit with this status on a documented error; `soundlm data` and the work of
# `soundlm recipe` have always exited 1 (see `reported`), and scripts may test for either.
ERROR_EXIT_CODE = 2
# AudioError is a ValueError. DiskFullError: a write found the disk full and left nothing partial.
DOCUMENTED_ERRORS = (ValueError, FileNotFoundError, MissingToolError, DiskFullError)


@contextmanager
def reported(exit_code: int = ERROR_EXIT_CODE) -> Iterator[None]:
    """Turn a documented error raised inside the block into `error: MESSAGE` and exit status `exit_code`."""
    try:
        yield
    except DOCUMENTED_ERRORS as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=exit_code) from None
    except OSError as e:
        if not is_disk_full(e):
            raise
        where = f"{e.filename}: " if e.filename else ""
        typer.echo(f"error: {where}{e.strerror or e}; free space (or write elsewhere) and rerun the same command to "
                   "resume", err=True)
        raise typer.Exit(code=exit_code) from None


class ReportingGroup(TyperGroup):
    """The top-level `soundlm` group: every command runs inside `reported()`.

    Errors are caught here rather than in `main` because typer's CliRunner (the tests)
    invokes this group directly, without going through `main`.
    """

    def invoke(self, ctx: Any) -> Any:  # ctx: a Context of the click that typer vendors
        with reported():
            return super().invoke(ctx)
