"""`soundlm train prefer` end to end on a tiny random bundle: people's judgements, reward-ranked samples, resume."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from soundlm.audio import save_audio
from soundlm.cli import app
from soundlm.train.prefer import PreferTrainConfig, train_prefer
from tiny_bundle import SR, make_tiny_bundle, tone


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_tiny_bundle(tmp_path_factory.mktemp("prefer-bundle"))


@pytest.fixture(scope="module")
def judgements(tmp_path_factory):
    """Six judgements between tones: the lower one of each pair chosen, one line broken."""
    folder = tmp_path_factory.mktemp("judgements")
    rows = []
    for i, (low, high) in enumerate([(110, 330), (147, 440), (131, 392), (165, 494), (123, 370), (175, 523)]):
        save_audio(folder / f"low{i}.wav", tone(0.8, low)[None], SR)
        save_audio(folder / f"high{i}.wav", tone(0.8, high)[None], SR)
        rows.append(json.dumps({"caption": f"a low tone {i}", "chosen": f"low{i}.wav", "rejected": f"high{i}.wav"}))
    rows.insert(2, json.dumps({"caption": "broken", "chosen": "low0.wav", "rejected": "gone.wav"}))
    path = folder / "judgements.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_cli_tunes_a_bundle_stage_on_human_pairs(bundle, judgements, tmp_path):
    from soundlm.pretrained import load_pipeline
    from soundlm.stages import load_stage

    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "prefer", "--base", str(bundle), "--pairs", str(judgements), "--out",
                                   str(out), "--steps", "6", "--batch-size", "4", "--lr", "3e-3", "--warmup", "1",
                                   "--beta", "0.5", "--ckpt-every", "3", "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "tuned stage saved to" in res.output
    summary = json.loads((out / "prefer.json").read_text())
    assert summary["pairs"] == 6 and summary["skipped_judgements"] == 1 and summary["stage"] == "semantic"
    # Training moved the policy toward the chosen tones.
    assert summary["logprob_margin_after"] > summary["logprob_margin_before"] + 0.1
    errors = [json.loads(x) for x in (out / "pairs_errors.jsonl").read_text().splitlines()]
    assert errors[0]["line"] == 3 and "gone.wav: no such audio file" in errors[0]["reason"]
    # The tuned stage loads as the base's did, and the exported bundle runs it.
    tuned = load_stage(out / "final", "semantic")
    base = load_stage(bundle / "semantic", "semantic")
    assert tuned.meta == base.meta and tuned.layout == base.layout
    assert not torch.equal(tuned.model.hf.lm_head.weight, base.model.hf.lm_head.weight)
    pipe = load_pipeline(out / "model", device="cpu")
    assert torch.equal(pipe.semantic.model.hf.lm_head.weight, tuned.model.hf.lm_head.weight)
    base_coarse = load_stage(bundle / "coarse", "coarse").model
    assert torch.equal(pipe.coarse.model.hf.lm_head.weight, base_coarse.hf.lm_head.weight)
    audio = pipe.generate(seconds=0.3, seed=0)
    assert np.isfinite(audio).all()
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"train/loss", "train/accuracy", "train/margin"} <= set(metrics[-1])


@pytest.fixture(scope="module")
def delay1_bundle(tmp_path_factory):
    """One unconditioned delay-pattern coarse stage over all the codec's codebooks, no fine stage."""
    return make_tiny_bundle(tmp_path_factory.mktemp("prefer-delay1"), pattern="delay1")


@pytest.mark.parametrize("pattern", ["flatten", "delay1"])
def test_resume_after_a_stop_equals_the_straight_run(bundle, delay1_bundle, judgements, tmp_path, pattern):
    base = bundle if pattern == "flatten" else delay1_bundle

    def cfg(out, stop_at=None):
        return PreferTrainConfig(base=str(base), out=str(out), pairs=str(judgements), stage="coarse", steps=4,
                                 batch_size=2, lr=2e-3, warmup=1, ckpt_every=10, stop_at=stop_at, device="cpu",
                                 progress=False)

    straight = train_prefer(cfg(tmp_path / "a"))
    assert train_prefer(cfg(tmp_path / "b", stop_at=2)) is None
    resumed = train_prefer(cfg(tmp_path / "b"))
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="other settings.*beta"):
        train_prefer(PreferTrainConfig(**{**cfg(tmp_path / "b").__dict__, "beta": 0.3}))
    summary = json.loads((tmp_path / "a" / "prefer.json").read_text())
    assert summary["stage"] == "coarse" and summary["pairs"] == 6
    if pattern == "delay1":  # the judgements' clips became delay samples, and the tuned bundle loads and generates
        from soundlm.pretrained import load_pipeline

        groups = [json.loads(x) for x in (tmp_path / "a" / "pairs.jsonl").read_text().splitlines()]
        assert all(s["pattern"] == "delay" for g in groups for s in g["samples"])
        assert summary["logprob_margin_after"] > summary["logprob_margin_before"]
        assert np.isfinite(load_pipeline(tmp_path / "a" / "model", device="cpu").generate(seconds=0.3, seed=0)).all()


