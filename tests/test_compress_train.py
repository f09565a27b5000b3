"""`soundlm train compressor`: exact resume, a trained model beats its untrained start, the CLI end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from soundlm.compress.lossless import encode_segment
from soundlm.compress.sample_model import SampleModel
from soundlm.compress.trainer import CompressorTrainConfig, train_compressor

SR = 16000


def make_corpus(root: Path, n: int = 6) -> Path:
    """A manifest corpus of tone-and-noise clips with silent stretches; the last file is held out."""
    rng = np.random.default_rng(0)
    rows = []
    (root / "wavs").mkdir(parents=True)
    for i in range(n):
        t = np.arange(SR) / SR
        f0 = rng.uniform(100, 300)
        x = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 8)) * rng.uniform(2000, 9000)
        x = x * (np.sin(2 * np.pi * 2 * t) > -0.3) + rng.normal(0, 20, SR)  # gaps of near silence
        x[: SR // 8] = 0  # digital silence at the start, as in trimmed recordings
        rel = f"wavs/{i:02d}.wav"
        sf.write(str(root / rel), np.clip(np.round(x), -32768, 32767).astype(np.int16), SR, subtype="PCM_16")
        rows.append({"id": f"{i:02d}", "path": rel, "duration": 1.0, "sample_rate": SR, "speaker": "s",
                     "language": "en", "transcript": "", "split": "heldout" if i == n - 1 else "train"})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def small(corpus: Path, out: Path, **kw) -> CompressorTrainConfig:
    args = dict(data=str(corpus), out=str(out), hidden=16, steps=60, batch_size=512, ckpt_every=20, log_every=10,
                progress=False, max_train_samples=20000, eval_files=1)
    return CompressorTrainConfig(**{**args, **kw})


def test_resume_gives_the_weights_of_a_straight_run(corpus, tmp_path):
    straight = train_compressor(small(corpus, tmp_path / "a"))
    first = train_compressor(small(corpus, tmp_path / "b", stop_at=30))
    assert first.final_dir is None and max(first.losses) == 30
    resumed = train_compressor(small(corpus, tmp_path / "b"))
    assert min(resumed.losses) == 31
    assert SampleModel.load(resumed.final_dir).hash == SampleModel.load(straight.final_dir).hash
    m = SampleModel.load(tmp_path / "a")  # a run folder resolves to its final/
    assert 0 < m.metrics["heldout_ratio"] < 0.5 and m.metrics["heldout_files"] == 1


def test_resume_refuses_changed_settings(corpus, tmp_path):
    train_compressor(small(corpus, tmp_path / "r", stop_at=20))
    with pytest.raises(ValueError, match="other settings"):
        train_compressor(small(corpus, tmp_path / "r", hidden=8))


def test_training_lowers_the_code_length(corpus, tmp_path):
    result = train_compressor(small(corpus, tmp_path / "t", steps=150, lr=1e-2))
    losses = result.losses
    assert np.mean([losses[s] for s in range(141, 151)]) < np.mean([losses[s] for s in range(1, 11)])
    model = SampleModel.load(result.final_dir)
    silence = encode_segment(model, np.zeros(SR, np.int64))
    assert len(silence) * 8 / SR < 0.2  # a second of digital silence costs well under 0.2 bits a sample


def test_cli_train_compress_decompress(corpus, tmp_path):
    from soundlm.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    r = runner.invoke(app, ["train", "compressor", str(corpus), "--out", str(run), "--steps", "30", "--hidden", "8"])
    assert r.exit_code == 0, r.output
    assert "saved model to" in r.output and "held-out files compress to" in r.output
    r = runner.invoke(app, ["compress", str(corpus / "wavs"), "--out", str(tmp_path / "c"), "--model", str(run),
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "c").glob("*.slmc"))) == 6
    r = runner.invoke(app, ["decompress", str(tmp_path / "c"), "--out", str(tmp_path / "d"), "--model", str(run),
                            "--files-per-batch", "4", "--no-progress"])
    assert r.exit_code == 0, r.output
    for wav in sorted((corpus / "wavs").glob("*.wav")):
        assert (tmp_path / "d" / wav.name).read_bytes() == wav.read_bytes()
    # Lossless mode without a model is refused with the fix in the message.
    r = runner.invoke(app, ["compress", str(corpus / "wavs"), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "--model" in r.output and len(r.output.strip().splitlines()) == 1, r.output
