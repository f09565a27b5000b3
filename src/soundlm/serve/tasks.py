"""Each task of `soundlm serve`: a request becomes a `Job`, and a batch of jobs runs the library's own calls.

No task has an implementation of its own: continue and generate are
`AudioLMPipeline.continue_audio` / `.generate` (what `soundlm continue` / `generate` call),
tts / asr / translate are `soundlm.palm.infer`'s functions (as `soundlm tts/asr/translate`),
compress and decompress are `soundlm.compress.files` (as `soundlm compress/decompress`), music is
`MusicLMPipeline`'s requests through `generate_batch` (as `soundlm music`).

Batching: continue jobs with the same seconds, sampling settings and acoustic-prompt flag
share one `AudioLMPipeline.generate_batch` call, whatever their prompts (of any length) and
seeds; generate jobs likewise, and music jobs with the same seconds, sampling settings and
guidance, whatever their captions. The pipeline left-pads the prompts and draws each job's rows
from that job's own seeded generators, so a batched job gets exactly the audio it would get
alone; its settings say which batch it rode in (`batch`).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from soundlm.audio import AudioError
from soundlm.pipeline import AudioLMPipeline, AudioLMSampling
from soundlm.serve.config import ServeConfig
from soundlm.serve.jobs import Batch, Job
from soundlm.serve.models import NO_COMPRESSOR, ServeModels
from soundlm.serve.results import audio_result
from soundlm.serve.schema import MAX_CAPTION_CHARS, MAX_CAPTIONS, JobRequest, JobResult, ResultFile
from soundlm.serve.uploads import Prompt

AUDIO_IN = ("continue", "asr", "translate", "compress")  # tasks that need an audio input
NO_AUDIO = ("generate", "music")  # tasks that read no audio input


def palm_answer_cap() -> int:
    """The longest palm answer in tokens: `run_task`'s default, which the palm commands and the server use."""
    from soundlm.palm.infer import run_task

    return int(inspect.signature(run_task).parameters["max_new_tokens"].default)


def sampling_of(req: JobRequest) -> AudioLMSampling:
    """The request's temperatures over AudioLM's other defaults (top-p 0.95, context 0.5)."""
    base = AudioLMSampling()
    return AudioLMSampling(semantic=dataclasses.replace(base.semantic, temperature=req.temperature_semantic),
                           coarse=dataclasses.replace(base.coarse, temperature=req.temperature_coarse),
                           fine=dataclasses.replace(base.fine, temperature=req.temperature_fine),
                           context=base.context)


def check_request(req: JobRequest, models: ServeModels, config: ServeConfig, has_upload: bool) -> None:
    """Refuse (ValueError, one line naming the limit or the fix) what this server cannot or will not run."""
    why = models.unavailable()[req.task]
    if why:
        raise ValueError(f"task {req.task} is not available: {why}")
    if req.task in ("continue", "generate"):
        if req.seconds > config.max_seconds:
            raise ValueError(f"seconds={req.seconds:g} is over this server's limit of {config.max_seconds:g} s "
                             "(--max-seconds); ask for less")
        if req.num_samples > config.max_samples:
            raise ValueError(f"num_samples={req.num_samples} is over this server's limit of {config.max_samples} "
                             "(--max-samples)")
    if req.task == "music":
        check_music_request(req, config)
    if req.task == "compress" and req.mode == "lossless" and models.compressor is None:
        raise ValueError(NO_COMPRESSOR)
    if req.task == "tts" and not req.text.strip():
        raise ValueError("tts needs text: fill the `text` field")
    if req.task in AUDIO_IN and req.prompt == "upload" and not has_upload:
        raise ValueError(f"{req.task} needs audio: upload a file in the `audio` field, or set prompt=bundled")
    if req.task == "decompress" and not has_upload:
        raise ValueError("decompress needs a .slmc file (written by `soundlm compress`) in the `audio` field")
    palm = models.palm
    if palm is not None and req.task in ("tts", "asr", "translate"):
        langs = palm.vocab.languages
        wanted = [req.language] + ([req.target] if req.task == "translate" else [])
        bad = [x for x in wanted if x not in langs]
        if bad:
            raise ValueError(f"language {', '.join(bad)} is not one of the palm model's {list(langs)}")


