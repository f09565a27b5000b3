"""Lossless mode: bit-exact round trips, determinism of the integer model, the container's checks."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundlm.audio import AudioError
from soundlm.compress import coder, lpc
from soundlm.compress.container import Header, pcm_crc32, read_container, write_container
from soundlm.compress.files import compress_files, decompress_files
from soundlm.compress.lossless import LosslessCodec, decode_segments, encode_segment, read_pcm
from soundlm.compress.sample_model import ACT_LIMIT, SampleModel, SampleModelConfig, log2_fixed

SR = 16000


def random_model(bits: int = 16, seed: int = 0, **kw) -> SampleModel:
    """A seeded float MLP quantised like a trained one (round trips hold for any weights)."""
    cfg = SampleModelConfig(bits=bits, **kw)
    rng = np.random.default_rng(seed)
    dims = [cfg.input_size] + [cfg.hidden] * cfg.layers + [2]
    layers = [(rng.normal(0, 1 / np.sqrt(a), (b, a)), rng.normal(0, 0.1, b)) for a, b in zip(dims[:-1], dims[1:])]
    return SampleModel.from_float(cfg, layers)


@pytest.fixture(scope="module")
def model() -> SampleModel:
    return random_model()


def speechlike(n: int, seed: int = 0) -> np.ndarray:
    """Decaying harmonics plus noise, 16-bit: a signal the LPC front end predicts well."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = sum(np.sin(2 * np.pi * 140 * k * t + rng.uniform(0, 6)) / k for k in range(1, 12))
    x = x * (0.3 + 0.7 * np.abs(np.sin(2 * np.pi * 3 * t))) * 6000 + rng.normal(0, 30, n)
    return np.clip(np.round(x), -32768, 32767).astype(np.int64)


