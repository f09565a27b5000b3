"""MusicRL's self-generated path over MusicLM: the `musiclm` sampler and pair tokenizer, and `train prefer --self`
on a tiny music bundle."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from soundlm.music.pairs import load_pair_tokenizer, load_sampler, window_sequence
from soundlm.music.pipeline import MusicLMPipeline
from soundlm.music.sampler import MusicLMSampler, caption_seed
from soundlm.pipeline import AudioLMPipeline, BatchRequest
from soundlm.stages import load_stage
from tiny_bundle import C, Q, SR, StandInMuLan, make_tiny_bundle, make_tiny_music_bundle, tone

CAPTIONS = ["a calm piano piece in C major", "upbeat flute melody in D major, 120 bpm"]


pytestmark = pytest.mark.usefixtures("stand_in_mulan")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny music bundle: conditioned semantic and coarse stages, the stand-in MuLan as mulan/."""
    return make_tiny_music_bundle(tmp_path_factory.mktemp("music-sampler"))


@pytest.mark.parametrize("name", ["semantic", "coarse"])
def test_samples_are_the_ids_the_stage_drew_after_the_captions_condition(bundle, name):
    stage = load_stage(bundle / name, name)
    sampler = load_sampler("musiclm", bundle, stage, torch.device("cpu"))
    out = sampler.sample(CAPTIONS, num_samples=2, seed=5)
    assert [len(o) for o in out] == [2, 2]
    music = sampler.music
    conditions = music.condition_tokens(CAPTIONS)  # [B, Q]
    layout = stage.layout
    for j, samples in enumerate(out):
        assert all(torch.equal(s.tokens[1: 1 + Q], conditions[j] + layout.condition_offset) for s in samples)
    for j, samples in [(1, out[1])]:
        # The pipeline alone, same condition and seed: the sample's tokens are its ids in the stage's layout.
        alone = music.audiolm.generate_batch_tokens(
            [BatchRequest(seconds=sampler.seconds, num_samples=2, seed=caption_seed(5, j), condition=conditions[j])],
            sampler.sampling)[0]
        for k, s in enumerate(samples):
            assert torch.equal(s.tokens[1: 1 + Q], conditions[j] + layout.condition_offset)
            want = window_sequence(stage, alone.semantic[k: k + 1], alone.codes[k: k + 1], conditions[j][None])
            assert torch.equal(s.tokens, want.tokens) and torch.equal(s.loss_mask, want.loss_mask)
            assert not s.loss_mask[: 1 + Q].any() and s.loss_mask[-1]
            assert s.audio.ndim == 1 and s.sample_rate == SR and np.allclose(s.audio, alone.audio[k].mean(axis=0))
            if name == "semantic":
                # The generated part is the semantic ids themselves, shifted into the global vocabulary.
                ids = s.tokens[s.loss_mask] - layout.semantic_offset
                assert torch.equal(ids, alone.semantic[k, : ids.shape[0]])
    # Same seed, same samples; the tokens fit the stage's positions.
    again = sampler.sample(CAPTIONS, num_samples=2, seed=5)
    assert all(torch.equal(a.tokens, b.tokens) for x, y in zip(out, again) for a, b in zip(x, y))
    assert max(s.tokens.shape[0] for o in out for s in o) <= stage.model.max_positions


def test_pair_tokenizer_puts_the_captions_condition_after_bos(bundle):
    import soundlm.train.prefer  # noqa: F401  (registers the pair tokenizers)

    stage = load_stage(bundle / "semantic", "semantic")
    tokenize = load_pair_tokenizer("musiclm", bundle, stage, torch.device("cpu"))
    mulan = StandInMuLan()
    audio = tone(1.0)
    a, b = tokenize(audio, SR, CAPTIONS[0]), tokenize(audio, SR, CAPTIONS[1])
    for seq, caption in ((a, CAPTIONS[0]), (b, CAPTIONS[1])):
        cond = mulan.condition_tokens(mulan.embed_text([caption]))[0]
        assert torch.equal(seq.tokens[1: 1 + Q], cond + stage.layout.condition_offset)
        assert not seq.loss_mask[: 1 + Q].any() and seq.loss_mask[1 + Q:].all()
    # Same clip: only the condition differs.
    assert torch.equal(a.tokens[1 + Q:], b.tokens[1 + Q:])
    with pytest.raises(ValueError, match="--tokenizer musiclm"):
        load_pair_tokenizer("audiolm", bundle, stage, torch.device("cpu"))


def test_sampler_refuses_a_bundle_without_mulan(tmp_path):
    plain = make_tiny_bundle(tmp_path, condition=(Q, C))
    with pytest.raises(FileNotFoundError, match="no mulan/ folder"):
        load_sampler("musiclm", plain, load_stage(plain / "semantic", "semantic"), torch.device("cpu"))


def test_train_prefer_self_runs_end_to_end_on_a_music_bundle(bundle, tmp_path):
    from soundlm.cli import app

    captions = tmp_path / "captions.txt"
    captions.write_text("".join(f"{c}\n" for c in CAPTIONS + ["solemn organ chorale in G minor, 60 bpm"]))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "prefer", "--base", str(bundle), "--self", "3", "--captions",
                                   str(captions), "--out", str(out), "--steps", "2", "--batch-size", "2",
                                   "--warmup", "1", "--device", "cpu", "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "prefer.json").read_text())
    assert summary["captions"] == 3 and summary["pairs"] >= 1
    groups = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert all(len(g["samples"]) == 3 for g in groups)
    # The tuned bundle is still a music bundle: it loads and generates from a caption.
    tuned = MusicLMPipeline(AudioLMPipeline.from_bundle(out / "model", device="cpu"), StandInMuLan())
    assert tuned.generate(CAPTIONS[:1], seconds=0.3)[0][0].shape == (1, int(0.3 * SR))


