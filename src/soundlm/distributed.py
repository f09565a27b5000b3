"""The processes of a multi-process training run: which one this is, which one writes, and
the few collectives the trainers share.

A launcher starts one process per device and sets RANK, WORLD_SIZE, LOCAL_RANK and
MASTER_ADDR/PORT: `torchrun`, `accelerate launch --multi_gpu` (or `--use_fsdp`), or a
cluster script around either. An MPI launcher (`mpirun`, which `accelerate launch --cpu
--mpirun_hostfile FILE` runs) says the same in its own variables (MPICH's PMI_RANK/PMI_SIZE,
Open MPI's OMPI_COMM_WORLD_*); `adopt_mpi_launch` copies them to the torch names, and
MASTER_ADDR/PORT must be set (Accelerate sets them). Every `soundlm train` command then
follows the same rules:

- one writer: rank 0 writes checkpoints, metrics, logs and the final export; the others
  wait at a barrier, so a checkpoint is complete before any process trains on;
- `--batch-size` is per process: the global batch is batch size x processes; rank r takes
  rows `[r * B, (r + 1) * B)` of the global batch of a step, so N processes train on
  the batches one process would see with N times the batch size;
- on a machine without GPUs the processes talk over gloo on the CPU (no flag needed);
- a worker started by an elastic agent (torchrun, accelerate launch) dies with it: a
  SIGKILL of the launcher leaves no orphan still training and writing.

Imports nothing from soundlm but `devices` (which imports nothing), so every layer, the
codec's quantizer included, may use it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from soundlm.devices import default_device

# Launchers that only Accelerate knows, each with what soundlm's own-loop trainers lack for it.
_ACCELERATE_ONLY = {
    "ACCELERATE_USE_FSDP": "FSDP",
    "ACCELERATE_USE_DEEPSPEED": "DeepSpeed",
    "ACCELERATE_USE_MEGATRON_LM": "Megatron-LM",
}


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux; a no-op elsewhere).

    Used by the tokenize job's loader workers and by training workers under a launcher: after
    a kill -9 of the parent they would otherwise live on, blocked on a queue or a collective,
    or worse, go on writing into the run folder.
    """
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    # The parent may have died before prctl: then we are already an orphan (re-parented).
    if os.getppid() == 1:
        os.kill(os.getpid(), signal.SIGKILL)


# Where MPI launchers put a process's rank, the number of processes, and its rank and their number
# on its machine: MPICH's Hydra (Debian's `mpich`, Intel MPI), then Open MPI.
_MPI_VARS = (("PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"),
             ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
              "OMPI_COMM_WORLD_LOCAL_SIZE"))


def _mpi_place() -> dict[str, str] | None:
    """RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE from an MPI launcher's variables (None: none set)."""
    env = os.environ
    for rank, size, local_rank, local_size in _MPI_VARS:
        if size in env:
            return {"RANK": env.get(rank, "0"), "WORLD_SIZE": env[size],
                    "LOCAL_RANK": env.get(local_rank, env.get(rank, "0")),
                    "LOCAL_WORLD_SIZE": env.get(local_size, env[size])}
    return None


