"""AudioPaLM training: a tiny model learns ASR on its training set; checkpoints resume exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from soundlm.palm.data import build_task_examples
from soundlm.palm.infer import run_task, transcribe
from soundlm.palm.metrics import wer
from soundlm.palm.model import load_palm
from soundlm.palm.train import PalmTrainConfig, train_palm
from test_palm import SENTENCES, make_store, tiny_text_lm, word_semantic


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("palm")
    return make_store(root / "store"), tiny_text_lm(root / "textlm")


def test_tiny_model_learns_asr(setup, tmp_path):
    store, text_lm = setup
    cfg = PalmTrainConfig(store=str(store), out=str(tmp_path / "run"), init=str(text_lm), tasks=("asr", "ast"),
                          steps=200, batch_size=8, lr=3e-3, warmup=10, ckpt_every=100, progress=False)
    result = train_palm(cfg)
    assert result.step == 200 and result.counts == {"asr": 8, "ast": 8}
    assert result.last_loss < 0.1 * result.first_loss
    palm = load_palm(tmp_path / "run")  # the run folder resolves to final/
    refs = [pair["en"] for pair in SENTENCES]
    hyps = [transcribe(palm, word_semantic(text), "en") for text in refs]
    assert wer(refs, hyps) < 0.2, hyps
    # The AST tag switches the output language for the same speech.
    out = run_task(palm, build_task_examples(store, ["ast"]).examples[0])
    assert out.text is not None and out.semantic is None


def test_resume_matches_uninterrupted_run(setup, tmp_path):
    store, text_lm = setup
    common = dict(store=str(store), init=str(text_lm), tasks=("asr", "tts"), batch_size=4, lr=1e-3, warmup=2,
                  ckpt_every=5, progress=False)
    straight = train_palm(PalmTrainConfig(out=str(tmp_path / "a"), steps=10, **common))
    # Simulate a crash after step 5: the copy keeps only the step-5 checkpoint.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    ckpts = tmp_path / "b" / "checkpoints"
    shutil.rmtree(ckpts / "step_00000010")
    shutil.rmtree(tmp_path / "b" / "final")
    (ckpts / "latest").write_text("step_00000005\n")
    result = train_palm(PalmTrainConfig(out=str(tmp_path / "b"), steps=10, **common))
    assert result.step == 10 and result.first_loss is not None  # it trained steps 6..10
    a, b = load_palm(tmp_path / "a").model.state_dict(), load_palm(tmp_path / "b").model.state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    # The step-10 line is the mean loss of steps 1..10 in both: the resumed run's window kept steps 1..5.
    assert (tmp_path / "b" / "metrics.jsonl").read_text() == (tmp_path / "a" / "metrics.jsonl").read_text()
    assert result.last_loss == straight.last_loss
    with pytest.raises(ValueError, match="other settings"):
        train_palm(PalmTrainConfig(out=str(tmp_path / "b"), steps=10, **{**common, "tasks": ("asr",)}))


def test_scratch_run_and_bad_store(setup, tmp_path):
    store, text_lm = setup
    result = train_palm(PalmTrainConfig(store=str(store), out=str(tmp_path / "s"), init=str(text_lm),
                                        from_scratch=True, tasks=("s2st",), steps=3, batch_size=2,
                                        ckpt_every=3, progress=False))
    palm = load_palm(result.final_dir)
    assert palm.meta["from_scratch"] is True
    with pytest.raises(FileNotFoundError, match="not a token store"):
        train_palm(PalmTrainConfig(store=str(tmp_path), out=str(tmp_path / "x"), init=str(text_lm), steps=1))


def test_cli_textlm_then_palm_then_tts(setup, tmp_path):
    import numpy as np
    from typer.testing import CliRunner

    from soundlm.cli import app

    store, _ = setup
    runner = CliRunner()
    r = runner.invoke(app, ["train", "textlm", "--out", str(tmp_path / "tl"), "--sentences", "40", "--vocab-size",
                            "320", "--hidden-size", "32", "--layers", "1", "--steps", "3", "--batch-size", "4",
                            "--ckpt-every", "3", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "tl" / "final" / "tokenizer.json").is_file()
    r = runner.invoke(app, ["train", "palm", "--store", str(store), "--init", str(tmp_path / "tl"), "--out",
                            str(tmp_path / "run"), "--tasks", "tts", "--steps", "2", "--batch-size", "2",
                            "--ckpt-every", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["tts", "The dog sleeps.", "--model", str(tmp_path / "run"), "--out-tokens",
                            str(tmp_path / "ids.npy")])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "ids.npy").ndim == 1
    r = runner.invoke(app, ["tts", "The dog sleeps.", "--model", str(tmp_path / "run")])
    assert r.exit_code == 2 and "--audiolm" in r.output
