import math

import pytest
import torch

from soundlm.codec import SoundStreamCodec, codec_16k_small, codec_16k_tiny, codec_24k_base, load_codec
from soundlm.codec.discriminator import (MultiScaleSTFTDiscriminator, discriminator_loss, feature_matching_loss,
                                         generator_adversarial_loss)
from soundlm.codec.losses import MultiResolutionSTFTLoss, MultiScaleMelLoss, mel_filterbank, si_sdr
from soundlm.codec.seanet import SEANetEncoder


def _tiny(causal: bool = True) -> SoundStreamCodec:
    cfg = codec_16k_tiny()
    cfg.causal = causal
    return SoundStreamCodec(cfg)


@pytest.mark.parametrize("causal", [True, False])
def test_round_trip_shapes_and_dtype(causal):
    codec = _tiny(causal)
    codec(torch.randn(2, 1, 3200) * 0.1)  # one training pass initialises the codebooks
    codec.eval()
    x = torch.randn(2, 1, 3000) * 0.1  # not a hop multiple: encode pads
    codes = codec.encode(x)
    assert codes.shape == (2, 4, codec.num_frames(3000)) == (2, 4, 10)
    assert codes.dtype == torch.int64
    assert int(codes.min()) >= 0 and int(codes.max()) < codec.codebook_size
    y = codec.decode(codes)
    assert y.shape == (2, 1, 10 * 320) and y.dtype == torch.float32
    out = codec(x)
    assert out.audio.shape == x.shape and out.codes.shape == (2, 4, 10)


def test_rates_and_set_num_codebooks():
    codec = _tiny().eval()
    assert codec.frame_rate == 50.0 and codec.sample_rate == 16_000
    full = codec.bitrate
    assert full == pytest.approx(50 * 4 * math.log2(64))
    codec.set_num_codebooks(2)
    assert codec.num_codebooks == 2 and codec.bitrate == pytest.approx(full / 2)
    codes = codec.encode(torch.randn(1, 1, 640))
    assert codes.shape[1] == 2
    assert codec.decode(codes).shape == (1, 1, 640)
    with pytest.raises(ValueError, match="num_codebooks"):
        codec.set_num_codebooks(5)


def test_presets():
    small = codec_16k_small()
    assert small.frame_rate == 50 and small.n_q == 8 and small.codebook_size == 1024
    assert small.frame_rate * small.n_q * math.log2(small.codebook_size) == 4000
    assert codec_24k_base().frame_rate == 75


def test_bad_input_raises():
    codec = _tiny().eval()
    with pytest.raises(ValueError, match=r"\[B, C, S\]"):
        codec.encode(torch.randn(1, 100))
    with pytest.raises(ValueError, match="channel"):
        codec.encode(torch.randn(1, 2, 320))
    with pytest.raises(ValueError, match="codes must lie"):
        codec.decode(torch.full((1, 2, 3), 64))


def test_save_load_equality(tmp_path):
    codec = _tiny()
    codec(torch.randn(2, 1, 3200) * 0.1)
    codec.eval()
    codec.save_pretrained(tmp_path / "c")
    assert {p.name for p in (tmp_path / "c").iterdir()} == {"config.json", "model.safetensors"}
    loaded = load_codec(tmp_path / "c", device="cpu")
    assert isinstance(loaded, SoundStreamCodec)
    x = torch.randn(1, 1, 1600) * 0.1
    assert torch.equal(codec.encode(x), loaded.encode(x))
    assert torch.allclose(codec.decode(codec.encode(x)), loaded.decode(loaded.encode(x)))
    for (k, a), (_, b) in zip(codec.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), k