@pytest.fixture(scope="module")
def delay1_bundle(tmp_path_factory):
    """A tiny music bundle whose acoustic model is one conditioned delay-pattern coarse stage (as musiclm-tiny)."""
    return make_tiny_music_bundle(tmp_path_factory.mktemp("music-delay1"), pattern="delay1")


def test_delay_stage_samples_are_its_training_example_of_the_generated_window(delay1_bundle):
    from soundlm.music.pairs import DelaySequence
    from soundlm.stages import delay_prefix_offset

    stage = load_stage(delay1_bundle / "coarse", "coarse")
    assert stage.delayed and stage.meta.conditioned
    sampler = load_sampler("musiclm", delay1_bundle, stage, torch.device("cpu"))
    out = sampler.sample(CAPTIONS[:1], num_samples=2, seed=4)
    conditions = sampler.music.condition_tokens(CAPTIONS[:1])  # [1, Q]
    alone = sampler.music.audiolm.generate_batch_tokens(
        [BatchRequest(seconds=sampler.seconds, num_samples=2, seed=caption_seed(4, 0), condition=conditions[0])],
        sampler.sampling)[0]
    offset = delay_prefix_offset(stage.meta, stage.layout)
    for k, s in enumerate(out[0]):
        assert s.tokens is None and isinstance(s.delay, DelaySequence) and s.sequence is s.delay
        # The prefix: the caption's condition ids in the prefix vocabulary, then the semantic ids the codes followed.
        assert torch.equal(s.delay.prefix[:Q], conditions[0] + offset)
        want = window_sequence(stage, alone.semantic[k: k + 1], alone.codes[k: k + 1], conditions[0][None])
        assert all(torch.equal(getattr(s.delay, f), getattr(want, f)) for f in ("inputs", "targets", "prefix"))
        # Undelaying the targets gives back the codes generation drew.
        frames = s.delay.inputs.shape[1] - stage.coarse_codebooks + 1
        codes = torch.stack([s.delay.targets[q, q: q + frames] for q in range(stage.coarse_codebooks)])
        assert torch.equal(codes, alone.codes[k, : stage.coarse_codebooks, :frames])
        assert s.delay.positions <= stage.model.max_positions


def test_pair_tokenizer_of_a_delay_stage_puts_the_captions_condition_first_in_the_prefix(delay1_bundle):
    import soundlm.train.prefer  # noqa: F401  (registers the pair tokenizers)
    from soundlm.music.pairs import DelaySequence
    from soundlm.stages import delay_prefix_offset

    stage = load_stage(delay1_bundle / "coarse", "coarse")
    tokenize = load_pair_tokenizer("musiclm", delay1_bundle, stage, torch.device("cpu"))
    mulan = StandInMuLan()
    a, b = tokenize(tone(1.0), SR, CAPTIONS[0]), tokenize(tone(1.0), SR, CAPTIONS[1])
    offset = delay_prefix_offset(stage.meta, stage.layout)
    for seq, caption in ((a, CAPTIONS[0]), (b, CAPTIONS[1])):
        assert isinstance(seq, DelaySequence)
        assert torch.equal(seq.prefix[:Q], mulan.caption_condition([caption])[0] + offset)
    # Same clip: the codes and the semantic part of the prefix are the same, the condition differs.
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert torch.equal(a.prefix[Q:], b.prefix[Q:]) and not torch.equal(a.prefix[:Q], b.prefix[:Q])


def test_train_prefer_self_tunes_a_delay_stage_of_a_music_bundle(delay1_bundle, tmp_path):
    from soundlm.cli import app

    captions = tmp_path / "captions.txt"
    captions.write_text("".join(f"{c}\n" for c in CAPTIONS + ["solemn organ chorale in G minor, 60 bpm"]))
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "prefer", "--base", str(delay1_bundle), "--stage", "coarse", "--self",
                                   "3", "--captions", str(captions), "--out", str(out), "--steps", "3",
                                   "--batch-size", "2", "--warmup", "1", "--lr", "3e-3", "--device", "cpu",
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "prefer.json").read_text())
    assert summary["stage"] == "coarse" and summary["captions"] == 3 and summary["pairs"] >= 1
    groups = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    assert all(len(g["samples"]) == 3 and all(s["pattern"] == "delay" for s in g["samples"]) for g in groups)
    # The tuned delay stage is in the bundle, the semantic stage as it was; it loads and generates from a caption.
    tuned = load_stage(out / "model" / "coarse", "coarse").model
    base = load_stage(delay1_bundle / "coarse", "coarse").model
    assert not torch.equal(tuned.heads[0].weight, base.heads[0].weight)
    music = MusicLMPipeline.from_bundle(out / "model", device="cpu")
    assert torch.equal(music.audiolm.coarse.model.heads[0].weight, tuned.heads[0].weight)
    assert torch.equal(music.audiolm.semantic.model.hf.lm_head.weight,
                       load_stage(delay1_bundle / "semantic", "semantic").model.hf.lm_head.weight)
    audio = music.generate(CAPTIONS[:1], seconds=0.3)[0][0]
    assert audio.shape == (1, int(0.3 * SR)) and np.isfinite(audio).all()


def test_sampler_rejects_nonpositive_seconds(bundle):
    music = MusicLMPipeline(AudioLMPipeline.from_bundle(bundle, device="cpu"), StandInMuLan())
    with pytest.raises(ValueError, match="seconds must be positive"):
        MusicLMSampler(music, load_stage(bundle / "semantic", "semantic"), seconds=0)
