"""ONNX export of the codec: onnxruntime's codes and audio match torch's within the stated tolerances, for
both architectures, other batch sizes and lengths than the export's example, and without torch at run time."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_bundle import random_codec
from typer.testing import CliRunner

from soundlm.codec import CodecConfig, SoundStreamCodec
from soundlm.codec.onnx import (DECODER_TOLERANCE, MIN_CODE_AGREEMENT, ConvISTFT, ConvSTFTMagnitude,
                                check_onnx_export, export_codec_onnx, load_onnx_codec)


def _istft_codec() -> SoundStreamCodec:
    """A small random iSTFT codec (the shipped model's architecture) with random codebooks."""
    torch.manual_seed(0)
    codec = SoundStreamCodec(CodecConfig(sample_rate=16_000, ratios=(8, 5, 4, 2), dimension=16, n_q=3,
                                         codebook_size=32, causal=False, architecture="istft", upsample=2, hidden=24,
                                         frame_blocks=1, fine_blocks=1))
    for name, buf in codec.named_buffers():
        if name.endswith(("embed", "embed_avg")):
            buf.normal_()
        elif name.endswith("inited"):
            buf.fill_(True)
    return codec.eval()


def _speechlike(batch: int, seconds: float, hop: int = 320) -> np.ndarray:
    rng = np.random.default_rng(1)
    n = int(seconds * 16000) // hop * hop
    t = np.arange(n) / 16000
    waves = [0.3 * np.sin(2 * np.pi * (120 + 40 * b) * t) * np.sin(2 * np.pi * 2 * t) + rng.normal(0, 0.02, n)
             for b in range(batch)]
    return np.stack(waves)[:, None].astype(np.float32)  # [B, 1, S]


def test_conv_transforms_equal_torch_stft_and_istft():
    window = torch.hann_window(640)
    x = torch.randn(3, 16000)
    ref = torch.stft(x, 640, 160, window=window, center=True, return_complex=True).abs()
    assert torch.allclose(ConvSTFTMagnitude(640, 160, window)(x), ref, atol=1e-3, rtol=1e-4)
    real, imag = torch.randn(2, 321, 51), torch.randn(2, 321, 51)
    ref = torch.istft(torch.complex(real, imag), 640, 160, window=window, center=True, length=8000)
    assert torch.allclose(ConvISTFT(640, 160, window)(real, imag, 8000), ref, atol=1e-5)


@pytest.mark.parametrize("make", [_istft_codec, random_codec], ids=["istft", "seanet"])
def test_onnx_codec_matches_torch(make, tmp_path):
    codec = make().eval()
    info = export_codec_onnx(codec, tmp_path / "onnx")
    assert info.code_agreement >= MIN_CODE_AGREEMENT and info.max_decoder_error <= DECODER_TOLERANCE
    assert json.loads((tmp_path / "onnx" / "config.json").read_text())["num_codebooks"] == codec.total_codebooks
    # Another batch size and length than the export's example (dynamic axes).
    check = check_onnx_export(codec, tmp_path / "onnx", codec.total_codebooks, _speechlike(3, 1.3))
    assert check.code_agreement >= MIN_CODE_AGREEMENT and check.max_decoder_error <= DECODER_TOLERANCE
    onnx = load_onnx_codec(tmp_path / "onnx")
    audio = _speechlike(1, 0.5)
    codes = onnx.encode(audio)
    assert codes.shape == (1, codec.total_codebooks, audio.shape[-1] // codec.hop_length) and codes.dtype == np.int64
    assert onnx.decode(codes).shape == audio.shape


def test_fewer_codebooks_and_bad_requests(tmp_path):
    codec = _istft_codec()
    info = export_codec_onnx(codec, tmp_path / "two", num_codebooks=2)
    assert info.num_codebooks == 2 and codec.num_codebooks == 3  # the codec is left as it was
    assert load_onnx_codec(tmp_path / "two").encode(_speechlike(1, 0.4)).shape[1] == 2
    with pytest.raises(ValueError, match="num-codebooks"):
        export_codec_onnx(codec, tmp_path / "x", num_codebooks=9)
    with pytest.raises(FileNotFoundError, match="soundlm export codec"):
        load_onnx_codec(tmp_path / "nothing")


def test_exported_codec_runs_without_torch(tmp_path):
    """The README's onnxruntime snippet, in a Python where `import torch` fails."""
    export_codec_onnx(_istft_codec(), tmp_path / "onnx")
    np.save(tmp_path / "audio.npy", _speechlike(1, 0.6))
    script = f"""
import sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
import numpy as np, onnxruntime as ort
enc = ort.InferenceSession("{tmp_path}/onnx/encoder.onnx", providers=["CPUExecutionProvider"])
dec = ort.InferenceSession("{tmp_path}/onnx/decoder.onnx", providers=["CPUExecutionProvider"])
codes = enc.run(None, {{"audio": np.load("{tmp_path}/audio.npy")}})[0]
audio = dec.run(None, {{"codes": codes}})[0]
print(codes.shape, audio.shape, bool(np.isfinite(audio).all()))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 3, 30) (1, 1, 9600) True"


def test_cli_exports_a_bundles_codec(tmp_path):
    from tiny_bundle import make_tiny_bundle

    from soundlm.cli import app

    bundle = make_tiny_bundle(tmp_path)
    result = CliRunner().invoke(app, ["export", "codec", str(bundle), "--out", str(tmp_path / "onnx"), "--onnx"])
    assert result.exit_code == 0, result.output
    assert "of the codes equal" in result.output and (tmp_path / "onnx" / "decoder.onnx").is_file()
    result = CliRunner().invoke(app, ["export", "codec", str(bundle), "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--onnx" in result.output