def test_self_generated_pairs_through_a_registered_sampler(bundle, tmp_path):
    from test_music_pairs import ToneSampler

    from soundlm.music.pairs import register_sampler
    from soundlm.stages import load_stage

    def factory(base, stage, device):
        assert stage.name == "semantic"  # the stage being tuned
        stage = load_stage(base / "semantic", "semantic")
        return ToneSampler(stage.model, stage.layout, length=8)

    register_sampler("tiny-tones", factory)
    captions = tmp_path / "captions.txt"
    captions.write_text("a calm piano piece in C major\nsolo piano in C major, 4/4\nC major organ chorale\n")
    final = train_prefer(PreferTrainConfig(base=str(bundle), out=str(tmp_path / "run"), self_samples=4,
                                           captions=str(captions), sampler="tiny-tones", margin=0.0, steps=3,
                                           batch_size=2, lr=1e-3, warmup=1, device="cpu", progress=False))
    summary = json.loads((tmp_path / "run" / "prefer.json").read_text())
    assert summary["captions"] == 3 and summary["pairs"] >= 1 and 0 <= summary["sample_reward_mean"] <= 1
    assert final.is_dir() and (tmp_path / "run" / "model" / "semantic" / "config.json").is_file()


def test_option_errors(bundle, tmp_path):
    with pytest.raises(ValueError, match="exactly one of --pairs"):
        train_prefer(PreferTrainConfig(base=str(bundle), out=str(tmp_path / "r")))
    with pytest.raises(ValueError, match="--self needs --captions"):
        train_prefer(PreferTrainConfig(base=str(bundle), out=str(tmp_path / "r"), self_samples=2))
    # The default sampler is MusicLM's: an AudioLM bundle without mulan/ has no captions -> condition ids.
    with pytest.raises(FileNotFoundError, match="no mulan/ folder"):
        train_prefer(PreferTrainConfig(base=str(bundle), out=str(tmp_path / "r"), self_samples=2,
                                       captions=str(bundle / "config.json"), device="cpu", progress=False))
    with pytest.raises(ValueError, match="no music sampler named 'nope'"):
        train_prefer(PreferTrainConfig(base=str(bundle), out=str(tmp_path / "r4"), self_samples=2, sampler="nope",
                                       captions=str(bundle / "config.json"), device="cpu", progress=False))
    with pytest.raises(ValueError, match="no pair tokenizer named 'nope'.*'audiolm' is soundlm's own"):
        train_prefer(PreferTrainConfig(base=str(bundle), out=str(tmp_path / "r3"), pairs=str(bundle / "x.jsonl"),
                                       tokenizer="nope", device="cpu", progress=False))
    res = CliRunner().invoke(app, ["train", "prefer", "--base", str(tmp_path / "nope"), "--pairs", "x.jsonl",
                                   "--out", str(tmp_path / "r2")])
    assert res.exit_code == 2 and "no such model folder" in res.stderr


