"""MusicLM end to end on a tiny random music bundle, with a small stand-in for the MuLan contract."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from soundlm.music.pipeline import MusicLMPipeline
from soundlm.pipeline import AudioLMPipeline, AudioLMSampling, BatchRequest
from tiny_bundle import C, Q, SR, StandInMuLan, make_tiny_bundle

@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("music"), condition=(Q, C))


@pytest.fixture(scope="module")
def music(bundle) -> MusicLMPipeline:
    return MusicLMPipeline(AudioLMPipeline.from_bundle(bundle, device="cpu"), StandInMuLan())


def test_captions_become_music_of_exact_length_and_each_caption_as_alone(music):
    captions = ["a calm piano piece in C major", "upbeat flute melody in D major, 3/4"]
    waves = music.generate(captions, seconds=0.5, num_samples=2, guidance=3.0, seed=4)
    assert [[w.shape for w in per] for per in waves] == [[(1, 8000)] * 2] * 2
    assert all(np.isfinite(w).all() for per in waves for w in per)
    # Sharing the stages' calls changes nothing: the second caption alone, with its seed (4 + 1), is the same.
    # (Unguided here: a guided call's 2B-row decoding step rounds differently with the batch size, ~3e-7 in the
    # logits, enough to flip a draw that lands on a tie now and then.)
    batched = music.generate(captions, seconds=0.5, num_samples=2, guidance=1.0, seed=4)
    alone = music.generate(captions[1:], seconds=0.5, num_samples=2, guidance=1.0, seed=5)
    np.testing.assert_array_equal(np.stack(alone[0]), np.stack(batched[1]))


def test_the_caption_and_the_guidance_change_the_music(music):
    a, b = music.generate(["a calm piano piece in C major", "loud choir, fast, E minor"], seconds=0.4, seed=0)
    assert not torch.equal(*music.condition_tokens(["a calm piano piece in C major", "loud choir, fast, E minor"]))
    # Same seed for both (seed + j would differ): only the condition ids differ between the two requests.
    same_seed = [music.generate([c], seconds=0.4, seed=0)[0][0] for c in ("a calm piano piece in C major",
                                                                          "loud choir, fast, E minor")]
    assert not np.allclose(same_seed[0], same_seed[1])
    unguided = music.generate(["a calm piano piece in C major"], seconds=0.4, seed=0, guidance=1.0)[0][0]
    assert not np.allclose(unguided, a[0])


def test_guided_semantic_tokens_equal_the_mix_of_two_separate_forwards(music, monkeypatch):
    """The pipeline's guided semantic window runs one batched forward whose logits are the CFG mix."""
    import importlib

    generate_module = importlib.import_module("soundlm.lm.generate")
    from soundlm.patterns import null_condition, semantic_sequence

    seen = []
    real = generate_module.generate

    def spy(model, prompt, *args, **kwargs):
        seen.append((model, prompt.clone(), kwargs.get("uncond_prompt"), kwargs.get("guidance")))
        return real(model, prompt, *args, **kwargs)

    monkeypatch.setattr(generate_module, "generate", spy)
    cond = music.condition_tokens(["soft strings"])
    music.generate(["soft strings"], seconds=0.2, guidance=2.5)
    model, prompt, uncond, g = seen[0]  # the first semantic window
    layout = music.audiolm.semantic.layout
    empty = torch.zeros(1, 0, dtype=torch.long)
    assert g == 2.5 and model is music.audiolm.semantic.model
    assert torch.equal(prompt, semantic_sequence(empty, layout, eos=False, condition=cond).tokens)
    assert torch.equal(uncond, semantic_sequence(empty, layout, eos=False,
                                                 condition=null_condition(Q, layout)).tokens)


def test_delay_pattern_coarse_stage_is_conditioned_too(tmp_path):
    pipe = MusicLMPipeline(AudioLMPipeline.from_bundle(make_tiny_bundle(tmp_path, condition=(Q, C), pattern="delay"),
                                                       device="cpu"), StandInMuLan())
    a = pipe.generate(["organ chorale"], seconds=0.4, num_samples=2, guidance=3.0, seed=1)[0]
    b = pipe.generate(["guitar ballad, slow"], seconds=0.4, num_samples=2, guidance=3.0, seed=1)[0]
    assert [w.shape for w in a] == [(1, 6400)] * 2 and not np.allclose(a[0], b[0])


def test_unconditioned_requests_on_a_music_bundle_use_null(music):
    """The AudioLM API on a music bundle: no condition = NULL ids, the unconditional model."""
    out = music.audiolm.generate(0.3, num_samples=1, seed=2)
    null = music.audiolm.generate_batch([BatchRequest(seconds=0.3, seed=2)])[0]
    np.testing.assert_allclose(out[0], null[0], atol=1e-6)
    # Guidance never touches a NULL-conditioned request: it has no conditional half.
    guided = music.audiolm.generate_batch([BatchRequest(seconds=0.3, seed=2)], AudioLMSampling(guidance=3.0))[0]
    np.testing.assert_allclose(guided[0], null[0], atol=1e-6)


