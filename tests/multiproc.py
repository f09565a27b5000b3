"""Launch `soundlm` as several processes for the multi-process tests (torch's elastic launcher
through `accelerate launch`, or mpirun through `accelerate launch --cpu --mpirun_hostfile`;
gloo on the CPU) and read what `launch_probe.py` recorded."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).resolve().parent / "launch_probe.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mpi_missing() -> str | None:
    """Why the MPI launch cannot run here (None: it can)."""
    if shutil.which("mpirun") is None and shutil.which("mpiexec") is None:
        return "mpirun not found: install MPICH or Open MPI (`make system` installs Debian's mpich)"
    return None


def launch_command(args: list[str], processes: int = 2, fsdp_version: int | None = None,
                   mpi_hostfile: Path | None = None) -> list[str]:
    """`accelerate launch` of the probe with `args` (a soundlm command line) on `processes` CPU processes.

    With `mpi_hostfile`: `accelerate launch --cpu --mpirun_hostfile FILE`, which starts them through mpirun.
    """
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes), "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    if mpi_hostfile is not None:
        cmd += ["--cpu", "--mpirun_hostfile", str(mpi_hostfile)]
    elif fsdp_version is None:
        cmd += ["--multi_gpu"]
    else:
        cmd += ["--use_fsdp", "--fsdp_version", str(fsdp_version), "--fsdp_state_dict_type", "FULL_STATE_DICT",
                "--fsdp_auto_wrap_policy", "TRANSFORMER_BASED_WRAP",
                "--fsdp_transformer_layer_cls_to_wrap", "LlamaDecoderLayer"]
    return cmd + [str(PROBE), *args]


def probe_env(probe_dir: Path, watch: Path, **extra: str) -> dict[str, str]:
    # One thread per process: two processes share the CI machine's two cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PROBE_DIR": str(probe_dir), "PROBE_WATCH": str(watch),
            "HF_HUB_OFFLINE": "1", **extra}


def launch(args: list[str], probe_dir: Path, watch: Path, processes: int = 2, fsdp_version: int | None = None,
           timeout: float = 300, mpi_hostfile: Path | None = None, **extra: str) -> subprocess.CompletedProcess:
    """Run a launch to its end; its output is in the result's `stdout` (stderr merged)."""
    return subprocess.run(launch_command(args, processes, fsdp_version, mpi_hostfile),
                          env=probe_env(probe_dir, watch, **extra),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


def run_alone(args: list[str], probe_dir: Path, watch: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """The same command as one process without a launcher (one thread, like each launched process)."""
    return subprocess.run([sys.executable, str(PROBE), *args], env=probe_env(probe_dir, watch), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def probe_lines(probe_dir: Path) -> dict[int, list[dict]]:
    """What each rank recorded: rank -> its lines."""
    out: dict[int, list[dict]] = {}
    for f in sorted(Path(probe_dir).glob("rank*.jsonl")):
        out[int(f.stem[4:])] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return out


def writes(lines: list[dict]) -> list[str]:
    return [entry["path"] for entry in lines if "write" in entry]


def reads(lines: list[dict], kind: str) -> list[dict]:
    return [entry for entry in lines if entry.get("read") == kind]
