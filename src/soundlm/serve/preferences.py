"""A/B preferences: one JSON line per judgement, with copies of both samples beside the file.

Each line of the JSONL file is `{"prompt", "a", "b", "choice", "time", "settings"}`:
`prompt` is what the samples were made from (the prompt file's name, the TTS text, or a
music job's caption: both samples must then be of the same caption), `a`
and `b` are the two wav files (paths relative to the JSONL file's folder, copied into
`audio/` there: the server's job files are temporary), `choice` is "a" or "b", `time` is
UTC ISO 8601 and `settings` the job's settings. Preference training (`soundlm train prefer
--pairs FILE`, `music.pairs.read_human_pairs`) reads each line as a pair (prompt as the
caption, chosen = the `choice` file, rejected = the other).
"""

from __future__ import annotations

import json
import shutil
import threading
from datetime import datetime, timezone
from pathlib import Path

from soundlm.serve.jobs import Job
from soundlm.serve.schema import Preference

_lock = threading.Lock()


def record_preference(path: Path, job: Job, choice: Preference) -> dict:
    """Append one judgement between two samples of a finished `job`; returns the line written."""
    captions = {s.audio: s.caption for s in job.result.samples} if job.result is not None else {}
    missing = [name for name in (choice.a, choice.b) if name not in captions]
    if missing or choice.a == choice.b:
        raise ValueError(f"job {job.id}: a and b must be two different samples of it, got {choice.a!r} and "
                         f"{choice.b!r}; its samples are {sorted(captions)}")
    if captions[choice.a] != captions[choice.b]:
        raise ValueError(f"job {job.id}: {choice.a} and {choice.b} are music of different captions "
                         f"({captions[choice.a]!r}, {captions[choice.b]!r}); a preference compares two samples of "
                         "one caption")
    copies = path.parent / "audio"
    copies.mkdir(parents=True, exist_ok=True)
    kept = {}
    for name in (choice.a, choice.b):
        target = copies / f"{job.id}_{name}"
        shutil.copyfile(job.folder / name, target)
        kept[name] = target.relative_to(path.parent).as_posix()
    prompt = captions[choice.a] or job.settings.get("prompt") or job.settings.get("text") or "(unconditional)"
    row = {"prompt": prompt,
           "a": kept[choice.a], "b": kept[choice.b], "choice": choice.choice,
           "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "settings": job.settings}
    with _lock, open(path, "a", encoding="utf-8") as f:
        # One write of one whole line: a reader never sees half a judgement.
        f.write(json.dumps(row, sort_keys=True) + "\n")
    return row