def check_music_request(req: JobRequest, config: ServeConfig) -> None:
    """The caption list and the music caps (ValueError naming the field and the limit)."""
    if not 1 <= len(req.captions) <= MAX_CAPTIONS:
        raise ValueError(f"captions: {len(req.captions)} given; a music request takes 1 to {MAX_CAPTIONS} "
                         "(repeat the `captions` field; split more over several requests)")
    empty = [i + 1 for i, c in enumerate(req.captions) if not c.strip()]
    if empty:
        raise ValueError(f"captions: caption {', '.join(map(str, empty))} is empty; describe the music, e.g. "
                         "\"a calm piano piece in C major\"")
    long = [i + 1 for i, c in enumerate(req.captions) if len(c) > MAX_CAPTION_CHARS]
    if long:
        raise ValueError(f"captions: caption {', '.join(map(str, long))} is over {MAX_CAPTION_CHARS} characters; "
                         "shorten it")
    if req.seconds > config.max_music_seconds:
        raise ValueError(f"seconds={req.seconds:g} is over this server's music limit of "
                         f"{config.max_music_seconds:g} s (--max-music-seconds); ask for less")
    total = len(req.captions) * req.num_samples
    if total > config.max_music_samples:
        raise ValueError(f"{len(req.captions)} caption(s) x num_samples={req.num_samples} = {total} samples is over "
                         f"this server's music limit of {config.max_music_samples} (--max-music-samples)")


def new_job(req: JobRequest, models: ServeModels, folder: Path, prompt: Prompt | None) -> Job:
    """The job of a checked request; `prompt` is its decoded audio input (or None)."""
    if req.task == "continue" and prompt is not None:
        hop = prompt.sample_rate / models.pipe.codec.frame_rate
        if prompt.audio.shape[-1] < hop:
            raise AudioError(prompt.label, f"prompt too short: {prompt.audio.shape[-1]} samples, less than one "
                                           f"codec frame ({hop:g})", "use a longer prompt")
    settings = settings_of(req, models) | ({"prompt": prompt.label} if prompt is not None else {})
    job = Job(id=folder.name, task=req.task, settings=settings, folder=folder,
              payload={"request": req, "prompt": prompt})
    if req.task in ("continue", "generate"):
        job.samples = req.num_samples
        sampling = dataclasses.astuple(sampling_of(req))
        job.batch_key = (req.task, req.seconds, sampling, req.acoustic_prompt if req.task == "continue" else None)
        extra = prompt.seconds if (prompt is not None and not req.acoustic_prompt) else 0.0
        job.expected_steps = audiolm_steps(models.pipe, req.seconds, acoustic_seconds=req.seconds + extra)
    elif req.task == "music":
        job.samples = len(req.captions) * req.num_samples
        job.batch_key = ("music", req.seconds, dataclasses.astuple(sampling_of(req)), req.guidance)
        job.expected_steps = audiolm_steps(models.music.audiolm, req.seconds, req.seconds)
    elif req.task in ("tts", "asr", "translate"):
        speech = req.task == "tts" or (req.task == "translate" and req.speech)
        # A palm answer stops at EOS, usually well before the cap: the bar may jump at the end.
        job.expected_steps = palm_answer_cap() + (audiolm_steps(models.pipe, 0.0, 3.0) if speech else 0)
    elif req.task == "compress" and req.mode == "tokens" and prompt is not None:
        job.expected_steps = audiolm_steps(models.pipe, prompt.seconds, prompt.seconds)
    return job


def new_job_id() -> str:
    return uuid.uuid4().hex[:16]


def audiolm_steps(pipe: AudioLMPipeline, semantic_seconds: float, acoustic_seconds: float) -> int:
    """Decoding steps of the three stages for this much new audio (the progress bar's 100 %)."""
    qc, k = pipe.num_coarse, pipe.num_codebooks
    sem = math.ceil(semantic_seconds * pipe.semantic.meta.semantic_rate)
    frames = math.ceil(acoustic_seconds * float(pipe.codec.frame_rate))
    coarse = frames * (1 if pipe.coarse.delayed else qc)
    fine = 0 if pipe.fine is None else frames * (1 if pipe.fine.delayed else k - qc)
    return sem + coarse + fine


def settings_of(req: JobRequest, models: ServeModels) -> dict:
    """The settings a result is shown with: what matters for its task."""
    keep = {"continue": ("seconds", "num_samples", "seed", "temperature_semantic", "temperature_coarse",
                         "temperature_fine", "acoustic_prompt"),
            "generate": ("seconds", "num_samples", "seed", "temperature_semantic", "temperature_coarse",
                         "temperature_fine"),
            "tts": ("text", "language"), "asr": ("language",), "translate": ("language", "target", "speech"),
            "compress": ("mode",), "decompress": (),
            "music": ("captions", "seconds", "num_samples", "seed", "guidance", "temperature_semantic",
                      "temperature_coarse", "temperature_fine")}[req.task]
    model = models.music_dir if req.task == "music" else models.model_dir
    settings: dict[str, Any] = {"task": req.task, "model": model.name}
    settings.update({name: getattr(req, name) for name in keep})
    if req.task in ("continue", "generate", "music"):
        s = AudioLMSampling()
        settings["top_p"] = [s.semantic.top_p, s.coarse.top_p, s.fine.top_p]
    return settings


