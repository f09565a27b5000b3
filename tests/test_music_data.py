"""`soundlm data music`: attributes, captions, held-out pieces and pairs, determinism, resume,
skipped pieces; the analysers and the instrument classifier on a few rendered clips."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundlm.data import read_manifest
from soundlm.data.music import (_INSTRUMENT_WORDS, INSTRUMENTS, MusicAttributes, PieceTask, heldout_pairs, key_name,
                                make_caption, make_music_corpus, plan_pieces, read_music_corpus, render_clips)

pytestmark = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not Path("/usr/share/sounds/sf2").is_dir(),
    reason="fluidsynth or its soundfont not installed (apt-get install fluidsynth fluid-soundfont-gm)")

# 3 pieces (bach, beethoven, haydn) x 2 clips of 6 s; one piece held out.
ARGS = dict(clips=6, clips_per_piece=2, max_seconds=6.0, heldout_fraction=0.34, seed=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("music")
    make_music_corpus(out, workers=2, **ARGS)
    return out


def test_rows_hold_audio_attributes_and_captions(corpus):
    rows = read_manifest(corpus)
    assert len(rows) == 6 and (corpus / "errors.jsonl").read_text() == ""
    for row in rows:
        info = sf.info(str(corpus / row["path"]))
        assert info.samplerate == 16_000 and info.channels == 1
        assert 4.0 <= info.duration <= 6.0 and row["duration"] == pytest.approx(info.duration, abs=1e-3)
        m = MusicAttributes.from_json(row["music"])
        assert m.key == key_name(m.tonic, m.mode) and m.program == INSTRUMENTS[m.instrument]
        assert -6 <= m.transposition <= 5 and m.composer in m.piece
        # Every wording names the key and the instrument.
        caption = row["transcript"]
        assert m.key in caption, caption
        assert any(w.split(" (")[0] in caption.lower() for w in _INSTRUMENT_WORDS[m.instrument]), caption
    levels = {r["music"]["loudness"]: r["music"]["loudness_db"] for r in rows}
    order = [levels[k] for k in ("quiet", "medium", "loud") if k in levels]
    assert order == sorted(order)


def test_heldout_pieces_and_pairs(corpus):
    clips = read_music_corpus(corpus)
    pairs = heldout_pairs(ARGS["seed"])
    assert len(pairs) == len(INSTRUMENTS) and len({t for _, t in pairs}) == len(INSTRUMENTS)
    by_piece: dict[str, set] = {}
    for c in clips:
        by_piece.setdefault(c.music.piece, set()).add(c.music.heldout == "piece")
        in_pair = (c.music.instrument, c.music.tonic) in pairs
        assert (c.item.split == "heldout") == (c.music.heldout is not None)
        if c.music.heldout is None:
            assert not in_pair
        if c.music.heldout == "combination":
            assert in_pair
    assert all(len(flags) == 1 for flags in by_piece.values())  # a piece is held out whole or not at all
    assert sum(True in flags for flags in by_piece.values()) == 1
    assert [c.item.id for c in read_music_corpus(corpus, split="train")] == \
           [c.item.id for c in clips if c.music.heldout is None]


def test_plan_and_captions_are_functions_of_the_seed(tmp_path):
    font = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
    a = plan_pieces(tmp_path, 30, 0, 10.0, 3, 0.15, 16_000, font)
    assert a == plan_pieces(tmp_path, 30, 0, 10.0, 3, 0.15, 16_000, font)
    assert a != plan_pieces(tmp_path, 30, 1, 10.0, 3, 0.15, 16_000, font)
    assert sum(len(t.clips) for t in a) == 30 and len({t.composer for t in a}) == 6  # round-robin over composers
    # beethoven has some scores as both .mxl and .krn: one piece, one set of ids.
    big = plan_pieces(tmp_path, 600, 0, 10.0, 3, 0.15, 16_000, font)
    assert len({c.id for t in big for c in t.clips}) == sum(len(t.clips) for t in big) == 600
    m = _attributes()
    assert make_caption(m, random.Random("x")) == make_caption(m, random.Random("x"))
    assert len({make_caption(m, random.Random(i)) for i in range(40)}) > 10


def _attributes() -> MusicAttributes:
    return MusicAttributes(piece="bach/bwv1.6", composer="bach", form="chorale", instrument="organ", program=19,
                           tonic=7, mode="minor", key="G minor", tempo_bpm=60, meter="3/4", loudness="quiet",
                           velocity=45, loudness_db=-30.0, key_confidence=0.9, transposition=2)


def test_resume_is_a_no_op_and_other_settings_are_refused(corpus, capsys):
    before = (corpus / "manifest.jsonl").read_bytes()
    wavs = {p.name: p.stat().st_mtime_ns for p in (corpus / "wavs").iterdir()}
    make_music_corpus(corpus, workers=1, **ARGS)
    assert "resuming: 3 of 3 pieces already rendered" in capsys.readouterr().out
    assert (corpus / "manifest.jsonl").read_bytes() == before
    assert {p.name: p.stat().st_mtime_ns for p in (corpus / "wavs").iterdir()} == wavs
    with pytest.raises(ValueError, match="other settings"):
        make_music_corpus(corpus, workers=1, **{**ARGS, "seed": 2})
    # A record that does not match the plan (rendered by an older plan) is rendered again.
    record_path = sorted((corpus / "pieces").iterdir())[0]
    record = json.loads(record_path.read_text())
    first = next(iter(record["clips"]))
    record["clips"][first]["tempo_bpm"] += 1
    record_path.write_text(json.dumps(record))
    make_music_corpus(corpus, workers=1, **ARGS)
    assert "resuming: 2 of 3 pieces already rendered" in capsys.readouterr().out
    assert (corpus / "manifest.jsonl").read_bytes() == before  # rendering is deterministic


def test_a_bad_score_is_skipped_with_its_reason(tmp_path):
    task = PieceTask(str(tmp_path / "missing.mxl"), "x/missing", "bach", (), 16_000, 6.0,
                     "/usr/share/sounds/sf2/FluidR3_GM.sf2", str(tmp_path / "pieces" / "x.json"))
    reason = render_clips(task)
    assert reason is not None and "missing.mxl" in reason
    assert not (tmp_path / "pieces" / "x.json").exists()


def test_analysers_on_rendered_clips(corpus):
    from soundlm.audio import load_audio
    from soundlm.music.analysis import estimate_tempo, tempo_matches

    hits = 0
    for c in read_music_corpus(corpus):
        audio = load_audio(c.item.path, sample_rate=16_000)
        hits += tempo_matches(estimate_tempo(audio, 16_000).bpm, c.music.tempo_bpm, 0.04, (0.5, 1.0, 2.0))
    assert hits >= 4  # of 6: the quarter-note tempo or its half/double


def test_train_instrument_then_eval_analysers(corpus, tmp_path):
    from soundlm.eval.sections.analysers import eval_analysers
    from soundlm.train.instrument import InstrumentTrainConfig, train_instrument

    cfg = InstrumentTrainConfig(data=str(corpus), out=str(tmp_path / "clf"), steps=4, batch_size=4, channels=8,
                                ckpt_every=2, stop_at=2, progress=False)
    assert train_instrument(cfg) is None  # stopped at step 2
    cfg.stop_at = None
    final = train_instrument(cfg)  # resumes at 2
    assert final is not None and (final / "model.safetensors").is_file()
    section = eval_analysers(corpus, final, split="heldout", out_dir=tmp_path / "eval", progress=False)
    s = section.summary
    assert s["clips"] == len(read_music_corpus(corpus, split="heldout"))
    for key in ("key_accuracy", "tempo_accuracy_4pct", "tempo_accuracy_octave", "instrument_accuracy"):
        assert 0.0 <= s[key] <= 1.0
    assert s["tempo_accuracy_octave"] >= s["tempo_accuracy_4pct"]
    assert s["key_chance_uniform"] == pytest.approx(1 / 24)
    assert all(r["instrument_est"] in INSTRUMENTS for r in section.rows)


def test_a_corpus_without_music_attributes_is_refused(corpus, tmp_path):
    from soundlm.data import write_manifest
    from soundlm.eval.sections.analysers import eval_analysers

    rows = read_manifest(corpus)
    for row in rows:  # the rows of a corpus from `soundlm data piano` or `speech` have no `music`
        del row["music"]
    (tmp_path / "plain").mkdir()
    write_manifest(tmp_path / "plain" / "manifest.jsonl", rows)
    with pytest.raises(ValueError, match="no 'music' attributes.*soundlm data music"):
        eval_analysers(tmp_path / "plain", None, progress=False)
