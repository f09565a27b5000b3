"""MuLan: the contract (shapes, normalisation, condition tokens), save/load, training on sine
clips whose captions name their pitch, exact resume, the eval section and `frechet_distance`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from soundlm.data import write_manifest
from soundlm.data.music import MusicAttributes, key_name
from soundlm.music.mulan import (MuLan, MuLanConfig, frechet_distance, load_mulan, train_caption_tokenizer)

SR = 16_000
NOTES = ("C", "D", "E", "F", "G", "A")  # tonic pitch classes 0 2 4 5 7 9
PCS = (0, 2, 4, 5, 7, 9)


def tiny_model(**kw) -> MuLan:
    tok = train_caption_tokenizer(["a sine tone at C", "a square tone at G major", "piano in D minor"], 64)
    config = MuLanConfig(clip_seconds=1.0, n_mels=16, audio_channels=16, width=16, layers=1, heads=2, embed_dim=8,
                         vocab_size=tok.get_vocab_size(), condition_levels=2, condition_codes=4, **kw)
    torch.manual_seed(0)
    return MuLan(config, tok).eval()


def _tone(pc: int, square: bool, seconds: float, phase: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f = 261.63 * 2 ** (pc / 12)
    x = np.sin(2 * np.pi * f * t + phase)
    return (0.5 * (np.sign(x) * 0.6 if square else x)).astype(np.float32)


@pytest.fixture(scope="module")
def sines(tmp_path_factory):
    """12 training clips (6 pitches x sine/square) and 6 held-out ones, 2 s each, captions naming pitch and wave."""
    out = tmp_path_factory.mktemp("sines")
    (out / "wavs").mkdir()
    rows = []
    for k, (note, pc) in enumerate(zip(NOTES, PCS)):
        for square, inst in ((False, "flute"), (True, "organ")):
            for split, phase in (("train", 0.0), ("heldout", 1.0)):
                if split == "heldout" and square:
                    continue
                cid = f"{note}-{inst}-{split}"
                sf.write(out / "wavs" / f"{cid}.wav", _tone(pc, square, 2.0, phase), SR)
                music = MusicAttributes(piece=f"synth/{note}", composer="synth", form="chorale", instrument=inst,
                                        program=0, tonic=pc, mode="major", key=key_name(pc, "major"), tempo_bpm=88,
                                        meter="4/4", loudness="medium", velocity=80, loudness_db=-9.0,
                                        key_confidence=1.0, transposition=0,
                                        heldout=None if split == "train" else "piece")
                rows.append({"id": cid, "path": f"wavs/{cid}.wav", "duration": 2.0, "sample_rate": SR,
                             "speaker": None, "language": None, "split": split, "music": music.to_json(),
                             "transcript": f"a {'square' if square else 'sine'} tone at {note}"})
    write_manifest(out / "manifest.jsonl", rows)
    return out


def _cfg(data, out, **kw):
    from soundlm.train.mulan import MuLanTrainConfig

    args = dict(data=str(data), out=str(out), steps=6, batch_size=6, lr=3e-3, clip_seconds=1.0, width=16, layers=1,
                embed_dim=8, augment_captions=False, vocab_size=64, condition_levels=2, condition_codes=4,
                quantizer_hop_seconds=0.5, ckpt_every=2, log_every=1, progress=False)
    return MuLanTrainConfig(**{**args, **kw})


# ------------------------------------------------------------------------------------ the contract

def test_embeddings_are_normalised_and_shaped():
    model = tiny_model()
    with torch.no_grad():
        a = model.embed_audio(torch.randn(3, SR // 2) * 0.1)
        t = model.embed_text(["a sine tone at C", "piano in D minor", ""])
    assert a.shape == (3, 8) and t.shape == (3, 8)
    assert torch.allclose(a.norm(dim=-1), torch.ones(3)) and torch.allclose(t.norm(dim=-1), torch.ones(3))
    assert model.sample_rate == SR and model.embed_dim == 8
    assert (model.num_condition_tokens, model.condition_codebook_size) == (2, 4)


def test_long_audio_is_the_mean_of_its_windows():
    model = tiny_model()
    x = torch.randn(2, 3 * SR) * 0.1  # three 1 s windows
    with torch.no_grad():
        whole = model.embed_audio(x)
        parts = torch.stack([model.embed_audio(x[:, i * SR:(i + 1) * SR]) for i in range(3)]).mean(dim=0)
    assert torch.allclose(whole, torch.nn.functional.normalize(parts, dim=-1), atol=1e-5)
    with pytest.raises(ValueError, match="mono audio"):
        model.embed_audio(torch.zeros(2, 2, SR))
    with pytest.raises(ValueError, match="shorter than one analysis window"):
        model.embed_audio(torch.zeros(1, 100))


def test_condition_tokens_in_range_and_deterministic():
    model = tiny_model()
    with pytest.raises(ValueError, match="not fitted"):
        model.condition_tokens(torch.zeros(1, 8))
    emb = torch.nn.functional.normalize(torch.randn(40, 8, generator=torch.Generator().manual_seed(1)), dim=-1)
    model.fit_condition_quantizer(emb, seed=0)
    ids = model.condition_tokens(emb)
    assert ids.dtype == torch.long and ids.shape == (40, 2)
    assert int(ids.min()) >= 0 and int(ids.max()) < 4
    assert torch.equal(ids, model.condition_tokens(emb.clone()))
    assert torch.equal(ids[3:4], model.condition_tokens(emb[3:4]))  # a row's ids do not depend on its batch
    # Each level lowers the quantization error: level 2 quantizes level 1's residual.
    one = model.codebooks[0][ids[:, 0]]
    two = one + model.codebooks[1][ids[:, 1]]
    assert (emb - two).norm(dim=-1).mean() < (emb - one).norm(dim=-1).mean()
    with pytest.raises(ValueError, match=r"\[B, 8\]"):
        model.condition_tokens(torch.zeros(3))


def test_save_load_round_trip_gives_identical_embeddings(tmp_path):
    model = tiny_model()
    model.fit_condition_quantizer(torch.nn.functional.normalize(torch.randn(20, 8), dim=-1))
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    again = load_mulan(tmp_path / "m")
    x = torch.randn(2, SR) * 0.1
    texts = ["a square tone at G major", "piano"]
    with torch.no_grad():
        assert torch.equal(model.embed_audio(x), again.embed_audio(x))
        assert torch.equal(model.embed_text(texts), again.embed_text(texts))
        assert torch.equal(model.condition_tokens(model.embed_text(texts)),
                           again.condition_tokens(again.embed_text(texts)))


def test_a_bad_model_folder_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such MuLan folder"):
        load_mulan(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no config.json.*soundlm train mulan"):
        load_mulan(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"type": "instrument_classifier", "config": {}}))
    with pytest.raises(ValueError, match="not a MuLan"):
        load_mulan(tmp_path)
    tiny_model().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_mulan(tmp_path / "m")


def test_the_consumers_of_the_contract_take_the_real_mulan():
    """MusicRL's text-adherence reward and `soundlm tokenize --mulan`'s condition ids, on this MuLan."""
    from soundlm.music.rewards import MuLanReward, MusicRequest
    from soundlm.tokenize import _condition_ids

    model = tiny_model()
    model.fit_condition_quantizer(torch.nn.functional.normalize(torch.randn(20, 8), dim=-1))
    audio = _tone(7, False, 2.5, 0.0)
    score = MuLanReward(model).score(audio, SR, MusicRequest(caption="a sine tone at G"))
    with torch.no_grad():
        a, t = model.embed_audio(torch.from_numpy(audio)[None]), model.embed_text(["a sine tone at G"])
    expected = float(a[0] @ t[0])
    assert score == pytest.approx(expected, abs=1e-5)
    ids = _condition_ids(model, audio)
    assert ids.shape == (2,) and 0 <= ids.min() and ids.max() < 4


# ------------------------------------------------------------------------------------ training

@pytest.fixture(scope="module")
def trained(sines, tmp_path_factory):
    from soundlm.train.mulan import train_mulan

    run = tmp_path_factory.mktemp("mulan-run")
    final = train_mulan(_cfg(sines, run, steps=80, ckpt_every=80))
    assert final == run / "final"
    return run


def test_training_raises_matched_similarity_above_shuffled(sines, trained):
    from soundlm.data.music import read_music_corpus

    model = load_mulan(trained)  # a run folder resolves to its final/
    assert model.config.quantizer_fitted
    clips = read_music_corpus(sines, split="train")
    from soundlm.audio import load_audio

    audio = torch.from_numpy(np.stack([load_audio(c.item.path, sample_rate=SR)[0] for c in clips]))
    with torch.no_grad():
        a, t = model.embed_audio(audio), model.embed_text([c.caption for c in clips])
    sim = a @ t.t()  # [N, N]
    matched = sim.diag().mean()
    off = (sim.sum() - sim.diag().sum()) / (sim.numel() - len(clips))
    assert matched > off + 0.3, (float(matched), float(off))
    ids = model.condition_tokens(a)
    assert ids.shape == (len(clips), 2) and int(ids.max()) < 4


@pytest.fixture(scope="module")
def straight(sines, tmp_path_factory):
    """RUN/final of the 6-step run made without a stop."""
    from soundlm.train.mulan import train_mulan

    return train_mulan(_cfg(sines, tmp_path_factory.mktemp("straight")))


def test_resume_after_a_stop_equals_the_straight_run(sines, straight, tmp_path):
    from safetensors.torch import load_file

    from soundlm.train.mulan import train_mulan

    assert train_mulan(_cfg(sines, tmp_path / "b", stop_at=3)) is None
    assert not (tmp_path / "b" / "final").exists()
    resumed = train_mulan(_cfg(sines, tmp_path / "b"))
    wa, wb = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "b" / "tokenizer.json").read_text() == (straight.parent / "tokenizer.json").read_text()
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))


_KILLED_RUN = """
import os, signal, sys
import torch
torch.set_num_threads(int(sys.argv[2]))  # as many as this process: float sums depend on the split
from soundlm.train import mulan
step_fn = mulan._MuLanTrainer.train_step
def train_step(self, step):
    if step == 5:  # after the step-4 checkpoint, in the middle of the run
        os.kill(os.getpid(), signal.SIGKILL)
    return step_fn(self, step)