# ---- running a batch -------------------------------------------------------------------------
def run_batch(batch: Batch, models: ServeModels, config: ServeConfig) -> list[JobResult]:
    """Run the batch's task with the library; errors name the uploaded files, not the server's copies."""
    task = batch.jobs[0].task
    runner = {"continue": _continue, "generate": _generate, "tts": _tts, "asr": _asr, "translate": _translate,
              "compress": _compress, "decompress": _decompress, "music": _music}[task]
    try:
        return runner(batch, models, config)
    except (ValueError, FileNotFoundError) as e:
        message = str(e)
        for job in batch.jobs:
            prompt = job.payload.get("prompt")
            if prompt is not None:
                message = message.replace(str(prompt.path), prompt.label)
            message = message.replace(str(job.folder), "(upload)")
        raise (FileNotFoundError if isinstance(e, FileNotFoundError) else ValueError)(message) from None


def _batched(settings: dict, jobs: list[Job]) -> dict:
    total = sum(j.samples for j in jobs)
    return {**settings, "batch": {"jobs": len(jobs), "samples": total}} if len(jobs) > 1 else settings


def _reference(prompt: Prompt, sample_rate: int) -> np.ndarray:
    from soundlm.audio import resample, to_mono

    return resample(to_mono(prompt.audio), prompt.sample_rate, sample_rate)


def _continue(batch: Batch, models: ServeModels, config: ServeConfig) -> list[JobResult]:
    from soundlm.pipeline import BatchRequest

    jobs, pipe = batch.jobs, models.pipe
    req = jobs[0].payload["request"]
    batch.stage("tokenizing the prompts" if len(jobs) > 1 else "tokenizing the prompt")
    requests = []
    for job in jobs:
        own, prompt = job.payload["request"], job.payload["prompt"]
        requests.append(BatchRequest(own.seconds, prompt=prompt.audio, prompt_sample_rate=prompt.sample_rate,
                                     num_samples=job.samples, seed=own.seed, acoustic_prompt=own.acoustic_prompt,
                                     prompt_source=prompt.label))
    outputs = pipe.generate_batch(requests, sampling=sampling_of(req))
    batch.stage("writing results")
    sr, results = pipe.sample_rate, []
    for job, waves in zip(jobs, outputs):
        prompt = job.payload["prompt"]
        prompt_samples = waves[0].shape[-1] - int(round(req.seconds * sr))
        results.append(audio_result(job.folder, waves, sr, "continuation", _batched(job.settings, jobs),
                                    prompt_samples=prompt_samples, reference=_reference(prompt, sr),
                                    similarity=config.speaker_similarity, device=pipe.device.type))
    return results


def _generate(batch: Batch, models: ServeModels, config: ServeConfig) -> list[JobResult]:
    from soundlm.pipeline import BatchRequest

    jobs, pipe = batch.jobs, models.pipe
    req = jobs[0].payload["request"]
    batch.stage("semantic")
    requests = [BatchRequest(job.payload["request"].seconds, num_samples=job.samples,
                             seed=job.payload["request"].seed) for job in jobs]
    outputs = pipe.generate_batch(requests, sampling=sampling_of(req))
    batch.stage("writing results")
    return [audio_result(job.folder, waves, pipe.sample_rate, "sample", _batched(job.settings, jobs))
            for job, waves in zip(jobs, outputs)]


def _music(batch: Batch, models: ServeModels, config: ServeConfig) -> list[JobResult]:
    from soundlm.fileio import write_json_atomic
    from soundlm.music.pipeline import REQUEST_JSON

    jobs, music = batch.jobs, models.music
    req = jobs[0].payload["request"]
    batch.stage("embedding the captions")
    requests, counts = [], []
    for job in jobs:
        own = job.payload["request"]
        mine = music.requests(own.captions, own.seconds, own.num_samples, own.seed)
        requests += mine
        counts.append(len(mine))
    outputs = music.audiolm.generate_batch(requests, dataclasses.replace(sampling_of(req), guidance=req.guidance))
    batch.stage("writing results")
    results, at = [], 0
    for job, count in zip(jobs, counts):
        own = job.payload["request"]
        waves = [w for per_caption in outputs[at:at + count] for w in per_caption]
        at += count
        sampling = {name: job.settings[name] for name in ("temperature_semantic", "temperature_coarse",
                                                          "temperature_fine", "top_p")}
        record = music.request_record(own.captions, own.seconds, own.num_samples, own.guidance, own.seed,
                                      models.music_dir.name, sampling)
        files = record["files"]
        result = audio_result(job.folder, waves, music.sample_rate, "music", _batched(job.settings, jobs),
                              names=[Path(f["file"]).stem for f in files], captions=[f["caption"] for f in files])
        write_json_atomic(job.folder / REQUEST_JSON, record)
        result.files.append(ResultFile(name=REQUEST_JSON, kind="data", label="the request (music.json)"))
        results.append(result)
    return results


