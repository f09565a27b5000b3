"""`soundlm eval continuation --music`: the agreement measures on constructed signals, the unrelated-clip
pairing, and a run of the whole evaluation on a tiny random bundle and a synthetic music corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from soundlm.eval.sections.music_continuation import (ClipAnalysis, agreement, analyse_clip, pick_prompts,
                                                      summarise, unrelated_partners)

from music_corpus import CADENCE, SR, chords, write_music_corpus


def test_same_music_agrees_and_a_fifth_up_slower_does_not():
    c_120 = analyse_clip(chords(CADENCE * 3, 0.5), SR)  # C major, 120 BPM
    assert (c_120.tonic, c_120.mode) == (0, "major") and abs(c_120.bpm - 120) < 5
    same = agreement(c_120, analyse_clip(chords(CADENCE * 3, 0.5), SR))
    assert same.key and same.key_score == 1.0 and same.tempo and same.tempo_octave and same.instrument is None
    g_80 = analyse_clip(chords(CADENCE * 2, 0.75, transpose=7), SR)  # G major, 80 BPM
    other = agreement(c_120, g_80)
    assert not other.key and other.key_score == 0.5 and not other.tonic
    assert not other.tempo and not other.tempo_octave


def test_agreement_rules():
    a = ClipAnalysis(0, "major", 100.0, "piano")
    assert agreement(a, ClipAnalysis(9, "minor", 107.0, "organ")) == agreement(a, ClipAnalysis(9, "minor", 107.0,
                                                                                              "organ"))
    rel = agreement(a, ClipAnalysis(9, "minor", 107.0, "organ"))
    assert rel.key_score == 0.3 and rel.tempo and not rel.instrument  # 7% off is within 8%
    assert not agreement(a, ClipAnalysis(0, "minor", 109.0, "piano")).tempo  # 9% off
    double = agreement(a, ClipAnalysis(0, "major", 196.0, "piano"))
    assert not double.tempo and double.tempo_octave and double.key and double.instrument
    assert not agreement(ClipAnalysis(0, "major", 0.0, None), ClipAnalysis(0, "major", 0.0, None)).tempo_octave


def test_unrelated_partners_come_from_other_pieces():
    pieces = ["a", "a", "b", "c", "c", "a"]
    partners = unrelated_partners(pieces)
    assert all(pieces[j] != pieces[i] for i, j in enumerate(partners))
    assert partners == [2, 2, 3, 5, 5, 2]
    with pytest.raises(ValueError, match="at least 2 pieces"):
        unrelated_partners(["a", "a"])


def test_summarise_averages_each_kind():
    rows = [{"continuation_key": True, "ground_truth_key": True, "unrelated_key": False, "continuation_instrument": None},
            {"continuation_key": False, "ground_truth_key": True, "unrelated_key": False}]
    s = summarise(rows)
    assert s["key_continuation"] == 0.5 and s["key_ground_truth"] == 1.0 and s["key_unrelated"] == 0.0
    assert s["instrument_continuation"] is None and s["num_prompts"] == 2


def _music_corpus(root: Path) -> Path:
    """4 held-out clips of 2 pieces (C major, A-flat major; 120 BPM), 4 s each."""
    return write_music_corpus(root, [{"piece": piece, "tonic": tonic, "instrument": instrument, "split": "heldout"}
                                     for piece, tonic in (("p/one", 0), ("p/two", 8))
                                     for instrument in ("piano", "organ")])


def test_pick_prompts_takes_one_clip_per_piece_first(tmp_path):
    from soundlm.data.music import read_music_corpus

    clips = read_music_corpus(_music_corpus(tmp_path), split="heldout")
    picked = pick_prompts(clips, 2.0, 3, seed=0)
    assert len(picked) == 3 and {c.music.piece for c in picked[:2]} == {"p/one", "p/two"}
    assert pick_prompts(clips, 5.0, 3, seed=0) == []  # none long enough


def test_eval_refuses_clips_too_short_for_prompt_and_continuation(tmp_path):
    from soundlm.eval.sections.music_continuation import eval_music_continuation

    class NoModel:  # the check comes before any generation
        sample_rate = SR

    with pytest.raises(ValueError, match="lasts --prompt-seconds"):
        eval_music_continuation(NoModel(), _music_corpus(tmp_path), prompt_seconds=3.0, seconds=2.0, progress=False)


@pytest.mark.slow  # about 35 s on 2 shared cores
def test_eval_runs_on_a_tiny_bundle_and_resumes(tmp_path):
    from tiny_bundle import make_tiny_bundle

    from soundlm.eval.sections.music_continuation import eval_music_continuation
    from soundlm.music.instrument import InstrumentClassifier, InstrumentConfig
    from soundlm.pretrained import load_pipeline

    data = _music_corpus(tmp_path)
    classifier = InstrumentClassifier(InstrumentConfig(classes=["organ", "piano"], channels=8)).save(tmp_path / "cls")
    pipe = load_pipeline(make_tiny_bundle(tmp_path / "model"), device="cpu")
    out = tmp_path / "eval"
    section = eval_music_continuation(pipe, data, prompt_seconds=2.0, seconds=2.0, num_prompts=2,
                                      instrument_model=classifier, out_dir=out, progress=False)
    assert section.summary["num_prompts"] == 2 and len(section.rows) == 2
    assert len(list((out / "music_continuation_audio").glob("*.wav"))) == 2
    # The real next seconds of these clips keep their key; another piece's do not.
    assert section.summary["key_ground_truth"] == 1.0 and section.summary["key_unrelated"] == 0.0
    for kind in ("continuation", "ground_truth", "unrelated"):
        assert section.summary[f"instrument_{kind}"] is not None
    # A second run reads every analysis from the resume state and gives the same rows.
    again = eval_music_continuation(pipe, data, prompt_seconds=2.0, seconds=2.0, num_prompts=2,
                                    instrument_model=classifier, out_dir=out, progress=False)
    assert again.rows == section.rows
    state = json.loads((out / ".state" / "music_continuation.json").read_text())
    assert len(state["rows"]) == 2
