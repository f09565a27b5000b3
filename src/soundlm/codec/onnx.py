"""ONNX export of our codec: encoder.onnx (audio -> codes) and decoder.onnx (codes -> audio), run without torch.

    encoder.onnx   audio [B, C, S] float32 (S a multiple of the hop) -> codes [B, K, T] int64
    decoder.onnx   codes [B, K, T] int64                              -> audio [B, C, T * hop] float32
    config.json    rates, hop, codebooks, opset and the measured agreement with torch (`OnnxExport`)

Batch and time are dynamic axes. The RVQ runs inside the graphs (nearest code per level on
the encoder side, a sum of codebook rows on the decoder side). ONNX has no inverse STFT and
onnxruntime's STFT support is partial, so the iSTFT architecture's transforms are written
as convolutions here: |STFT| as two strided conv1d with windowed cosine and sine kernels
(over the input reflect-padded by n_fft / 2, as `torch.stft(center=True)` does), and the
inverse STFT as a conv_transpose1d with the windowed inverse-DFT basis, divided by the
overlap-added squared window and cut like `torch.istft(center=True)`.

Agreement with torch (`check_onnx_export`): the decoder's audio from the same codes differs
by at most `DECODER_TOLERANCE`; encoder codes may differ where two codes are equally near
(float rounding), so the share of equal codes is reported and checked against `MIN_CODE_AGREEMENT`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from soundlm.codec.soundstream import SoundStreamCodec
from soundlm.fileio import atomic_dir, write_json_atomic

ENCODER_FILE = "encoder.onnx"
DECODER_FILE = "decoder.onnx"
OPSET = 18
DECODER_TOLERANCE = 1e-3  # max |audio_onnx - audio_torch| for the same codes (audio in [-1, 1])
MIN_CODE_AGREEMENT = 0.99  # share of encoder codes equal to torch's


def _dft_basis(n_fft: int, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Windowed cos and sin kernels [F, N] of the one-sided DFT (F = N/2 + 1), float64 for accuracy."""
    n = torch.arange(n_fft, dtype=torch.float64)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
    angle = 2 * math.pi * k[:, None] * n[None] / n_fft  # [F, N]
    w = window.double()[None]
    return torch.cos(angle) * w, torch.sin(angle) * w


class ConvSTFTMagnitude(nn.Module):
    """|torch.stft(x, n_fft, hop, window, center=True)| as convolutions: [B, S] -> [B, F, S // hop + 1]."""

    def __init__(self, n_fft: int, hop: int, window: torch.Tensor):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        cos, sin = _dft_basis(n_fft, window)
        self.register_buffer("kernel", torch.cat([cos, sin]).float()[:, None])  # [2F, 1, N]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x[:, None], (self.n_fft // 2, self.n_fft // 2), mode="reflect")  # [B, 1, S + N]
        parts = F.conv1d(x, self.kernel, stride=self.hop)  # [B, 2F, frames]
        re, im = parts.chunk(2, dim=1)
        return torch.sqrt(re * re + im * im)


