"""`soundlm doctor` on synthetic metric files: one per known failure mode, a healthy run, a run behind the
reference, and the shipped reference curves read back as runs (no false alarm on the recipe's own curves)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from soundlm.doctor import diagnose
from soundlm.doctor.entropy import entropy_nats, stage_unigram_entropy
from soundlm.doctor.reference import ReferenceCurve, ReferenceCurves, load_reference

STEPS = np.arange(0, 1001, 50)


def _reference() -> ReferenceCurves:
    lm_loss = 2.0 + 3.0 * np.exp(-STEPS / 300.0)  # held-out loss from 5 to ~2.1 nats
    codec_mel = 0.5 + 0.5 * np.exp(-STEPS / 400.0)
    lm = ReferenceCurve(name="lm-coarse", kind="lm", stage="coarse", preset="mini", about="synthetic",
                        settings={"preset": "mini", "batch_size": 8, "lr": 1e-3},
                        metrics={"heldout/loss": (list(STEPS), list(lm_loss)), "train/loss": (list(STEPS), list(lm_loss))},
                        unigram_entropy=5.5)
    codec = ReferenceCurve(name="codec", kind="codec", preset="fast", about="synthetic", settings={"preset": "fast"},
                           metrics={"eval/mel_distance@8": (list(STEPS), list(codec_mel)),
                                    "eval/codes_used@level1": (list(STEPS), [0.5] * len(STEPS))})
    return ReferenceCurves(recipe="test", made_by="test", curves=[lm, codec])


def _write_run(folder: Path, config: dict, lines: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train_config.json").write_text(json.dumps(config))
    # json.dumps writes NaN / Infinity, as MetricsLog does for a diverged loss.
    (folder / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return folder


def _lm_lines(loss: np.ndarray, lr: np.ndarray | None = None, steps: np.ndarray = STEPS) -> list[dict]:
    lines = []
    for i, step in enumerate(steps):
        row = {"step": int(step), "train/loss": float(loss[i])}
        if lr is not None:
            row["train/lr"] = float(lr[i])
        lines += [row, {"step": int(step), "heldout/loss": float(loss[i])}]
    return lines


def _cosine(steps: np.ndarray, total: int) -> np.ndarray:
    progress = np.minimum(steps / total, 1.0)
    return 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + np.cos(np.pi * progress))


LM_CONFIG = {"stage": "coarse", "preset": "mini", "steps": 1000, "batch_size": 8, "lr": 1e-3}


def _checks(diagnosis) -> set[str]:
    return {f.check for f in diagnosis.findings}


def test_healthy_lm_run_is_on_track(tmp_path):
    loss = 2.0 + 3.0 * np.exp(-STEPS / 300.0) * 1.01
    run = _write_run(tmp_path / "run", LM_CONFIG, _lm_lines(loss, _cosine(STEPS, 1000)))
    d = diagnose(run, _reference())
    assert d.findings == [] and d.on_track is True
    assert {c.metric for c in d.comparisons} == {"heldout/loss", "train/loss"}
    assert d.lines()[0] == "run: lm run, stage coarse, preset mini, step 1000 of 1000"
    assert d.lines()[-1] == "verdict: on track"
    assert any("bits/token" in n for n in d.notes)


def test_run_behind_the_band_is_said_behind(tmp_path):
    loss = 2.6 + 3.0 * np.exp(-STEPS / 600.0)  # slower and higher than the reference
    d = diagnose(_write_run(tmp_path / "run", LM_CONFIG, _lm_lines(loss, _cosine(STEPS, 1000))), _reference())
    held = next(c for c in d.comparisons if c.metric == "heldout/loss")
    assert held.verdict == "behind" and held.value > held.high
    assert d.on_track is False and "behind the reference in heldout/loss" in d.verdict()


def test_nan_is_flagged_with_its_first_step(tmp_path):
    loss = 2.0 + 3.0 * np.exp(-STEPS / 300.0)
    loss[STEPS >= 700] = math.nan
    d = diagnose(_write_run(tmp_path / "run", LM_CONFIG, _lm_lines(loss, _cosine(STEPS, 1000))), _reference())
    nan = next(f for f in d.findings if f.check == "nan")
    assert "first at step 700" in nan.message and "lower --lr" in nan.fix


def test_learning_rate_schedule_that_ended_early(tmp_path):
    loss = 2.0 + 3.0 * np.exp(-STEPS / 300.0)
    lr = _cosine(STEPS, 400)  # a schedule made for 400 steps in a 1000-step run
    d = diagnose(_write_run(tmp_path / "run", LM_CONFIG, _lm_lines(loss, lr)), _reference())
    f = next(f for f in d.findings if f.check == "lr-finished-early")
    assert "at step 400" in f.message and "600 of the run's 1000 steps" in f.message
    # The same cosine ending at the run's last step is the normal case.
    d = diagnose(_write_run(tmp_path / "ok", LM_CONFIG, _lm_lines(loss, _cosine(STEPS, 1000))), _reference())
    assert "lr-finished-early" not in _checks(d)
    # A run still under way (step 600 of 2500, with a warmup): its lowest learning rates so far are not a floor.
    warm = np.where(STEPS < 100, (STEPS + 1) / 100 * 1e-3, _cosine(STEPS, 2500))
    d = diagnose(_write_run(tmp_path / "going", {**LM_CONFIG, "steps": 2500}, _lm_lines(loss, warm)), _reference())
    assert "lr-finished-early" not in _checks(d)


def test_lm_loss_stuck_at_the_unigram_entropy(tmp_path):
    loss = 5.5 + 0.4 * np.exp(-STEPS / 50.0)  # drops to the unigram entropy (5.5, the reference's) and stays
    d = diagnose(_write_run(tmp_path / "run", LM_CONFIG, _lm_lines(loss, _cosine(STEPS, 1000))), _reference())
    f = next(f for f in d.findings if f.check == "stuck-at-unigram")
    assert "unigram entropy of the stage's targets (5.500)" in f.message
    assert any("taken from the reference's store" in n for n in d.notes)
    # Fine-tuning a stage that was at the unigram entropy from the start: the advice is to leave the stage out.
    ft = {**LM_CONFIG, "kind": "finetune", "base": "speech-tiny", "rank": 8}
    d = diagnose(_write_run(tmp_path / "ft", ft, _lm_lines(5.52 + 0 * loss, _cosine(STEPS, 1000))), _reference())
    f = next(f for f in d.findings if f.check == "stuck-at-unigram")
    assert "where the base model already was (step 0: 5.520)" in f.message and "--stages" in f.fix


def test_heldout_loss_rising_is_overfitting(tmp_path):
    held = 2.0 + 3.0 * np.exp(-STEPS / 150.0) + np.maximum(STEPS - 500, 0) * 0.002  # best near step 500, then up
    train = 2.0 + 3.0 * np.exp(-STEPS / 150.0) - np.maximum(STEPS - 500, 0) * 0.001
    lines = []
    for i, step in enumerate(STEPS):
        lines += [{"step": int(step), "train/loss": float(train[i])}, {"step": int(step), "heldout/loss": float(held[i])}]
    d = diagnose(_write_run(tmp_path / "run", LM_CONFIG, lines), _reference())
    f = next(f for f in d.findings if f.check == "overfitting")
    best = int(STEPS[np.argmin(held)])
    assert f"at step {best} to" in f.message and "training loss went from" in f.message
    # A fine-tuning run keeps its best weights: the same curve is a note there, not a problem.
    ft = _write_run(tmp_path / "ft", {**LM_CONFIG, "kind": "finetune", "base": "speech-tiny", "rank": 8}, lines)
    d = diagnose(ft, _reference())
    assert "overfitting" not in _checks(d) and any("early stopping kept" in n for n in d.notes)


def _codec_lines(used: list[float], energy: list[float], extra: dict | None = None) -> list[dict]:
    lines = []
    for step in STEPS[1:]:
        row = {"step": int(step), "kind": "eval", "mel_distance@8": 0.5 + 0.5 * math.exp(-step / 400.0)}
        row.update({f"codes_used@level{q + 1}": u for q, u in enumerate(used)})
        row.update({f"code_perplexity@level{q + 1}": 300.0 * u for q, u in enumerate(used)})
        row.update({f"energy@level{q + 1}": e for q, e in enumerate(energy)})
        lines.append(row)
        lines.append({"step": int(step), "kind": "train", "loss": 1.0, "mel": 0.5, **(extra or {})})
    return lines


CODEC_CONFIG = {"preset": "fast", "steps": 1000, "segment_seconds": 0.64, "codec": {"codebook_size": 1024}}


def test_codec_codebook_collapse_names_the_dead_level(tmp_path):
    healthy = diagnose(_write_run(tmp_path / "ok", CODEC_CONFIG, _codec_lines([0.5, 0.4, 0.4], [0.6, 0.1, 0.05])),
                       _reference())
    assert healthy.findings == [] and healthy.on_track
    d = diagnose(_write_run(tmp_path / "run", CODEC_CONFIG, _codec_lines([0.5, 0.004, 0.4], [0.6, 0.0, 0.05])),
                 _reference())
    f = next(f for f in d.findings if f.check == "codebook-collapse")
    assert "level 2: 0% of codes used" in f.message and "of 1024" in f.message


def test_first_codebook_taking_all_the_energy(tmp_path):
    d = diagnose(_write_run(tmp_path / "run", CODEC_CONFIG, _codec_lines([0.5, 0.4, 0.4], [0.995, 0.003, 0.001])),
                 _reference())
    f = next(f for f in d.findings if f.check == "first-level-energy")
    assert "99.5% of the latent energy" in f.message


def test_discriminator_overpowering_the_generator(tmp_path):
    lines = _codec_lines([0.5, 0.4], [0.6, 0.1])
    train = [x for x in lines if x.get("kind") == "train"]
    for i, row in enumerate(train):
        if row["step"] > 300:  # adversarial from step 300: the discriminator wins, the generator's loss climbs
            k = (row["step"] - 300) / 700
            row.update({"disc": 1.5 * max(0.0, 1 - 2 * k) + 0.01, "adv": 0.5 + 2.0 * k, "mel": 0.5 + 0.3 * k})
    d = diagnose(_write_run(tmp_path / "run", {**CODEC_CONFIG, "adversarial": True}, lines), _reference())
    f = next(f for f in d.findings if f.check == "discriminator-wins")
    assert "rose from" in f.message and "disc_lr" in f.fix


def test_unigram_entropy_of_a_store(tmp_path):
    from soundlm.store import StoreManifest, TokenRecord, acoustic_value_type, write_part

    StoreManifest.from_json({"version": 1, "semantic_frame_rate": 50.0, "acoustic_frame_rate": 50.0}).write(tmp_path)
    level0, level1 = np.array([0, 0, 1, 1]), np.array([5, 5, 5, 5])
    rec = TokenRecord(id="a", path="a.wav", duration=0.08, semantic=np.array([1, 2, 3, 3]),
                      acoustic=np.stack([level0, level1, level0]), sample_rate=16000)
    held = TokenRecord(id="b", path="b.wav", duration=0.08, semantic=np.array([7, 7, 7, 7]),
                       acoustic=np.stack([level1, level1, level1]), sample_rate=16000, split="heldout")
    write_part(tmp_path, 0, 1, 0, [rec, held], [], acoustic_value_type(1024))
    assert stage_unigram_entropy(tmp_path, "semantic") == pytest.approx(entropy_nats(np.array([1, 1, 2])))
    # coarse = level 0 (ln 2 nats); fine = levels 1 and 2: (0 + ln 2) / 2.
    assert stage_unigram_entropy(tmp_path, "coarse", coarse_codebooks=1) == pytest.approx(math.log(2))
    assert stage_unigram_entropy(tmp_path, "fine", coarse_codebooks=1) == pytest.approx(math.log(2) / 2)


def test_shipped_reference_covers_every_recipe_stage_and_reads_back_on_track(tmp_path):
    """Each shipped reference curve, written out as a run's metrics.jsonl, is on track and raises no alarm."""
    reference = load_reference()
    assert {c.name for c in reference.curves} == {"lm-semantic", "lm-coarse", "lm-fine", "codec", "phonetic"}
    for curve in reference.curves:
        assert curve.about and curve.settings and curve.metrics
        points: dict[int, dict] = {}
        for metric, (steps, values) in curve.metrics.items():
            kind, _, name = metric.partition("/") if curve.kind == "codec" else ("", "", metric)
            for step, value in zip(steps, values):
                row = points.setdefault((step, kind), {"step": step, **({"kind": kind} if kind else {})})
                row[name] = value
        lines = [points[k] for k in sorted(points, key=lambda k: (k[0], k[1]))]
        config = {**curve.settings, **({"codec": {"codebook_size": 1024}} if curve.kind == "codec" else {})}
        d = diagnose(_write_run(tmp_path / curve.name, config, lines), reference)
        assert d.findings == [], (curve.name, d.lines())
        assert d.on_track is True, (curve.name, d.lines())
        if curve.kind == "lm":
            assert curve.unigram_entropy is not None and min(curve.metrics["heldout/loss"][1]) < curve.unigram_entropy


def test_cli_doctor_report_plot_and_errors(tmp_path):
    from soundlm.cli import app

    loss = 2.0 + 3.0 * np.exp(-STEPS / 300.0)
    run = _write_run(tmp_path / "run", {**LM_CONFIG, "stage": "fine", "preset": "micro"},
                     _lm_lines(loss, _cosine(STEPS, 1000)))
    out = CliRunner().invoke(app, ["doctor", str(run), "--plot", str(tmp_path / "run.png"), "--json",
                                   str(tmp_path / "d.json")])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("run: lm run, stage fine") and "verdict:" in out.output
    assert (tmp_path / "run.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "d.json").read_text())["kind"] == "lm"
    missing = CliRunner().invoke(app, ["doctor", str(tmp_path)])
    assert missing.exit_code == 2 and "no metrics.jsonl" in missing.output
