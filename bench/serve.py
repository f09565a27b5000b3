"""Load test of `soundlm serve`: many concurrent clients against a server on 127.0.0.1, a fixed request count.

Starts `soundlm serve` as a subprocess on a free loopback port (the shipped model unless
--model), then `--clients` threads share `--requests` requests. Each request submits a
continuation of the bundled prompt (every `--bad-every`-th one uploads a broken file
instead), follows it by polling, and fetches the wav; a 503 answer is counted and its
client waits Retry-After before its next request (503'd requests are not retried: the count
is fixed and the run stops by itself). Meanwhile a probe times GET /api/info (does the server
keep answering?) and the server's resident memory is sampled from /proc.

With `--prompts mixed` each request uploads its own prompt instead: the bundled prompt cut
to one of four lengths (`MIXED_SECONDS`), with its own seed (the request's index), so a
batch holds different prompts of different lengths (left-padded in one generation call).

Each request must end in a result whose wav has the requested length, a 400 (the broken
uploads) or a 503; anything else is reported as an error. Rows: batching on (--max-batch,
compatible requests share one generation) and off (max batch 1).

    python bench/serve.py --clients 32 --requests 64 --seconds 1
    python bench/serve.py --prompts mixed --clients 8 --requests 16 --seconds 1 --bad-every 0

Prints a table and writes bench/results/serve.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]

import argparse  # noqa: E402
import http.client  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from common import machine_info, print_table, write_results  # noqa: E402

BOUNDARY = "soundlmbench"
MIXED_SECONDS = (1.2, 1.7, 2.2, 2.7)  # --prompts mixed: the bundled prompt cut to these lengths


def form(fields: dict, file: tuple[str, bytes] | None = None) -> bytes:
    parts = [f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode()
             for k, v in fields.items()]
    if file is not None:
        parts.append(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"{file[0]}\"\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + file[1] + b"\r\n")
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict | None = None) -> tuple[int, dict, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Outcomes:
    done: int = 0
    bad_request: int = 0
    busy: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    probe: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    batch_sizes: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class Prompt:
    """What a request sends: an upload (None: the bundled prompt) and the wav length its result must have."""

    upload: tuple[str, bytes] | None
    expected: int


def prompts(mode: str, sample_rate: int, frame_rate: float, seconds: float) -> list[Prompt]:
    """The bundled prompt ("bundled"), or it cut to each of MIXED_SECONDS as uploads ("mixed")."""
    import soundfile as sf

    from soundlm.pretrained import default_prompt_path

    audio, rate = sf.read(str(default_prompt_path()), dtype="float32")
    hop = rate / frame_rate

    def expected(samples: int) -> int:  # the pipeline cuts the prompt to whole codec frames
        return int(round(int(samples // hop) * hop * sample_rate / rate)) + round(seconds * sample_rate)

    if mode == "bundled":
        return [Prompt(None, expected(len(audio)))]
    out = []
    for s in MIXED_SECONDS:
        cut = audio[: int(s * rate)]
        buf = io.BytesIO()
        sf.write(buf, cut, rate, format="WAV", subtype="PCM_16")
        out.append(Prompt((f"prompt_{s:g}s.wav", buf.getvalue()), expected(len(cut))))
    return out


def one_request(port: int, index: int, args: argparse.Namespace, prompt: Prompt, out: Outcomes) -> float:
    """Run request `index`; returns how long its client should wait before the next one."""
    import soundfile as sf

    bad = args.bad_every > 0 and index % args.bad_every == args.bad_every - 1
    fields = {"task": "continue", "prompt": "upload" if bad or prompt.upload else "bundled", "seconds": args.seconds,
              "seed": index if prompt.upload else 0}
    upload = ("broken.wav", b"RIFF" + b"\x00" * 200) if bad else prompt.upload
    body = form(fields, upload)
    t0 = time.perf_counter()
    status, headers, data = call(port, "POST", "/api/jobs", body,
                                 {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    if status == 503:
        with out.lock:
            out.busy += 1
        return min(float(headers.get("Retry-After", headers.get("retry-after", "1"))), 10.0)
    if status == 400 and bad:
        with out.lock:
            out.bad_request += 1
        return 0.0
    if status != 202:
        with out.lock:
            out.errors.append(f"submit {status}: {data[:200]!r}")
        return 0.0
    job = json.loads(data)["id"]
    while True:
        status, _, data = call(port, "GET", f"/api/jobs/{job}")
        state = json.loads(data)
        if state["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.2)
    if state["state"] != "done":
        with out.lock:
            out.errors.append(f"job {state['state']}: {state['error'] or state['stage']}")
        return 0.0
    name = state["result"]["samples"][0]["audio"]
    status, _, wav = call(port, "GET", f"/api/jobs/{job}/files/{name}")
    frames = sf.info(io.BytesIO(wav)).frames if status == 200 else -1
    with out.lock:
        if frames != prompt.expected:
            out.errors.append(f"wav of {frames} samples, expected {prompt.expected}")
        else:
            out.done += 1
            out.latencies.append(time.perf_counter() - t0)
            out.batch_sizes.append(state["batch_size"])
    return 0.0


def run_load(args: argparse.Namespace, max_batch: int) -> dict:
    from soundlm.pretrained import default_model_dir, load_pipeline

    model = args.model or str(default_model_dir())
    pipe = load_pipeline(model, device="cpu")
    choices = prompts(args.prompts, pipe.sample_rate, float(pipe.codec.frame_rate), args.seconds)
    del pipe
    port = free_port()
    cmd = [sys.executable, "-c", "from soundlm.cli import main; main()", "serve", "--model", model,
           "--port", str(port), "--max-batch", str(max_batch), "--queue-size", str(args.queue_size),
           "--workers", "1", "--device", "cpu", "--no-speaker-similarity"]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
    out = Outcomes()
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if call(port, "GET", "/api/info")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.2)
        rss_start = rss_mb(server.pid)
        remaining = list(range(args.requests))
        stop = threading.Event()

        def client() -> None:
            while True:
                with out.lock:
                    if not remaining:
                        return
                    index = remaining.pop(0)
                try:
                    pause = one_request(port, index, args, choices[index % len(choices)], out)
                except OSError as e:
                    with out.lock:
                        out.errors.append(f"connection: {e}")
                    pause = 0.0
                time.sleep(pause)

        def probe() -> None:
            while not stop.is_set():
                t = time.perf_counter()
                status = call(port, "GET", "/api/info")[0]
                with out.lock:
                    out.probe.append(time.perf_counter() - t if status == 200 else float("inf"))
                    out.rss.append(rss_mb(server.pid))
                stop.wait(0.5)

        started = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        watcher = threading.Thread(target=probe)
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
        stop.set()
        watcher.join()
    finally:
        server.terminate()
        server.wait(timeout=60)

    def pct(values: list[float], q: float) -> float | None:
        return statistics.quantiles(values, n=100)[q - 1] if len(values) >= 2 else (values[0] if values else None)

    return {"prompts": args.prompts, "max_batch": max_batch, "requests": args.requests, "results": out.done, "bad_request_400": out.bad_request,
            "busy_503": out.busy, "errors": len(out.errors), "error_examples": out.errors[:5],
            "wall_seconds": round(wall, 2), "results_per_second": round(out.done / wall, 4),
            "latency_p50": pct(out.latencies, 50), "latency_p95": pct(out.latencies, 95),
            "mean_batch_size": round(statistics.mean(out.batch_sizes), 2) if out.batch_sizes else None,
            "info_p95_ms": 1000 * pct(out.probe, 95) if out.probe else None,
            "rss_start_mb": round(rss_start, 1), "rss_peak_mb": round(max(out.rss, default=rss_start), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="AudioLM bundle (default: the shipped speech-tiny)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds of continuation per request")
    parser.add_argument("--prompts", choices=("bundled", "mixed"), default="bundled",
                        help="bundled: every request continues the bundled prompt (seed 0); mixed: uploads of "
                             f"{len(MIXED_SECONDS)} lengths, each request its own seed")
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--bad-every", type=int, default=8, help="every Nth request uploads a broken file (0: none)")
    parser.add_argument("--threads", type=int, default=1, help="the server's OMP_NUM_THREADS")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = [run_load(args, args.max_batch)]
    if args.max_batch > 1:
        rows.append(run_load(args, 1))
    print_table(rows, [("prompts", "prompts", "s"), ("max_batch", "max batch", "d"), ("results", "results", "d"),
                       ("bad_request_400", "400", "d"), ("busy_503", "503", "d"), ("errors", "errors", "d"),
                       ("results_per_second", "results/s", ".3f"), ("latency_p50", "p50 s", ".2f"),
                       ("latency_p95", "p95 s", ".2f"), ("mean_batch_size", "mean batch", ".2f"),
                       ("info_p95_ms", "/api/info p95 ms", ".1f"), ("rss_start_mb", "RSS start MB", ".0f"),
                       ("rss_peak_mb", "RSS peak MB", ".0f")])
    path = write_results("serve" if args.prompts == "bundled" else "serve_mixed", {"machine": machine_info(args.threads), "args": {k: str(v) for k, v in
                                                                                   vars(args).items()},
                                   "rows": rows}, args.out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
