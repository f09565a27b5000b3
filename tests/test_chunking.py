"""Long files: cut at silences (energy detector, Silero VAD), else fixed windows whose overlapping
context is trimmed; `soundlm tokenize` stores the chunks as `ID#k` with offsets and the parent id."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundlm.chunking import ChunkSpan, plan_chunks, resolve_chunker, token_grid
from soundlm.store import TokenStore
from soundlm.tokenize import tokenize_corpus
from test_tokenize import _cfg, models  # noqa: F401 - the module-scoped tokenizer fixture

SR = 16_000


def bursts(seconds: float, gaps: list[float], sr: int = SR, gap_seconds: float = 0.3, seed: int = 0) -> np.ndarray:
    """Noisy harmonic sound with digital silence of `gap_seconds` starting at each time in `gaps`."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.sin(2 * np.pi * 660 * t) + 0.05 * rng.standard_normal(t.size)
    for g in gaps:
        x[int(g * sr): int((g + gap_seconds) * sr)] = 0.0
    return x.astype(np.float32)


def _check_cover(spans: list[ChunkSpan], total: int, longest: float, sr: int = SR) -> None:
    assert spans[0].start == 0 and spans[-1].end == total and spans[-1].cut == "end"
    for a, b in zip(spans, spans[1:]):
        assert a.end == b.start  # no gap, no overlap of the spans themselves
    assert [s.index for s in spans] == list(range(len(spans)))
    assert all(s.end - s.start <= longest * sr + 1 for s in spans)
    assert all(s.context_start <= s.start < s.end <= s.context_end for s in spans)


def test_token_grid_is_a_whole_number_of_frames_of_every_stream():
    assert token_grid([50.0, 50.0]) == pytest.approx(0.02)
    assert token_grid([25.0, 50.0]) == pytest.approx(0.04)
    assert token_grid([75.0, 50.0]) == pytest.approx(0.04)  # EnCodec 24 kHz with 50 Hz units
    assert token_grid([12.5, 50.0]) == pytest.approx(0.08)  # Mimi with 50 Hz units


def test_cuts_fall_in_silences():
    gaps = [1.5, 3.4, 5.1, 7.2, 8.6]
    x = bursts(10.0, gaps)
    spans = plan_chunks(x, SR, chunk_seconds=3.0, grid_seconds=0.02, chunker="energy")
    _check_cover(spans, len(x), 3.0)
    assert len(spans) >= 4 and all(s.cut == "silence" for s in spans[:-1])
    for s in spans[:-1]:
        cut = s.end / SR
        assert any(g < cut < g + 0.3 for g in gaps), cut  # inside a gap
        assert s.context_start == s.start and s.context_end == s.end  # no overlap needed at a pause
        assert (s.end / SR / 0.02) == pytest.approx(round(s.end / SR / 0.02))  # on the token grid


def test_without_silence_fixed_windows_with_overlap_trimmed():
    x = bursts(10.0, gaps=[])
    spans = plan_chunks(x, SR, chunk_seconds=3.0, grid_seconds=0.04, overlap_seconds=1.0, chunker="energy")
    _check_cover(spans, len(x), 3.0)
    assert [s.cut for s in spans] == ["window", "window", "window", "end"]
    assert [s.end - s.start for s in spans[:3]] == [3 * SR] * 3  # as long as allowed
    inner = spans[1]
    assert inner.context_start == inner.start - SR and inner.context_end == inner.end + SR  # 1 s each side
    # Only the span's own frames are kept: 1 s of context = 50 frames at 50 Hz before it.
    assert inner.frames(SR, 50.0, available=250) == (50, 200)
    assert spans[-1].frames(SR, 50.0, available=77) == (50, 77)  # the last chunk keeps what there is
    # The last chunk is never a sliver: the cut before it leaves at least a quarter chunk.
    y = bursts(6.2, gaps=[])
    spans = plan_chunks(y, SR, chunk_seconds=3.0, grid_seconds=0.02, chunker="fixed")
    _check_cover(spans, len(y), 3.0)
    assert min(s.end - s.start for s in spans) >= 0.75 * SR


