"""`soundlm recipe musiclm-tiny`: its settings and their refusals, the MuLan it conditions on, and a shrunken run
killed in the preference step that resumes to a music bundle `soundlm music` samples from."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch

from soundlm.recipe import (LMStageSettings, music_tiny, musiclm_tiny, recipe_config, run_recipe, settings_changes,
                            upgrade_settings)
from soundlm.recipe_musiclm import check_musiclm_settings, issue_targets


def _tiny_mulan(folder: Path, levels: int = 2) -> Path:
    """A MuLan at its smallest, its condition quantizer fitted on random embeddings (4 codes a level)."""
    from soundlm.music.mulan import MuLan, MuLanConfig, train_caption_tokenizer

    tok = train_caption_tokenizer(["a piano chorale in C major", "organ music in G minor, 120 bpm"], 64)
    config = MuLanConfig(clip_seconds=1.0, n_mels=16, audio_channels=16, width=16, layers=1, heads=2, embed_dim=8,
                         vocab_size=tok.get_vocab_size(), condition_levels=levels, condition_codes=4)
    torch.manual_seed(0)
    mulan = MuLan(config, tok).eval()
    mulan.fit_condition_quantizer(torch.nn.functional.normalize(torch.randn(64, 8), dim=-1))
    return mulan.save_pretrained(folder)


def test_musiclm_tiny_conditions_one_delay_stage_on_level_one_ids():
    cfg = recipe_config("musiclm-tiny")
    assert cfg == musiclm_tiny() and cfg.conditioned and cfg.corpus == "music" and cfg.semantic_features == "chroma"
    assert cfg.acoustic_pattern == "delay1" and cfg.condition_levels == 1
    assert "instrument" not in cfg.prefer_reward  # the win rate that counts is judged by the classifier
    assert not music_tiny().conditioned


def test_keeping_fewer_condition_levels_keeps_the_first_ids(tmp_path):
    from soundlm.music.mulan import load_mulan

    full = load_mulan(_tiny_mulan(tmp_path / "m", levels=2))
    emb = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    ids = full.condition_tokens(emb)  # [16, 2]
    kept = load_mulan(tmp_path / "m").keep_condition_levels(1)
    assert kept.num_condition_tokens == 1 and torch.equal(kept.condition_tokens(emb), ids[:, :1])
    with pytest.raises(ValueError, match="keep 1 to 2"):
        full.keep_condition_levels(3)


def test_settings_that_would_fail_hours_in_are_refused_first(tmp_path):
    with pytest.raises(ValueError, match="music corpus"):
        check_musiclm_settings(replace(musiclm_tiny(), corpus="speech"))
    with pytest.raises(ValueError, match="leave one out"):
        check_musiclm_settings(replace(musiclm_tiny(), prefer_reward=("mulan", "key", "tempo", "instrument")))
    with pytest.raises(ValueError, match="some of"):
        check_musiclm_settings(replace(musiclm_tiny(), prefer_reward=("loudness",)))
    with pytest.raises(ValueError, match="--prefer-stage must be semantic or coarse"):
        check_musiclm_settings(replace(musiclm_tiny(), prefer_stage="fine"))
    with pytest.raises(ValueError, match="--condition-from must be audio or text"):
        check_musiclm_settings(replace(musiclm_tiny(), condition_from="tags"))
    with pytest.raises(ValueError, match="fewer than --condition-levels 3"):
        check_musiclm_settings(replace(musiclm_tiny(), mulan_from=str(_tiny_mulan(tmp_path / "m")),
                                       condition_levels=3))


def test_changing_a_setting_on_a_started_work_folder_is_refused(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cfg = replace(musiclm_tiny(), corpus_from=str(tmp_path / "none"))
    (work / "recipe.json").write_text(json.dumps({"settings": json.loads(json.dumps(asdict(cfg)))}))
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "manifest.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"condition_levels: 1 -> 2.*new --work"):
        run_recipe(replace(cfg, condition_levels=2), work, tmp_path / "model")
    assert json.loads((work / "recipe.json").read_text())["settings"]["condition_levels"] == 1


def test_a_run_started_before_musiclm_tiny_resumes_unconditioned():
    old = json.loads(json.dumps(asdict(music_tiny())))
    for key in ("conditioned", "mulan_from", "condition_levels", "condition_from", "prefer_stage", "prefer_reward",
                "music_eval_captions"):
        del old[key]
    assert settings_changes(upgrade_settings(old), json.loads(json.dumps(asdict(music_tiny())))) == []


def test_issue_targets_read_the_sections_summaries():
    base = {"key_acc": 0.10, "key_chance": 1 / 24, "instrument_acc": 0.2, "instrument_chance": 0.125}
    got = issue_targets(base, {"win_rate_unseen_min": 0.7}, {"real_time_factor": 1.4})
    assert got["key_acc_over_chance"] == 2.4 and got["key_target_met"]
    assert got["instrument_acc_over_chance"] == 1.6 and not got["instrument_target_met"]
    assert got["win_rate_target_met"] and not got["speed_target_met"]
    assert not issue_targets({}, {}, {})["win_rate_target_met"]


def test_cli_passes_mulan_and_levels_and_refuses_them_for_an_unconditioned_recipe(recipe_cli):
    res, seen = recipe_cli("musiclm-tiny", "--corpus", "data/music", "--mulan", "m", "--condition-levels", "2")
    assert res.exit_code == 1 and "stop here" in res.output
    assert seen["cfg"].mulan_from == "m" and seen["cfg"].condition_levels == 2
    assert seen["out"] == Path("models/musiclm-tiny")
    res, _ = recipe_cli("music-tiny", "--mulan", "m")
    assert res.exit_code != 0 and "conditioned recipe" in res.output
    res, seen = recipe_cli("musiclm-tiny", "--corpus", "data/music", "--condition-from", "text")
    assert res.exit_code == 1 and seen["cfg"].condition_from == "text"
    res, _ = recipe_cli("music-tiny", "--condition-from", "text")
    assert res.exit_code != 0 and "conditioned recipe" in res.output
    res, seen = recipe_cli("musiclm-tiny", "--corpus", "data/music", "--prefer-stage", "coarse")
    assert res.exit_code == 1 and seen["cfg"].prefer_stage == "coarse"


def test_condition_from_text_makes_the_recipes_mulan_read_captions(tmp_path):
    from soundlm.music.mulan import load_mulan
    from soundlm.recipe_musiclm import prepare_mulan

    source = _tiny_mulan(tmp_path / "m")
    cfg = replace(musiclm_tiny(), mulan_from=str(source))
    plain = load_mulan(prepare_mulan(cfg, tmp_path / "manifest.jsonl", tmp_path / "a", "cpu"))
    assert not plain.conditions_on_text and plain.num_condition_tokens == 1
    text = load_mulan(prepare_mulan(replace(cfg, condition_from="text"), tmp_path / "manifest.jsonl",
                                    tmp_path / "b", "cpu"))
    assert text.conditions_on_text and text.num_condition_tokens == text.config.condition_text_tokens
    ids = text.caption_condition(["organ music in G minor"])
    assert ids[0, :4].tolist() == text.tokenizer.encode("organ music in G minor").ids[:4]


def test_prefer_takes_a_seeded_subset_of_the_training_captions(tmp_path):
    from music_corpus import write_music_corpus

    from soundlm.train.prefer import read_requests

    clips = [{"piece": f"p/{i}", "tonic": i, "instrument": "piano", "split": "train"} for i in range(6)]
    corpus = write_music_corpus(tmp_path / "c", clips, seconds=1.0).parent
    every = read_requests(corpus)
    some = read_requests(corpus, limit=3, seed=1)
    assert len(every) == 6 and len(some) == 3 and all(r in every for r in some)
    assert read_requests(corpus, limit=3, seed=1) == some and read_requests(corpus, limit=10) == every


def test_shrunken_musiclm_recipe_resumes_after_a_kill_and_ships_a_music_bundle(tmp_path, monkeypatch):
    import soundlm.train.prefer as prefer_module
    from music_corpus import write_music_corpus

    from soundlm.music.pipeline import MusicLMPipeline

    clips = [{"piece": f"p/{i}", "tonic": (5 * i) % 12, "instrument": ("piano", "organ")[i % 2],
              "split": "heldout" if i >= 6 else "train"} for i in range(8)]
    corpus = write_music_corpus(tmp_path / "corpus", clips).parent
    small = LMStageSettings(steps=3, batch_size=2, window_seconds=1.0, preset="tiny")
    cfg = replace(musiclm_tiny(), corpus_from=str(corpus), mulan_from=str(_tiny_mulan(tmp_path / "mulan")),
                  clusters=8, codec_preset="tiny", codec_steps=3, codec_batch_size=2, lm_preset="tiny",
                  semantic_lm=small, coarse_lm=replace(small, window_seconds=0.5), instrument_steps=2,
                  prompt_seconds=2.0, prefer_captions=2, prefer_samples=2, prefer_steps=2, prefer_batch_size=2,
                  music_eval_captions=2, music_eval_seconds=1.0)
    work, model = tmp_path / "work", tmp_path / "model"
    real_prefer = prefer_module.train_prefer

    def killed_in_prefer(prefer_cfg):
        raise KeyboardInterrupt  # what Ctrl-C or a kill does to the running step

    monkeypatch.setattr(prefer_module, "train_prefer", killed_in_prefer)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(cfg, work, model)
    done = json.loads((work / "timings.json").read_text())
    assert {"mulan", "tokenize", "lm semantic", "lm coarse", "package", "instrument classifier"} <= set(done)
    assert "lm fine" not in done and "eval base" not in done
    store = json.loads((work / "store" / "store.json").read_text())
    assert store["condition_tokens"] == 1  # level 1 of the 2-level MuLan
    stamps = {f: (work / f).stat().st_mtime_ns for f in ("store/store.json", "lm-coarse/metrics.jsonl",
                                                         "mulan/config.json")}

    monkeypatch.setattr(prefer_module, "train_prefer", real_prefer)
    run_recipe(cfg, work, model)
    assert {f: (work / f).stat().st_mtime_ns for f in stamps} == stamps  # finished steps were not redone
    results = json.loads((work / "eval" / "results.json").read_text())
    assert results["order"] == ["music_base", "music_tuned", "music_speed"]
    tuned = results["sections"]["music_tuned"]["summary"]
    assert tuned["unseen_metrics"] == "instrument" and tuned["captions"] == 2
    assert results["settings"]["issue_17_targets"]["real_time_factor"] > 0
    assert (model / "mulan" / "config.json").is_file() and (work / "prefer" / "model" / "mulan").is_dir()
    assert json.loads((model / "recipe.json").read_text())["recipe"] == "musiclm-tiny"

    music = MusicLMPipeline.from_bundle(model, device="cpu")
    waves = music.generate(["a piano chorale in C major"], 0.5, num_samples=2, seed=3)
    assert len(waves[0]) == 2 and waves[0][0].shape[-1] == int(0.5 * music.sample_rate)
