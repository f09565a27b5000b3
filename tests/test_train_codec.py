import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from soundlm.codec import SoundStreamCodec, codec_16k_tiny, load_codec
from soundlm.codec.losses import MultiScaleMelLoss
from soundlm.train.codec import CodecTrainConfig, train_codec

SR = 16_000


def harmonic(seconds: float, f0: float, seed: int) -> np.ndarray:
    """A few harmonics with a slow amplitude envelope: easy, speech-like structure."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = sum(0.3 / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) for k in range(1, 6))
    return (x * 0.5 * (1 + np.sin(2 * np.pi * rng.uniform(1, 4) * t))).astype(np.float32)


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "audio"
    folder.mkdir()
    for i, f0 in enumerate((110, 165, 220, 275, 330)):
        sf.write(folder / f"h{i}.wav", harmonic(0.6, f0, i), SR)
    return folder


def _cfg(data, out, **kw) -> CodecTrainConfig:
    base = dict(data=str(data), out=str(out), preset="tiny", steps=8, batch_size=3, segment_seconds=0.2, lr=3e-3,
                adversarial=False, ckpt_every=4, eval_every=4, sample_every=4, log_every=1, heldout_fraction=0.2,
                eval_clips=2, eval_seconds=0.3, disc_filters=4, tensorboard=False)
    base.update(kw)
    return CodecTrainConfig(**base)


def _train_lines(run):
    lines = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]
    return [l for l in lines if l["kind"] == "train"]


def test_training_lowers_reconstruction_loss(corpus, tmp_path):
    run = tmp_path / "run"
    result = train_codec(_cfg(corpus, run, steps=60, ckpt_every=60, eval_every=30, log_every=2))
    lines = _train_lines(run)
    first = np.mean([l["mel"] for l in lines[:3]])
    last = np.mean([l["mel"] for l in lines[-3:]])
    assert last < 0.85 * first, (first, last)
    # The exported codec reconstructs unseen harmonic audio better than the untrained one.
    trained = load_codec(run, device="cpu")
    assert trained.source == str(result.final_dir)
    fresh = SoundStreamCodec(codec_16k_tiny())
    fresh(torch.randn(2, 1, 3200) * 0.1)  # initialise its codebooks so the comparison is fair
    fresh.eval()
    x = torch.from_numpy(harmonic(0.4, 190, 99)).view(1, 1, -1)
    mel = MultiScaleMelLoss(SR)
    with torch.no_grad():
        err = [float(mel(c.decode(c.encode(x))[..., : x.shape[-1]], x)) for c in (trained, fresh)]
    assert err[0] < err[1], err
    evals = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"eval"' in l]
    assert [e["step"] for e in evals] == [30, 60]
    assert all(math.isfinite(e["si_sdr@4"]) and e["mel_distance@1"] > 0 for e in evals)
    assert (run / "final" / "config.json").exists()
    assert sorted(p.name for p in (run / "samples" / "step_00000060").iterdir())[0].endswith("_orig.wav")


def test_resume_equals_uninterrupted(corpus, tmp_path):
    kw = dict(adversarial=True, adv_start_step=2)
    straight = tmp_path / "straight"
    train_codec(_cfg(corpus, straight, **kw))
    resumed = tmp_path / "resumed"
    first = train_codec(_cfg(corpus, resumed, steps=4, **kw))
    assert first.step == 4 and first.resumed_from == 0
    second = train_codec(_cfg(corpus, resumed, **kw))
    assert second.resumed_from == 4 and second.step == 8
    a = _train_lines(straight)
    b = _train_lines(resumed)
    assert [l["step"] for l in b] == list(range(1, 9))
    for la, lb in zip(a, b):
        assert la.keys() == lb.keys()
        for k in la:
            if isinstance(la[k], str):
                assert la[k] == lb[k]
            else:
                assert la[k] == pytest.approx(lb[k], rel=1e-6, abs=1e-7), (la["step"], k)
    wa = load_codec(straight, device="cpu").state_dict()
    wb = load_codec(resumed, device="cpu").state_dict()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k  # bitwise: same batches, same RNG, same order of ops
    sa = torch.load(straight / "checkpoints" / "step_00000008" / "train_state.pt", weights_only=False)
    sb = torch.load(resumed / "checkpoints" / "step_00000008" / "train_state.pt", weights_only=False)
    for k, v in sa["discriminator"].items():
        assert torch.allclose(v, sb["discriminator"][k], atol=1e-7), k
    assert sb["data"]["next_step"] == 9


def test_resume_with_other_options_refuses(corpus, tmp_path):
    run = tmp_path / "run"
    train_codec(_cfg(corpus, run, steps=2, ckpt_every=2))
    with pytest.raises(ValueError, match="batch_size"):
        train_codec(_cfg(corpus, run, steps=4, batch_size=5))


def test_bad_files_are_skipped_and_logged(corpus, tmp_path):
    (corpus / "garbage.wav").write_bytes(b"not audio at all")
    sf.write(corpus / "silent.wav", np.zeros(SR // 2, dtype=np.float32), SR)
    nan = harmonic(0.5, 200, 7)
    nan[100:200] = np.nan
    sf.write(corpus / "nan.wav", nan, SR, subtype="FLOAT")
    run = tmp_path / "run"
    train_codec(_cfg(corpus, run, steps=2, ckpt_every=2, eval_every=2))
    errors = [json.loads(l) for l in (run / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["path"].rsplit("/", 1)[-1] for e in errors) == ["garbage.wav", "nan.wav", "silent.wav"]
    assert all(e["reason"] for e in errors)
    assert load_codec(run, device="cpu").sample_rate == SR


def test_no_usable_audio_raises(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "x.wav").write_bytes(b"junk")
    with pytest.raises(ValueError, match="none of the 1 files"):
        train_codec(_cfg(folder, tmp_path / "run"))
    with pytest.raises(FileNotFoundError):
        train_codec(_cfg(tmp_path / "missing", tmp_path / "run2"))


def test_manifest_input_and_cli(corpus, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    rows = [{"id": f"h{i}", "path": f"h{i}.wav", "duration": 0.6, "sample_rate": SR, "speaker": "s",
             "language": "en", "transcript": "", "split": "heldout" if i == 0 else "train"} for i in range(5)]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "codec", str(corpus / "manifest.jsonl"), "--out", str(run),
                                   "--preset", "tiny", "--steps", "2", "--batch-size", "2", "--segment-seconds",
                                   "0.2", "--no-adversarial", "--ckpt-every", "2", "--eval-every", "2"])
    assert res.exit_code == 0, res.output
    assert "exported" in res.output
    samples = sorted(p.name for p in (run / "samples" / "step_00000002").iterdir())
    assert samples[0].startswith("00_h0")  # the manifest's held-out file is the evaluation clip
    res = CliRunner().invoke(app, ["train", "codec", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "nowhere" in res.output


def test_scan_takes_corpus_ids_and_holds_out_loose_files_by_relative_path(corpus, tmp_path):
    import zlib

    from soundlm.train.codec import scan_corpus

    (corpus / "sub").mkdir()
    sf.write(corpus / "sub" / "h9.flac", harmonic(0.6, 400, 9), SR)
    items, _ = scan_corpus(corpus, SR, 0.4, 3600.0, tmp_path / "errors.jsonl")
    assert [it.id for it in items] == ["h0", "h1", "h2", "h3", "h4", "sub/h9"]  # open_corpus ids
    # The hash-chosen hold-out keys on the path with its extension, as this trainer always did.
    rels = ["h0.wav", "h1.wav", "h2.wav", "h3.wav", "h4.wav", "sub/h9.flac"]
    assert [it.holdout_key for it in items] == rels
    held = sorted(rels, key=lambda r: zlib.crc32(r.encode()))[:math.ceil(0.4 * len(rels))]
    assert sorted(it.holdout_key for it in items if it.split == "heldout") == sorted(held)


def test_decoder_only_fine_tuning_keeps_the_codes_and_changes_the_decoder(corpus, tmp_path):
    """--init-from + --decoder-only: the encoder and quantizer (EMA codebooks included) are the start codec's, so
    every code is; the decoder trains, with the low-band loss logged; without --init-from it is refused."""
    start = train_codec(_cfg(corpus, tmp_path / "start", steps=4, ckpt_every=4)).final_dir
    tuned = train_codec(_cfg(corpus, tmp_path / "ft", steps=4, ckpt_every=4, init_from=str(start), decoder_only=True,
                             lowband_weight=1.0, preset="small")).final_dir
    a, b = load_codec(str(start), device="cpu"), load_codec(str(tuned), device="cpu")
    assert a.config == b.config  # the start codec's architecture, not --preset small's
    sa, sb = a.state_dict(), b.state_dict()
    kept = [k for k in sa if k.startswith(("encoder.", "quantizer."))]
    assert kept and all(torch.equal(sa[k], sb[k]) for k in kept)
    assert any(not torch.equal(sa[k], sb[k]) for k in sa if k.startswith("decoder."))
    x = torch.from_numpy(harmonic(0.5, 200, 9))[None, None]
    with torch.no_grad():
        assert torch.equal(a.encode(x), b.encode(x))
    assert all("lowband" in line for line in _train_lines(tmp_path / "ft"))
    with pytest.raises(ValueError, match="--init-from"):
        train_codec(_cfg(corpus, tmp_path / "bad", decoder_only=True))