mulan._MuLanTrainer.train_step = train_step
mulan.train_mulan(mulan.MuLanTrainConfig(**eval(sys.argv[1])))
"""


def test_a_killed_run_resumes_to_the_straight_runs_weights(sines, straight, tmp_path):
    import dataclasses
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    from soundlm.train.mulan import train_mulan

    cfg = _cfg(sines, tmp_path / "b")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, repr(dataclasses.asdict(cfg)),
                           str(torch.get_num_threads())], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (tmp_path / "b" / "checkpoints" / "step_00000004").is_dir() and not (tmp_path / "b" / "final").exists()
    resumed = train_mulan(cfg)
    wa, wb = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []


def test_resume_refuses_changed_settings_and_bad_clips_are_skipped(sines, tmp_path):
    import shutil

    from soundlm.train.mulan import train_mulan

    train_mulan(_cfg(sines, tmp_path / "r", stop_at=2))
    with pytest.raises(ValueError, match="other settings"):
        train_mulan(_cfg(sines, tmp_path / "r", width=8))
    broken = tmp_path / "broken"
    shutil.copytree(sines, broken)
    (broken / "wavs" / "C-flute-train.wav").write_bytes(b"not a wav")
    train_mulan(_cfg(broken, tmp_path / "s", steps=2))
    skipped = [json.loads(line) for line in (tmp_path / "s" / "skipped.jsonl").read_text().splitlines()]
    assert len(skipped) == 1 and skipped[0]["path"].endswith("C-flute-train.wav")


def test_a_given_tokenizer_folder_is_used_and_saved(sines, tmp_path):
    from soundlm.music.mulan import load_text_tokenizer
    from soundlm.train.mulan import train_mulan

    tok = train_caption_tokenizer(["a sine tone at C", "a square tone at D", "E F G A"], 40)
    (tmp_path / "hf").mkdir()
    tok.save(str(tmp_path / "hf" / "tokenizer.json"))  # a Hugging Face fast tokenizer folder holds this file
    final = train_mulan(_cfg(sines, tmp_path / "run", steps=2, tokenizer=str(tmp_path / "hf")))
    model = load_mulan(final)
    assert model.config.vocab_size == tok.get_vocab_size()
    assert model.tokenizer.encode("a sine tone at C").ids == tok.encode("a sine tone at C").ids
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no tokenizer.json"):
        load_text_tokenizer(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="no such tokenizer"):
        load_text_tokenizer(tmp_path / "missing.json")


# ------------------------------------------------------------------------------------ metrics

def test_eval_mulan_reports_recall_cosines_and_probes(sines, trained, tmp_path):
    from soundlm.eval.report import write_section
    from soundlm.eval.sections.mulan import eval_mulan, recall_at_k

    section = eval_mulan(trained, sines, split="heldout", progress=False, reference_split="train")
    s = section.summary
    assert s["frechet_vs_train"] >= 0 and np.isfinite(s["frechet_train_halves"])
    assert s["clips"] == 6 and s["chance@1"] == pytest.approx(1 / 6) and s["chance@10"] == 1.0
    # Held-out sines (another phase) are found by the captions naming their pitch.
    assert s["t2a_recall@1"] > 1 / 6 and s["a2t_recall@5"] >= s["a2t_recall@1"]
    assert s["t2a_recall@10"] == 1.0 and s["cos_matched"] > s["cos_shuffled"]
    for attribute, values in (("key", 24), ("instrument", 8), ("tempo", 6), ("loudness", 3)):
        assert 0.0 <= s[f"{attribute}_probe"] <= 1.0 and s[f"{attribute}_probe_chance"] == pytest.approx(1 / values)
    assert 0.0 <= s["cond_level1_agree"] <= 1.0 and 1 <= s["cond_level1_codes_used"] <= 4
    md, _ = write_section(section, tmp_path)
    assert "t2a_recall@1" in md.read_text()
    sim = np.array([[0.9, 0.1, 0.95], [0.2, 0.5, 0.1], [0.3, 0.2, 0.1]])  # row 0's truth ranks 2nd
    assert recall_at_k(sim, 1) == pytest.approx(1 / 3) and recall_at_k(sim, 2) == pytest.approx(2 / 3)


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    d = 4
    mu_a, mu_b = np.zeros(d), np.array([1.0, -2.0, 0.5, 0.0])
    var_a, var_b = np.array([1.0, 2.0, 0.5, 1.0]), np.array([4.0, 1.0, 0.5, 0.25])
    a = mu_a + rng.standard_normal((200_000, d)) * np.sqrt(var_a)
    b = mu_b + rng.standard_normal((200_000, d)) * np.sqrt(var_b)
    # Diagonal covariances: ||mu_a - mu_b||^2 + sum(var_a + var_b - 2 sqrt(var_a var_b)).
    expected = float(((mu_a - mu_b) ** 2).sum() + (var_a + var_b - 2 * np.sqrt(var_a * var_b)).sum())
    assert frechet_distance(a, b) == pytest.approx(expected, rel=0.02)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Fewer rows than dimensions: singular covariances still give a finite, real value.
    assert np.isfinite(frechet_distance(rng.standard_normal((5, 16)), rng.standard_normal((6, 16))))
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(a, b[:, :3])


def test_text_conditioning_gives_the_captions_tokens_and_survives_a_reload(tmp_path):
    """`condition_from` "text": the condition ids are the caption's tokenizer ids, cut or padded (pad_id) to
    `condition_text_tokens`, in [0, vocab_size); the shape the stages read follows; a reload keeps it."""
    from soundlm.tokenize import _condition_ids

    model = tiny_model()
    model.fit_condition_quantizer(torch.nn.functional.normalize(torch.randn(20, 8), dim=-1))
    assert (model.conditions_on_text, model.num_condition_tokens, model.condition_codebook_size) == (False, 2, 4)
    audio_ids = model.caption_condition(["piano in D minor"])
    assert torch.equal(audio_ids, model.condition_tokens(model.embed_text(["piano in D minor"])))

    model.condition_on_text(5)
    assert (model.conditions_on_text, model.num_condition_tokens) == (True, 5)
    assert model.condition_codebook_size == model.config.vocab_size
    captions = ["piano", "a square tone at G major in D minor piano"]
    ids = model.caption_condition(captions)
    first = model.tokenizer.encode(captions[0]).ids
    second = model.tokenizer.encode(captions[1]).ids
    assert len(first) < 5 < len(second)
    assert ids.tolist() == [first + [model.config.pad_id] * (5 - len(first)), second[:5]]
    assert int(ids.max()) < model.condition_codebook_size
    assert _condition_ids(model, _tone(2, False, 1.0, 0.0), "piano").tolist() == ids[0].tolist()
    with pytest.raises(ValueError, match="no caption.*transcript"):
        _condition_ids(model, _tone(2, False, 1.0, 0.0), "  ")
    with pytest.raises(ValueError, match="condition_text_tokens must be >= 1"):
        model.condition_on_text(0)

    model.condition_on_text(5).save_pretrained(tmp_path / "m")
    again = load_mulan(tmp_path / "m")
    assert again.conditions_on_text and torch.equal(again.caption_condition(captions), ids)
