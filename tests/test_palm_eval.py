"""`soundlm eval palm`: scores on held-out voices, the copy baseline, resuming, the voice-transfer fallback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from soundlm.palm.data import build_task_examples
from soundlm.palm.evaluate import HYPOTHESES, PalmEvalConfig, evaluate_palm
from soundlm.palm.train import PalmTrainConfig, train_palm
from test_palm import SEMANTIC, SENTENCES, tiny_text_lm, word_semantic


def make_split_store(folder: Path, semantic_spec: Path | None = None) -> Path:
    """Every sentence read in en and fr by a training voice, and in en by a held-out voice.

    The held-out reading's translation partner is a training-voice recording, as in the
    synthetic corpus (a sentence's readings go to random speakers).
    """
    from soundlm.store import TokenRecord, StoreManifest, write_part

    records = []
    for i, pair in enumerate(SENTENCES):
        for lang, text in pair.items():
            records.append(TokenRecord(id=f"{lang}{i}", path=f"wavs/{lang}{i}.wav", duration=1.0,
                                       semantic=word_semantic(text), acoustic=np.zeros((2, 5), dtype=np.int64),
                                       speaker=f"train_{lang}", transcript=text, language=lang, sample_rate=16000,
                                       split="train", text_id=f"t{i}"))
        text = pair["en"]
        records.append(TokenRecord(id=f"h{i}", path=f"wavs/h{i}.wav", duration=1.0, semantic=word_semantic(text),
                                   acoustic=np.zeros((2, 5), dtype=np.int64), speaker="held_en", transcript=text,
                                   language="en", sample_rate=16000, split="heldout", text_id=f"t{i}"))
    write_part(folder, 0, 1, 0, records, [])
    StoreManifest.from_json({"version": 1, "semantic_vocab_size": SEMANTIC, "acoustic_num_codebooks": 2,
                            "acoustic_codebook_size": 8, "semantic_frame_rate": 25.0, "num_shards": 1,
                            **({"semantic_spec": str(semantic_spec)} if semantic_spec else {})}).write(folder)
    return folder


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    import torch

    from soundlm.semantic.features import MFCCFeatures
    from soundlm.semantic.tokenizer import KMeansTokenizer

    root = tmp_path_factory.mktemp("palm_eval")
    # A random MFCC tokenizer with the store's vocabulary: `soundlm asr/translate` on a wav go through it.
    torch.manual_seed(0)
    KMeansTokenizer(MFCCFeatures(), torch.randn(SEMANTIC, 39)).save(root / "semantic")
    store = make_split_store(root / "store", root / "semantic")
    cfg = PalmTrainConfig(store=str(store), out=str(root / "run"), init=str(tiny_text_lm(root / "textlm")),
                          tasks=("asr", "ast", "tts", "s2st"), steps=200, batch_size=8, lr=3e-3, warmup=10,
                          ckpt_every=200, progress=False)
    train_palm(cfg)
    return store, root / "run"


def test_heldout_sources_keep_partners_from_any_split(trained):
    store, _ = trained
    strict = build_task_examples(store, ["asr", "ast"], split="heldout")
    assert strict.counts == {"asr": 4}  # no held-out fr readings: no AST pairs inside the split
    loose = build_task_examples(store, ["asr", "ast"], split="heldout", partners_any_split=True)
    assert loose.counts == {"asr": 4, "ast": 4}
    ast = [ex for ex in loose.examples if ex.task == "ast"]
    assert all(ex.source_speaker == "held_en" and ex.source_path.startswith("wavs/h") for ex in ast)
    assert {ex.source_text for ex in ast} == {pair["en"] for pair in SENTENCES}  # the copy baseline's input
    assert {ex.target_text for ex in ast} == {pair["fr"] for pair in SENTENCES}


def test_eval_scores_every_trained_task_and_resumes(trained, tmp_path, monkeypatch):
    store, run = trained
    cfg = PalmEvalConfig(model=str(run), store=str(store), out=str(tmp_path / "eval"), max_semantic_tokens=40,
                         progress=False)
    result = evaluate_palm(cfg)
    res = result.report["results"]
    assert set(res) == {"asr", "ast", "tts", "s2st", "heard", "voice_transfer"}
    assert res["heard"]["status"] == "not run" and "--audiolm" in res["heard"]["reason"]
    # The training sentences come back on the held-out voice (same ids here): ASR is near perfect.
    assert res["asr"]["en"]["n"] == 4 and res["asr"]["en"]["wer"] < 0.2
    # Translation beats handing back the English transcript (which shares almost no n-grams with French).
    assert res["ast"]["en->fr"]["bleu"] > res["ast"]["en->fr"]["copy_bleu"] + 20
    # S2ST is read back by the model's own ASR; the real French recording sets its ceiling.
    assert 0 <= res["s2st"]["en->fr"]["bleu"] <= 100 and res["s2st"]["en->fr"]["asr_bleu_real_target"] > 50
    assert res["tts"]["en"]["n"] == 4 and "wer" in res["tts"]["en"]
    assert res["voice_transfer"]["status"] == "not run" and "--audiolm" in res["voice_transfer"]["reason"]
    assert json.loads(result.json_path.read_text())["results"]["asr"] == res["asr"]
    md = result.md_path.read_text()
    assert "| ASR | en | 4 | WER |" in md and "copy-source BLEU" in md and "own ASR" in md

    # A rerun answers from hypotheses.jsonl: no decoding at all, the same report.
    lines = (tmp_path / "eval" / HYPOTHESES).read_text().splitlines()
    assert len(lines) == 16

    def no_decoding(*args, **kwargs):
        raise AssertionError("a resumed evaluation must not decode finished examples again")

    monkeypatch.setattr("soundlm.palm.infer.run_task", no_decoding)
    again = evaluate_palm(cfg)
    assert again.report["results"] == res


def test_eval_cli_and_errors(trained, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    store, run = trained
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["eval", "palm", "--model", str(run), "--store", str(store), "--out", str(out),
                                 "--tasks", "asr", "--max-examples", "2", "--no-progress"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["results"]) == {"asr", "heard", "voice_transfer"} and report["results"]["asr"]["en"]["n"] == 2
    r = CliRunner().invoke(app, ["eval", "palm", "--model", str(tmp_path / "nothing"), "--store", str(store)])
    assert r.exit_code == 2 and "not a palm model folder" in r.output
    r = CliRunner().invoke(app, ["eval", "palm", "--model", str(run), "--store", str(store), "--out", str(out),
                                 "--tasks", "continue"])
    assert r.exit_code == 2 and "cannot evaluate" in r.output
    r = CliRunner().invoke(app, ["eval", "palm", "--model", str(run), "--store", str(store), "--out", str(out),
                                 "--split", "dev"])
    assert r.exit_code == 2 and "no" in r.output and "'dev'" in r.output


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    tiny_bundle = pytest.importorskip("tiny_bundle", reason="tests/tiny_bundle.py (a random AudioLM bundle) missing")
    return tiny_bundle.make_tiny_bundle(tmp_path_factory.mktemp("bundle"))


def test_semantic_to_audio_through_the_bundle(bundle, tmp_path):
    from tiny_bundle import SR, tone

    from soundlm.audio import save_audio
    from soundlm.palm.infer import semantic_to_audio
    from soundlm.pipeline import AudioLMPipeline

    pipe = AudioLMPipeline.from_bundle(bundle, device="cpu")
    hop = pipe.codec.sample_rate / pipe.codec.frame_rate
    sem_rate = float(pipe.semantic_tokenizer.frame_rate)
    ids = np.arange(20) % 16  # 20 semantic frames
    frames = int(round(20 / sem_rate * pipe.codec.frame_rate))
    wav, sr = semantic_to_audio(ids, bundle, seed=0)
    assert sr == pipe.sample_rate and wav.shape == (1, int(round(frames * hop)))
    # With a voice prompt the prompt part (a fractional frame longer than whole frames) is cut off.
    save_audio(tmp_path / "voice.wav", tone(0.3 + 0.5 / SR * hop)[None], SR)
    wav2, _ = semantic_to_audio(ids, bundle, voice_prompt=tmp_path / "voice.wav", seed=0)
    assert wav2.shape == wav.shape and np.isfinite(wav2).all()
    with pytest.raises(ValueError, match="semantic ids must be"):
        semantic_to_audio(np.array([99]), bundle)
    with pytest.raises(ValueError, match="--audiolm"):
        semantic_to_audio(ids, None)


def test_voice_transfer_scores_rendered_s2st(bundle, tmp_path):
    from tiny_bundle import SR, tone

    from soundlm.audio import save_audio
    from soundlm.data import write_manifest
    from soundlm.palm.evaluate import _voice_transfer

    corpus = tmp_path / "corpus"
    rows = []
    for spk, freq in (("a", 110.0), ("b", 220.0), ("c", 330.0)):
        for i in range(2):
            path = f"wavs/{spk}{i}.wav"
            (corpus / "wavs").mkdir(parents=True, exist_ok=True)
            save_audio(corpus / path, tone(1.0, freq * (1 + 0.05 * i))[None], SR)
            rows.append({"id": f"{spk}{i}", "path": path, "duration": 1.0, "sample_rate": SR, "speaker": spk,
                         "language": "en", "transcript": "a b"})
    manifest = write_manifest(corpus / "manifest.jsonl", rows)
    s2st = [{"id": f"s2st:{spk}0:x", "semantic": [i % 16 for i in range(40)], "frames": 40, "source_path": f"wavs/{spk}0.wav",
             "source_speaker": spk} for spk in ("a", "b")]
    cfg = PalmEvalConfig(model="unused", store="unused", out=str(tmp_path), manifest=str(manifest),
                         audiolm=str(bundle), voice_examples=2)
    vt = _voice_transfer(cfg, s2st, tmp_path)
    assert vt["status"] == "run" and vt["n"] == 2 and 0 <= vt["closest_to_source_rate"] <= 1
    assert -1 <= vt["similarity_to_others"] <= 1 and -1 <= vt["similarity_to_source"] <= 1
    # The controls score the same outputs: the unprompted render and the source recording.
    for key in ("unprompted", "source_recording"):
        assert set(vt[key]) == {"similarity_to_source", "similarity_to_others", "closest_to_source_rate"}
        assert -1 <= vt[key]["similarity_to_source"] <= 1 and 0 <= vt[key]["closest_to_source_rate"] <= 1
    assert len(list((tmp_path / "s2st_audio").glob("*.unprompted.wav"))) == 2
    assert len(list((tmp_path / "s2st_audio").glob("*.wav"))) == 4
    # The source recording is enrolled nowhere else but its speaker's other clip (a near copy
    # of the same tone), so it must be closest to its own speaker: the ceiling is a real ceiling.
    assert vt["source_recording"]["closest_to_source_rate"] == 1.0
    no_bundle = _voice_transfer(PalmEvalConfig(model="m", store="s", out=str(tmp_path)), s2st, tmp_path)
    assert no_bundle["status"] == "not run"


def test_whisper_hears_rendered_english_tts_and_s2st(bundle, tmp_path, monkeypatch):
    from soundlm.palm.evaluate import _heard, _Hypotheses

    ids = [i % 16 for i in range(40)]

    def row(task: str, src: str, tgt: str, ref: str) -> dict:
        return {"task": task, "id": f"{task}:{src}{tgt}", "ref": ref, "semantic": ids, "frames": len(ids),
                "source_language": src, "target_language": tgt}

    rows = {"tts": [row("tts", "en", "en", "the cat sat on the mat"), row("tts", "fr", "fr", "le chat")],
            "s2st": [row("s2st", "fr", "en", "the cat sat on the mat"), row("s2st", "en", "fr", "le chat")]}
    cfg = PalmEvalConfig(model="m", store="s", out=str(tmp_path), audiolm=str(bundle))
    cache = _Hypotheses(tmp_path / HYPOTHESES, "m")
    heard = _heard(cfg, rows, cache, "m")
    # Only the English outputs are heard (Whisper tiny.en); the random bundle renders no words.
    assert heard["status"] == "run" and heard["tts"]["n"] == 1 and heard["s2st"]["n"] == 1
    assert heard["tts"]["wer"] >= 0.5 and 0 <= heard["s2st"]["asr_bleu"] <= 100
    assert [s["ref"] for s in heard["samples"]["tts"]] == ["the cat sat on the mat"]

    def no_rendering(*args, **kwargs):
        raise AssertionError("cached transcripts must not be rendered again")

    monkeypatch.setattr("soundlm.palm.infer.semantic_to_audio", no_rendering)
    assert _heard(cfg, rows, _Hypotheses(tmp_path / HYPOTHESES, "m"), "m") == heard
    for cfg_, rows_, reason in ((PalmEvalConfig(model="m", store="s", out="o"), rows, "--audiolm"),
                                (cfg, {"tts": rows["tts"][1:], "s2st": rows["s2st"][1:]}, "English only")):
        result = _heard(cfg_, rows_)
        assert result["status"] == "not run" and reason in result["reason"]


def test_asr_and_translate_commands_on_a_wav(trained, tmp_path):
    """The wav -> semantic ids -> palm path of `soundlm asr` / `soundlm translate` (random tokenizer: any text)."""
    from typer.testing import CliRunner

    from soundlm.audio import save_audio
    from soundlm.cli import app

    _, run = trained
    t = np.arange(16000) / 16000
    save_audio(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 180 * t * (1 + t))).astype(np.float32)[None], 16000)
    r = CliRunner().invoke(app, ["asr", str(tmp_path / "a.wav"), "--model", str(run), "--language", "en"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["translate", str(tmp_path / "a.wav"), "--to", "fr", "--model", str(run)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["translate", str(tmp_path / "a.wav"), "--to", "fr", "--model", str(run), "--speech",
                                 "--out-tokens", str(tmp_path / "fr.npy")])
    assert r.exit_code == 0, r.output
    ids = np.load(tmp_path / "fr.npy")
    assert ids.ndim == 1 and ((0 <= ids) & (ids < SEMANTIC)).all()
    r = CliRunner().invoke(app, ["asr", str(tmp_path / "missing.wav"), "--model", str(run)])
    assert r.exit_code != 0 and "missing.wav" in r.output
