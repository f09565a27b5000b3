"""Tokenizing speed: seconds of audio turned into tokens per second of wall time.

Tokenizers (all randomly initialised: speed does not depend on the weights' values):

- soundlm-codec: `SoundStreamCodec(codec_16k_small())` (16 kHz, 50 Hz, 8 x 1024).
- hf-encodec: transformers `EncodecModel(EncodecConfig())` (24 kHz, 75 Hz), saved with
  `save_pretrained` and loaded through `soundlm.codec.hf.HFCodec.from_pretrained`, asked
  for 8 codebooks like ours.
- semantic-mfcc: `KMeansTokenizer` over the built-in MFCC features (39 dims) and k-means
  assignment to 500 random centroids.
- semantic-hubert: `KMeansTokenizer` over a small random `HubertModel` (hidden 256,
  4 layers, read at the last layer, same `from_pretrained` path) and 500 centroids.

Each at batch 1 (one clip) and batched (8 clips), clips of 10 s; a warm-up, then rounds
over all cases (so load from other processes spreads over them), median of the rounds.

Many files: the `soundlm tokenize` job itself (file listing, loader workers, parts,
Parquet writes) over N small files (0.25 s each, generated under /tmp, deleted after),
with tiny random tokenizers (MFCC k-means, 16 ids; the `codec_16k_tiny` codec) so that the
job's own cost and memory show, not the models'. Each size runs in a fresh process; the
rows give files/s and the peak RSS of the main process and of a loader worker, at N/10
and N files: flat memory means the two peaks are close.

    .bench-venv/bin/python bench/tokenize.py            # ~2-4 min on 2 cores, plus the many-files rows
    .bench-venv/bin/python bench/tokenize.py --quick    # 5 s clips, batch 1 and 4
    .bench-venv/bin/python bench/tokenize.py --many-files-only   # 2,000 and 20,000 files (~5-10 min)

Runs with either `.venv` or `.bench-venv` (it needs only soundlm and transformers).
"""

from __future__ import annotations

import sys
from pathlib import Path

# This script shares its name with the stdlib `tokenize` (imported by inspect, linecache,
# torch): move its folder to the end of sys.path so `import tokenize` still finds the
# stdlib, while `import common` (no stdlib namesake) finds ours.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from typing import Callable  # noqa: E402

import common  # noqa: E402

NUM_CENTROIDS = 500


@dataclass
class Tokenizer:
    name: str
    sample_rate: int
    frame_rate: float
    encode: Callable  # [B, 1, S] -> tokens
    params: int
    describe: dict


@dataclass
class Case:
    tokenizer: str
    batch: int
    clip_seconds: float
    sample_rate: int
    frame_rate: float
    params: int
    seconds: list[float] = field(default_factory=list)
    audio_s_per_s: float = 0.0  # seconds of audio tokenized per wall second
    frames_per_s: float = 0.0
    output_shape: list[int] | None = None
    error: str | None = None


def soundlm_codec() -> Tokenizer:
    from soundlm.codec.soundstream import SoundStreamCodec, codec_16k_small

    codec = SoundStreamCodec(codec_16k_small()).eval()
    return Tokenizer("soundlm-codec", codec.sample_rate, codec.frame_rate, codec.encode,
                     common.num_params(codec), codec.describe())


def hf_encodec(folder: Path) -> Tokenizer:
    from transformers import EncodecConfig, EncodecModel

    from soundlm.codec.hf import HFCodec

    EncodecModel(EncodecConfig()).save_pretrained(folder)
    codec = HFCodec.from_pretrained(folder)
    codec.set_num_codebooks(8)
    return Tokenizer("hf-encodec", codec.sample_rate, codec.frame_rate, codec.encode, common.num_params(codec),
                     codec.describe())


def semantic_mfcc() -> Tokenizer:
    import torch

    from soundlm.semantic.features import MFCCFeatures
    from soundlm.semantic.tokenizer import KMeansTokenizer

    features = MFCCFeatures()
    tok = KMeansTokenizer(features, torch.randn(NUM_CENTROIDS, features.dim)).eval()
    return Tokenizer("semantic-mfcc", tok.sample_rate, tok.frame_rate, tok.encode, common.num_params(tok),
                     tok.describe())


def semantic_hubert(folder: Path) -> Tokenizer:
    import torch
    from transformers import HubertConfig, HubertModel

    from soundlm.semantic.features import HFSSLFeatures
    from soundlm.semantic.tokenizer import KMeansTokenizer

    cfg = HubertConfig(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024)
    HubertModel(cfg).save_pretrained(folder)
    features = HFSSLFeatures(folder, layer=cfg.num_hidden_layers, device="cpu")
    tok = KMeansTokenizer(features, torch.randn(NUM_CENTROIDS, features.dim)).eval()
    return Tokenizer("semantic-hubert", tok.sample_rate, tok.frame_rate, tok.encode, common.num_params(tok),
                     tok.describe())


