"""Lossless mode: PCM coded sample by sample with the sample model, bit-exact on decode.

Each channel is cut into segments of `segment` samples, coded independently (their own
range-coder stream, silence before their first sample). Inside a segment, per LPC block:
the chosen order and the integer coefficients (uniform symbols), then every sample: the
table symbol of its folded residual, then its low bits or, after an escape, the residual
itself. Encoding runs the model once over a whole segment (teacher forcing: every sample
is known); decoding runs it one sample at a time, for many segments at once (of one file
or of many), which gives the same integers (see `sample_model`'s note on determinism).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundlm.compress import lpc
from soundlm.compress.coder import Decoder, Encoder, bytes_to_words, uniform, words_to_bytes
from soundlm.compress.container import Header, pcm_crc32
from soundlm.compress.sample_model import SampleModel, SampleModelConfig

DEFAULT_SEGMENT = 16384
SUBTYPE_BITS = {"PCM_16": 16, "PCM_S8": 8, "PCM_U8": 8}


def residual_history(e: np.ndarray, history: int) -> np.ndarray:
    """Residuals e [n] -> [n, history] with row t = e[t-1], e[t-2], ... (zeros before the start)."""
    padded = np.concatenate([np.zeros(history, dtype=np.int64), e])
    return np.lib.stride_tricks.sliding_window_view(padded, history)[: len(e), ::-1]


def analyse(cfg: SampleModelConfig, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """One segment [n] (int64) -> (LPC coefficients of each block, integer predictions [n])."""
    blocks, pred = [], np.zeros(len(x), dtype=np.int64)
    for start in range(0, len(x), cfg.lpc_block):
        end = min(start + cfg.lpc_block, len(x))
        coefs = lpc.fit_block(x[start:end], cfg.lpc_orders, cfg.coef_shift)
        blocks.append(coefs)
        pred[start:end] = lpc.predict(x, coefs, start, end, cfg.coef_shift)
    return blocks, pred


class _Symbols:
    """Uniform models by size, built once per coder run."""

    def __init__(self):
        self._uniform: dict[int, object] = {}

    def uniform(self, size: int):
        m = self._uniform.get(size)
        if m is None:
            m = self._uniform[size] = uniform(size)
        return m


def encode_segment(model: SampleModel, x: np.ndarray) -> bytes:
    """Code one segment of samples [n] (int64, inside the model's PCM range); returns the stream."""
    cfg = model.config
    half, H = 1 << (cfg.bits - 1), cfg.table_half
    blocks, pred = analyse(cfg, x)
    p = model.params(pred, residual_history(x - pred, cfg.history))  # one forward over the whole segment
    r = (x - p.mean + half) % (1 << cfg.bits) - half  # folded residual, in [-half, half)
    shift = model.shifts[p.level]
    h = r >> shift
    escape = (h < -H) | (h >= H)
    symbol = np.where(escape, 2 * H, h + H)
    low = r & ((1 << shift) - 1)
    sym = _Symbols()
    enc = Encoder()
    for b, coefs in enumerate(blocks):
        enc.encode(cfg.lpc_orders.index(len(coefs)), sym.uniform(len(cfg.lpc_orders)))
        enc.encode_many(coefs + lpc.COEF_LIMIT, sym.uniform(2 * lpc.COEF_LIMIT))
        for t in range(b * cfg.lpc_block, min((b + 1) * cfg.lpc_block, len(x))):
            enc.encode(symbol[t], model.coder_model(p.level[t], p.phase[t]))
            if escape[t]:
                enc.encode(r[t] + half, sym.uniform(1 << cfg.bits))
            elif shift[t]:
                enc.encode(low[t], sym.uniform(1 << int(shift[t])))
    return words_to_bytes(enc.words())


def decode_segments(model: SampleModel, streams: list[bytes], lengths: list[int]) -> list[np.ndarray]:
    """Decode several segments in lockstep (one model forward per sample step for all of them)."""
    cfg = model.config
    half, H, P, K = 1 << (cfg.bits - 1), cfg.table_half, max(cfg.lpc_orders), cfg.history
    b_count, n_max = len(streams), max(lengths, default=0)
    decoders = [Decoder(bytes_to_words(s)) for s in streams]
    x = np.zeros((b_count, P + n_max), dtype=np.int64)  # P leading zeros: silence before the segment
    e = np.zeros((b_count, K + n_max), dtype=np.int64)
    coefs = np.zeros((b_count, P), dtype=np.int64)
    lengths_arr = np.asarray(lengths)
    sym = _Symbols()
    for t in range(n_max):
        active = np.flatnonzero(lengths_arr > t)
        if t % cfg.lpc_block == 0:
            for b in active:
                order = cfg.lpc_orders[decoders[b].decode(sym.uniform(len(cfg.lpc_orders)))]
                coefs[b] = 0
                coefs[b, :order] = decoders[b].decode_many(sym.uniform(2 * lpc.COEF_LIMIT), order) - lpc.COEF_LIMIT
        pred = (x[:, t: t + P][:, ::-1] * coefs).sum(axis=1) >> cfg.coef_shift  # [B]
        p = model.params(pred, e[:, t: t + K][:, ::-1])
        shift = model.shifts[p.level]
        for b in active:
            dec = decoders[b]
            s = dec.decode(model.coder_model(p.level[b], p.phase[b]))
            if s == 2 * H:
                r = dec.decode(sym.uniform(1 << cfg.bits)) - half
            else:
                r = (s - H) << int(shift[b])
                if shift[b]:
                    r += dec.decode(sym.uniform(1 << int(shift[b])))
            x[b, P + t] = (int(p.mean[b]) + r + half) % (1 << cfg.bits) - half
        e[:, K + t] = x[:, P + t] - pred
    return [x[b, P: P + n] for b, n in enumerate(lengths)]


def segment_lengths(length: int, segment: int) -> list[int]:
    return [min(segment, length - s) for s in range(0, length, segment)]


def encode_pcm(model: SampleModel, pcm: np.ndarray, segment: int = DEFAULT_SEGMENT) -> list[bytes]:
    """PCM [C, S] integers -> one stream per (channel, segment), channel-major."""
    return [encode_segment(model, ch[s: s + n].astype(np.int64))
            for ch in pcm for s, n in zip(range(0, pcm.shape[1], segment), segment_lengths(pcm.shape[1], segment))]


@dataclass
class PcmFile:
    """A PCM file as the lossless coder sees it."""

    pcm: np.ndarray  # [C, S] int64
    sample_rate: int
    bits: int


def read_pcm(path: str | Path, bits: int) -> PcmFile:
    """Read a wav/flac file as integer PCM; AudioError naming the file if it is not `bits`-bit PCM."""
    import soundfile as sf

    from soundlm.audio import AudioError, info

    path = Path(path)
    info(path)  # raises AudioError for a missing or unreadable file
    meta = sf.info(str(path))
    if meta.subtype in ("FLOAT", "DOUBLE"):
        data, _ = sf.read(str(path), dtype="float64", always_2d=True)
        if not np.isfinite(data).all():
            raise AudioError(path, f"{int((~np.isfinite(data)).sum())} NaN/inf samples in float audio",
                             "re-export the file; lossless mode codes integer PCM")
    got = SUBTYPE_BITS.get(meta.subtype)
    if got != bits:
        what = meta.subtype_info or meta.subtype
        raise AudioError(path, f"{what} audio, but this model codes {bits}-bit PCM",
                         f"convert it (sox IN -b {bits} OUT.wav) or use a model trained with --bits {got}"
                         if got else f"convert it to {bits}-bit PCM wav/flac (sox IN -b {bits} OUT.wav)")
    data, sr = sf.read(str(path), dtype="int16", always_2d=True)  # [S, C]; 8-bit data comes scaled by 256
    pcm = data.T.astype(np.int64)
    if bits == 8:
        pcm >>= 8
    return PcmFile(pcm=pcm, sample_rate=int(sr), bits=bits)


def write_pcm(path: str | Path, pcm: np.ndarray, sample_rate: int, bits: int) -> None:
    """Write integer PCM [C, S] as a wav file, atomically."""
    import soundfile as sf

    from soundlm.fileio import atomic_path

    data = pcm.T.astype(np.int16) if bits == 16 else (pcm.T.astype(np.int16) << 8)
    with atomic_path(path, suffix=".wav") as tmp:
        sf.write(str(tmp), data, sample_rate, subtype="PCM_16" if bits == 16 else "PCM_U8", format="WAV")


class LosslessCodec:
    """The file-level coder of lossless mode: PCM file <-> header + streams."""

    mode = "lossless"

    def __init__(self, model: SampleModel, segment: int = DEFAULT_SEGMENT, batch: int = 256):
        if segment < 1 or batch < 1:
            raise ValueError(f"segment and batch must be at least 1, got {segment} and {batch}")
        self.model, self.segment, self.batch = model, segment, batch
        self.hash = model.hash

    def compress(self, path: str | Path) -> tuple[Header, list[bytes]]:
        bits = self.model.config.bits
        f = read_pcm(path, bits)
        header = Header(mode=self.mode, bits=bits, model_hash=self.hash, sample_rate=f.sample_rate,
                        channels=f.pcm.shape[0], length=f.pcm.shape[1], segment=self.segment,
                        crc32=pcm_crc32(f.pcm, bits))
        return header, encode_pcm(self.model, f.pcm, self.segment)

    def decode(self, items: list[tuple[Header, list[bytes]]]) -> list[np.ndarray]:
        """Headers + streams of several files -> their PCM [C, S]; segments of all files share the batches."""
        jobs, owners = [], []  # (stream, length) and (file index, channel, start)
        for i, (h, streams) in enumerate(items):
            lengths = segment_lengths(h.length, h.segment)
            if len(streams) != h.channels * len(lengths):
                raise ValueError(f"{h.channels} channels of {len(lengths)} segments need "
                                 f"{h.channels * len(lengths)} streams, the file has {len(streams)}")
            for k, stream in enumerate(streams):
                c, j = divmod(k, len(lengths))
                jobs.append((stream, lengths[j]))
                owners.append((i, c, j * h.segment))
        out = [np.zeros((h.channels, h.length), dtype=np.int64) for h, _ in items]
        # Similar lengths together: a batch runs as long as its longest segment.
        order = sorted(range(len(jobs)), key=lambda k: -jobs[k][1])
        for lo in range(0, len(order), self.batch):
            chunk = order[lo: lo + self.batch]
            decoded = decode_segments(self.model, [jobs[k][0] for k in chunk], [jobs[k][1] for k in chunk])
            for k, seg in zip(chunk, decoded):
                i, c, start = owners[k]
                out[i][c, start: start + len(seg)] = seg
        return out

    def crc(self, header: Header, pcm: np.ndarray) -> int:
        return pcm_crc32(pcm, header.bits)

    def write(self, path: Path, header: Header, pcm: np.ndarray) -> None:
        write_pcm(path, pcm, header.sample_rate, header.bits)
