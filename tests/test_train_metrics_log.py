import json

from soundlm.train.metrics_log import MetricsLog, truncate_metrics


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_truncate_drops_later_steps_and_cut_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "kind": "eval"}\n{"step": 3, "loss": 2.0}\n{"step": 4, "lo')
    truncate_metrics(path, 2)
    assert _lines(path) == [{"step": 1, "loss": 3.0}, {"step": 2, "kind": "eval"}]
    truncate_metrics(path, 0)
    assert path.read_text() == ""
    truncate_metrics(tmp_path / "missing.jsonl", 5)  # nothing logged yet: nothing to do
    assert not (tmp_path / "missing.jsonl").exists()


def test_log_lines_put_step_and_kind_first(tmp_path):
    log = MetricsLog(tmp_path, start=0)
    log.log(1, {"loss": 2.5, "lr": 0.1}, kind="train")
    log.log(1, {"heldout/loss": 3.0})
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text().splitlines() == [
        '{"step": 1, "kind": "train", "loss": 2.5, "lr": 0.1}', '{"step": 1, "heldout/loss": 3.0}']
    # Resuming at step 0 (no checkpoint yet) starts the log again.
    MetricsLog(tmp_path, start=0).close()
    assert (tmp_path / "metrics.jsonl").read_text() == ""


def test_a_disabled_log_writes_nothing(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 9}\n')
    log = MetricsLog(tmp_path, start=0, tensorboard=True, enabled=False)
    log.log(1, {"loss": 1.0})
    log.close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 9}\n' and not (tmp_path / "tb").exists()


def test_tensorboard_events_beside_the_jsonl(tmp_path):
    log = MetricsLog(tmp_path, start=0, tensorboard=True)
    log.log(1, {"loss": 1.0}, kind="train")
    log.close()
    assert any(p.name.startswith("events") for p in (tmp_path / "tb").iterdir())
