from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundlm.pipeline import AudioLMPipeline, context_windows
from tiny_bundle import random_codec, steps_before_first_chunk

SR = 16000
# Windows far shorter than the requested audio, so every stage generates window by window.
WINDOWS = {"semantic": 0.3, "coarse": 0.16, "fine": 0.1}
NUM_COARSE = 2


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    """Tiny random semantic tokenizer, codec and three stage models, saved as folders."""
    from soundlm.lm.model import TokenLM, lm_tiny, save_lm
    from soundlm.semantic.features import MFCCFeatures
    from soundlm.semantic.tokenizer import KMeansTokenizer
    from soundlm.stages import StageMeta, stage_layout
    from soundlm.store import StoreManifest

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("audiolm")
    sem = KMeansTokenizer(MFCCFeatures(), torch.randn(16, 39))
    sem.save(root / "semantic_tokenizer")
    codec = random_codec()
    codec.save_pretrained(root / "codec")
    k = codec.total_codebooks
    tokenizers = StoreManifest.for_tokenizers(sem, codec, semantic_spec=str(root / "semantic_tokenizer"),
                                              acoustic_spec=str(root / "codec"))
    folders = {}
    for stage, window in WINDOWS.items():
        layout = stage_layout(stage, sem.vocab_size, codec.codebook_size, k, NUM_COARSE)
        meta = StageMeta(stage, window, NUM_COARSE, k, sem.frame_rate, codec.frame_rate, tokenizers=tokenizers)
        model = TokenLM.from_config(lm_tiny(layout.vocab_size, max_positions=128), layout=layout,
                                    meta=meta.to_json())
        folders[stage] = save_lm(model, root / "runs" / stage / "final")
    folders["root"] = root
    return folders


@pytest.fixture(scope="module")
def pipe(parts) -> AudioLMPipeline:
    # Run folders (not their final/) to exercise the run -> final resolution.
    return AudioLMPipeline.from_runs(*(parts[s].parent for s in WINDOWS), device="cpu")


def _prompt(seconds: float = 0.37) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.4 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_context_windows_cover_everything_within_the_window():
    for have, total, window, keep in [(0, 50, 8, 4), (13, 50, 8, 4), (30, 31, 8, 4), (0, 3, 8, 4), (9, 40, 10, 3)]:
        pos = have
        for start, new in context_windows(have, total, window, keep):
            assert start <= pos and new > 0 and (pos - start) + new <= window
            assert pos - start >= min(pos, keep)  # never less context than `keep` when it exists
            pos += new
        assert pos == max(total, have)


def test_a_short_first_window_then_the_windows_of_a_plan_from_there():
    plan = list(context_windows(18, 60, 8, 4, first=3))
    assert plan[0] == (14, 3)  # the usual context (keep = 4 frames), only 3 new
    assert plan[1:] == list(context_windows(21, 60, 8, 4))
    assert list(context_windows(18, 60, 8, 4, first=100)) == list(context_windows(18, 60, 8, 4))
    with pytest.raises(ValueError, match="at least one frame"):
        list(context_windows(0, 5, 8, 4, first=0))


def test_the_semantic_first_window_covers_the_acoustic_first_window_at_any_rates():
    """The coarse first window's F frames after a prompt of T frames read semantic ids up to ceil((T + F) * r)
    (r = semantic / acoustic rate); the prompt holds ceil(T * r) of them, the semantic first window the rest."""
    import math
    from types import SimpleNamespace

    from soundlm.pipeline import AudioLMSampling

    for sem_rate, ac_rate in [(50.0, 50.0), (50.0, 75.0), (25.0, 75.0), (50.0, 86.1328125), (75.0, 50.0)]:
        fake = SimpleNamespace(semantic=SimpleNamespace(meta=SimpleNamespace(semantic_rate=sem_rate)),
                               coarse=SimpleNamespace(meta=SimpleNamespace(acoustic_rate=ac_rate)))
        for seconds in (0.33, 0.4, 0.5, 0.77):
            sampling = AudioLMSampling(first_window=seconds)
            f_sem = AudioLMPipeline._semantic_first_frames(fake, sampling)
            f_ac = sampling.first_frames(ac_rate)
            r = sem_rate / ac_rate
            for t in range(0, 400):
                assert math.ceil((t + f_ac) * r - 1e-6) <= math.ceil(t * r - 1e-6) + f_sem, (sem_rate, ac_rate, t)
    assert AudioLMPipeline._semantic_first_frames(fake, AudioLMSampling(first_window=None)) is None