def test_load_codec_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_codec(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_codec(tmp_path / "empty")


def test_causal_encoder_has_no_future_gradient():
    enc = SEANetEncoder(channels=1, dimension=8, n_filters=4, ratios=(4, 2), causal=True)
    hop = 8
    x = torch.randn(1, 1, 20 * hop, requires_grad=True)
    z = enc(x)  # [1, 8, 20]
    t = 9
    z[0, :, t].sum().backward()
    grad = x.grad[0, 0]
    assert grad[(t + 1) * hop:].abs().max() == 0  # nothing after frame t's window
    assert grad[: (t + 1) * hop].abs().max() > 0
    # the non-causal encoder does look ahead
    enc_nc = SEANetEncoder(channels=1, dimension=8, n_filters=4, ratios=(4, 2), causal=False)
    x.grad = None
    enc_nc(x)[0, :, t].sum().backward()
    assert x.grad[0, 0, (t + 1) * hop:].abs().max() > 0


def test_causal_codec_decoder_is_causal():
    codec = _tiny(causal=True)
    z = torch.randn(1, 16, 12, requires_grad=True)
    y = codec.decoder(z)  # [1, 1, 12 * 320]
    t = 5
    y[0, 0, t * 320 - 1].backward()  # last sample of frame t-1
    assert z.grad[0, :, t:].abs().max() == 0


def test_losses_and_metrics():
    sr = 16_000
    t = torch.arange(8000) / sr
    clean = (0.5 * torch.sin(2 * math.pi * 220 * t)).view(1, 1, -1)
    noisy = clean + 0.05 * torch.randn_like(clean)
    mel, stft = MultiScaleMelLoss(sr), MultiResolutionSTFTLoss()
    assert mel(clean, clean).item() == pytest.approx(0.0, abs=1e-6)
    assert stft(clean, clean).item() == pytest.approx(0.0, abs=1e-6)
    assert mel(noisy, clean) > 0 and stft(noisy, clean) > 0
    assert mel(clean + 0.2 * torch.randn_like(clean), clean) > mel(noisy, clean)
    assert si_sdr(clean, clean).item() > 60
    assert si_sdr(3 * clean, clean).item() > 60  # scale invariant
    assert 15 < si_sdr(noisy, clean).item() < 25
    fb = mel_filterbank(sr, 512, 40)
    assert fb.shape == (40, 257) and torch.all(fb >= 0) and torch.all(fb.sum(1) > 0)


def test_discriminator_and_gan_losses():
    disc = MultiScaleSTFTDiscriminator(filters=4, n_ffts=(256, 512))
    real, fake = torch.randn(2, 1, 4000), torch.randn(2, 1, 4000, requires_grad=True)
    r, f = disc(real), disc(fake)
    assert len(r.logits) == 2 and all(l.shape[:2] == (2, 1) for l in r.logits)
    for kind in ("hinge", "lsgan"):
        assert discriminator_loss(r.logits, f.logits, kind) >= 0
        assert generator_adversarial_loss(f.logits, kind) >= 0
    fm = feature_matching_loss(r.features, f.features)
    (fm + generator_adversarial_loss(f.logits)).backward()
    assert fake.grad.abs().sum() > 0
    assert feature_matching_loss(r.features, disc(real).features).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="hinge"):
        generator_adversarial_loss(f.logits, "wgan")


# ----------------------------------------------------------------------------- istft architecture

def _tiny_istft() -> SoundStreamCodec:
    cfg = codec_16k_tiny()
    cfg.causal, cfg.architecture, cfg.hidden, cfg.frame_blocks, cfg.fine_blocks = False, "istft", 16, 1, 1
    return SoundStreamCodec(cfg)


def test_istft_codec_round_trip_and_save_load(tmp_path):
    codec = _tiny_istft()
    codec(torch.randn(2, 1, 3200) * 0.1)
    codec.eval()
    x = torch.randn(2, 1, 3000) * 0.1
    codes = codec.encode(x)
    assert codes.shape == (2, 4, 10)
    assert codec.decode(codes).shape == (2, 1, 3200)
    assert codec(x).audio.shape == x.shape
    codec.save_pretrained(tmp_path / "c")
    loaded = load_codec(tmp_path / "c", device="cpu")
    assert loaded.config.architecture == "istft"
    assert torch.equal(codec.encode(x), loaded.encode(x))
    assert torch.allclose(codec.decode(codes), loaded.decode(codes))


def test_istft_decoder_inverts_a_predicted_spectrogram():
    """With a head that outputs the log-magnitude and phase of a known signal's STFT, the
    decoder returns that signal: the inverse STFT and the frame bookkeeping are exact."""
    from soundlm.codec.istft import ISTFTDecoder

    dec = ISTFTDecoder(channels=1, dimension=8, hop_length=320, upsample=2, hidden=8, frame_blocks=1, fine_blocks=1)
    t = 6
    x = torch.randn(1, t * 320) * 0.1
    spec = torch.stft(x, dec.n_fft, dec.stft_hop, window=dec.window, center=True, return_complex=True)
    target = torch.cat([spec.abs().clamp(min=1e-7).log(), spec.angle()], dim=1)[..., : t * 2]  # [1, 2F, T*up]

    class Constant(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return target

    # Bypass the backbone: the head "predicts" the known spectrogram.
    dec.inp, dec.frame, dec.up, dec.fine, dec.head = (Constant(), torch.nn.Identity(), torch.nn.Identity(),
                                                      torch.nn.Identity(), torch.nn.Identity())
    y = dec(torch.zeros(1, 8, t))
    assert y.shape == (1, 1, t * 320)
    # The last hop is rebuilt from a copied frame; everything before it is exact.
    assert torch.allclose(y[0, 0, : (t - 1) * 320], x[0, : (t - 1) * 320], atol=1e-4)


def test_istft_architecture_rejects_causal():
    cfg = codec_16k_tiny()
    cfg.architecture = "istft"
    with pytest.raises(ValueError, match="not causal"):
        SoundStreamCodec(cfg)
    cfg.architecture = "wavenet"
    with pytest.raises(ValueError, match="unknown codec architecture"):
        SoundStreamCodec(cfg)
