"""A one-stage acoustic AudioLM bundle: semantic stage + one delay-pattern stage over all codebooks, no fine stage."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_bundle import SR, make_tiny_bundle, steps_before_first_chunk, tone

from soundlm.pipeline import AudioLMPipeline, AudioLMSampling, BatchRequest


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("onestage"), pattern="delay1")


@pytest.fixture(scope="module")
def pipe(bundle) -> AudioLMPipeline:
    return AudioLMPipeline.from_bundle(bundle, device="cpu")


def test_a_bundle_without_fine_loads_as_one_delay_stage_over_every_codebook(bundle, pipe):
    from soundlm.pretrained import check_model_folder, load_pipeline

    assert not (bundle / "fine").exists()
    assert pipe.fine is None and [s.name for s in pipe.stages] == ["semantic", "coarse"]
    assert pipe.coarse.delayed and pipe.num_coarse == pipe.num_codebooks == pipe.codec.total_codebooks
    assert check_model_folder(bundle) == bundle
    assert load_pipeline(bundle, device="cpu").fine is None


def test_continue_gives_the_asked_length_and_acoustic_codes_cover_every_codebook(pipe):
    prompt = tone(0.5)
    waves = pipe.continue_audio(prompt, seconds=0.4, num_samples=2, prompt_sample_rate=SR, seed=1)
    assert [w.shape for w in waves] == [(1, 8000 + 6400)] * 2
    assert not np.array_equal(waves[0], waves[1])  # each sample draws its own codes
    semantic, codes = pipe.tokenize_prompt(prompt, SR)
    out = pipe.acoustic_codes(semantic, codes, frames=codes.shape[2] + 5)
    assert out.shape == (1, pipe.num_codebooks, codes.shape[2] + 5)
    assert torch.equal(out[:, :, :codes.shape[2]], codes)  # the acoustic prompt is kept


def test_generate_batch_gives_each_request_what_it_gets_alone(pipe):
    requests = [BatchRequest(seconds=0.3, prompt=tone(0.4), prompt_sample_rate=SR, num_samples=2, seed=3),
                BatchRequest(seconds=0.5, seed=7)]
    batched = pipe.generate_batch(requests)
    alone = [pipe.continue_audio(tone(0.4), 0.3, num_samples=2, prompt_sample_rate=SR, seed=3),
             pipe.generate(0.5, seed=7)]
    for got, want in zip(batched, alone):
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and np.abs(g - w).max() < 1e-5


def test_streamed_chunks_equal_the_non_streamed_continuation(pipe):
    kwargs = dict(seconds=0.8, num_samples=2, prompt_sample_rate=SR, seed=4)
    whole = np.stack(pipe.continue_audio(tone(0.4), **kwargs))  # [B, C, S]
    chunks = list(pipe.stream_continue(tone(0.4), **kwargs))
    assert len(chunks) >= 2  # the coarse window (0.3 s) is shorter than the audio asked for
    streamed = np.concatenate([c.audio for c in chunks], axis=-1)
    assert streamed.shape == whole.shape and np.abs(streamed - whole).max() < 1e-5


def test_streamed_chunks_equal_the_non_streamed_continuation_with_a_short_first_window(pipe):
    kwargs = dict(seconds=0.8, num_samples=2, prompt_sample_rate=SR, seed=4,
                  sampling=AudioLMSampling(first_window=0.06))
    whole = np.stack(pipe.continue_audio(tone(0.4), **kwargs))  # [B, C, S]
    streamed = np.concatenate([c.audio for c in pipe.stream_continue(tone(0.4), **kwargs)], axis=-1)
    assert streamed.shape == whole.shape and np.abs(streamed - whole).max() < 1e-5


def test_first_chunk_comes_after_a_short_semantic_window_and_one_delay_window(pipe, monkeypatch):
    """First windows of F frames: F semantic steps, then F + K - 1 delay-pattern steps for the F frames of all
    K codebooks, then the first chunk (once F frames outreach the decoding context)."""
    kwargs = dict(seconds=0.8, seed=1, decode_context=0.04)  # 2 frames of codec context
    steps = steps_before_first_chunk(pipe, monkeypatch, sampling=AudioLMSampling(first_window=0.06), **kwargs)
    assert steps == 3 + 3 + pipe.num_codebooks - 1
    assert steps_before_first_chunk(pipe, monkeypatch, sampling=AudioLMSampling(first_window=None), **kwargs) > steps


def test_a_flattened_coarse_stage_over_some_codebooks_still_needs_fine(tmp_path):
    flat = make_tiny_bundle(tmp_path)
    shutil.rmtree(flat / "fine")
    with pytest.raises(ValueError, match="without a fine stage the coarse LM must model every codec codebook"):
        AudioLMPipeline.from_bundle(flat, device="cpu")


def test_readers_of_the_fine_stage_work_or_refuse_in_one_line(bundle, pipe, tmp_path):
    import soundlm
    from soundlm.compress.tokens import TokenCodec, bundle_hash
    from soundlm.hub import bundle_config

    saved = soundlm.save_pretrained(pipe, tmp_path / "shared", name="one-stage")
    assert not (saved / "fine").exists() and "fine" not in bundle_config(saved).parts
    again = soundlm.from_pretrained(saved, device="cpu")
    a = pipe.continue_audio(tone(0.4), 0.2, prompt_sample_rate=SR, seed=2)
    assert np.array_equal(a[0], again.continue_audio(tone(0.4), 0.2, prompt_sample_rate=SR, seed=2)[0])
    codec = TokenCodec(pipe, bundle_hash(bundle))  # token mode codes one-stage bundles (tests/test_compress_tokens.py)
    assert codec.pipe.fine is None


def test_train_lm_delay_stage_over_all_codebooks_then_eval_lm_reports_bits_per_code(bundle, tmp_path):
    """`soundlm train lm --stage coarse --pattern delay --coarse-codebooks K` trains the one stage; the pipeline
    runs it without a fine stage and `soundlm eval lm` scores it per acoustic code."""
    from typer.testing import CliRunner

    from soundlm.audio import save_audio
    from soundlm.cli import app
    from soundlm.data import write_manifest
    from soundlm.tokenize import TokenizeConfig, tokenize_corpus
    from soundlm.train.lm import LMTrainConfig, train_lm

    corpus = tmp_path / "corpus"
    rows = []
    for i in range(4):
        rel = f"wav/t{i}.wav"
        save_audio(corpus / rel, tone(0.6 + 0.1 * i, freq=180 + 30 * i), SR)
        rows.append({"id": f"t{i}", "path": rel, "duration": 0.6 + 0.1 * i, "sample_rate": SR, "speaker": "a",
                     "language": "en", "transcript": "", "split": "heldout" if i < 2 else "train"})
    write_manifest(corpus, rows)
    store = tmp_path / "store"
    tokenize_corpus(TokenizeConfig(source=str(corpus), out=str(store), semantic=str(bundle / "semantic_tokenizer"),
                                   codec=str(bundle / "codec"), batch_size=4, workers=0, device="cpu"),
                    progress=False)
    k = AudioLMPipeline.from_bundle(bundle, device="cpu").num_codebooks
    train_lm(LMTrainConfig(store=str(store), out=str(tmp_path / "coarse"), stage="coarse", pattern="delay",
                           coarse_codebooks=k, steps=2, batch_size=2, window_seconds=0.3, preset="tiny",
                           progress=False))
    trained = AudioLMPipeline.from_runs(bundle / "semantic", tmp_path / "coarse", None,
                                        semantic_tokenizer=bundle / "semantic_tokenizer", codec=bundle / "codec",
                                        device="cpu")
    assert trained.fine is None and trained.coarse.delayed and trained.num_coarse == k
    model = trained.save_bundle(tmp_path / "model")
    assert trained.continue_audio(tone(0.4), 0.2, prompt_sample_rate=SR)[0].shape == (1, 6400 + 3200)

    res = CliRunner().invoke(app, ["eval", "lm", "--model", str(model), "--store", str(store),
                                   "--out", str(tmp_path / "eval")])
    assert res.exit_code == 0, res.output
    section = json.loads((tmp_path / "eval" / "lm.json").read_text())
    assert [r["stage"] for r in section["rows"]] == ["semantic", "coarse"]
    coarse = section["rows"][1]
    assert section["summary"]["acoustic_bits_per_code"] == pytest.approx(coarse["bits_per_token"])
    assert coarse["bits_per_token"] > 0


def test_serve_counts_one_decoding_step_per_frame_and_none_for_fine(pipe):
    from soundlm.serve.tasks import audiolm_steps

    sem = int(np.ceil(1.0 * pipe.semantic.meta.semantic_rate))
    frames = int(np.ceil(1.0 * float(pipe.codec.frame_rate)))
    assert audiolm_steps(pipe, 1.0, 1.0) == sem + frames
