"""soundlm.serve.jobs and .progress without a server: batching rules, queue bound, cancel, step hooks per thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import torch

from soundlm.serve.jobs import Batch, Job, JobQueue, QueueFull
from soundlm.serve.progress import Cancelled, StepMonitor
from soundlm.serve.schema import JobResult


def job(tmp_path: Path, name: str, key=None, samples: int = 1) -> Job:
    folder = tmp_path / name
    folder.mkdir()
    return Job(id=name, task="generate", settings={}, folder=folder, payload=None, samples=samples, batch_key=key)


class Recorder:
    """A runner that waits at a gate before its first batch and records every batch it gets."""

    def __init__(self):
        self.gate = threading.Event()
        self.batches: list[list[str]] = []

    def __call__(self, batch: Batch) -> list[JobResult]:
        self.gate.wait(10)
        self.batches.append([j.id for j in batch.jobs])
        return [JobResult(settings={"batch": len(batch.jobs)}) for _ in batch.jobs]


def wait_done(queue: JobQueue, *ids: str) -> None:
    deadline = time.monotonic() + 10
    while not all(queue.jobs[i].done for i in ids):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_batches_take_equal_keys_in_order_up_to_max_batch_samples(tmp_path):
    runner = Recorder()
    queue = JobQueue(runner, max_batch=4, queue_size=10)
    try:
        first = job(tmp_path, "first")
        queue.submit(first)
        while first.state != "running":
            time.sleep(0.01)
        jobs = [job(tmp_path, "a1", "a", 2), job(tmp_path, "b1", "b"), job(tmp_path, "a2", "a", 1),
                job(tmp_path, "a3", "a", 2), job(tmp_path, "a4", "a", 1), job(tmp_path, "solo1"),
                job(tmp_path, "solo2")]
        for j in jobs:
            queue.submit(j)
        runner.gate.set()
        wait_done(queue, *(j.id for j in jobs))
    finally:
        queue.close()
    # a1 (2) + a2 (1) + a4 (1) fill 4 samples; a3 (2) would not fit; jobs without a key never share.
    assert runner.batches == [["first"], ["a1", "a2", "a4"], ["b1"], ["a3"], ["solo1"], ["solo2"]]
    assert queue.jobs["a2"].batch_size == 3 and queue.jobs["a2"].state == "done"


def test_a_full_queue_refuses_and_a_cancelled_job_leaves_no_folder(tmp_path):
    runner = Recorder()
    queue = JobQueue(runner, queue_size=2)
    try:
        running, waiting, other = job(tmp_path, "r"), job(tmp_path, "w"), job(tmp_path, "o")
        queue.submit(running)
        while running.state != "running":
            time.sleep(0.01)
        queue.submit(waiting)
        queue.submit(other)
        with pytest.raises(QueueFull) as e:
            queue.submit(job(tmp_path, "x"))
        assert e.value.retry_after >= 1
        queue.cancel(waiting)
        assert waiting.state == "cancelled" and not waiting.folder.exists() and queue.position(other) == 0
        runner.gate.set()
        wait_done(queue, "r", "o")
        assert running.folder.exists() and running.result is not None
    finally:
        queue.close()


def test_a_failing_batch_fails_its_jobs_with_the_one_line_reason(tmp_path):
    def runner(batch: Batch) -> list[JobResult]:
        raise ValueError("x.wav: silent audio (peak below -70 dBFS) (remove the file)\nmore detail")

    queue = JobQueue(runner)
    try:
        failed = job(tmp_path, "f")
        queue.submit(failed)
        wait_done(queue, "f")
    finally:
        queue.close()
    assert failed.state == "failed" and failed.error == "x.wav: silent audio (peak below -70 dBFS) (remove the file)"
    assert not failed.folder.exists()


def test_step_hooks_count_only_the_watching_thread_and_cancel_inside_a_forward(tmp_path):
    from soundlm.lm.model import TokenLM, lm_tiny

    model = TokenLM.from_config(lm_tiny(32, max_positions=16)).eval()
    monitor = StepMonitor()
    monitor.attach("semantic", model)
    seen: list[str] = []
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with monitor.watching(seen.append):
        model(tokens)
        other = threading.Thread(target=lambda: model(tokens))  # another thread's steps are not ours
        other.start()
        other.join()
    model(tokens)  # outside the block: not counted
    assert seen == ["semantic"]

    cancelled = job(tmp_path, "c")
    cancelled.state = "cancelled"
    with monitor.watching(Batch([cancelled]).step), pytest.raises(Cancelled):
        model(tokens)
    monitor.detach()
    with monitor.watching(seen.append):
        model(tokens)
    assert seen == ["semantic"]
