"""`soundlm serve`'s music task on a tiny random music bundle: captions -> wavs + music.json, its limits, its
absence, and A/B judgements of music that `soundlm train prefer --pairs` reads."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from soundlm.serve.config import ServeConfig  # noqa: E402
from soundlm.serve.models import ServeModels  # noqa: E402
from test_serve import held, make_client, submit, until, wait  # noqa: E402
from tiny_bundle import SR, StandInMuLan, make_tiny_bundle, make_tiny_music_bundle  # noqa: E402

CAPTIONS = ["a calm piano piece in C major", "upbeat flute melody in D major"]
MUSIC_SR = 24000  # the music model's rate differs from the speech model's (SR)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> ServeModels:
    """A server's models: a 16 kHz speech bundle and a 24 kHz music bundle (--music-model)."""
    root = tmp_path_factory.mktemp("serve-music")
    speech, music = make_tiny_bundle(root / "speech"), make_tiny_music_bundle(root / "music", sample_rate=MUSIC_SR)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("soundlm.music.mulan.load_mulan", lambda folder, device="cpu": StandInMuLan.load(folder))
        return ServeModels.load(ServeConfig(model=str(speech), music_model=str(music), device="cpu"))


@pytest.fixture
def client(models, tmp_path):
    with make_client(models, tmp_path, preferences=str(tmp_path / "prefs" / "judgements.jsonl")) as c:
        yield c


def submit_music(client, captions: list[str], **fields) -> dict:
    """Submit a music job: `captions` as a repeated form field, as a browser's FormData sends a list."""
    response = client.post("/api/jobs", data={"task": "music", "captions": captions,
                                              **{k: str(v) for k, v in fields.items()}})
    assert response.status_code == 202, response.text
    return response.json()


def music_job(client, captions: list[str], **fields) -> dict:
    status = wait(client, submit_music(client, captions, **fields)["id"])
    assert status["state"] == "done", status
    return status


def read_wav(client, job_id: str, name: str) -> tuple[np.ndarray, int]:
    response = client.get(f"/api/jobs/{job_id}/files/{name}")
    assert response.status_code == 200 and response.headers["content-type"] == "audio/wav"
    return sf.read(io.BytesIO(response.content))


def test_captions_become_wavs_of_the_requested_length_and_music_json(client, models):
    status = music_job(client, CAPTIONS, seconds=0.5, num_samples=2, seed=3, guidance=3.0)
    result, music = status["result"], models.music
    names = ["music_00_000", "music_00_001", "music_01_000", "music_01_001"]
    assert [s["audio"] for s in result["samples"]] == [f"{n}.wav" for n in names]
    assert [s["caption"] for s in result["samples"]] == [CAPTIONS[0]] * 2 + [CAPTIONS[1]] * 2
    want = music.generate(CAPTIONS, seconds=0.5, num_samples=2, guidance=3.0, seed=3)
    for sample, expected in zip(result["samples"], [w for per in want for w in per]):
        audio, rate = read_wav(client, status["id"], sample["audio"])
        assert rate == MUSIC_SR and audio.shape == (round(0.5 * MUSIC_SR),)
        np.testing.assert_allclose(audio, expected[0], atol=2e-4)  # the library's audio, int16 rounding aside
    record = client.get(f"/api/jobs/{status['id']}/files/music.json").json()
    assert record["captions"] == CAPTIONS and record["guidance"] == 3.0 and record["seed"] == 3
    assert record["sample_rate"] == music.sample_rate
    assert record["condition_tokens"] == music.condition_tokens(CAPTIONS).tolist()
    assert [f["file"] for f in record["files"]] == [s["audio"] for s in result["samples"]]
    assert result["settings"]["model"] == models.music_dir.name and result["settings"]["captions"] == CAPTIONS
    # The progress bar followed the music stages' decoding steps (one per step, CFG's two halves in one forward).
    job = client.app.state.queue.jobs[status["id"]]
    assert job.expected_steps <= job.steps <= 1.2 * job.expected_steps
    info = client.get("/api/info").json()
    assert info["tasks"]["music"] is None and (info["music_sample_rate"], info["sample_rate"]) == (MUSIC_SR, SR)
    speech = wait(client, submit(client, task="generate", seconds=0.5)["id"])  # the speech model keeps its rate
    assert read_wav(client, speech["id"], "sample_000.wav")[1] == SR
    assert info["defaults"]["guidance"] == 3.0 and info["limits"]["max_captions"] == 4


