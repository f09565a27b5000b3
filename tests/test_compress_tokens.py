"""Token mode: exact code round trips through the stage LMs, windowing, model checks, the CLI."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from soundlm.compress.container import read_container
from soundlm.compress.files import compress_files, decompress_files
from soundlm.compress.tokens import TokenCodec, TokenContent, bundle_hash, one_thread

tiny_bundle = pytest.importorskip("tiny_bundle", reason="tests/tiny_bundle.py (a random AudioLM bundle) missing")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return tiny_bundle.make_tiny_bundle(tmp_path_factory.mktemp("bundle"))


@pytest.fixture(scope="module")
def codec(bundle) -> TokenCodec:
    return TokenCodec.load(bundle)


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "tone.wav"
    # 1.3 s: several semantic, coarse and fine windows of the tiny bundle (0.5 / 0.3 / 0.2 s).
    sf.write(str(path), tiny_bundle.tone(1.3), tiny_bundle.SR, subtype="PCM_16")
    return path


def test_codes_round_trip_exactly_across_windows(codec, wav):
    content, length = codec.tokenize(wav)
    streams = codec.encode_content(content)
    back = codec.decode_content(content.codes.shape[1], streams)
    assert torch.equal(back.semantic, content.semantic) and torch.equal(back.codes, content.codes)
    assert length == int(1.3 * tiny_bundle.SR)


def test_streams_do_not_depend_on_the_callers_thread_count(codec, wav):
    content, _ = codec.tokenize(wav)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = codec.encode_content(content)
        torch.set_num_threads(2)
        two = codec.encode_content(content)
        back = codec.decode_content(content.codes.shape[1], one)
    finally:
        torch.set_num_threads(before)
    assert one == two and torch.equal(back.codes, content.codes)
    assert torch.get_num_threads() == before


def test_file_round_trip_gives_the_codec_decoding(codec, wav, tmp_path):
    done = compress_files([wav], tmp_path / "c", codec, progress=False)
    assert not done.failed
    header, streams = read_container(tmp_path / "c" / "tone.slmc")
    assert header.mode == "tokens" and header.model_hash == codec.hash and len(streams) == 4
    back = decompress_files([tmp_path / "c"], tmp_path / "d", codec, progress=False)
    assert not back.failed
    audio, sr = sf.read(str(tmp_path / "d" / "tone.wav"), dtype="float32")
    assert sr == tiny_bundle.SR and len(audio) == header.length
    content, _ = codec.tokenize(wav)
    with torch.inference_mode():
        expected = codec.pipe.codec.decode(content.codes[None])[0, 0, : header.length].numpy()
    assert np.abs(audio - np.clip(expected, -1, 1)).max() < 1e-4  # 16-bit rounding only


def test_another_bundle_refuses(codec, bundle, wav, tmp_path):
    from soundlm.lm.model import load_lm, save_lm

    other = tmp_path / "other"
    shutil.copytree(bundle, other)
    fine = load_lm(other / "fine")
    with torch.no_grad():
        for p in fine.parameters():
            p.add_(0.01)
    save_lm(fine, other / "fine")
    assert bundle_hash(other) != bundle_hash(bundle)
    compress_files([wav], tmp_path / "c", codec, progress=False)
    summary = decompress_files([tmp_path / "c"], tmp_path / "d", TokenCodec.load(other), progress=False)
    assert len(summary.failed) == 1 and "compressed by model" in summary.failed[0].error


def test_cli_tokens_mode_and_mode_mismatch(bundle, wav, tmp_path):
    from soundlm.cli import app

    runner = CliRunner()
    r = runner.invoke(app, ["compress", str(wav), "--out", str(tmp_path / "c"), "--mode", "tokens", "--model",
                            str(bundle), "--no-progress"])
    assert r.exit_code == 0, r.output
    # No --mode: decompress takes it from the file.
    r = runner.invoke(app, ["decompress", str(tmp_path / "c"), "--out", str(tmp_path / "d"), "--model", str(bundle),
                            "--no-progress"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "d" / "tone.wav").is_file()
    # A token-mode file given to a lossless model: skipped with the reason, exit code 1.
    from test_compress import random_model

    random_model().save(tmp_path / "m")
    r = runner.invoke(app, ["decompress", str(tmp_path / "c"), "--out", str(tmp_path / "e"), "--mode", "lossless",
                            "--model", str(tmp_path / "m"), "--no-progress"])
    assert r.exit_code == 1 and "written in tokens mode" in r.output


# ---- delay-pattern bundles: two-stage (coarse + fine DelayLMs) and one-stage (one DelayLM, no fine/) ----------
@pytest.fixture(scope="module", params=["delay", "delay1"])
def delayed(request, tmp_path_factory) -> TokenCodec:
    return TokenCodec.load(tiny_bundle.make_tiny_bundle(tmp_path_factory.mktemp(request.param),
                                                        pattern=request.param))


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "frame.wav"
    sf.write(str(path), tiny_bundle.tone(320 / tiny_bundle.SR), tiny_bundle.SR, subtype="PCM_16")  # one codec frame
    return path


def _file_round_trip(codec: TokenCodec, wav: Path, tmp_path: Path):
    """Compress to a .slmc file, read it back and decode: (tokenized content, streams, decoded content)."""
    from soundlm.compress.container import write_container

    header, streams = codec.compress(wav)
    write_container(tmp_path / "f.slmc", header, streams)
    header, streams = read_container(tmp_path / "f.slmc")
    content, _ = codec.tokenize(wav)
    back = codec.decode([(header, streams)])[0]
    assert codec.crc(header, back) == header.crc32
    return content, streams, back


def test_delay_bundles_round_trip_exactly_across_windows(delayed, wav, tmp_path):
    assert delayed.pipe.coarse.delayed and (delayed.pipe.fine is None or delayed.pipe.fine.delayed)
    content, streams, back = _file_round_trip(delayed, wav, tmp_path)
    # 1.3 s = 65 frames: several coarse (0.3 s) and fine (0.2 s) windows, each with its context.
    assert content.codes.shape == (4, 65) and content.codes.shape[1] > 0.3 * 50 * 2
    assert torch.equal(back.semantic, content.semantic) and torch.equal(back.codes, content.codes)
    one_stage = delayed.pipe.fine is None
    assert delayed.layouts == ("delay", "none" if one_stage else "delay")
    assert len(streams) == 4 and len(streams[2]) > 0 and (len(streams[3]) == 0) == one_stage
    symbols = delayed.stage_symbols(65, len(content.semantic))
    assert symbols["coarse"] + symbols["fine"] == content.codes.numel() and (symbols["fine"] == 0) == one_stage


def test_delay_bundles_round_trip_a_one_frame_file(delayed, short_wav, tmp_path):
    content, _, back = _file_round_trip(delayed, short_wav, tmp_path)
    assert content.codes.shape == (4, 1)
    assert torch.equal(back.semantic, content.semantic) and torch.equal(back.codes, content.codes)


def test_delay_coding_matches_generation_logits(delayed, wav):
    """The coded symbols are those generation would sample with a sampler that returns the true codes: feeding
    the model's own greedy picks through the coder gives back exactly what generate_delayed draws greedily."""
    from soundlm.lm.generate import generate_delayed
    from soundlm.sampler import SamplingParams
    from soundlm.compress.tokens import _code_delayed

    stage = delayed.pipe.coarse
    k = stage.model.config.num_codebooks
    prefix = torch.randint(0, delayed.pipe.semantic.layout.semantic_size, (1, 15))
    context = torch.randint(0, stage.layout.codebook_size, (1, k, 3))
    with torch.inference_mode():
        greedy = generate_delayed(stage.model, context, 6, SamplingParams(temperature=0.0), prefix=prefix)[:, :, 3:]
        coded = _code_delayed(stage.model, context, 6, prefix, lambda freqs, s: int(np.argmax(freqs)), None)
    assert torch.equal(coded, greedy)


