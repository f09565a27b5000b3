"""Faults as tests: a full disk in the middle of a write, and kill -9 of `soundlm tokenize` and
`soundlm train codec` (the kill of `train lm` is in test_train_lm.py, of a launcher in
test_distributed.py). After each, rerunning the same command finishes the job, and the result
equals an uninterrupted run's.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from soundlm.cli import app
from soundlm.fileio import DiskFullError, atomic_dir, atomic_path, write_json_atomic
from soundlm.store import TokenStore, list_parts
from test_tokenize import _corpus, models  # noqa: F401 - the module-scoped tokenizer fixture

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fail_on_call(n: int, real, partial: bool = True):
    """A writer that, on its n-th call, writes half a file and then finds the disk full."""
    calls = [0]

    def writer(obj, target, *args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            if partial and isinstance(target, (str, os.PathLike)):
                Path(target).write_bytes(b"half a file")
            raise ENOSPC
        return real(obj, target, *args, **kwargs)

    return writer


def _one_error_line(output: str) -> str:
    """The error a command printed: one `error: ...` line, the last, and no traceback."""
    lines = output.strip().splitlines()
    assert "Traceback" not in output and [line for line in lines if line.startswith("error: ")] == lines[-1:], output
    return lines[-1]


def _no_temp_files(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if p.name.startswith((".tmp-", ".old-"))]
    assert not left, left


def _same_weights(a: Path, b: Path) -> None:
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_atomic_writes_turn_a_full_disk_into_one_documented_error(tmp_path):
    with pytest.raises(DiskFullError, match=r"out\.bin: could not be written \(No space left on device\).*rerun"):
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"partial")
            raise ENOSPC
    with pytest.raises(DiskFullError, match="ckpt"):
        with atomic_dir(tmp_path / "ckpt") as tmp:
            (tmp / "weights").write_bytes(b"partial")
            # safetensors and torch's C++ writer report the OS error inside their own exception
            raise RuntimeError("Error while serializing: IoError(No space left on device (os error 28))")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing partial, no temp file or folder
    with pytest.raises(ValueError, match="not about space"):  # other errors pass through unchanged
        with atomic_path(tmp_path / "x") as tmp:
            raise ValueError("not about space")


def test_tokenize_on_a_full_disk_leaves_no_partial_part_and_resumes(tmp_path, models, monkeypatch):  # noqa: F811
    import soundlm.store as store_module

    src = _corpus(tmp_path)
    store = tmp_path / "store"
    args = ["tokenize", str(src), "--out", str(store), "--semantic", str(models[0]), "--codec", str(models[1]),
            "--workers", "0", "--device", "cpu", "--no-progress", "--part-size", "3", "--batch-size", "4"]
    monkeypatch.setattr(store_module.pq, "write_table", _fail_on_call(2, store_module.pq.write_table))
    full = CliRunner().invoke(app, args)
    assert full.exit_code == 2
    line = _one_error_line(full.output)
    assert "part-00001.parquet" in line and "No space left on device" in line and "rerun the same command" in line
    assert [p.name for p in list_parts(store)] == ["shard-00000-of-00001.part-00000.parquet"]
    _no_temp_files(store)
    monkeypatch.undo()

    resumed = CliRunner().invoke(app, args)
    assert resumed.exit_code == 0, resumed.output
    assert "resumed after 1 finished parts" in resumed.output
    straight = CliRunner().invoke(app, [*args[:3], str(tmp_path / "straight"), *args[4:]])
    assert straight.exit_code == 0, straight.output
    assert TokenStore(store).to_table().equals(TokenStore(tmp_path / "straight").to_table())


def _lm_args(store: Path, run: Path) -> list[str]:
    return ["train", "lm", str(store), "--stage", "semantic", "--out", str(run), "--steps", "12", "--batch-size", "2",
            "--window-seconds", "0.4", "--ckpt-every", "4", "--eval-every", "100", "--warmup", "2", "--no-progress"]


def _full_disk_at_a_checkpoint(args, tmp_path: Path, monkeypatch, failing_save: int, kept: list[str]) -> None:
    """Run `args(run)` with the `failing_save`-th torch.save finding the disk full: one error line, the
    checkpoints before it kept whole, nothing partial; rerun: the weights of an uninterrupted run."""
    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", _fail_on_call(failing_save, torch.save))
    full = CliRunner().invoke(app, args(run))
    assert full.exit_code == 2
    assert "could not be written (No space left on device)" in _one_error_line(full.output)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest", *kept]
    _no_temp_files(run)
    monkeypatch.undo()

    resumed = CliRunner().invoke(app, args(run))
    assert resumed.exit_code == 0, resumed.output
    straight = CliRunner().invoke(app, args(tmp_path / "straight"))
    assert straight.exit_code == 0, straight.output
    _same_weights(run / "final", tmp_path / "straight" / "final")


def test_train_lm_on_a_full_disk_keeps_the_last_checkpoint_and_resumes(tmp_path, monkeypatch):
    from test_train_lm import make_store

    store = make_store(tmp_path / "store")
    # The second torch.save is the step-8 train_state.pt.
    _full_disk_at_a_checkpoint(lambda run: _lm_args(store, run), tmp_path, monkeypatch, 2, ["step_00000004"])


def _codec_corpus(root: Path) -> Path:
    from test_train_codec import SR, harmonic

    audio = root / "audio"
    audio.mkdir()
    for i, f0 in enumerate((110, 165, 220, 275)):
        sf.write(audio / f"h{i}.wav", harmonic(0.6, f0, i), SR)
    return audio


def _codec_args(audio: Path, run: Path, steps: int = 8) -> list[str]:
    return ["train", "codec", str(audio), "--out", str(run), "--preset", "tiny", "--steps", str(steps),
            "--batch-size", "2", "--segment-seconds", "0.2", "--no-adversarial", "--ckpt-every", "2",
            "--eval-every", "4", "--sample-every", "4", "--heldout-fraction", "0.25", "--device", "cpu"]


def test_train_codec_on_a_full_disk_keeps_the_last_checkpoint_and_resumes(tmp_path, monkeypatch):
    audio = _codec_corpus(tmp_path)
    # The third torch.save is the step-6 train_state.pt.
    _full_disk_at_a_checkpoint(lambda run: _codec_args(audio, run), tmp_path, monkeypatch, 3,
                               ["step_00000002", "step_00000004"])


def _kill_when(cmd: list[str], ready, env: dict[str, str], log: Path, timeout: float = 120) -> None:
    """Start `cmd`, SIGKILL it as soon as `ready()` holds; fail if it ended first."""
    with open(log, "wb") as f:  # a file, not a pipe: no waiting on a worker's copy of it
        proc = subprocess.Popen(cmd, env=env, stdout=f, stderr=f)
        deadline = time.time() + timeout
        while not ready():
            assert proc.poll() is None, f"it ended before it could be killed: {log.read_text()[-2000:]}"
            assert time.time() < deadline, "it never got there"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from soundlm.cli import main; main()", *args]


@pytest.mark.slow  # three processes with long files to chunk: ~40 s on a busy 2-core machine
def test_sigkill_of_tokenize_then_rerun_equals_uninterrupted(tmp_path, models):  # noqa: F811
    src = _corpus(tmp_path, n=9)
    sf.write(src / "long.wav", np.tile(sf.read(next(src.rglob("utt08.wav")))[0], 12), 16000)  # chunked
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    store = tmp_path / "store"
    args = ["tokenize", str(src), "--out", str(store), "--semantic", str(models[0]), "--codec", str(models[1]),
            "--workers", "1", "--device", "cpu", "--no-progress", "--part-size", "2", "--batch-size", "2",
            "--max-seconds", "4", "--chunker", "energy"]
    _kill_when(_cli(*args), lambda: len(list_parts(store)) >= 1, env, tmp_path / "killed.log")
    assert len(list_parts(store)) < 5, "the job finished before it was killed"
    done = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "resumed after" in done.stdout, done.stdout + done.stderr
    subprocess.run(_cli(*args[:3], str(tmp_path / "straight"), *args[4:]), env=env, check=True,
                   capture_output=True, timeout=300)
    _no_temp_files(store)
    killed, straight = TokenStore(store).to_table(), TokenStore(tmp_path / "straight").to_table()
    assert killed.equals(straight) and any(p is not None for p in killed.column("parent").to_pylist())


@pytest.mark.slow  # three CLI processes: ~30 s on a busy 2-core machine
def test_sigkill_of_train_codec_then_rerun_equals_uninterrupted(tmp_path):
    audio = _codec_corpus(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "killed"
    args = _codec_args(audio, run, steps=40)
    _kill_when(_cli(*args), lambda: (run / "checkpoints" / "latest").exists(), env, tmp_path / "killed.log")
    assert not (run / "final").exists(), "the run finished before it was killed; raise --steps"
    done = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "step 40: codec exported" in done.stdout
    subprocess.run(_cli(*_codec_args(audio, tmp_path / "straight", steps=40)), env=env, check=True,
                   capture_output=True, timeout=300)
    _same_weights(run / "final", tmp_path / "straight" / "final")
    _no_temp_files(run)


def test_atomic_writes_get_the_modes_plain_writes_get(tmp_path):
    # mkstemp/mkdtemp make 0600/0700; a model folder written atomically must be as readable as one written plainly.
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "model") as tmp:
            (tmp / "w.bin").write_bytes(b"1")
            write_json_atomic(tmp / "config.json", {})
    finally:
        os.umask(old)
    modes = {name: stat.S_IMODE((tmp_path / name).stat().st_mode)
             for name in ("a.json", "model", "model/config.json", "model/w.bin")}
    assert modes == {"a.json": 0o644, "model": 0o755, "model/config.json": 0o644, "model/w.bin": 0o644}
