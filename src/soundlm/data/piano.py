"""Solo piano corpus: music21's bundled scores rendered by fluidsynth.

Every part of a score is reassigned to Acoustic Grand Piano (General MIDI program 0),
written as MIDI, rendered with a General MIDI soundfont, then resampled to mono, trimmed
of its trailing silence (the release/reverb tail), cropped and peak-normalised.

Layout of the output folder:
    corpus.json      the settings (a resumed run must use the same ones)
    manifest.jsonl   one row per piece, written last
    wavs/ID.wav
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from soundlm.audio import load_audio, normalize_peak, save_audio
from soundlm.data import MissingToolError
from soundlm.data.jobs import pin_config, render_corpus

SOUNDFONT_DIRS = (Path("/usr/share/sounds/sf2"), Path("/usr/share/soundfonts"), Path("/usr/local/share/soundfonts"))
PREFERRED_SOUNDFONTS = ("FluidR3_GM.sf2", "default-GM.sf2")
SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc", ".mid")
# fluidsynth renders at its native rate; soxr then downsamples without aliasing.
RENDER_RATE = 44_100


@dataclass(frozen=True)
class PianoTask:
    score: str  # path of the music21 corpus file
    path: str  # output wav
    sample_rate: int
    max_seconds: float
    soundfont: str


def find_soundfont(soundfont: str | Path | None = None) -> Path:
    """The given soundfont, or a General MIDI one from the usual system folders."""
    if soundfont is not None:
        path = Path(soundfont)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: soundfont not found (pass an existing .sf2 file)")
        return path
    for folder in SOUNDFONT_DIRS:
        for name in PREFERRED_SOUNDFONTS:
            if (folder / name).is_file():
                return folder / name
    for folder in SOUNDFONT_DIRS:
        found = sorted(folder.glob("*.sf2")) if folder.is_dir() else []
        if found:
            return found[0]
    raise MissingToolError("no General MIDI soundfont found in /usr/share/sounds/sf2: install one with "
                           "`sudo apt-get install fluid-soundfont-gm` (or pass --soundfont FILE.sf2)")


def list_pieces(composer: str) -> list[Path]:
    """Score files of a composer in music21's bundled corpus, sorted."""
    from music21 import corpus

    paths = sorted({Path(p) for p in corpus.getComposer(composer) if Path(p).suffix.lower() in SCORE_SUFFIXES})
    if not paths:
        raise ValueError(f"music21's corpus has no scores for composer {composer!r} (try bach, beethoven, mozart)")
    return paths


def piece_name(score: Path) -> str:
    """A readable, unique name: the corpus folder and the file stem ("bach/bwv10.7")."""
    return f"{score.parent.name}/{score.stem}"


def score_to_piano_midi(score: Path, midi: Path) -> None:
    """Write `score` as MIDI with every part played by Acoustic Grand Piano."""
    from music21 import converter, instrument

    # forceSource: music21 otherwise writes pickle caches, which races between workers.
    parsed = converter.parse(str(score), forceSource=True)
    parts = list(parsed.parts) or [parsed]
    for part in parts:
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        part.insert(0, instrument.Piano())
    parsed.write("midi", fp=str(midi))


def render_midi(midi: Path, soundfont: str | Path, sample_rate: int, source: str | Path,
                timeout: float | None = None):
    """Render a MIDI file with fluidsynth; returns mono audio [1, S] at `sample_rate`.

    `source` (the score the MIDI came from) names the input in the error; a render running
    past `timeout` seconds is stopped and raises TimeoutError.
    """
    with tempfile.TemporaryDirectory(prefix="soundlm-render-") as tmp:
        raw = Path(tmp) / "raw.wav"
        cmd = ["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(RENDER_RATE), "-F", str(raw), str(soundfont), str(midi)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise TimeoutError(f"fluidsynth ran past {timeout} s on {source}; command: {' '.join(cmd)}") from e
        if proc.returncode != 0 or not raw.exists():
            raise RuntimeError(f"fluidsynth failed for {source} (exit {proc.returncode}): "
                               f"{proc.stderr.strip()[:300]}; command: {' '.join(cmd)}")
        return load_audio(raw, sample_rate=sample_rate, mono=True)  # [1, S]


def render_piece(task: PianoTask) -> None:
    with tempfile.TemporaryDirectory(prefix="soundlm-piano-") as tmp:
        midi = Path(tmp) / "piece.mid"
        score_to_piano_midi(Path(task.score), midi)
        audio = render_midi(midi, task.soundfont, task.sample_rate, task.score)
    audio = trim_trailing_silence(audio)
    audio = normalize_peak(audio[:, : int(task.max_seconds * task.sample_rate)])
    save_audio(task.path, audio, task.sample_rate)


def trim_trailing_silence(audio, threshold_db: float = -50.0):
    """Drop the tail quieter than `threshold_db` below the peak (fluidsynth pads with silence)."""
    import numpy as np

    level = np.abs(audio).max(axis=0)  # [S]
    loud = np.flatnonzero(level > level.max() * 10 ** (threshold_db / 20))
    return audio if loud.size == 0 else audio[:, : loud[-1] + 1]


def make_piano_corpus(out: str | Path, pieces: int = 20, max_seconds: float = 30.0, seed: int = 0,
                      sample_rate: int = 16_000, composer: str = "bach", heldout_fraction: float = 0.1,
                      soundfont: str | Path | None = None, workers: int | None = None) -> Path:
    """Build (or resume) a piano corpus of `pieces` scores in `out`; returns the manifest path.

    Pieces are drawn from the composer's scores by `seed`; the last `heldout_fraction` of
    them get split "heldout". Same arguments give the same files, byte for byte.
    """
    if shutil.which("fluidsynth") is None:
        raise MissingToolError("fluidsynth not found: install it with `sudo apt-get install fluidsynth fluid-soundfont-gm`")
    font = find_soundfont(soundfont)
    if pieces < 1:
        raise ValueError(f"--pieces must be >= 1, got {pieces}")
    if max_seconds <= 0:
        raise ValueError(f"--max-seconds must be positive, got {max_seconds}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"--heldout-fraction must be in [0, 1), got {heldout_fraction}")
    if not 8_000 <= sample_rate <= 48_000:
        raise ValueError(f"--sample-rate {sample_rate} is outside 8000..48000 Hz")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pin_config(out, {"kind": "piano", "seed": seed, "pieces": pieces, "max_seconds": max_seconds,
                     "sample_rate": sample_rate, "composer": composer, "heldout_fraction": heldout_fraction,
                     "soundfont": font.name})
    available = list_pieces(composer)
    if pieces > len(available):
        raise ValueError(f"--pieces {pieces} but music21 has only {len(available)} scores by {composer}; lower it")
    chosen = random.Random(f"piano-{seed}").sample(available, pieces)
    n_heldout = round(pieces * heldout_fraction)
    rows, tasks = [], []
    for i, score in enumerate(chosen):
        name = piece_name(score)
        uid = name.replace("/", "-")
        rel = f"wavs/{uid}.wav"
        rows.append({"id": uid, "path": rel, "duration": 0.0, "sample_rate": sample_rate, "speaker": None,
                     "language": None, "transcript": name, "split": "heldout" if i >= pieces - n_heldout else "train"})
        tasks.append(PianoTask(str(score), str(out / rel), sample_rate, max_seconds, str(font)))
    return render_corpus(out, rows, tasks, render_piece, sample_rate, workers, desc="piano", noun="pieces")
