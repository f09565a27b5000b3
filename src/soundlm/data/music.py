"""Music corpus with attributes and captions: music21's bundled scores rendered by fluidsynth.

Each clip is one score (a Bach chorale, a quartet movement, a madrigal, a mass movement),
cropped to `max_seconds`, transposed to a drawn key, played by one General MIDI program
(every part), at a drawn tempo and dynamic. The manifest row carries the attributes under
`music` (`MusicAttributes`) and a caption made from them in one of several wordings (also
its `transcript`, which the token store keeps).

Labels are exact where the renderer sets them (instrument, tempo in quarter notes per
minute, loudness, meter as notated) and symbolic for the key: music21's key analysis of the
notes inside the rendered window, moved by the transposition.

Held out (split "heldout", `music.heldout` says why):
- "piece": every clip of the last `heldout_fraction` of the drawn pieces;
- "combination": a clip of a training piece whose (instrument, tonic) pair is one of the
  held-out pairs (one tonic per instrument, drawn by the seed): no training clip has it.

Layout of the output folder:
    corpus.json      the settings (a resumed run must use the same ones)
    pieces/ID.json   a rendered piece's clip attributes (resume skips pieces that have it and their wavs)
    errors.jsonl     pieces that could not be parsed or rendered, with the reason (this run's)
    manifest.jsonl   one row per clip, written last
    wavs/ID.wav
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from soundlm.audio import info, save_audio
from soundlm.data import MissingToolError, manifest_path, read_manifest, write_manifest
from soundlm.data.corpus import CorpusItem, open_corpus
from soundlm.data.jobs import pin_config, remove_stale_temporaries, run_parallel, valid_wav
from soundlm.data.piano import SCORE_SUFFIXES, find_soundfont, render_midi, trim_trailing_silence
from soundlm.fileio import read_json, write_json_atomic, write_text_atomic

# General MIDI programs (0-based) the corpus plays its scores with.
INSTRUMENTS: dict[str, int] = {"piano": 0, "harpsichord": 6, "organ": 19, "guitar": 24, "strings": 48,
                               "choir": 52, "clarinet": 71, "flute": 73}
# Quarter notes per minute.
TEMPI = (60, 72, 88, 104, 120, 138)
# Note velocity and output peak of each dynamic: quiet clips are both softer-played and lower in level.
DYNAMICS: dict[str, tuple[int, float]] = {"quiet": (45, 0.2), "medium": (80, 0.5), "loud": (115, 0.95)}
# music21 corpus folders used, and the form their pieces have.
FORMS: dict[str, str] = {"bach": "chorale", "beethoven": "string quartet movement",
                         "haydn": "string quartet movement", "mozart": "string quartet movement",
                         "monteverdi": "madrigal", "palestrina": "mass movement"}
PITCH_NAMES = {"major": ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"),
               "minor": ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")}
MIN_SECONDS = 4.0
# A clip's MIDI lasts seconds; a render past this (a stuck note, see `_end_all_notes`) is a failed piece.
RENDER_TIMEOUT = 120.0


def key_name(tonic_pc: int, mode: str) -> str:
    """'G minor' for (7, 'minor')."""
    return f"{PITCH_NAMES[mode][tonic_pc % 12]} {mode}"


@dataclass
class MusicAttributes:
    """What a clip is, as the manifest row's `music` object holds it."""

    piece: str  # corpus-relative score path without suffix ("bach/bwv10.7")
    composer: str
    form: str
    instrument: str
    program: int  # General MIDI program, 0-based
    tonic: int  # pitch class 0..11 (C = 0)
    mode: str  # "major" | "minor"
    key: str  # "G minor"
    tempo_bpm: int  # quarter notes per minute
    meter: str | None  # "3/4" as notated; None when the score has none
    loudness: str  # "quiet" | "medium" | "loud"
    velocity: int
    loudness_db: float  # measured RMS level of the clip, dBFS
    key_confidence: float  # music21's key correlation on the window's notes (before transposition)
    transposition: int  # semitones from the score
    heldout: str | None = None  # None (training), "piece" or "combination"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> MusicAttributes:
        names = {f.name for f in fields(cls)}
        missing = [n for n in names if n not in obj and n != "heldout"]
        if missing:
            raise ValueError(f"music attributes miss {sorted(missing)}; rebuild the corpus with `soundlm data music`")
        return cls(**{k: v for k, v in obj.items() if k in names})


@dataclass
class MusicClip:
    item: CorpusItem
    music: MusicAttributes
    caption: str


