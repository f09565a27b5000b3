"""Cutting a long recording into chunks a tokenizer takes: at silences where there are any,
else at fixed lengths with overlapping context that is trimmed off again.

`soundlm tokenize` stores a file longer than `--max-seconds` as chunks `ID#0, ID#1, ...`
(with their offset in the file and the parent id), so an audiobook of 30 minutes becomes
fifteen-odd records instead of being skipped. How a chunk's end is chosen, for a chunk
length L:

- the cut falls in the second half of the chunk, `[start + L/2, start + L]` (and leaves
  at least L/4 for the last chunk);
- the detector marks silent frames there (`energy`: frame level below
  min(loud level - 25 dB, floor + 10 dB), the loud level being the 95th and the floor the
  10th percentile of the file's frame levels; `silero`: no speech in the Silero VAD's
  segments); the cut goes in the middle of the longest silent run of at least 0.1 s;
- with no such silence, the chunk ends at the latest allowed point (a "window" cut) and
  both chunks on either side of it are tokenized with `overlap` seconds of extra context
  across it, whose tokens are trimmed off, so frames next to the cut saw the audio around
  them as in the whole file.

Cuts and context edges lie on a grid whose step is a whole number of frames of every
token stream (`token_grid`), so a chunk's frames are exactly the whole file's frames from
its offset on, and trimming is by whole frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np

CHUNKERS = ("auto", "energy", "silero", "fixed")
MIN_SILENCE_SECONDS = 0.1
_SILERO_RATE = 16_000
_silero_model = None


@dataclass(frozen=True)
class ChunkSpan:
    """One chunk of a recording, in samples at the recording's own rate."""

    index: int  # k of the id `ID#k`
    start: int  # the chunk's own samples: [start, end)
    end: int
    context_start: int  # what is tokenized: [context_start, context_end), the span plus overlap context
    context_end: int
    cut: str  # how the chunk ends: "silence", "window" or "end" (the end of the recording)

    def frames(self, sample_rate: int, frame_rate: float, available: int) -> tuple[int, int]:
        """The [first, last) frames of the tokenized context that belong to the span itself.

        `available`: how many frames the tokenizer gave for the context (a last partial
        frame may be missing or extra: the span of the last chunk takes what there is).
        """
        first = round((self.start - self.context_start) * frame_rate / sample_rate)
        if self.context_end == self.end and self.cut == "end":
            return first, available
        last = round((self.end - self.context_start) * frame_rate / sample_rate)
        return first, min(last, available)


def token_grid(frame_rates: Sequence[float]) -> float:
    """The shortest step (seconds) that is a whole number of frames of every stream: lcm of the periods."""
    periods = [Fraction(1) / Fraction(rate).limit_denominator(1000) for rate in frame_rates if rate > 0]
    if not periods:
        raise ValueError("token_grid needs at least one positive frame rate")
    num = math.lcm(*(p.numerator for p in periods))
    den = math.gcd(*(p.denominator for p in periods))
    return float(Fraction(num, den))


def frame_levels_db(mono: np.ndarray, frame: int) -> np.ndarray:
    """Level (dBFS, mean square) of each whole `frame`-sample frame of [S] audio -> [S // frame]."""
    n = len(mono) // frame
    power = np.square(mono[: n * frame].astype(np.float64)).reshape(n, frame).mean(axis=1)
    return 10 * np.log10(power + 1e-12)


def energy_silence(mono: np.ndarray, sample_rate: int, frame: int) -> np.ndarray:
    """bool [S // frame]: frames quiet relative to this recording (see the module docstring)."""
    levels = frame_levels_db(mono, frame)
    if levels.size == 0:
        return np.zeros(0, dtype=bool)
    loud, floor = np.percentile(levels, 95), np.percentile(levels, 10)
    return levels < min(loud - 25.0, floor + 10.0)


def import_silero():
    """The silero_vad module, imported without its side effect: importing it calls
    `torch.set_num_threads(1)` for the whole process (silero_vad/model.py), which left every
    later step of `soundlm tokenize` and of the recipes on one thread. ImportError when absent."""
    import torch

    threads = torch.get_num_threads()
    try:
        import silero_vad
    finally:
        torch.set_num_threads(threads)
    return silero_vad


def silero_available() -> bool:
    try:
        import_silero()
    except ImportError:
        return False
    return True


