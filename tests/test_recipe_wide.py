"""`soundlm recipe speech-tiny --inventory wide --acoustic-pattern delay`: the settings, how old work folders
resume and how a changed setting is refused (issue 20, section 4)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest

from soundlm.recipe import _command, run_recipe, speech_tiny, upgrade_settings, with_wide_inventory


def _settings(cfg) -> dict:
    return json.loads(json.dumps(asdict(cfg)))  # as recipe.json holds them: tuples read back as lists


def test_speech_tiny_stays_on_the_classic_voices_and_the_flattened_stages():
    cfg = speech_tiny()
    assert cfg.inventory == "classic" and cfg.acoustic_pattern == "flatten" and cfg.voices == 120


def test_the_wide_inventory_brings_its_voice_counts():
    cfg = with_wide_inventory(speech_tiny())
    assert (cfg.inventory, cfg.voices, cfg.heldout_voices) == ("wide", 420, 12)
    assert with_wide_inventory(speech_tiny(), voices=300).voices == 300


def test_a_work_folder_started_before_the_wide_inventory_still_resumes(tmp_path):
    cfg = replace(speech_tiny(), hours=-1.0)
    old = _settings(cfg)
    del old["inventory"], old["acoustic_pattern"]
    assert upgrade_settings(old) == _settings(cfg)
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipe.json").write_text(json.dumps({"settings": old}))
    with pytest.raises(ValueError, match="hours"):  # past the settings check, stopped by the corpus step
        run_recipe(cfg, work, tmp_path / "model")


@pytest.mark.parametrize("change, named", [
    (dict(acoustic_pattern="delay"), "acoustic_pattern: 'flatten' -> 'delay'"),
    (dict(inventory="wide", voices=420, heldout_voices=12), "inventory: 'classic' -> 'wide'")])
def test_a_changed_setting_on_a_work_folder_is_refused_by_name(tmp_path, change, named):
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipe.json").write_text(json.dumps({"settings": _settings(speech_tiny())}))
    with pytest.raises(ValueError, match="other recipe settings") as err:
        run_recipe(replace(speech_tiny(), **change), work, tmp_path / "model")
    assert named in str(err.value) and "new --work folder" in str(err.value)
    if "voices" in change:
        assert "voices: 120 -> 420" in str(err.value) and "heldout_voices: 4 -> 12" in str(err.value)
    assert sorted(p.name for p in work.iterdir()) == ["recipe.json"]  # nothing mixed in


def test_an_unknown_pattern_or_inventory_is_refused_before_any_work(tmp_path):
    for change, message in ((dict(acoustic_pattern="interleave"), "--acoustic-pattern"),
                            (dict(inventory="huge"), "--inventory")):
        with pytest.raises(ValueError, match=message):
            run_recipe(replace(speech_tiny(), **change), tmp_path / "work", tmp_path / "model")
    assert not (tmp_path / "work").exists()


def test_the_recorded_command_names_the_inventory_and_the_pattern():
    cfg = replace(with_wide_inventory(speech_tiny()), acoustic_pattern="delay")
    assert _command(cfg, Path("w"), Path("m")) == ("soundlm recipe speech-tiny --work w --out m --inventory wide "
                                                  "--acoustic-pattern delay")
    assert "--voices 300" in _command(with_wide_inventory(speech_tiny(), voices=300), Path("w"), Path("m"))


def test_cli_wide_delay_recipe(recipe_cli):
    res, seen = recipe_cli("speech-tiny", "--inventory", "wide", "--acoustic-pattern", "delay")
    assert res.exit_code == 1 and "stop here" in res.output
    cfg = seen["cfg"]
    assert (cfg.inventory, cfg.voices, cfg.heldout_voices, cfg.acoustic_pattern) == ("wide", 420, 12, "delay")
    cfg = recipe_cli("speech-tiny", "--inventory", "wide", "--voices", "300")[1]["cfg"]
    assert (cfg.voices, cfg.heldout_voices, cfg.acoustic_pattern) == (300, 12, "flatten")


@pytest.mark.parametrize("option, value", [("--inventory", "huge"), ("--acoustic-pattern", "interleave")])
def test_cli_refuses_an_unknown_inventory_or_pattern(recipe_cli, option, value):
    res, seen = recipe_cli("speech-tiny", option, value)
    assert res.exit_code == 2 and option in res.output and "cfg" not in seen


def test_the_delay_pattern_goes_to_the_acoustic_stages_only():
    from soundlm.recipe import lm_config

    cfg = replace(speech_tiny(), acoustic_pattern="delay")
    made = {s: lm_config(cfg, s, Path("store"), Path(f"lm-{s}")) for s in ("semantic", "coarse", "fine")}
    assert {s: c.pattern for s, c in made.items()} == {"semantic": "flatten", "coarse": "delay", "fine": "delay"}
    assert (made["coarse"].steps, made["coarse"].window_seconds, made["fine"].preset) == (2000, 2.0, "micro")
    assert lm_config(speech_tiny(), "coarse", Path("s"), Path("o")).pattern == "flatten"


@pytest.mark.slow  # about two minutes on 2 shared cores
def test_shrunken_wide_delay_recipe_ships_a_bundle_that_continues_and_evaluates(tmp_path):
    from soundlm.pipeline import AudioLMPipeline
    from soundlm.recipe import LMStageSettings

    small = LMStageSettings(steps=3, batch_size=2, window_seconds=1.0, warmup=1, preset="tiny")
    cfg = replace(with_wide_inventory(speech_tiny(), voices=6), acoustic_pattern="delay", hours=0.02,
                  semantic_features="mfcc", clusters=8, codec_preset="tiny", codec_steps=3, codec_batch_size=2,
                  lm_preset="tiny", semantic_lm=small, coarse_lm=small, fine_lm=replace(small, window_seconds=0.5),
                  eval_skip=("codec", "units", "continuation", "lexical", "asr", "acoustic"), prompt_seconds=1.0)
    work, model = tmp_path / "work", tmp_path / "model"
    result = run_recipe(cfg, work, model, prompt_path=tmp_path / "prompt.wav", device="cpu")
    corpus = json.loads((work / "corpus" / "corpus.json").read_text())
    assert corpus["inventory"] == "wide" and corpus["heldout_voices"] == 12
    patterns = {s: json.loads((model / s / "config.json").read_text())["meta"]["pattern"]
                for s in ("semantic", "coarse", "fine")}
    assert patterns == {"semantic": "flatten", "coarse": "delay", "fine": "delay"}
    recipe = json.loads((model / "recipe.json").read_text())
    assert "--inventory wide --voices 6 --semantic-features mfcc --acoustic-pattern delay" in recipe["command"]
    lm_summary = json.loads((model / "eval.json").read_text())["sections"]["lm"]["summary"]
    assert lm_summary["acoustic_bits_per_code"] > 0 and result.size_megabytes > 0

    pipe = AudioLMPipeline.from_bundle(model, device="cpu")
    out = pipe.continue_audio(tmp_path / "prompt.wav", seconds=0.5, seed=0)
    assert out[0].shape[-1] == int(round(1.0 * pipe.sample_rate)) + int(round(0.5 * pipe.sample_rate))
    # A finished recipe returns at once; the same folder under the flattened stages is refused.
    assert run_recipe(cfg, work, model, prompt_path=tmp_path / "prompt.wav", device="cpu").model_dir == model
    with pytest.raises(ValueError, match="acoustic_pattern: 'delay' -> 'flatten'"):
        run_recipe(replace(cfg, acoustic_pattern="flatten"), work, model)


def test_a_corpus_of_another_inventory_is_refused_before_any_work(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "manifest.jsonl").write_text("")
    (corpus / "corpus.json").write_text(json.dumps({"kind": "speech", "inventory": "wide"}))
    with pytest.raises(ValueError, match="made with --inventory wide, the recipe asks for classic"):
        run_recipe(replace(speech_tiny(), corpus_from=str(corpus)), tmp_path / "work", tmp_path / "model")
    (corpus / "corpus.json").write_text(json.dumps({"kind": "speech"}))  # classic corpora do not name it
    with pytest.raises(ValueError, match="made with --inventory classic, the recipe asks for wide"):
        run_recipe(replace(with_wide_inventory(speech_tiny()), corpus_from=str(corpus)), tmp_path / "work",
                   tmp_path / "model")
    assert not (tmp_path / "work").exists()


def test_delay1_trains_one_delay_stage_over_every_codebook_and_no_fine():
    from soundlm.recipe import lm_config, lm_stages

    cfg = replace(speech_tiny(), acoustic_pattern="delay1")
    assert lm_stages(cfg) == ("semantic", "coarse") and lm_stages(speech_tiny()) == ("semantic", "coarse", "fine")
    coarse = lm_config(cfg, "coarse", Path("store"), Path("lm-coarse"), num_codebooks=8)
    assert (coarse.pattern, coarse.coarse_codebooks) == ("delay", 8)
    assert lm_config(cfg, "semantic", Path("store"), Path("lm-semantic")).pattern == "flatten"
    with pytest.raises(ValueError, match="no fine stage"):
        lm_config(cfg, "fine", Path("store"), Path("lm-fine"), num_codebooks=8)
    with pytest.raises(ValueError, match="num_codebooks"):
        lm_config(cfg, "coarse", Path("store"), Path("lm-coarse"))


@pytest.mark.slow  # about 26 s on 2 shared cores
def test_shrunken_delay1_recipe_ships_a_bundle_without_fine(tmp_path):
    from soundlm.pipeline import AudioLMPipeline
    from soundlm.recipe import LMStageSettings

    small = LMStageSettings(steps=3, batch_size=2, window_seconds=1.0, warmup=1, preset="tiny")
    cfg = replace(speech_tiny(), acoustic_pattern="delay1", hours=0.02, voices=4, semantic_features="mfcc",
                  clusters=8, codec_preset="tiny", codec_steps=3, codec_batch_size=2, lm_preset="tiny",
                  semantic_lm=small, coarse_lm=small, fine_lm=small,
                  eval_skip=("codec", "units", "continuation", "lexical", "asr", "acoustic"), prompt_seconds=1.0)
    work, model = tmp_path / "work", tmp_path / "model"
    run_recipe(cfg, work, model, prompt_path=tmp_path / "prompt.wav", device="cpu")
    assert not (model / "fine").exists() and not (work / "lm-fine").exists()
    pipe = AudioLMPipeline.from_bundle(model, device="cpu")
    assert pipe.fine is None and pipe.coarse.delayed and pipe.num_coarse == pipe.codec.total_codebooks
    assert "--acoustic-pattern delay1" in json.loads((model / "recipe.json").read_text())["command"]
    lm_summary = json.loads((model / "eval.json").read_text())["sections"]["lm"]["summary"]
    assert lm_summary["acoustic_bits_per_code"] > 0
    out = pipe.continue_audio(tmp_path / "prompt.wav", seconds=0.5, seed=0)
    assert out[0].shape[-1] == int(round(1.0 * pipe.sample_rate)) + int(round(0.5 * pipe.sample_rate))
    with pytest.raises(ValueError, match="acoustic_pattern: 'delay1' -> 'delay'"):
        run_recipe(replace(cfg, acoustic_pattern="delay"), work, model)
