"""`soundlm eval music`: each metric on constructed inputs, and the whole evaluation on a tiny music bundle."""

import numpy as np
import pytest
import torch

from music_corpus import CADENCE, SR, chords, write_music_corpus
from soundlm.eval.sections import music as em
from soundlm.music.rewards import MusicRequest
from tiny_bundle import C, Q, StandInMuLan, make_tiny_bundle, make_tiny_music_bundle


def test_derangement_pairs_every_caption_with_another():
    for n in (2, 3, 10):
        order = em.derangement(n, seed=n)
        assert sorted(order) == list(range(n)) and all(i != j for i, j in enumerate(order))
    with pytest.raises(ValueError, match="--captions 2"):
        em.derangement(1, 0)


def test_attribute_hits_key_mode_tempo_tolerance_and_instrument():
    req = MusicRequest("x", tonic=7, mode="minor", tempo_bpm=100.0, instrument="organ")
    assert em.attribute_hits(7, "minor", 107.0, "organ", req, 0.08) == {"key": True, "tempo": True,
                                                                       "instrument": True}
    # Relative major, 9% too fast, another instrument: all wrong; a zero tempo (no beat found) never hits.
    assert em.attribute_hits(10, "major", 109.0, "piano", req, 0.08) == {"key": False, "tempo": False,
                                                                        "instrument": False}
    assert em.attribute_hits(7, "major", 0.0, None, req, 0.08) == {"key": False, "tempo": False,
                                                                  "instrument": None}
    assert em.attribute_hits(0, "major", 100.0, "organ", MusicRequest("y"), 0.08) == {
        "key": None, "tempo": None, "instrument": None}


def test_uniform_chance_is_one_over_the_corpus_values():
    from soundlm.data.music import INSTRUMENTS

    chance = em.uniform_chance(0.08)
    # The corpus's tempi are more than 8% apart, so a uniform guess hits one in len(TEMPI).
    assert chance == pytest.approx({"key": 1 / 24, "tempo": 1 / 6, "instrument": 1 / len(INSTRUMENTS)})


def test_unseen_metrics_are_those_the_reward_did_not_use():
    assert em.unseen_metrics(("key", "tempo")) == ["mulan", "instrument"]
    with pytest.raises(ValueError, match="--reward-saw names loudness"):
        em.unseen_metrics(("loudness",))


def test_summary_win_rates_and_the_worst_unseen_one():
    reqs = [MusicRequest("a", 0, "major", 60.0), MusicRequest("b", 2, "minor", 120.0)]
    rows = []
    for i, r in enumerate(reqs):
        gen = {"tonic": 0, "mode": "major", "bpm": 60.0, "instrument": None}
        row = _row(i, em.attribute_hits(**gen, request=r, tempo_tolerance=0.08), r, gen, [float(i), 1.0, 0.0])
        # Ours wins mulan on both captions, key on one, loses tempo on both.
        row["wins"] = {"ours": {"mulan": 0.9, "key": [1.0, 0.0][i], "tempo": 0.0, "instrument": None},
                       "theirs": {"mulan": 0.1, "key": 0.5, "tempo": 1.0, "instrument": None}}
        rows.append(row)
    s = em.summarise_music(rows, np.zeros((0, 3)), 0.08, 0, against=True, reward_saw=("key", "instrument"))
    assert (s["win_rate_mulan"], s["win_rate_key"], s["win_rate_tempo"]) == (1.0, 0.5, 0.0)
    assert (s["score_key"], s["score_key_against"], s["score_mulan"]) == pytest.approx((0.5, 0.5, 0.9))
    assert s["win_rate_instrument"] is None and s["unseen_metrics"] == "mulan,tempo"
    assert s["win_rate_unseen_min"] == 0.0 and "frechet_real_halves" not in s


def test_win_rate_counts_ties_half_and_skips_missing():
    assert em.win_rate([1, 2, 3], [0, 2, 4]) == pytest.approx(0.5)
    assert em.win_rate([1, 2, None], [0, 1, 5]) == 1.0
    assert em.win_rate([None], [1.0]) is None


def test_score_clip_reads_key_tempo_and_caption_cosine_of_a_cadence():
    audio = chords(CADENCE * 4, 0.5, transpose=2)  # D major, 120 BPM
    judge = StandInMuLan()
    req = MusicRequest("d major", tonic=2, mode="major", tempo_bpm=120.0)
    text = judge.embed_text(["d major"])[0].detach().numpy()
    s = em.score_clip(audio, SR, req, judge, text, None)
    assert (s.tonic, s.mode) == (2, "major") and abs(s.bpm - 120) / 120 < 0.08
    emb = judge.embed_audio(torch.from_numpy(audio)[None])[0].detach().numpy()
    assert s.mulan == pytest.approx(float(emb @ text), abs=1e-5)
    assert em.win_scores(s, req)["key"] == 1.0 and em.win_scores(s, req)["tempo"] == 1.0


def _row(i: int, hits: dict, request: MusicRequest, gen: dict, emb, heldout="piece", cos=0.5, null_cos=0.1):
    return {"id": str(i), "heldout": heldout, "request": request.to_json(), "hits": hits,
            "generated": {"embedding": list(emb), "mulan": cos, **gen},
            "null": {"embedding": list(emb), "mulan": null_cos}, "shuffled_cos": [0.0, 0.0, 0.0]}


