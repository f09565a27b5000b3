"""Two training processes on one CPU machine (gloo) against one process at the same global batch.

`soundlm train lm` (the semantic stage, a synthetic store) and `soundlm train codec` (tiny
preset, synthetic harmonic audio, no discriminator), each run
- as one process with `--batch-size 2B`, with one and with two torch threads, and
- as `accelerate launch --multi_gpu --num_processes 2` with `--batch-size B`, one thread each,
- as `accelerate launch --cpu --num_processes 2 --mpirun_hostfile FILE` (the processes started
  by MPICH's mpirun; skipped without mpirun), the same,
and the table gives wall time (process start to exit, launcher included), the final
training loss and the largest relative difference between the one-process (one thread)
and the two-process logged losses (the codec's spectral-convergence term is normalised
over each process's batch, so its losses differ by more than float order). Two cores,
shared with other jobs: read the ratios, not the absolute speeds.

    .venv/bin/python bench/distributed.py            # ~7 min on a busy 2-core machine
    .venv/bin/python bench/distributed.py --steps 30 # shorter
"""

from __future__ import annotations

import sys
from pathlib import Path

# This folder holds a `tokenize.py`, which would hide the stdlib module of that name (pandas
# imports it): keep the folder last on sys.path, where `import common` still finds ours.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import common  # noqa: E402


def _store(root: Path, records: int, seconds: float) -> Path:
    """A synthetic token store (periodic semantic ids, codes a function of them), as the LM tests use."""
    import numpy as np

    from soundlm.store import StoreManifest, TokenRecord, write_part

    rng = np.random.default_rng(0)
    recs = []
    for i in range(records):
        t_s, t_a = int(seconds * 25), int(seconds * 50)
        semantic = (np.arange(t_s) + int(rng.integers(0, 12))) % 4 * 3
        acoustic = np.stack([(np.repeat(semantic, 2)[:t_a] + q) % 16 for q in range(3)])
        recs.append(TokenRecord(id=f"utt{i:03d}", path=f"utt{i:03d}.wav", duration=seconds, semantic=semantic,
                                acoustic=acoustic, sample_rate=16000))
    write_part(root, 0, 1, 0, recs, [])
    StoreManifest.from_json({"version": 1, "semantic": {"kind": "synthetic"}, "acoustic": {"backend": "synthetic"},
                             "semantic_frame_rate": 25.0, "semantic_vocab_size": 12, "acoustic_frame_rate": 50.0,
                             "acoustic_codebook_size": 16, "acoustic_num_codebooks": 3, "num_shards": 1}).write(root)
    return root


def _audio(root: Path, files: int) -> Path:
    import numpy as np
    import soundfile as sf

    root.mkdir(parents=True, exist_ok=True)
    t = np.arange(16000) / 16000
    for i in range(files):
        f0 = 110 + 23 * i
        x = sum(0.3 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, 6)) * (0.6 + 0.4 * np.sin(2 * np.pi * t))
        sf.write(root / f"h{i:02d}.wav", x.astype(np.float32), 16000)
    return root


def _run(cmd: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SOUNDLM_TEST_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:6])} ... failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - t


