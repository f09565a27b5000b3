"""espeak-ng as a test-signal generator for the evaluation suite (known text, known voice)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from soundlm.audio import resample


def require_espeak() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise FileNotFoundError("espeak-ng is not installed; install it (apt-get install espeak-ng) "
                                "to synthesise evaluation speech")
    return exe


def espeak_phonemes(text: str, voice: str = "en-us") -> str:
    """espeak-ng's phoneme string for `text` (no audio), used to compare pronunciations."""
    out = subprocess.run([require_espeak(), "-q", "-x", "-v", voice, text],
                         check=True, capture_output=True, text=True)
    return " ".join(out.stdout.split())


@lru_cache(maxsize=1)
def _variants() -> frozenset[str]:
    from soundlm.data.speech import installed_espeak_variants

    return frozenset(installed_espeak_variants())


def _check_variant(voice: str) -> None:
    # espeak-ng renders an unknown variant ("en-us+Mr" for "Mr serious") as its default voice
    # without a warning, so a typo would silently change the speaker.
    variant = voice.partition("+")[2]
    if variant and variant not in _variants():
        raise ValueError(f"espeak-ng has no voice variant {variant!r} (in {voice!r}); "
                         "list them with `espeak-ng --voices=variant`")


def synthesize(text: str, voice: str = "en-us", sample_rate: int = 16_000, pitch: int | None = None,
               speed: int | None = None) -> np.ndarray:
    """Speak `text` with espeak-ng; returns float32 [S] at `sample_rate`.

    voice: an espeak-ng voice with optional variant ("en-us", "en-us+f3"); pitch 0..99,
    speed in words per minute.
    """
    if not text.strip():
        raise ValueError("nothing to synthesise: text is empty")
    cmd = [require_espeak(), "-v", voice]
    _check_variant(voice)
    if pitch is not None:
        cmd += ["-p", str(pitch)]
    if speed is not None:
        cmd += ["-s", str(speed)]
    with tempfile.TemporaryDirectory(prefix="soundlm-tts-") as tmp:
        wav = Path(tmp) / "out.wav"
        proc = subprocess.run(cmd + ["-w", str(wav), text], capture_output=True, text=True)
        if proc.returncode != 0 or not wav.exists():
            raise ValueError(f"espeak-ng failed for voice {voice!r}: {proc.stderr.strip()}; "
                             "list voices with `espeak-ng --voices`")
        audio, sr = sf.read(str(wav), dtype="float32", always_2d=True)  # [S, 1]
    return resample(np.ascontiguousarray(audio.T), sr, sample_rate)[0]  # [S]