def test_delay_file_refused_by_another_model_and_by_a_flatten_model(delayed, codec, wav, tmp_path):
    from soundlm.lm.model import load_lm
    from soundlm.stages import write_stage_files

    folder = tmp_path / "other"
    bundle = Path(delayed.pipe.coarse.folder).parent
    shutil.copytree(bundle, folder)
    coarse = load_lm(folder / "coarse")
    with torch.no_grad():
        for p in coarse.parameters():
            p.add_(0.01)
    stage = delayed.pipe.coarse
    write_stage_files(coarse, folder / "coarse", stage.meta, stage.layout)
    assert bundle_hash(folder) != delayed.hash
    compress_files([wav], tmp_path / "c", delayed, progress=False)
    summary = decompress_files([tmp_path / "c"], tmp_path / "d", TokenCodec.load(folder), progress=False)
    assert len(summary.failed) == 1 and "compressed by model" in summary.failed[0].error
    # Past the hash check, the streams' recorded layout still refuses a model whose stages differ.
    header, streams = read_container(tmp_path / "c" / "tone.slmc")
    with pytest.raises(ValueError, match="decompress it with the model that wrote it"):
        codec.decode_content(header.segment, streams)


def test_files_written_before_the_layout_byte_decode_as_flatten(codec, wav):
    content, _ = codec.tokenize(wav)
    streams = codec.encode_content(content)
    legacy = [streams[0][:4]] + streams[1:]  # the old info stream: the semantic length alone
    back = codec.decode_content(content.codes.shape[1], legacy)
    assert torch.equal(back.codes, content.codes) and torch.equal(back.semantic, content.semantic)