def _losses(run: Path, key: str, kind: str | None) -> dict[int, float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {m["step"]: m[key] for m in lines if key in m and (kind is None or m.get("kind") == kind)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100, help="training steps of each run (default 100)")
    ap.add_argument("--batch-size", type=int, default=8, help="per-process batch B of the 2-process runs (default 8)")
    ap.add_argument("--out", type=Path, default=None, help="JSON output (default bench/results/distributed.json)")
    args = ap.parse_args()
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="soundlm-bench-distributed-"))
    store, audio = _store(tmp / "store", 64, 4.0), _audio(tmp / "audio", 12)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
              "29617", "-m", "soundlm"]
    alone = [sys.executable, "-m", "soundlm"]
    hostfile = tmp / "hosts"
    hostfile.write_text("localhost:2\n")
    mpi = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
           "--mpirun_hostfile", str(hostfile), "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", "29618", "-m", "soundlm"]
    have_mpi = shutil.which("mpirun") is not None or shutil.which("mpiexec") is not None
    if not have_mpi:
        print("mpirun not found: the accelerate --cpu (mpirun) runs are skipped")
    jobs = {
        "train lm (semantic, tiny)": (["train", "lm", str(store), "--stage", "semantic", "--preset", "tiny",
                                       "--window-seconds", "2", "--steps", str(args.steps), "--log-every", "1",
                                       "--eval-every", str(args.steps), "--ckpt-every", str(args.steps),
                                       "--no-progress"], "train/loss", None),
        "train codec (tiny)": (["train", "codec", str(audio), "--preset", "tiny", "--segment-seconds", "0.5",
                                "--steps", str(args.steps), "--log-every", "1", "--eval-every", str(args.steps),
                                "--ckpt-every", str(args.steps), "--sample-every", str(args.steps),
                                "--no-adversarial", "--device", "cpu"], "loss", "train"),
    }
    rows = []
    for name, (cmd, key, kind) in jobs.items():
        runs = {}
        for label, prefix, batch, threads in (("1x1", alone, 2 * args.batch_size, 1),
                                              ("1x2", alone, 2 * args.batch_size, 2),
                                              ("2x1", launch, args.batch_size, 1),
                                              *((("2x1 mpirun", mpi, args.batch_size, 1),) if have_mpi else ())):
            out = tmp / f"{name.split()[1]}-{label.replace(' ', '-')}"
            wall = _run([*prefix, *cmd, "--out", str(out), "--batch-size", str(batch)], threads)
            runs[label] = (wall, _losses(out, key, kind))
            print(f"  {name}, processes x threads {label}: {wall:.0f} s", flush=True)
        l1, l2 = runs["1x1"][1], runs["2x1"][1]
        last = max(l1)
        row = {"job": name, "steps": args.steps, "global_batch": 2 * args.batch_size,
               "wall_s_1proc_1thread": runs["1x1"][0], "wall_s_1proc_2threads": runs["1x2"][0],
               "wall_s_2proc": runs["2x1"][0], "final_loss_1proc": l1[last], "final_loss_2proc": l2[last],
               "max_rel_loss_diff": max(abs(l1[s] - l2[s]) / abs(l1[s]) for s in l1)}
        if have_mpi:
            lm = runs["2x1 mpirun"][1]
            row.update({"wall_s_2proc_mpirun": runs["2x1 mpirun"][0], "final_loss_2proc_mpirun": lm[last],
                        # against the torchrun-launched 2 processes: the same ranks, data and collectives
                        "max_abs_loss_diff_mpirun_vs_torchrun": max(abs(lm[s] - l2[s]) for s in l2)})
        rows.append(row)
    print()
    common.print_table(rows, [("job", "job", "s"), ("steps", "steps", "d"), ("global_batch", "global batch", "d"),
                              ("wall_s_1proc_1thread", "1 proc x 1 thread s", ".0f"),
                              ("wall_s_1proc_2threads", "1 proc x 2 threads s", ".0f"),
                              ("wall_s_2proc", "2 procs x 1 thread s", ".0f"),
                              ("final_loss_1proc", "loss 1 proc", ".4f"), ("final_loss_2proc", "loss 2 procs", ".4f"),
                              ("max_rel_loss_diff", "max rel diff", ".1e"),
                              *([("wall_s_2proc_mpirun", "2 procs mpirun s", ".0f"),
                                 ("max_abs_loss_diff_mpirun_vs_torchrun", "mpirun - torchrun", ".1e")]
                                if have_mpi else [])])
    payload = {"benchmark": "distributed", "machine": common.machine_info(2),
               "settings": {"steps": args.steps, "batch_per_process": args.batch_size,
                            "launch": "accelerate launch --multi_gpu --num_processes 2 (gloo on CPU)",
                            "launch_mpirun": "accelerate launch --cpu --num_processes 2 --mpirun_hostfile FILE "
                                             "(MPICH, gloo on CPU)" if have_mpi else None,
                            "threads": {"1 process": [1, 2], "each of 2 processes": 1}},
               "results": rows, "wall_seconds": time.time() - started}
    path = common.write_results("distributed", payload, args.out)
    print(f"\nwrote {path} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