def test_bad_first_window_is_refused():
    from soundlm.pipeline import AudioLMSampling

    for bad in (0.0, -0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="first_window must be a positive number of seconds"):
            AudioLMSampling(first_window=bad)
    assert AudioLMSampling(first_window=None).first_frames(50.0) is None
    assert AudioLMSampling(first_window=0.06).first_frames(50.0) == 3
    assert AudioLMSampling(first_window=0.001).first_frames(50.0) == 1


def test_continue_writes_distinct_samples_of_exact_length(pipe):
    prompt = _prompt()
    waves = pipe.continue_audio(prompt, seconds=0.5, num_samples=3, prompt_sample_rate=SR, seed=1)
    hop = SR // 50
    prompt_samples = (len(prompt) // hop) * hop  # cut to whole codec frames
    assert len(waves) == 3
    for w in waves:
        assert w.shape == (1, prompt_samples + 8000) and np.isfinite(w).all()
    assert not np.allclose(waves[0], waves[1]) and not np.allclose(waves[1], waves[2])
    only = pipe.continue_audio(prompt, seconds=0.5, num_samples=1, prompt_sample_rate=SR, seed=1,
                               include_prompt=False)
    assert only[0].shape == (1, 8000)
    # Same seed, same samples.
    again = pipe.continue_audio(prompt, seconds=0.5, num_samples=3, prompt_sample_rate=SR, seed=1)
    assert np.array_equal(again[2], waves[2])


def test_generate_unconditional_length(pipe):
    waves = pipe.generate(0.45, num_samples=2, seed=0)
    assert [w.shape for w in waves] == [(1, 7200), (1, 7200)] and not np.allclose(waves[0], waves[1])


def test_continuation_keeps_prompt_codes(pipe):
    """The prompt's semantic ids and codes stay in place; only frames after it are sampled."""
    semantic, codes = pipe.tokenize_prompt(_prompt(0.4), SR)
    assert semantic.shape == (1, 20) and codes.shape == (1, 4, 20)
    sem = pipe._semantic_stage(semantic.expand(2, -1), 45, pipe_sampling(), torch.Generator().manual_seed(0),
                               False)
    assert sem.shape == (2, 45) and torch.equal(sem[:, :20], semantic.expand(2, -1))
    coarse = pipe._coarse_stage(sem, codes[:, :NUM_COARSE].expand(2, -1, -1), 45, pipe_sampling(),
                                torch.Generator().manual_seed(0), False)
    assert coarse.shape == (2, NUM_COARSE, 45) and torch.equal(coarse[:, :, :20], codes[:, :NUM_COARSE].expand(2, -1, -1))
    full = pipe._fine_stage(coarse, codes[:, NUM_COARSE:].expand(2, -1, -1), pipe_sampling(),
                            torch.Generator().manual_seed(0), False)
    assert full.shape == (2, 4, 45) and torch.equal(full[:, NUM_COARSE:, :20], codes[:, NUM_COARSE:].expand(2, -1, -1))
    assert int(full.max()) < 64 and int(full.min()) >= 0


def pipe_sampling(context: float = 0.5):
    from soundlm.pipeline import AudioLMSampling

    return AudioLMSampling(context=context)


def test_context_fraction_sets_the_kept_frames(pipe):
    from soundlm.pipeline import AudioLMSampling

    assert [pipe_sampling(c).keep(w) for c, w in [(0.5, 225), (0.5, 100), (0.9, 100), (0.01, 8), (0.99, 8)]] == \
        [112, 50, 90, 1, 7]
    for bad in (0.0, 1.0, -0.2, float("nan")):
        with pytest.raises(ValueError, match="context must be a fraction"):
            AudioLMSampling(context=bad)
    # More context means more, shorter windows; the prompt stays and the length is exact either way.
    prompt = _prompt()
    short = pipe.continue_audio(prompt, 0.5, prompt_sample_rate=SR, seed=3, sampling=pipe_sampling(0.2))[0]
    long = pipe.continue_audio(prompt, 0.5, prompt_sample_rate=SR, seed=3, sampling=pipe_sampling(0.9))[0]
    assert short.shape == long.shape and not np.allclose(short, long)


def test_mismatched_stage_is_refused(parts):
    with pytest.raises(ValueError, match="coarse stage was asked for"):
        AudioLMPipeline.from_runs(parts["semantic"], parts["semantic"], parts["fine"], device="cpu")


def test_cli_continue_and_generate_with_bundle(pipe, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    bundle = pipe.save_bundle(tmp_path / "bundle")
    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, _prompt(0.3), SR)
    runner = CliRunner()
    res = runner.invoke(app, ["continue", str(prompt), "--seconds", "0.2", "--num-samples", "2", "--out",
                              str(tmp_path / "out"), "--model", str(bundle)])
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "out").glob("*.wav"))
    assert [f.name for f in files] == ["continuation_000.wav", "continuation_001.wav"]
    data, sr = sf.read(files[0])
    assert sr == SR and len(data) == (len(_prompt(0.3)) // 320) * 320 + 3200
    res = runner.invoke(app, ["generate", "--seconds", "0.2", "--out", str(tmp_path / "gen"), "--model", str(bundle)])
    assert res.exit_code == 0, res.output
    assert sf.info(tmp_path / "gen" / "sample_000.wav").frames == 3200
    res = runner.invoke(app, ["generate", "--seconds", "0.2", "--out", str(tmp_path / "gen2"), "--model", str(bundle),
                              "--context", "0.8"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["continue", str(prompt), "--seconds", "0.2", "--out", str(tmp_path / "bad"),
                              "--context", "1.5", "--model", str(bundle)])
    assert res.exit_code == 2 and "context must be a fraction" in res.output and not (tmp_path / "bad").exists()
    res = runner.invoke(app, ["continue", str(prompt), "--seconds", "0.2", "--out", str(tmp_path / "bad"),
                              "--first-window", "-1", "--model", str(bundle)])
    assert res.exit_code == 2 and "first_window must be a positive number of seconds" in res.output
    res = runner.invoke(app, ["generate", "--seconds", "0.2", "--out", str(tmp_path / "bad"), "--first-window", "0.3",
                              "--stream", "--model", str(bundle)])
    assert res.exit_code == 2 and "use --first-window above 0.32" in res.output and not (tmp_path / "bad").exists()
    # --first-window 0: whole first windows, the API's first_window=None.
    from soundlm.pipeline import AudioLMSampling

    res = runner.invoke(app, ["generate", "--seconds", "0.2", "--out", str(tmp_path / "whole"), "--model", str(bundle),
                              "--first-window", "0", "--quantize", "none"])
    assert res.exit_code == 0, res.output
    written, _ = sf.read(tmp_path / "whole" / "sample_000.wav", dtype="float32")
    want = pipe.generate(0.2, sampling=AudioLMSampling(first_window=None))[0][0]
    assert np.abs(written - want).max() <= 1 / 32768


def test_cli_stream_writes_the_non_streamed_audio(pipe, tmp_path):
    """--stream: the same samples as without (PCM16 files, so up to one step of rounding), no part file left."""
    from typer.testing import CliRunner

    from soundlm.cli import app

    bundle = pipe.save_bundle(tmp_path / "bundle")
    prompt = tmp_path / "prompt.wav"
    sf.write(prompt, _prompt(0.3), SR)
    runner = CliRunner()
    for cmd, count in ((["continue", str(prompt), "--num-samples", "2"], 2), (["generate"], 1)):
        outs = {}
        for mode in ("--no-stream", "--stream"):
            outs[mode] = tmp_path / f"{cmd[0]}{mode}"
            res = runner.invoke(app, [*cmd, "--seconds", "0.3", "--seed", "5", "--out", str(outs[mode]),
                                      "--model", str(bundle), mode])
            assert res.exit_code == 0, res.output
        assert "time to first audio" in res.output
        names = sorted(p.name for p in outs["--stream"].iterdir())
        assert names == sorted(p.name for p in outs["--no-stream"].iterdir()) and len(names) == count
        for name in names:
            streamed, rate = sf.read(outs["--stream"] / name, dtype="float32")
            whole, _ = sf.read(outs["--no-stream"] / name, dtype="float32")
            assert rate == SR and streamed.shape == whole.shape
            assert np.abs(streamed - whole).max() <= 1 / 32768


def test_cli_bad_prompt_is_one_line_error(parts, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app

    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"this is not audio")
    res = CliRunner().invoke(app, ["continue", str(bad), "--seconds", "1", "--out", str(tmp_path / "o"),
                                   "--semantic-run", str(parts["semantic"]), "--coarse-run", str(parts["coarse"]),
                                   "--fine-run", str(parts["fine"])])
    assert res.exit_code != 0
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and str(bad) in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "o").exists()


def test_end_to_end_tokenize_train_continue(parts, tmp_path):
    """Store from `soundlm tokenize`, three tiny trained stages, tokenizers found through the store manifest."""
    from soundlm.tokenize import TokenizeConfig, tokenize_corpus
    from soundlm.train.lm import LMTrainConfig, train_lm

    audio = tmp_path / "audio"
    audio.mkdir()
    for i in range(4):
        sf.write(audio / f"tone{i}.wav", _prompt(0.5 + 0.1 * i) * (0.5 + 0.1 * i), SR)
    store = tmp_path / "store"
    tokenize_corpus(TokenizeConfig(source=str(audio), out=str(store), semantic=str(parts["root"] / "semantic_tokenizer"),
                                   codec=str(parts["root"] / "codec"), batch_size=4, workers=0, device="cpu"),
                    progress=False)
    runs = {}
    for stage in ("semantic", "coarse", "fine"):
        runs[stage] = tmp_path / stage
        train_lm(LMTrainConfig(store=str(store), out=str(runs[stage]), stage=stage, steps=2, batch_size=2,
                               window_seconds=WINDOWS[stage], coarse_codebooks=NUM_COARSE, heldout_fraction=0.0,
                               progress=False))
    pipe = AudioLMPipeline.from_runs(runs["semantic"], runs["coarse"], runs["fine"], device="cpu")
    waves = pipe.continue_audio(audio / "tone0.wav", seconds=0.3, num_samples=2)
    assert [w.shape for w in waves] == [(1, 8000 + 4800)] * 2


def _delayed_pipe(parts, tmp_path) -> AudioLMPipeline:
    """The tiny pipeline with coarse and fine stages of the delay pattern (random DelayLMs)."""
    from soundlm.codec import load_codec
    from soundlm.lm.model import DelayLM, DelayLMConfig, lm_tiny
    from soundlm.semantic.tokenizer import KMeansTokenizer
    from soundlm.stages import StageMeta, stage_layout, write_stage_files
    from soundlm.store import StoreManifest

    codec = load_codec(parts["root"] / "codec", device="cpu")
    sem = KMeansTokenizer.load(parts["root"] / "semantic_tokenizer")
    k, card = codec.total_codebooks, codec.codebook_size
    tokenizers = StoreManifest.for_tokenizers(sem, codec, semantic_spec=str(parts["root"] / "semantic_tokenizer"),
                                              acoustic_spec=str(parts["root"] / "codec"))
    folders = {}
    for stage, own, prefix_vocab in (("coarse", NUM_COARSE, 16), ("fine", k - NUM_COARSE, NUM_COARSE * card)):
        model = DelayLM(DelayLMConfig(num_codebooks=own, codebook_size=card, backbone=lm_tiny(1, max_positions=128),
                                      prefix_vocab_size=prefix_vocab))
        folders[stage] = tmp_path / stage
        folders[stage].mkdir()
        meta = StageMeta(stage, WINDOWS[stage], NUM_COARSE, k, 50.0, codec.frame_rate, pattern="delay",
                         tokenizers=tokenizers)
        write_stage_files(model, folders[stage], meta, stage_layout(stage, 16, card, k, NUM_COARSE))
    return AudioLMPipeline.from_runs(parts["semantic"], folders["coarse"], folders["fine"], device="cpu")


def test_delay_pattern_stages(parts, tmp_path):
    """Coarse and fine stages trained with the delay pattern decode window by window too."""
    pipe = _delayed_pipe(parts, tmp_path)
    waves = pipe.continue_audio(_prompt(0.3), seconds=0.4, num_samples=2, prompt_sample_rate=SR)
    assert [w.shape for w in waves] == [(1, 4800 + 6400)] * 2 and not np.allclose(waves[0], waves[1])


def test_prompt_tokens_are_the_tokenize_jobs_tokens(parts, pipe, tmp_path):
    """One audio -> tokens path: a 22.05 kHz prompt gets the tokens `soundlm tokenize` stores for it."""
    from soundlm.store import TokenStore
    from soundlm.tokenize import TokenizeConfig, tokenize_corpus

    (tmp_path / "corpus").mkdir()
    t = np.arange(int(0.4 * 22050)) / 22050  # 20 frames of the 50 Hz codec exactly
    sf.write(tmp_path / "corpus" / "p.wav", (0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(9 * t))), 22050)
    cfg = TokenizeConfig(source=str(tmp_path / "corpus"), out=str(tmp_path / "store"),
                         semantic=str(parts["root"] / "semantic_tokenizer"), codec=str(parts["root"] / "codec"),
                         workers=0)
    tokenize_corpus(cfg, progress=False)
    record = next(TokenStore(tmp_path / "store").records())
    semantic, codes = pipe.tokenize_prompt(tmp_path / "corpus" / "p.wav")
    assert codes.shape[2] == 20 and np.array_equal(codes[0].numpy(), record.acoustic)
    assert np.array_equal(semantic[0].numpy(), record.semantic[: semantic.shape[1]])


