"""The `soundlm eval` suite end to end on a tiny random bundle and a tiny espeak-ng corpus."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from soundlm.eval import suite

SR = 16000
WINDOWS = {"semantic": 0.3, "coarse": 0.16, "fine": 0.1}
NUM_COARSE = 2
SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "we like green apples",
             "the sun is very warm", "my brother reads books"]
VOICES = {"alice": "en-us", "bob": "en-gb+m3"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A bundle (tiny random stages, MFCC tokenizer, tiny codec), a corpus and its token store."""
    from soundlm.audio import save_audio
    from soundlm.codec import SoundStreamCodec, codec_16k_tiny
    from soundlm.data import write_manifest
    from soundlm.eval.tts import synthesize
    from soundlm.lm.model import TokenLM, lm_tiny
    from soundlm.pipeline import AudioLMPipeline, StageModel
    from soundlm.semantic.features import MFCCFeatures
    from soundlm.semantic.tokenizer import KMeansTokenizer
    from soundlm.tokenize import TokenizeConfig, tokenize_corpus
    from soundlm.train.lm_stage import stage_layout, stage_meta

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("evalsuite")
    sem = KMeansTokenizer(MFCCFeatures(), torch.randn(16, 39))
    codec = SoundStreamCodec(codec_16k_tiny())
    for name, buf in codec.named_buffers():  # random codebooks: different codes decode differently
        if name.endswith(("embed", "embed_avg")):
            buf.normal_()
        elif name.endswith("inited"):
            buf.fill_(True)
    k = codec.total_codebooks
    stages = []
    for stage, window in WINDOWS.items():
        layout = stage_layout(stage, sem.vocab_size, codec.codebook_size, k, NUM_COARSE)
        meta = stage_meta(stage, window, NUM_COARSE, k, sem.frame_rate, codec.frame_rate, {})
        model = TokenLM.from_config(lm_tiny(layout.vocab_size, max_positions=128), layout=layout, meta=meta)
        stages.append(StageModel(model=model, meta=meta, layout=layout, folder=root))
    bundle = AudioLMPipeline(sem, codec, *stages, device="cpu").save_bundle(root / "bundle")

    corpus = root / "corpus"
    rows = []
    for spk, voice in VOICES.items():
        for i, text in enumerate(SENTENCES[:3] if spk == "alice" else SENTENCES[2:]):
            rel = f"wav/{spk}_{i}.wav"
            audio = synthesize(text, voice=voice, sample_rate=SR)
            save_audio(corpus / rel, audio, SR)
            rows.append({"id": f"{spk}_{i}", "path": rel, "duration": len(audio) / SR, "sample_rate": SR,
                         "speaker": spk, "language": "en", "transcript": text, "split": "heldout"})
    audio = synthesize(SENTENCES[4], voice="en-us+f3", sample_rate=SR)
    save_audio(corpus / "wav/carol_0.wav", audio, SR)
    rows.append({"id": "carol_0", "path": "wav/carol_0.wav", "duration": len(audio) / SR, "sample_rate": SR,
                 "speaker": "carol", "language": "en", "transcript": SENTENCES[4], "split": "train"})
    write_manifest(corpus, rows)
    store = root / "store"
    tokenize_corpus(TokenizeConfig(source=str(corpus), out=str(store), semantic=str(bundle / "semantic_tokenizer"),
                                   codec=str(bundle / "codec"), batch_size=4, workers=0, device="cpu"),
                    progress=False)
    return {"root": root, "bundle": bundle, "corpus": corpus, "store": store}


@pytest.fixture(scope="module")
def pipe(world):
    from soundlm.pipeline import AudioLMPipeline

    return AudioLMPipeline.from_bundle(world["bundle"], device="cpu")


