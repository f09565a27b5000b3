"""Shared pieces of the benchmark scripts: timing, memory bandwidth, peer imports, output.

The benchmarks run in `.bench-venv` (see `bench/setup_env.sh`), where our package is
installed editable next to the peers from PyPI. Numbers on a shared 2-core machine are
noisy: compare rows of one run, and read ratios rather than absolute values.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import statistics
import sys
import time
import traceback
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Timing:
    """Wall-clock seconds of repeated runs after warm-up."""

    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def time_runs(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
    """Run fn `warmup` times untimed (allocations, kernel selection), then `repeats` timed."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    seconds = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t)
    return Timing(seconds)


def memory_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """Copy bandwidth in bytes/s: (bytes read + bytes written) / time, best of `repeats`.

    The buffers are far larger than the caches, so this is what a batch-1 decoding step
    can get when it streams every weight once. Best (not median) because interference
    from other processes only ever slows a copy down.
    """
    import torch

    src = torch.ones(mib * 1024 * 1024 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)  # first touch: page faults are not bandwidth
    best = min(time_runs(lambda: dst.copy_(src), repeats=repeats, warmup=0).seconds)
    return 2 * src.numel() * src.element_size() / best


def weight_bytes_per_step(model) -> int:
    """Bytes of weights one decoding step reads: all parameters but embedding tables (one row
    each), plus the int8 weights and scales of soundlm's `Int8Linear` layers (buffers)."""
    import torch

    embedding_params = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    tensors = list(model.parameters())
    tensors += [b for m in model.modules() if type(m).__name__ == "Int8Linear" for b in m.buffers(recurse=False)]
    seen: set[int] = set()
    total = 0
    for p in tensors:
        if id(p) in seen or id(p) in embedding_params:
            continue
        seen.add(id(p))
        total += p.numel() * p.element_size()
    return total


def num_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


class _Unimportable(types.ModuleType):
    """Placeholder for a dependency that cannot be imported here; any use names the cause."""

    def __init__(self, name: str, reason: str):
        super().__init__(name)
        self._reason = reason

    def __getattr__(self, attr: str):
        # AttributeError (not ImportError) so that hasattr() probes, e.g. by inspect, still work.
        raise AttributeError(f"{self.__name__}.{attr}: {self.__name__} cannot be imported in this "
                             f"environment ({self._reason})")


@dataclass
class PeerImport:
    """What importing a peer took: the module, or the error that stopped it."""

    name: str
    module: types.ModuleType | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {"name": self.name, "imported": self.module is not None, "error": self.error, "notes": self.notes,
                "version": _version_of(self.name.split(".")[0].replace("_", "-"))}


def _version_of(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _short_error(e: BaseException) -> str:
    last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" (at {Path(last.filename).name}:{last.lineno})" if last else ""
    return f"{type(e).__name__}: {e}{where}"


def import_audiolm_pytorch() -> PeerImport:
    """`audiolm_pytorch.audiolm_pytorch` (SemanticTransformer, CoarseTransformer and wrappers).

    The package imports fairseq at module level (for HubertWithKmeans / FairseqVQWav2Vec,
    which load fairseq checkpoints). fairseq 0.12.2, the newest on PyPI, does not import on
    Python 3.11 (dataclass mutable defaults). The transformers we time never touch fairseq,
    so if it fails we record its error, register a placeholder that raises on any use, and
    import the model module without the package `__init__` (which also pulls in the
    trainer, wandb and data loading).
    """
    peer = PeerImport("audiolm_pytorch")
    try:
        import fairseq  # noqa: F401
    except Exception as e:  # noqa: BLE001 - any failure here is the thing we record
        reason = _short_error(e)
        if isinstance(e, ModuleNotFoundError):
            reason += ("; setup_env.sh does not install it: fairseq 0.12.2, the newest on PyPI, fails to import "
                       "on Python 3.11 (ValueError: mutable default ... for field common is not allowed)")
        peer.notes.append(f"fairseq is not importable ({reason}); a placeholder module that raises on any "
                          "use stands in for it (only the fairseq-backed HubertWithKmeans/FairseqVQWav2Vec "
                          "need it, not the transformers benchmarked)")
        sys.modules["fairseq"] = _Unimportable("fairseq", reason)
    try:
        spec = importlib.util.find_spec("audiolm_pytorch")
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError("audiolm_pytorch is not installed; run bench/setup_env.sh")
        if "audiolm_pytorch" not in sys.modules:
            package = types.ModuleType("audiolm_pytorch")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            sys.modules["audiolm_pytorch"] = package
            peer.notes.append("imported audiolm_pytorch.audiolm_pytorch without running the package __init__")
        peer.module = importlib.import_module("audiolm_pytorch.audiolm_pytorch")
    except Exception as e:  # noqa: BLE001
        peer.error = _short_error(e)
    return peer


def import_audiocraft() -> PeerImport:
    """`audiocraft.models.lm` (LMModel) and `audiocraft.modules.codebooks_patterns`."""
    peer = PeerImport("audiocraft")
    try:
        peer.module = importlib.import_module("audiocraft.models.lm")
        importlib.import_module("audiocraft.modules.codebooks_patterns")
        importlib.import_module("audiocraft.modules.conditioners")
    except Exception as e:  # noqa: BLE001
        peer.error = _short_error(e)
    return peer


def machine_info(threads: int) -> dict:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "machine": platform.machine(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "note": "shared, noisy machine: compare rows of one run and read ratios",
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for dist in ("transformers", "audiolm-pytorch", "audiocraft", "xformers", "torchaudio"):
        info[f"version_{dist}"] = _version_of(dist)
    return info


def print_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> None:
    """columns: (key, header, format spec); missing values print as '-'."""
    cells = [[h for _, h, _ in columns]]
    for r in rows:
        line = []
        for key, _, fmt in columns:
            v = r.get(key)
            line.append("-" if v is None else format(v, fmt))
        cells.append(line)
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    for n, line in enumerate(cells):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def write_results(name: str, payload: dict, out: Path | None = None) -> Path:
    from soundlm.fileio import write_json_atomic

    path = out or RESULTS_DIR / f"{name}.json"
    write_json_atomic(path, payload)
    return path


def as_dict(obj) -> dict:
    return asdict(obj)
