import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soundlm.codec import SoundStreamCodec, codec_16k_tiny, load_codec
from soundlm.semantic.features import MFCCFeatures
from soundlm.semantic.tokenizer import KMeansTokenizer
from soundlm.store import ERRORS_NAME, TokenStore, list_parts
from soundlm.audio_tokenizer import AudioSpec
from soundlm.tokenize import LoadSpec, TokenizeConfig, job_files, load_for_tokenizers, select_shard, tokenize_corpus


def _tokenizers(root: Path) -> tuple[Path, Path]:
    """A tiny random semantic tokenizer (MFCC + k-means) and codec, saved as folders."""
    sem_dir, codec_dir = root / "semantic", root / "codec"
    # Centroids drawn from real feature frames, so files map to many different ids.
    mfcc = MFCCFeatures()
    waves = torch.from_numpy(np.stack([_tone(0.5, 16000, f, i) for i, f in enumerate((150, 400, 900, 2000))]))
    frames = mfcc(waves[:, None]).reshape(-1, mfcc.dim)  # [4 * T, 39]
    centroids = frames[torch.randperm(frames.shape[0], generator=torch.Generator().manual_seed(0))[:16]]
    KMeansTokenizer(mfcc, centroids).save(sem_dir)
    codec = SoundStreamCodec(codec_16k_tiny())
    # One training pass initialises the codebooks from data (k-means), as the first step of training does.
    codec.train()
    codec(waves[:, None])
    codec.eval()
    codec.save_pretrained(codec_dir)
    return sem_dir, codec_dir


