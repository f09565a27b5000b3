"""soundlm doctor: synthetic runs for each failure mode, an on-track run shaped like its reference, the asset."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from soundlm.cli import app
from soundlm.doctor import diagnose, load_reference
from soundlm.doctor.reference import ReferenceCurves, stage_reference
from soundlm.doctor.runlog import STAGES, read_run
from soundlm.doctor.unigram import entropy_nats, stage_unigram_entropy

LM_SETTINGS = {"store": "/nowhere/store", "stage": "semantic", "preset": "mini", "steps": 1500, "batch_size": 8,
               "lr": 1e-3, "warmup": 50, "window_seconds": 4.5, "pattern": "flatten", "coarse_codebooks": 3,
               "exclude_split": "heldout"}
CODEC_SETTINGS = {"preset": "fast", "steps": 4000, "batch_size": 8, "segment_seconds": 0.64, "lr": 5e-4,
                  "adversarial": False, "adv_kind": "hinge", "codec": {"n_q": 4}}
UNIGRAM = math.log(100)  # 100 equally frequent semantic units


def write_run(folder: Path, settings: dict, lines: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_config.json").write_text(json.dumps(settings))
    (folder / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return folder


def lm_lines(steps=1500, seed=0, shift=0.0, heldout=None, lr=None, nan_at=None) -> list[dict]:
    """An LM stage's metrics.jsonl: loss 2 + 2.6 exp(-s/300) (+ noise, + shift), held-out every 100 steps."""
    rng = np.random.default_rng(seed)
    lines = []
    for s in range(10, steps + 1, 10):
        rate = lr(s) if lr else 1e-3 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1))))
        loss = 2 + 2.6 * math.exp(-s / 300) + shift + rng.normal(0, 0.03)
        lines.append({"step": s, "train/loss": float("nan") if s == nan_at else loss, "train/lr": rate,
                      "train/grad_norm": 1.0})
        if s % 100 == 0:
            value = heldout(s) if heldout else 2.1 + 2.6 * math.exp(-s / 300) + shift + rng.normal(0, 0.01)
            lines.append({"step": s, "heldout/loss": value})
    return lines


def codec_lines(steps=4000, used=0.4, energy=(0.6, 0.2, 0.1, 0.05), disc=None) -> list[dict]:
    lines = []
    for s in range(10, steps + 1, 10):
        mel = 0.5 + 1.5 * math.exp(-s / 800)
        row = {"step": s, "kind": "train", "loss": 5 * mel, "mel": mel, "commit": 0.1, "perplexity": 100.0, "n_q": 4}
        if disc is not None:
            row.update(adv=1.9, feat=0.5, disc=disc)
        lines.append(row)
        if s % 250 == 0:
            ev = {"step": s, "kind": "eval", "mel_distance@1": mel * 1.3, "mel_distance@4": mel,
                  "si_sdr@1": -5.0, "si_sdr@4": 2.0 - 10 * math.exp(-s / 800)}
            for q in range(1, 5):
                ev.update({f"codes_used@level{q}": used, f"code_perplexity@level{q}": used * 800,
                           f"energy@level{q}": energy[q - 1]})
            lines.append(ev)
    return lines


@pytest.fixture(scope="module")
def curves(tmp_path_factory) -> ReferenceCurves:
    """A reference built from synthetic recipe runs: a semantic LM and a codec."""
    root = tmp_path_factory.mktemp("ref")
    lm = stage_reference(read_run(write_run(root / "lm", LM_SETTINGS, lm_lines())), "synthetic", UNIGRAM)
    codec = stage_reference(read_run(write_run(root / "codec", CODEC_SETTINGS, codec_lines())), "synthetic")
    return ReferenceCurves(recipe="synthetic", stages={"semantic": lm, "codec": codec})


def names(diag) -> set[str]:
    return {f.name for f in diag.problems}


def test_a_run_shaped_like_the_reference_is_on_track(curves, tmp_path):
    diag = diagnose(write_run(tmp_path / "run", LM_SETTINGS, lm_lines(seed=1)), curves)
    assert diag.on_track, diag.lines
    assert {b.name: b.state for b in diag.bands} == {"heldout/loss": "on track", "train/loss": "on track"}
    assert diag.lines[-1] == "verdict: on track"
    assert any("unigram entropy of the targets: 4.605" in line for line in diag.lines)
    codec = diagnose(write_run(tmp_path / "codec", CODEC_SETTINGS, codec_lines()), curves)
    assert codec.on_track, codec.lines
    assert {b.name for b in codec.bands} == {"eval/mel_distance@4", "train/mel"}


def test_cli_exit_code_and_plot(curves, tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(curves.to_json()))
    good = write_run(tmp_path / "good", LM_SETTINGS, lm_lines(seed=2))
    res = CliRunner().invoke(app, ["doctor", str(good), "--reference", str(ref), "--plot", str(tmp_path / "p.png")])
    assert res.exit_code == 0 and "verdict: on track" in res.output, res.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    bad = write_run(tmp_path / "bad", LM_SETTINGS, lm_lines(nan_at=700))
    res = CliRunner().invoke(app, ["doctor", str(bad), "--reference", str(ref)])
    assert res.exit_code == 1 and "problem: NaN/inf: non-finite values: train/loss from step 700" in res.output