def launched_world_size() -> int:
    """Processes the launcher started (WORLD_SIZE, or an MPI launcher's size; 1 without a launcher)."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"] or 1)
    place = _mpi_place()
    return int(place["WORLD_SIZE"]) if place else 1


def adopt_mpi_launch() -> None:
    """Under an MPI launcher, set RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE from its variables.

    torch's process group (and Accelerate on GPUs) reads only the torch names; the processes
    meet at MASTER_ADDR:MASTER_PORT, which `accelerate launch --num_processes N` sets and a
    bare `mpirun` does not. A no-op when a torch launcher set WORLD_SIZE or nothing launched us.
    """
    place = _mpi_place()
    if "WORLD_SIZE" in os.environ or place is None or int(place["WORLD_SIZE"]) <= 1:
        return
    missing = [var for var in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(var)]
    if missing:
        raise ValueError(f"an MPI launcher started {place['WORLD_SIZE']} processes but {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not set: export MASTER_ADDR=<rank 0's host> MASTER_PORT=29500 for mpirun, or start "
                         "it through `accelerate launch --cpu --num_processes N --mpirun_hostfile FILE`, which sets "
                         "them")
    os.environ.update(place)


def require_single_process(command: str) -> None:
    """Refuse to run `command` as one of several launched processes (each would train alone and
    write the same run folder); only `train lm`, `train codec` and `train palm` run data-parallel."""
    if launched_world_size() > 1:
        raise ValueError(f"`soundlm {command}` runs in one process; start it without torchrun or `accelerate "
                         "launch` (`soundlm train lm`, `train codec` and `train palm` are the data-parallel trainers)")


def check_launch(trainer: str, accelerate_features: bool = False) -> None:
    """Refuse launches that would not do what they say, naming the fix.

    - `accelerate launch --cpu --num_processes N` without `--mpirun_hostfile` starts one
      process (Accelerate's simple launcher starts several only through mpirun): N copies
      were asked for, one would train.
    - FSDP, DeepSpeed and Megatron-LM are Accelerate features; trainers on soundlm's own
      loop (`accelerate_features=False`) run plain data parallelism (DDP) only.
    - Those trainers train in float32: a launch asking for mixed precision is refused
      rather than silently ignored.
    """
    env = os.environ
    if (env.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in env
            and "WORLD_SIZE" not in env and "PMI_SIZE" not in env and "OMPI_COMM_WORLD_SIZE" not in env):
        raise ValueError("`accelerate launch --cpu --num_processes N` starts a single process (Accelerate runs "
                         "several CPU processes only through mpirun); launch N CPU processes with `accelerate "
                         "launch --multi_gpu --num_processes N` or `torchrun --nproc_per_node N` (soundlm uses gloo "
                         "when there is no GPU), add `--mpirun_hostfile FILE` (a line `localhost:N`; needs MPICH "
                         "or Open MPI), or drop --num_processes for one process")
    if accelerate_features:
        return
    for var, name in _ACCELERATE_ONLY.items():
        if env.get(var, "").lower() == "true":
            raise ValueError(f"`soundlm train {trainer}` runs data-parallel (DDP) only, not {name}: every process "
                             "holds the whole model, which for this trainer's models is small, and its training "
                             f"state is saved from one process; launch without --use_{name.lower().replace('-', '_')} "
                             "(e.g. `accelerate launch --multi_gpu --num_processes N` or torchrun)")
    precision = env.get("ACCELERATE_MIXED_PRECISION", "no").lower()
    if precision not in ("", "no"):
        raise ValueError(f"`soundlm train {trainer}` trains in float32, but the launch asks for mixed precision "
                         f"{precision!r}; launch with --mixed_precision no")


def use_cpu_backend(device: str | None) -> bool:
    """Whether a launched run's processes should talk over gloo on the CPU: asked, or no GPU."""
    return device == "cpu" or not torch.cuda.is_available()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def process_rank() -> int:
    """This process's rank in the initialised process group (0 without one)."""
    return dist.get_rank() if is_distributed() else 0


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """x [N, ...] of every process, concatenated in rank order -> [world * N, ...] (no gradient).

    Every process must pass the same shape. Used by the codec's quantizer, so that its
    k-means init, EMA statistics and dead-code restarts see the global batch, exactly as one
    process training on it would.
    """
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@dataclass
class Processes:
    """This process's place in a run (one process when nothing launched it)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """The one process that writes checkpoints, metrics and the final export."""
        return self.rank == 0

    def rows(self, batch_size: int) -> slice:
        """This process's rows of a global batch of `batch_size * world` rows."""
        return slice(self.rank * batch_size, (self.rank + 1) * batch_size)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """`obj` of every process, in rank order (a list of one without a launcher)."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over processes of a float tensor (a copy; unchanged with one process)."""
        values = values.detach().clone()
        if self.world > 1:
            device_values = values.to(self.device)
            dist.all_reduce(device_values)
            values = device_values.to(values.device)
        return values

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean over processes of each value (every process must pass the same keys)."""
        if self.world == 1:
            return values
        keys = sorted(values)
        total = self.sum(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64))
        return {k: float(v) / self.world for k, v in zip(keys, total)}

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model to run forward/backward through: DDP under a launcher, the model itself otherwise."""
        if self.world == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)


def start_processes(trainer: str, device: str | None = None) -> Processes:
    """Join the run the launcher started (or describe the lone process) for a trainer on soundlm's own loop.

    `device` is the command's --device (None: the launcher's GPU for this process, else CUDA
    when present, else the CPU). Raises ValueError for the launches `check_launch` refuses.
    """
    check_launch(trainer)
    adopt_mpi_launch()
    if launched_world_size() <= 1:
        return Processes(device=default_device(device))
    from accelerate import PartialState

    state = PartialState(cpu=use_cpu_backend(device))
    if "TORCHELASTIC_RUN_ID" in os.environ:
        die_with_parent()
    return Processes(rank=state.process_index, world=state.num_processes, device=torch.device(state.device))
