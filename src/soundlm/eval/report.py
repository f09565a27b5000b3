"""The evaluation report format and resume state shared by every `soundlm eval` section.

Every evaluation returns an `EvalSection` (settings, summary, per-item rows, wall time);
`write_section` writes it as DIR/{name}.md and DIR/{name}.json, and `write_results` joins
several into DIR/results.md + DIR/results.json. All files are written atomically. The
loops over files/prompts keep per-item results in DIR/.state/{name}.json (`RowState`), so
an interrupted run with the same settings picks up where it stopped.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundlm.fileio import write_json_atomic, write_text_atomic

STATE_DIR = ".state"


@dataclass
class EvalSection:
    """One evaluation's outcome: what was run, the headline numbers and the per-item rows."""

    name: str
    title: str
    settings: dict
    summary: dict
    rows: list[dict]
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)

    def markdown(self, level: int = 2) -> str:
        head = "#" * level
        lines = [f"{head} {self.title}", ""]
        lines += [f"- {k}: `{_short(_fmt(v))}`" for k, v in sorted(self.settings.items())]
        lines += [f"- wall time: {self.wall_seconds:.1f} s", ""]
        lines += [_table([self.summary]), ""]
        lines += [f"> {n}" for n in self.notes] + ([""] if self.notes else [])
        if self.rows:
            lines += [_table(self.rows), ""]
        return "\n".join(lines)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if math.isfinite(v) else str(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def _short(text: str, limit: int = 160) -> str:
    # Long settings (a codec's full config) stay whole in the JSON; the table shows their start.
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _table(rows: Sequence[dict]) -> str:
    names = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(names) + " |", "|" + "|".join("---" for _ in names) + "|"]
    lines += ["| " + " | ".join(_fmt(r.get(n)) for n in names) + " |" for r in rows]
    return "\n".join(lines)


def write_section(section: EvalSection, out_dir: str | Path) -> tuple[Path, Path]:
    """DIR/{name}.md and DIR/{name}.json, atomically; returns both paths."""
    out_dir = Path(out_dir)
    md, js = out_dir / f"{section.name}.md", out_dir / f"{section.name}.json"
    write_text_atomic(md, f"# soundlm eval: {section.name}\n\n" + section.markdown() + "\n")
    write_json_atomic(js, section.to_json())
    return md, js


def write_results(sections: Sequence[EvalSection], out_dir: str | Path, settings: dict | None = None) -> Path:
    """DIR/results.md + DIR/results.json with one section per evaluation; returns the markdown path."""
    out_dir = Path(out_dir)
    total = sum(s.wall_seconds for s in sections)
    head = ["# soundlm evaluation", ""] + [f"- {k}: `{_fmt(v)}`" for k, v in sorted((settings or {}).items())]
    head += [f"- total wall time: {total:.1f} s", ""]
    write_text_atomic(out_dir / "results.md", "\n".join(head) + "\n" + "\n".join(s.markdown() for s in sections))
    # JSON keys are written sorted; `order` keeps the order the sections ran (and read) in.
    write_json_atomic(out_dir / "results.json", {"settings": settings or {}, "wall_seconds": total,
                                                 "order": [s.name for s in sections],
                                                 "sections": {s.name: s.to_json() for s in sections}})
    return out_dir / "results.md"


class RowState:
    """Per-item results of an interrupted evaluation, kept in one JSON file (atomic rewrites).

    The file is reused only if it was written with identical settings; otherwise the
    evaluation starts afresh (its results would not be comparable).
    """

    def __init__(self, path: str | Path | None, settings: dict):
        self.path = Path(path) if path is not None else None
        self.settings = json.loads(json.dumps(settings, default=str))
        self.rows: dict[str, dict] = {}
        if self.path is not None and self.path.is_file():
            state = json.loads(self.path.read_text(encoding="utf-8"))
            if state.get("settings") == self.settings:
                self.rows = state.get("rows", {})

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def __getitem__(self, key: str) -> dict:
        return self.rows[key]

    def put(self, key: str, row: dict) -> None:
        self.rows[key] = row
        if self.path is not None:
            write_json_atomic(self.path, {"settings": self.settings, "rows": self.rows})


def state_path(out_dir: str | Path | None, name: str) -> Path | None:
    """Where section `name` keeps its `RowState`: DIR/.state/{name}.json (None: no output folder, no resume)."""
    return None if out_dir is None else Path(out_dir) / STATE_DIR / f"{name}.json"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch, so a section that samples repeats its numbers for one seed."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
