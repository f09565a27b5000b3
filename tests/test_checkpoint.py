import json

import pytest

from soundlm.checkpoint import TRAIN_CONFIG, check_resume_settings, refuse_changed_settings


def test_changed_settings_are_named_with_the_file_and_the_fix(tmp_path):
    check_resume_settings(tmp_path, {"lr": 0.1, "batch_size": 4, "steps": 10, "speed": (0.9, 1.1)},
                          ["lr", "batch_size", "speed"])
    with pytest.raises(ValueError) as err:
        refuse_changed_settings(tmp_path, {"lr": 0.2, "batch_size": 8, "steps": 20, "speed": (0.9, 1.1)},
                                ["lr", "batch_size", "speed"])
    message = str(err.value)
    assert message.startswith(str(tmp_path / TRAIN_CONFIG))
    assert "other settings (lr: 0.1 -> 0.2; batch_size: 4 -> 8)" in message
    assert "rerun with the original settings to resume, or pass a new --out" in message


def test_unlocked_settings_may_change_and_are_recorded(tmp_path):
    check_resume_settings(tmp_path, {"lr": 0.1, "steps": 10, "betas": (0.5, 0.9)}, ["lr", "betas"])
    check_resume_settings(tmp_path, {"lr": 0.1, "steps": 20, "betas": (0.5, 0.9)}, ["lr", "betas"])
    assert json.loads((tmp_path / TRAIN_CONFIG).read_text()) == {"lr": 0.1, "steps": 20, "betas": [0.5, 0.9]}


def test_settings_the_old_run_did_not_record_are_not_compared(tmp_path):
    (tmp_path / TRAIN_CONFIG).write_text(json.dumps({"lr": 0.1}))
    refuse_changed_settings(tmp_path, {"lr": 0.1, "disc_filters": 32}, ["lr", "disc_filters"])
    refuse_changed_settings(tmp_path / "fresh", {"lr": 0.5}, ["lr"])  # a new run has nothing to compare
    assert not (tmp_path / "fresh").exists()