def _joined(chunks) -> np.ndarray:
    """Stream chunks -> [B, C, S], checking that each starts where the previous one ended."""
    at = chunks[0].start
    for c in chunks:
        assert c.start == at and c.audio.shape[-1] > 0
        at += c.audio.shape[-1]
    return np.concatenate([c.audio for c in chunks], axis=-1)


@pytest.mark.parametrize("include_prompt", [True, False])
def test_streamed_chunks_equal_the_non_streamed_continuation(pipe, include_prompt):
    """Same codes (each stage draws from its own generator, so interleaving the stages changes no draw);
    the codec decodes each chunk with 0.32 s of codes on both sides, more than the tiny causal codec
    reaches (7.5 frames back), so chunks differ from the one-piece decoding by float rounding only."""
    prompt = _prompt()
    kwargs = dict(seconds=0.9, num_samples=2, prompt_sample_rate=SR, seed=4, include_prompt=include_prompt)
    whole = np.stack(pipe.continue_audio(prompt, **kwargs))  # [B, C, S]
    chunks = list(pipe.stream_continue(prompt, **kwargs))
    assert len(chunks) >= 3  # the windows of every stage are far shorter than the 0.9 s asked for
    streamed = _joined(chunks)
    assert streamed.shape == whole.shape
    assert np.abs(streamed - whole).max() < 1e-5
    hop = SR // 50
    assert chunks[0].start == (0 if include_prompt else (len(prompt) // hop) * hop)


def test_stream_yields_before_the_last_window_and_generate_streams(pipe, monkeypatch):
    import importlib

    # The module, not the function `soundlm.lm.generate` that the package exports under the same name.
    gen_module = importlib.import_module("soundlm.lm.generate")
    calls = []
    real = gen_module.generate
    monkeypatch.setattr(gen_module, "generate", lambda *a, **k: calls.append(1) or real(*a, **k))
    stream = pipe.stream_continue(_prompt(), seconds=0.9, prompt_sample_rate=SR, seed=1, include_prompt=False)
    next(stream)
    before_first = len(calls)
    list(stream)
    assert before_first < len(calls) / 2  # the first audio came after a small part of the decoding
    whole = np.stack(pipe.generate(0.5, num_samples=2, seed=2))
    streamed = _joined(list(pipe.stream_generate(0.5, num_samples=2, seed=2)))
    assert streamed.shape == whole.shape and np.abs(streamed - whole).max() < 1e-5


@pytest.mark.parametrize("include_prompt", [True, False])
def test_streamed_chunks_equal_the_non_streamed_continuation_with_a_short_first_window(pipe, include_prompt):
    """A first window of 3 frames, shorter than the semantic (7) and coarse (4) stages' first windows, is
    planned alike streamed and not, so the chunks still join into the non-streamed output."""
    from soundlm.pipeline import AudioLMSampling

    kwargs = dict(seconds=0.9, num_samples=2, prompt_sample_rate=SR, seed=4, include_prompt=include_prompt)
    short = AudioLMSampling(first_window=0.06)
    whole = np.stack(pipe.continue_audio(_prompt(), sampling=short, **kwargs))  # [B, C, S]
    streamed = _joined(list(pipe.stream_continue(_prompt(), sampling=short, **kwargs)))
    assert streamed.shape == whole.shape and np.abs(streamed - whole).max() < 1e-5
    # The setting is in effect: whole first windows draw other codes.
    whole_windows = np.stack(pipe.continue_audio(_prompt(), sampling=AudioLMSampling(first_window=None), **kwargs))
    assert not np.allclose(whole, whole_windows)


def test_first_chunk_comes_after_the_first_window_of_each_stage(pipe, monkeypatch):
    """Semantic, coarse and fine first windows of F frames each: F * (1 + K) decoding steps (K codebooks, the
    semantic and acoustic rates equal) before the first chunk, once F frames outreach the decoding context."""
    from soundlm.pipeline import AudioLMSampling

    kwargs = dict(seconds=0.9, seed=1, decode_context=0.04)  # 2 frames of codec context
    first = AudioLMSampling(first_window=0.06)  # 3 frames
    steps = steps_before_first_chunk(pipe, monkeypatch, sampling=first, **kwargs)
    assert steps == 3 * (1 + pipe.num_codebooks)
    # Whole first windows (7 semantic, 4 coarse frames) take longer.
    assert steps_before_first_chunk(pipe, monkeypatch, sampling=AudioLMSampling(first_window=None), **kwargs) > steps
    assert steps_before_first_chunk(pipe, monkeypatch, "generate", sampling=first, **kwargs) == steps


def test_stage_generators_are_separate_and_seeded():
    from soundlm.pipeline import stage_generators

    a, b = stage_generators(0), stage_generators(0)
    draws = [torch.rand(3, generator=g) for g in a]
    assert all(torch.equal(x, torch.rand(3, generator=g)) for x, g in zip(draws, b))
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    assert not torch.equal(draws[0], torch.rand(3, generator=stage_generators(1)[0]))


def test_shipped_codec_decodes_chunks_exactly_with_the_default_context():
    """The shipped iSTFT codec's decoder reaches about 14 frames each way, inside the default
    decode_context (0.32 s = 16 frames): a window decoded with that margin equals the whole decoding."""
    from soundlm.codec import load_codec
    from soundlm.pretrained import default_model_dir

    codec = load_codec(default_model_dir() / "codec", device="cpu").eval()
    codes = torch.randint(0, codec.codebook_size, (1, codec.num_codebooks, 100), generator=torch.Generator().manual_seed(0))
    hop = 320
    with torch.inference_mode():
        whole = codec.decode(codes)
        window = codec.decode(codes[:, :, 30:80])  # frames 46..64 have 16 frames of codes on both sides
        moved = codes.clone()
        moved[:, :, 50] = (moved[:, :, 50] + 1) % codec.codebook_size
        changed = (codec.decode(moved) - whole).abs()[0, 0] > 0
    assert torch.allclose(window[..., 16 * hop: 34 * hop], whole[..., 46 * hop: 64 * hop], atol=1e-6)
    reach = changed.nonzero().squeeze(-1)
    assert 50 - reach.min() / hop <= 16 and reach.max() / hop - 51 <= 16


def test_cli_quantize_option(pipe, tmp_path):
    from typer.testing import CliRunner

    from soundlm.cli import app
    from soundlm.pipeline import AudioLMPipeline

    bundle = pipe.save_bundle(tmp_path / "bundle")
    runner = CliRunner()
    for mode in ("int8", "bf16", "none"):
        res = runner.invoke(app, ["generate", "--seconds", "0.2", "--out", str(tmp_path / mode), "--model", str(bundle),
                                  "--quantize", mode])
        assert res.exit_code == 0, res.output
        assert sf.info(tmp_path / mode / "sample_000.wav").frames == 3200
    res = runner.invoke(app, ["generate", "--seconds", "0.2", "--out", str(tmp_path / "bad"), "--model", str(bundle),
                              "--quantize", "int4"])
    assert res.exit_code == 2 and "--quantize must be auto or one of none, bf16, int8" in res.output
    # auto: int8 on CPU; a quantized pipeline is not converted to another mode.
    loaded = AudioLMPipeline.from_bundle(bundle, device="cpu").quantize("auto")
    assert loaded.quantized == "int8"
    with pytest.raises(ValueError, match="already runs int8"):
        loaded.quantize("bf16")


def _decoded_codes(pipe, monkeypatch) -> list[torch.Tensor]:
    """Record the codes [n, K, T] every codec decode call gets (the tokens a request ends with)."""
    seen, decode = [], pipe.codec.decode

    def recording(codes):
        seen.append(codes.clone())
        return decode(codes)

    monkeypatch.setattr(pipe.codec, "decode", recording)
    return seen


def _batch_equals_alone(pipe, monkeypatch, sampling=None) -> None:
    from soundlm.pipeline import BatchRequest

    short, long = _prompt(0.23), 0.8 * _prompt(0.45)[::-1].copy()
    requests = [BatchRequest(0.3, prompt=short, prompt_sample_rate=SR, num_samples=2, seed=3),
                BatchRequest(0.3, prompt=long, prompt_sample_rate=SR, seed=8),
                BatchRequest(0.3, prompt=long, prompt_sample_rate=SR, seed=8, acoustic_prompt=False),
                BatchRequest(0.25, seed=5)]
    seen = _decoded_codes(pipe, monkeypatch)
    batched = pipe.generate_batch(requests, sampling=sampling)
    batched_codes = list(seen)
    seen.clear()
    alone = [pipe.continue_audio(r.prompt, r.seconds, num_samples=r.num_samples, seed=r.seed, sampling=sampling,
                                 prompt_sample_rate=SR, acoustic_prompt=r.acoustic_prompt)
             if r.prompt is not None else pipe.generate(r.seconds, r.num_samples, sampling=sampling, seed=r.seed)
             for r in requests]
    assert len(batched_codes) == len(seen) == len(requests)
    for got, want in zip(batched_codes, seen):
        assert got.shape == want.shape and torch.equal(got, want)
    for got, want in zip(batched, alone):
        assert len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))
    # The prompts' lengths differ, so the batch was left-padded, and the seeds drew different samples.
    assert batched_codes[0].shape[2] != batched_codes[1].shape[2]
    assert not torch.equal(batched_codes[0][0], batched_codes[0][1])