def test_music_jobs_with_the_same_settings_share_a_batch_and_get_what_they_get_alone(client, models):
    with held(client) as gate:
        blocker = submit_music(client, ["a blocker"], seconds=0.2)
        until(lambda: client.get(f"/api/jobs/{blocker['id']}").json()["state"] == "running")
        # Unguided: a guided step's 2B-row forward rounds differently with the batch size (test_music_pipeline).
        mixed = [submit_music(client, [CAPTIONS[0]], seconds=0.4, seed=1, guidance=1),
                 submit_music(client, [CAPTIONS[1]], seconds=0.4, seed=7, num_samples=2, guidance=1)]
        other_guidance = submit_music(client, [CAPTIONS[1]], seconds=0.4, seed=7, guidance=3)
        gate.release()
        done = [wait(client, j["id"]) for j in (*mixed, other_guidance)]
    assert [d["batch_size"] for d in done] == [2, 2, 1]
    assert done[1]["result"]["settings"]["batch"] == {"jobs": 2, "samples": 3}
    alone = models.music.generate([CAPTIONS[1]], seconds=0.4, num_samples=2, guidance=1.0, seed=7)[0]
    for sample, expected in zip(done[1]["result"]["samples"], alone):
        audio, _ = read_wav(client, done[1]["id"], sample["audio"])
        np.testing.assert_allclose(audio, expected[0], atol=2e-4)


def test_a_running_music_job_stops_at_its_next_step_when_cancelled(client):
    with held(client) as gate:
        running = submit_music(client, CAPTIONS, seconds=10, num_samples=4)
        until(lambda: client.get(f"/api/jobs/{running['id']}").json()["state"] == "running")
        assert client.post(f"/api/jobs/{running['id']}/cancel").json()["state"] == "cancelled"
        gate.release()
        after = submit_music(client, ["next"], seconds=0.2)
        assert wait(client, after["id"])["state"] == "done"
    job = client.app.state.queue.jobs[running["id"]]
    assert job.result is None and job.steps <= 1 < job.expected_steps and not job.folder.exists()


@pytest.mark.parametrize("fields, reason", [
    ({"captions": []}, "captions: 0 given; a music request takes 1 to 4"),
    ({"captions": ["a", "b", "c", "d", "e"]}, "captions: 5 given; a music request takes 1 to 4"),
    ({"captions": ["piano", "  "]}, "captions: caption 2 is empty"),
    ({"captions": ["x" * 301]}, "caption 1 is over 300 characters"),
    ({"captions": ["piano"], "seconds": 11}, "seconds=11 is over this server's music limit of 10 s "
                                             "(--max-music-seconds)"),
    ({"captions": CAPTIONS, "num_samples": 5}, "2 caption(s) x num_samples=5 = 10 samples is over this server's "
                                               "music limit of 8 (--max-music-samples)"),
    ({"captions": ["piano"], "guidance": -1}, "guidance: Input should be greater than or equal to 0"),
])
def test_bad_music_requests_get_a_one_line_400(client, fields, reason):
    response = client.post("/api/jobs", data={"task": "music", **fields})
    assert response.status_code == 400, response.text
    assert reason in response.json()["detail"] and "\n" not in response.json()["detail"]
    assert not list(client.app.state.jobs_dir.iterdir())


