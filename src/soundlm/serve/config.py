"""`ServeConfig`: what `soundlm serve` loads and the limits it enforces (the CLI's options read their defaults here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ServeConfig:
    """Models, address and limits of one server.

    Limits protect a shared machine: an upload over `max_upload_mb` is refused with 413, a
    prompt over `max_prompt_seconds`, a request over `max_seconds` / `max_samples` (music:
    `max_music_seconds` / `max_music_samples`) with 400, and a submit while `queue_size` jobs wait with 503. A job that nobody watches (no
    open event stream) and nobody has polled for `abandon_seconds` is dropped.
    """

    model: str | None = None  # AudioLM bundle folder; None: the model shipped with soundlm
    palm: str | None = None  # AudioPaLM run (or final/) folder: enables tts, asr, translate
    compressor: str | None = None  # `soundlm train compressor` run: enables lossless compress/decompress
    music_model: str | None = None  # music bundle (text to music); None: the shipped one when soundlm has it; "none": off
    host: str = "127.0.0.1"
    port: int = 8000
    device: str | None = None
    workers: int = 1  # jobs (batches) generated at the same time
    max_batch: int = 4  # samples one generation batch may hold
    queue_size: int = 16  # jobs waiting (not running) before submits get 503
    max_upload_mb: float = 20.0
    max_prompt_seconds: float = 30.0
    max_seconds: float = 20.0  # longest generation a request may ask for
    max_samples: int = 4
    max_music_seconds: float = 10.0  # longest music a request may ask for
    max_music_samples: int = 8  # samples of one music request, all its captions together
    abandon_seconds: float = 60.0
    keep_jobs: int = 64  # finished jobs whose files are kept; older ones are deleted
    jobs_dir: str | None = None  # None: a temporary folder removed at exit
    speaker_similarity: bool = True  # score results with Resemblyzer when it is installed
    preferences: str | None = None  # JSONL file the A/B page appends to; None: the A/B page only listens

    def __post_init__(self) -> None:
        positive = {"workers": self.workers, "max_batch": self.max_batch, "queue_size": self.queue_size,
                    "max_upload_mb": self.max_upload_mb, "max_prompt_seconds": self.max_prompt_seconds,
                    "max_seconds": self.max_seconds, "max_samples": self.max_samples,
                    "max_music_seconds": self.max_music_seconds, "max_music_samples": self.max_music_samples,
                    "abandon_seconds": self.abandon_seconds, "keep_jobs": self.keep_jobs}
        bad = [f"--{name.replace('_', '-')} {value}" for name, value in positive.items() if not value > 0]
        if bad:
            raise ValueError(f"serve limits must be positive, got {', '.join(bad)}")
        if not 0 <= self.port < 65536:
            raise ValueError(f"--port must be in [0, 65535], got {self.port}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "ServeConfig":
        return cls(**d)
