from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from tiny_bundle import SR, make_tiny_bundle, tone

import soundlm.pretrained as pretrained
from soundlm.pipeline import AudioLMSampling
from soundlm.sampler import SamplingParams


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("pretrained"))


@pytest.fixture(scope="module")
def fp16(bundle, tmp_path_factory) -> pretrained.Fp16Export:
    return pretrained.export_bundle_fp16(bundle, tmp_path_factory.mktemp("fp16") / "bundle-fp16")


def _dtypes(path: Path) -> dict[str, torch.dtype]:
    with safe_open(str(path), framework="pt") as f:
        return {name: f.get_tensor(name).dtype for name in f.keys()}


def test_fp16_export_halves_floats_and_keeps_integers(bundle, fp16):
    out = fp16.out_dir
    src_files = sorted(p.relative_to(bundle) for p in bundle.rglob("*") if p.is_file())
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == src_files
    assert sorted(fp16.files) == sorted(str(p) for p in src_files if p.suffix == ".safetensors")
    assert len(fp16.files) == 5  # three stages, the centroids, the codec
    for rel in fp16.files:
        before, after = _dtypes(bundle / rel), _dtypes(out / rel)
        # The codec's training-only EMA sums are left out of the export, nothing else.
        dropped = {n for n in before if n.endswith(".embed_avg")} if rel.startswith("codec") else set()
        assert before.keys() - dropped == after.keys()
        before = {n: d for n, d in before.items() if n not in dropped}
        for name, dtype in before.items():
            if dtype.is_floating_point:
                assert after[name] == torch.float16, (rel, name)
            else:
                assert after[name] == dtype, (rel, name)  # e.g. the codec's bool `inited` flags
    assert any(not d.is_floating_point for d in _dtypes(out / "codec" / "model.safetensors").values())
    assert (out / "coarse" / "config.json").read_bytes() == (bundle / "coarse" / "config.json").read_bytes()
    assert fp16.converted > 0 and fp16.kept == []
    assert fp16.bytes_after < 0.6 * fp16.bytes_before
    assert any(n.endswith(".embed_avg") for n in _dtypes(bundle / "codec" / "model.safetensors"))
    assert not any(n.endswith(".embed_avg") for n in _dtypes(out / "codec" / "model.safetensors"))


def test_fp16_export_keeps_float32_where_float16_overflows(bundle, tmp_path):
    from safetensors.torch import load_file, save_file

    copy = pretrained.export_bundle_fp16(bundle, tmp_path / "copy").out_dir  # an fp16 bundle re-exports too
    weights = copy / "semantic_tokenizer" / "centroids.safetensors"
    centroids = load_file(str(weights))["centroids"].float()
    centroids[0, 0] = 1e6  # MFCC energies can be large; 1e6 is inf in float16
    save_file({"centroids": centroids}, str(weights))
    result = pretrained.export_bundle_fp16(copy, copy)  # in place
    assert result.kept == ["semantic_tokenizer/centroids.safetensors:centroids"]
    assert load_file(str(weights))["centroids"][0, 0].item() == 1e6


def test_fp16_bundle_loads_as_float32_and_continues_like_the_original(bundle, fp16):
    full = pretrained.load_pipeline(bundle, device="cpu")
    half = pretrained.load_pipeline(fp16.out_dir, device="cpu")
    for pipe in (full, half):
        modules = (pipe.codec, pipe.semantic_tokenizer, pipe.semantic.model, pipe.coarse.model, pipe.fine.model)
        assert all(t.dtype == torch.float32 for m in modules for t in list(m.parameters()) + list(m.buffers())
                   if t.is_floating_point())
    # Logits of every stage barely move when the weights are rounded to float16.
    tokens = torch.randint(0, 16, (1, 12))
    with torch.no_grad():
        for stage in ("semantic", "coarse", "fine"):
            a, b = getattr(full, stage).model(tokens), getattr(half, stage).model(tokens)
            a, b = (getattr(x, "logits", x) for x in (a, b))
            assert torch.allclose(a, b, atol=2e-2, rtol=0), stage
    # Greedy decoding then picks the same tokens, so the audio matches up to codec rounding.
    greedy = AudioLMSampling(*(SamplingParams(temperature=0.0) for _ in range(3)))
    prompt = tone(0.5)
    wa = full.continue_audio(prompt, 0.4, prompt_sample_rate=SR, sampling=greedy)[0]
    wb = half.continue_audio(prompt, 0.4, prompt_sample_rate=SR, sampling=greedy)[0]
    assert wa.shape == wb.shape == (1, 8000 + 6400)
    assert np.abs(wa - wb).max() < 0.05 * max(np.abs(wa).max(), 1e-3)


def test_missing_default_model_names_folder_and_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "ASSETS_DIR", tmp_path / "assets")
    with pytest.raises(FileNotFoundError) as err:
        pretrained.load_default_pipeline(device="cpu")
    msg = str(err.value)
    assert str(tmp_path / "assets" / "speech-tiny") in msg and "--model" in msg and "\n" not in msg
    assert pretrained.default_model_dir() == tmp_path / "assets" / "speech-tiny"