def test_short_audio_is_one_span_and_bad_settings_are_refused():
    x = bursts(2.0, gaps=[])
    assert plan_chunks(x, SR, 3.0, 0.02) == [ChunkSpan(0, 0, len(x), 0, len(x), "end")]
    with pytest.raises(ValueError, match="chunk_seconds > 0"):
        plan_chunks(x, SR, 0.0, 0.02)
    with pytest.raises(ValueError, match="--chunker must be one of"):
        resolve_chunker("vad")


def test_silero_cuts_in_the_pauses_between_sentences(tmp_path):
    pytest.importorskip("silero_vad", reason="silero-vad is in the test extra; without it `auto` uses energy")
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (`make test` installs it)")
    sentences = ["The quick brown fox jumps over the lazy dog.", "A long book has many chapters and pages.",
                 "Speech is cut where the speaker pauses.", "Nothing in this recording is thrown away.",
                 "The last sentence ends the file."]
    parts, pauses, pos = [], [], 0.0
    for i, text in enumerate(sentences):
        wav = tmp_path / f"s{i}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True, capture_output=True)
        audio, rate = sf.read(wav, dtype="float32")
        parts.append(audio)
        pos += len(audio) / rate
        if i < len(sentences) - 1:
            # Low noise, not digital silence: the VAD, not the energy floor, tells speech from pause.
            parts.append(0.003 * np.random.default_rng(i).standard_normal(int(0.6 * rate)).astype(np.float32))
            pauses.append((pos, pos + 0.6))
            pos += 0.6
    x = np.concatenate(parts)
    spans = plan_chunks(x, rate, chunk_seconds=5.0, grid_seconds=0.02, chunker="silero")
    _check_cover(spans, len(x), 5.0, rate)
    assert len(spans) >= 3 and all(s.cut == "silence" for s in spans[:-1])
    for s in spans[:-1]:
        cut = s.end / rate
        assert any(a - 0.05 < cut < b + 0.05 for a, b in pauses), (cut, pauses)


def _long_corpus(root: Path) -> Path:
    audio = root / "audio"
    audio.mkdir()
    sf.write(audio / "short.wav", bursts(0.8, gaps=[], seed=1), SR)
    sf.write(audio / "book.wav", bursts(5.3, gaps=[1.2, 2.9], seed=2), SR)  # cut at its pauses
    sf.write(audio / "drone.wav", bursts(4.7, gaps=[], seed=3), SR)  # no pause: windows with overlap
    return audio


def test_tokenize_stores_chunks_with_ids_offsets_and_parent(tmp_path, models):  # noqa: F811
    src = _long_corpus(tmp_path)
    summary = tokenize_corpus(_cfg(src, tmp_path / "store", models, max_seconds=2.0, chunker="energy"),
                              progress=False)
    assert summary.tokenized == 3 and summary.skipped == 0 and summary.chunked_files == 2
    assert "2 long files cut into" in summary.line()
    store = TokenStore(tmp_path / "store")
    assert store.manifest.chunker == "energy" and store.manifest.max_seconds == 2.0
    recs = {r.id: r for r in store.records()}
    assert recs["short"].parent is None and recs["short"].offset is None
    for parent, seconds in (("book", 5.3), ("drone", 4.7)):
        chunks = sorted((r for r in recs.values() if r.parent == parent), key=lambda r: r.offset)
        assert [r.id for r in chunks] == [f"{parent}#{k}" for k in range(len(chunks))] and len(chunks) >= 3
        assert all(r.path == f"{parent}.wav" and r.duration <= 2.0 + 1e-9 for r in chunks)
        assert chunks[0].offset == 0.0
        for a, b in zip(chunks, chunks[1:]):
            assert b.offset == pytest.approx(a.offset + a.duration)  # contiguous, no overlap
        assert sum(r.duration for r in chunks) == pytest.approx(seconds)
        for r in chunks:  # each chunk holds its own frames only (50 Hz streams)
            assert r.semantic.shape[0] == pytest.approx(r.duration * 50, abs=1)
            assert r.acoustic.shape == (4, pytest.approx(r.duration * 50, abs=1))
    table = store.to_table(columns=["id", "parent", "offset"]).to_pylist()
    assert {row["id"] for row in table} == set(recs)