def test_save_bundle_and_cli_write_wavs_and_the_request(music, tmp_path, stand_in_mulan):
    from typer.testing import CliRunner

    from soundlm.cli import app

    folder = music.save_bundle(tmp_path / "music-bundle")
    assert (folder / "mulan" / "model.safetensors").is_file() and (folder / "semantic" / "config.json").is_file()
    res = CliRunner().invoke(app, ["music", "a calm piano piece in C major", "--seconds", "0.3", "--num-samples", "2",
                                   "--guidance", "3", "--out", str(tmp_path / "out"), "--model", str(folder),
                                   "--seed", "7", "--quantize", "none"])
    assert res.exit_code == 0, res.output
    import soundfile as sf

    wavs = sorted((tmp_path / "out").glob("*.wav"))
    assert [w.name for w in wavs] == ["music_00_000.wav", "music_00_001.wav"]
    audio, rate = sf.read(wavs[0])
    assert rate == SR and audio.shape == (4800,)
    asked = json.loads((tmp_path / "out" / "music.json").read_text())
    assert asked["captions"] == ["a calm piano piece in C major"] and asked["guidance"] == 3.0
    assert asked["seed"] == 7 and len(asked["condition_tokens"][0]) == Q and len(asked["files"]) == 2
    # The CLI's first sample is the library's (int16 wav rounding aside).
    want = music.generate(["a calm piano piece in C major"], seconds=0.3, num_samples=2, guidance=3.0, seed=7)
    np.testing.assert_allclose(audio, want[0][0][0], atol=2e-4)


def test_bundle_without_mulan_or_conditioned_stages_is_refused(music, tmp_path, stand_in_mulan):
    from typer.testing import CliRunner

    from soundlm.cli import app

    audio_only = tmp_path / "audio-only"
    music.audiolm.save_bundle(audio_only)
    with pytest.raises(FileNotFoundError, match="no mulan/ folder"):
        MusicLMPipeline.from_bundle(audio_only, device="cpu")
    res = CliRunner().invoke(app, ["music", "piano", "--seconds", "1", "--out", str(tmp_path / "o"),
                                   "--model", str(audio_only)])
    assert res.exit_code != 0 and "no mulan/ folder" in res.output and "Traceback" not in res.output
    plain = make_tiny_bundle(tmp_path / "plain")
    with pytest.raises(ValueError, match="semantic and coarse stages take no condition ids"):
        MusicLMPipeline(AudioLMPipeline.from_bundle(plain, device="cpu"), StandInMuLan())
    with pytest.raises(ValueError, match="the stages read 3 condition ids of 16, but the MuLan makes 2"):
        MusicLMPipeline(music.audiolm, StandInMuLan(num_condition_tokens=2))
    with pytest.raises(ValueError, match="take no condition ids"):
        AudioLMPipeline.from_bundle(plain, device="cpu").generate_batch(
            [BatchRequest(seconds=0.2, condition=torch.zeros(Q, dtype=torch.long))])
    with pytest.raises(ValueError, match="condition ids must be 3 ids in"):
        music.audiolm.generate_batch([BatchRequest(seconds=0.2, condition=torch.full((Q,), C))])
    with pytest.raises(ValueError, match="captions must be non-empty"):
        music.generate([""], seconds=0.2)


def test_no_model_and_none_shipped_says_to_pass_one(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import soundlm.pretrained as pretrained
    from soundlm.cli import app

    monkeypatch.setattr(pretrained, "ASSETS_DIR", tmp_path / "assets")
    res = CliRunner().invoke(app, ["music", "a calm piano piece", "--seconds", "1", "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "ships no music model" in res.output and "--model" in res.output
    assert "Traceback" not in res.output


def test_the_shipped_music_model_is_the_default_and_plays(tmp_path):
    """soundlm/assets/musiclm-tiny (int8-stored stages) loads by default and the CLI writes its music."""
    import soundfile as sf
    from typer.testing import CliRunner

    from soundlm.cli import app
    from soundlm.music.pipeline import resolve_music_model

    assert resolve_music_model(None).name == "musiclm-tiny"
    res = CliRunner().invoke(app, ["music", "a calm piano piece in C major", "--seconds", "0.5", "--num-samples", "2",
                                   "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    request = json.loads((tmp_path / "music.json").read_text())
    assert request["model"] is None and len(request["files"]) == 2
    waves = [sf.read(tmp_path / f["file"]) for f in request["files"]]
    assert all(rate == request["sample_rate"] and len(w) == rate // 2 for w, rate in waves)
    assert all(np.isfinite(w).all() and np.abs(w).max() > 1e-3 for w, _ in waves)  # sound, not silence
    assert not np.array_equal(waves[0][0], waves[1][0])  # two samples, two draws