def silero_silence(mono: np.ndarray, sample_rate: int, frame: int) -> np.ndarray:
    """bool [S // frame]: frames outside every speech segment of the Silero VAD (CPU, 16 kHz)."""
    import torch

    from soundlm.audio import resample

    silero = import_silero()
    global _silero_model
    if _silero_model is None:
        _silero_model = silero.load_silero_vad()
    audio16 = torch.from_numpy(resample(mono[None].astype(np.float32), sample_rate, _SILERO_RATE)[0])
    with torch.inference_mode():
        speech = silero.get_speech_timestamps(audio16, _silero_model, sampling_rate=_SILERO_RATE)
    silent = np.ones(len(mono) // frame, dtype=bool)
    for seg in speech:  # sample positions at 16 kHz -> frames at the recording's rate
        lo = int(seg["start"] * sample_rate / _SILERO_RATE) // frame
        hi = -(-int(seg["end"] * sample_rate / _SILERO_RATE) // frame)
        silent[lo:hi] = False
    return silent


def resolve_chunker(name: str) -> str:
    """`auto` -> `silero` when silero-vad is installed, else `energy`; other names are checked."""
    if name not in CHUNKERS:
        raise ValueError(f"--chunker must be one of {', '.join(CHUNKERS)}, got {name!r}")
    if name == "auto":
        return "silero" if silero_available() else "energy"
    if name == "silero" and not silero_available():
        raise ValueError("--chunker silero needs the silero-vad package: `pip install silero-vad` "
                         "(or use --chunker energy)")
    return name


def silence_detector(chunker: str) -> Callable[[np.ndarray, int, int], np.ndarray] | None:
    """The silent-frame detector of a resolved chunker name (None for `fixed`: no silence search)."""
    return {"energy": energy_silence, "silero": silero_silence, "fixed": None}[chunker]


def _longest_silent_run(silent: np.ndarray, lo: int, hi: int, min_run: int) -> int | None:
    """Middle boundary of the longest run of silent frames within frames [lo, hi), or None."""
    best, best_len, run_start = None, 0, None
    for i in range(lo, hi + 1):
        quiet = i < hi and bool(silent[i])
        if quiet and run_start is None:
            run_start = i
        elif not quiet and run_start is not None:
            # >= keeps the latest of equally long runs: chunks as long as allowed.
            if i - run_start >= max(min_run, best_len):
                best, best_len = (run_start + i) // 2, i - run_start
            run_start = None
    return best


def plan_chunks(audio: np.ndarray, sample_rate: int, chunk_seconds: float, grid_seconds: float,
                overlap_seconds: float = 1.0, chunker: str = "energy") -> list[ChunkSpan]:
    """The chunks of [C, S] (or [S]) audio longer than `chunk_seconds`; one span for shorter audio.

    `chunker` is a resolved name (`resolve_chunker`). Chunks are at most `chunk_seconds` long
    (plus `overlap_seconds` of context on each side of a window cut) and cover the
    recording without gaps or overlap.
    """
    if chunk_seconds <= 0 or grid_seconds <= 0 or overlap_seconds < 0:
        raise ValueError(f"need chunk_seconds > 0, grid_seconds > 0, overlap_seconds >= 0; got {chunk_seconds}, "
                         f"{grid_seconds}, {overlap_seconds}")
    mono = audio if audio.ndim == 1 else audio.mean(axis=0)  # [S]
    total = len(mono)
    grid = grid_seconds * sample_rate  # samples per grid step (fractional at some rates)
    # In grid steps; the epsilon keeps 3.0 / 0.02 from flooring to 149.
    length = max(int(chunk_seconds / grid_seconds + 1e-6), 4)
    if total <= length * grid:
        return [ChunkSpan(0, 0, total, 0, total, "end")]
    steps = int(total / grid + 1e-6)  # whole grid steps in the recording
    overlap = round(overlap_seconds / grid_seconds)
    detect = silence_detector(chunker)
    frame = max(int(round(grid)), 1)
    silent = detect(mono, sample_rate, frame) if detect is not None else None
    min_run = max(math.ceil(MIN_SILENCE_SECONDS / grid_seconds), 1)

    def at(step: int) -> int:
        return min(int(round(step * grid)), total)

    cuts: list[tuple[int, str]] = []  # (grid step, kind)
    pos = 0
    while steps - pos > length:
        lo, hi = pos + length // 2, min(pos + length, steps - -(-length // 4))
        cut = _longest_silent_run(silent, lo, hi, min_run) if silent is not None else None
        kind = "silence" if cut is not None else "window"
        cut = hi if cut is None else cut
        cuts.append((cut, kind))
        pos = cut
    bounds = [0] + [c for c, _ in cuts] + [None]
    kinds = [kind for _, kind in cuts] + ["end"]
    spans = []
    for k in range(len(bounds) - 1):
        start_step, end_step = bounds[k], bounds[k + 1]
        start, end = at(start_step), total if end_step is None else at(end_step)
        left = overlap if k > 0 and kinds[k - 1] == "window" else 0
        right = overlap if kinds[k] == "window" else 0
        ctx_start = at(max(start_step - left, 0))
        ctx_end = total if end_step is None else at(end_step + right)
        spans.append(ChunkSpan(k, start, end, ctx_start, ctx_end, kinds[k]))
    return spans