def _greedy_walk(tc: TokenCodec) -> dict[str, tuple[list, list]]:
    """Greedy generation's own tokens, walked as a file: every token must be the most likely one under the
    distribution the coder uses. Returns each stage's logits of every model step, (generation's, the walk's)."""
    from soundlm.pipeline import AudioLMSampling, BatchRequest
    from soundlm.sampler import SamplingParams

    logs: dict[str, list] = {}

    def record() -> None:
        logs.clear()
        for stage in tc.pipe.stages:
            log = logs.setdefault(stage.name, [])

            def step(*args, _orig=type(stage.model).step.__get__(stage.model), _log=log, **kwargs):
                out = _orig(*args, **kwargs)
                _log.append(out.clone())
                return out
            stage.model.step = step

    greedy = SamplingParams(temperature=0.0)
    try:
        record()
        with one_thread():  # as the coder runs
            made = tc.pipe.generate_batch_tokens([BatchRequest(seconds=0.7)],
                                                 AudioLMSampling(semantic=greedy, coarse=greedy, fine=greedy))[0]
        generated = dict(logs)
        truth = TokenContent(semantic=made.semantic[0], codes=made.codes[0])
        assert truth.codes.shape[1] > 0.3 * 50 * 2  # 35 frames: several coarse (15) and fine (10) windows

        def step(freqs: np.ndarray, symbol: int | None) -> int:
            assert freqs[symbol] == freqs.max()
            return symbol

        record()
        with one_thread(), torch.inference_mode():
            back = tc.walk(dict.fromkeys(("semantic", "coarse", "fine"), step), truth.codes.shape[1],
                           len(truth.semantic), truth=truth)
        walked = dict(logs)
    finally:
        for stage in tc.pipe.stages:
            stage.model.__dict__.pop("step", None)
    assert torch.equal(back.codes, truth.codes) and torch.equal(back.semantic, truth.semantic)
    return {name: (generated[name], walked[name]) for name in generated}


def test_walk_of_delay_stages_runs_generations_model_steps(delayed):
    """The coder runs the very model steps greedy generation ran (inputs, windows, prefixes, cache), logits equal."""
    for name, (generated, walked) in _greedy_walk(delayed).items():
        if name == "semantic":
            continue
        assert len(walked) == len(generated) > 0
        assert all(torch.equal(g, w) for g, w in zip(generated, walked)), name


def test_flatten_walk_sees_the_logits_generation_samples_from(codec):
    # Flattened generation projects only the allowed rows of the head, so its logits are not compared value for
    # value here; each greedy token must still be the coder's most likely one.
    _greedy_walk(codec)
