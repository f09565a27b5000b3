"""Training data for the three AudioLM stages: records -> random windows -> token sequences.

Every example is a pure function of `(seed, example index)`: the sampler state of a run is
just its step count, so resuming at step k reads exactly the batches an uninterrupted run
would have read (no iterator state to pickle, and `num_workers` cannot change the order).

Example indices run in epochs of one index per record: example i crops record
`permutation(epoch)[i % n]`, so each epoch reads every record once. The processes of a
launched run read disjoint indices (`StepSampler`), so together they read each record once
per epoch, as one process would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from soundlm.stages import Example, Stage, Window, example_fn, frame_index
from soundlm.store import StoreTokens, TokenRecord

# Namespaces for the per-example random generators, so train and eval crops never coincide.
_TRAIN_STREAM = 1
_EVAL_STREAM = 2
_EPOCH_STREAM = 3  # the per-epoch record permutations, apart from the crops
_CONDITION_STREAM = 4  # condition dropout draws, apart from the crops (which stay what they were)


@dataclass
class HeldoutSplit:
    train: list[int]
    heldout: list[int]


def record_hash(record_id: str) -> float:
    """A stable number in [0, 1) from a record id (same on every machine and Python run)."""
    digest = hashlib.sha1(record_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_heldout(record_ids: Sequence[str], fraction: float) -> HeldoutSplit:
    """Deterministic held-out split by record id hash.

    The split depends on the ids only (not on the seed or the stage), so the three stages
    of one model hold out the same recordings.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"--heldout-fraction must be in [0, 1), got {fraction}")
    hashes = [record_hash(i) for i in record_ids]
    heldout = [i for i, h in enumerate(hashes) if h < fraction]
    # A tiny store may draw no held-out record; keep one if that leaves training data.
    if fraction > 0 and not heldout and len(record_ids) >= 2:
        heldout = [int(np.argmin(hashes))]
    train = [i for i in range(len(record_ids)) if i not in set(heldout)]
    if not train:
        raise ValueError(f"the held-out split ({fraction}) leaves no training records out of "
                         f"{len(record_ids)}; lower --heldout-fraction or add data")
    return HeldoutSplit(train=train, heldout=heldout)


def crop_window(record: TokenRecord, window_seconds: float, semantic_rate: float, acoustic_rate: float,
                rng: np.random.Generator) -> Window:
    """A random window of `window_seconds`, cut at the same time in both token streams.

    Records shorter than the window are returned whole (the collate pads them).
    """
    has_acoustic = record.acoustic.size > 0
    duration = record.semantic.shape[0] / semantic_rate
    if has_acoustic:
        duration = min(duration, record.acoustic.shape[1] / acoustic_rate)
    slack = max(duration - window_seconds, 0.0)
    # Start on a frame boundary of the coarser-grained stream: with the usual integer rate ratio
    # (e.g. 25 Hz semantic, 50 Hz acoustic) both crops then begin exactly at the same time.
    grid = min(acoustic_rate, semantic_rate) if has_acoustic else semantic_rate
    start_frame = int(rng.integers(0, int(slack * grid + 1e-6) + 1))
    start = start_frame / grid
    s0 = frame_index(start, semantic_rate)
    n_sem = int(round(window_seconds * semantic_rate))
    n_ac = int(round(window_seconds * acoustic_rate))
    a0 = frame_index(start, acoustic_rate)
    return Window(record_id=record.id, start_seconds=start,
                  semantic=record.semantic[s0: s0 + n_sem],
                  acoustic=record.acoustic[:, a0: a0 + n_ac], condition=record.condition)