@pytest.mark.parametrize("first_window", [0.5, 0.06])
def test_generate_batch_gives_each_request_the_tokens_it_gets_alone(pipe, monkeypatch, first_window):
    from soundlm.pipeline import AudioLMSampling

    _batch_equals_alone(pipe, monkeypatch, AudioLMSampling(first_window=first_window))


def test_generate_batch_shares_generation_calls(pipe, monkeypatch):
    """Mixed prompts ride in the same decoding calls: fewer calls than the requests alone make."""
    import importlib

    from soundlm.pipeline import BatchRequest

    gen = importlib.import_module("soundlm.lm.generate")  # the module (soundlm.lm re-exports the function)
    calls, generate = [], gen.generate

    def counting(model, prompt, *args, **kwargs):
        calls.append(prompt.shape[0])
        return generate(model, prompt, *args, **kwargs)

    monkeypatch.setattr(gen, "generate", counting)
    requests = [BatchRequest(0.2, prompt=_prompt(0.23), prompt_sample_rate=SR, seed=1),
                BatchRequest(0.2, prompt=_prompt(0.41), prompt_sample_rate=SR, seed=2)]
    pipe.generate_batch(requests)
    batched = list(calls)
    calls.clear()
    for r in requests:
        pipe.continue_audio(r.prompt, r.seconds, seed=r.seed, prompt_sample_rate=SR)
    assert max(batched) == 2 and len(batched) < len(calls)


