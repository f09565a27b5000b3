"""The FastAPI app of `soundlm serve`: the page, the JSON API (OpenAPI at /docs and /openapi.json), the queue.

    GET  /                          the page (plain HTML + JS from soundlm/serve/static, nothing from outside)
    GET  /ab                        A/B listening page
    GET  /api/info                  models, available tasks, limits, defaults
    POST /api/jobs                  submit (multipart: JobRequest fields + optional `audio` file) -> 202 JobStatus
    GET  /api/jobs/{id}             status (and result when done)
    GET  /api/jobs/{id}/events      the same as server-sent events, until the job ends
    POST /api/jobs/{id}/cancel      cancel
    GET  /api/jobs/{id}/files/{name}  a result file (wav, png, slmc)
    GET  /api/prompt                the bundled prompt
    POST /api/preferences           record an A/B choice (server started with --preferences FILE)

Music (task=music) runs on its own model (--music-model, or the shipped one), at its own
sample rate (/api/info's music_sample_rate) and under its own caps (--max-music-seconds,
--max-music-samples).

Errors are JSON `{"detail": "one line"}`: 400 bad input (the reason the CLI gives), 404,
413 upload too large, 503 queue full (with Retry-After).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles

from soundlm.serve.config import ServeConfig
from soundlm.serve.jobs import Job, JobQueue, QueueFull
from soundlm.serve.models import ServeModels
from soundlm.serve.schema import MAX_CAPTIONS, JobRequest, JobStatus, Preference, ServerInfo
from soundlm.serve.tasks import NO_AUDIO, audiolm_steps, check_request, new_job, new_job_id, run_batch
from soundlm.serve.uploads import UploadTooLarge, display_name, read_prompt, save_upload

STATIC = Path(__file__).resolve().parent / "static"
FORM_OVERHEAD = 1 << 20  # room for the form fields beside the file in a multipart body
EVENT_INTERVAL = 0.2  # seconds between checks of a watched job
BUNDLED_LABEL = "prompt.wav (bundled)"
MEDIA_TYPES = {".wav": "audio/wav", ".png": "image/png", ".slmc": "application/octet-stream"}


class BodyTooLarge(HTTPException):
    def __init__(self, upload_limit: int):
        super().__init__(413, f"the request is larger than this server takes: uploads up to {upload_limit / 2**20:g} "
                              "MB (--max-upload-mb); send a shorter or compressed file")


class BodyLimit:
    """ASGI middleware: refuse a request body past the upload limit while it streams in, not after it is stored.

    The body may exceed the upload limit by FORM_OVERHEAD (the form fields around the file);
    the exact limit on the file itself is enforced where it is stored (`save_upload`).
    """

    def __init__(self, app: Any, upload_limit: int):
        self.app, self.upload_limit = app, upload_limit
        self.limit = upload_limit + FORM_OVERHEAD

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            error = BodyTooLarge(self.upload_limit)
            return await JSONResponse({"detail": error.detail}, 413)(scope, receive, send)
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.upload_limit)  # an HTTPException: FastAPI answers 413
            return message

        await self.app(scope, limited, send)


def create_app(config: ServeConfig, models: ServeModels | None = None) -> FastAPI:
    """The app over loaded `models` (loaded from `config` when None); the queue starts with it."""
    models = models or ServeModels.load(config)
    own_dir = config.jobs_dir is None
    jobs_dir = Path(tempfile.mkdtemp(prefix="soundlm-serve-")) if own_dir else Path(config.jobs_dir)
    jobs_dir.mkdir(parents=True, exist_ok=True)
    queue = JobQueue(lambda batch: run_batch(batch, models, config), models.monitor, workers=config.workers,
                     queue_size=config.queue_size, max_batch=config.max_batch, keep_jobs=config.keep_jobs,
                     abandon_seconds=config.abandon_seconds)
    bundled: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        queue.close()
        if own_dir:
            shutil.rmtree(jobs_dir, ignore_errors=True)

    app = FastAPI(title="soundlm serve", version="1", lifespan=lifespan,
                  description="AudioLM continuation and generation, AudioPaLM tasks and LM compression over HTTP. "
                              "Submit a job, follow it (poll or server-sent events), fetch its files.")
    app.state.queue, app.state.models, app.state.config, app.state.jobs_dir = queue, models, config, jobs_dir
    app.add_middleware(BodyLimit, upload_limit=config.max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # One line, like every other error, instead of FastAPI's list of validation objects.
        parts = [f"{'.'.join(str(x) for x in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(parts)}, status_code=400)

    def find(job_id: str) -> Job:
        job = queue.get(job_id)
        if job is None:
            raise HTTPException(404, f"no job {job_id!r} (finished jobs are kept for the last "
                                     f"{config.keep_jobs}; --keep-jobs)")
        return job

    def status(job: Job) -> JobStatus:
        return job.status(queue.position(job))

    def bundled_prompt():
        from soundlm.pretrained import default_prompt_path

        if "prompt" not in bundled:
            bundled["prompt"] = read_prompt(default_prompt_path(), BUNDLED_LABEL, float("inf"))
        return bundled["prompt"]

    def prepare(req: JobRequest, upload: UploadFile | None, folder: Path) -> Job:
        """Store and check the input of a request (blocking work, run in a thread) and make its job."""
        label = display_name(upload.filename) if upload is not None else None
        if req.task == "decompress":
            from soundlm.compress.container import read_container
            from soundlm.compress.files import check_model

            path = save_upload(upload.file, folder, upload.filename, config.max_upload_bytes, suffixes=(".slmc",))
            try:
                header, _ = read_container(path)
            except ValueError as e:  # its message names the server's copy: name the upload instead
                raise ValueError(str(e).replace(str(path), label)) from None
            check_model(Path(label), header, models.codec(header.mode))
            job = new_job(req, models, folder, None)
            job.payload.update(container=path, mode=header.mode, label=label)
            if header.mode == "tokens":  # decoding walks the stage LMs over the whole file
                seconds = header.length / header.sample_rate
                job.expected_steps = audiolm_steps(models.pipe, seconds, seconds)
            return job
        prompt = None
        if req.task not in NO_AUDIO:
            if req.prompt == "bundled":
                prompt = bundled_prompt()
            elif upload is not None:
                path = save_upload(upload.file, folder, upload.filename, config.max_upload_bytes)
                prompt = read_prompt(path, label, config.max_prompt_seconds, allow_silent=req.task == "compress")
        return new_job(req, models, folder, prompt)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/ab", include_in_schema=False)
    async def ab_page() -> FileResponse:
        return FileResponse(STATIC / "ab.html")

    @app.get("/api/info", response_model=ServerInfo)
    async def info() -> ServerInfo:
        note = None if config.speaker_similarity else "turned off on this server (--no-speaker-similarity)"
        if note is None:
            from importlib.util import find_spec

            if find_spec("resemblyzer") is None:
                note = "resemblyzer is not installed; pip install 'soundlm[eval]'"
        palm, music = models.palm, models.music
        return ServerInfo(
            model=models.model_dir.name, sample_rate=models.sample_rate, tasks=models.unavailable(),
            music_model=models.music_dir.name if music is not None else None,
            music_sample_rate=music.sample_rate if music is not None else None,
            palm_languages=list(palm.vocab.languages) if palm is not None else [],
            limits={"max_upload_mb": config.max_upload_mb, "max_prompt_seconds": config.max_prompt_seconds,
                    "max_seconds": config.max_seconds, "max_samples": config.max_samples,
                    "max_music_seconds": config.max_music_seconds, "max_music_samples": config.max_music_samples,
                    "max_captions": MAX_CAPTIONS, "queue_size": config.queue_size, "max_batch": config.max_batch},
            defaults={name: field.default for name, field in JobRequest.model_fields.items()
                      if isinstance(field.default, (int, float)) and not isinstance(field.default, bool)},
            speaker_similarity=note, preferences=config.preferences is not None)

    @app.post("/api/jobs", status_code=202, response_model=JobStatus,
              responses={400: {"description": "Bad input: the one-line reason"},
                         413: {"description": "Upload over --max-upload-mb"},
                         503: {"description": "Queue full; see Retry-After"}})
    async def submit(req: Annotated[JobRequest, Form()], audio: Annotated[UploadFile | None, File()] = None):
        if audio is not None and not audio.filename and not audio.size:
            audio = None  # a form's empty file input
        try:
            check_request(req, models, config, has_upload=audio is not None)
        except ValueError as e:
            raise HTTPException(400, str(e)) from None
        if queue.waiting() >= config.queue_size:  # refuse before storing or decoding anything
            return busy(QueueFull(queue.waiting(), queue.retry_after()))
        folder = jobs_dir / new_job_id()
        folder.mkdir()
        try:
            job = await run_in_threadpool(prepare, req, audio, folder)
            queue.submit(job)
        except UploadTooLarge as e:
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(413, str(e)) from None
        except QueueFull as e:
            shutil.rmtree(folder, ignore_errors=True)
            return busy(e)
        except (ValueError, FileNotFoundError) as e:  # AudioError is a ValueError: the CLI's one-line reason
            shutil.rmtree(folder, ignore_errors=True)
            raise HTTPException(400, str(e)) from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return status(job)

    def busy(e: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": str(e.retry_after)})

    @app.get("/api/jobs/{job_id}", response_model=JobStatus)
    async def get_job(job_id: str) -> JobStatus:
        return status(find(job_id))

    @app.get("/api/jobs/{job_id}/events", response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}},
                              "description": "A JobStatus as `data:` each time it changes, until the job ends. "
                                             "Closing the stream of an unfinished job that nobody else watches "
                                             "cancels it."}})
    async def events(job_id: str) -> StreamingResponse:
        job = find(job_id)

        async def stream():
            job.watchers += 1
            last = None
            try:
                while True:
                    current = status(job).model_dump_json()
                    if current != last:
                        yield f"data: {current}\n\n"
                        last = current
                    if job.done:
                        return
                    await asyncio.sleep(EVENT_INTERVAL)
            finally:
                job.watchers -= 1
                if not job.done and job.watchers == 0:
                    # The client went away (tab closed, request dropped): free its slot.
                    queue.cancel(job, "cancelled: the client disconnected")

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/api/jobs/{job_id}/cancel", response_model=JobStatus)
    async def cancel(job_id: str) -> JobStatus:
        job = find(job_id)
        queue.cancel(job, "cancelled by the client")
        return status(job)

    @app.get("/api/jobs/{job_id}/files/{name}", response_class=FileResponse)
    async def result_file(job_id: str, name: str) -> FileResponse:
        job = find(job_id)
        # Only names the job itself listed: a request never picks a path.
        known = {f.name for f in job.result.files} if job.result is not None else set()
        if name not in known:
            raise HTTPException(404, f"job {job_id} has no file {name!r}" + ("" if job.done else " yet"))
        suffix = Path(name).suffix
        return FileResponse(job.folder / name, media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"))

    @app.get("/api/prompt", response_class=FileResponse)
    async def prompt_file() -> FileResponse:
        return FileResponse(bundled_prompt().path, media_type="audio/wav")

    @app.post("/api/preferences")
    async def preference(choice: Preference) -> dict:
        from soundlm.serve.preferences import record_preference

        if config.preferences is None:
            raise HTTPException(400, "this server does not record preferences; start it with --preferences FILE")
        job = find(choice.job)
        try:
            row = await run_in_threadpool(record_preference, Path(config.preferences), job, choice)
        except ValueError as e:
            raise HTTPException(400, str(e)) from None
        return row

    return app


def event_lines(body: str) -> list[dict]:
    """The JSON objects of a server-sent event stream's `data:` lines (for tests and clients)."""
    return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]
