"""The models one server holds: the AudioLM bundle, and optionally an AudioPaLM model, a lossless compressor
and a music (MusicLM) bundle.

They load once, at start-up, through the loaders the CLI uses (`load_pipeline`,
`load_palm`, `SampleModel.load`, `MusicLMPipeline.from_bundle`), and every LM gets the step
hooks of `progress.py`. `unavailable()` says, per task, why it cannot run here (no --palm,
no --compressor, no music model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soundlm.serve.config import ServeConfig
from soundlm.serve.progress import StepMonitor
from soundlm.serve.schema import TASKS

if TYPE_CHECKING:
    from soundlm.music.pipeline import MusicLMPipeline
    from soundlm.pipeline import AudioLMPipeline

NO_COMPRESSOR = ("lossless compression needs a model; start the server with --compressor RUN (a `soundlm train "
                 "compressor` run), or use mode=tokens")
MUSIC_OFF = "none"  # --music-model none: no music, even when soundlm ships a music model
NO_MUSIC = ("no music model: the one soundlm ships (soundlm/assets/musiclm-tiny) is missing from this install and the "
            "server was started without one; start it with --music-model BUNDLE (an AudioLM bundle with "
            "MuLan-conditioned stages plus mulan/) or reinstall soundlm")
MUSIC_TURNED_OFF = "turned off on this server (--music-model none)"


@dataclass
class ServeModels:
    pipe: AudioLMPipeline
    model_dir: Path
    palm: Any | None = None  # soundlm.palm.model.PalmModel
    compressor: Path | None = None
    music: MusicLMPipeline | None = None
    music_dir: Path | None = None
    no_music: str = NO_MUSIC  # why music is unavailable, when it is
    monitor: StepMonitor = field(default_factory=StepMonitor)
    _codecs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, config: ServeConfig) -> "ServeModels":
        from soundlm.pretrained import MISSING_FIX, check_model_folder, default_model_dir, load_pipeline

        if config.model is None:
            folder = check_model_folder(default_model_dir(), what="soundlm's default model", fix=MISSING_FIX)
        else:
            folder = check_model_folder(config.model)
        models = cls(pipe=load_pipeline(folder, device=config.device), model_dir=folder)
        for stage in models.pipe.stages:
            models.monitor.attach(stage.name, stage.model)
        if config.palm is not None:
            from soundlm.palm.model import load_palm

            models.palm = load_palm(config.palm, device=models.pipe.device)
            models.monitor.attach("palm", models.palm.model)
        if config.compressor is not None:
            models.compressor = Path(config.compressor)
            models.codec("lossless")  # a bad folder fails at start-up, not on the first request
        models.load_music(config.music_model)
        return models

    def load_music(self, spec: str | None) -> None:
        """The music bundle `spec`; None: the shipped one, or none (music unavailable) when this install lacks it;
        "none": music off."""
        from soundlm.music.pipeline import MusicLMPipeline, resolve_music_model

        if spec == MUSIC_OFF:
            self.no_music = MUSIC_TURNED_OFF
            return
        try:
            folder = resolve_music_model(spec)
        except FileNotFoundError:
            if spec is not None:  # asked for a model that is not there: say so at start-up
                raise
            return
        self.music = MusicLMPipeline.from_bundle(folder, device=self.pipe.device)
        self.music_dir = folder
        for stage in self.music.audiolm.stages:
            self.monitor.attach(stage.name, stage.model)

    @property
    def sample_rate(self) -> int:
        return self.pipe.sample_rate

    def unavailable(self) -> dict[str, str | None]:
        """Each task -> None when this server can run it, else the reason (with the option that enables it)."""
        no_palm = None if self.palm is not None else "start the server with --palm RUN (an AudioPaLM model)"
        why = {task: no_palm for task in ("tts", "asr", "translate")} | {"music": None if self.music else self.no_music}
        return {task: why.get(task) for task in TASKS}

    def codec(self, mode: str) -> Any:
        """The compression codec of a mode (soundlm.compress.files.FileCodec), made once."""
        if mode not in self._codecs:
            from soundlm.compress.files import open_codec

            if mode == "lossless" and self.compressor is None:
                raise ValueError(NO_COMPRESSOR)
            if mode == "tokens" and self.pipe.device.type == "cpu":
                from soundlm.compress.tokens import TokenCodec, bundle_hash

                # Token mode codes on the CPU; the served pipeline already is one, so share it.
                self._codecs[mode] = TokenCodec(self.pipe, bundle_hash(self.model_dir))
            else:
                self._codecs[mode] = open_codec(mode, self.compressor if mode == "lossless" else self.model_dir)
                pipe = getattr(self._codecs[mode], "pipe", None)
                for stage in pipe.stages if pipe is not None else ():
                    self.monitor.attach(stage.name, stage.model)
        return self._codecs[mode]