SIGNALS = {
    "silence": lambda: np.zeros((1, 4000), np.int64),
    "full_scale_noise": lambda: np.random.default_rng(1).integers(-32768, 32768, (1, 5000)),
    "clipped_square": lambda: np.where((np.arange(6001) // 40) % 2 == 0, 32767, -32768)[None].astype(np.int64),
    "one_sample": lambda: np.array([[-12345]], np.int64),
    "odd_length": lambda: speechlike(3001)[None],
    "stereo": lambda: np.stack([speechlike(4099, 2), np.round(speechlike(4099, 3) * 0.5).astype(np.int64)]),
    "extremes": lambda: np.array([[-32768, 32767] * 700], np.int64),
}


def write_wav(path: Path, pcm: np.ndarray, bits: int = 16) -> Path:
    if bits == 16:
        sf.write(str(path), pcm.T.astype(np.int16), SR, subtype="PCM_16")
    else:
        sf.write(str(path), (pcm.T.astype(np.int16) << 8), SR, subtype="PCM_U8")
    return path


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_round_trip_is_bit_exact(model, tmp_path, name):
    pcm = SIGNALS[name]()
    src = write_wav(tmp_path / f"{name}.wav", pcm)
    codec = LosslessCodec(model, segment=2048)  # several segments per channel for the longer signals
    done = compress_files([src], tmp_path / "c", codec, progress=False)
    assert not done.failed
    back = decompress_files([tmp_path / "c"], tmp_path / "d", codec, progress=False)
    assert not back.failed
    # The wav soundfile wrote and the one decompress wrote are the same bytes.
    assert (tmp_path / "d" / f"{name}.wav").read_bytes() == src.read_bytes()


def test_eight_bit_model_round_trip(tmp_path):
    m8 = random_model(bits=8, seed=3)
    pcm = (speechlike(5001) >> 8)[None]
    src = write_wav(tmp_path / "x8.wav", pcm, bits=8)
    assert np.array_equal(read_pcm(src, 8).pcm, pcm)
    codec = LosslessCodec(m8)
    compress_files([src], tmp_path / "c", codec, progress=False)
    decompress_files([tmp_path / "c"], tmp_path / "d", codec, progress=False)
    assert np.array_equal(read_pcm(tmp_path / "d" / "x8.wav", 8).pcm, pcm)


def test_decoding_does_not_depend_on_batch(model):
    xs = [speechlike(n, seed) for seed, n in enumerate((3000, 1000, 2500, 1))]
    streams = [encode_segment(model, x) for x in xs]
    together = decode_segments(model, streams, [len(x) for x in xs])
    alone = [decode_segments(model, [s], [len(x)])[0] for s, x in zip(streams, xs)]
    for x, a, b in zip(xs, together, alone):
        assert np.array_equal(a, x) and np.array_equal(b, x)


def test_integer_forward_is_exact_in_any_batch(model):
    """Rows at the exactness bounds: a batched forward equals row-by-row forwards bit for bit."""
    rng = np.random.default_rng(0)
    inputs = rng.integers(-ACT_LIMIT, ACT_LIMIT, (257, model.config.input_size))
    mu, ls = model.forward(inputs)
    for i in range(0, 257, 37):
        m1, l1 = model.forward(inputs[i: i + 1])
        assert m1[0] == mu[i] and l1[0] == ls[i]


def test_log2_fixed_is_monotone_and_exact_at_powers_of_two():
    v = np.arange(1, 5000)
    y = log2_fixed(v)
    assert np.all(np.diff(y) >= 0)
    assert np.array_equal(log2_fixed(2 ** np.arange(20)), np.arange(20) * 256)


def test_streams_do_not_depend_on_thread_count(tmp_path, model):
    """Encode and decode in processes with 1 and 2 BLAS/OpenMP threads: the same bytes and samples."""
    model.save(tmp_path / "m")
    x = speechlike(20000, 5)
    np.save(tmp_path / "x.npy", x)
    script = ("import sys, numpy as np\n"
              "from soundlm.compress.sample_model import SampleModel\n"
              "from soundlm.compress.lossless import encode_segment, decode_segments\n"
              f"m = SampleModel.load({str(tmp_path / 'm')!r}); x = np.load({str(tmp_path / 'x.npy')!r})\n"
              "s = encode_segment(m, x); y = decode_segments(m, [s], [len(x)])[0]\n"
              "sys.stdout.write(s.hex() + ' ' + str(bool((y == x).all())))\n")
    outs = []
    for threads in ("1", "2"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        outs.append(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                   check=True).stdout)
    assert outs[0] == outs[1] and outs[0].endswith("True")


def test_model_save_load_keeps_hash(model, tmp_path):
    model.save(tmp_path / "m")
    loaded = SampleModel.load(tmp_path / "m")
    assert loaded.hash == model.hash
    assert random_model(seed=1).hash != model.hash


def test_other_model_refuses_to_decode(model, tmp_path):
    src = write_wav(tmp_path / "a.wav", SIGNALS["odd_length"]())
    compress_files([src], tmp_path / "c", LosslessCodec(model), progress=False)
    other = LosslessCodec(random_model(seed=7))
    summary = decompress_files([tmp_path / "c"], tmp_path / "d", other, progress=False)
    assert len(summary.failed) == 1 and not (tmp_path / "d" / "a.wav").exists()
    assert "compressed by model" in summary.failed[0].error and "--model" in summary.failed[0].error


def test_corrupted_stream_fails_its_crc(model, tmp_path):
    src = write_wav(tmp_path / "a.wav", SIGNALS["odd_length"]())
    codec = LosslessCodec(model)
    compress_files([src], tmp_path / "c", codec, progress=False)
    packed = tmp_path / "c" / "a.slmc"
    data = bytearray(packed.read_bytes())
    data[len(data) // 2] ^= 0x5A  # a byte in the middle of the code stream
    packed.write_bytes(bytes(data))
    summary = decompress_files([packed], tmp_path / "d", codec, progress=False)
    assert len(summary.failed) == 1
    assert "CRC mismatch" in summary.failed[0].error and str(packed) in summary.failed[0].error
    assert not (tmp_path / "d" / "a.wav").exists()


def test_corrupted_header_is_reported(model, tmp_path):
    path = tmp_path / "x.slmc"
    write_container(path, Header("lossless", 16, model.hash, SR, 1, 10, 16384, 0), [b"\0" * 8])
    data = bytearray(path.read_bytes())
    data[31] ^= 1  # inside the length field
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="header CRC mismatch"):
        read_container(path)
    path.write_bytes(b"RIFF" + bytes(60))
    with pytest.raises(ValueError, match="not a soundlm compressed file"):
        read_container(path)


def test_container_round_trip(tmp_path):
    h = Header("tokens", 16, bytes(range(16)), 24000, 2, 123456789, 77, 0xDEADBEEF)
    write_container(tmp_path / "f.slmc", h, [b"abcd", b"", b"efgh" * 3])
    h2, streams = read_container(tmp_path / "f.slmc")
    assert h2 == h and streams == [b"abcd", b"", b"efgh" * 3]


def test_bad_inputs_are_skipped_with_one_line_reasons(model, tmp_path):
    (tmp_path / "in").mkdir()
    good = write_wav(tmp_path / "in" / "good.wav", speechlike(3000)[None])
    sf.write(str(tmp_path / "in" / "b24.wav"), np.zeros(100, np.int32), SR, subtype="PCM_24")
    nan = np.zeros(100, np.float32)
    nan[5] = np.nan
    sf.write(str(tmp_path / "in" / "nan.wav"), nan, SR, subtype="FLOAT")
    sf.write(str(tmp_path / "in" / "float.wav"), np.zeros(100, np.float32), SR, subtype="FLOAT")
    (tmp_path / "in" / "junk.wav").write_bytes(b"not audio at all")
    summary = compress_files([tmp_path / "in"], tmp_path / "c", LosslessCodec(model), progress=False)
    assert [o.source for o in summary.done] == [good]
    reasons = {o.source.name: o.error for o in summary.failed}
    assert set(reasons) == {"b24.wav", "nan.wav", "float.wav", "junk.wav"}
    assert "24" in reasons["b24.wav"] and "16-bit PCM" in reasons["b24.wav"]
    assert "NaN" in reasons["nan.wav"]
    assert "float" in reasons["float.wav"].lower()
    assert "unreadable" in reasons["junk.wav"]
    for name, reason in reasons.items():
        assert name in reason and "\n" not in reason
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["errors.jsonl", "good.slmc"]
    with pytest.raises(AudioError):
        read_pcm(tmp_path / "in" / "b24.wav", 16)


def test_levinson_recovers_an_ar_process():
    rng = np.random.default_rng(0)
    x = np.zeros(20000)
    noise = rng.normal(0, 100, 20000)
    for t in range(2, 20000):
        x[t] = 1.6 * x[t - 1] - 0.8 * x[t - 2] + noise[t]
    coefs = lpc.fit_block(np.round(x).astype(np.int64), (0, 2, 4), 12)
    assert len(coefs) in (2, 4)
    assert np.allclose(coefs[:2] / 4096, [1.6, -0.8], atol=0.05)


def test_coder_round_trip_and_softmax_freqs():
    freqs = coder.softmax_freqs(np.array([0.0, 3.0, -50.0, 1.0]))
    assert freqs.min() >= 1 and freqs.sum() <= coder.FREQ_TOTAL
    model = coder.categorical(freqs)
    enc = coder.Encoder()
    symbols = [1, 1, 3, 2, 0, 1]
    for s in symbols:
        enc.encode(s, model)
    dec = coder.Decoder(coder.bytes_to_words(coder.words_to_bytes(enc.words())))
    assert [dec.decode(model) for _ in symbols] == symbols
    with pytest.raises(ValueError, match=">= 1"):
        coder.categorical(np.array([1, 0, 3]))
    with pytest.raises(ValueError, match="truncated"):
        coder.bytes_to_words(b"abc")


def test_pcm_crc_covers_channel_order():
    a = np.array([[1, 2], [3, 4]])
    assert pcm_crc32(a, 16) != pcm_crc32(a[::-1], 16)
