"""The compressed file format (`.slmc`): a fixed header, then length-prefixed code streams.

    offset  size  field
    0       4     magic b"SLMC"
    4       1     format version (FORMAT_VERSION)
    5       1     mode: 0 lossless (sample-level model), 1 tokens (codec codes + stage LMs)
    6       1     bits per sample of the PCM (16 or 8; 16 in token mode: the decoded wav's)
    7       1     reserved (0)
    8       16    model hash (first 16 bytes of the model's sha256, see `model_hash`)
    24      4     sample rate (Hz)
    28      2     channels
    30      8     length: samples per channel of the original audio
    38      4     segment: samples per independently coded segment (lossless), codec frames (tokens)
    42      4     CRC32 of the content: the PCM (lossless) or the code arrays (tokens)
    46      2     number of streams N
    48      4*N   byte length of each stream
    ..      4     CRC32 of everything above (the header itself)
    ..            the N streams, back to back

All integers are little-endian. The PCM CRC is over the samples as little-endian signed
integers interleaved by channel ([S, C], as in a wav file). A reader checks the magic, the
version and the header CRC before using any field, so a damaged header is reported as such
instead of driving the decoder with nonsense lengths.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

MAGIC = b"SLMC"
FORMAT_VERSION = 1
SUFFIX = ".slmc"
MODES = {"lossless": 0, "tokens": 1}
_FIXED = struct.Struct("<4sBBBB16sIHQIIH")


@dataclass
class Header:
    """What a decoder needs before reading the streams (see the module doc for the layout)."""

    mode: str
    bits: int
    model_hash: bytes
    sample_rate: int
    channels: int
    length: int
    segment: int
    crc32: int
    stream_sizes: list[int] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {sorted(MODES)}, got {self.mode!r}")
        if len(self.model_hash) != 16:
            raise ValueError(f"model_hash must be 16 bytes, got {len(self.model_hash)}")
        head = _FIXED.pack(MAGIC, FORMAT_VERSION, MODES[self.mode], self.bits, 0, self.model_hash, self.sample_rate,
                           self.channels, self.length, self.segment, self.crc32, len(self.stream_sizes))
        head += struct.pack(f"<{len(self.stream_sizes)}I", *self.stream_sizes)
        return head + struct.pack("<I", zlib.crc32(head))


def pcm_crc32(pcm: np.ndarray, bits: int) -> int:
    """CRC32 of PCM [C, S] as little-endian signed integers interleaved by channel."""
    dtype = {16: "<i2", 8: "i1"}[bits]
    return zlib.crc32(np.ascontiguousarray(np.asarray(pcm).T).astype(dtype).tobytes())


def model_hash(*parts: bytes) -> bytes:
    """The 16-byte id a file records for the model that wrote it: sha256 over the model's parts."""
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.digest()[:16]


def write_container(path: str | Path, header: Header, streams: list[bytes]) -> None:
    """Write header + streams atomically (a crash never leaves a half-written file)."""
    from soundlm.fileio import write_bytes_atomic

    header.stream_sizes = [len(s) for s in streams]
    write_bytes_atomic(path, header.to_bytes() + b"".join(streams))


def read_container(path: str | Path) -> tuple[Header, list[bytes]]:
    """Parse a compressed file; ValueError naming the file if it is not one or is damaged."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (pass a {SUFFIX} file written by `soundlm compress`)")
    data = path.read_bytes()
    if len(data) < _FIXED.size + 4 or data[:4] != MAGIC:
        raise ValueError(f"{path}: not a soundlm compressed file (no {MAGIC!r} magic); pass a file written by "
                         "`soundlm compress`")
    (_, version, mode, bits, _, mhash, sample_rate, channels, length, segment, crc, n) = _FIXED.unpack_from(data)
    if version != FORMAT_VERSION:
        raise ValueError(f"{path}: format version {version}, this soundlm reads version {FORMAT_VERSION}; "
                         "decompress it with the soundlm release that wrote it")
    end = _FIXED.size + 4 * n
    if len(data) < end + 4:
        raise ValueError(f"{path}: truncated header; the file is damaged, compress the original again")
    sizes = list(struct.unpack_from(f"<{n}I", data, _FIXED.size))
    (head_crc,) = struct.unpack_from("<I", data, end)
    if zlib.crc32(data[:end]) != head_crc:
        raise ValueError(f"{path}: header CRC mismatch, the file is damaged; compress the original again")
    names = {v: k for k, v in MODES.items()}
    if mode not in names:
        raise ValueError(f"{path}: unknown mode {mode}; decompress it with the soundlm release that wrote it")
    streams, pos = [], end + 4
    for size in sizes:
        streams.append(data[pos: pos + size])
        pos += size
    if pos != len(data):
        raise ValueError(f"{path}: the streams take {pos} bytes but the file has {len(data)}; the file is "
                         "truncated or damaged, compress the original again")
    header = Header(mode=names[mode], bits=bits, model_hash=mhash, sample_rate=sample_rate, channels=channels,
                    length=length, segment=segment, crc32=crc, stream_sizes=sizes)
    return header, streams
