"""The shared training loop: exact resume, metrics cut back on resume, checkpoint contents."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from soundlm.checkpoint import latest_checkpoint, load_train_state
from soundlm.train.loop import Trainer, TrainedSteps, run_training
from soundlm.train.metrics_log import MetricsLog


class ToyTrainer(Trainer):
    """Linear regression; batch `step` is a function of the step, the noise is drawn from the global RNG."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        self.model = torch.nn.Linear(4, 1)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=0.05)
        self.begun: list[int] = []
        self.restored: list[Path] = []

    def restore(self, folder: Path, state: dict) -> None:
        self.model.load_state_dict(load_file(folder / "model.safetensors"))
        self.opt.load_state_dict(state["optimizer"])
        self.restored.append(folder)

    def begin(self, start: int) -> None:
        self.begun.append(start)

    def train_step(self, step: int) -> float:
        x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step))
        # Only a resume that restores the global RNG draws the same noise as the run straight through.
        noise = 0.1 * torch.randn(8, 1)
        loss = F.mse_loss(self.model(x), x.sum(1, keepdim=True) + noise)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        return loss.item()

    def report(self, done: int, out: float, metrics: MetricsLog, last: bool) -> dict[str, str]:
        if done % 2 == 0 or last:
            metrics.log(done, {"loss": out}, kind="train")
        return {"loss": f"{out:.3f}"}

    def write_model(self, folder: Path) -> None:
        save_file(self.model.state_dict(), folder / "model.safetensors")

    def train_state(self, step: int) -> dict:
        return {"optimizer": self.opt.state_dict()}


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(latest_checkpoint(run) / "model.safetensors")


def _assert_same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (a / "metrics.jsonl").read_text() == (b / "metrics.jsonl").read_text()


def test_stop_then_resume_equals_the_run_straight_through(tmp_path):
    straight = run_training(ToyTrainer(), tmp_path / "a", steps=7, ckpt_every=3, progress=False)
    assert straight == TrainedSteps(start=0, step=7)
    first = ToyTrainer()
    assert run_training(first, tmp_path / "b", steps=7, ckpt_every=3, stop_at=4, progress=False) == \
        TrainedSteps(start=0, step=4)
    assert first.begun == [0] and first.restored == []
    assert latest_checkpoint(tmp_path / "b").name == "step_00000004"  # the end of a call is saved
    second = ToyTrainer()
    assert run_training(second, tmp_path / "b", steps=7, ckpt_every=3, progress=False) == TrainedSteps(4, 7)
    assert second.begun == [4] and second.restored == [tmp_path / "b" / "checkpoints" / "step_00000004"]
    _assert_same_run(tmp_path / "a", tmp_path / "b")
    # A finished run trains nothing more.
    again = ToyTrainer()
    assert run_training(again, tmp_path / "b", steps=7, ckpt_every=3, progress=False) == TrainedSteps(7, 7)
    _assert_same_run(tmp_path / "a", tmp_path / "b")


def test_metrics_are_cut_back_to_the_resumed_checkpoint(tmp_path):
    run_training(ToyTrainer(), tmp_path / "a", steps=6, ckpt_every=3, progress=False)
    # A run killed during step 7's log line, whose newest checkpoint is step 3: lines 4 and 6 are redone.
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    ckpts = tmp_path / "b" / "checkpoints"
    shutil.rmtree(ckpts / "step_00000006")
    (ckpts / "latest").write_text("step_00000003\n")
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "kind": "tr')
    assert run_training(ToyTrainer(), tmp_path / "b", steps=6, ckpt_every=3, progress=False).start == 3
    _assert_same_run(tmp_path / "a", tmp_path / "b")
    steps = [line for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [s.split(",")[0] for s in steps] == ['{"step": 2', '{"step": 4', '{"step": 6']


def test_checkpoints_hold_the_step_every_rng_and_the_trainers_state(tmp_path):
    run_training(ToyTrainer(), tmp_path, steps=5, ckpt_every=1, keep=2, progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_00000004", "step_00000005"]
    state = load_train_state(latest_checkpoint(tmp_path))
    assert state["step"] == 5 and set(state) == {"step", "rng", "optimizer"}
    assert {"python", "numpy", "torch"} <= set(state["rng"])


def test_bad_loop_settings_are_refused(tmp_path):
    for kw in (dict(steps=0, ckpt_every=1), dict(steps=3, ckpt_every=0), dict(steps=3, ckpt_every=1, stop_at=0)):
        with pytest.raises(ValueError, match="must be"):
            run_training(ToyTrainer(), tmp_path, progress=False, **kw)
    assert not (tmp_path / "checkpoints").exists()


class StoppingTrainer(ToyTrainer):
    """Stops once `stop_after` steps are done; the decision is part of its checkpointed state."""

    def __init__(self, stop_after: int) -> None:
        super().__init__()
        self.stop_after = stop_after
        self.steps_trained: list[int] = []

    def train_step(self, step: int) -> float:
        self.steps_trained.append(step)
        return super().train_step(step)

    def should_stop(self, done: int) -> bool:
        return done >= self.stop_after


def test_should_stop_ends_the_run_and_a_resume_stays_stopped(tmp_path):
    trainer = StoppingTrainer(stop_after=5)
    result = run_training(trainer, tmp_path / "run", steps=20, ckpt_every=3, progress=False)
    assert result == TrainedSteps(start=0, step=5, stopped_early=True)
    assert trainer.steps_trained == [0, 1, 2, 3, 4]
    assert latest_checkpoint(tmp_path / "run").name == "step_00000005"  # the stopping step is saved
    again = StoppingTrainer(stop_after=5)
    assert run_training(again, tmp_path / "run", steps=20, ckpt_every=3, progress=False) == \
        TrainedSteps(start=5, step=5, stopped_early=True)
    assert again.steps_trained == []
