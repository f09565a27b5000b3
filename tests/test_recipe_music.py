"""`soundlm recipe music-tiny`: its settings, and a shrunken run killed in the coarse stage that resumes
without redoing the finished steps."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from soundlm.recipe import LMStageSettings, music_tiny, recipe_config, run_recipe


def test_music_tiny_clusters_chroma_units_on_the_music_corpus():
    cfg = recipe_config("music-tiny")
    assert cfg == music_tiny() and cfg.corpus == "music" and cfg.semantic_features == "chroma"
    assert cfg.phonetic_steps and cfg.music_clips == 400 and cfg.corpus_from is None


def test_a_corpus_folder_without_a_manifest_is_refused_before_any_work(tmp_path):
    cfg = replace(music_tiny(), corpus_from=str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="soundlm data music"):
        run_recipe(cfg, tmp_path / "work", tmp_path / "model")
    assert not (tmp_path / "work").exists()


def _finished(work: Path) -> dict[str, float]:
    """What the finished steps wrote: a step done again would rewrite these (its trainers would log new steps)."""
    files = ["semantic/config.json", "codec/metrics.jsonl", "store/store.json", "lm-semantic/metrics.jsonl",
             "lm-semantic/checkpoints/step_00000003"]
    return {f: (work / f).stat().st_mtime_ns for f in files}


@pytest.mark.slow  # about a minute on 2 shared cores
def test_shrunken_music_recipe_resumes_after_a_kill(tmp_path, monkeypatch):
    import soundlm.train.lm as train_lm_module
    from music_corpus import write_music_corpus

    clips = [{"piece": f"p/{i}", "tonic": (5 * i) % 12, "instrument": ("piano", "organ")[i % 2],
              "split": "heldout" if i >= 6 else "train"} for i in range(8)]
    corpus = write_music_corpus(tmp_path / "corpus", clips).parent
    small = LMStageSettings(steps=3, batch_size=2, window_seconds=1.0, preset="tiny")
    cfg = replace(music_tiny(), corpus_from=str(corpus), clusters=8, codec_preset="tiny", codec_steps=3,
                  codec_batch_size=2, lm_preset="tiny", semantic_lm=small, coarse_lm=replace(small, window_seconds=0.5),
                  fine_lm=replace(small, window_seconds=0.5), instrument_steps=2, eval_prompts=2, prompt_seconds=2.0,
                  continuation_seconds=1.0)
    work, model = tmp_path / "work", tmp_path / "model"
    real_train_lm = train_lm_module.train_lm

    def killed_in_coarse(lm_cfg):
        if lm_cfg.stage == "coarse":
            raise KeyboardInterrupt  # what Ctrl-C or a kill does to the running step
        return real_train_lm(lm_cfg)

    monkeypatch.setattr(train_lm_module, "train_lm", killed_in_coarse)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(cfg, work, model)
    done = json.loads((work / "timings.json").read_text())
    assert set(done) == {"corpus", "semantic tokenizer", "codec", "tokenize", "lm semantic"}
    before = _finished(work)

    monkeypatch.setattr(train_lm_module, "train_lm", real_train_lm)
    result = run_recipe(cfg, work, model)
    assert _finished(work) == before  # the finished steps were not redone (trainers only re-export final/)
    assert set(result.wall_seconds) >= {"lm coarse", "lm fine", "package", "instrument classifier", "evaluate"}
    recipe = json.loads((model / "recipe.json").read_text())
    assert recipe["recipe"] == "music-tiny" and f"--corpus {corpus}" in recipe["command"]
    summary = json.loads((model / "eval.json").read_text())["sections"]["music_continuation"]["summary"]
    assert summary["num_prompts"] == 2 and summary["key_ground_truth"] is not None
    assert (model / "EVAL.md").read_text().startswith("# soundlm evaluation")


def test_cli_music_tiny_does_not_default_to_the_shipped_speech_model(recipe_cli):
    res, seen = recipe_cli("music-tiny", "--corpus", "data/music", "--semantic-features", "cqt")
    assert res.exit_code == 1 and "stop here" in res.output
    assert seen["work"] == Path("work/music-tiny") and seen["out"] == Path("models/music-tiny")
    assert seen["cfg"].corpus_from == "data/music" and seen["cfg"].semantic_features == "cqt"


def test_a_speech_run_started_before_music_tiny_still_resumes(tmp_path):
    from dataclasses import asdict

    from soundlm.recipe import speech_tiny, upgrade_settings

    cfg = replace(speech_tiny(), hours=-1.0)
    old = json.loads(json.dumps(asdict(cfg)))
    for key in ("corpus", "corpus_from", "music_clips", "instrument_steps", "continuation_seconds"):
        del old[key]
    assert upgrade_settings(old) == json.loads(json.dumps(asdict(cfg)))
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipe.json").write_text(json.dumps({"settings": old}))
    with pytest.raises(ValueError, match="hours"):  # past the settings check, stopped by the corpus step
        run_recipe(cfg, work, tmp_path / "model")
