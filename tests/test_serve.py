"""`soundlm serve`'s HTTP API through FastAPI's TestClient, on the tiny random bundle.

Valid jobs of each AudioLM task, batching, every kind of bad input (unreadable, empty, NaN,
silent, too long, too large, traversing names), a full queue, cancelling and abandoning.
The worker can be held at a gate (`held`) so queue states are reached without timing.
"""

from __future__ import annotations

import importlib.util
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from soundlm.serve.app import create_app, event_lines  # noqa: E402
from soundlm.serve.config import ServeConfig  # noqa: E402
from soundlm.serve.models import ServeModels  # noqa: E402
from tiny_bundle import SR, make_tiny_bundle, tone  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def models(bundle) -> ServeModels:
    return ServeModels.load(ServeConfig(model=str(bundle), device="cpu"))


def make_client(models: ServeModels, tmp_path: Path, **overrides) -> TestClient:
    settings = {"speaker_similarity": False, **overrides}
    config = ServeConfig(model=str(models.model_dir), device="cpu", jobs_dir=str(tmp_path / "jobs"), **settings)
    return TestClient(create_app(config, models))


@pytest.fixture
def client(models, tmp_path):
    with make_client(models, tmp_path) as c:
        yield c


def wav_bytes(audio: np.ndarray, sample_rate: int = SR, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, sample_rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def wait(client: TestClient, job_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["state"] in ("done", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s: {status}")


def submit(client: TestClient, files: dict | None = None, **fields) -> dict:
    response = client.post("/api/jobs", data={k: str(v) for k, v in fields.items()}, files=files)
    assert response.status_code == 202, response.text
    return response.json()


def jobs_on_disk(client: TestClient) -> list[Path]:
    return sorted(client.app.state.jobs_dir.iterdir())


class held:
    """Hold the worker at a gate before each batch until released (queue states without timing)."""

    def __init__(self, client: TestClient):
        self.queue = client.app.state.queue
        self.gate = threading.Event()
        self.runner = self.queue.runner

    def __enter__(self) -> "held":
        def gated(batch):
            self.gate.wait(30)
            return self.runner(batch)

        self.queue.runner = gated
        return self

    def release(self) -> None:
        self.gate.set()

    def __exit__(self, *exc) -> None:
        self.gate.set()
        self.queue.runner = self.runner


def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def prompt_samples(models: ServeModels, audio_samples: int, rate: int = SR) -> int:
    """The pipeline's rule: the prompt is cut to whole codec frames."""
    hop = rate / models.pipe.codec.frame_rate
    return int(round(int(audio_samples // hop) * hop * models.sample_rate / rate))


# ---- valid jobs ------------------------------------------------------------------------------
def test_continue_an_upload_gives_prompt_plus_the_requested_seconds(client, models):
    audio = tone(1.3)
    status = submit(client, {"audio": ("my voice.wav", wav_bytes(audio), "audio/wav")}, task="continue",
                    seconds=0.5, num_samples=2, seed=3)
    assert status["state"] in ("queued", "running")
    done = wait(client, status["id"])
    assert done["state"] == "done", done
    result = done["result"]
    expected = prompt_samples(models, len(audio)) + round(0.5 * models.sample_rate)
    assert len(result["samples"]) == 2
    for sample in result["samples"]:
        wav = client.get(f"/api/jobs/{done['id']}/files/{sample['audio']}")
        assert wav.status_code == 200 and wav.headers["content-type"] == "audio/wav"
        data, rate = sf.read(io.BytesIO(wav.content))
        assert rate == models.sample_rate and len(data) == expected
        png = client.get(f"/api/jobs/{done['id']}/files/{sample['image']}")
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert sample["speaker_similarity"] is None
    assert "turned off" in result["speaker_similarity_note"]
    settings = result["settings"]
    assert settings["seed"] == 3 and settings["seconds"] == 0.5 and settings["prompt"] == "my voice.wav"


def test_generate_gives_exactly_the_requested_length(client, models):
    done = wait(client, submit(client, task="generate", seconds=0.7)["id"])
    assert done["state"] == "done", done
    data, _ = sf.read(io.BytesIO(client.get(f"/api/jobs/{done['id']}/files/sample_000.wav").content))
    assert len(data) == round(0.7 * models.sample_rate)
    assert done["result"]["speaker_similarity_note"] == "no prompt voice to compare with"


def test_speaker_similarity_of_the_continuation_to_the_prompt(models, tmp_path):
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("resemblyzer is not installed (the eval extra)")
    with make_client(models, tmp_path, speaker_similarity=True) as client:
        done = wait(client, submit(client, task="continue", prompt="bundled", seconds=1.0)["id"])
    sample = done["result"]["samples"][0]
    assert done["result"]["speaker_similarity_note"] is None
    assert -1.0 <= sample["speaker_similarity"] <= 1.0


def test_progress_streams_as_server_sent_events_until_the_job_ends(client):
    job = submit(client, task="continue", prompt="bundled", seconds=1.0)
    events = event_lines(client.get(f"/api/jobs/{job['id']}/events").text)
    assert events[-1]["state"] == "done" and events[-1]["progress"] == 1.0
    running = [e["progress"] for e in events if e["state"] == "running"]
    assert running == sorted(running)  # progress never goes back
    # The step hooks saw every decoding step: one per new token, plus a prefill per window.
    job = client.app.state.queue.jobs[job["id"]]
    assert job.expected_steps <= job.steps <= 1.2 * job.expected_steps


def test_requests_with_different_prompts_and_seeds_share_one_generation_batch(client):
    uploads = {"a": ("a.wav", wav_bytes(tone(0.6))), "b": ("b.wav", wav_bytes(tone(0.9, freq=330.0)))}
    with held(client) as gate:
        blocker = submit(client, task="generate", seconds=0.3, seed=9)
        until(lambda: client.get(f"/api/jobs/{blocker['id']}").json()["state"] == "running")
        mixed = [submit(client, {"audio": uploads["a"]}, task="continue", seconds=0.4, seed=1),
                 submit(client, {"audio": uploads["b"]}, task="continue", seconds=0.4, num_samples=2, seed=2)]
        other_seconds = submit(client, task="continue", prompt="bundled", seconds=0.3, seed=1)
        assert [client.get(f"/api/jobs/{j['id']}").json()["position"] for j in (*mixed, other_seconds)] == [0, 1, 2]
        gate.release()
        done = [wait(client, j["id"]) for j in (*mixed, other_seconds)]
    assert [d["state"] for d in done] == ["done"] * 3
    assert [d["batch_size"] for d in done] == [2, 2, 1]
    assert [len(d["result"]["samples"]) for d in done] == [1, 2, 1]
    assert done[0]["result"]["settings"]["batch"] == {"jobs": 2, "samples": 3}
    assert [d["result"]["settings"]["prompt"] for d in done[:2]] == ["a.wav", "b.wav"]
    assert "batch" not in done[2]["result"]["settings"]
    # A batched job's audio is exactly what the same request gets alone.
    alone = wait(client, submit(client, {"audio": uploads["b"]}, task="continue", seconds=0.4, num_samples=2,
                                seed=2)["id"])
    assert alone["batch_size"] == 1
    for batched, single in zip(done[1]["result"]["samples"], alone["result"]["samples"]):
        got = client.get(f"/api/jobs/{done[1]['id']}/files/{batched['audio']}").content
        assert got == client.get(f"/api/jobs/{alone['id']}/files/{single['audio']}").content


def test_compress_then_decompress_round_trip(client, models):
    audio = tone(0.8)
    packed = wait(client, submit(client, {"audio": ("clip.wav", wav_bytes(audio))}, task="compress",
                                 mode="tokens")["id"])
    assert packed["state"] == "done", packed
    stats = packed["result"]["stats"]
    slmc = client.get(f"/api/jobs/{packed['id']}/files/compressed.slmc").content
    assert len(slmc) == stats["output_bytes"] and stats["ratio"] < 1
    unpacked = wait(client, submit(client, {"audio": ("clip.slmc", slmc)}, task="decompress")["id"])
    assert unpacked["state"] == "done", unpacked
    for job in (packed, unpacked):  # both directions walk the stage LMs: the step hooks count every token
        record = client.app.state.queue.jobs[job["id"]]
        assert 0 < record.expected_steps <= record.steps <= 1.2 * record.expected_steps
    data, rate = sf.read(io.BytesIO(client.get(f"/api/jobs/{unpacked['id']}/files/sample_000.wav").content))
    assert rate == models.sample_rate and len(data) == round(len(audio) * models.sample_rate / SR)


def test_openapi_schema_describes_the_job_form(client):
    schema = client.get("/openapi.json").json()
    post = schema["paths"]["/api/jobs"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"400", "413", "503"} <= set(post["responses"])
    assert "/api/jobs/{job_id}/events" in schema["paths"]
    assert client.get("/").status_code == 200 and "soundlm" in client.get("/").text


# ---- bad input ---------------------------------------------------------------------------------
def cli_reason(tmp_path: Path, name: str, data: bytes) -> str:
    """What `soundlm continue` prints for this file, with its folder cut (the API names the upload)."""
    from typer.testing import CliRunner

    from soundlm.cli import app

    path = tmp_path / name
    path.write_bytes(data)
    res = CliRunner().invoke(app, ["continue", str(path), "--seconds", "1", "--out", str(tmp_path / "out")])
    assert res.exit_code == 2
    return res.output.strip().removeprefix("error: ").replace(f"{tmp_path}/", "")


@pytest.mark.parametrize("name,data,reason", [
    ("garbage.wav", b"RIFF not really audio" * 20, "unreadable audio"),
    ("nan.wav", wav_bytes(np.full(1600, np.nan, dtype=np.float32), subtype="FLOAT"), "non-finite audio"),
    ("silent.wav", wav_bytes(np.zeros(16000, dtype=np.float32)), "silent audio"),
    ("empty.wav", wav_bytes(np.zeros(0, dtype=np.float32)), "empty audio"),
])
def test_bad_audio_gets_400_with_the_cli_reason_and_leaves_nothing(client, tmp_path, name, data, reason):
    response = client.post("/api/jobs", data={"task": "continue", "seconds": "1"}, files={"audio": (name, data)})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert reason in detail and "\n" not in detail
    assert detail == cli_reason(tmp_path, name, data)
    assert jobs_on_disk(client) == []


def test_zero_byte_upload_and_missing_upload_get_400(client):
    response = client.post("/api/jobs", data={"task": "continue"}, files={"audio": ("x.wav", b"")})
    assert response.status_code == 400 and response.json()["detail"].startswith("x.wav: empty upload")
    response = client.post("/api/jobs", data={"task": "compress"})
    assert response.status_code == 400 and "needs audio" in response.json()["detail"]
    assert jobs_on_disk(client) == []


def test_uploaded_names_never_become_paths(client, tmp_path):
    name = "../../escape.wav"
    response = client.post("/api/jobs", data={"task": "continue", "seconds": "0.3"},
                           files={"audio": (name, wav_bytes(tone(0.5)))})
    assert response.status_code == 202
    done = wait(client, response.json()["id"])
    assert done["result"]["settings"]["prompt"] == "escape.wav"
    assert not list(tmp_path.parent.rglob("escape.wav")) and not (tmp_path / "escape.wav").exists()
    assert [p.name for p in (client.app.state.jobs_dir / done["id"]).iterdir() if p.suffix == ".wav"] == [
        "input.wav", "sample_000.wav"]
    bad = client.post("/api/jobs", data={"task": "continue"}, files={"audio": ("../../escape.wav", b"junk" * 50)})
    assert bad.status_code == 400 and bad.json()["detail"].startswith("escape.wav: ")
    for path in ("..%2F..%2Fetc%2Fpasswd", "input.wav", "nothing.png"):
        assert client.get(f"/api/jobs/{done['id']}/files/{path}").status_code == 404


def test_too_long_prompt_gets_400_naming_the_limit(models, tmp_path):
    with make_client(models, tmp_path, max_prompt_seconds=1.0) as client:
        response = client.post("/api/jobs", data={"task": "continue"},
                               files={"audio": ("long.wav", wav_bytes(tone(2.0)))})
        assert response.status_code == 400
        assert "limit of 1 s" in response.json()["detail"] and "--max-prompt-seconds" in response.json()["detail"]
        assert jobs_on_disk(client) == []


def test_uploads_over_the_size_limit_get_413(models, tmp_path):
    with make_client(models, tmp_path, max_upload_mb=0.01) as client:  # 10 KiB
        # Over the file limit but inside the body limit: refused while the file is stored.
        response = client.post("/api/jobs", data={"task": "continue"},
                               files={"audio": ("big.wav", wav_bytes(tone(1.0)))})
        assert response.status_code == 413 and "--max-upload-mb" in response.json()["detail"]
        # Over the body limit: refused from Content-Length, before the body is read.
        response = client.post("/api/jobs", data={"task": "continue"}, files={"audio": ("huge.wav", b"0" * 2_000_000)})
        assert response.status_code == 413 and "--max-upload-mb" in response.json()["detail"]
        # A chunked body (no Content-Length) is cut off once it passes the limit while streaming in.
        response = client.post("/api/jobs", content=chunked_form(3_000_000),
                               headers={"Content-Type": "multipart/form-data; boundary=xx"})
        assert response.status_code == 413 and "transfer-encoding" in response.request.headers
        assert jobs_on_disk(client) == []


def chunked_form(size: int):
    """A multipart body with one file of `size` bytes, as a generator (httpx sends it chunked)."""
    yield b'--xx\r\nContent-Disposition: form-data; name="task"\r\n\r\ncontinue\r\n'
    yield b'--xx\r\nContent-Disposition: form-data; name="audio"; filename="a.wav"\r\n\r\n'
    for _ in range(size // 65536):
        yield b"0" * 65536
    yield b"\r\n--xx--\r\n"


@pytest.mark.parametrize("fields,reason", [
    ({"task": "continue", "prompt": "bundled", "seconds": "500"}, "--max-seconds"),
    ({"task": "generate", "num_samples": "50"}, "--max-samples"),
    ({"task": "generate", "seconds": "-1"}, "seconds"),
    ({"task": "sing"}, "task"),
    ({"task": "tts", "text": "hello"}, "--palm"),
    ({"task": "compress", "prompt": "bundled", "mode": "lossless"}, "--compressor"),
])
def test_bad_settings_get_a_one_line_400(client, fields, reason):
    response = client.post("/api/jobs", data=fields)
    assert response.status_code == 400, response.text
    assert reason in response.json()["detail"] and isinstance(response.json()["detail"], str)


def test_a_file_from_another_model_does_not_decompress(client, tmp_path):
    response = client.post("/api/jobs", data={"task": "decompress"}, files={"audio": ("x.slmc", b"SLMC" + b"\0" * 64)})
    assert response.status_code == 400 and response.json()["detail"].startswith("x.slmc")
    assert jobs_on_disk(client) == []


# ---- load: queue, cancel, abandon --------------------------------------------------------------
def test_a_full_queue_answers_503_with_retry_after(models, tmp_path):
    with make_client(models, tmp_path, queue_size=1) as client, held(client) as gate:
        running = submit(client, task="generate", seconds=0.3)
        until(lambda: client.get(f"/api/jobs/{running['id']}").json()["state"] == "running")
        waiting = submit(client, task="generate", seconds=0.3, seed=1)
        response = client.post("/api/jobs", data={"task": "generate", "seconds": "0.3"})
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) >= 1 and "--queue-size" in response.json()["detail"]
        gate.release()
        assert wait(client, running["id"])["state"] == wait(client, waiting["id"])["state"] == "done"
        assert client.post("/api/jobs", data={"task": "generate", "seconds": "0.3"}).status_code == 202


def test_cancel_a_queued_and_a_running_job(client):
    queue = client.app.state.queue
    with held(client) as gate:
        running = submit(client, task="continue", prompt="bundled", seconds=8.0)
        until(lambda: client.get(f"/api/jobs/{running['id']}").json()["state"] == "running")
        queued = submit(client, task="generate", seconds=0.3, seed=5)
        status = client.post(f"/api/jobs/{queued['id']}/cancel").json()
        assert status["state"] == "cancelled" and status["position"] is None
        assert not (client.app.state.jobs_dir / queued["id"]).exists()
        client.post(f"/api/jobs/{running['id']}/cancel")
        after = submit(client, task="generate", seconds=0.3)
        gate.release()
        # The cancelled batch stops at its first decoding step, and the slot serves the next job.
        assert wait(client, after["id"])["state"] == "done"
    job = queue.jobs[running["id"]]
    assert job.state == "cancelled" and job.result is None and job.steps <= 1 < job.expected_steps
    assert not job.folder.exists()


def test_a_job_nobody_follows_is_dropped(models, tmp_path):
    with make_client(models, tmp_path, abandon_seconds=0.3) as client, held(client) as gate:
        queue = client.app.state.queue
        running = submit(client, task="generate", seconds=0.3)
        until(lambda: queue.jobs[running["id"]].state == "running")
        # Nobody polls either job (reading queue.jobs does not count as a poll).
        until(lambda: queue.jobs[running["id"]].state == "cancelled", timeout=5)
        assert "abandoned" in queue.jobs[running["id"]].stage
        gate.release()
        until(lambda: not queue.jobs[running["id"]].folder.exists())


def test_preferences_are_appended_as_jsonl_with_copies_of_both_samples(models, tmp_path):
    prefs = tmp_path / "prefs" / "preferences.jsonl"
    with make_client(models, tmp_path, preferences=str(prefs)) as client:
        done = wait(client, submit(client, task="continue", prompt="bundled", seconds=0.3, num_samples=2)["id"])
        choice = {"job": done["id"], "a": "sample_000.wav", "b": "sample_001.wav", "choice": "b"}
        assert client.post("/api/preferences", json=choice).status_code == 200
        assert client.post("/api/preferences", json=choice | {"b": "sample_000.wav"}).status_code == 400
    rows = [json.loads(line) for line in prefs.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["choice"] == "b" and rows[0]["prompt"] == "prompt.wav (bundled)"
    assert {"prompt", "a", "b", "choice", "time"} <= set(rows[0])
    for side in ("a", "b"):
        assert sf.info(str(prefs.parent / rows[0][side])).frames > 0
