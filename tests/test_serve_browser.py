"""`soundlm serve` over real HTTP: uvicorn on a free loopback port, driven by headless Chromium (Selenium).

The browser test uploads the bundled prompt through the page's file input, runs a short
continuation, and decodes the file behind the audio element that appears; it also records
from Chromium's fake microphone, fills the Music tab's captions, and judges a music pair on
the A/B page. A screenshot of the page after the run goes to the test's
temp folder. Without Chromium and its driver (Debian's `chromium`, `chromium-driver`, which
`make test` installs) the browser tests are skipped, saying so; the disconnect test needs
no browser.
"""

from __future__ import annotations

import http.client
import io
import json
import shutil
import socket
import threading
import time
import urllib.request

import pytest
import soundfile as sf

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from soundlm.pretrained import default_prompt_path  # noqa: E402
from soundlm.serve.app import create_app  # noqa: E402
from soundlm.serve.config import ServeConfig  # noqa: E402
from test_serve import prompt_samples  # noqa: E402
from tiny_bundle import StandInMuLan, make_tiny_bundle, make_tiny_music_bundle  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
TIMEOUT = 120


def run_server(config: ServeConfig):
    """The app on uvicorn in a thread, on a loopback socket bound here (no port race); yields (url, app)."""
    app = create_app(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    host, port = sock.getsockname()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://{host}:{port}", app
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_http")
    yield from run_server(ServeConfig(model=str(make_tiny_bundle(root)), device="cpu", jobs_dir=str(root / "jobs"),
                                      speaker_similarity=False))


@pytest.fixture(scope="module")
def music_server(tmp_path_factory):
    """A server whose tiny music bundle serves speech and music; it records A/B choices to prefs/ab.jsonl."""
    root = tmp_path_factory.mktemp("serve_music_http")
    bundle = make_tiny_music_bundle(root)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("soundlm.music.mulan.load_mulan", lambda folder, device="cpu": StandInMuLan.load(folder))
        config = ServeConfig(model=str(bundle), music_model=str(bundle), device="cpu", jobs_dir=str(root / "jobs"),
                             speaker_similarity=False, preferences=str(root / "prefs" / "ab.jsonl"))
        yield from run_server(config)


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver (`make test` does)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000",
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                 "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def fill(driver, element_id: str, text: str) -> None:
    """Replace what the page's field `element_id` holds with `text`, typed."""
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def audio_seconds(driver, audio) -> float:
    """The duration the browser decodes from an audio element's file."""
    return driver.execute_script("""
        const audio = arguments[0];
        if (audio.readyState < 1) await new Promise((ok) => audio.addEventListener('loadedmetadata', ok));
        return audio.duration;""", audio)


def run_on_page(driver, seconds: str) -> str:
    """Press Run with `seconds`, wait for the new result card; returns its first audio element's src."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    before = len(driver.find_elements(By.CSS_SELECTOR, "#results article"))
    fill(driver, "seconds", seconds)
    driver.find_element(By.ID, "run").click()
    WebDriverWait(driver, TIMEOUT).until(
        lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results article")) > before
        or d.find_element(By.ID, "error").is_displayed())
    error = driver.find_element(By.ID, "error")
    assert not error.is_displayed(), error.text
    card = driver.find_elements(By.CSS_SELECTOR, "#results article")[0]
    audio = card.find_element(By.CSS_SELECTOR, "audio")
    WebDriverWait(driver, TIMEOUT).until(ec.element_to_be_clickable((By.ID, "run")))
    return audio.get_attribute("src")


def test_browser_uploads_the_prompt_and_plays_a_continuation_of_the_requested_length(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = server
    browser.get(url + "/")
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tasks button"))
    browser.find_element(By.CSS_SELECTOR, '#tasks button[data-task="continue"]').click()
    browser.find_element(By.ID, "file").send_keys(str(default_prompt_path()))
    assert browser.find_element(By.CSS_SELECTOR, 'input[name="source"][value="file"]').is_selected()
    src = run_on_page(browser, "1")
    assert src.startswith(url + "/api/jobs/")
    data, rate = sf.read(io.BytesIO(urllib.request.urlopen(src, timeout=30).read()))
    assert rate == app.state.models.sample_rate
    prompt = sf.info(str(default_prompt_path()))
    models = app.state.models
    assert len(data) == prompt_samples(models, prompt.frames, prompt.samplerate) + round(1.0 * models.sample_rate)
    card = browser.find_elements(By.CSS_SELECTOR, "#results article")[0]
    image = card.find_element(By.CSS_SELECTOR, "img")
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth > 0", image))
    assert "prompt.wav" in card.find_element(By.CSS_SELECTOR, "details pre").get_attribute("textContent")
    # The browser itself can decode and play the result.
    assert abs(audio_seconds(browser, card.find_element(By.CSS_SELECTOR, "audio")) - len(data) / rate) < 0.05
    browser.save_screenshot(str(tmp_path / "serve.png"))
    assert (tmp_path / "serve.png").stat().st_size > 10_000


def test_browser_records_the_microphone_and_continues_it(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = server
    browser.get(url + "/")
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tasks button"))
    browser.find_element(By.ID, "record").click()  # Chromium's fake microphone: a beeping tone
    WebDriverWait(browser, TIMEOUT).until(lambda d: "recording" in d.find_element(By.ID, "mic-status").text)
    time.sleep(1.5)
    browser.find_element(By.ID, "record").click()
    WebDriverWait(browser, TIMEOUT).until(lambda d: "recorded" in d.find_element(By.ID, "mic-status").text)
    assert browser.find_element(By.CSS_SELECTOR, 'input[name="source"][value="mic"]').is_selected()
    src = run_on_page(browser, "0.5")
    data, rate = sf.read(io.BytesIO(urllib.request.urlopen(src, timeout=30).read()))
    job = app.state.queue.jobs[src.split("/")[-3]]
    assert job.settings["prompt"] == "microphone.wav"
    assert len(data) > round(0.5 * rate)  # the recorded prompt plus the continuation


def test_closing_the_event_stream_cancels_the_job(server):
    url, app = server
    host, port = url.removeprefix("http://").split(":")
    boundary = "soundlmtest"
    fields = {"task": "continue", "prompt": "bundled", "seconds": "15"}
    body = "".join(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
                   for k, v in fields.items()) + f"--{boundary}--\r\n"
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/api/jobs", body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    job_id = json.loads(conn.getresponse().read())["id"]
    conn.close()
    stream = http.client.HTTPConnection(host, int(port), timeout=30)
    stream.request("GET", f"/api/jobs/{job_id}/events")
    response = stream.getresponse()
    assert response.getheader("content-type").startswith("text/event-stream")
    first = json.loads(response.readline().decode().removeprefix("data:"))
    assert first["id"] == job_id and first["state"] in ("queued", "running")
    stream.close()  # the client goes away mid-job
    job = app.state.queue.jobs[job_id]
    deadline = time.monotonic() + 30
    while not (job.state == "cancelled" and not job.folder.exists()):
        assert time.monotonic() < deadline, (job.state, job.stage)
        time.sleep(0.05)
    assert "disconnected" in job.stage and job.steps < job.expected_steps


def test_browser_cancel_button_stops_the_job(server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = server
    browser.get(url + "/")
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tasks button"))
    browser.find_element(By.CSS_SELECTOR, 'input[name="source"][value="bundled"]').click()
    fill(browser, "seconds", "20")
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_element(By.ID, "cancel").is_enabled())
    browser.find_element(By.ID, "cancel").click()
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_element(By.ID, "error").is_displayed())
    assert "cancelled by the client" in browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "run").is_enabled()
    job = max(app.state.queue.jobs.values(), key=lambda j: j.created)
    assert job.state == "cancelled" and job.settings["seconds"] == 20.0 and job.steps < job.expected_steps


def test_browser_music_tab_plays_one_sample_per_caption_and_sample(music_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = music_server
    browser.get(url + "/")
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#tasks button"))
    browser.find_element(By.CSS_SELECTOR, '#tasks button[data-task="music"]').click()
    assert browser.find_element(By.ID, "captions").is_displayed()
    assert not browser.find_element(By.ID, "input-box").is_displayed()  # music reads no audio
    fill(browser, "captions", "a calm piano piece\nfast drums")
    fill(browser, "num_samples", "2")
    src = run_on_page(browser, "0.5")
    card = browser.find_elements(By.CSS_SELECTOR, "#results article")[0]
    players = card.find_elements(By.CSS_SELECTOR, "audio")
    assert len(players) == 4 and src.endswith("/files/music_00_000.wav")
    heads = [h.text for h in card.find_elements(By.CSS_SELECTOR, ".sample-head")]
    assert "a calm piano piece" in heads[0] and "fast drums" in heads[3]
    rate = app.state.models.music.sample_rate
    data, got_rate = sf.read(io.BytesIO(urllib.request.urlopen(src, timeout=30).read()))
    assert got_rate == rate and len(data) == round(0.5 * rate)
    assert abs(audio_seconds(browser, players[3]) - 0.5) < 0.05
    assert card.find_element(By.PARTIAL_LINK_TEXT, "music.json").get_attribute("href").endswith("/files/music.json")
    browser.save_screenshot(str(tmp_path / "music.png"))
    assert (tmp_path / "music.png").stat().st_size > 10_000


def test_browser_ab_page_records_a_music_judgement_with_its_caption(music_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = music_server
    browser.get(url + "/ab")
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_element(By.ID, "new-pair").is_enabled())
    browser.find_element(By.CSS_SELECTOR, '#kinds button[data-kind="music"]').click()
    fill(browser, "caption", "soft strings, slow")
    fill(browser, "seconds", "0.5")
    browser.find_element(By.ID, "new-pair").click()
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_element(By.ID, "choices").is_displayed()
                                          or d.find_element(By.ID, "error").is_displayed())
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#pair audio")) == 2
    browser.save_screenshot(str(tmp_path / "ab.png"))
    assert (tmp_path / "ab.png").stat().st_size > 10_000
    browser.find_element(By.CSS_SELECTOR, '[data-choice="b"]').click()
    WebDriverWait(browser, TIMEOUT).until(lambda d: "1 preference" in d.find_element(By.ID, "recorded").text)
    row = json.loads(open(app.state.config.preferences, encoding="utf-8").read().splitlines()[0])
    assert row["prompt"] == "soft strings, slow" and row["choice"] == "b" and row["settings"]["task"] == "music"
    # The next pair starts by itself; cancel it so the server is idle for whatever runs next.
    WebDriverWait(browser, TIMEOUT).until(lambda d: d.find_element(By.ID, "cancel").is_enabled()
                                          or d.find_element(By.ID, "choices").is_displayed())
    if browser.find_element(By.ID, "cancel").is_enabled():
        browser.find_element(By.ID, "cancel").click()