def test_behind_the_reference(curves, tmp_path):
    diag = diagnose(write_run(tmp_path / "run", LM_SETTINGS, lm_lines(shift=0.8)), curves)
    assert "behind the reference" in names(diag)
    assert {b.name: b.state for b in diag.bands}["heldout/loss"] == "behind"


def test_other_settings_make_the_band_a_note(curves, tmp_path):
    diag = diagnose(write_run(tmp_path / "run", {**LM_SETTINGS, "preset": "small"}, lm_lines(shift=0.8)), curves)
    assert diag.on_track
    assert any("settings differ from the reference's: preset 'small' (reference 'mini')" in l for l in diag.lines)
    assert any(f.name == "behind the reference" and f.level == "note" for f in diag.findings)


def test_past_the_end_of_the_reference_has_no_band(curves, tmp_path):
    diag = diagnose(write_run(tmp_path / "run", {**LM_SETTINGS, "steps": 3000}, lm_lines(steps=3000)), curves)
    held = {b.name: b for b in diag.bands}["heldout/loss"]
    assert held.step == 1500 and held.past_end
    assert any("heldout/loss: past the end of the reference after step 1500: no band there" in l for l in diag.lines)


def test_loss_stuck_at_the_unigram_entropy(curves, tmp_path):
    flat = write_run(tmp_path / "run", LM_SETTINGS, lm_lines(heldout=lambda s: UNIGRAM + 0.01))
    diag = diagnose(flat, curves)
    assert "LM loss stuck at the unigram entropy" in names(diag)
    # early in a run the same loss is not "stuck" yet
    early = write_run(tmp_path / "early", LM_SETTINGS, lm_lines(steps=200, heldout=lambda s: UNIGRAM))
    assert "LM loss stuck at the unigram entropy" not in names(diagnose(early, curves))


def test_heldout_loss_rising_is_overfitting(curves, tmp_path):
    rising = write_run(tmp_path / "run", LM_SETTINGS,
                       lm_lines(heldout=lambda s: 2.5 + ((s - 600) / 600) ** 2))  # best at 600, then up
    diag = diagnose(rising, curves)
    found = [f for f in diag.problems if f.name == "held-out loss rising (overfitting)"]
    assert found and "at step 600" in found[0].message and "--steps 600" in found[0].fix


def test_learning_rate_schedule_finished_early(curves, tmp_path):
    short = write_run(tmp_path / "run", LM_SETTINGS,
                      lm_lines(lr=lambda s: 1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi * min(s / 500, 1)))))
    diag = diagnose(short, curves)
    found = [f for f in diag.problems if f.name == "learning-rate schedule finished early"]
    assert found and "at step 490" in found[0].message  # within 1% of the floor from there
    assert "learning-rate schedule finished early" not in names(diagnose(
        write_run(tmp_path / "ok", LM_SETTINGS, lm_lines(seed=3)), curves))


def test_codebook_collapse(curves, tmp_path):
    diag = diagnose(write_run(tmp_path / "run", CODEC_SETTINGS, codec_lines(used=0.01)), curves)
    found = [f for f in diag.problems if f.name == "codebook collapse / dead codes"]
    assert found and "level 1 uses 1.0% of its reachable codes" in found[0].message


def test_first_codebook_takes_all_the_energy(curves, tmp_path):
    diag = diagnose(write_run(tmp_path / "run", CODEC_SETTINGS,
                              codec_lines(energy=(0.99, 0.002, 0.001, 0.001))), curves)
    found = [f for f in diag.problems if f.name == "first codebook takes all the energy"]
    assert found and "level 1 removes 99.6%" in found[0].message


def test_discriminator_overpowering_the_generator(curves, tmp_path):
    settings = {**CODEC_SETTINGS, "adversarial": True}
    diag = diagnose(write_run(tmp_path / "run", settings, codec_lines(disc=0.03)), curves)
    assert "discriminator overpowering the generator" in names(diag)
    assert "discriminator overpowering the generator" not in names(
        diagnose(write_run(tmp_path / "ok", settings, codec_lines(disc=1.6)), curves))


def test_bad_run_folders_are_named(tmp_path, curves):
    with pytest.raises(FileNotFoundError, match="train_config.json is missing"):
        diagnose(tmp_path, curves)
    (tmp_path / "train_config.json").write_text(json.dumps({"whatever": 1}))
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match="not the train_config.json of a soundlm"):
        diagnose(tmp_path, curves)


