import json
from pathlib import Path

import numpy as np
import pytest
import torch

from soundlm.store import TokenRecord, StoreManifest, write_part
from soundlm.train import lm_data
from soundlm.train.lm import LMTrainConfig, train_lm
from soundlm.train.schedule import warmup_cosine
from soundlm.stages import IGNORE_INDEX, stage_layout, window_example
from soundlm.train.lm_data import crop_window, split_heldout

SEM_RATE, AC_RATE, SEM_SIZE, CB_SIZE, K = 25.0, 50.0, 12, 16, 3


def make_store(root: Path, n: int = 6, seconds: float = 2.0, seed: int = 0,
               splits: list[str | None] | None = None) -> Path:
    """A repetitive synthetic store: semantic ids cycle, acoustic codes are a function of them."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        t_s, t_a = int(seconds * SEM_RATE), int(seconds * AC_RATE)
        phase = int(rng.integers(0, SEM_SIZE))
        semantic = (np.arange(t_s) + phase) % 4 * 3  # period-4 cycle over 4 of the 12 ids
        up = np.repeat(semantic, 2)[:t_a]  # 2 acoustic frames per semantic frame
        acoustic = np.stack([(up + q) % CB_SIZE for q in range(K)])  # [K, T_a]
        records.append(TokenRecord(id=f"utt{i:02d}", path=f"utt{i:02d}.wav", duration=seconds, semantic=semantic,
                                   acoustic=acoustic, sample_rate=16000, split=splits[i] if splits else None))
    write_part(root, 0, 1, 0, records, [])
    StoreManifest.from_json({"version": 1, "semantic": {"kind": "synthetic"}, "acoustic": {"backend": "synthetic"},
                          "semantic_frame_rate": SEM_RATE, "semantic_vocab_size": SEM_SIZE,
                          "acoustic_frame_rate": AC_RATE, "acoustic_codebook_size": CB_SIZE,
                          "acoustic_num_codebooks": K, "num_shards": 1}).write(root)
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("store"))


def _cfg(store: Path, out: Path, **kw) -> LMTrainConfig:
    base = dict(store=str(store), out=str(out), stage="coarse", preset="tiny", steps=6, batch_size=2, lr=3e-3,
                warmup=2, window_seconds=0.4, ckpt_every=3, eval_every=3, eval_batches=1, heldout_fraction=0.2,
                log_every=1, progress=False)
    base.update(kw)
    return LMTrainConfig(**base)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_heldout_split_is_deterministic_by_id():
    ids = [f"rec{i}" for i in range(200)]
    a, b = split_heldout(ids, 0.1), split_heldout(list(reversed(ids)), 0.1)
    assert {ids[i] for i in a.heldout} == {ids[::-1][i] for i in b.heldout}
    assert 5 < len(a.heldout) < 40 and set(a.train).isdisjoint(a.heldout)
    assert len(split_heldout(["x", "y"], 0.01).heldout) == 1  # a tiny store still gets one held-out record
    with pytest.raises(ValueError, match="heldout-fraction"):
        split_heldout(ids, 1.0)


def test_step_sampler_is_a_function_of_the_step():
    straight = list(lm_data.StepSampler(0, 4, batch_size=2, grad_accum=2))
    resumed = list(lm_data.StepSampler(2, 4, batch_size=2, grad_accum=2))
    assert straight[8:] == resumed and straight == list(range(16))
    ranks = [list(lm_data.StepSampler(0, 2, 2, 1, world_size=2, rank=r)) for r in range(2)]
    assert set(ranks[0]).isdisjoint(ranks[1]) and sorted(ranks[0] + ranks[1]) == list(range(8))


def test_crop_is_time_aligned_across_streams():
    sem = np.arange(50)  # 2 s at 25 Hz
    ac = np.stack([np.arange(100) // 2, np.arange(100) // 2])  # 2 s at 50 Hz, value = semantic frame
    rec = TokenRecord("r", semantic=sem, acoustic=ac)
    for seed in range(20):
        w = crop_window(rec, 0.4, 25.0, 50.0, np.random.default_rng(seed))
        assert w.semantic.shape == (10,) and w.acoustic.shape == (2, 20)
        assert w.acoustic[0, 0] == w.semantic[0] and w.acoustic[0, -1] == w.semantic[-1]
    short = crop_window(TokenRecord("s", semantic=sem[:5], acoustic=ac[:, :10]), 0.4, 25.0, 50.0,
                        np.random.default_rng(0))
    assert short.semantic.shape == (5,) and short.acoustic.shape == (2, 10)  # whole record, padded later


def test_stage_examples_train_only_generated_tokens():
    rec = TokenRecord("r", semantic=np.arange(10) % SEM_SIZE, acoustic=np.arange(3 * 20).reshape(3, 20) % CB_SIZE)
    w = crop_window(rec, 0.4, SEM_RATE, AC_RATE, np.random.default_rng(0))
    coarse = stage_layout("coarse", SEM_SIZE, CB_SIZE, K, coarse_codebooks=1)
    ex = window_example(w, "coarse", coarse, coarse_codebooks=1)
    trained = ex.targets[ex.targets != IGNORE_INDEX]
    lo, hi = coarse.range_of("acoustic:0")
    assert trained.shape == (20,) and ((trained >= lo) & (trained < hi)).all()
    assert (ex.inputs[1:] == np.where(ex.targets[:-1] != IGNORE_INDEX, ex.targets[:-1], ex.inputs[1:])).all()
    fine = stage_layout("fine", SEM_SIZE, CB_SIZE, K, coarse_codebooks=1)
    ex = window_example(w, "fine", fine, coarse_codebooks=1)
    trained = ex.targets[ex.targets != IGNORE_INDEX]
    assert trained.shape == (2 * 20,) and trained.min() >= fine.codebook_offset(1)


def test_warmup_cosine_schedule():
    values = [warmup_cosine(s, 10, 100, 0.1) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:])) and values[-1] >= 0.1


def test_training_lowers_loss_and_exports_final(store, tmp_path):
    from soundlm.lm.model import load_lm

    run = tmp_path / "run"
    result = train_lm(_cfg(store, run, stage="semantic", steps=40, window_seconds=1.0, batch_size=4, eval_every=20,
                           ckpt_every=20))
    losses = [result.train_losses[s] for s in sorted(result.train_losses)]
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3])
    assert result.heldout_loss is not None and result.heldout_loss < losses[0]
    model = load_lm(run / "final")
    cfg = json.loads((run / "final" / "config.json").read_text())
    assert cfg["meta"]["stage"] == "semantic" and cfg["meta"]["tokenizers"]["semantic_vocab_size"] == SEM_SIZE
    assert model.layout.semantic_size == SEM_SIZE
    assert {m["step"] for m in _metrics(run) if "heldout/loss" in m} == {20, 40}
    assert any(p.name.startswith("events") for p in (run / "tb").iterdir())
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == ["step_00000020", "step_00000040"]


def test_resume_is_exact(store, tmp_path):
    from safetensors.torch import load_file

    straight = train_lm(_cfg(store, tmp_path / "a"))
    first = train_lm(_cfg(store, tmp_path / "b", stop_at=3))
    assert not (tmp_path / "b" / "final").exists() and sorted(first.train_losses) == [1, 2, 3]
    resumed = train_lm(_cfg(store, tmp_path / "b"))
    assert sorted(resumed.train_losses) == [4, 5, 6]
    for step in range(1, 7):
        got = first.train_losses.get(step, resumed.train_losses.get(step))
        assert got == straight.train_losses[step], step
    wa = load_file(tmp_path / "a" / "final" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "final" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ma = [m for m in _metrics(tmp_path / "a")]
    mb = [m for m in _metrics(tmp_path / "b")]
    assert [m["step"] for m in ma] == [m["step"] for m in mb]
    # Resuming with another stage is refused instead of mixing runs.
    with pytest.raises(ValueError, match="other settings"):
        train_lm(_cfg(store, tmp_path / "b", stage="fine"))


def test_grad_accumulation_matches_one_big_batch(store, tmp_path):
    big = train_lm(_cfg(store, tmp_path / "big", stage="fine", steps=3, batch_size=4, ckpt_every=10))
    acc = train_lm(_cfg(store, tmp_path / "acc", stage="fine", steps=3, batch_size=2, grad_accum=2, ckpt_every=10))
    for step in (1, 2, 3):
        assert acc.train_losses[step] == pytest.approx(big.train_losses[step], rel=1e-4)


def test_cli_reports_bad_store(tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    result = CliRunner().invoke(app, ["train", "lm", str(tmp_path / "nope"), "--stage", "semantic",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code != 0
    assert "not a token store" in result.output and "soundlm tokenize" in result.output


@pytest.mark.parametrize("stage", ["coarse", "fine"])
def test_delay_pattern_stage_trains_and_saves(store, tmp_path, stage):
    from soundlm.lm.model import DelayLM, load_lm

    run = tmp_path / "run"
    result = train_lm(_cfg(store, run, stage=stage, pattern="delay", steps=12, coarse_codebooks=1, lr=1e-2))
    losses = [result.train_losses[s] for s in sorted(result.train_losses)]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    model = load_lm(run / "final")
    assert isinstance(model, DelayLM) and model.config.num_codebooks == (1 if stage == "coarse" else K - 1)
    meta = json.loads((run / "final" / "config.json").read_text())["meta"]
    assert meta["pattern"] == "delay" and meta["stage"] == stage


@pytest.mark.slow  # three CLI processes: ~30 s on a busy 2-core machine
def test_kill_and_resume_through_the_cli(store, tmp_path):
    """kill -9 mid-run, rerun the same command: the metrics equal an uninterrupted run's."""
    import os
    import signal
    import subprocess
    import sys
    import time

    args = ["train", "lm", str(store), "--stage", "semantic", "--steps", "40", "--batch-size", "2",
            "--window-seconds", "0.4", "--ckpt-every", "4", "--eval-every", "100", "--warmup", "2",
            "--log-every", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = tmp_path / "killed"
    cmd = [sys.executable, "-c", "from soundlm.cli import main; main()", *args, "--out", str(run)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 40
    while not (run / "checkpoints" / "latest").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "final").exists(), "the run finished before it was killed; raise --steps"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "inference folder" in done.stdout
    straight = tmp_path / "straight"
    subprocess.run([*cmd[:-1], str(straight)], env=env, check=True, capture_output=True, timeout=120)
    killed_losses = {m["step"]: m["train/loss"] for m in _metrics(run) if "train/loss" in m}
    straight_losses = {m["step"]: m["train/loss"] for m in _metrics(straight) if "train/loss" in m}
    assert killed_losses == straight_losses and len(killed_losses) == 40
    # And the final weights are the uninterrupted run's, bit for bit.
    from safetensors.torch import load_file

    wa, wb = load_file(str(run / "final" / "model.safetensors")), load_file(str(straight / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_bf16_and_worker_processes_in_one_process(store, tmp_path):
    """Two runs with different precision in one Python process (Accelerate's state is reset)."""
    a = train_lm(_cfg(store, tmp_path / "w", steps=2, num_workers=1, eval_every=100))
    b = train_lm(_cfg(store, tmp_path / "bf16", steps=2, mixed_precision="bf16", eval_every=100))
    assert a.train_losses[1] == pytest.approx(b.train_losses[1], rel=0.05)  # same batch, bf16 rounding
    assert (tmp_path / "bf16" / "final" / "model.safetensors").exists()


def test_records_of_the_heldout_split_are_never_trained_on(tmp_path):
    """Held-out voices are for evaluation: the LM trainer leaves the corpus's heldout split out."""
    from soundlm.store import load_store_tokens

    store = make_store(tmp_path / "store", n=6, splits=["train", "heldout", None, "train", "heldout", "train"])
    kept = [r.id for r in load_store_tokens(store, exclude_splits=("heldout",)).records]
    assert kept == ["utt00", "utt02", "utt03", "utt05"]
    assert len(load_store_tokens(store).records) == 6
    # The default excludes "heldout"; the 20% hash held-out of the training curve comes from the rest.
    res = train_lm(_cfg(store, tmp_path / "run", steps=2, ckpt_every=2, eval_every=2))
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["exclude_split"] == "heldout" and res.step == 2
    only_heldout = make_store(tmp_path / "held", n=2, splits=["heldout", "heldout"])
    with pytest.raises(ValueError, match="excluded split"):
        train_lm(_cfg(only_heldout, tmp_path / "run2"))
    res = train_lm(_cfg(only_heldout, tmp_path / "run3", steps=1, ckpt_every=1, eval_every=1, exclude_split=None))
    assert res.step == 1
