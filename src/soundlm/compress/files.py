"""Compressing and decompressing many files: folders, a progress bar, bad files skipped and logged.

Both directions take files and folders (searched recursively). Each output keeps its
input's path relative to the folder it was found in (a file given directly lands at the top
of OUT): `compress` writes OUT/REL.slmc, `decompress` OUT/REL.wav. Every output is written
atomically. A file that cannot be processed (unreadable, wrong bit depth, NaN, written by
another model, failed CRC) is skipped with a one-line reason: logged, listed in
OUT/errors.jsonl and in the returned summary; the others go on.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from soundlm.compress.container import SUFFIX, Header, read_container, write_container

log = logging.getLogger(__name__)


class FileCodec(Protocol):
    """What a mode provides: `compress` a file, `decode` a batch of files, `crc` and `write` the result."""

    mode: str
    hash: bytes

    def compress(self, path: str | Path) -> tuple[Header, list[bytes]]: ...

    def decode(self, items: list[tuple[Header, list[bytes]]]) -> list: ...

    def crc(self, header: Header, content) -> int: ...

    def write(self, path: Path, header: Header, content) -> None: ...


@dataclass
class FileOutcome:
    source: Path
    target: Path | None = None
    error: str | None = None
    in_bytes: int = 0
    out_bytes: int = 0


@dataclass
class BatchSummary:
    done: list[FileOutcome] = field(default_factory=list)
    failed: list[FileOutcome] = field(default_factory=list)

    def line(self, verb: str) -> str:
        size_in = sum(o.in_bytes for o in self.done)
        size_out = sum(o.out_bytes for o in self.done)
        ratio = f", {size_out:,} / {size_in:,} bytes ({size_out / size_in:.3f})" if size_in else ""
        skipped = f"; {len(self.failed)} skipped (see errors.jsonl)" if self.failed else ""
        return f"{verb} {len(self.done)} files{ratio}{skipped}"


def expand(inputs: list[str | Path], suffixes: tuple[str, ...]) -> list[tuple[Path, Path]]:
    """(file, path relative to the output folder) for every input file and every matching file under input folders."""
    out = []
    for item in map(Path, inputs):
        if item.is_dir():
            out += [(p, p.relative_to(item)) for p in sorted(item.rglob("*"))
                    if p.is_file() and p.suffix.lower() in suffixes]
        elif item.exists():
            out.append((item, Path(item.name)))
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return out


def _record(summary: BatchSummary, outcome: FileOutcome, error: Exception | None = None) -> None:
    if error is None:
        summary.done.append(outcome)
        return
    outcome.error = str(error).splitlines()[0] if str(error) else type(error).__name__
    log.warning("skipping %s", outcome.error)
    summary.failed.append(outcome)


def _write_errors(out_dir: Path, summary: BatchSummary) -> None:
    from soundlm.fileio import write_text_atomic

    if summary.failed or (out_dir / "errors.jsonl").exists():
        write_text_atomic(out_dir / "errors.jsonl", "".join(json.dumps({"path": str(o.source), "reason": o.error})
                                                            + "\n" for o in summary.failed))


def compress_files(inputs: list[str | Path], out_dir: str | Path, codec: FileCodec,
                   progress: bool = True) -> BatchSummary:
    """Compress every audio file named or found under `inputs` into OUT/REL.slmc."""
    from tqdm.auto import tqdm

    from soundlm.audio import AUDIO_EXTENSIONS

    out_dir = Path(out_dir)
    summary, seen = BatchSummary(), set()
    for source, rel in tqdm(expand(inputs, AUDIO_EXTENSIONS), desc="compress", unit="file", disable=not progress):
        target = out_dir / rel.with_suffix(SUFFIX)
        outcome = FileOutcome(source, target, in_bytes=source.stat().st_size)
        try:
            if target in seen:
                raise ValueError(f"{source}: another input also maps to {target}; compress it into another --out")
            seen.add(target)
            header, streams = codec.compress(source)
            write_container(target, header, streams)
            outcome.out_bytes = target.stat().st_size
        except (ValueError, FileNotFoundError) as e:  # AudioError is a ValueError
            _record(summary, outcome, e)
            continue
        _record(summary, outcome)
    _write_errors(out_dir, summary)
    return summary


def decompress_files(inputs: list[str | Path], out_dir: str | Path, codec: FileCodec, progress: bool = True,
                     files_per_batch: int = 16) -> BatchSummary:
    """Decompress `.slmc` files named or found under `inputs` into OUT/REL.wav.

    Up to `files_per_batch` files are decoded together (lossless mode runs their segments in
    lockstep); the result does not depend on how files are grouped.
    """
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    summary = BatchSummary()
    pending: list[tuple[FileOutcome, Header, list[bytes]]] = []
    for source, rel in expand(inputs, (SUFFIX,)):
        outcome = FileOutcome(source, out_dir / rel.with_suffix(".wav"), in_bytes=source.stat().st_size)
        try:
            header, streams = read_container(source)
            check_model(source, header, codec)
        except (ValueError, FileNotFoundError) as e:
            _record(summary, outcome, e)
            continue
        pending.append((outcome, header, streams))
    bar = tqdm(total=len(pending), desc="decompress", unit="file", disable=not progress)
    for lo in range(0, len(pending), max(files_per_batch, 1)):
        group = pending[lo: lo + files_per_batch]
        for (outcome, header, _), content in zip(group, _decode_group(codec, group)):
            try:
                if isinstance(content, Exception):
                    raise content
                if codec.crc(header, content) != header.crc32:
                    raise ValueError(f"{outcome.source}: CRC mismatch after decoding, the stream is damaged; "
                                     "nothing was written, compress the original again")
                codec.write(outcome.target, header, content)
                outcome.out_bytes = outcome.target.stat().st_size
            except (ValueError, FileNotFoundError) as e:
                _record(summary, outcome, e)
            else:
                _record(summary, outcome)
            bar.update(1)
    bar.close()
    _write_errors(out_dir, summary)
    return summary


def open_codec(mode: str, model: str | Path | None = None) -> FileCodec:
    """The codec of a mode: lossless needs a `soundlm train compressor` model; tokens defaults to the shipped bundle."""
    if mode == "lossless":
        from soundlm.compress.lossless import LosslessCodec
        from soundlm.compress.sample_model import SampleModel

        if model is None:
            raise ValueError("lossless mode needs --model: a folder written by `soundlm train compressor`")
        return LosslessCodec(SampleModel.load(model))
    if mode == "tokens":
        from soundlm.compress.tokens import TokenCodec

        return TokenCodec.load(model)
    raise ValueError(f"--mode must be 'lossless' or 'tokens', got {mode!r}")


def first_mode(inputs: list[str | Path]) -> str:
    """The mode of the first `.slmc` file among `inputs` (what `decompress` uses without --mode)."""
    files = expand(inputs, (SUFFIX,))
    if not files:
        raise FileNotFoundError(f"no {SUFFIX} files in {', '.join(map(str, inputs))}; pass files written by "
                                "`soundlm compress`")
    return read_container(files[0][0])[0].mode


def check_model(path: Path, header: Header, codec: FileCodec) -> None:
    """Refuse a file written in another mode or by another model than `codec`'s."""
    if header.mode != codec.mode:
        raise ValueError(f"{path}: written in {header.mode} mode, but a {codec.mode} model was given; pass "
                         f"--model with the {header.mode} model that compressed it")
    if header.model_hash != codec.hash:
        raise ValueError(f"{path}: compressed by model {header.model_hash.hex()[:12]}, but the given model is "
                         f"{codec.hash.hex()[:12]}; pass --model with the model that compressed it")


def _decode_group(codec: FileCodec, group: list[tuple[FileOutcome, Header, list[bytes]]]) -> list:
    """Decode files together; if that fails, one by one, so one damaged file cannot sink the others."""
    try:
        return codec.decode([(h, s) for _, h, s in group])
    except (ValueError, OverflowError, IndexError) as e:
        if len(group) == 1:
            return [ValueError(f"{group[0][0].source}: the stream does not decode ({e}); the file is damaged, "
                               "compress the original again")]
        return [r for item in group for r in _decode_group(codec, [item])]


__all__ = ["BatchSummary", "FileCodec", "FileOutcome", "check_model", "compress_files", "decompress_files", "expand",
           "first_mode", "open_codec"]