_MANY_FILES_CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(int(sys.argv[5]))
from soundlm.tokenize import TokenizeConfig, tokenize_corpus
cfg = TokenizeConfig(source=sys.argv[1], out=sys.argv[2], semantic=sys.argv[3] + "/semantic", codec=sys.argv[3] + "/codec",
                     workers=int(sys.argv[4]), device="cpu", batch_size=16, part_size=64)
t = time.perf_counter()
summary = tokenize_corpus(cfg, progress=False)
seconds = time.perf_counter() - t
print(json.dumps({"seconds": seconds, "tokenized": summary.tokenized, "skipped": summary.skipped,
                  "parts": summary.parts, "main_peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "worker_peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def _tiny_tokenizers(folder: Path) -> None:
    import torch

    from soundlm.codec.soundstream import SoundStreamCodec, codec_16k_tiny
    from soundlm.semantic.features import MFCCFeatures
    from soundlm.semantic.tokenizer import KMeansTokenizer

    features = MFCCFeatures()
    KMeansTokenizer(features, torch.randn(16, features.dim)).save(folder / "semantic")
    codec = SoundStreamCodec(codec_16k_tiny())
    codec.train()
    codec(0.1 * torch.randn(2, 1, 3200))  # k-means init of the codebooks, as training's first step does
    codec.eval().save_pretrained(folder / "codec")


def _write_files(folder: Path, n: int) -> None:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    t = np.arange(4000) / 16000
    for i in range(n):
        sub = folder / f"d{i // 1000:03d}"  # a thousand files per folder, like a real corpus layout
        sub.mkdir(parents=True, exist_ok=True)
        x = 0.3 * np.sin(2 * np.pi * (100 + i % 900) * t) + 0.02 * rng.standard_normal(t.size)
        sf.write(sub / f"f{i:06d}.wav", x.astype(np.float32), 16000)


def many_files(sizes: list[int], workers: int, threads: int, tmp: Path) -> list[dict]:
    """Run the tokenize job over each number of files in a fresh process; rows of files/s and peak RSS."""
    import json
    import shutil
    import subprocess

    _tiny_tokenizers(tmp / "models")
    rows = []
    for n in sizes:
        src, store = tmp / f"files-{n}", tmp / f"store-{n}"
        t = time.perf_counter()
        _write_files(src, n)
        print(f"  wrote {n} files in {time.perf_counter() - t:.0f} s", flush=True)
        done = subprocess.run([sys.executable, "-c", _MANY_FILES_CHILD, str(src), str(store), str(tmp / "models"),
                               str(workers), str(threads)], capture_output=True, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": str(threads)})
        if done.returncode != 0:
            rows.append({"files": n, "workers": workers, "error": done.stderr[-2000:]})
            continue
        out = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"files": n, "workers": workers, "seconds": out["seconds"],
                     "files_per_s": out["tokenized"] / out["seconds"], "tokenized": out["tokenized"],
                     "skipped": out["skipped"], "parts": out["parts"],
                     "main_peak_rss_mib": out["main_peak_rss_kib"] / 1024,
                     "worker_peak_rss_mib": out["worker_peak_rss_kib"] / 1024})
        print(f"  {n} files: {rows[-1]['files_per_s']:.0f} files/s, main peak RSS "
              f"{rows[-1]['main_peak_rss_mib']:.0f} MiB", flush=True)
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
    return rows


def _print_many_files(rows: list[dict]) -> None:
    common.print_table([r for r in rows if "error" not in r],
                       [("files", "files", ",d"), ("workers", "workers", "d"), ("seconds", "wall s", ".0f"),
                        ("files_per_s", "files/s", ".0f"), ("main_peak_rss_mib", "main peak RSS MiB", ".0f"),
                        ("worker_peak_rss_mib", "worker peak RSS MiB", ".0f")])
    for r in rows:
        if "error" in r:
            print(f"note: {r['files']} files failed: {r['error']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="5 s clips, batches 1 and 4, 2 rounds")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--clip-seconds", type=float, default=None, help="clip length (default 10; 5 with --quick)")
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="batch sizes (default 1 8; 1 4 with --quick)")
    ap.add_argument("--repeats", type=int, default=None, help="timed rounds (default 3; 2 with --quick)")
    ap.add_argument("--out", type=Path, default=None,
                    help="JSON output (default bench/results/tokenize.json, tokenize-quick.json with --quick, "
                         "tokenize-many-files.json with --many-files-only)")
    ap.add_argument("--many-files", type=int, default=20_000,
                    help="files of the many-files rows (also run at a tenth of it; 0: skip them)")
    ap.add_argument("--many-files-workers", type=int, default=2, help="loader workers of the many-files rows")
    ap.add_argument("--many-files-only", action="store_true", help="only the many-files rows")
    args = ap.parse_args()
    for name, full, quick in (("clip_seconds", 10.0, 5.0), ("batches", [1, 8], [1, 4]), ("repeats", 3, 2)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.clip_seconds <= 0 or min(args.batches) < 1 or args.repeats < 1:
        raise SystemExit("--clip-seconds must be > 0, --batches >= 1 and --repeats >= 1")

    # Nothing here may download; transformers' loading bars would drown the table.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="soundlm-bench-tokenize-"))
    sizes = [max(args.many_files // 10, 1), args.many_files] if args.many_files > 0 else []
    if args.many_files_only:
        rows = many_files(sizes, args.many_files_workers, args.threads, tmp)
        print()
        _print_many_files(rows)
        payload = {"benchmark": "tokenize-many-files", "machine": common.machine_info(args.threads),
                   "settings": {"sizes": sizes, "workers": args.many_files_workers, "file_seconds": 0.25,
                                "tokenizers": "MFCC k-means (16 ids) + codec_16k_tiny, random"},
                   "many_files": rows, "wall_seconds": time.time() - started}
        path = common.write_results("tokenize-many-files", payload, args.out)
        print(f"\nwrote {path} ({time.time() - started:.0f} s)")
        return
    builders: list[tuple[str, Callable[[], Tokenizer]]] = [
        ("soundlm-codec", soundlm_codec),
        ("hf-encodec", lambda: hf_encodec(tmp / "encodec")),
        ("semantic-mfcc", semantic_mfcc),
        ("semantic-hubert", lambda: semantic_hubert(tmp / "hubert")),
    ]
    cases: list[tuple[Case, Callable[[], torch.Tensor] | None]] = []
    for name, build in builders:
        try:
            tok = build()
        except Exception as e:  # noqa: BLE001 - a tokenizer that fails to build is a result to record
            for b in args.batches:
                cases.append((Case(name, b, args.clip_seconds, 0, 0.0, 0, error=common._short_error(e)), None))
            continue
        for b in args.batches:
            case = Case(tok.name, b, args.clip_seconds, tok.sample_rate, tok.frame_rate, tok.params)
            # Speech-like level: noise at -20 dBFS; content does not change the cost.
            audio = 0.1 * torch.randn(b, 1, int(args.clip_seconds * tok.sample_rate),
                                      generator=torch.Generator().manual_seed(b))

            def run(tok: Tokenizer = tok, audio: torch.Tensor = audio) -> torch.Tensor:
                with torch.inference_mode():
                    return tok.encode(audio)
            try:
                case.output_shape = list(run().shape)  # warm-up
                cases.append((case, run))
            except Exception as e:  # noqa: BLE001
                case.error = common._short_error(e)
                cases.append((case, None))
        print(f"  built {name}", flush=True)

    for r in range(args.repeats):
        for case, run in cases:
            if run is None:
                continue
            t = time.perf_counter()
            run()
            case.seconds.append(time.perf_counter() - t)
        print(f"  round {r + 1}/{args.repeats} done", flush=True)

    rows = []
    for case, _ in cases:
        if case.seconds:
            med = statistics.median(case.seconds)
            case.audio_s_per_s = case.batch * case.clip_seconds / med
            case.frames_per_s = case.audio_s_per_s * case.frame_rate
        row = asdict(case)
        ref = next((c for c, _ in cases if c.tokenizer == "soundlm-codec" and c.batch == case.batch), None)
        row["vs_soundlm_codec"] = (case.audio_s_per_s / ref.audio_s_per_s
                                   if ref is not None and ref.audio_s_per_s and case.audio_s_per_s else None)
        rows.append(row)

    print()
    common.print_table([r | {"audio_s_per_s": r["audio_s_per_s"] or None, "frames_per_s": r["frames_per_s"] or None}
                        for r in rows],
                       [("tokenizer", "tokenizer", "s"), ("batch", "B", "d"), ("clip_seconds", "clip s", ".0f"),
                        ("sample_rate", "Hz", "d"), ("params", "params", ",d"),
                        ("audio_s_per_s", "audio s / s", ".1f"), ("frames_per_s", "frames/s", ".0f"),
                        ("vs_soundlm_codec", "x soundlm-codec", ".2f")])
    for r in rows:
        if r["error"]:
            print(f"note: {r['tokenizer']}/B{r['batch']}: {r['error']}")
    many = many_files(sizes, args.many_files_workers, args.threads, tmp) if sizes else []
    if many:
        print()
        _print_many_files(many)
    payload = {
        "benchmark": "tokenize",
        "machine": common.machine_info(args.threads),
        "settings": {"clip_seconds": args.clip_seconds, "batches": args.batches, "repeats": args.repeats,
                     "warmup_runs": 1, "centroids": NUM_CENTROIDS, "dtype": "float32", "quick": args.quick,
                     "many_files": sizes, "many_files_workers": args.many_files_workers},
        "results": rows,
        "many_files": many,
        "wall_seconds": time.time() - started,
    }
    path = common.write_results("tokenize-quick" if args.quick else "tokenize", payload, args.out)
    print(f"\nwrote {path} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
