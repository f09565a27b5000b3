"""Multi-speaker synthetic speech: espeak-ng (plus flite and mbrola if installed) reading parallel sentences.

A speaker is an (engine, language voice, variant, pitch, rate) tuple drawn from the seed; in the
`wide` inventory (`inventory="wide"`, soundlm.data.voices) most speakers also carry a signal
transform (soundlm.data.transforms) that makes them a pseudo-speaker of their own.
Held-out speakers use voice variants that no training speaker uses, so a model evaluated
on them has never heard their timbre. `voice="ENGINE:NAME"` reads every utterance with
one given voice instead (e.g. `festival:ked_diphone`, a voice no recipe speaker uses):
the few minutes of a new voice that `soundlm finetune` adapts a model to. Each sentence of `soundlm.data.text` is read once
per language by a random speaker of that language, so the corpus holds parallel speech
sharing a `text_id`.

Layout of the output folder:
    corpus.json      the settings (a resumed run must use the same ones)
    speakers.json    every speaker and its synthesis parameters
    manifest.jsonl   one row per utterance (docs/ARCHITECTURE.md), written last
    wavs/SPEAKER/ID.wav
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from soundlm.audio import load_audio, normalize_peak, save_audio
from soundlm.data import MissingToolError
from soundlm.data.jobs import pin_config, render_corpus
from soundlm.data.text import LANGUAGES, Sentence, make_text_id, random_sentence
from soundlm.data.transforms import VoiceTransform, apply_voice_transform
from soundlm.fileio import write_json_atomic

# espeak-ng voices per language; a speaker picks one (accent) and adds a variant (timbre).
ESPEAK_LANGUAGE_VOICES = {
    "en": ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd"),
    "fr": ("fr-fr", "fr-be", "fr-ch"),
    "de": ("de",),
    "es": ("es", "es-419"),
}
# Whispered variants have no pitch: useless for speaker identity and unlike real speech.
EXCLUDED_VARIANTS = frozenset({"whisper", "whisperf"})
# 16 kHz flite voices (kal is 8 kHz; awb_time only speaks clock times).
FLITE_VOICES = ("awb", "kal16", "rms", "slt")
MBROLA_DIR = Path("/usr/share/mbrola")
VOICE_ENGINES = ("espeak-ng", "flite", "festival")  # engines `--voice ENGINE:NAME` takes
PITCH_RANGE = (25, 75)  # espeak-ng -p, 0..99
RATE_RANGE = (135, 185)  # espeak-ng -s, words per minute
# `classic`: the espeak-ng/flite/mbrola speakers the shipped recipe trains on. `wide`: hundreds of
# voices, most of them pseudo-speakers made by signal transforms (soundlm.data.voices).
INVENTORIES = ("classic", "wide")


@dataclass(frozen=True)
class Speaker:
    id: str
    engine: str  # "espeak-ng", "mbrola" (espeak-ng driving an mbrola diphone voice), "flite" or "festival"
    language: str
    voice: str  # espeak-ng language voice ("en-gb"), mbrola voice ("mb-fr1") or flite voice ("slt")
    variant: str | None  # espeak-ng variant ("m3"); None for mbrola and flite
    pitch: int
    rate: int
    split: str
    transform: VoiceTransform | None = None  # applied to every utterance (a pseudo-speaker); wide inventory only

    def to_json(self) -> dict:
        row = asdict(self)
        if self.transform is None:
            del row["transform"]  # classic speakers.json stays as it was
        return row


@dataclass(frozen=True)
class SpeechTask:
    """Everything a worker process needs to render one utterance."""

    path: str
    text: str
    speaker: Speaker
    sample_rate: int


def _require_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        raise MissingToolError("espeak-ng not found: install it with `sudo apt-get install espeak-ng`")


def installed_espeak_variants() -> list[str]:
    """Every installed espeak-ng voice variant (the `+NAME` suffixes), sorted."""
    out = subprocess.run(["espeak-ng", "--voices=variant"], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in out.splitlines()[1:]:
        # The file column can hold spaces ("!v/Mr serious") and be followed by other languages
        # ("!v/Storm   (en-us 5)"). Splitting on spaces once gave "Mr", which espeak-ng does not
        # know and silently renders as its default voice.
        match = re.search(r" !v/(.+?)\s*(\(.*\))?$", line)
        if match:
            names.add(match.group(1))
    return sorted(names)


def espeak_variants() -> list[str]:
    """Installed espeak-ng voice variants a corpus speaker may use, sorted."""
    return sorted(set(installed_espeak_variants()) - EXCLUDED_VARIANTS)


def flite_voices() -> list[str]:
    if shutil.which("flite") is None:
        return []
    out = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout
    listed = out.split(":", 1)[-1].split()
    return [v for v in FLITE_VOICES if v in listed]


def festival_voices() -> list[str]:
    """Installed festival voices (`ked_diphone`, ...); [] without festival's text2wave."""
    if shutil.which("text2wave") is None:
        return []
    out = subprocess.run(["festival", "--pipe"], input="(print (voice.list))", capture_output=True,
                         text=True).stdout
    return sorted(re.findall(r"[A-Za-z0-9_]+", out.strip().strip("()")))