@pytest.mark.slow  # three CLI processes: ~40 s on a busy 2-core machine
def test_sigkill_then_rerun_equals_uninterrupted(bundle, judgements, tmp_path):
    import os
    import subprocess

    from test_faults import _cli, _kill_when, _same_weights

    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def args(out):
        return ["train", "prefer", "--base", str(bundle), "--pairs", str(judgements), "--out", str(out), "--steps",
                "30", "--batch-size", "2", "--lr", "1e-3", "--ckpt-every", "2", "--device", "cpu", "--no-progress"]

    run = tmp_path / "killed"
    _kill_when(_cli(*args(run)), lambda: (run / "checkpoints" / "latest").exists(), env, tmp_path / "killed.log")
    assert not (run / "final").exists(), "the run finished before it was killed; raise --steps"
    done = subprocess.run(_cli(*args(run)), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    subprocess.run(_cli(*args(tmp_path / "straight")), env=env, check=True, capture_output=True, timeout=300)
    _same_weights(run / "final", tmp_path / "straight" / "final")


def test_a_float16_bundle_gets_float16_tuned_weights(bundle, judgements, tmp_path):
    from safetensors import safe_open

    from soundlm.pretrained import export_bundle_fp16, load_pipeline

    half = export_bundle_fp16(bundle, tmp_path / "fp16").out_dir
    out = tmp_path / "run"
    final = train_prefer(PreferTrainConfig(base=str(half), out=str(out), pairs=str(judgements), steps=1,
                                           batch_size=2, device="cpu", progress=False))
    for weights in (final / "model.safetensors", out / "model" / "semantic" / "model.safetensors"):
        with safe_open(str(weights), framework="pt") as f:
            assert {f.get_slice(n).get_dtype() for n in f.keys()} == {"F16"}
    assert load_pipeline(out / "model", device="cpu").semantic.model.hf.lm_head.weight.dtype == torch.float32



C_MAJOR = {0, 2, 4, 5, 7, 9, 11}
NOTES = 12


@dataclass
class ToneLoopResult:
    seconds: float  # pairs + training
    base_reward: np.ndarray  # [N] key reward of the base's sample per held-out seed
    tuned_reward: np.ndarray  # [N]
    base_in_scale: np.ndarray  # [N] share of the sample's notes in C major
    tuned_in_scale: np.ndarray  # [N]

    @property
    def win_rate(self) -> float:
        """Seed-matched samples where the tuned one has the higher key reward (ties half)."""
        return float(np.mean((self.tuned_reward > self.base_reward) + 0.5 * (self.tuned_reward == self.base_reward)))


def _tone_samples(stage_folder, seeds: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Key reward and in-scale note share of one sample per seed."""
    from test_music_pairs import ToneSampler

    from soundlm.music.rewards import KeyReward, MusicRequest
    from soundlm.stages import load_stage

    stage = load_stage(stage_folder, "semantic")
    sampler = ToneSampler(stage.model.eval(), stage.layout, length=NOTES)
    reward, request = KeyReward(), MusicRequest("a piece in C major", tonic=0, mode="major")
    rewards, in_scale = [], []
    for seed in seeds:
        sample = sampler.sample([request.caption], 1, seed)[0][0]
        rewards.append(reward.score(sample.audio, sample.sample_rate, request))
        ids = stage.layout.global_to_semantic(sample.tokens[1:]).numpy()
        in_scale.append(np.mean([s % 12 in C_MAJOR for s in ids]))
    return np.array(rewards), np.array(in_scale)


def tone_loop(root, captions: int = 24, samples: int = 4, steps: int = 40, lr: float = 1e-3, beta: float = 0.1,
              eval_samples: int = 200) -> ToneLoopResult:
    """MusicRL-R at toy scale (see bench/prefer_tones.py): the tiny bundle's semantic stage plays notes, every
    caption asks for C major, the key reward ranks `samples` samples per caption, DPO tunes the stage; then base
    and tuned draw one sample per held-out seed."""
    import time

    from test_music_pairs import ToneSampler

    from soundlm.music.pairs import register_sampler
    from soundlm.stages import load_stage

    bundle = make_tiny_bundle(root)

    def factory(base, stage, device):
        stage = load_stage(base / "semantic", "semantic", device)
        return ToneSampler(stage.model.eval(), stage.layout, length=NOTES)

    register_sampler("tones", factory)
    caption_file = root / "captions.txt"
    caption_file.write_text("".join(f"piece {i} in C major\n" for i in range(captions)))
    t0 = time.perf_counter()
    final = train_prefer(PreferTrainConfig(base=str(bundle), out=str(root / "run"), self_samples=samples,
                                           captions=str(caption_file), sampler="tones", margin=0.0, steps=steps,
                                           batch_size=8, lr=lr, beta=beta, warmup=2, device="cpu", progress=False))
    seconds = time.perf_counter() - t0
    seeds = list(range(10_000, 10_000 + eval_samples))
    base_reward, base_in_scale = _tone_samples(bundle / "semantic", seeds)
    tuned_reward, tuned_in_scale = _tone_samples(final, seeds)
    return ToneLoopResult(seconds, base_reward, tuned_reward, base_in_scale, tuned_in_scale)


@pytest.mark.slow  # 256 scored samples, 150 DPO steps, 200 evaluated ones: 30 s alone, minutes on a busy machine
def test_dpo_on_reward_ranked_samples_raises_the_reward_of_fresh_samples(tmp_path):
    result = tone_loop(tmp_path, captions=64, steps=150, eval_samples=100)
    assert result.tuned_reward.mean() > result.base_reward.mean() + 0.1
    assert result.win_rate > 0.55
    assert result.tuned_in_scale.mean() > result.base_in_scale.mean()
