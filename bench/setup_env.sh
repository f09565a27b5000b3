#!/usr/bin/env bash
# Create .bench-venv: soundlm (editable) next to the peers it is benchmarked against.
#
#   bash bench/setup_env.sh            # ~2-3 min with a warm pip cache
#   PYTHON=python3.11 BENCH_VENV=/tmp/bv bash bench/setup_env.sh
#
# torch stays at 2.13.0 (the local CPU wheel): every install runs under a constraints
# file that pins it, and peers that pin an old torch (audiocraft: torch==2.1.0) or a CUDA
# build (torchaudio, xformers) are installed with --no-deps and their needs by hand.
# What could not be installed or imported is recorded by the benchmarks in their JSON.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BENCH_VENV:-$ROOT/.bench-venv}"  # BENCH_VENV: build elsewhere (e.g. to test this script)
PY="${PYTHON:-python3}"
PIP="$VENV/bin/pip"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
"$PIP" install -q --upgrade pip
"$PIP" install -q torch==2.13.0

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==2.13.0" > "$CONSTRAINTS"
install() { "$PIP" install -q -c "$CONSTRAINTS" "$@"; }

echo "== soundlm (editable) + transformers"
install -e "$ROOT"
install pystoi pesq  # the codec metrics of bench/codec_equal_time.py

echo "== audiolm-pytorch 2.4.0"
# Its requirements name torchaudio (CUDA-only wheels), fairseq (does not import on Python
# 3.11) and wandb (trainer only): install the package alone and the rest by hand.
install --no-deps audiolm-pytorch==2.4.0 encodec==0.1.1
install accelerate beartype einops ema-pytorch gateloop-transformer hyper-connections joblib local-attention \
    pytorch-warmup scikit-learn sentencepiece tqdm vector-quantize-pytorch

echo "== torchaudio 2.11.0 without its compiled extension"
# PyPI has only CUDA builds of torchaudio; their _torchaudio.so needs libc10_cuda.so and
# fails to load against CPU torch. torchaudio treats a missing extension file as "not
# built" and keeps its pure-Python parts (functional.resample, transforms), which is all
# that audiolm-pytorch and audiocraft use at import time and in the code we time.
install --no-deps torchaudio==2.11.0
rm -f "$VENV"/lib/python3*/site-packages/torchaudio/lib/*.so

echo "== audiocraft 1.3.0"
# Pins torch==2.1.0, torchaudio<2.1.2, xformers<0.0.23, av==11.0.0: install it alone, then
# its import-time needs at current versions. xformers' CUDA kernels do not load on CPU
# (it warns); audiocraft's default attention backend is torch SDPA, so none are called.
install --no-deps audiocraft==1.3.0 xformers==0.0.35
install av julius num2words flashy spacy librosa torchmetrics hydra-core hydra_colorlog omegaconf protobuf \
    huggingface_hub

echo "== checks"
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import torch

assert torch.__version__.startswith("2.13.0"), f"torch changed to {torch.__version__}"
cuda = sorted(d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("nvidia"))
assert not cuda, f"CUDA packages were pulled in: {cuda}"
print("torch", torch.__version__, "(no nvidia-* packages)")
for dist in ("soundlm", "transformers", "audiolm-pytorch", "audiocraft", "torchaudio", "xformers", "encodec"):
    try:
        print(f"{dist:16s} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"{dist:16s} NOT INSTALLED")
EOF
# bench/ goes last on sys.path: bench/tokenize.py must not shadow the stdlib tokenize.
BENCH_DIR="$ROOT/bench" "$VENV/bin/python" - <<'EOF'
import os
import sys

sys.path.append(os.environ["BENCH_DIR"])
import common

for peer in (common.import_audiolm_pytorch(), common.import_audiocraft()):
    status = "imports" if peer.module is not None else f"does NOT import: {peer.error}"
    print(f"{peer.name}: {status}")
    for note in peer.notes:
        print(f"  note: {note}")
EOF