def read_music_corpus(path: str | Path, split: str | None = None) -> list[MusicClip]:
    """The clips of a music corpus (`open_corpus`'s items and split rule) with their attributes and captions."""
    items = open_corpus(path, split=split)
    manifest = manifest_path(path)
    rows = {str(r["id"]): r for r in read_manifest(manifest)}
    clips = []
    for item in items:
        row = rows[item.id]
        if not isinstance(row.get("music"), dict):
            raise ValueError(f"{manifest}: row {item.id!r} has no 'music' attributes; pass a corpus written by "
                             "`soundlm data music`")
        clips.append(MusicClip(item, MusicAttributes.from_json(row["music"]), str(row["transcript"])))
    return clips


# ------------------------------------------------------------------------------------ captions

_TEMPO_WORDS = ((72, ("slow", "calm", "unhurried")), (100, ("moderate", "relaxed", "walking-pace")),
                (126, ("upbeat", "lively", "brisk")), (10_000, ("fast", "energetic", "quick")))
_LOUD_WORDS = {"quiet": ("quiet", "soft", "gentle"), "medium": ("moderately loud", "mellow", "medium-volume"),
               "loud": ("loud", "powerful", "forceful")}
_INSTRUMENT_WORDS = {"piano": ("piano", "solo piano", "grand piano"), "harpsichord": ("harpsichord",),
                     "organ": ("organ", "pipe organ", "church organ"), "guitar": ("guitar", "acoustic guitar"),
                     "strings": ("strings", "string ensemble", "string orchestra"),
                     "choir": ("choir", "vocal choir", "choir (aahs)"), "clarinet": ("clarinet", "clarinets"),
                     "flute": ("flute", "flutes")}
_FORM_WORDS = {"chorale": ("chorale", "hymn"), "string quartet movement": ("quartet movement", "classical piece"),
               "madrigal": ("madrigal", "renaissance piece"), "mass movement": ("mass movement", "sacred piece")}
_TEMPLATES = (
    "{a_tempo}, {loud} {inst} {form} in {key}",
    "{Tempo} {inst} {form} in {key}, {meter}",
    "{inst} playing {a_form} in {key} at {bpm} BPM",
    "{key} {form} for {inst}, {loud} and {tempo}",
    "{a_loud} {inst} piece in {key}, {meter} time, about {bpm} beats per minute",
    "{form} in the style of {Composer}, arranged for {inst}, in {key}",
    "{Tempo} {inst} music in {key}",
    "{inst}, {key}, {meter}, {bpm} bpm, {loud}",
)


def _article(phrase: str) -> str:
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def make_caption(m: MusicAttributes, rng: random.Random) -> str:
    """One caption of the clip, its wording drawn by `rng` from the templates and synonyms."""
    tempo = rng.choice(next(words for limit, words in _TEMPO_WORDS if m.tempo_bpm <= limit))
    loud = rng.choice(_LOUD_WORDS[m.loudness])
    form = rng.choice(_FORM_WORDS.get(m.form, (m.form,)))
    words = {"tempo": tempo, "Tempo": tempo.capitalize(), "a_tempo": _article(tempo), "loud": loud,
             "a_loud": _article(loud).capitalize(), "inst": rng.choice(_INSTRUMENT_WORDS[m.instrument]),
             "form": form, "a_form": _article(form), "key": m.key, "bpm": m.tempo_bpm,
             "meter": m.meter or "free meter", "Composer": m.composer.capitalize()}
    text = rng.choice(_TEMPLATES).format(**words)
    return text[0].upper() + text[1:] if rng.random() < 0.5 else text[0].lower() + text[1:]


# ------------------------------------------------------------------------------------ scores

def list_scores(composers: tuple[str, ...] = tuple(FORMS)) -> dict[str, list[Path]]:
    """Score files of each composer in music21's bundled corpus, sorted."""
    from music21 import corpus

    found = {c: sorted({Path(p) for p in corpus.getComposer(c) if Path(p).suffix.lower() in SCORE_SUFFIXES})
             for c in composers}
    return {c: paths for c, paths in found.items() if paths}


def score_name(score: Path) -> str:
    """The score's path inside music21's corpus without suffix ("beethoven/opus18no1/movement1")."""
    parts = score.with_suffix("").parts
    return "/".join(parts[len(parts) - 1 - parts[::-1].index("corpus") + 1:]) if "corpus" in parts else score.stem


@dataclass(frozen=True)
class ClipSpec:
    id: str
    path: str  # output wav
    instrument: str
    tonic: int  # target tonic pitch class
    tempo_bpm: int
    loudness: str
    heldout: str | None