def test_unigram_entropy_of_each_stage(tmp_path):
    from soundlm.store import StoreManifest, TokenRecord, write_part

    StoreManifest.from_json({"version": 1, "semantic": {"kind": "test"}, "acoustic": {"backend": "test"},
                             "num_shards": 1, "source": "nowhere", "semantic_frame_rate": 25.0,
                             "acoustic_frame_rate": 50.0}).write(tmp_path)
    acoustic = np.stack([np.tile([0, 1], 50), np.arange(100) % 4, np.zeros(100, dtype=int)])  # [3, 100]
    common = {"duration": 2.0, "sample_rate": 16000, "path": "x.wav"}
    records = [TokenRecord(id="a", semantic=np.arange(8), acoustic=acoustic, split="train", **common),
               TokenRecord(id="b", semantic=np.zeros(8, dtype=int), acoustic=acoustic, split="heldout", **common)]
    write_part(tmp_path, 0, 1, 0, records, [])
    assert stage_unigram_entropy(str(tmp_path), "semantic", None) == pytest.approx(math.log(8))
    assert stage_unigram_entropy(str(tmp_path), "coarse", 2) == pytest.approx((math.log(2) + math.log(4)) / 2)
    assert stage_unigram_entropy(str(tmp_path), "fine", 2) == pytest.approx(0.0)
    assert entropy_nats(np.array([5, 5, 0])) == pytest.approx(math.log(2))


def test_shipped_reference_covers_every_stage():
    curves = load_reference()
    assert curves.recipe == "speech-tiny" and set(curves.stages) == set(STAGES)
    for stage, ref in curves.stages.items():
        assert ref.verdict and set(ref.verdict) <= set(ref.metrics), stage
        assert 0 < ref.reached_step <= ref.planned_steps
        for name, m in ref.metrics.items():
            assert m.steps[-1] <= ref.reached_step and len(m.steps) == len(m.lower) == len(m.upper), (stage, name)
            assert all(lo <= hi for lo, hi in zip(m.lower, m.upper))
        if stage in ("semantic", "coarse", "fine"):
            assert 0 < ref.unigram_entropy < math.log(1024)


def test_a_stage_whose_reference_sits_at_the_unigram_is_judged_by_its_band(tmp_path):
    near = lambda s: UNIGRAM - 0.02  # noqa: E731  the reference itself barely leaves the frequencies
    ref = stage_reference(read_run(write_run(tmp_path / "ref", LM_SETTINGS, lm_lines(heldout=near))), "x", UNIGRAM)
    curves = ReferenceCurves(recipe="synthetic", stages={"semantic": ref})
    diag = diagnose(write_run(tmp_path / "run", LM_SETTINGS, lm_lines(seed=4, heldout=near)), curves)
    assert diag.on_track, diag.lines


def test_build_writes_the_asset_and_the_figures(tmp_path):
    from soundlm.doctor.build import build_reference

    phonetic = {"steps": 400, "batch_size": 16, "lr": 2e-3, "conv_dim": 256, "hidden": 192, "layers": 2,
                "speed_perturb": [0.88, 1.12]}
    write_run(tmp_path / "work" / "phonetic", phonetic,
              [{"step": s, "loss": 3 * math.exp(-s / 100) + 0.1, "lr": 2e-3} for s in range(50, 201, 50)])
    write_run(tmp_path / "codec", CODEC_SETTINGS, codec_lines(steps=1000))
    build_reference(tmp_path / "work", tmp_path / "ref.json", tmp_path / "fig", codec_run=tmp_path / "codec")
    curves = load_reference(tmp_path / "ref.json")
    assert set(curves.stages) == {"phonetic", "codec"}
    assert curves.stages["phonetic"].reached_step == 200 and curves.stages["phonetic"].planned_steps == 400
    assert not curves.stages["phonetic"].complete and curves.stages["codec"].verdict == ["eval/mel_distance@4",
                                                                                         "train/mel"]
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["codec.png", "phonetic.png"]
    # a run past the partial reference is told so
    long = write_run(tmp_path / "long", phonetic,
                     [{"step": s, "loss": 3 * math.exp(-s / 100) + 0.1, "lr": 2e-3} for s in range(50, 401, 50)])
    diag = diagnose(long, curves)
    assert any("reaches step 200 of its 400" in l for l in diag.lines)
    assert any("loss: past the end of the reference after step 200: no band there" in l for l in diag.lines)


def test_dead_codes_the_reference_also_has_are_flagged_only_past_it(tmp_path):
    ref = stage_reference(read_run(write_run(tmp_path / "ref", CODEC_SETTINGS, codec_lines(used=0.004))), "x")
    curves = ReferenceCurves(recipe="synthetic", stages={"codec": ref})
    inside = diagnose(write_run(tmp_path / "a", CODEC_SETTINGS, codec_lines(steps=3000, used=0.004)), curves)
    assert "codebook collapse / dead codes" not in names(inside)
    past = diagnose(write_run(tmp_path / "b", {**CODEC_SETTINGS, "steps": 6000}, codec_lines(steps=6000, used=0.004)),
                    curves)
    assert "codebook collapse / dead codes" in names(past)
