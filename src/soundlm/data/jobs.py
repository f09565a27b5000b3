"""Shared machinery of the corpus builders: parallel rendering, resume checks, config pinning."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, TypeVar

from tqdm import tqdm

from soundlm.fileio import read_json, write_json_atomic

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def run_parallel(fn: Callable[[T], R], tasks: list[T], workers: int | None, desc: str,
                 chunksize: int | None = None) -> list[R]:
    """`[fn(t) for t in tasks]` on a process pool with a progress bar; results keep task order.

    `chunksize`: tasks sent to a worker at once (default: up to 16, for many short tasks);
    the bar moves a chunk at a time, so long tasks want 1.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    bar = tqdm(total=len(tasks), desc=desc, unit="file", dynamic_ncols=True)
    try:
        if workers == 1 or len(tasks) <= 1:
            results = []
            for t in tasks:
                results.append(fn(t))
                bar.update()
            return results
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            results = []
            if chunksize is None:
                chunksize = max(1, min(16, len(tasks) // (4 * workers)))
            for r in pool.map(fn, tasks, chunksize=chunksize):
                results.append(r)
                bar.update()
            return results
    finally:
        bar.close()


def valid_wav(path: Path, sample_rate: int) -> bool:
    """True if `path` is a finished, readable mono wav at `sample_rate` (resume skips it).

    Writes are atomic, so a file that exists is complete unless someone else touched it;
    checking the header still catches foreign or truncated files.
    """
    import soundfile as sf

    if not path.is_file():
        return False
    try:
        i = sf.info(str(path))
    except Exception:  # libsndfile's error types vary; any failure means "render again"
        return False
    return i.samplerate == sample_rate and i.channels == 1 and i.frames > 0


def pin_config(out: Path, config: dict) -> None:
    """Record the corpus settings in `out/corpus.json`; refuse to mix settings in one folder.

    Resuming into a folder made with other settings would silently combine two corpora.
    """
    path = out / "corpus.json"
    if path.exists():
        old = read_json(path)
        if old != config:
            diff = {k: (old.get(k), config.get(k)) for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k)}
            raise ValueError(f"{out} holds a corpus made with other settings {diff} (old, new); "
                             "use a new --out folder or the same settings to resume")
        return
    write_json_atomic(path, config)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete `.tmp-*` files a killed run left behind (atomic writes in flight); returns the count.

    They end in `.wav` like real outputs, so a folder scan would otherwise pick them up.
    """
    stale = [p for p in folder.rglob(".tmp-*") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def render_corpus(out: Path, rows: list[dict], tasks: list, render: Callable, sample_rate: int,
                  workers: int | None, desc: str, noun: str) -> Path:
    """Render every task whose wav is missing or broken, then write `out/manifest.jsonl`.

    `tasks[i].path` is the wav of `rows[i]`; rows get their measured `duration` here.
    """
    from soundlm.audio import info
    from soundlm.data import write_manifest

    remove_stale_temporaries(out)
    todo = [t for t in tasks if not valid_wav(Path(t.path), sample_rate)]
    if len(todo) < len(tasks):
        print(f"resuming: {len(tasks) - len(todo)} of {len(tasks)} {noun} already rendered")
    run_parallel(render, todo, workers, desc=desc)
    for row in rows:
        row["duration"] = round(info(out / row["path"]).duration, 6)
    return write_manifest(out / "manifest.jsonl", rows)
