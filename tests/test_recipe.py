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
