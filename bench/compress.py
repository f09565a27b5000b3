"""Compression ratio and speed: soundlm's LM compressors against flac, xz, zstd and gzip.

Rows (ratio = compressed bytes / raw PCM bytes; speed = audio seconds per wall second):

- lossless 16-bit, per corpus: `soundlm compress` (sample model, whole .slmc files) against
  `flac -8` (its defaults, which add 8 KiB of padding per file), `flac -8 --no-padding
  --no-seektable`, and `xz -9`, `zstd -19`, `gzip -9` on the raw little-endian PCM.
  Every soundlm file is decompressed and checked sample for sample.
- 8-bit (the setting of Deletang et al., "Language Modeling Is Compression", whose table
  has Chinchilla 70B at 16.4% of raw size on LibriSpeech and FLAC at 30.3%): the same
  held-out speech reduced to its top byte, coded by a model trained with `--bits 8`.
  Different audio than the paper's (synthetic speech, not LibriSpeech), so compare the
  ordering of the rows, not the numbers with the paper's.
- tokens: the codec's codes and semantic ids coded by the bundle's stage LMs, in kbps,
  against their raw size (log2(codebook size) bits per code) and against xz/zstd/gzip on
  the same tokens as int16 arrays.

    python bench/compress.py --speech CORPUS --piano CORPUS --model RUN16 --model-8bit RUN8
    python bench/compress.py --speech CORPUS --bundle BUNDLE --tokens-only   # token rows of one bundle

Token mode codes any bundle soundlm makes (flattened or delay-pattern stages, with or without
fine/); the token row gives bits per token per stage (semantic, coarse/fine or, one-stage,
acoustic) and per codec code over all acoustic stages.

The speech corpus's held-out rows (voices no training file uses) are measured; the piano
corpus's rows all are (the speech-trained model never saw piano). Writes a table and
bench/results/compress.json. Needs the `flac` command (apt-get install flac).
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/tokenize.py shares its name with the stdlib `tokenize` (imported by inspect,
# linecache, torch): move this folder to the end of sys.path so `import tokenize` still
# finds the stdlib, while `import common` (no stdlib namesake) finds ours.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import common  # noqa: E402

GENERAL = {"xz -9": (["xz", "-9", "-c"], ["xz", "-d", "-c"]),
           "zstd -19": (["zstd", "-19", "-q", "-c"], ["zstd", "-d", "-q", "-c"]),
           "gzip -9": (["gzip", "-9", "-c"], ["gzip", "-d", "-c"])}
FLAC = {"flac -8": ["flac", "-8"], "flac -8 --no-padding": ["flac", "-8", "--no-padding", "--no-seektable"]}


def corpus_files(corpus: Path, split: str | None, limit: int) -> list[Path]:
    from soundlm.data import audio_path, read_manifest

    rows = read_manifest(corpus)
    if split is not None and any(r.get("split") == split for r in rows):
        rows = [r for r in rows if r.get("split") == split]
    return [audio_path(corpus, r) for r in rows][:limit]


def pcm_of(files: list[Path], bits: int) -> list[tuple[np.ndarray, int]]:
    """(PCM [C, S], sample rate) of 16-bit files, reduced to the top byte for bits=8."""
    from soundlm.compress.lossless import read_pcm

    out = []
    for f in files:
        p = read_pcm(f, 16)
        out.append((p.pcm >> 8 if bits == 8 else p.pcm, p.sample_rate))
    return out


def raw_bytes(pcm: np.ndarray, bits: int) -> bytes:
    """Interleaved PCM as stored in a wav: signed 16-bit little-endian, or unsigned 8-bit."""
    frames = np.ascontiguousarray(pcm.T)
    return frames.astype("<i2").tobytes() if bits == 16 else (frames + 128).astype("u1").tobytes()


def run(cmd: list[str], data: bytes) -> bytes:
    return subprocess.run(cmd, input=data, capture_output=True, check=True).stdout


def row(name: str, setting: str, raw: int, packed: int, audio_s: float, enc_s: float, dec_s: float, **kw) -> dict:
    return {"setting": setting, "method": name, "raw_bytes": raw, "compressed_bytes": packed,
            "ratio": packed / raw, "encode_x": audio_s / enc_s, "decode_x": audio_s / dec_s, **kw}


def bench_general(setting: str, pcms: list[tuple[np.ndarray, int]], bits: int) -> list[dict]:
    rows = []
    audio_s = sum(p.shape[1] / sr for p, sr in pcms)
    raws = [raw_bytes(p, bits) for p, _ in pcms]
    for name, (enc, dec) in GENERAL.items():
        t = time.perf_counter()
        packed = [run(enc, r) for r in raws]
        te = time.perf_counter() - t
        t = time.perf_counter()
        back = [run(dec, p) for p in packed]
        td = time.perf_counter() - t
        assert back == raws, f"{name} did not round-trip"
        rows.append(row(name, setting, sum(map(len, raws)), sum(map(len, packed)), audio_s, te, td))
    return rows


def bench_flac(setting: str, pcms: list[tuple[np.ndarray, int]], bits: int, tmp: Path) -> list[dict]:
    from soundlm.compress.lossless import write_pcm

    wavs = []
    for i, (p, sr) in enumerate(pcms):
        wavs.append(tmp / f"in{i:04d}.wav")
        write_pcm(wavs[-1], p, sr, bits)
    audio_s = sum(p.shape[1] / sr for p, sr in pcms)
    raw = sum(p.size * bits // 8 for p, _ in pcms)
    rows = []
    for name, cmd in FLAC.items():
        t = time.perf_counter()
        for w in wavs:
            subprocess.run(cmd + ["-f", "-s", "-o", str(w.with_suffix(".flac")), str(w)], check=True)
        te = time.perf_counter() - t
        size = sum(w.with_suffix(".flac").stat().st_size for w in wavs)
        t = time.perf_counter()
        for w in wavs:
            subprocess.run(["flac", "-d", "-f", "-s", "-o", str(w.with_suffix(".out.wav")), str(w.with_suffix(".flac"))],
                           check=True)
        td = time.perf_counter() - t
        rows.append(row(name, setting, raw, size, audio_s, te, td))
    return rows


def bench_soundlm(setting: str, pcms: list[tuple[np.ndarray, int]], bits: int, model: Path, tmp: Path) -> dict:
    from soundlm.compress.files import compress_files, decompress_files, open_codec
    from soundlm.compress.lossless import read_pcm, write_pcm

    codec = open_codec("lossless", model)
    if codec.model.config.bits != bits:
        raise ValueError(f"{model}: codes {codec.model.config.bits}-bit PCM, the {setting} rows need {bits}-bit")
    src = tmp / "src"
    for i, (p, sr) in enumerate(pcms):
        write_pcm(src / f"f{i:04d}.wav", p, sr, bits)
    audio_s = sum(p.shape[1] / sr for p, sr in pcms)
    t = time.perf_counter()
    done = compress_files([src], tmp / "packed", codec, progress=False)
    te = time.perf_counter() - t
    t = time.perf_counter()
    back = decompress_files([tmp / "packed"], tmp / "unpacked", codec, progress=False)
    td = time.perf_counter() - t
    if done.failed or back.failed:
        raise RuntimeError(f"soundlm failed on {[o.error for o in done.failed + back.failed]}")
    for i, (p, _) in enumerate(pcms):
        if not np.array_equal(read_pcm(tmp / "unpacked" / f"f{i:04d}.wav", bits).pcm, p):
            raise RuntimeError(f"file {i} did not round-trip bit-exactly")
    size = sum(o.out_bytes for o in done.done)
    return row("soundlm lossless", setting, sum(p.size * bits // 8 for p, _ in pcms), size, audio_s, te, td,
               model=str(model), bit_exact=True)


def bench_tokens(files: list[Path], bundle: str | None) -> list[dict]:
    from soundlm.compress.tokens import TokenCodec

    codec = TokenCodec.load(bundle)
    pipe = codec.pipe
    audio_s = coded_bits = 0.0
    te = td = 0.0
    stage_bits = {"semantic": 0, "coarse": 0, "fine": 0}  # the streams after info, bits
    stage_symbols = dict.fromkeys(stage_bits, 0)
    tokens_raw: list[bytes] = []
    n_codes = n_sem = 0
    for f in files:
        t = time.perf_counter()
        header, streams = codec.compress(f)
        te += time.perf_counter() - t
        t = time.perf_counter()
        content = codec.decode([(header, streams)])[0]
        td += time.perf_counter() - t
        if codec.crc(header, content) != header.crc32:
            raise RuntimeError(f"{f}: token mode did not round-trip")
        audio_s += header.length / header.sample_rate
        for name, s in zip(stage_bits, streams[1:]):
            stage_bits[name] += 8 * len(s)
        for name, n in codec.stage_symbols(content.codes.shape[1], len(content.semantic)).items():
            stage_symbols[name] += n
        coded_bits += 8 * sum(len(s) for s in streams)
        n_codes += content.codes.numel()
        n_sem += content.semantic.numel()
        tokens_raw.append(content.semantic.numpy().astype("<i2").tobytes() + content.codes.numpy().astype("<i2").tobytes())
    # A one-stage bundle's coarse stream holds every codebook: report it as "acoustic".
    coarse_layout, fine_layout = codec.layouts
    stages = ({"semantic": "semantic", "coarse": f"acoustic ({coarse_layout})"} if fine_layout == "none" else
              {"semantic": "semantic", "coarse": f"coarse ({coarse_layout})", "fine": f"fine ({fine_layout})"})
    code_bits = math.log2(pipe.codec.codebook_size)
    sem_bits = math.log2(pipe.semantic_tokenizer.vocab_size)
    raw_bits = n_codes * code_bits + n_sem * sem_bits
    base = {"setting": "tokens", "audio_seconds": audio_s, "files": len(files)}
    rows = [{**base, "method": f"raw codes ({code_bits:g} bits/code) + semantic ({sem_bits:.2f} bits/id)",
             "kbps": raw_bits / audio_s / 1000, "vs_raw": 1.0},
            {**base, "method": f"raw codes only ({code_bits:g} bits/code)",
             "kbps": n_codes * code_bits / audio_s / 1000, "vs_raw": n_codes * code_bits / raw_bits}]
    rows.append({**base, "method": "soundlm tokens (stage LMs)", "kbps": coded_bits / audio_s / 1000,
                 "vs_raw": coded_bits / raw_bits, "vs_raw_codes_only": coded_bits / (n_codes * code_bits),
                 "encode_x": audio_s / te, "decode_x": audio_s / td, "stages": stages,
                 "bits_per_token": {stages[k]: stage_bits[k] / max(1, stage_symbols[k]) for k in stages},
                 "bits_per_code": (stage_bits["coarse"] + stage_bits["fine"]) / max(1, n_codes),
                 "raw_bits_per_code": code_bits})
    for name, (enc, _) in GENERAL.items():
        bits = 8 * sum(len(run(enc, r)) for r in tokens_raw)
        rows.append({**base, "method": f"{name} on int16 tokens", "kbps": bits / audio_s / 1000,
                     "vs_raw": bits / raw_bits})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--speech", type=Path, required=True, help="speech corpus (its held-out rows are used)")
    ap.add_argument("--piano", type=Path, help="piano corpus")
    ap.add_argument("--model", type=Path, help="16-bit `soundlm train compressor` run (needed unless --tokens-only)")
    ap.add_argument("--model-8bit", type=Path, help="8-bit run (--bits 8); without it the 8-bit soundlm row is skipped")
    ap.add_argument("--bundle", help="AudioLM bundle for token mode (default: the shipped speech-tiny)")
    ap.add_argument("--max-files", type=int, default=200, help="files per corpus for the lossless rows")
    ap.add_argument("--token-files", type=int, default=10, help="held-out speech files for the token rows")
    ap.add_argument("--tokens-only", action="store_true", help="only the token-mode rows (no lossless rows)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.model is None and not args.tokens_only:
        ap.error("--model is needed for the lossless rows (or pass --tokens-only)")
    if shutil.which("flac") is None and not args.tokens_only:
        sys.exit("the flac command is missing: apt-get install flac")
    import torch

    torch.set_num_threads(1)
    results: list[dict] = []
    sets = [] if args.tokens_only else [("speech 16-bit (held-out voices)",
                                         corpus_files(args.speech, "heldout", args.max_files))]
    if args.piano and not args.tokens_only:
        sets.append(("piano 16-bit", corpus_files(args.piano, "heldout", args.max_files)))
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for i, (setting, files) in enumerate(sets):
            pcms = pcm_of(files, 16)
            results.append(bench_soundlm(setting, pcms, 16, args.model, tmp / f"s{i}"))
            (tmp / f"f{i}").mkdir()
            results += bench_flac(setting, pcms, 16, tmp / f"f{i}")
            results += bench_general(setting, pcms, 16)
        if sets:
            setting = "speech 8-bit (held-out voices)"
            pcms = pcm_of(sets[0][1], 8)
            if args.model_8bit:
                results.append(bench_soundlm(setting, pcms, 8, args.model_8bit, tmp / "s8"))
            (tmp / "f8").mkdir()
            results += bench_flac(setting, pcms, 8, tmp / "f8")
            results += bench_general(setting, pcms, 8)
    lossless = [r for r in results if "ratio" in r]
    if lossless:
        common.print_table(lossless, [("setting", "setting", "s"), ("method", "method", "s"), ("ratio", "ratio", ".4f"),
                                      ("encode_x", "enc x realtime", ".1f"), ("decode_x", "dec x realtime", ".1f")])
    tokens = bench_tokens(corpus_files(args.speech, "heldout", args.token_files), args.bundle)
    print()
    common.print_table(tokens, [("method", "tokens", "s"), ("kbps", "kbps", ".3f"), ("vs_raw", "vs raw", ".3f"),
                                ("encode_x", "enc x realtime", ".2f"), ("decode_x", "dec x realtime", ".2f")])
    coded = next(r for r in tokens if "bits_per_token" in r)
    print("bits per token, per stage: " + ", ".join(f"{k} {v:.3f}" for k, v in coded["bits_per_token"].items())
          + f"; all codes {coded['bits_per_code']:.3f} (raw {coded['raw_bits_per_code']:g})")
    payload = {"benchmark": "compress", "command": " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
               "machine": common.machine_info(1), "lossless": lossless, "tokens": tokens,
               "files": {s: len(f) for s, f in sets}}
    print(f"\nwrote {common.write_results('compress', payload, args.out)}")


if __name__ == "__main__":
    main()
