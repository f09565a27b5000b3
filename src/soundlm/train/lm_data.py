"""Training data for the three AudioLM stages: records -> random windows -> token sequences.

Every example is a pure function of `(seed, example index)`: the sampler state of a run is
just its step count, so resuming at step k reads exactly the batches an uninterrupted run
would have read (no iterator state to pickle, and `num_workers` cannot change the order).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

STAGES = ("semantic", "coarse", "fine")

# AudioLM (Borsos et al. 2022, sec. 4) trained on 30 s / 10 s / 3 s windows per stage.
AUDIOLM_WINDOW_SECONDS = {"semantic": 30.0, "coarse": 10.0, "fine": 3.0}

IGNORE_INDEX = -100

# Namespaces for the per-example random generators, so train and eval crops never coincide.
_TRAIN_STREAM = 1
_EVAL_STREAM = 2


@dataclass
class TokenArrays:
    """One record's tokens, kept in memory for cropping."""

    id: str
    semantic: np.ndarray  # [T_s] int64
    acoustic: np.ndarray  # [K, T_a] int64


@dataclass
class Window:
    """Time-aligned semantic and acoustic tokens of one crop."""

    record_id: str
    start_seconds: float
    semantic: np.ndarray  # [T_s] int64
    acoustic: np.ndarray  # [K, T_a] int64


@dataclass
class Example:
    """A training example: predict `targets[..., i]` from `inputs[..., :i+1]` (and `prefix`).

    Flattened stages: inputs/targets [L]. Delay-pattern stages: inputs/targets [K, S] delayed
    codes and a conditioning prefix [P] (see `soundlm.lm.model.DelayLM`).
    """

    inputs: np.ndarray  # [L] or [K, S] int64
    targets: np.ndarray  # same shape, IGNORE_INDEX where the stage does not train
    prefix: np.ndarray | None = None  # [P] int64


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


def frame_index(seconds: float, rate: float) -> int:
    """The frame that contains time `seconds` (tolerant to float error at exact boundaries)."""
    return int(math.floor(seconds * rate + 1e-6))


def crop_window(record: TokenArrays, window_seconds: float, semantic_rate: float, acoustic_rate: float,
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
                  acoustic=record.acoustic[:, a0: a0 + n_ac])


class StageDataset(torch.utils.data.Dataset):
    """Map-style dataset: example `index` is a random crop drawn from `(seed, index)` alone.

    `build(window) -> Example` turns a crop into the stage's token sequence.
    """

    def __init__(self, records: Sequence[TokenArrays], window_seconds: float, semantic_rate: float,
                 acoustic_rate: float, build: Callable[[Window], Example], seed: int,
                 stream: int = _TRAIN_STREAM):
        if not records:
            raise ValueError("no records to train on; check the token store")
        self.records = list(records)
        self.window_seconds = window_seconds
        self.semantic_rate = semantic_rate
        self.acoustic_rate = acoustic_rate
        self.build = build
        self.seed = seed
        self.stream = stream

    def __len__(self) -> int:
        # Indices are unbounded in principle; the sampler decides which ones are read.
        return 2**62

    def window(self, index: int) -> Window:
        rng = np.random.default_rng([self.seed, self.stream, index])
        record = self.records[int(rng.integers(0, len(self.records)))]
        return crop_window(record, self.window_seconds, self.semantic_rate, self.acoustic_rate, rng)

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


def collate(examples: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch; padded positions have no target, so causal attention needs no mask."""
    if examples[0].prefix is not None:
        return _collate_delayed(examples)
    length = max(e.inputs.shape[0] for e in examples)
    inputs = torch.full((len(examples), length), pad_id, dtype=torch.long)  # [B, L]
    targets = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)  # [B, L]
    for b, e in enumerate(examples):
        inputs[b, : e.inputs.shape[0]] = torch.from_numpy(e.inputs)
        targets[b, : e.targets.shape[0]] = torch.from_numpy(e.targets)
    return {"input_ids": inputs, "targets": targets}


def _collate_delayed(examples: Sequence[Example]) -> dict[str, torch.Tensor]:
    """Stack delay-pattern examples, cut to the shortest prefix and sequence of the batch.

    The prefix sits before the codes, so it cannot be padded; crops of full windows (the
    delay stages only train on records at least a window long) have equal lengths anyway.
    """
    p = min(e.prefix.shape[0] for e in examples)
    s = min(e.inputs.shape[1] for e in examples)
    return {"input_ids": torch.stack([torch.from_numpy(e.inputs[:, :s]) for e in examples]),  # [B, K, S]
            "targets": torch.stack([torch.from_numpy(e.targets[:, :s]) for e in examples]),  # [B, K, S]
            "prefix": torch.stack([torch.from_numpy(e.prefix[:p]) for e in examples])}  # [B, P]


def sequence_to_example(tokens: np.ndarray, trained: np.ndarray) -> Example:
    """Shift a full sequence into (inputs, targets); `trained[i]` says whether token i is a target."""
    if tokens.shape[0] < 2:
        raise ValueError("a training sequence needs at least 2 tokens; the window is too short")
    targets = np.where(trained[1:], tokens[1:], IGNORE_INDEX).astype(np.int64)
    return Example(inputs=tokens[:-1].astype(np.int64), targets=targets)