def test_generate_batch_with_delay_pattern_stages(parts, tmp_path, monkeypatch):
    """Delay-pattern stages have no left padding: requests still get their own tokens (equal shapes batch)."""
    delayed = _delayed_pipe(parts, tmp_path)
    _batch_equals_alone(delayed, monkeypatch)


def test_acoustic_codes_from_semantic_ids_keep_the_prompt_and_repeat_with_the_seed(pipe):
    """AudioLM's acoustic generation alone: given semantic ids, every frame's codes; a prompt's codes stay."""
    semantic, codes = pipe.tokenize_prompt(_prompt(0.4), SR)  # [1, 20], [1, 4, 20]

    def run(prompt_frames: int, seed: int) -> torch.Tensor:
        return pipe.acoustic_codes(semantic, codes[:, :, :prompt_frames], 20, pipe_sampling(),
                                   torch.Generator().manual_seed(seed))

    fresh = run(0, 0)
    assert fresh.shape == (1, 4, 20) and int(fresh.min()) >= 0 and int(fresh.max()) < 64
    assert torch.equal(run(0, 0), fresh) and not torch.equal(run(0, 1), fresh)
    prompted = run(8, 0)
    assert prompted.shape == (1, 4, 20) and torch.equal(prompted[:, :, :8], codes[:, :, :8])
