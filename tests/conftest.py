import os

import pytest
import torch

# CI machines have 2 cores; developers running several suites at once set SOUNDLM_TEST_THREADS=1.
torch.set_num_threads(int(os.environ.get("SOUNDLM_TEST_THREADS", "2")))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def recipe_cli(tmp_path, monkeypatch):
    """`soundlm recipe ARGS...` in tmp_path with `run_recipe` stopped at its call: returns a function of the
    arguments giving the CLI result and what `run_recipe` was called with ({"cfg", "work", "out"}; empty when
    the CLI refused the arguments first). The stop shows as exit code 1 and "stop here" in the output."""
    from typer.testing import CliRunner

    import soundlm.recipe
    from soundlm.cli import app

    def invoke(*args: str):
        seen: dict = {}

        def fake_run(cfg, work, out, **kwargs):
            seen.update(cfg=cfg, work=work, out=out)
            raise ValueError("stop here")

        monkeypatch.setattr(soundlm.recipe, "run_recipe", fake_run)
        return CliRunner().invoke(app, ["recipe", *args]), seen

    monkeypatch.chdir(tmp_path)
    return invoke


@pytest.fixture
def stand_in_mulan(monkeypatch):
    """`soundlm.music.mulan.load_mulan` reading `tiny_bundle.StandInMuLan` folders (a tiny music bundle's mulan/;
    the real MuLan is tested in test_mulan.py)."""
    from tiny_bundle import StandInMuLan

    monkeypatch.setattr("soundlm.music.mulan.load_mulan", lambda folder, device="cpu": StandInMuLan.load(folder))
