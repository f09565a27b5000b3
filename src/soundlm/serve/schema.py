"""The JSON contracts of the HTTP API (pydantic models: FastAPI validates them and writes the OpenAPI schema).

A job request is a multipart form (its fields below, plus an optional `audio` file), so a
browser's FormData and `curl -F` send the same thing. Sampling defaults are AudioLM's,
read from `AudioLMSampling` so they are written once.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from soundlm.music.pipeline import DEFAULT_GUIDANCE
from soundlm.pipeline import AudioLMSampling

_SAMPLING = AudioLMSampling()
TASKS = ("continue", "generate", "tts", "asr", "translate", "compress", "decompress", "music")
Task = Literal["continue", "generate", "tts", "asr", "translate", "compress", "decompress", "music"]
MAX_CAPTIONS = 4  # captions of one music request
MAX_CAPTION_CHARS = 300
JobStateName = Literal["queued", "running", "done", "failed", "cancelled"]


class JobRequest(BaseModel):
    """One job. Which fields matter depends on `task`; the others are ignored."""

    task: Task = Field(description="continue: continue the prompt; generate: audio from nothing; tts, asr, "
                                   "translate: AudioPaLM (server started with --palm); compress / decompress: "
                                   "the LM as a compressor (.slmc files); music: captions to music (MusicLM, "
                                   "a music model on the server)")
    prompt: Literal["upload", "bundled"] = Field(
        "upload", description="Audio input of continue/asr/translate/compress and the voice of tts: the uploaded "
                              "`audio` file, or the prompt bundled with soundlm")
    seconds: float = Field(2.0, gt=0, description="Seconds to generate (continue: after the prompt)")
    num_samples: int = Field(1, ge=1, description="Samples to draw (one batch; music: per caption)")
    seed: int = Field(0, ge=0, description="Sampling seed (music: of the first caption; caption j draws with "
                                           "seed + j)")
    temperature_semantic: float = Field(_SAMPLING.semantic.temperature, ge=0, description="Semantic stage; 0 = greedy")
    temperature_coarse: float = Field(_SAMPLING.coarse.temperature, ge=0, description="Coarse stage")
    temperature_fine: float = Field(_SAMPLING.fine.temperature, ge=0, description="Fine stage")
    acoustic_prompt: bool = Field(True, description="continue: give the acoustic stages the prompt's codec codes "
                                                    "(keeps the voice); off: its semantic ids only")
    text: str = Field("", max_length=500, description="tts: the text to speak")
    language: str = Field("en", max_length=16, description="tts: language of the text; asr/translate: of the audio")
    target: str = Field("fr", max_length=16, description="translate: target language")
    speech: bool = Field(False, description="translate: speech out (S2ST) instead of text")
    captions: list[str] = Field(default_factory=list, description=f"music: 1 to {MAX_CAPTIONS} captions, each up "
                                f"to {MAX_CAPTION_CHARS} characters (repeat the form field for several), e.g. "
                                "\"a calm piano piece in C major\"")
    guidance: float = Field(DEFAULT_GUIDANCE, ge=0, description="music: classifier-free guidance scale of the "
                                                                "conditioned stages (1: none; MusicLM used 3)")
    mode: Literal["tokens", "lossless"] = Field("tokens", description="compress: tokens (lossy, the AudioLM "
                                                                      "bundle) or lossless (--compressor model)")


class ResultFile(BaseModel):
    name: str = Field(description="File name; fetch it from /api/jobs/{id}/files/{name}")
    kind: Literal["audio", "image", "data"]
    label: str


class SampleResult(BaseModel):
    audio: str = Field(description="Name of the sample's wav file")
    image: str | None = Field(None, description="Waveform + log-mel spectrogram PNG")
    caption: str | None = Field(None, description="music: the caption the sample was made from")
    seconds: float
    speaker_similarity: float | None = Field(None, description="Cosine of Resemblyzer d-vectors, prompt vs the "
                                                                 "generated part (about 0.4 to 1)")


class JobResult(BaseModel):
    samples: list[SampleResult] = []
    files: list[ResultFile] = []
    text: str | None = Field(None, description="asr / translate (text): the answer")
    settings: dict = Field(default_factory=dict, description="What the job ran with, batch included")
    stats: dict = Field(default_factory=dict, description="compress: sizes and rates")
    speaker_similarity_note: str | None = Field(None, description="Why speaker similarity is missing, if it is")


class JobStatus(BaseModel):
    id: str
    task: Task
    state: JobStateName
    stage: str = Field(description="What the job is doing now (waiting, semantic, coarse, fine, ...)")
    progress: float = Field(description="0 to 1; estimated from the decoding steps taken")
    position: int | None = Field(None, description="Jobs ahead of it while queued")
    error: str | None = None
    result: JobResult | None = None
    batch_size: int = Field(1, description="Jobs generated in the same batch as this one")
    created: float
    seconds_running: float | None = None


class ServerInfo(BaseModel):
    model: str
    sample_rate: int
    music_model: str | None = Field(None, description="The music bundle's name, null when music is unavailable")
    music_sample_rate: int | None = Field(None, description="Sample rate of the music results")
    tasks: dict[str, str | None] = Field(description="Every task: null when available, else why not")
    palm_languages: list[str] = []
    limits: dict[str, float] = Field(description="Upload, length and sample caps (music has its own)")
    defaults: dict[str, float]
    speaker_similarity: str | None = Field(description="null when results are scored, else why not")
    preferences: bool = Field(description="Whether the A/B page records preferences")


class Preference(BaseModel):
    """One A/B judgement: two samples of a finished job, which one the listener preferred."""

    job: str
    a: str = Field(description="File name of sample A in the job")
    b: str = Field(description="File name of sample B in the job")
    choice: Literal["a", "b"]
