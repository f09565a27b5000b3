"""The script the multi-process tests launch: `soundlm` with a recorder and an optional fault.

Each process (rank from RANK, 0 without a launcher) writes lines to
`$PROBE_DIR/rank{R}.jsonl`:
- `{"write": event, "path": ...}` for every file or folder it creates, opens for writing,
  renames or deletes under `$PROBE_WATCH` (Python audit events), so a test can tell which
  processes wrote a run folder;
- `{"read": kind, ...}` for every training example it takes: `lm` (example index, record
  index, stream), `palm` (step, example indices) and `codec` (step, crops);
- with `PROBE_FAIL_STEP=k` and `PROBE_FAIL_RANK=r`, rank r raises RuntimeError at its k-th
  optimizer step (a worker that dies in the middle of a run);
- with `PROBE_STEP_SLEEP=s`, every optimizer step first sleeps s seconds (a run slow enough
  to be killed in the middle; the results do not change).

    python tests/launch_probe.py train lm STORE --stage semantic --out RUN ...
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# torchrun's RANK, or MPICH's / Open MPI's under mpirun (`accelerate launch --cpu --mpirun_hostfile`).
RANK = int(os.environ.get("RANK") or os.environ.get("PMI_RANK") or os.environ.get("OMPI_COMM_WORLD_RANK") or 0)
_log = None


def _record(entry: dict) -> None:
    _log.write(json.dumps({"rank": RANK, **entry}) + "\n")
    _log.flush()


def _writes(event: str, args: tuple, watch: str) -> None:
    if event == "open":
        path, mode, flags = args
        writing = (mode is not None and any(c in str(mode) for c in "wax+")) or \
            (mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
        paths = [path] if writing else []
    elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree", "os.truncate"):
        paths = [args[0]]
    elif event == "os.rename":
        paths = [args[0], args[1]]
    else:
        return
    for p in paths:
        if isinstance(p, (str, bytes, os.PathLike)):
            p = os.fsdecode(p)
            if os.path.abspath(p).startswith(watch):
                _record({"write": event, "path": p})


def _install_recorder() -> None:
    global _log
    folder = Path(os.environ["PROBE_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    _log = open(folder / f"rank{RANK}.jsonl", "a", encoding="utf-8")
    watch = os.path.abspath(os.environ["PROBE_WATCH"])
    sys.addaudithook(lambda event, args: _writes(event, args, watch))


def _install_read_log() -> None:
    from soundlm.palm import loop as palm_loop
    from soundlm.train import codec, lm_data

    record_index = lm_data.StageDataset.record_index

    def logged_record_index(self, index: int) -> int:
        i = record_index(self, index)
        _record({"read": "lm", "index": index, "record": i, "stream": self.stream})
        return i

    lm_data.StageDataset.record_index = logged_record_index
    rank_batch = palm_loop.rank_batch

    def logged_rank_batch(step, batch_size, n, seed, procs):
        rows = rank_batch(step, batch_size, n, seed, procs)
        _record({"read": "palm", "step": step, "examples": rows})
        return rows

    palm_loop.rank_batch = logged_rank_batch
    rank_crops = codec.CropBatches.rank_crops

    def logged_rank_crops(self, step: int):
        crops = rank_crops(self, step)
        _record({"read": "codec", "step": step, "crops": crops})
        return crops

    codec.CropBatches.rank_crops = logged_rank_crops


def _install_fault() -> None:
    import time

    from torch.optim.optimizer import register_optimizer_step_pre_hook

    fail_step = int(os.environ.get("PROBE_FAIL_STEP", "0"))
    fails = fail_step > 0 and RANK == int(os.environ.get("PROBE_FAIL_RANK", "1"))
    sleep = float(os.environ.get("PROBE_STEP_SLEEP", "0"))
    steps = [0]

    def before_step(optimizer, args, kwargs):
        steps[0] += 1
        if fails and steps[0] == fail_step:
            raise RuntimeError(f"probe: rank {RANK} fails at optimizer step {fail_step}")
        if sleep:
            time.sleep(sleep)

    if fails or sleep:
        register_optimizer_step_pre_hook(before_step)


if __name__ == "__main__":
    _install_recorder()
    _install_read_log()
    _install_fault()
    from soundlm.cli import main

    main()