@dataclass(frozen=True)
class PieceTask:
    score: str
    piece: str
    composer: str
    clips: tuple[ClipSpec, ...]
    sample_rate: int
    max_seconds: float
    soundfont: str
    record: str  # pieces/ID.json


def _crop_score(parsed, quarters: float) -> None:
    """Drop every measure that starts at or after `quarters` (rendering the rest is wasted time)."""
    for part in parsed.parts:
        for m in list(part.getElementsByClass("Measure")):
            if m.offset >= quarters:
                part.remove(m)


def _set_performance(score, program: int, bpm: int, velocity: int) -> None:
    """Every part played by `program` at `bpm` quarter notes per minute, every note at `velocity`."""
    from music21 import instrument, tempo

    for mark in list(score.recurse().getElementsByClass(tempo.TempoIndication)):
        mark.activeSite.remove(mark)
    for part in score.parts:
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        inst = instrument.Instrument()
        inst.midiProgram = program
        part.insert(0, inst)
        part.insert(0, tempo.MetronomeMark(number=bpm))
    for n in score.recurse().notes:
        n.volume.velocity = velocity


def _write_midi(score, path: Path) -> None:
    """Write `score` as MIDI that fluidsynth finishes rendering.

    music21 expands repeats when it writes MIDI and refuses repeat marks that the crop cut in
    half; such a score is written again without its repeat marks (the opening, played once).
    """
    from music21 import bar, repeat, spanner
    from music21.repeat import ExpanderException

    try:
        score.write("midi", fp=str(path))
    except ExpanderException:
        for m in score.recurse().getElementsByClass("Measure"):
            if isinstance(m.leftBarline, bar.Repeat):
                m.leftBarline = None
            if isinstance(m.rightBarline, bar.Repeat):
                m.rightBarline = None
        for mark in list(score.recurse().getElementsByClass((repeat.RepeatExpression, spanner.RepeatBracket))):
            mark.activeSite.remove(mark)
        score.write("midi", fp=str(path))
    _end_all_notes(path)


def _end_all_notes(path: Path) -> None:
    """Append "all notes off" and "all sound off" on every channel at the end of each track.

    fluidsynth's file renderer runs until every voice has died: a note left on by music21's
    writer (seen on cropped quartets) never dies on a looped sample (strings, choir), and the
    render runs forever.
    """
    from music21 import midi

    mf = midi.MidiFile()
    mf.open(str(path))
    mf.read()
    mf.close()
    for track in mf.tracks:
        channels = sorted({e.channel for e in track.events
                           if not e.isDeltaTime() and e.type == midi.ChannelVoiceMessages.NOTE_ON})
        end = track.events.pop()  # END_OF_TRACK, after its delta time
        for i, (channel, controller) in enumerate((ch, cc) for ch in channels for cc in (123, 120)):
            if i:  # events alternate with delta times; the first reuses END_OF_TRACK's
                track.events.append(midi.DeltaTime(track, time=0, channel=channel))
            event = midi.MidiEvent(track, type=midi.ChannelVoiceMessages.CONTROLLER_CHANGE, channel=channel)
            event.parameter1, event.parameter2 = controller, 0
            track.events.append(event)
        if channels:
            track.events.append(midi.DeltaTime(track, time=0))
        track.events.append(end)
    mf.open(str(path), "wb")
    mf.write()
    mf.close()


def render_clips(task: PieceTask) -> str | None:
    """Render every clip of one piece and record their attributes; returns the reason on failure."""
    try:
        _render_clips(task)
    except Exception as e:  # a corpus score that music21 or fluidsynth cannot handle is skipped, not fatal
        return f"{type(e).__name__}: {e}"[:500]
    return None


