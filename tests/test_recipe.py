import json
from dataclasses import asdict, replace

import pytest

from soundlm.recipe import recipe_config, run_recipe, speech_tiny


def test_unknown_recipe_names_the_choices():
    with pytest.raises(ValueError, match="speech-tiny"):
        recipe_config("speech-huge")


def test_shipped_recipe_keeps_voices_apart_and_fits_the_budget():
    cfg = speech_tiny()
    assert cfg.voices > 0 and cfg.heldout_voices > 0  # held-out voices are disjoint by construction
    assert cfg.coarse_codebooks < 8 and cfg.lm_preset == "mini"


def test_rerun_with_other_settings_is_refused_before_any_work(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    old = json.loads(json.dumps(asdict(replace(speech_tiny(), clusters=7))))
    (work / "recipe.json").write_text(json.dumps({"settings": old}))
    with pytest.raises(ValueError, match="other recipe settings"):
        run_recipe(speech_tiny(), work, tmp_path / "model")
    assert sorted(p.name for p in work.iterdir()) == ["recipe.json"]


def test_rerun_with_the_same_settings_is_accepted(tmp_path):
    # Tuples in the settings (eval_skip) read back from JSON as lists: that is no change. The
    # run gets past the check and stops in its first step, on the bad corpus size.
    work = tmp_path / "work"
    work.mkdir()
    cfg = replace(speech_tiny(), hours=-1.0)
    (work / "recipe.json").write_text(json.dumps({"settings": json.loads(json.dumps(asdict(cfg)))}))
    with pytest.raises(ValueError, match="hours"):
        run_recipe(cfg, work, tmp_path / "model")


def test_cli_refuses_unknown_semantic_features(tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    res = CliRunner().invoke(app, ["recipe", "speech-tiny", "--work", str(tmp_path / "w"), "--out",
                                   str(tmp_path / "m"), "--semantic-features", "hubert"])
    assert res.exit_code == 2 and "phonetic, mfcc, chroma or cqt" in res.output
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("option, value, message", [("--hours", "0", "--hours must be positive"),
                                                    ("--hours", "inf", "--hours must be positive"),
                                                    ("--hours", "nan", "--hours must be positive"),
                                                    ("--voices", "0", "--voices must be at least 1")])
def test_cli_refuses_a_bad_corpus_size_before_any_work(tmp_path, option, value, message):
    from typer.testing import CliRunner

    from soundlm.cli import app

    res = CliRunner().invoke(app, ["recipe", "speech-tiny", "--work", str(tmp_path / "w"), "--out",
                                   str(tmp_path / "m"), option, value])
    assert res.exit_code == 2 and message in res.output
    assert not (tmp_path / "w").exists()


def test_cli_refuses_a_codec_folder_that_is_not_a_codec_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    (tmp_path / "not_a_codec").mkdir()
    res = CliRunner().invoke(app, ["recipe", "speech-tiny", "--work", str(tmp_path / "w"), "--out",
                                   str(tmp_path / "m"), "--codec", str(tmp_path / "not_a_codec")])
    assert res.exit_code == 1 and "not_a_codec" in res.output and "no config.json" in res.output
    assert "Traceback" not in res.output
    assert not (tmp_path / "w").exists()


def test_the_recorded_command_names_every_option_that_changed_the_settings():
    from pathlib import Path

    from soundlm.recipe import _command

    cfg = speech_tiny()
    assert _command(cfg, Path("w"), Path("m")) == "soundlm recipe speech-tiny --work w --out m"
    lm = {k: replace(getattr(cfg, k), steps=5) for k in ("semantic_lm", "coarse_lm", "fine_lm")}
    changed = replace(cfg, codec_from="c", semantic_features="mfcc", codec_steps=10, hours=0.5, voices=7, **lm)
    assert _command(changed, Path("w"), Path("m")) == ("soundlm recipe speech-tiny --work w --out m --hours 0.5 "
                                                      "--voices 7 --codec c --semantic-features mfcc --codec-steps 10 "
                                                      "--lm-steps 5")