def single_voice_speaker(voice: str, language: str) -> Speaker:
    """The one speaker of a `voice="ENGINE:NAME"` corpus, checked against what is installed."""
    engine, _, name = voice.partition(":")
    if engine not in VOICE_ENGINES or not name:
        raise ValueError(f"--voice must be ENGINE:NAME with ENGINE one of {', '.join(VOICE_ENGINES)} "
                         f"(e.g. festival:ked_diphone, flite:slt, espeak-ng:en-us+m3), got {voice!r}")
    installed = {"festival": festival_voices, "flite": flite_voices}.get(engine)
    if installed is not None and name not in installed():
        package = "festival festvox-kdlpc16k" if engine == "festival" else "flite"
        raise MissingToolError(f"{engine} voice {name!r} is not installed (have: {', '.join(installed()) or 'none'});"
                               f" install one with `sudo apt-get install {package}`")
    if engine == "espeak-ng":
        _require_espeak()
    lang_voice, _, variant = name.partition("+")
    return Speaker(id=f"{language}-{engine}-{name}".replace("+", "-"), engine=engine, language=language,
                   voice=lang_voice if engine == "espeak-ng" else name, variant=variant or None,
                   pitch=sum(PITCH_RANGE) // 2, rate=sum(RATE_RANGE) // 2, split="train")


def mbrola_voices() -> dict[str, list[str]]:
    """espeak-ng's mbrola voices whose diphone data is installed, by language ({} without mbrola)."""
    if shutil.which("mbrola") is None:
        return {}
    out = subprocess.run(["espeak-ng", "--voices=mb"], capture_output=True, text=True).stdout
    found: dict[str, list[str]] = {}
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 5 or not fields[4].startswith("mb/mb-"):
            continue
        name = fields[4][3:]  # "mb-fr1"
        # espeak-ng lists every mbrola voice it knows; only those with data files can speak.
        if (MBROLA_DIR / name[3:]).exists():
            found.setdefault(fields[1].split("-")[0], []).append(name)
    return {lang: sorted(names) for lang, names in sorted(found.items())}


def make_speakers(seed: int, languages: list[str], voices: int, heldout_voices: int,
                  variants: list[str], flite: list[str], mbrola: dict[str, list[str]] | None = None) -> list[Speaker]:
    """Draw `voices` training and `heldout_voices` held-out speakers per language.

    Held-out speakers get variants reserved for them; training speakers never use those.
    They are drawn from their own random stream, so the same seed gives the same held-out
    voices whatever `voices` is (evaluations of corpora of different sizes compare), and
    their pitches are spread over PITCH_RANGE (one per equal slice), so they differ audibly.
    """
    if not variants:
        raise MissingToolError("espeak-ng lists no voice variants; reinstall it with `sudo apt-get install espeak-ng`")
    rng = random.Random(f"speakers-{seed}")
    pool = list(variants)
    rng.shuffle(pool)
    n_heldout = heldout_voices * len(languages)
    # Keep at least as many variants for training as held-out ones, so neither set is starved.
    reserve = min(n_heldout, len(pool) // 2)
    if n_heldout and reserve == 0:
        raise ValueError(f"only {len(pool)} espeak-ng variants installed, too few to hold speakers out; "
                         "pass --heldout-voices 0")
    heldout_pool, train_pool = pool[:reserve], pool[reserve:]
    speakers: list[Speaker] = []
    taken: set[tuple] = set()

    def draw(lang: str, idx: int, split: str, identities: list[tuple[str, str | None]], offset: int = 0,
             rng: random.Random = rng, pitch_range: tuple[int, int] = PITCH_RANGE) -> Speaker:
        for attempt in range(1000):
            engine, variant = identities[(offset + idx + attempt) % len(identities)]
            voice = rng.choice(ESPEAK_LANGUAGE_VOICES[lang]) if engine == "espeak-ng" else variant
            pitch, rate = rng.randint(*pitch_range), rng.randint(*RATE_RANGE)
            key = (engine, voice, variant if engine == "espeak-ng" else None, pitch, rate)
            if key not in taken:
                taken.add(key)
                tag = "s" if split == "train" else "h"
                return Speaker(f"{lang}-{tag}{idx:02d}", engine, lang, voice, key[2], pitch, rate, split)
        raise ValueError("could not draw distinct speakers; lower --voices")

    for li, lang in enumerate(languages):
        train_ids: list[tuple[str, str | None]] = [("espeak-ng", v) for v in train_pool]
        rng.shuffle(train_ids)
        # Every 4th speaker uses another engine where one is installed (flite for English,
        # mbrola diphones), so timbres are not all espeak-ng formant synthesis.
        others = ([("flite", v) for v in flite] if lang == "en" else []) + [
            ("mbrola", v) for v in (mbrola or {}).get(lang, [])]
        for k, identity in enumerate(others):
            train_ids.insert(min(1 + 4 * k, len(train_ids)), identity)
        for i in range(voices):
            speakers.append(draw(lang, i, "train", train_ids))
        held = [("espeak-ng", v) for v in heldout_pool]
        held_rng = random.Random(f"heldout-speakers-{seed}-{lang}")
        low, high = PITCH_RANGE
        width = (high - low + 1) / max(heldout_voices, 1)
        slices = [(low + round(i * width), low + round((i + 1) * width) - 1) for i in range(heldout_voices)]
        held_rng.shuffle(slices)
        for i in range(heldout_voices):
            # Offset by language so languages spread over the reserved variants.
            speakers.append(draw(lang, i, "heldout", held, offset=li * heldout_voices, rng=held_rng,
                                 pitch_range=slices[i]))
    return speakers


def _estimate_seconds(text: str, speaker: Speaker) -> float:
    # Fitted on rendered, trimmed utterances: about half the nominal words-per-minute time
    # (the rate counts short words) plus a fixed onset/final pause.
    tempo = speaker.transform.tempo if speaker.transform is not None else 1.0
    return (0.5 * len(text.split()) * 60.0 / speaker.rate + 0.55) / tempo


def _synth_command(text: str, speaker: Speaker, wav: Path) -> list[str]:
    if speaker.engine == "festival":
        # text2wave reads the text from a file: `render_utterance` writes it beside the wav.
        return ["text2wave", "-eval", f"(voice_{speaker.voice})", str(wav.with_suffix(".txt")), "-o", str(wav)]
    if speaker.engine == "flite":
        # flite has no wpm/pitch flags: map the espeak-scale pitch and rate onto its parameters.
        f0 = 80 + 1.6 * speaker.pitch
        stretch = 165.0 / speaker.rate
        return ["flite", "-voice", speaker.voice, "--setf", f"int_f0_target_mean={f0:.1f}",
                "--setf", f"duration_stretch={stretch:.3f}", "-t", text, "-o", str(wav)]
    voice = speaker.voice if speaker.variant is None else f"{speaker.voice}+{speaker.variant}"
    return ["espeak-ng", "-v", voice, "-p", str(speaker.pitch),
            "-s", str(speaker.rate), "-w", str(wav), text]


def trim_silence(audio: np.ndarray, sample_rate: int, threshold_db: float = -45.0, keep_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing audio quieter than `threshold_db` below the peak, keeping a margin."""
    level = np.abs(audio).max(axis=0)  # [S]
    loud = np.flatnonzero(level > level.max() * 10 ** (threshold_db / 20))
    if loud.size == 0:
        return audio
    keep = int(keep_s * sample_rate)
    return audio[:, max(0, loud[0] - keep): loud[-1] + 1 + keep]


def render_utterance(task: SpeechTask) -> None:
    """Synthesize one sentence to a peak-normalised mono wav at the task's sample rate."""
    with tempfile.TemporaryDirectory(prefix="soundlm-tts-") as tmp:
        raw = Path(tmp) / "raw.wav"
        raw.with_suffix(".txt").write_text(task.text + "\n", encoding="utf-8")
        cmd = _synth_command(task.text, task.speaker, raw)
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not raw.exists():
            raise RuntimeError(f"{task.speaker.engine} failed for {task.path} (exit {proc.returncode}): "
                               f"{proc.stderr.strip()[:300]}; command: {' '.join(cmd)}")
        audio = load_audio(raw, sample_rate=task.sample_rate, mono=True)  # [1, S]
    if task.speaker.transform is not None:
        audio = apply_voice_transform(audio, task.sample_rate, task.speaker.transform)
    audio = normalize_peak(trim_silence(audio, task.sample_rate))
    save_audio(task.path, audio, task.sample_rate)


def _joined_sentence(parts: list[Sentence]) -> Sentence:
    """Several parallel sentences read as one utterance, in every language."""
    if len(parts) == 1:
        return parts[0]
    text = {lang: " ".join(p.text[lang].rstrip(".") + "." for p in parts) for lang in parts[0].text}
    return Sentence(text_id=make_text_id(text["en"]), template="+".join(p.template for p in parts), text=text)


def make_speech_corpus(out: str | Path, hours: float, seed: int = 0, languages: list[str] | None = None,
                       voices: int = 8, heldout_voices: int = 2, sample_rate: int = 16_000,
                       workers: int | None = None, sentences_per_utterance: int = 1, voice: str | None = None,
                       inventory: str = "classic") -> Path:
    """Build (or resume) a synthetic parallel speech corpus in `out`; returns the manifest path.

    `voices` and `heldout_voices` count speakers per language; `voice` ("ENGINE:NAME") replaces
    them by that one voice (one language only). `inventory` picks how speakers are made
    (INVENTORIES; `wide` for hundreds of distinct voices). `sentences_per_utterance`
    joins several sentences into one recording (longer audio for continuation prompts). The same arguments always
    give the same files, byte for byte; an interrupted run continues where it stopped.
    """
    _require_espeak()
    languages = list(languages or LANGUAGES)
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown or not languages or len(set(languages)) != len(languages):
        raise ValueError(f"--languages must be distinct codes from {','.join(LANGUAGES)}, got {','.join(languages)}")
    if not 0 < hours < float("inf"):  # NaN fails too; inf would never stop planning utterances
        raise ValueError(f"--hours must be positive and finite, got {hours}")
    if voices < 1 or heldout_voices < 0:
        raise ValueError(f"need --voices >= 1 and --heldout-voices >= 0, got {voices} and {heldout_voices}")
    if sentences_per_utterance < 1:
        raise ValueError(f"--sentences-per-utterance must be >= 1, got {sentences_per_utterance}")
    if not 8_000 <= sample_rate <= 48_000:
        raise ValueError(f"--sample-rate {sample_rate} is outside 8000..48000 Hz")
    if inventory not in INVENTORIES:
        raise ValueError(f"--inventory must be one of {', '.join(INVENTORIES)}, got {inventory!r}")
    if voice is not None and len(languages) != 1:
        raise ValueError(f"--voice reads one language; pass --languages with one of {','.join(LANGUAGES)}")
    single = single_voice_speaker(voice, languages[0]) if voice is not None else None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    variants, flite, mbrola = espeak_variants(), flite_voices(), mbrola_voices()
    festival = festival_voices() if inventory == "wide" and voice is None else []
    # Hours are left out: a larger --hours extends the same utterance plan, so it resumes too.
    pin_config(out, {"kind": "speech", "seed": seed, "languages": languages, "voices": voices,
                     "heldout_voices": heldout_voices, "sample_rate": sample_rate,
                     **({"sentences_per_utterance": sentences_per_utterance} if sentences_per_utterance > 1 else {}),
                     "espeak_variants": variants, "flite_voices": flite, "mbrola_voices": mbrola,
                     **({"voice": voice} if voice is not None else {}),
                     **({"inventory": inventory, "festival_voices": festival} if inventory != "classic" else {})})
    if single is not None:
        speakers = [single]
    elif inventory == "wide":
        from soundlm.data.voices import distinct_espeak_variants, make_wide_speakers

        speakers = make_wide_speakers(seed, languages, voices, heldout_voices, distinct_espeak_variants(variants),
                                      flite, festival, mbrola)
    else:
        speakers = make_speakers(seed, languages, voices, heldout_voices, variants, flite, mbrola)
    write_json_atomic(out / "speakers.json", {"speakers": [s.to_json() for s in speakers]})

    by_lang = {lang: [s for s in speakers if s.language == lang] for lang in languages}
    rng = random.Random(f"utterances-{seed}")
    rows, tasks, total = [], [], 0.0
    # Whole sentence groups (every language) until the time budget is reached.
    while total < hours * 3600:
        sentence = _joined_sentence([random_sentence(rng) for _ in range(sentences_per_utterance)])
        group = len(rows) // len(languages)
        for lang in languages:
            speaker = rng.choice(by_lang[lang])
            text = sentence.text[lang]
            uid = f"{group:06d}-{lang}"
            rel = f"wavs/{speaker.id}/{uid}.wav"
            total += _estimate_seconds(text, speaker)
            rows.append({"id": uid, "path": rel, "duration": 0.0, "sample_rate": sample_rate,
                         "speaker": speaker.id, "language": lang, "transcript": text,
                         "text_id": sentence.text_id, "split": speaker.split})
            tasks.append(SpeechTask(str(out / rel), text, speaker, sample_rate))

    return render_corpus(out, rows, tasks, render_utterance, sample_rate, workers, desc="speech", noun="utterances")
