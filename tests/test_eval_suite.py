"""`soundlm eval all` (soundlm.eval.suite) and the `soundlm eval` commands on a tiny random bundle and corpus."""

import json
from pathlib import Path

import pytest
from eval_world import make_eval_world

from soundlm.eval import suite


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return make_eval_world(tmp_path_factory.mktemp("evalsuite"))


def test_cli_eval_all_writes_every_section(world, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    out = tmp_path / "results"
    res = CliRunner().invoke(app, ["eval", "all", "--model", str(world["bundle"]), "--data", str(world["corpus"]),
                                   "--store", str(world["store"]), "--out", str(out), "--max-files", "2", "--asr-max-files", "2",
                                   "--acoustic-max-files", "1",
                                   "--prompt-seconds", "0.6", "--seconds", "0.6", "--num-prompts", "2",
                                   "--num-pairs", "3"])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["order"] == list(suite.SECTIONS) and set(results["sections"]) == set(suite.SECTIONS)
    md = (out / "results.md").read_text()
    for name, section in results["sections"].items():
        assert section["wall_seconds"] > 0 and section["settings"] and section["summary"]
        assert json.loads((out / f"{name}.json").read_text())["summary"] == section["summary"]
        assert f"## {section['title']}" in md and (out / f"{name}.md").is_file()
    codec_rows = results["sections"]["codec"]["rows"]
    assert [r["num_codebooks"] for r in codec_rows] == [1, 2, 4]
    assert all(r["num_files"] == 2 and r["pesq"] is not None and r["stoi"] is not None for r in codec_rows)
    assert codec_rows[0]["bitrate_kbps"] < codec_rows[-1]["bitrate_kbps"]
    lex = results["sections"]["lexical"]
    assert lex["summary"]["num_pairs"] == 3 and 0 <= lex["summary"]["accuracy"] <= 1
    assert all(r["word_logprob"] < 0 and r["nonword_logprob"] < 0 for r in lex["rows"])
    # The pairs are built from the training split's words (carol's sentence), not a fixed list.
    assert "train transcripts" in lex["settings"]["words"]
    assert sorted(r["word"] for r in lex["rows"]) == ["books", "brother", "reads"]
    asr = results["sections"]["asr"]["summary"]
    assert asr["num_files"] == 2 and asr["wer_original"] <= 0.5 and asr["wer_resynthesized"] >= 0
    assert results["sections"]["acoustic"]["summary"]["num_files"] == 1
    assert results["sections"]["acoustic"]["settings"]["recognizer"] == "whisper"
    cont = results["sections"]["continuation"]["summary"]
    assert 0 <= cont["accuracy_acoustic_prompt"] <= 1 and 0 <= cont["accuracy_semantic_prompt_only"] <= 1
    # Every espeak sentence outlasts 0.6 s + 0.6 s: both references were classified for every prompt.
    assert cont["num_references"] == 2
    assert 0 <= cont["accuracy_ground_truth"] <= 1 and 0 <= cont["accuracy_codec_resynthesis"] <= 1
    assert all(r["predicted_ground_truth"] in ("alice", "bob") for r in results["sections"]["continuation"]["rows"])
    assert "| stage |" in (out / "lm.md").read_text()


def test_cli_single_commands_and_errors(world, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["eval", "codec", "--codec", str(world["bundle"] / "codec"), "--data",
                              str(world["corpus"]), "--out", str(tmp_path), "--max-files", "1",
                              "--num-codebooks", "1,4", "--no-pesq"])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "codec.json").read_text())["rows"]
    assert [r["num_codebooks"] for r in rows] == [1, 4] and rows[0]["pesq"] is None
    res = runner.invoke(app, ["eval", "lm", "--model", str(world["bundle"]), "--store", str(world["store"]),
                              "--out", str(tmp_path), "--split", "train"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "lm.json").read_text())["settings"]["num_records"] == 1
    res = runner.invoke(app, ["eval", "continuation", "--model", str(tmp_path / "missing"), "--data",
                              str(world["corpus"]), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "error:" in res.output and "missing" in res.output
    cont = ["eval", "continuation", "--model", str(world["bundle"]), "--data", str(world["corpus"]), "--out",
            str(tmp_path), "--prompt-seconds", "0.6", "--seconds", "0.6", "--num-prompts", "1", "--no-save-audio"]
    res = runner.invoke(app, cont + ["--temperature-coarse", "0.5", "--context", "0.75"])
    assert res.exit_code == 0, res.output
    sampling = json.loads((tmp_path / "continuation.json").read_text())["settings"]["sampling"]
    assert sampling["context"] == 0.75 and sampling["coarse"]["temperature"] == 0.5
    assert sampling["semantic"]["temperature"] == 0.6  # the other stages keep AudioLM's defaults
    res = runner.invoke(app, cont + ["--out", str(tmp_path / "bad"), "--context", "1"])
    assert res.exit_code == 2 and "context must be a fraction" in res.output
    res = runner.invoke(app, ["eval", "asr", "--codec", str(world["bundle"] / "codec"), "--data",
                              str(world["corpus"]), "--out", str(tmp_path), "--split", "nosuch"])
    assert res.exit_code == 2 and "nosuch" in res.output


def test_cli_eval_units_reads_a_bundle_and_shrinks_the_folds_to_fit(world, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["eval", "units", "--tokenizer", str(world["bundle"]), "--data", str(world["corpus"]),
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    units = json.loads((tmp_path / "units.json").read_text())
    # alice and bob have 3 held-out utterances each: 5 folds cannot fit, 3 do.
    assert units["settings"]["folds"] == 3
    assert units["summary"]["num_speakers"] == 2 and units["summary"]["num_utterances"] == 6
    assert units["summary"]["chance"] == 0.5 and 1 <= units["summary"]["units_used"] <= 16
    assert 0 <= units["summary"]["accuracy_units"] <= 1 and 0 <= units["summary"]["accuracy_features"] <= 1
    assert sorted(r["speaker"] for r in units["rows"]) == ["alice", "bob"]
    # The training split holds one speaker with one utterance: nothing to tell apart.
    res = runner.invoke(app, ["eval", "units", "--tokenizer", str(world["bundle"] / "semantic_tokenizer"),
                              "--data", str(world["corpus"]), "--out", str(tmp_path), "--split", "train"])
    assert res.exit_code == 2 and "fewer than 2 speakers" in res.output