class ConvISTFT(nn.Module):
    """torch.istft(complex(real, imag), n_fft, hop, window, center=True, length) as a transposed convolution."""

    def __init__(self, n_fft: int, hop: int, window: torch.Tensor):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        cos, sin = _dft_basis(n_fft, torch.ones(n_fft))
        # irfft: bins 1 .. N/2 - 1 count twice (their mirror images); DC and Nyquist once; imag of those ignored.
        weight = torch.full((n_fft // 2 + 1, 1), 2.0, dtype=torch.float64)
        weight[0] = weight[-1] = 1.0
        w = window.double()[None]
        kernel = torch.cat([cos * weight * w, -sin * weight * w]) / n_fft  # [2F, N]
        self.register_buffer("kernel", kernel.float()[:, None])  # [2F, 1, N]
        self.register_buffer("window_sq", (window.double() ** 2).float()[None, None])  # [1, 1, N]

    def forward(self, real: torch.Tensor, imag: torch.Tensor, length: int | torch.Tensor) -> torch.Tensor:
        frames = F.conv_transpose1d(torch.cat([real, imag], dim=1), self.kernel, stride=self.hop)  # [B, 1, S']
        ones = torch.ones_like(real[:1, :1])  # [1, 1, T]
        envelope = F.conv_transpose1d(ones, self.window_sq, stride=self.hop)  # [1, 1, S']
        y = frames / torch.where(envelope > 1e-11, envelope, torch.ones_like(envelope))
        start = self.n_fft // 2
        return y[:, 0, start: start + length]  # [B, S]


class _EncoderGraph(nn.Module):
    """audio [B, C, S] -> codes [B, K, T] int64 (S a multiple of the hop)."""

    def __init__(self, codec: SoundStreamCodec, num_codebooks: int):
        super().__init__()
        self.codec = codec
        self.k = num_codebooks
        enc = codec.encoder
        self.stft = (ConvSTFTMagnitude(enc.n_fft, enc.stft_hop, enc.window)
                     if codec.config.architecture == "istft" else None)
        # Codebooks and their squared norms, stacked: [K, codes, D] and [K, codes].
        embed = torch.stack([layer.codebook.embed for layer in codec.quantizer.layers[:num_codebooks]])
        self.register_buffer("embed", embed.detach().clone())
        self.register_buffer("embed_sq", embed.pow(2).sum(-1).detach().clone())

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if self.stft is not None:
            b, c, s = audio.shape
            z = self.codec.encoder.from_magnitude(self.stft(audio.reshape(b * c, s)), b)  # [B, D, T]
        else:
            z = self.codec.encoder(audio)
        residual = z.transpose(1, 2)  # [B, T, D]
        codes = []
        for q in range(self.k):
            # Nearest code: argmin ||r - e||^2 = argmin (||e||^2 - 2 r.e), as the RVQ assigns.
            dist = self.embed_sq[q] - 2 * residual @ self.embed[q].t()  # [B, T, codes]
            code = dist.argmin(dim=-1)  # [B, T]
            residual = residual - F.embedding(code, self.embed[q])
            codes.append(code)
        return torch.stack(codes, dim=1)  # [B, K, T]


class _DecoderGraph(nn.Module):
    """codes [B, K, T] int64 -> audio [B, C, T * hop]."""

    def __init__(self, codec: SoundStreamCodec, num_codebooks: int):
        super().__init__()
        self.codec = codec
        self.k = num_codebooks
        dec = codec.decoder
        self.istft = (ConvISTFT(dec.n_fft, dec.stft_hop, dec.window) if codec.config.architecture == "istft"
                      else None)
        embed = torch.stack([layer.codebook.embed for layer in codec.quantizer.layers[:num_codebooks]])
        self.register_buffer("embed", embed.detach().clone())  # [K, codes, D]

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        z = sum(F.embedding(codes[:, q], self.embed[q]) for q in range(self.k)).transpose(1, 2)  # [B, D, T]
        if self.istft is None:
            return self.codec.decoder(z)
        dec = self.codec.decoder
        b, t = codes.shape[0], codes.shape[2]
        real, imag = dec.spectrum(z)  # [B*C, F, T*up + 1]
        return self.istft(real, imag, t * dec.hop_length).reshape(b, dec.channels, t * dec.hop_length)


@dataclass
class OnnxExport:
    """config.json of an exported codec folder (what a torch-free runtime needs to know)."""

    sample_rate: int
    channels: int
    hop_length: int
    frame_rate: float
    num_codebooks: int
    codebook_size: int
    opset: int
    source: str | None
    code_agreement: float | None = None  # measured by check_onnx_export on the export's own test signal
    max_decoder_error: float | None = None
    format: str = "soundlm-codec-onnx"


def export_codec_onnx(codec: SoundStreamCodec, out_dir: str | Path, num_codebooks: int | None = None,
                      check_seconds: float = 2.0) -> OnnxExport:
    """Write encoder.onnx, decoder.onnx and config.json for `codec` (our SoundStream/iSTFT codec) into `out_dir`.

    The export is checked against torch on `check_seconds` of a test signal before it is
    written; a mismatch beyond the tolerances raises ValueError and writes nothing.
    """
    if not isinstance(codec, SoundStreamCodec):
        raise ValueError(f"ONNX export covers soundlm's own codec; got {type(codec).__name__} (a Hugging Face codec "
                         "has its own exporters, e.g. optimum)")
    k = num_codebooks or codec.num_codebooks
    if not 1 <= k <= codec.total_codebooks:
        raise ValueError(f"--num-codebooks must be in [1, {codec.total_codebooks}], got {k}")
    codec = codec.cpu().eval()
    info = OnnxExport(sample_rate=codec.sample_rate, channels=codec.channels, hop_length=codec.hop_length,
                      frame_rate=codec.frame_rate, num_codebooks=k, codebook_size=codec.codebook_size, opset=OPSET,
                      source=codec.source)
    out_dir = Path(out_dir)
    frames = 25
    audio = torch.randn(2, codec.channels, frames * codec.hop_length) * 0.1
    codes = torch.randint(0, codec.codebook_size, (2, k, frames))
    with atomic_dir(out_dir) as tmp:
        _export(_EncoderGraph(codec, k), audio, tmp / ENCODER_FILE, "audio", "codes",
                {0: "batch", 2: "samples"}, {0: "batch", 2: "frames"})
        _export(_DecoderGraph(codec, k), codes, tmp / DECODER_FILE, "codes", "audio",
                {0: "batch", 2: "frames"}, {0: "batch", 2: "samples"})
        check = check_onnx_export(codec, tmp, k, _test_signal(codec, check_seconds))
        info.code_agreement, info.max_decoder_error = check.code_agreement, check.max_decoder_error
        if check.code_agreement < MIN_CODE_AGREEMENT or check.max_decoder_error > DECODER_TOLERANCE:
            raise ValueError(f"the ONNX export disagrees with torch: {check.code_agreement:.4f} of the codes equal "
                             f"(need {MIN_CODE_AGREEMENT}), decoder error {check.max_decoder_error:.2e} (allowed "
                             f"{DECODER_TOLERANCE}); nothing written")
        write_json_atomic(tmp / "config.json", asdict(info))
    return info


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str, output_name: str,
            in_axes: dict[int, str], out_axes: dict[int, str]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer chatter
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: in_axes, output_name: out_axes}, opset_version=OPSET,
                          dynamo=False)


