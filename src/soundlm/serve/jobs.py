"""The job queue of `soundlm serve`: bounded, batching compatible requests, cancellable.

Worker threads (`workers` of them) take the oldest queued job and every later queued job
with the same `batch_key` (up to `max_batch` samples in all) and hand them to the runner as
one batch: one generation call draws the samples of all of them. A job without a key runs
alone. Submitting while `queue_size` jobs wait raises `QueueFull` (the API's 503), so a
burst of requests costs a bounded amount of memory.

Cancelling a queued job removes it at once; a running one is marked, and its batch stops at
the next decoding step once every job in it is cancelled (`progress.Cancelled`). A job that
nobody watches (no open event stream) and nobody polled for `abandon_seconds` is cancelled
the same way. Failed and cancelled jobs leave nothing on disk (their folders are removed);
finished ones keep their files until `keep_jobs` newer jobs have finished.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from soundlm.serve.progress import Cancelled, StepMonitor
from soundlm.serve.schema import JobResult, JobStatus

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


@dataclass
class Job:
    """One request: its settings, what the runner needs, and its state as the API reports it."""

    id: str
    task: str
    settings: dict  # the validated request (shown with the result)
    folder: Path  # the job's own folder: its upload and its results, nothing else
    payload: Any  # what the runner needs (the decoded prompt, paths)
    samples: int = 1  # outputs it adds to a generation batch
    batch_key: Hashable | None = None  # jobs with equal keys may share a batch; None: always alone
    expected_steps: int = 0  # decoding steps it takes, roughly: 100 % of the progress bar
    state: str = QUEUED
    stage: str = "waiting"
    steps: int = 0
    error: str | None = None
    result: JobResult | None = None
    batch_size: int = 1
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    last_seen: float = field(default_factory=time.monotonic)
    watchers: int = 0  # open event streams

    @property
    def done(self) -> bool:
        return self.state in FINISHED

    @property
    def progress(self) -> float:
        if self.state == DONE:
            return 1.0
        if self.expected_steps <= 0:
            return 0.0
        return min(0.99, self.steps / self.expected_steps)

    def status(self, position: int | None = None) -> JobStatus:
        running = None
        if self.started is not None:
            running = round((self.finished or time.time()) - self.started, 3)
        return JobStatus(id=self.id, task=self.task, state=self.state, stage=self.stage,
                         progress=round(self.progress, 4), position=position, error=self.error,
                         result=self.result, batch_size=self.batch_size, created=self.created,
                         seconds_running=running)


class QueueFull(Exception):
    """Too many jobs wait; `retry_after` is a guess (seconds) of when a slot frees."""

    def __init__(self, waiting: int, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"the server is busy: {waiting} jobs are waiting (--queue-size); retry in about "
                         f"{retry_after} s")


class Batch:
    """The jobs of one generation call; the runner reports stages and the step hooks count steps here."""

    def __init__(self, jobs: list[Job]):
        self.jobs = jobs

    def check(self) -> None:
        """Stop the work (raise Cancelled) when no job of the batch wants its result any more."""
        if all(j.state == CANCELLED for j in self.jobs):
            raise Cancelled()

    def stage(self, name: str) -> None:
        self.check()
        for job in self.jobs:
            job.stage = name

    def step(self, name: str) -> None:
        self.check()
        for job in self.jobs:
            job.stage = name
            job.steps += 1


Runner = Callable[[Batch], list[JobResult]]  # one result per job of the batch, in order


class JobQueue:
    """See the module doc. `runner(batch)` does the work; `monitor` counts its decoding steps."""

    def __init__(self, runner: Runner, monitor: StepMonitor | None = None, workers: int = 1, queue_size: int = 16,
                 max_batch: int = 4, keep_jobs: int = 64, abandon_seconds: float = 60.0,
                 documented_errors: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError)):
        self.runner = runner
        self.monitor = monitor or StepMonitor()
        self.queue_size, self.max_batch, self.keep_jobs = queue_size, max_batch, keep_jobs
        self.abandon_seconds = abandon_seconds
        self.documented_errors = documented_errors
        self.jobs: dict[str, Job] = {}
        self._pending: deque[Job] = deque()
        self._finished: deque[str] = deque()
        self._durations: deque[float] = deque(maxlen=20)  # seconds per batch, for Retry-After
        self._cond = threading.Condition()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"soundlm-serve-worker-{i}", daemon=True)
                         for i in range(workers)]
        self._threads.append(threading.Thread(target=self._reap, name="soundlm-serve-reaper", daemon=True))
        for t in self._threads:
            t.start()

    # ---- the API's side ------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the job queue is closed")
            if len(self._pending) >= self.queue_size:
                raise QueueFull(len(self._pending), self.retry_after())
            self.jobs[job.id] = job
            self._pending.append(job)
            self._cond.notify_all()

    def get(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is not None:
            job.last_seen = time.monotonic()
        return job

    def position(self, job: Job) -> int | None:
        with self._cond:
            return self._pending.index(job) if job.state == QUEUED and job in self._pending else None

    def cancel(self, job: Job, reason: str = "cancelled") -> None:
        with self._cond:
            if job.done:
                return
            log.info("job %s: %s", job.id, reason)
            was_queued = job.state == QUEUED
            job.state, job.stage, job.error = CANCELLED, reason, None
            if was_queued:
                self._pending.remove(job)
                self._finish(job)
            # A running job's batch notices at its next step (Batch.check); the worker cleans up.

    def waiting(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        """Cancel everything and stop the workers (a running batch stops at its next step)."""
        with self._cond:
            self._closed = True
            for job in list(self.jobs.values()):
                if not job.done:
                    job.state, job.stage = CANCELLED, "server stopped"
            while self._pending:
                self._finish(self._pending.popleft())
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=30)

    # ---- workers -------------------------------------------------------------------------
    def _take(self) -> list[Job] | None:
        """The next batch: the oldest job and the later ones that share its key (None: closing)."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            first = self._pending.popleft()
            batch, total = [first], first.samples
            if first.batch_key is not None:
                for job in list(self._pending):
                    if job.batch_key == first.batch_key and total + job.samples <= self.max_batch:
                        self._pending.remove(job)
                        batch.append(job)
                        total += job.samples
            now = time.time()
            for job in batch:
                job.state, job.stage, job.started, job.batch_size = RUNNING, "starting", now, len(batch)
            return batch

    def _work(self) -> None:
        while (jobs := self._take()) is not None:
            started = time.monotonic()
            batch = Batch(jobs)
            try:
                with self.monitor.watching(batch.step):
                    results = self.runner(batch)
            except Cancelled:
                results, error = None, None
            except self.documented_errors as e:  # bad input found while working: its one-line reason
                results, error = None, str(e).splitlines()[0] if str(e) else type(e).__name__
            except Exception as e:  # a bug: keep the traceback in the log, tell the client what broke
                log.exception("job batch %s failed", [j.id for j in jobs])
                results, error = None, f"internal error ({type(e).__name__}: {e})"
            self._durations.append(time.monotonic() - started)
            with self._cond:
                for i, job in enumerate(jobs):
                    if job.state == CANCELLED:
                        pass
                    elif results is not None:
                        job.state, job.stage, job.result = DONE, "done", results[i]
                    else:
                        job.state, job.stage, job.error = FAILED, "failed", error or "cancelled"
                    self._finish(job)

    def _finish(self, job: Job) -> None:
        """Record the end of a job (lock held); failed and cancelled ones leave nothing on disk."""
        job.finished = time.time()
        if job.state != DONE:
            job.result = None
            shutil.rmtree(job.folder, ignore_errors=True)
        self._finished.append(job.id)
        while len(self._finished) > self.keep_jobs:
            old = self.jobs.pop(self._finished.popleft(), None)
            if old is not None:
                shutil.rmtree(old.folder, ignore_errors=True)

    def retry_after(self) -> int:
        """Seconds until a slot likely frees: the mean batch time so far times the batches ahead."""
        per_batch = sum(self._durations) / len(self._durations) if self._durations else 5.0
        workers = max(len(self._threads) - 1, 1)
        return max(1, math.ceil(per_batch * (len(self._pending) / workers)))

    def _reap(self) -> None:
        """Cancel jobs nobody watches or polls any more (their client went away)."""
        while True:
            with self._cond:
                if self._closed:
                    return
                self._cond.wait(timeout=min(1.0, self.abandon_seconds / 4))
                now = time.monotonic()
                stale = [j for j in self.jobs.values()
                         if not j.done and j.watchers == 0 and now - j.last_seen > self.abandon_seconds]
            for job in stale:
                self.cancel(job, f"abandoned: no client watched or polled it for {self.abandon_seconds:g} s")