def _render_clips(task: PieceTask) -> None:
    from music21 import converter, meter

    # forceSource: music21 otherwise writes pickle caches, which races between workers.
    parsed = converter.parse(task.score, forceSource=True)
    if not hasattr(parsed, "parts") or not parsed.parts:
        raise ValueError("not a score with parts")
    longest = max(c.tempo_bpm for c in task.clips) * task.max_seconds / 60
    _crop_score(parsed, longest + 8)
    flat = parsed.flatten()
    ts = flat.getElementsByClass(meter.TimeSignature).first()
    records = []
    for clip in task.clips:
        window = clip.tempo_bpm * task.max_seconds / 60  # quarter notes heard
        heard = flat.getElementsByOffset(0, window, includeEndBoundary=False).stream()
        if not heard.notes:
            raise ValueError(f"no notes in the first {task.max_seconds} s")
        found = heard.analyze("key")
        shift = (clip.tonic - found.tonic.pitchClass + 6) % 12 - 6  # -6..5 semitones
        score = copy.deepcopy(parsed)
        if shift:
            score.transpose(shift, inPlace=True)
        velocity, peak = DYNAMICS[clip.loudness]
        _set_performance(score, INSTRUMENTS[clip.instrument], clip.tempo_bpm, velocity)
        with tempfile.TemporaryDirectory(prefix="soundlm-music-") as tmp:
            midi = Path(tmp) / "clip.mid"
            _write_midi(score, midi)
            audio = render_midi(midi, task.soundfont, task.sample_rate, task.score, timeout=RENDER_TIMEOUT)  # [1, S]
        audio = trim_trailing_silence(audio)[:, : int(task.max_seconds * task.sample_rate)]
        if audio.shape[1] < MIN_SECONDS * task.sample_rate or not np.abs(audio).max() > 0:
            raise ValueError(f"renders to {audio.shape[1] / task.sample_rate:.1f} s, under {MIN_SECONDS} s")
        audio = audio * (peak / float(np.abs(audio).max()))
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        save_audio(clip.path, audio, task.sample_rate)
        mode = "minor" if found.mode == "minor" else "major"
        records.append(MusicAttributes(
            piece=task.piece, composer=task.composer, form=FORMS[task.composer], instrument=clip.instrument,
            program=INSTRUMENTS[clip.instrument], tonic=clip.tonic, mode=mode, key=key_name(clip.tonic, mode),
            tempo_bpm=clip.tempo_bpm, meter=ts.ratioString if ts is not None else None, loudness=clip.loudness,
            velocity=velocity, loudness_db=round(20 * math.log10(max(rms, 1e-9)), 2),
            key_confidence=round(float(found.correlationCoefficient), 4), transposition=shift,
            heldout=clip.heldout).to_json())
    write_json_atomic(task.record, {"score": task.score, "clips": {c.id: r for c, r in zip(task.clips, records)}})


# ------------------------------------------------------------------------------------ the corpus

def heldout_pairs(seed: int) -> set[tuple[str, int]]:
    """One (instrument, tonic) pair per instrument, different tonics, that no training clip has."""
    tonics = random.Random(f"music-pairs-{seed}").sample(range(12), len(INSTRUMENTS))
    return set(zip(INSTRUMENTS, tonics))


def make_music_corpus(out: str | Path, clips: int = 400, seed: int = 0, max_seconds: float = 10.0,
                      clips_per_piece: int = 3, heldout_fraction: float = 0.15, sample_rate: int = 16_000,
                      soundfont: str | Path | None = None, workers: int | None = None) -> Path:
    """Build (or resume) a music corpus of about `clips` clips in `out`; returns the manifest path.

    Pieces are drawn round-robin over the composers of `FORMS` by `seed`, `clips_per_piece`
    clips each with their own instrument, key, tempo and dynamic. Pieces that fail to parse
    or render are skipped and listed in `out/errors.jsonl`. Same arguments, same files.
    """
    if shutil.which("fluidsynth") is None:
        raise MissingToolError("fluidsynth not found: install it with "
                               "`sudo apt-get install fluidsynth fluid-soundfont-gm`")
    font = find_soundfont(soundfont)
    if clips < 1:
        raise ValueError(f"--clips must be >= 1, got {clips}")
    if clips_per_piece < 1:
        raise ValueError(f"--clips-per-piece must be >= 1, got {clips_per_piece}")
    if max_seconds < MIN_SECONDS:
        raise ValueError(f"--max-seconds must be >= {MIN_SECONDS}, got {max_seconds}")
    if not 0.0 <= heldout_fraction < 1.0:
        raise ValueError(f"--heldout-fraction must be in [0, 1), got {heldout_fraction}")
    if not 8_000 <= sample_rate <= 48_000:
        raise ValueError(f"--sample-rate {sample_rate} is outside 8000..48000 Hz")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pin_config(out, {"kind": "music", "seed": seed, "clips": clips, "max_seconds": max_seconds,
                     "clips_per_piece": clips_per_piece, "heldout_fraction": heldout_fraction,
                     "sample_rate": sample_rate, "soundfont": font.name, "instruments": INSTRUMENTS,
                     "tempi": list(TEMPI), "dynamics": {k: list(v) for k, v in DYNAMICS.items()}})
    tasks = plan_pieces(out, clips, seed, max_seconds, clips_per_piece, heldout_fraction, sample_rate, str(font))
    remove_stale_temporaries(out)
    todo = [t for t in tasks if not _piece_done(t)]
    if len(todo) < len(tasks):
        print(f"resuming: {len(tasks) - len(todo)} of {len(tasks)} pieces already rendered")
    failures = dict(zip((t.score for t in todo), run_parallel(render_clips, todo, workers, desc="music", chunksize=1)))
    errors = [{"path": score, "reason": why} for score, why in failures.items() if why is not None]
    write_text_atomic(out / "errors.jsonl", "".join(json.dumps(e) + "\n" for e in errors))
    if errors:
        print(f"skipped {len(errors)} pieces that failed to render (reasons in {out / 'errors.jsonl'})")
    rows = []
    for task in tasks:
        if failures.get(task.score) is not None or not Path(task.record).is_file():
            continue
        record = read_json(task.record)["clips"]
        for clip in task.clips:
            music = MusicAttributes.from_json(record[clip.id])
            caption = make_caption(music, random.Random(f"music-caption-{seed}-{clip.id}"))
            rel = Path(clip.path).relative_to(out).as_posix()
            rows.append({"id": clip.id, "path": rel, "duration": round(info(clip.path).duration, 6),
                         "sample_rate": sample_rate, "speaker": None, "language": None, "transcript": caption,
                         "split": "train" if clip.heldout is None else "heldout", "music": music.to_json()})
    if not rows:
        raise ValueError(f"{out}: no piece rendered (reasons in {out / 'errors.jsonl'}); check fluidsynth and the "
                         "soundfont")
    return write_manifest(out / "manifest.jsonl", rows)


