"""Share and load like the Hugging Face ecosystem: save_pretrained / from_pretrained on folders, hub ids
resolved through huggingface_hub (offline here: its download is replaced by a local folder), the model
card, and `soundlm push` up to the upload call."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tiny_bundle import SR, make_tiny_bundle, tone
from typer.testing import CliRunner

import soundlm
from soundlm.hub import BundleConfig, bundle_config, plan_push, push_to_hub
from soundlm.pretrained import default_model_dir, resolve_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """The tiny bundle written by save_pretrained, carrying the shipped model's recipe and eval records."""
    root = tmp_path_factory.mktemp("hub")
    pipe = soundlm.from_pretrained(make_tiny_bundle(root), device="cpu")
    return soundlm.save_pretrained(pipe, root / "shared", records_from=default_model_dir(), name="tiny-test")


def test_save_pretrained_writes_config_card_and_loads_back_the_same_model(saved, tmp_path):
    config = bundle_config(saved)
    assert config == BundleConfig.from_json(json.loads((saved / "config.json").read_text()), "x")
    assert config.sample_rate == SR and config.coarse_codebooks == 2 and config.codebook_size > 0
    card = (saved / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\nlibrary_name: soundlm\n")
    assert "# tiny-test" in card and "## Evaluation" in card and "## How to use" in card
    # The evaluation table comes from eval.json: the shipped model's held-out numbers, as recorded.
    shipped = json.loads((default_model_dir() / "eval.json").read_text())
    stoi = shipped["sections"]["codec"]["summary"]["stoi"]
    assert f"| Codec reconstruction quality | stoi | {stoi:.4g} |" in card
    assert "recipe speech-tiny" in card and "120 training voices" in card
    # from_pretrained(folder) gives the model that was saved: same continuation for the same seed.
    a = soundlm.from_pretrained(saved, device="cpu").continue_audio(tone(0.6), 0.3, prompt_sample_rate=SR, seed=3)
    again = soundlm.save_pretrained(soundlm.from_pretrained(saved, device="cpu"), tmp_path / "again")
    b = soundlm.from_pretrained(again, device="cpu").continue_audio(tone(0.6), 0.3, prompt_sample_rate=SR, seed=3)
    assert np.array_equal(a[0], b[0])


def test_hub_ids_resolve_through_huggingface_hub(saved, monkeypatch):
    calls = []

    def fake_snapshot_download(repo_id, revision=None, local_files_only=False):
        calls.append((repo_id, revision, local_files_only))
        return str(saved)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot_download)
    assert resolve_model("someone/tiny-audiolm@v1") == saved
    assert calls == [("someone/tiny-audiolm", "v1", False)]
    pipe = soundlm.from_pretrained("someone/tiny-audiolm", device="cpu")
    assert pipe.sample_rate == SR and calls[-1] == ("someone/tiny-audiolm", None, False)


def test_hub_id_offline_and_missing_folders_fail_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(FileNotFoundError, match="not in the local cache"):
        resolve_model("nobody/no-such-model")
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    # A relative path under an existing folder is a missing local folder, never a hub download.
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        resolve_model("runs/model")
    assert resolve_model("speech-tiny") == default_model_dir()


class RecordingApi:
    """Stands in for huggingface_hub.HfApi: records the calls `push_to_hub` makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))


def test_push_uploads_the_whole_bundle_to_the_repo(saved):
    api = RecordingApi()
    plan = push_to_hub(saved, "me/tiny-audiolm", private=True, api=api)
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1] == {"repo_id": "me/tiny-audiolm", "repo_type": "model", "private": True, "exist_ok": True}
    upload = api.calls[1][1]
    assert upload["folder_path"] == str(saved) and upload["repo_id"] == "me/tiny-audiolm"
    files = sorted(p.relative_to(saved).as_posix() for p in saved.rglob("*") if p.is_file())
    assert upload["allow_patterns"] == plan.files == files
    assert {"README.md", "config.json", "coarse/model.safetensors", "codec/model.safetensors"} <= set(files)


def test_push_refuses_what_is_not_a_shareable_bundle(saved, tmp_path):
    with pytest.raises(ValueError, match="user/name"):
        plan_push(saved, "not a repo id")
    no_card = tmp_path / "no-card"
    shutil.copytree(saved, no_card)
    (no_card / "README.md").unlink()
    with pytest.raises(FileNotFoundError, match="model card"):
        plan_push(no_card, "me/x")
    with pytest.raises(FileNotFoundError, match="lacks"):
        plan_push(tmp_path, "me/x")


def test_cli_push_stops_before_the_network_on_a_bad_folder(tmp_path):
    from soundlm.cli import app

    result = CliRunner().invoke(app, ["push", str(tmp_path), "--repo", "me/x"])
    assert result.exit_code == 2 and "error:" in result.output and str(tmp_path) in result.output