def test_chunked_tokens_equal_the_whole_file_tokens(tmp_path, models):  # noqa: F811
    """Window cuts with overlap trimmed: the chunks' frames concatenated are the whole file's frames."""
    src = tmp_path / "audio"
    src.mkdir()
    sf.write(src / "drone.wav", bursts(7.1, gaps=[], seed=4), SR)
    tokenize_corpus(_cfg(src, tmp_path / "chunked", models, max_seconds=2.0, chunker="fixed"), progress=False)
    tokenize_corpus(_cfg(src, tmp_path / "whole", models, max_seconds=None), progress=False)
    whole = next(TokenStore(tmp_path / "whole").records())
    chunks = sorted(TokenStore(tmp_path / "chunked").records(), key=lambda r: r.offset)
    assert len(chunks) == 4 and whole.id == "drone"
    semantic = np.concatenate([r.semantic for r in chunks])
    acoustic = np.concatenate([r.acoustic for r in chunks], axis=1)
    assert semantic.shape == whole.semantic.shape and acoustic.shape == whole.acoustic.shape
    # The tiny codec is causal and MFCC deltas span a few frames, both well inside 1 s of context;
    # float sums in another order may flip a near-tie code, so codes must agree almost everywhere.
    assert (semantic == whole.semantic).mean() == 1.0
    assert (acoustic == whole.acoustic).mean() >= 0.99


def test_a_silent_chunk_is_skipped_alone(tmp_path, models):  # noqa: F811
    src = tmp_path / "audio"
    src.mkdir()
    x = bursts(6.0, gaps=[])
    # 2.6 s of digital silence: cut at 2.0 (a window), in it at 3.5 and at its end, 4.55 (pauses), so
    # chunk 2 is nothing but silence. (Silence inside a chunk with sound is kept: pauses are speech too.)
    x[int(2.0 * SR): int(4.6 * SR)] = 0.0
    sf.write(src / "gap.wav", x, SR)
    summary = tokenize_corpus(_cfg(src, tmp_path / "store", models, max_seconds=2.0, chunker="energy"),
                              progress=False)
    store = TokenStore(tmp_path / "store")
    errors = store.read_errors()
    assert summary.tokenized == 1 and summary.skipped == 0 and summary.skipped_chunks == len(errors) >= 1
    assert [e["path"] for e in errors] == ["gap.wav#2"] and "silent" in errors[0]["reason"]
    assert sorted(r.id for r in store.records()) == ["gap#0", "gap#1", "gap#3"]
    assert "skipped 0 and 1 chunks" in summary.line()


def test_cli_chunker_option(tmp_path, models):  # noqa: F811
    from typer.testing import CliRunner

    from soundlm.cli import app

    src = _long_corpus(tmp_path)
    args = ["tokenize", str(src), "--out", str(tmp_path / "store"), "--semantic", str(models[0]), "--codec",
            str(models[1]), "--workers", "0", "--device", "cpu", "--no-progress", "--max-seconds", "2"]
    bad = CliRunner().invoke(app, args + ["--chunker", "vad"])
    assert bad.exit_code == 2 and bad.output.startswith("error: --chunker must be one of")
    ok = CliRunner().invoke(app, args + ["--chunker", "energy"])
    assert ok.exit_code == 0, ok.output
    assert "tokenized 3 files (2 long files cut into" in ok.output
    other = CliRunner().invoke(app, args + ["--chunker", "fixed"])  # resuming with other chunking is refused
    assert other.exit_code == 2 and "chunker" in other.output


def test_resolving_the_chunker_keeps_torch_threads():
    """Importing silero_vad sets torch to one thread for the whole process; resolving `auto` must not."""
    pytest.importorskip("silero_vad")
    import sys

    code = ("import torch; torch.set_num_threads(2); from soundlm.chunking import resolve_chunker; "
            "print(resolve_chunker('auto'), torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["silero", "2"]
