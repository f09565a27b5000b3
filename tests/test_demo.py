import json
import struct
from pathlib import Path

import pytest
import soundfile as sf
from tiny_bundle import SR, make_tiny_bundle, tone
from typer.testing import CliRunner

import soundlm.pretrained as pretrained
from soundlm.cli import app

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def prompt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompt") / "voice.wav"
    sf.write(path, tone(0.77, sample_rate=22050), 22050)  # another rate and not a whole number of codec frames
    return path


def test_demo_writes_audio_figure_and_report(bundle, prompt, tmp_path):
    out = tmp_path / "demo_out"
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--model", str(bundle), "--prompt", str(prompt),
                                   "--num-samples", "2", "--seconds", "0.6", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert "[1/5] loading the model" in res.output and "[5/5] plotting" in res.output
    # The prompt is cut to whole codec frames (320 samples at 16 kHz): 0.77 s -> 38 frames.
    prompt_samples = 38 * 320
    assert sf.info(out / "prompt.wav").frames == prompt_samples and sf.info(out / "prompt.wav").samplerate == SR
    for i in range(2):
        info = sf.info(out / f"continuation_{i:03d}.wav")
        assert info.samplerate == SR and info.frames == prompt_samples + int(0.6 * SR)
    a, _ = sf.read(out / "continuation_000.wav")
    b, _ = sf.read(out / "continuation_001.wav")
    assert not (a[prompt_samples:] == b[prompt_samples:]).all()  # two different samples

    png = (out / "continuations.png").read_bytes()
    assert png[:8] == PNG_SIGNATURE and len(png) > 20_000
    width, height = struct.unpack(">II", png[16:24])  # IHDR: a figure with three rows of two panels
    assert width >= 1000 and height >= 500

    report = json.loads((out / "report.json").read_text())
    assert report["model"] == str(bundle) and report["prompt"] == str(prompt)
    assert report["prompt_seconds"] == pytest.approx(prompt_samples / SR)
    assert report["settings"]["num_samples"] == 2 and report["settings"]["seed"] == 3
    assert [s["file"] for s in report["samples"]] == ["continuation_000.wav", "continuation_001.wav"]
    for s in report["samples"]:
        assert s["seconds"] == pytest.approx(prompt_samples / SR + 0.6)
        assert s["continuation_seconds"] == pytest.approx(0.6)
        sim = s["speaker_similarity"]
        assert sim is None or -1.0 <= sim <= 1.0
    if report["speaker_similarity_note"] is None:  # resemblyzer installed: every sample is scored
        assert all(s["speaker_similarity"] is not None for s in report["samples"])
    assert set(report["model_parameters"]) == {"semantic", "coarse", "fine"}
    assert {"load model", "generate", "plot", "total"} <= set(report["wall_seconds"])
    for name in report["files"]:
        assert (out / name).is_file(), name
    md = (out / "report.md").read_text()
    assert "continuation_001.wav" in md and str(bundle) in md


def test_demo_same_seed_same_audio(bundle, prompt, tmp_path):
    from soundlm.demo import run_demo

    kwargs = dict(model=bundle, prompt=prompt, num_samples=1, seconds=0.3, seed=5, device="cpu", progress=False,
                  log=lambda line: None)
    run_demo(tmp_path / "a", **kwargs)
    run_demo(tmp_path / "b", **kwargs)
    assert (tmp_path / "a" / "continuation_000.wav").read_bytes() == (tmp_path / "b" / "continuation_000.wav").read_bytes()


def test_demo_without_the_shipped_model_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained, "ASSETS_DIR", tmp_path / "assets")
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out")])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1, res.output
    assert lines[0].startswith("error:") and str(tmp_path / "assets" / "speech-tiny") in lines[0]
    assert "--model" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, expected", [
    (["--num-samples", "0"], "--num-samples must be >= 1"),
    (["--seconds", "0"], "--seconds must be positive"),
    (["--prompt", "nowhere.wav"], "nowhere.wav does not exist"),
])
def test_demo_bad_options_fail_before_loading(bundle, tmp_path, args, expected):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "out"), "--model", str(bundle), *args])
    assert res.exit_code == 2 and expected in res.output and "loading" not in res.output


def test_demo_without_resemblyzer_still_writes_everything(bundle, prompt, tmp_path, monkeypatch):
    import soundlm.eval.speaker as speaker
    from soundlm.demo import run_demo

    def missing(device=None):
        raise ModuleNotFoundError("resemblyzer is not installed; pip install 'soundlm[eval]'")

    monkeypatch.setattr(speaker, "load_voice_encoder", missing)
    report = run_demo(tmp_path / "out", model=bundle, prompt=prompt, num_samples=1, seconds=0.3, device="cpu",
                      progress=False, log=lambda line: None)
    assert report.samples[0].speaker_similarity is None and "pip install" in report.speaker_similarity_note
    assert (tmp_path / "out" / "continuations.png").is_file()
    assert "Speaker similarity not computed" in (tmp_path / "out" / "report.md").read_text()