def test_export_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    (tmp_path / "semantic").mkdir()
    with pytest.raises(FileNotFoundError, match="lacks semantic/, coarse/, fine/"):
        pretrained.export_bundle_fp16(tmp_path, tmp_path.parent / "out")


def test_cli_continue_defaults_to_the_shipped_model(bundle, tmp_path, monkeypatch):
    """`soundlm continue` without --model loads soundlm/assets/speech-tiny (here: the tiny fp16 bundle)."""
    import shutil

    import soundfile as sf
    from typer.testing import CliRunner

    from soundlm.cli import app

    assets = tmp_path / "assets"
    pretrained.export_bundle_fp16(bundle, assets / "speech-tiny")
    monkeypatch.setattr(pretrained, "ASSETS_DIR", assets)
    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, tone(0.3), SR)
    res = CliRunner().invoke(app, ["continue", str(prompt), "--seconds", "0.2", "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert sf.info(tmp_path / "out" / "continuation_000.wav").frames == 4800 + 3200
    shutil.rmtree(assets)
    res = CliRunner().invoke(app, ["continue", str(prompt), "--seconds", "0.2", "--out", str(tmp_path / "o2")])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "speech-tiny" in lines[0] and "--model" in lines[0]


def test_shipped_model_loads_and_decodes_as_before_conditioning():
    """The shipped speech-tiny (unconditioned layouts and metas) reads, writes back unchanged and decodes the
    audio it decoded before conditioned stages existed: tests/data/speech_tiny_generate_seed3.safetensors
    is `load_default_pipeline(device="cpu").generate(0.3, num_samples=2, seed=3)` made by that code."""
    from safetensors.numpy import load_file

    from soundlm.fileio import read_json
    from soundlm.pretrained import default_model_dir, load_default_pipeline
    from soundlm.stages import StageMeta
    from soundlm.vocab import VocabLayout

    for stage in ("semantic", "coarse", "fine"):
        config = read_json(default_model_dir() / stage / "config.json")
        meta = StageMeta.from_json(config["meta"], stage)
        assert not meta.conditioned and meta.to_json() == config["meta"]
        assert VocabLayout.from_dict(config["layout"]).to_dict() == config["layout"]
    pipe = load_default_pipeline(device="cpu")
    want = load_file(str(Path(__file__).parent / "data" / "speech_tiny_generate_seed3.safetensors"))["audio"]
    # Same tokens; the codec's float decoding may round differently with the thread count (measured: 4e-7).
    np.testing.assert_allclose(np.stack(pipe.generate(0.3, num_samples=2, seed=3)), want, atol=1e-5)


def test_int8_rows_requantize_exactly():
    from soundlm.lm.quantize import int8_rows, pack_int8, unpack_int8

    w = torch.randn(40, 24) * torch.logspace(-3, 0, 40)[:, None]  # rows of very different scales
    packed, n = pack_int8({"w": w, "b": torch.randn(40)})  # the vector stays float
    assert n == 0 and set(packed) == {"w", "b"}  # 960 values: under PACK_MIN_NUMEL
    q, scale = int8_rows(w)
    back = unpack_int8({"w::int8": q, "w::int8_scale": scale})["w"]
    assert torch.allclose(back, w, atol=float(w.abs().max()) / 127)
    q2, scale2 = int8_rows(back)  # what int8 decoding does to the unpacked weights
    assert torch.equal(q, q2) and torch.equal(scale, scale2)
    with pytest.raises(ValueError, match="no ::int8_scale"):
        unpack_int8({"w::int8": q})


def test_int8_bundle_decodes_with_the_same_int8_weights(fp16, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import soundlm.lm.quantize as quantize
    from soundlm.cli import app
    from soundlm.lm.quantize import Int8Linear

    monkeypatch.setattr(quantize, "PACK_MIN_NUMEL", 256)  # the tiny stages' matrices are small
    out = tmp_path / "int8"
    res = CliRunner().invoke(app, ["export", "bundle", str(fp16.out_dir), "--out", str(out), "--lm-int8"])
    assert res.exit_code == 0, res.output
    assert "matrices in int8" in res.output and " 0 matrices" not in res.output
    stage = _dtypes(out / "coarse" / "model.safetensors")
    assert any(n.endswith("::int8") and d == torch.int8 for n, d in stage.items())
    assert not any(n.endswith("::int8") for n in _dtypes(out / "codec" / "model.safetensors"))
    assert sum(p.stat().st_size for p in out.rglob("*")) < fp16.bytes_after
    ref, small = (pretrained.load_pipeline(b, device="cpu") for b in (fp16.out_dir, out))
    for stage in ("semantic", "coarse", "fine"):
        a, b = getattr(ref, stage).model, getattr(small, stage).model
        quantize.quantize_lm(a, "int8"), quantize.quantize_lm(b, "int8")
        pairs = [(x, y) for x, y in zip(a.modules(), b.modules()) if isinstance(x, Int8Linear)]
        assert pairs and all(torch.equal(x.qweight, y.qweight) and torch.equal(x.scale, y.scale) for x, y in pairs)