def _test_signal(codec: SoundStreamCodec, seconds: float) -> np.ndarray:
    """A speech-like test signal [1, C, S]: a gliding harmonic tone with noise bursts, S a whole number of frames."""
    frames = max(int(seconds * codec.frame_rate), 1)
    t = np.arange(frames * codec.hop_length) / codec.sample_rate
    f0 = 140 + 60 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / codec.sample_rate
    voiced = sum(np.sin(h * phase) / h for h in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    noise = np.random.default_rng(0).normal(0, 0.05, t.shape) * (np.sin(2 * np.pi * 1.3 * t) > 0.6)
    signal = (0.3 * voiced + noise).astype(np.float32)
    return np.broadcast_to(signal, (1, codec.channels, signal.shape[0])).copy()


@dataclass
class OnnxCheck:
    code_agreement: float  # share of encoder codes equal to torch's
    max_decoder_error: float  # max |onnx - torch| audio, same codes


def check_onnx_export(codec: SoundStreamCodec, folder: str | Path, num_codebooks: int,
                      audio: np.ndarray) -> OnnxCheck:
    """Run the exported graphs with onnxruntime on `audio` [B, C, S] and compare with the torch codec."""
    sessions = load_onnx_codec(folder)
    keep = codec.num_codebooks
    codec.set_num_codebooks(num_codebooks)
    try:
        with torch.no_grad():
            ref_codes = codec.encode(torch.from_numpy(audio)).numpy()
            ref_audio = codec.decode(torch.from_numpy(ref_codes)).numpy()
    finally:
        codec.set_num_codebooks(keep)
    codes = sessions.encode(audio)
    decoded = sessions.decode(ref_codes)
    return OnnxCheck(code_agreement=float((codes == ref_codes).mean()),
                     max_decoder_error=float(np.abs(decoded - ref_audio).max()))


class OnnxCodec:
    """The exported codec on onnxruntime (no torch): `encode(audio [B, C, S]) -> codes`, `decode(codes) -> audio`."""

    def __init__(self, encoder, decoder):
        self.encoder, self.decoder = encoder, decoder

    def encode(self, audio: np.ndarray) -> np.ndarray:
        return self.encoder.run(None, {"audio": np.ascontiguousarray(audio, dtype=np.float32)})[0]

    def decode(self, codes: np.ndarray) -> np.ndarray:
        return self.decoder.run(None, {"codes": np.ascontiguousarray(codes, dtype=np.int64)})[0]


def load_onnx_codec(folder: str | Path) -> OnnxCodec:
    """onnxruntime sessions of an exported codec folder."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError("onnxruntime is not installed; pip install 'soundlm[onnx]'") from e
    folder = Path(folder)
    missing = [f for f in (ENCODER_FILE, DECODER_FILE) if not (folder / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: no {', '.join(missing)}; export the codec with `soundlm export codec --onnx`")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    make = lambda f: ort.InferenceSession(str(folder / f), options, providers=["CPUExecutionProvider"])  # noqa: E731
    return OnnxCodec(make(ENCODER_FILE), make(DECODER_FILE))
