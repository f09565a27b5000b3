"""Stage format: StageMeta round trips, old folders read, build_stage checks, save -> load_stage."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from soundlm.pretrained import default_model_dir
from soundlm.stages import STAGES, Stage, StageMeta, build_stage, load_stage, stage_layout
from soundlm.store import StoreManifest

MANIFEST = StoreManifest(semantic={"kind": "test"}, acoustic={"backend": "test"}, semantic_sample_rate=16000,
                         semantic_frame_rate=25.0, semantic_vocab_size=12, acoustic_sample_rate=16000,
                         acoustic_frame_rate=50.0, acoustic_num_codebooks=3, acoustic_codebook_size=16,
                         semantic_spec="/sem", acoustic_spec="/codec", shards={"0": {"complete": True}})


def test_stage_meta_round_trips_and_drops_shards():
    meta = StageMeta("coarse", 2.0, 1, 3, 25.0, 50.0, pattern="delay", tokenizers=MANIFEST, store="s")
    data = json.loads(json.dumps(meta.to_json()))
    assert "shards" not in data["tokenizers"]
    back = StageMeta.from_json(data, "x")
    assert back.tokenizers.semantic_spec == "/sem" and back.tokenizers.shards == {}
    assert back == StageMeta("coarse", 2.0, 1, 3, 25.0, 50.0, pattern="delay",
                             tokenizers=StoreManifest.from_json(MANIFEST.to_json(shards=False)), store="s")


def test_shipped_bundle_meta_reads_as_written():
    """The shipped folders (written before StageMeta existed) read, and write back the same JSON."""
    for stage in STAGES:
        raw = json.loads((default_model_dir() / stage / "config.json").read_text())["meta"]
        meta = StageMeta.from_json(raw, stage)
        assert meta.stage == stage and meta.tokenizers.semantic_vocab_size == 100
        assert meta.to_json() == raw


def test_stage_meta_refuses_what_is_not_a_stage():
    with pytest.raises(ValueError, match="lacks"):
        StageMeta.from_json({"stage": "coarse"}, "folder")
    with pytest.raises(ValueError, match="stage must be one of"):
        StageMeta("middle", 1.0, 1, 3, 25.0, 50.0)
    with pytest.raises(ValueError, match="pattern must be one of"):
        StageMeta("fine", 1.0, 1, 3, 25.0, 50.0, pattern="zigzag")


def test_build_stage_checks_its_arguments():
    with pytest.raises(ValueError, match="--preset must be one of"):
        build_stage("semantic", MANIFEST, preset="huge")
    with pytest.raises(ValueError, match="--coarse-codebooks must be in"):
        build_stage("coarse", MANIFEST, coarse_codebooks=4)
    with pytest.raises(ValueError, match="beyond the coarse ones"):
        build_stage("fine", MANIFEST, coarse_codebooks=3)
    with pytest.raises(ValueError, match="has no 'semantic_frame_rate'"):
        build_stage("semantic", StoreManifest(), store="old-store")


@pytest.mark.parametrize("stage,pattern", [("semantic", "flatten"), ("coarse", "flatten"), ("fine", "delay")])
def test_built_stage_saves_and_loads_as_the_same_stage(tmp_path: Path, stage: str, pattern: str):
    torch.manual_seed(0)
    built = build_stage(stage, MANIFEST, pattern=pattern, window_seconds=0.4, store="store")
    assert built.meta.window_seconds == 0.4 and built.meta.num_codebooks == (0 if stage == "semantic" else 3)
    assert built.layout == stage_layout(stage, 12, 0 if stage == "semantic" else 16, built.meta.num_codebooks,
                                        built.meta.coarse_codebooks)
    built.export(tmp_path / "final")
    loaded = load_stage(tmp_path, stage)  # a run folder resolves to its final/
    assert isinstance(loaded, Stage) and loaded.meta == built.meta and loaded.delayed == (pattern == "delay")
    for a, b in zip(built.model.state_dict().values(), loaded.model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="asked for"):
        load_stage(tmp_path, "semantic" if stage != "semantic" else "fine")


def test_stage_example_and_logits_agree_in_shape():
    built = build_stage("coarse", MANIFEST, window_seconds=0.4)
    from soundlm.stages import Window, collate

    rng = np.random.default_rng(0)
    w = Window("r", 0.0, rng.integers(0, 12, 10), rng.integers(0, 16, (3, 20)))
    batch = collate([built.example(w)] * 2, built.pad_id)
    logits = built.logits(batch, torch.device("cpu"))
    assert logits.shape[:2] == batch["targets"].shape and logits.shape[-1] == built.layout.vocab_size