def _piece_done(task: PieceTask) -> bool:
    """Whether the piece's record and wavs are there, rendered from this score with these clip settings."""
    if not Path(task.record).is_file():
        return False
    record = read_json(task.record)
    if record.get("score") != task.score or any(not _matches(record["clips"].get(c.id), c) for c in task.clips):
        return False
    return all(valid_wav(Path(c.path), task.sample_rate) for c in task.clips)


def _matches(attributes: dict | None, clip: ClipSpec) -> bool:
    """A recorded clip was rendered with `clip`'s drawn settings (a plan that changed renders again)."""
    return attributes is not None and all(attributes.get(k) == getattr(clip, k)
                                          for k in ("instrument", "tonic", "tempo_bpm", "loudness", "heldout"))


def plan_pieces(out: Path, clips: int, seed: int, max_seconds: float, clips_per_piece: int,
                heldout_fraction: float, sample_rate: int, soundfont: str) -> list[PieceTask]:
    """The pieces and their clips' drawn attributes: a pure function of the arguments."""
    rng = random.Random(f"music-{seed}")
    scores = {c: rng.sample(paths, len(paths)) for c, paths in list_scores().items()}
    n_pieces = math.ceil(clips / clips_per_piece)
    chosen: list[tuple[str, Path]] = []
    names: set[str] = set()
    while len(chosen) < n_pieces and any(scores.values()):
        for composer in list(scores):
            # One score can be in the corpus twice (beethoven's .mxl and .krn): it is one piece, drawn once.
            while scores[composer] and score_name(scores[composer][-1]) in names:
                scores[composer].pop()
            if scores[composer] and len(chosen) < n_pieces:
                chosen.append((composer, scores[composer].pop()))
                names.add(score_name(chosen[-1][1]))
    n_heldout = round(len(chosen) * heldout_fraction)
    held_pieces = set(rng.sample(range(len(chosen)), n_heldout))
    pairs = heldout_pairs(seed)
    tasks, left = [], clips
    for i, (composer, score) in enumerate(chosen):
        piece = score_name(score)
        uid = piece.replace("/", "-")
        specs = []
        for k in range(min(clips_per_piece, left)):
            inst, tonic = rng.choice(list(INSTRUMENTS)), rng.randrange(12)
            tempo, loud = rng.choice(TEMPI), rng.choice(list(DYNAMICS))
            heldout = "piece" if i in held_pieces else "combination" if (inst, tonic) in pairs else None
            cid = f"{uid}-{k}"
            specs.append(ClipSpec(cid, str(out / "wavs" / f"{cid}.wav"), inst, tonic, tempo, loud, heldout))
        left -= len(specs)
        tasks.append(PieceTask(str(score), piece, composer, tuple(specs), sample_rate, max_seconds, soundfont,
                               str(out / "pieces" / f"{uid}.json")))
    return tasks
