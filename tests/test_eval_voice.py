"""`soundlm eval voice`: similarity of continuations to one target voice, on a tiny random bundle."""

from __future__ import annotations


import numpy as np
import pytest
import soundfile as sf
from tiny_bundle import SR, make_tiny_bundle, tone
from typer.testing import CliRunner

from soundlm.eval.sections.voice import eval_voice
from soundlm.eval.speaker import cosine_similarity, load_voice_encoder, speaker_embedding


@pytest.fixture(scope="module")
def voice(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voice")
    for i in range(4):
        sf.write(folder / f"u{i}.wav", tone(2.0, freq=150.0 + 20 * i), SR)
    return folder


def test_similarities_are_to_the_leave_one_out_enrolment(tmp_path, voice):
    from soundlm.pretrained import load_pipeline

    pipe = load_pipeline(make_tiny_bundle(tmp_path), device="cpu")
    section = eval_voice(pipe, voice, prompt_seconds=1.0, seconds=0.6, num_prompts=3, out_dir=tmp_path / "ev",
                         progress=False)
    assert section.summary["num_prompts"] == 3 and section.summary["enrolment_files"] == 4
    # The ground-truth similarity by hand: u0's seconds after the prompt vs the mean of u1..u3.
    enc = load_voice_encoder("cpu")
    others = [speaker_embedding(tone(2.0, freq=150.0 + 20 * i), SR, enc) for i in (1, 2, 3)]
    mean = np.mean(others, axis=0)
    truth = speaker_embedding(tone(2.0, freq=150.0)[SR: int(1.6 * SR)], SR, enc)
    row = section.rows[0]
    assert row["id"] == "u0" and row["similarity_ground_truth"] == pytest.approx(cosine_similarity(truth, mean), abs=1e-5)
    for r in section.rows:
        assert -1 <= r["similarity_acoustic_prompt"] <= 1 and -1 <= r["similarity_semantic_prompt"] <= 1
    # Rerun: rows come from the resume state, the same numbers.
    again = eval_voice(pipe, voice, prompt_seconds=1.0, seconds=0.6, num_prompts=3, out_dir=tmp_path / "ev",
                       progress=False)
    assert again.rows == section.rows
    assert len(list((tmp_path / "ev" / "voice_audio").glob("*.wav"))) == 6


def test_too_short_files_are_refused(tmp_path, voice):
    from soundlm.cli import app

    result = CliRunner().invoke(app, ["eval", "voice", "--model", str(make_tiny_bundle(tmp_path)), "--data", str(voice),
                                      "--prompt-seconds", "1.8", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "at least 2.3 s" in result.output