def test_summary_on_constructed_rows():
    reqs = [MusicRequest("a", 0, "major", 60.0, "piano"), MusicRequest("b", 2, "minor", 120.0, "organ"),
            MusicRequest("c", 4, "major", 88.0, "flute")]
    # Clip 0 gets everything right, clip 1 only its key, clip 2 nothing.
    gens = [{"tonic": 0, "mode": "major", "bpm": 60.0, "instrument": "piano"},
            {"tonic": 2, "mode": "minor", "bpm": 60.0, "instrument": "piano"},
            {"tonic": 5, "mode": "minor", "bpm": 200.0, "instrument": "organ"}]
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 3))
    rows = [_row(i, em.attribute_hits(**g, request=r, tempo_tolerance=0.08), r, g, real[i],
                 heldout="combination" if i == 0 else "piece") for i, (r, g) in enumerate(zip(reqs, gens))]
    s = em.summarise_music(rows, real, 0.08, seed=0, against=False)
    assert s["key_acc"] == pytest.approx(2 / 3) and s["tempo_acc"] == pytest.approx(1 / 3)
    assert s["instrument_acc"] == pytest.approx(1 / 3)
    assert s["key_acc_combination"] == 1.0 and s["captions_combination"] == 1
    assert s["mulan_cos"] == pytest.approx(0.5) and s["mulan_cos_null"] == pytest.approx(0.1)
    assert s["mulan_cos_shuffled"] == 0.0
    # Against other clips' requests, over the summary's derangements.
    pairs = [(i, j) for k in range(em.SHUFFLES) for i, j in enumerate(em.derangement(3, k))]
    expected = np.mean([gens[i]["instrument"] == reqs[j].instrument for i, j in pairs])
    assert s["instrument_chance_shuffled"] == pytest.approx(expected) and 0 < expected < 1
    assert s["frechet_real_halves"] >= 0 and s["frechet_generated_vs_real"] > 0


def test_frechet_is_zero_for_identical_sets_and_grows_with_a_shift():
    from soundlm.music.mulan import frechet_distance

    x = np.random.default_rng(1).normal(size=(200, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(x, x + 2.0) == pytest.approx(4 * 4.0, rel=1e-6)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    clips = [{"piece": f"p{i}", "tonic": t, "instrument": inst, "split": "heldout"}
             for i, (t, inst) in enumerate([(0, "piano"), (2, "organ"), (7, "piano"), (9, "organ")])]
    return write_music_corpus(root, clips, seconds=2.0)


@pytest.fixture(scope="module")
def music(tmp_path_factory):
    from soundlm.music.pipeline import MusicLMPipeline
    from soundlm.pipeline import AudioLMPipeline

    bundle = make_tiny_bundle(tmp_path_factory.mktemp("music"), condition=(Q, C))
    return MusicLMPipeline(AudioLMPipeline.from_bundle(bundle, device="cpu"), StandInMuLan())


def test_eval_music_runs_resumes_and_compares_against_itself(music, corpus, tmp_path, monkeypatch):
    section = em.eval_music(music, corpus, num_captions=3, seconds=0.5, against=music, out_dir=tmp_path,
                            progress=False)
    s = section.summary
    assert s["captions"] == 3 and len(section.rows) == 3
    for name in ("mulan_cos", "mulan_cos_null", "mulan_cos_shuffled", "key_acc", "tempo_acc", "key_chance",
                 "key_chance_shuffled", "frechet_generated_vs_real", "frechet_real_halves"):
        assert s[name] is not None and np.isfinite(s[name]), name
    # The same model on the same captions and seeds makes the same clips: every comparison is a tie.
    assert s["win_rate_mulan"] == 0.5 and s["win_rate_key"] == 0.5
    # Conditioning changes the clip: the caption's and the NULL condition's clips differ.
    assert any(r["cos"] != r["cos_null"] for r in section.rows)
    # Resume: nothing is generated again.
    monkeypatch.setattr(type(music), "generate", lambda *a, **k: pytest.fail("generated again"))
    again = em.eval_music(music, corpus, num_captions=3, seconds=0.5, against=music, out_dir=tmp_path,
                          progress=False)
    assert again.summary == s


def test_cli_writes_music_md_and_refuses_an_unknown_reward_metric(corpus, tmp_path, stand_in_mulan):
    import json

    from typer.testing import CliRunner

    from soundlm.cli import app

    bundle = make_tiny_music_bundle(tmp_path / "m")
    args = ["eval", "music", str(bundle), "--data", str(corpus), "--captions", "2", "--seconds", "0.3",
            "--device", "cpu", "--out", str(tmp_path / "eval")]
    res = CliRunner().invoke(app, args + ["--reward-saw", "loudness"])
    assert res.exit_code == 2 and "--reward-saw names loudness" in res.stderr
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "eval" / "music.json").read_text())["summary"]
    assert summary["captions"] == 2 and "frechet_real_halves" in summary
    assert (tmp_path / "eval" / "music.md").is_file()
