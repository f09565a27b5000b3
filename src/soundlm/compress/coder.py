"""Entropy coding: constriction's range coder fed with integer frequency tables.

The coder itself is `constriction.stream.queue` (a maintained Rust range coder, first in
first out: symbols come out of the decoder in the order they went in). What this module
adds is the one rule both directions share for turning a model's output into the integer
frequencies the coder works with:

- `categorical(freqs)` builds a constriction model from an integer frequency table. The
  table is handed over as float64 numbers that hold integers exactly, and constriction
  quantises it with its fast rule (`perfect=False`): a fixed sequence of IEEE additions,
  multiplications and floors with no transcendental function, so one table gives the same
  coder frequencies on any machine. Every symbol keeps a nonzero frequency.
- `softmax_freqs(logits)` is the rule for an LM's logits: float64 softmax, scaled to
  `FREQ_TOTAL`, floored, plus one. The caller must hand it bit-identical logits on both
  sides (see `soundlm.compress.tokens` for how token mode ensures that).

Compressed streams are arrays of little-endian uint32 words; `words_to_bytes` and
`bytes_to_words` move them in and out of a container file.
"""

from __future__ import annotations

import numpy as np

# Frequencies of one table sum to at most this (constriction's range coder has 24-bit precision).
FREQ_TOTAL = 1 << 24


def _model():
    import constriction

    return constriction.stream.model


def categorical(freqs: np.ndarray):
    """A constriction model over symbols 0..len(freqs)-1 from integer frequencies (all >= 1)."""
    freqs = np.asarray(freqs)
    if freqs.ndim != 1 or freqs.size < 2:
        raise ValueError(f"a frequency table needs at least 2 entries, got shape {freqs.shape}")
    if np.any(freqs < 1):
        raise ValueError("every frequency must be >= 1, or that symbol could never be coded")
    return _model().Categorical(freqs.astype(np.float64), perfect=False)


def uniform(size: int):
    """A constriction model giving each of `size` symbols the same frequency (2 <= size < 2**24)."""
    return _model().Uniform(size)


def softmax_freqs(logits: np.ndarray) -> np.ndarray:
    """Integer frequencies from logits [V] (float64 softmax; floor(p * (total - V)) + 1)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max()
    p = np.exp(z)
    p /= p.sum()
    return np.floor(p * (FREQ_TOTAL - z.size)).astype(np.int64) + 1


class Encoder:
    """Append symbols, each with its model; `words()` returns the compressed stream."""

    def __init__(self):
        import constriction

        self._coder = constriction.stream.queue.RangeEncoder()

    def encode(self, symbol: int, model) -> None:
        self._coder.encode(int(symbol), model)

    def encode_many(self, symbols: np.ndarray, model) -> None:
        """Several symbols under one model (faster than a loop)."""
        if len(symbols):
            self._coder.encode(np.ascontiguousarray(symbols, dtype=np.int32), model)

    def words(self) -> np.ndarray:
        return self._coder.get_compressed()


class Decoder:
    """Read symbols back in the order they were encoded, each with the same model."""

    def __init__(self, words: np.ndarray):
        import constriction

        self._coder = constriction.stream.queue.RangeDecoder(np.ascontiguousarray(words, dtype=np.uint32))

    def decode(self, model) -> int:
        return int(self._coder.decode(model))

    def decode_many(self, model, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(self._coder.decode(model, count), dtype=np.int64)


def words_to_bytes(words: np.ndarray) -> bytes:
    return np.asarray(words, dtype="<u4").tobytes()


def bytes_to_words(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise ValueError(f"a compressed stream is whole 32-bit words; got {len(data)} bytes (the file is truncated)")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)