class StageDataset(torch.utils.data.Dataset):
    """Map-style dataset: example `index` is a random crop, drawn from `(seed, index)` alone, of the
    record at its place in its epoch's permutation (each epoch of `len(records)` indices reads
    every record once).

    `build(window) -> Example` turns a crop into the stage's token sequence. `condition_dropout`:
    the fraction of crops whose condition ids become NULL (id `condition_null`), drawn per example
    (classifier-free guidance training: one model, conditional and unconditional).
    """

    def __init__(self, records: Sequence[TokenRecord], window_seconds: float, semantic_rate: float,
                 acoustic_rate: float, build: Callable[[Window], Example], seed: int,
                 stream: int = _TRAIN_STREAM, condition_dropout: float = 0.0, condition_null: int = 0):
        if not records:
            raise ValueError("no records to train on; check the token store")
        self.records = list(records)
        self.window_seconds = window_seconds
        self.semantic_rate = semantic_rate
        self.acoustic_rate = acoustic_rate
        self.build = build
        self.seed = seed
        self.stream = stream
        if not 0.0 <= condition_dropout <= 1.0:
            raise ValueError(f"--condition-dropout must be in [0, 1], got {condition_dropout}")
        self.condition_dropout = condition_dropout
        self.condition_null = condition_null
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, its permutation), the last one used

    def __len__(self) -> int:
        # Indices are unbounded in principle; the sampler decides which ones are read.
        return 2**62

    def record_index(self, index: int) -> int:
        """Which record example `index` crops: its place in the permutation of its epoch."""
        epoch, pos = divmod(index, len(self.records))
        if self._order is None or self._order[0] != epoch:
            # Batches walk the indices in order, so one cached permutation serves a whole epoch.
            self._order = (epoch, np.random.default_rng([self.seed, self.stream, _EPOCH_STREAM, epoch])
                           .permutation(len(self.records)))
        return int(self._order[1][pos])

    def window(self, index: int) -> Window:
        rng = np.random.default_rng([self.seed, self.stream, index])
        record = self.records[self.record_index(index)]
        window = crop_window(record, self.window_seconds, self.semantic_rate, self.acoustic_rate, rng)
        if window.condition is not None and self.condition_dropout > 0:
            drop = np.random.default_rng([self.seed, self.stream, _CONDITION_STREAM, index]).random()
            if drop < self.condition_dropout:
                window = replace(window, condition=np.full_like(window.condition, self.condition_null))
        return window

    def __getitem__(self, index: int) -> Example:
        return self.build(self.window(index))


class StepSampler(torch.utils.data.Sampler):
    """Example indices for optimizer steps `start_step, start_step + 1, ...`.

    Step s, micro-batch m, process r reads indices
    `((s * grad_accum + m) * world + r) * batch_size + [0, batch_size)`: every process of a
    multi-GPU run reads different examples, and the order never depends on where it resumed.
    """

    def __init__(self, start_step: int, total_steps: int, batch_size: int, grad_accum: int,
                 world_size: int = 1, rank: int = 0):
        self.start_step = start_step
        self.total_steps = total_steps
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.world_size = world_size
        self.rank = rank

    def __len__(self) -> int:
        return max(self.total_steps - self.start_step, 0) * self.grad_accum * self.batch_size

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.total_steps):
            for micro in range(self.grad_accum):
                base = ((step * self.grad_accum + micro) * self.world_size + self.rank) * self.batch_size
                yield from range(base, base + self.batch_size)


def stage_dataset(stage: Stage, tokens: StoreTokens, indices: Sequence[int], seed: int,
                  stream: int = _TRAIN_STREAM, condition_dropout: float = 0.0) -> StageDataset:
    """The crops of `tokens.records[indices]` as `stage` trains on them (a conditioned stage's condition ids
    replaced by NULL in a `condition_dropout` fraction of them)."""
    records = [tokens.records[i] for i in indices]
    if stage.delayed:
        # A delay batch cannot pad its prefix (it precedes the codes): train on full windows only.
        records = [r for r in records if min(r.semantic.shape[0] / tokens.semantic_rate,
                                             r.acoustic.shape[1] / tokens.acoustic_rate) >= stage.window_seconds]
        if not records and indices:
            raise ValueError(f"no record is at least --window-seconds {stage.window_seconds} long; the delay "
                             "pattern trains on full windows, so lower --window-seconds")
    return StageDataset(records, stage.window_seconds, tokens.semantic_rate, tokens.acoustic_rate,
                        example_fn(stage.meta, stage.layout), seed, stream,
                        condition_dropout=condition_dropout if stage.meta.conditioned else 0.0,
                        condition_null=stage.meta.condition_size)