def _manual_stage_loss(stage, records) -> tuple[float, int]:
    """Loss by hand: cut each record into whole windows, build the stage sequence, sum -log p of its targets."""
    from soundlm import patterns

    layout, qc = stage.layout, NUM_COARSE
    n = int(round(stage.window_seconds * 50))  # both streams run at 50 Hz here
    total, count = 0.0, 0
    for sem, ac in zip(records.semantic, records.acoustic):
        frames = sem.shape[0] if stage.stage == "semantic" else min(sem.shape[0], ac.shape[1])
        for i in range(frames // n):
            s = torch.from_numpy(sem[i * n:(i + 1) * n])[None]
            a = torch.from_numpy(ac[:, i * n:(i + 1) * n])[None]
            if stage.stage == "semantic":
                seq = patterns.semantic_sequence(s, layout, eos=False)
            elif stage.stage == "coarse":
                seq = patterns.coarse_sequence(s, a[:, :qc], layout, eos=False)
            else:
                seq = patterns.fine_sequence(a[:, :qc], a[:, qc:], layout, eos=False)
            with torch.no_grad():
                logp = torch.log_softmax(stage.model(seq.tokens).logits[0].double(), dim=-1)  # [L, V]
            for t in range(seq.prefix_len, seq.tokens.shape[1]):
                total -= float(logp[t - 1, seq.tokens[0, t]])
                count += 1
    return total / count, count


def test_lm_eval_loss_equals_manual_computation(world, pipe):
    records = suite.load_split_tokens(world["store"], "heldout")
    assert sorted(records.ids) == sorted(f"{s}_{i}" for s in VOICES for i in range(3))  # carol is train
    section = suite.eval_lm([pipe.semantic, pipe.coarse, pipe.fine], world["store"], progress=False)
    by_stage = {r["stage"]: r for r in section.rows}
    for stage in (pipe.semantic, pipe.coarse, pipe.fine):
        loss, count = _manual_stage_loss(stage, records)
        row = by_stage[stage.stage]
        assert row["num_tokens"] == count
        assert row["loss_nats"] == pytest.approx(loss, rel=1e-4)
        assert row["bits_per_token"] == pytest.approx(loss / math.log(2), rel=1e-4)
    # An untrained model is near uniform over its vocabulary: loss close to log V.
    assert by_stage["semantic"]["loss_nats"] == pytest.approx(math.log(pipe.semantic.layout.vocab_size), rel=0.2)


def test_lm_eval_without_heldout_records_says_how_to_fix(world):
    with pytest.raises(ValueError, match="no record has split 'nosuch'"):
        suite.load_split_tokens(world["store"], "nosuch")


def test_tile_windows_cover_whole_windows_only():
    sem, ac = np.arange(23), np.arange(2 * 23).reshape(2, 23)
    ws = suite.tile_windows("r", sem, ac, 0.2, 50.0, 50.0)  # 10 frames a window: 2 whole ones
    assert [w.semantic.tolist() for w in ws] == [list(range(10)), list(range(10, 20))]
    assert all(w.acoustic.shape == (2, 10) for w in ws)
    short = suite.tile_windows("r", sem[:4], ac[:, :4], 0.2, 50.0, 50.0)
    assert len(short) == 1 and short[0].semantic.shape == (4,)  # a short record is scored whole
    assert suite.tile_windows("r", sem[:4], ac[:, :4], 0.2, 50.0, 50.0, full_only=True) == []


def test_continuation_accuracy_and_contrast(world, pipe, tmp_path):
    section = suite.eval_continuation(pipe, world["corpus"], prompt_seconds=0.6, seconds=0.6, num_prompts=2,
                                      seed=3, out_dir=tmp_path, progress=False)
    s = section.summary
    assert s["num_voices"] == 2 and s["chance"] == 0.5 and s["num_prompts"] == 2
    for key in ("accuracy_acoustic_prompt", "accuracy_semantic_prompt_only"):
        assert 0.0 <= s[key] <= 1.0
    assert -1.0 <= s["similarity_acoustic_prompt"] <= 1.0 and -1.0 <= s["similarity_semantic_prompt_only"] <= 1.0
    # Round-robin over voices: one prompt per voice, never an enrolment utterance.
    assert sorted(r["speaker"] for r in section.rows) == ["alice", "bob"]
    wavs = sorted((tmp_path / "continuation_audio").glob("*.wav"))
    assert len(wavs) == 4
    import soundfile as sf

    assert sf.info(wavs[0]).frames == int(round(0.6 * SR))  # the continuation only
    # Resume: a rerun with the same settings reads the finished prompts from the state file.
    again = suite.eval_continuation(pipe, world["corpus"], prompt_seconds=0.6, seconds=0.6, num_prompts=2,
                                    seed=3, out_dir=tmp_path, progress=False)
    assert again.rows == section.rows


def test_semantic_prompt_only_resamples_the_acoustics(pipe):
    t = np.arange(int(0.4 * SR)) / SR
    prompt = (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    with_codes = pipe.continue_audio(prompt, 0.2, prompt_sample_rate=SR, seed=0)[0]
    without = pipe.continue_audio(prompt, 0.2, prompt_sample_rate=SR, seed=0, acoustic_prompt=False)[0]
    assert with_codes.shape == without.shape
    # With the acoustic prompt the prompt part is the codec's decoding of the prompt's own codes.
    assert not np.allclose(with_codes[:, :3200], without[:, :3200])


def test_plan_speaker_test_keeps_enrolment_and_prompts_apart():
    utts = [suite.Utterance(id=f"{s}{i}", path=Path("x"), speaker=s, duration=4.0) for s in "ab" for i in range(4)]
    enrol, prompts = suite.plan_speaker_test(utts, 3.0, 10, seed=1)
    assert set(enrol) == {"a", "b"} and len(prompts) == 4
    enrolled = {u.id for us in enrol.values() for u in us}
    assert not enrolled & {u.id for u in prompts}
    with pytest.raises(ValueError, match="at least 2 voices"):
        suite.plan_speaker_test(utts[:4], 3.0, 10)


def test_semantic_logprob_matches_the_lm(pipe):
    from soundlm.eval.tts import synthesize

    audio = synthesize("garden", sample_rate=SR)
    score = suite.semantic_logprob(pipe, audio, SR)
    ids = pipe.semantic_tokenizer.encode(torch.from_numpy(audio)[None, None])  # [1, T]
    assert score.num_tokens == ids.shape[1] and score.total_logprob < 0
    tokens = torch.cat([torch.tensor([[pipe.semantic.layout.bos_id]]), pipe.semantic.layout.semantic_to_global(ids)], 1)
    with torch.no_grad():
        loss = pipe.semantic.model(tokens, labels=tokens).loss  # mean next-token cross-entropy
    assert score.mean_logprob == pytest.approx(-float(loss), rel=1e-4)


def test_cli_eval_all_writes_every_section(world, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    out = tmp_path / "results"
    res = CliRunner().invoke(app, ["eval", "all", "--model", str(world["bundle"]), "--data", str(world["corpus"]),
                                   "--store", str(world["store"]), "--out", str(out), "--max-files", "2", "--asr-max-files", "2",
                                   "--prompt-seconds", "0.6", "--seconds", "0.6", "--num-prompts", "2",
                                   "--num-pairs", "3"])
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["order"] == list(suite.SECTIONS) and set(results["sections"]) == set(suite.SECTIONS)
    md = (out / "results.md").read_text()
    for name, section in results["sections"].items():
        assert section["wall_seconds"] > 0 and section["settings"] and section["summary"]
        assert json.loads((out / f"{name}.json").read_text())["summary"] == section["summary"]
        assert f"## {section['title']}" in md and (out / f"{name}.md").is_file()
    codec_rows = results["sections"]["codec"]["rows"]
    assert [r["num_codebooks"] for r in codec_rows] == [1, 2, 4]
    assert all(r["num_files"] == 2 and r["pesq"] is not None and r["stoi"] is not None for r in codec_rows)
    assert codec_rows[0]["bitrate_kbps"] < codec_rows[-1]["bitrate_kbps"]
    lex = results["sections"]["lexical"]
    assert lex["summary"]["num_pairs"] == 3 and 0 <= lex["summary"]["accuracy"] <= 1
    assert all(r["word_logprob"] < 0 and r["nonword_logprob"] < 0 for r in lex["rows"])
    # The pairs are built from the training split's words (carol's sentence), not a fixed list.
    assert "train transcripts" in lex["settings"]["words"]
    assert sorted(r["word"] for r in lex["rows"]) == ["books", "brother", "reads"]
    asr = results["sections"]["asr"]["summary"]
    assert asr["num_files"] == 2 and asr["wer_original"] <= 0.5 and asr["wer_resynthesized"] >= 0
    cont = results["sections"]["continuation"]["summary"]
    assert 0 <= cont["accuracy_acoustic_prompt"] <= 1 and 0 <= cont["accuracy_semantic_prompt_only"] <= 1
    # Every espeak sentence outlasts 0.6 s + 0.6 s: both references were classified for every prompt.
    assert cont["num_references"] == 2
    assert 0 <= cont["accuracy_ground_truth"] <= 1 and 0 <= cont["accuracy_codec_resynthesis"] <= 1
    assert all(r["predicted_ground_truth"] in ("alice", "bob") for r in results["sections"]["continuation"]["rows"])
    assert "| stage |" in (out / "lm.md").read_text()


def test_lexical_over_several_voices_is_the_mean_of_each(pipe, world, tmp_path):
    args = dict(num_pairs=3, seed=0, progress=False, data=world["corpus"])
    each = {v: suite.eval_lexical(pipe, voice=v, work_dir=tmp_path / v, **args) for v in ("en-us", "en-gb+m3")}
    both = suite.eval_lexical(pipe, voice="en-us, en-gb+m3", work_dir=tmp_path / "both", **args)
    accs = [each[v].summary["accuracy"] for v in each]
    assert both.summary["accuracy"] == pytest.approx(np.mean(accs))
    assert (both.summary["accuracy_min"], both.summary["accuracy_max"]) == (min(accs), max(accs))
    assert both.summary["num_voices"] == 2 and both.summary["num_pairs"] == 3
    assert both.settings["voice"] == "en-us,en-gb+m3"
    # The same pairs, spoken by each voice in turn; one voice's rows are what it scores alone.
    assert [r["voice"] for r in both.rows] == ["en-us"] * 3 + ["en-gb+m3"] * 3
    assert [{k: v for k, v in r.items() if k != "voice"} for r in both.rows[3:]] == each["en-gb+m3"].rows
    assert "voice" not in each["en-us"].rows[0] and "num_voices" not in each["en-us"].summary
    for bad in ("", " , ", "en-us,en-us"):
        with pytest.raises(ValueError, match="--voice"):
            suite.eval_lexical(pipe, voice=bad, work_dir=tmp_path / "bad", **args)


def test_cli_single_commands_and_errors(world, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["eval", "codec", "--codec", str(world["bundle"] / "codec"), "--data",
                              str(world["corpus"]), "--out", str(tmp_path), "--max-files", "1",
                              "--num-codebooks", "1,4", "--no-pesq"])
    assert res.exit_code == 0, res.output
    rows = json.loads((tmp_path / "codec.json").read_text())["rows"]
    assert [r["num_codebooks"] for r in rows] == [1, 4] and rows[0]["pesq"] is None
    res = runner.invoke(app, ["eval", "lm", "--model", str(world["bundle"]), "--store", str(world["store"]),
                              "--out", str(tmp_path), "--split", "train"])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "lm.json").read_text())["settings"]["num_records"] == 1
    res = runner.invoke(app, ["eval", "continuation", "--model", str(tmp_path / "missing"), "--data",
                              str(world["corpus"]), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "error:" in res.output and "missing" in res.output
    cont = ["eval", "continuation", "--model", str(world["bundle"]), "--data", str(world["corpus"]), "--out",
            str(tmp_path), "--prompt-seconds", "0.6", "--seconds", "0.6", "--num-prompts", "1", "--no-save-audio"]
    res = runner.invoke(app, cont + ["--temperature-coarse", "0.5", "--context", "0.75"])
    assert res.exit_code == 0, res.output
    sampling = json.loads((tmp_path / "continuation.json").read_text())["settings"]["sampling"]
    assert sampling["context"] == 0.75 and sampling["coarse"]["temperature"] == 0.5
    assert sampling["semantic"]["temperature"] == 0.6  # the other stages keep AudioLM's defaults
    res = runner.invoke(app, cont + ["--out", str(tmp_path / "bad"), "--context", "1"])
    assert res.exit_code == 2 and "context must be a fraction" in res.output
    res = runner.invoke(app, ["eval", "asr", "--codec", str(world["bundle"] / "codec"), "--data",
                              str(world["corpus"]), "--out", str(tmp_path), "--split", "nosuch"])
    assert res.exit_code == 2 and "nosuch" in res.output


def test_lm_eval_delay_pattern_stage(world, pipe):
    """A delay-pattern coarse stage is scored on whole windows, every coarse code of each frame once."""
    from soundlm.lm.model import DelayLM, DelayLMConfig, lm_tiny
    from soundlm.pipeline import StageModel
    from soundlm.train.lm_stage import stage_layout, stage_meta

    card = pipe.codec.codebook_size
    model = DelayLM(DelayLMConfig(num_codebooks=NUM_COARSE, codebook_size=card, backbone=lm_tiny(1, max_positions=128),
                                  prefix_vocab_size=16))
    meta = stage_meta("coarse", 0.2, NUM_COARSE, pipe.num_codebooks, 50.0, 50.0, {}, pattern="delay")
    stage = StageModel(model=model, meta=meta, layout=stage_layout("coarse", 16, card, pipe.num_codebooks, NUM_COARSE),
                       folder=world["root"])
    records = suite.load_split_tokens(world["store"])
    row = suite.stage_heldout_loss(stage, records, batch_size=3, device="cpu", progress=False)
    windows = sum(min(s.shape[0], a.shape[1]) // 10 for s, a in zip(records.semantic, records.acoustic))
    assert row.pattern == "delay" and row.num_windows == windows
    assert row.num_tokens == windows * 10 * NUM_COARSE  # delay padding is never a target
    assert row.loss_nats == pytest.approx(math.log(card), rel=0.2)


def test_cli_eval_units_reads_a_bundle_and_shrinks_the_folds_to_fit(world, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["eval", "units", "--tokenizer", str(world["bundle"]), "--data", str(world["corpus"]),
                              "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    units = json.loads((tmp_path / "units.json").read_text())
    # alice and bob have 3 held-out utterances each: 5 folds cannot fit, 3 do.
    assert units["settings"]["folds"] == 3
    assert units["summary"]["num_speakers"] == 2 and units["summary"]["num_utterances"] == 6
    assert units["summary"]["chance"] == 0.5 and 1 <= units["summary"]["units_used"] <= 16
    assert 0 <= units["summary"]["accuracy_units"] <= 1 and 0 <= units["summary"]["accuracy_features"] <= 1
    assert sorted(r["speaker"] for r in units["rows"]) == ["alice", "bob"]
    # The training split holds one speaker with one utterance: nothing to tell apart.
    res = runner.invoke(app, ["eval", "units", "--tokenizer", str(world["bundle"] / "semantic_tokenizer"),
                              "--data", str(world["corpus"]), "--out", str(tmp_path), "--split", "train"])
    assert res.exit_code == 2 and "fewer than 2 speakers" in res.output
