"""HF backends through the real from_pretrained path: tiny random models saved to tmp folders."""

import math

import pytest
import torch

from soundlm.codec import load_codec
from soundlm.codec.hf import HFCodec

SR = 16_000


def _encodec(folder):
    from transformers import EncodecConfig, EncodecModel

    # hop 16 -> 1000 Hz, 6 bits per code -> 6 kbps per codebook: bandwidths 6/12/24 = 1/2/4 codebooks
    cfg = EncodecConfig(target_bandwidths=[6.0, 12.0, 24.0], sampling_rate=SR, audio_channels=1, num_filters=4,
                        upsampling_ratios=[4, 4], codebook_size=64, codebook_dim=16, hidden_size=16,
                        num_lstm_layers=1, num_residual_layers=1)
    EncodecModel(cfg).save_pretrained(folder)
    return 16, 4, 1


def _dac(folder):
    from transformers import DacConfig, DacModel

    cfg = DacConfig(encoder_hidden_size=4, downsampling_ratios=[2, 4], decoder_hidden_size=16, n_codebooks=3,
                    codebook_size=64, codebook_dim=4, hidden_size=16, sampling_rate=SR)
    DacModel(cfg).save_pretrained(folder)
    return 8, 3, 1


def _mimi(folder):
    from transformers import MimiConfig, MimiModel

    cfg = MimiConfig(hidden_size=16, num_filters=4, upsampling_ratios=[4, 4], codebook_size=64, codebook_dim=16,
                     num_quantizers=4, num_semantic_quantizers=1, num_hidden_layers=1, num_attention_heads=2,
                     num_key_value_heads=2, head_dim=8, intermediate_size=32, sampling_rate=SR, sliding_window=16,
                     upsample_groups=16, vector_quantization_hidden_dimension=16)
    MimiModel(cfg).save_pretrained(folder)
    return 32, 4, 2  # Mimi halves the encoder rate once more; it needs its semantic codebook


BACKENDS = {"encodec": _encodec, "dac": _dac, "mimi": _mimi}


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_hf_backend_round_trip(name, tmp_path):
    hop, total, fewer = BACKENDS[name](tmp_path / name)
    codec = load_codec(str(tmp_path / name), device="cpu")
    assert isinstance(codec, HFCodec) and codec.model_type == name
    assert codec.sample_rate == SR and codec.channels == 1
    assert codec.frame_rate == SR / hop and codec.total_codebooks == total == codec.num_codebooks
    x = torch.randn(2, 1, 10 * hop - 3) * 0.1  # padded to 10 frames
    codes = codec.encode(x)
    assert codes.shape == (2, total, 10) == (2, total, codec.num_frames(x.shape[-1]))
    assert codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < codec.codebook_size
    y = codec.decode(codes)
    assert y.dim() == 3 and y.shape[:2] == (2, 1) and y.dtype == torch.float32
    assert y.shape[-1] == 10 * hop

    full_rate = codec.bitrate
    assert full_rate == pytest.approx(SR / hop * total * math.log2(64))
    codec.set_num_codebooks(fewer)
    assert codec.bitrate < full_rate
    low = codec.encode(x)
    assert low.shape == (2, fewer, 10)
    # Residual codes are prefix-stable: the first codebooks do not depend on how many follow.
    assert torch.equal(low, codes[:, :fewer])
    assert codec.decode(low).shape == y.shape
    with pytest.raises(ValueError, match="num_codebooks"):
        codec.set_num_codebooks(total + 1)
    assert codec.describe()["backend"] == f"hf-{name}"


def test_hf_folder_that_is_not_a_codec(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8).save_pretrained(
        tmp_path / "bert")
    with pytest.raises(ValueError, match="model_type"):
        load_codec(str(tmp_path / "bert"), device="cpu")