def _tone(seconds: float, sr: int, freq: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def _corpus(root: Path, n: int = 7) -> Path:
    """n good files of different lengths and rates (one stereo), in two speaker folders."""
    audio = root / "audio"
    for i in range(n):
        sr = 22050 if i % 3 == 1 else 16000
        x = _tone(0.25 + 0.11 * i, sr, 200 + 37 * i, i)
        if i == 2:
            x = np.stack([x, 0.5 * x], axis=1)  # stereo
        (audio / f"spk{i % 2}").mkdir(parents=True, exist_ok=True)
        sf.write(audio / f"spk{i % 2}" / f"utt{i:02d}.wav", x, sr)
    return audio


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return _tokenizers(root)


def _cfg(src: Path, out: Path, models, **kw) -> TokenizeConfig:
    sem_dir, codec_dir = models
    base = dict(source=str(src), out=str(out), semantic=str(sem_dir), codec=str(codec_dir), batch_size=4,
                workers=0, part_size=3, device="cpu")
    base.update(kw)
    return TokenizeConfig(**base)


def _rows(store: Path) -> list[dict]:
    return TokenStore(store).to_table().to_pylist()


def test_store_contents_and_manifest(tmp_path, models):
    src = _corpus(tmp_path)
    summary = tokenize_corpus(_cfg(src, tmp_path / "store", models), progress=False)
    assert (summary.tokenized, summary.skipped, summary.parts_written) == (7, 0, 3)
    assert "tokenized 7 files, skipped 0" in summary.line()
    store = TokenStore(tmp_path / "store")
    m = store.manifest
    assert m.version == 1 and m.num_shards == 1 and m.shards["0"]["complete"]
    assert m.semantic_frame_rate == 50.0 and m.acoustic_frame_rate == 50.0
    assert m.acoustic_codebook_size == 64 and m.acoustic_num_codebooks == 4
    assert m.semantic["features"]["kind"] == "mfcc" and m.acoustic["backend"] == "soundlm"
    assert m.semantic_spec == str(models[0].resolve())
    codec = load_codec(str(models[1]), device="cpu")
    recs = list(store.records())
    assert [r.id for r in recs] == [f"spk{i % 2}/utt{i:02d}" for i in sorted(range(7), key=lambda i: (i % 2, i))]
    for r in recs:
        n_native = round(r.duration * r.sample_rate)
        n16 = round(n_native * 16000 / r.sample_rate)
        assert r.acoustic.shape == (4, codec.num_frames(n16))  # [K, T] cropped to the file's own length
        assert r.semantic.shape == (n16 // 320,)
        assert r.acoustic.max() < 64 and r.semantic.max() < 16
    # The comparisons in the other tests mean something only if tokens vary.
    assert len(np.unique(np.concatenate([r.semantic for r in recs]))) > 3
    assert len(np.unique(np.concatenate([r.acoustic[0] for r in recs]))) > 3
    stereo = next(r for r in recs if r.id == "spk0/utt02")
    assert stereo.sample_rate == 16000 and stereo.path == "spk0/utt02.wav"


def test_batched_equals_unbatched(tmp_path, models):
    src = _corpus(tmp_path)
    tokenize_corpus(_cfg(src, tmp_path / "b1", models, batch_size=1), progress=False)
    tokenize_corpus(_cfg(src, tmp_path / "b8", models, batch_size=8, part_size=7), progress=False)
    one, many = _rows(tmp_path / "b1"), _rows(tmp_path / "b8")
    assert [{k: v for k, v in r.items() if k != "acoustic"} for r in one] == \
        [{k: v for k, v in r.items() if k != "acoustic"} for r in many]
    # A batched convolution sums in another order than a single-item one (seen with one torch
    # thread), and the quantizer's argmin can flip where two codewords are almost equally near:
    # codes must agree up to such rare near-ties, never differ in shape.
    a = np.concatenate([np.asarray(r["acoustic"]) for r in one])
    b = np.concatenate([np.asarray(r["acoustic"]) for r in many])
    assert a.shape == b.shape and (a == b).mean() >= 0.99
    # And the job's tokens are those of each tokenizer run on the file alone.
    sem, codec = KMeansTokenizer.load(models[0], device="cpu"), load_codec(str(models[1]), device="cpu")
    spec = LoadSpec(AudioSpec(16000, 1, 16000), 0.1, None, None)
    path = next(src.rglob("utt05.wav"))
    prepared, _, _ = load_for_tokenizers(str(path), spec)
    row = next(r for r in one if r["id"] == "spk1/utt05")
    expected_codes = codec.encode(torch.from_numpy(prepared.codec)[None])[0]  # [K, T]
    assert np.array_equal(np.array(row["acoustic"]).reshape(row["acoustic_shape"]), expected_codes.numpy())
    assert np.array_equal(row["semantic"], sem.encode(torch.from_numpy(prepared.semantic)[None])[0].numpy())


def test_bad_files_are_skipped_and_logged(tmp_path, models):
    src = _corpus(tmp_path, n=4)
    (src / "random.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    (src / "empty.wav").write_bytes(b"")
    nan = _tone(0.5, 16000, 440, 0)
    nan[100:200] = np.nan
    sf.write(src / "nan.wav", nan, 16000, subtype="FLOAT")
    sf.write(src / "silent.wav", np.zeros(8000, np.float32), 16000)
    sf.write(src / "long.wav", _tone(2.5, 16000, 300, 1), 16000)
    summary = tokenize_corpus(_cfg(src, tmp_path / "store", models, max_seconds=2.0, workers=1), progress=False)
    # A file longer than --max-seconds is no longer skipped: it is cut into chunks (test_chunking.py).
    assert (summary.tokenized, summary.skipped) == (5, 4)
    assert "tokenized 5 files (1 long files cut into 2 chunks), skipped 4" in summary.line()
    errors = [json.loads(x) for x in (tmp_path / "store" / ERRORS_NAME).read_text().splitlines()]
    reasons = {e["path"]: e["reason"] for e in errors}
    assert sorted(reasons) == ["empty.wav", "nan.wav", "random.wav", "silent.wav"]
    assert "unreadable" in reasons["random.wav"] and "unreadable" in reasons["empty.wav"]
    assert "non-finite" in reasons["nan.wav"] and "silent" in reasons["silent.wav"]
    assert TokenStore(tmp_path / "store").read_errors() == errors
    assert len(TokenStore(tmp_path / "store")) == 4 + 2


def test_rerun_of_complete_store_does_nothing(tmp_path, models):
    src = _corpus(tmp_path)
    cfg = _cfg(src, tmp_path / "store", models)
    tokenize_corpus(cfg, progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*")}
    again = tokenize_corpus(cfg, progress=False)
    assert again.nothing_to_do and again.tokenized == 0 and again.parts_written == 0
    assert again.line().startswith("nothing to do")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*")} == before


def test_refuses_a_store_of_other_tokenizers(tmp_path, models):
    src = _corpus(tmp_path, n=3)
    tokenize_corpus(_cfg(src, tmp_path / "store", models), progress=False)
    other = SoundStreamCodec(codec_16k_tiny())
    other.set_num_codebooks(2)
    other.save_pretrained(tmp_path / "codec2")
    with pytest.raises(ValueError, match="different settings.*acoustic"):
        tokenize_corpus(_cfg(src, tmp_path / "store", models, codec=str(tmp_path / "codec2")), progress=False)
    with pytest.raises(ValueError, match="part_size"):
        tokenize_corpus(_cfg(src, tmp_path / "store", models, part_size=5), progress=False)


def test_shards_cover_all_files_disjointly(tmp_path, models):
    src = _corpus(tmp_path)
    files = job_files(src)
    picked = [select_shard(files, 3, i) for i in range(3)]
    ids = [f.id for shard in picked for f in shard]
    assert sorted(ids) == sorted(f.id for f in files) and len(set(ids)) == len(ids)
    store = tmp_path / "store"
    for i in range(3):
        tokenize_corpus(_cfg(src, store, models, num_shards=3, shard_index=i), progress=False)
    assert sorted(r["id"] for r in _rows(store)) == sorted(f.id for f in files)
    assert sorted(TokenStore(store).manifest.shards) == ["0", "1", "2"]
    assert all(p.name.split(".")[0].endswith("-of-00003") for p in list_parts(store))
    full = tmp_path / "full"
    tokenize_corpus(_cfg(src, full, models), progress=False)
    key = lambda r: r["id"]  # noqa: E731
    assert sorted(_rows(store), key=key) == sorted(_rows(full), key=key)
    with pytest.raises(ValueError, match="shard-index"):
        select_shard(files, 3, 3)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="no audio files found"):
        tokenize_corpus(_cfg(tmp_path / "nothing", tmp_path / "s2", models), progress=False)


def test_manifest_metadata_reaches_the_store(tmp_path, models):
    from soundlm.data import write_manifest

    src = _corpus(tmp_path, n=3)
    rows = [{"id": f"s{i}", "path": p.relative_to(src).as_posix(), "duration": 1.0, "sample_rate": 16000,
             "speaker": f"spk{i % 2}", "language": "en", "transcript": f"hello {i}", "split": "train"}
            for i, p in enumerate(sorted(src.rglob("*.wav")))]
    write_manifest(src / "manifest.jsonl", rows)
    tokenize_corpus(_cfg(src / "manifest.jsonl", tmp_path / "store", models), progress=False)
    got = {r.id: r for r in TokenStore(tmp_path / "store").records()}
    assert sorted(got) == ["s0", "s1", "s2"]
    assert got["s1"].transcript == "hello 1" and got["s1"].speaker == "spk1" and got["s1"].split == "train"
    assert got["s1"].path == rows[1]["path"]


_KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(int(os.environ["SOUNDLM_TEST_THREADS"]))
    import soundlm.tokenize as job
    from soundlm.store import write_part as real_write_part

    calls = []

    def write_part_then_die(store, shard, num, part, records, errors, acoustic_type):
        calls.append(part)
        if len(calls) == 2:
            # Die at the worst moment: the part's error file is written, a temp Parquet
            # file is half there, the Parquet file itself is not.
            from soundlm.store import ERRORS_DIR, part_name
            name = part_name(shard, num, part)
            (store / ERRORS_DIR).mkdir(exist_ok=True)
            (store / ERRORS_DIR / (name + ".jsonl")).write_text('{"path": "ghost.wav", "reason": "x"}\\n')
            (store / (".tmp-" + name + ".parquet.abc")).write_bytes(b"PAR1 half")
            os.kill(os.getpid(), signal.SIGKILL)
        return real_write_part(store, shard, num, part, records, errors, acoustic_type)

    job.write_part = write_part_then_die
    cfg = job.TokenizeConfig(source=sys.argv[1], out=sys.argv[2], semantic=sys.argv[3], codec=sys.argv[4],
                             batch_size=2, workers=1, part_size=3, device="cpu")
    job.tokenize_corpus(cfg, progress=False)
""")


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, models):
    src = _corpus(tmp_path)
    (src / "broken.wav").write_bytes(b"not audio")
    store = tmp_path / "store"
    # Same thread count and batch size in all three runs: float summation order, and with it a
    # near-tie codebook choice, may change with either (see test_batched_equals_unbatched).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SOUNDLM_TEST_THREADS": str(torch.get_num_threads())}
    log = tmp_path / "killed.log"
    with open(log, "wb") as f:  # a file, not a pipe: no waiting on the loader worker's copy of it
        proc = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(src), str(store), str(models[0]),
                               str(models[1])], env=env, stdout=f, stderr=f, timeout=120)
    assert proc.returncode == -signal.SIGKILL, log.read_text()[-2000:]
    assert len(list_parts(store)) == 1  # only the first part survived the kill

    resumed = tokenize_corpus(_cfg(src, store, models, workers=1, batch_size=2), progress=False)
    assert resumed.parts_before == 1 and resumed.parts_written == 2
    assert not list(store.glob(".tmp-*"))
    full = tmp_path / "full"
    tokenize_corpus(_cfg(src, full, models, workers=1, batch_size=2), progress=False)
    assert TokenStore(store).to_table().equals(TokenStore(full).to_table())
    assert (store / ERRORS_NAME).read_text() == (full / ERRORS_NAME).read_text()
    assert [e["path"] for e in TokenStore(store).read_errors()] == ["broken.wav"]


def test_cli_tokenize(tmp_path, models):
    from typer.testing import CliRunner

    from soundlm.cli import app

    src = _corpus(tmp_path, n=3)
    args = ["tokenize", str(src), "--out", str(tmp_path / "store"), "--semantic", str(models[0]),
            "--codec", str(models[1]), "--workers", "0", "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tokenized 3 files, skipped 0" in result.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "nothing to do" in again.output
    bad = CliRunner().invoke(app, args + ["--num-shards", "2", "--shard-index", "2"])
    assert bad.exit_code == 2 and "--shard-index must be in [0, 1]" in bad.output


def test_mulan_condition_ids_reach_the_store_and_condition_training(tmp_path, models):
    """`tokenize --mulan`: each file's condition ids (MuLan audio embedding of the whole file, every chunk of it
    alike) in the `condition` column; `train lm` then builds conditioned semantic/coarse stages, not fine."""
    from soundlm.audio import load_audio, resample
    from dataclasses import replace

    from soundlm.stages import Window, build_stage, load_stage
    from soundlm.store import StoreManifest
    from soundlm.train.lm import LMTrainConfig, train_lm
    from tiny_bundle import C, Q, StandInMuLan

    mulan = StandInMuLan()
    src = _corpus(tmp_path)
    # Files over 0.5 s are cut into chunks.
    cfg = _cfg(src, tmp_path / "store", models, max_seconds=0.5, chunker="fixed")
    summary = tokenize_corpus(cfg, progress=False, mulan=mulan)
    assert summary.chunked_files > 0
    store = TokenStore(tmp_path / "store")
    assert (store.manifest.condition_tokens, store.manifest.condition_codebook_size) == (Q, C)
    recs = list(store.records())
    for r in recs:
        path = src / r.path
        native = load_audio(path, sample_rate=None, mono=True)
        audio = resample(native, sf.info(path).samplerate, 16000).reshape(-1)
        want = mulan.condition_tokens(mulan.embed_audio(torch.from_numpy(audio)[None]))[0].numpy()
        assert r.condition.tolist() == want.tolist(), r.id
    chunks = [r for r in recs if r.parent is not None]
    assert len({r.parent for r in chunks}) < len(chunks)  # files of several chunks share their ids
    assert len({tuple(r.condition) for r in recs}) > 2
    # A rerun without --mulan would add parts without condition ids: refused.
    with pytest.raises(ValueError, match="condition_tokens"):
        tokenize_corpus(_cfg(src, tmp_path / "store", models, max_seconds=0.5, chunker="fixed"), progress=False)
    # A store without condition ids refuses a rerun that adds them.
    tokenize_corpus(_cfg(src, tmp_path / "plain", models), progress=False)
    assert StoreManifest.read(tmp_path / "plain").condition_tokens is None
    with pytest.raises(ValueError, match="condition_tokens"):
        tokenize_corpus(_cfg(src, tmp_path / "plain", models), progress=False, mulan=mulan)

    # `train lm` on it: a conditioned semantic stage, end to end.
    train_lm(LMTrainConfig(store=str(tmp_path / "store"), out=str(tmp_path / "runs" / "semantic"), stage="semantic",
                           steps=2, batch_size=2, warmup=0, ckpt_every=2, eval_every=2, window_seconds=0.2,
                           heldout_fraction=0.0, progress=False))
    trained = load_stage(tmp_path / "runs" / "semantic", "semantic")
    assert trained.meta.conditioned and trained.layout.condition_size == C and trained.meta.condition_tokens == Q
    manifest = store.manifest
    for stage, pattern in (("coarse", "flatten"), ("fine", "flatten"), ("coarse", "delay")):
        built = build_stage(stage, manifest, pattern=pattern, window_seconds=0.2)
        conditioned = stage != "fine"
        assert built.meta.conditioned == conditioned and (built.layout.condition_size == C) == conditioned
    # The delay pattern's coarse stage reads them at the front of its prefix.
    assert built.delayed and built.model.config.prefix_vocab_size == built.layout.semantic_size + C + 1
    example = built.example(replace(Window("r", 0.0, recs[0].semantic[:10], recs[0].acoustic[:, :10]),
                                    condition=recs[0].condition))
    assert example.prefix[:Q].tolist() == (recs[0].condition + built.layout.semantic_size).tolist()


def test_a_text_conditioning_mulan_stores_caption_tokens_and_skips_files_without_one(tmp_path, models):
    """`tokenize --mulan` with a MuLan whose condition ids are captions' tokens: each record gets its
    transcript's ids; a file without a transcript is skipped with the reason, the others are kept."""
    from soundlm.data import write_manifest
    from soundlm.music.mulan import MuLan, MuLanConfig, train_caption_tokenizer

    src = _corpus(tmp_path, n=4)
    captions = {0: "a calm piano piece in C major", 1: "organ chorale in G minor", 2: "", 3: "flute in D major"}
    rows = []
    for i, caption in captions.items():
        path = f"spk{i % 2}/utt{i:02d}.wav"
        info = sf.info(src / path)
        rows.append({"id": f"utt{i:02d}", "path": path, "duration": info.duration, "sample_rate": info.samplerate,
                     "speaker": f"spk{i % 2}", "language": None, "split": "train", "transcript": caption or None})
    write_manifest(src / "manifest.jsonl", rows)
    tok = train_caption_tokenizer([c for c in captions.values() if c], 64)
    mulan = MuLan(MuLanConfig(clip_seconds=1.0, n_mels=16, audio_channels=16, width=16, layers=1, heads=2,
                              embed_dim=8, vocab_size=tok.get_vocab_size()), tok).eval().condition_on_text(6)
    summary = tokenize_corpus(_cfg(src / "manifest.jsonl", tmp_path / "store", models), progress=False,
                              mulan=mulan)
    assert (summary.tokenized, summary.skipped) == (3, 1)
    store = TokenStore(tmp_path / "store")
    assert (store.manifest.condition_tokens, store.manifest.condition_codebook_size) == (6, tok.get_vocab_size())
    got = {r.id: r.condition.tolist() for r in store.records()}
    assert got == {f"utt{i:02d}": mulan.caption_condition([c])[0].tolist() for i, c in captions.items() if c}
    errors = [json.loads(line) for p in sorted((tmp_path / "store" / "errors").glob("*.jsonl"))
              for line in p.read_text().splitlines()]
    assert [e["path"] for e in errors] == ["spk0/utt02.wav"] and "no caption" in errors[0]["reason"]
