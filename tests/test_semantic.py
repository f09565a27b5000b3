import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from soundlm.semantic import (
    HFSSLFeatures,
    MelFeatures,
    MFCCFeatures,
    KMeansTokenizer,
    build_features,
    dedup,
    expand,
    features_from_config,
)
from soundlm.semantic.features import compute_deltas

SR = 16_000


def _tone(seconds: float, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    return (0.5 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


# ---------------------------------------------------------------- built-in features

@pytest.mark.parametrize("cls,dim", [(MFCCFeatures, 39), (MelFeatures, 80)])
def test_builtin_frame_count_is_floor_s_over_320(cls, dim):
    fx = cls().to("cpu")
    assert fx.frame_rate == 50.0 and fx.dim == dim and fx.min_samples == 320
    for s in (320, 639, 640, 8000, 16001):
        y = fx(torch.randn(2, 1, s))
        assert y.shape == (2, s // 320, dim) == (2, fx.num_frames(s), dim)
        assert torch.isfinite(y).all()


def test_builtin_features_deterministic_and_batch_independent():
    fx = MFCCFeatures().to("cpu")
    x = torch.randn(3, 1, 4000)
    a = fx(x)
    assert torch.equal(a, fx(x))
    assert torch.allclose(a[1:2], fx(x[1:2]), atol=1e-5)


def test_builtin_rejects_bad_input():
    fx = MelFeatures().to("cpu")
    with pytest.raises(ValueError, match="at least 320"):
        fx(torch.randn(1, 1, 100))
    with pytest.raises(ValueError, match=r"mono \[B, 1, S\]"):
        fx(torch.randn(1, 2, 1000))
    with pytest.raises(ValueError, match="torch.Tensor"):
        fx(np.zeros((1, 1, 1000), np.float32))


def test_deltas_of_linear_ramp_are_constant():
    x = torch.arange(20.0).view(1, 20, 1).repeat(1, 1, 2)
    d = compute_deltas(x)
    assert torch.allclose(d[:, 2:-2], torch.ones(1, 16, 2))


def test_features_from_config_round_trip():
    fx = MFCCFeatures(n_mfcc=10, deltas=False).to("cpu")
    again = features_from_config(json.loads(json.dumps(fx.describe())), device="cpu")
    assert isinstance(again, MFCCFeatures) and again.dim == 10
    x = torch.randn(1, 1, 3200)
    assert torch.equal(fx(x), again(x))
    with pytest.raises(ValueError, match="unknown features"):
        build_features("spectrogram")


# ---------------------------------------------------------------- Hugging Face SSL models

def _save_tiny_hf(kind: str, folder, stable: bool = False) -> None:
    import transformers as tf

    small = dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32)
    conv = dict(conv_dim=(8,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    if stable:
        conv.update(do_stable_layer_norm=True, feat_extract_norm="layer")
    model = {
        "hubert": lambda: tf.HubertModel(tf.HubertConfig(**small, **conv)),
        "wav2vec2": lambda: tf.Wav2Vec2Model(tf.Wav2Vec2Config(**small, **conv)),
        "wavlm": lambda: tf.WavLMModel(tf.WavLMConfig(**small, **conv, num_buckets=16, max_bucket_distance=80)),
        "wav2vec2-bert": lambda: tf.Wav2Vec2BertModel(tf.Wav2Vec2BertConfig(**small, output_hidden_size=16,
                                                                             conv_depthwise_kernel_size=3)),
    }[kind]()
    # No feature extractor is saved: the loader must fall back to the model's defaults.
    model.save_pretrained(folder)


@pytest.mark.parametrize("kind,stable", [("hubert", False), ("wav2vec2", False), ("wav2vec2", True),
                                         ("wavlm", False), ("wav2vec2-bert", False)])
def test_hf_features_frame_rate_and_layer(tmp_path, kind, stable):
    import transformers as tf

    _save_tiny_hf(kind, tmp_path / "m", stable)
    fx = HFSSLFeatures(tmp_path / "m", layer=2, device="cpu")
    assert fx.model_type == kind and fx.sample_rate == SR and fx.frame_rate == 50.0 and fx.dim == 16
    for s in (fx.min_samples, 8000, 16000, 16319):
        y = fx(torch.randn(2, 1, s))
        if kind == "wav2vec2-bert":
            expected = math.ceil(((s - 400) // 160 + 1) / 2)
        else:
            expected = (s - 400) // 320 + 1
        assert y.shape == (2, fx.num_frames(s), 16) and fx.num_frames(s) == expected
    # Dropping the layers above `layer` must not change hidden_states[layer].
    full = getattr(tf, fx.model.__class__.__name__).from_pretrained(tmp_path / "m").eval()
    x = torch.randn(1, 1, 8000)
    with torch.no_grad():
        if kind == "wav2vec2-bert":
            inp = tf.SeamlessM4TFeatureExtractor()(list(x[:, 0].numpy()), sampling_rate=SR, return_tensors="pt")
            ref = full(input_features=inp["input_features"], output_hidden_states=True).hidden_states[2]
        else:
            v = x[:, 0]
            if fx.do_normalize:
                v = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + 1e-7)
            ref = full(input_values=v, output_hidden_states=True).hidden_states[2]
    assert torch.allclose(fx(x), ref, atol=1e-5)
    assert fx.do_normalize == (stable or kind == "wav2vec2-bert")


def test_hf_features_reads_saved_feature_extractor_and_checks_layer(tmp_path):
    import transformers as tf

    _save_tiny_hf("hubert", tmp_path / "m")
    tf.Wav2Vec2FeatureExtractor(do_normalize=True).save_pretrained(tmp_path / "m")
    assert HFSSLFeatures(tmp_path / "m", layer=0, device="cpu").do_normalize is True
    with pytest.raises(ValueError, match=r"layer must be in \[0, 3\]"):
        HFSSLFeatures(tmp_path / "m", layer=4, device="cpu")
    with pytest.raises(ValueError, match="needs a model"):
        build_features("hf", layer=1)


# ---------------------------------------------------------------- tokenizer

def _tokenizer(k: int = 8) -> KMeansTokenizer:
    fx = MFCCFeatures().to("cpu")
    frames = fx(torch.from_numpy(_tone(1.0))[None, None])[0]  # [T, D]
    return KMeansTokenizer(fx, frames[torch.linspace(0, len(frames) - 1, k).long()])


def test_tokenizer_encode_shapes_and_determinism():
    tok = _tokenizer()
    assert tok.vocab_size == 8 and tok.sample_rate == SR and tok.frame_rate == 50.0
    audio = torch.from_numpy(np.stack([_tone(0.5, 200), _tone(0.5, 800)]))[:, None]  # [2, 1, S]
    ids = tok.encode(audio)
    assert ids.shape == (2, tok.num_frames(audio.shape[-1])) and ids.dtype == torch.int64
    assert int(ids.min()) >= 0 and int(ids.max()) < 8
    assert torch.equal(ids, tok.encode(audio))


def test_tokenizer_save_load_round_trip(tmp_path):
    tok = _tokenizer()
    tok.save(tmp_path / "tok")
    cfg = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert cfg["type"] == "soundlm-semantic" and cfg["features"]["kind"] == "mfcc" and cfg["num_clusters"] == 8
    again = KMeansTokenizer.load(tmp_path / "tok", device="cpu")
    audio = torch.from_numpy(_tone(0.7, 300))[None, None]
    assert torch.equal(tok.encode(audio), again.encode(audio))
    assert again.describe()["source"] == str((tmp_path / "tok").resolve())


def test_tokenizer_hf_save_load_round_trip(tmp_path):
    _save_tiny_hf("hubert", tmp_path / "m")
    fx = HFSSLFeatures(tmp_path / "m", layer=1, device="cpu")
    tok = KMeansTokenizer(fx, torch.randn(5, 16))
    tok.save(tmp_path / "tok")
    cfg = json.loads((tmp_path / "tok" / "config.json").read_text())
    assert cfg["features"]["model"] == str((tmp_path / "m").resolve()) and cfg["features"]["layer"] == 1
    again = KMeansTokenizer.load(tmp_path / "tok", device="cpu")
    audio = torch.randn(2, 1, 8000)
    assert torch.equal(tok.encode(audio), again.encode(audio))


def test_tokenizer_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        KMeansTokenizer.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"type": "soundlm-codec"}))
    with pytest.raises(ValueError, match="not a semantic tokenizer"):
        KMeansTokenizer.load(tmp_path)
    with pytest.raises(ValueError, match="fit the centroids on these features"):
        KMeansTokenizer(MelFeatures(), torch.randn(4, 39))


# ---------------------------------------------------------------- dedup

@pytest.mark.parametrize("as_numpy", [False, True])
def test_dedup_invariants(as_numpy):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 4, (200,), generator=g)  # many runs
    seq = ids.numpy() if as_numpy else ids
    out = dedup(seq)
    assert type(out.ids) is type(seq)
    d_ids, durs = (torch.as_tensor(out.ids), torch.as_tensor(out.durations))
    assert (d_ids[1:] != d_ids[:-1]).all()  # no two neighbours equal
    assert (durs > 0).all() and int(durs.sum()) == 200
    restored = expand(out.ids, out.durations)
    assert (torch.as_tensor(restored) == ids).all()
    ids2, durs2 = dedup(seq)  # unpacks as a pair
    assert len(ids2) == len(durs2)


def test_dedup_edge_cases():
    assert dedup(torch.tensor([7, 7, 7])).durations.tolist() == [3]
    assert dedup(np.array([], dtype=np.int64)).ids.size == 0
    with pytest.raises(ValueError, match="loop over the batch"):
        dedup(torch.zeros(2, 5, dtype=torch.long))


# ---------------------------------------------------------------- train command

def _corpus(root, n: int = 4):
    root.mkdir()
    for i in range(n):
        sf.write(root / f"good{i}.wav", _tone(1.0 + 0.3 * i, 150 + 120 * i, seed=i), SR)
    (root / "broken.wav").write_bytes(b"RIFF not really a wave file")
    sf.write(root / "silent.wav", np.zeros(SR, np.float32), SR)
    return root


def test_train_semantic_cli_skips_and_logs_bad_files(tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    corpus = _corpus(tmp_path / "corpus")
    out = tmp_path / "tok"
    res = CliRunner().invoke(app, ["train", "semantic", str(corpus), "--out", str(out), "--clusters", "6",
                                   "--max-frames", "5000", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "2 skipped" in res.output and "cluster usage" in res.output
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["path"].rsplit("/", 1)[-1] for e in errors) == ["broken.wav", "silent.wav"]
    assert all(e["reason"] for e in errors)
    log = json.loads((out / "train_log.json").read_text())
    assert log["sampled_frames"] == log["total_frames"] == sum(int((1.0 + 0.3 * i) * SR) // 320 for i in range(4))
    assert sum(log["cluster_counts"]) == log["sampled_frames"]
    assert not (out / ".work").exists()
    tok = KMeansTokenizer.load(out, device="cpu")
    assert tok.vocab_size == 6
    ids = tok.encode(torch.from_numpy(_tone(1.0, 150))[None, None])
    assert ids.shape == (1, 50)


def test_train_semantic_resume_matches_uninterrupted_run(tmp_path, monkeypatch):
    import soundlm.train.semantic as ts

    corpus = _corpus(tmp_path / "corpus")
    cfg = ts.SemanticTrainConfig(features="mel", clusters=4, max_frames=60, checkpoint_every=1, chunk_seconds=0.5,
                                 batch_size=3)
    ref = ts.train_semantic(corpus, tmp_path / "ref", cfg, device="cpu", progress=False)
    assert ref.sampled_frames <= 60

    real_load, calls = ts.audio_io.load_audio, []

    def crashing_load(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt  # a kill in the middle of the corpus
        return real_load(*args, **kwargs)

    monkeypatch.setattr(ts.audio_io, "load_audio", crashing_load)
    with pytest.raises(KeyboardInterrupt):
        ts.train_semantic(corpus, tmp_path / "run", cfg, device="cpu", progress=False)
    state = json.loads((tmp_path / "run" / ".work" / "state.json").read_text())
    assert state["next_file"] == 3
    monkeypatch.setattr(ts.audio_io, "load_audio", real_load)
    resumed = ts.train_semantic(corpus, tmp_path / "run", cfg, device="cpu", progress=False)
    assert resumed.sampled_frames == ref.sampled_frames and resumed.num_errors == ref.num_errors == 2
    a = KMeansTokenizer.load(tmp_path / "ref", device="cpu").centroids
    b = KMeansTokenizer.load(tmp_path / "run", device="cpu").centroids
    assert torch.equal(a, b)


def test_train_semantic_reads_manifest_and_rejects_tiny_corpus(tmp_path):
    import soundlm.train.semantic as ts
    from soundlm.data import open_corpus

    corpus = _corpus(tmp_path / "corpus", n=2)
    rows = [{"id": f"u{i}", "path": f"good{i}.wav", "duration": 1.0, "sample_rate": SR, "speaker": "s",
             "language": "en", "transcript": "", "split": split} for i, split in enumerate(["train", "heldout"])]
    (corpus / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    files = [item.path for item in open_corpus(corpus / "manifest.jsonl", split=ts.SemanticTrainConfig().split)]
    assert [f.name for f in files] == ["good0.wav"]
    assert len(open_corpus(corpus, split=None)) == 2
    with pytest.raises(ValueError, match="fewer than 100 clusters"):
        ts.train_semantic(corpus, tmp_path / "out", ts.SemanticTrainConfig(clusters=100), device="cpu",
                          progress=False)


def test_kmeans_tokenizer_meets_the_semantic_contract(tmp_path):
    """What the pipeline, the store and AudioTokenizer rely on: the SemanticTokenizer protocol."""
    from soundlm.semantic import MFCCFeatures, SemanticTokenizer, load_semantic_tokenizer
    from soundlm.semantic.tokenizer import KMeansTokenizer

    tok = KMeansTokenizer(MFCCFeatures(), torch.randn(8, 39))
    assert isinstance(tok, SemanticTokenizer)
    tok.save(tmp_path / "tok")
    again = load_semantic_tokenizer(tmp_path / "tok")
    # describe() also names the folder a loaded tokenizer came from.
    assert isinstance(again, SemanticTokenizer) and {**again.describe(), "source": None} == {**tok.describe(),
                                                                                            "source": None}
    audio = torch.randn(2, 1, 8000) * 0.1
    assert torch.equal(again.encode(audio), tok.encode(audio)) and tok.encode(audio).shape[1] == tok.num_frames(8000)
    with pytest.raises(FileNotFoundError, match="train one with `soundlm train semantic`"):
        load_semantic_tokenizer(tmp_path / "missing")