def test_without_a_music_model_the_task_is_listed_unavailable_with_the_fix(models, tmp_path, monkeypatch):
    import soundlm.pretrained as pretrained

    monkeypatch.setattr(pretrained, "ASSETS_DIR", tmp_path / "assets")  # soundlm ships no music model
    speech_only = ServeModels(pipe=models.pipe, model_dir=models.model_dir)
    speech_only.load_music(None)
    assert speech_only.music is None
    with make_client(speech_only, tmp_path) as client:
        info = client.get("/api/info").json()
        assert "--music-model" in info["tasks"]["music"] and info["music_model"] is None
        assert info["tasks"]["generate"] is None
        response = client.post("/api/jobs", data={"task": "music", "captions": ["piano"]})
        assert response.status_code == 400 and "task music is not available" in response.json()["detail"]
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        speech_only.load_music(str(tmp_path / "missing"))  # asked for: a start-up error, not a quiet absence


def test_the_shipped_music_model_is_the_default_and_none_turns_music_off(models, tmp_path, monkeypatch,
                                                                          stand_in_mulan):
    import soundlm.pretrained as pretrained

    monkeypatch.setattr(pretrained, "ASSETS_DIR", tmp_path / "assets")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "musiclm-tiny").symlink_to(models.music_dir)  # the test bundle stands in for it
    default = ServeModels(pipe=models.pipe, model_dir=models.model_dir)
    default.load_music(None)
    assert default.music_dir.name == "musiclm-tiny" and default.music.sample_rate == MUSIC_SR
    assert default.unavailable()["music"] is None
    off = ServeModels(pipe=models.pipe, model_dir=models.model_dir)
    off.load_music("none")
    assert off.music is None and off.unavailable()["music"] == "turned off on this server (--music-model none)"


def test_an_ab_judgement_of_music_is_a_pair_train_prefer_reads(client, models, stand_in_mulan):
    import torch

    from soundlm.audio import load_audio
    from soundlm.music.pairs import preference_pairs, read_human_pairs
    from soundlm.stages import load_stage
    from soundlm.train.prefer import PreferTrainConfig, musiclm_pair_tokenizer, train_prefer

    both = music_job(client, CAPTIONS, seconds=0.5, num_samples=2)
    two_captions = client.post("/api/preferences", json={"job": both["id"], "a": "music_00_000.wav",
                                                         "b": "music_01_000.wav", "choice": "a"})
    assert two_captions.status_code == 400 and "different captions" in two_captions.json()["detail"]
    row = client.post("/api/preferences", json={"job": both["id"], "a": "music_01_000.wav", "b": "music_01_001.wav",
                                                "choice": "b"}).json()
    assert row["prompt"] == CAPTIONS[1]
    jsonl = Path(client.app.state.config.preferences)
    assert json.loads(jsonl.read_text().splitlines()[0]) == row
    bundle = models.music_dir
    stage = load_stage(bundle / "semantic", "semantic")
    tokenize = musiclm_pair_tokenizer(bundle, stage, torch.device("cpu"))
    human = read_human_pairs(jsonl, tokenize, jsonl.parent / "run" / "pairs.jsonl", progress=False)
    assert not human.skipped and [g.caption for g in human.groups] == [CAPTIONS[1]]
    (pair,) = preference_pairs(human.groups)
    chosen = jsonl.parent / row["b"]
    expected = tokenize(load_audio(chosen, mono=False), MUSIC_SR, CAPTIONS[1])
    assert torch.equal(pair.chosen.tokens, expected.tokens)  # the chosen clip, conditioned on its caption
    # And `soundlm train prefer --pairs FILE --tokenizer musiclm` tunes the music bundle on it.
    cfg = PreferTrainConfig(base=str(bundle), out=str(jsonl.parent / "prefer"), pairs=str(jsonl), tokenizer="musiclm",
                            steps=2, batch_size=1, warmup=1, ckpt_every=10, device="cpu", progress=False)
    assert (train_prefer(cfg) / "model.safetensors").is_file()
    assert json.loads((jsonl.parent / "prefer" / "prefer.json").read_text())["pairs"] == 1
