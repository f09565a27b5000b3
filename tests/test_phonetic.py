import json
from pathlib import Path

import numpy as np
import pytest
import torch

from soundlm.semantic.phonetic import PhoneticFeatures, ctc_greedy, normalize_transcript
from soundlm.train.phonetic import PhoneticTrainConfig, character_error_rate, train_phonetic

SR = 16_000
SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "we like green apples", "the sun is very warm"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Four sentences by two espeak voices (train) and one held-out file, plus two bad rows."""
    from soundlm.audio import save_audio
    from soundlm.data import write_manifest
    from soundlm.eval.tts import synthesize

    root = tmp_path_factory.mktemp("phonetic") / "corpus"
    rows = []
    for spk, voice in (("a", "en-us"), ("b", "en-gb+m3")):
        for i, text in enumerate(SENTENCES):
            rel = f"wav/{spk}_{i}.wav"
            audio = synthesize(text, voice=voice, sample_rate=SR)
            save_audio(root / rel, audio, SR)
            rows.append({"id": f"{spk}_{i}", "path": rel, "duration": len(audio) / SR, "sample_rate": SR,
                         "speaker": spk, "language": "en", "transcript": text.capitalize() + ".", "split": "train"})
    audio = synthesize("the cat is warm", voice="en-us+f3", sample_rate=SR)
    save_audio(root / "wav/h_0.wav", audio, SR)
    rows.append({"id": "h_0", "path": "wav/h_0.wav", "duration": len(audio) / SR, "sample_rate": SR,
                 "speaker": "h", "language": "en", "transcript": "The cat is warm.", "split": "heldout"})
    (root / "wav").mkdir(parents=True, exist_ok=True)
    (root / "wav/broken.wav").write_bytes(b"not a wav")
    rows.append({"id": "broken", "path": "wav/broken.wav", "duration": 1.0, "sample_rate": SR, "speaker": "a",
                 "language": "en", "transcript": "broken", "split": "train"})
    rows.append({**rows[0], "id": "untranscribed", "transcript": ""})
    write_manifest(root, rows)
    return root


def _cfg(corpus: Path, out: Path, **kw) -> PhoneticTrainConfig:
    base = dict(data=str(corpus), out=str(out), steps=6, batch_size=4, conv_dim=32, hidden=16, layers=1,
                speed_perturb=(0.9,), ckpt_every=2, log_every=1, progress=False)
    return PhoneticTrainConfig(**{**base, **kw})


def test_transcripts_are_normalised_to_the_alphabet():
    assert normalize_transcript("The cat's  mat, OK?") == "the cat's mat ok"
    assert normalize_transcript("Où est-il ?", alphabet="abcdefghijklmnopqrstuvwxyz ") == "o est il"


def test_ctc_greedy_collapses_repeats_and_drops_blanks():
    alphabet = "abc "
    assert ctc_greedy([0, 1, 1, 0, 1, 2, 2, 0, 4, 3], alphabet) == "aab c"


def test_character_error_rate_on_known_strings():
    assert character_error_rate(["the cat"], ["the cat"]) == 0.0
    assert character_error_rate(["abcd"], ["abxd"]) == 0.25
    assert character_error_rate(["ab", "cd"], ["", "cd"]) == 0.5
    assert character_error_rate(["abc"], ["abcabc"]) == 1.0


def test_features_are_at_the_mfcc_frame_rate():
    fx = PhoneticFeatures("ab ", conv_dim=16, hidden=8, layers=1).eval()
    for n in (320, 321, 16_000, 16_000 + 319):
        feats = fx(torch.randn(2, 1, n))
        assert feats.shape == (2, n // 320, 16) and fx.num_frames(n) == n // 320
    with pytest.raises(ValueError, match="distinct"):
        PhoneticFeatures("aa")


def test_tokenizer_folder_carries_the_encoder(tmp_path):
    from soundlm.pretrained import export_bundle_fp16  # noqa: F401 (the bundle path is tested below)
    from soundlm.semantic.tokenizer import KMeansTokenizer

    torch.manual_seed(0)
    fx = PhoneticFeatures("abc ", conv_dim=16, hidden=8, layers=1).eval()
    tok = KMeansTokenizer(fx, torch.randn(12, 16))
    tok.save(tmp_path / "tok")
    assert (tmp_path / "tok" / "phonetic.safetensors").is_file()
    back = KMeansTokenizer.load(tmp_path / "tok", device="cpu")
    audio = 0.1 * torch.randn(1, 1, 8000)
    assert torch.equal(back.encode(audio), tok.encode(audio))

    # Float16 weights (the shipped bundle) load into the float32 encoder.
    from safetensors.torch import load_file, save_file

    state = load_file(tmp_path / "tok" / "phonetic.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()},
              tmp_path / "tok" / "phonetic.safetensors")
    half = KMeansTokenizer.load(tmp_path / "tok", device="cpu")
    assert half.features.conv[0].weight.dtype == torch.float32
    assert torch.allclose(half.features(audio), fx(audio), atol=2e-2)

    (tmp_path / "tok" / "phonetic.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="phonetic.safetensors"):
        KMeansTokenizer.load(tmp_path / "tok", device="cpu")


def test_features_need_an_encoder_folder():
    from soundlm.semantic.features import build_features

    with pytest.raises(ValueError, match="train phonetic"):
        build_features("phonetic")


def test_training_lowers_ctc_loss_skips_bad_rows_and_saves(corpus, tmp_path):
    res = train_phonetic(_cfg(corpus, tmp_path / "run", steps=40, ckpt_every=20, lr=5e-3, hidden=32, conv_dim=64))
    assert res.train_files == 8
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "run" / "errors.jsonl").read_text().splitlines()]
    assert len(reasons) == 2 and any("transcript" in r for r in reasons)
    first = np.mean([res.losses[s] for s in range(1, 6)])
    last = np.mean([res.losses[s] for s in range(36, 41)])
    assert last < 0.8 * first, (first, last)
    assert res.heldout_cer is not None and 0.0 <= res.heldout_cer
    fx = PhoneticFeatures.load(res.final_dir, device="cpu")
    assert fx.alphabet == " abcdeghiklmnoprstuvwy"  # every training transcript, "broken" too
    assert json.loads((res.final_dir / "config.json").read_text())["heldout_files"] == 1
    # The trained encoder is a semantic feature extractor like any other.
    from soundlm.train.semantic import SemanticTrainConfig, train_semantic

    out = train_semantic(corpus, tmp_path / "tok", SemanticTrainConfig(features="phonetic", model=str(res.final_dir),
                                                                       clusters=8), device="cpu", progress=False)
    assert out.clusters_used == 8


def test_resume_is_exact(corpus, tmp_path):
    from safetensors.torch import load_file

    straight = train_phonetic(_cfg(corpus, tmp_path / "a"))
    first = train_phonetic(_cfg(corpus, tmp_path / "b", stop_at=3))
    assert first.final_dir is None and sorted(first.losses) == [1, 2, 3]
    resumed = train_phonetic(_cfg(corpus, tmp_path / "b"))
    assert sorted(resumed.losses) == [4, 5, 6]
    for step in range(1, 7):
        assert first.losses.get(step, resumed.losses.get(step)) == straight.losses[step], step
    wa = load_file(tmp_path / "a" / "final" / "phonetic.safetensors")
    wb = load_file(tmp_path / "b" / "final" / "phonetic.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(ValueError, match="other settings"):
        train_phonetic(_cfg(corpus, tmp_path / "b", hidden=24))


def test_cli_errors_name_the_problem(tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "manifest.jsonl").write_text("")
    res = CliRunner().invoke(app, ["train", "phonetic", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no rows of split 'train'" in res.output


def test_fp16_bundle_with_phonetic_tokenizer_continues(tmp_path):
    from tiny_bundle import SR as BUNDLE_SR
    from tiny_bundle import make_tiny_bundle, tone

    from soundlm import pretrained

    bundle = make_tiny_bundle(tmp_path, phonetic=True)
    half = pretrained.export_bundle_fp16(bundle, tmp_path / "fp16").out_dir
    full, pipe = pretrained.load_pipeline(bundle, device="cpu"), pretrained.load_pipeline(half, device="cpu")
    assert isinstance(pipe.semantic_tokenizer.features, PhoneticFeatures)
    prompt = tone(0.5)
    ids = [p.semantic_tokenizer.encode(torch.from_numpy(prompt)[None, None]) for p in (full, pipe)]
    assert ids[0].shape == (1, 25) and (ids[0] == ids[1]).float().mean() > 0.9
    audio = pipe.continue_audio(prompt, 0.4, prompt_sample_rate=BUNDLE_SR)[0]
    assert audio.shape == (1, 8000 + 6400) and np.isfinite(audio).all()