def _speech_result(job: Job, semantic: np.ndarray, models: ServeModels, config: ServeConfig, batch: Batch,
                   title: str, text: str | None = None) -> JobResult:
    """Semantic ids -> audio through the served AudioLM bundle, in the prompt's voice when there is one."""
    from soundlm.palm.infer import semantic_to_audio

    prompt: Prompt | None = job.payload["prompt"]
    batch.stage("coarse")
    wave, sr = semantic_to_audio(semantic, models.pipe, voice_prompt=prompt.path if prompt else None)
    batch.stage("writing results")
    settings = job.settings | {"semantic_ids": int(len(semantic))}
    return audio_result(job.folder, [wave], sr, title, settings,
                        reference=_reference(prompt, sr) if prompt else None, similarity=config.speaker_similarity,
                        device=models.pipe.device.type, text=text)


def _tts(batch: Batch, models: ServeModels, config: ServeConfig) -> list[JobResult]:
    from soundlm.palm.infer import synthesize

    job = batch.jobs[0]
    batch.stage("palm")
    semantic = synthesize(models.palm, job.settings["text"], job.settings["language"])
    return [_speech_result(job, semantic, models, config, batch, "speech")]


def _palm_input(job: Job, models: ServeModels, batch: Batch) -> np.ndarray:
    from soundlm.palm.infer import encode_audio

    batch.stage("tokenizing the audio")
    return encode_audio(models.palm, job.payload["prompt"].path)


def _asr(batch: Batch, models: ServeModels, config: ServeConfig) -> list[JobResult]:
    from soundlm.palm.infer import transcribe

    job = batch.jobs[0]
    semantic = _palm_input(job, models, batch)
    batch.stage("palm")
    text = transcribe(models.palm, semantic, job.settings["language"])
    return [JobResult(text=text, settings=job.settings)]


def _translate(batch: Batch, models: ServeModels, config: ServeConfig) -> list[JobResult]:
    from soundlm.palm.infer import translate

    job = batch.jobs[0]
    s = job.settings
    semantic = _palm_input(job, models, batch)
    batch.stage("palm")
    out = translate(models.palm, semantic, s["language"], s["target"], speech=s["speech"])
    if not s["speech"]:
        return [JobResult(text=out.text or "", settings=s)]
    if out.semantic is None or len(out.semantic) == 0:
        raise ValueError("the model produced no semantic ids for this audio (it emitted EOS at once)")
    return [_speech_result(job, out.semantic, models, config, batch, "translation")]


def _compress(batch: Batch, models: ServeModels, config: ServeConfig) -> list[JobResult]:
    from soundlm.compress.files import compress_files

    job = batch.jobs[0]
    prompt: Prompt = job.payload["prompt"]
    codec = models.codec(job.settings["mode"])
    batch.stage("compressing")
    summary = compress_files([prompt.path], job.folder / "out", codec, progress=False)
    if summary.failed:
        raise ValueError(summary.failed[0].error)
    done = summary.done[0]
    name = "compressed.slmc"
    done.target.rename(job.folder / name)
    frames = prompt.audio.shape[-1]
    stats = {"input_bytes": done.in_bytes, "output_bytes": done.out_bytes,
             "ratio": round(done.out_bytes / done.in_bytes, 5),
             "kilobits_per_second": round(done.out_bytes * 8 / 1000 / prompt.seconds, 3),
             "bits_per_sample": round(done.out_bytes * 8 / (frames * prompt.audio.shape[0]), 4)}
    return [JobResult(files=[ResultFile(name=name, kind="data", label=f"{prompt.label} compressed ({codec.mode})")],
                      settings=job.settings, stats=stats)]


def _decompress(batch: Batch, models: ServeModels, config: ServeConfig) -> list[JobResult]:
    from soundlm.audio import load_audio
    from soundlm.compress.files import decompress_files

    job = batch.jobs[0]
    path, mode = job.payload["container"], job.payload["mode"]
    batch.stage("decompressing")
    summary = decompress_files([path], job.folder / "out", models.codec(mode), progress=False)
    if summary.failed:
        raise ValueError(summary.failed[0].error)
    target = summary.done[0].target
    from soundlm.audio import info

    rate = info(target).sample_rate
    wave = load_audio(target, sample_rate=None, mono=False, allow_silent=True)
    result = audio_result(job.folder, [wave], rate, "decompressed", job.settings | {"mode": mode,
                                                                                   "file": job.payload["label"]})
    target.unlink()
    return [result]
