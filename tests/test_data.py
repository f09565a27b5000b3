"""Tests for the synthetic corpora (`soundlm data`): manifest contract, speakers, parallel
text, determinism and resume. Corpora are tiny (about a dozen utterances, two piano pieces
of 3 s) so the file runs in seconds on two cores."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundlm.data import MissingToolError, audio_path, read_manifest, write_manifest
from soundlm.data import speech as speech_mod
from soundlm.data.text import LANGUAGES, Sentence, random_sentence, sentences

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)")
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not Path("/usr/share/sounds/sf2").is_dir(),
    reason="fluidsynth or its soundfont not installed (apt-get install fluidsynth fluid-soundfont-gm)")

# ~12 utterances: 3 sentence groups x 4 languages.
SPEECH_ARGS = dict(hours=0.004, seed=3, voices=2, heldout_voices=1)
PIANO_ARGS = dict(pieces=2, max_seconds=3.0, seed=0)


def manifest_bytes(folder: Path) -> bytes:
    return (folder / "manifest.jsonl").read_bytes()


def wav_bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.wav"))}


@pytest.fixture(scope="module")
def speech_corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("speech")
    speech_mod.make_speech_corpus(out, workers=2, **SPEECH_ARGS)
    return out


@pytest.fixture(scope="module")
def piano_corpus(tmp_path_factory) -> Path:
    from soundlm.data.piano import make_piano_corpus

    out = tmp_path_factory.mktemp("piano")
    make_piano_corpus(out, workers=2, **PIANO_ARGS)
    return out


# ---------------------------------------------------------------- sentences


def test_sentences_are_parallel_and_deterministic():
    a, b = sentences(7, 50), sentences(7, 50)
    assert a == b and sentences(8, 50) != a
    for s in a:
        assert set(s.text) == set(LANGUAGES)
        assert len(set(s.text.values())) == len(LANGUAGES), f"untranslated sentence: {s.text}"
        assert all(t[-1] in ".?" and t[0].isupper() or t[0] == "¿" for t in s.text.values())
    # Same English sentence, same text_id, wherever it comes from.
    by_en = defaultdict(set)
    for s in sentences(0, 400):
        by_en[s.text["en"]].add(s.text_id)
    assert all(len(ids) == 1 for ids in by_en.values())
    assert len({s.template for s in sentences(0, 400)}) >= 8


def _find(template: str, predicate, tries: int = 3000) -> Sentence:
    import random

    rng = random.Random(0)
    for _ in range(tries):
        s = random_sentence(rng)
        if s.template == template and predicate(s):
            return s
    raise AssertionError(f"no {template} sentence matched")


def test_grammar_agreement():
    # German masculine direct object takes "den" and a weak "-en" adjective.
    s = _find("transitive", lambda s: " den " in s.text["de"])
    obj = s.text["de"].split(" den ", 1)[1].split()
    assert obj[0].endswith("en") or len(obj) == 1
    # French elides le/la before a vowel: never "le oiseau" / "la école".
    for s in sentences(1, 600):
        words = s.text["fr"].lower().replace("?", "").split()
        for art, nxt in zip(words, words[1:]):
            assert not (art in ("le", "la") and nxt[0] in "aeiouéh"), s.text["fr"]
    # German is verb-second after a fronted adverb; Spanish questions open with "¿".
    s = _find("adverb", lambda s: s.text["en"].startswith("Today"))
    assert s.text["de"].split()[0] == "Heute" and s.text["de"].split()[2] in ("der", "die", "das")
    s = _find("question", lambda s: True)
    assert s.text["es"].startswith("¿Dónde está") and s.text["fr"].endswith(" ?")
    # Spanish person objects take "a" (contracted "al").
    s = _find("transitive", lambda s: " al " in s.text["es"] or " a la " in s.text["es"])
    assert s.text["en"].split()[-1].rstrip(".") in {"man", "woman", "girl", "teacher", "doctor", "friend", "baker"}


# ---------------------------------------------------------------- manifest I/O


def test_manifest_roundtrip_and_errors(tmp_path):
    rows = [{"id": "a", "path": "wavs/a.wav", "duration": 1.5, "sample_rate": 16000, "speaker": None,
             "language": None, "transcript": "é", "split": "train"}]
    path = write_manifest(tmp_path / "manifest.jsonl", rows)
    assert read_manifest(tmp_path) == rows == read_manifest(path)
    assert audio_path(tmp_path, rows[0]) == tmp_path / "wavs/a.wav"
    with pytest.raises(ValueError, match="duplicate id"):
        write_manifest(tmp_path / "m2.jsonl", rows * 2)
    with pytest.raises(ValueError, match="relative"):
        write_manifest(tmp_path / "m2.jsonl", [{**rows[0], "path": "/abs/a.wav"}])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        read_manifest(bad)
    bad.write_text(json.dumps({"id": "x"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: missing keys"):
        read_manifest(bad)
    with pytest.raises(FileNotFoundError, match="soundlm data speech"):
        read_manifest(tmp_path / "nowhere")


# ---------------------------------------------------------------- speech corpus


def test_espeak_variant_names_keep_spaces_and_drop_other_languages(monkeypatch):
    """Splitting the listing on spaces once gave "Mr" for the file "Mr serious": espeak-ng does
    not know "+Mr" and silently renders its default voice under that name."""
    import subprocess

    listing = (
        "Pty Language       Age/Gender VoiceName          File                 Other Languages\n"
        " 5  variant         --/M      Mr_Serious         !v/Mr serious        \n"
        " 5  variant         --/M      Storm              !v/Storm             (en-us 5)\n"
        " 5  variant         --/F      f3                 !v/f3                \n"
        " 5  variant         --/F      whisperf           !v/whisperf          \n")
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, stdout=listing))
    assert speech_mod.espeak_variants() == ["Mr serious", "Storm", "f3"]  # whispered ones are excluded


@needs_espeak
def test_installed_variants_are_files_espeak_knows():
    import re
    import subprocess

    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    folder = Path(re.search(r"Data at: (.+)$", version.strip()).group(1)) / "voices" / "!v"
    variants = speech_mod.espeak_variants()
    assert len(variants) >= 50
    assert [v for v in variants if not (folder / v).is_file()] == []


@needs_espeak
def test_speech_manifest_schema(speech_corpus):
    rows = read_manifest(speech_corpus)
    assert 8 <= len(rows) <= 24
    keys = {"id", "path", "duration", "sample_rate", "speaker", "language", "transcript", "text_id", "split"}
    for row in rows:
        assert set(row) == keys
        assert row["language"] in LANGUAGES and row["split"] in ("train", "heldout") and row["transcript"]
        wav = audio_path(speech_corpus, row)
        assert wav.parent.name == row["speaker"]
        i = sf.info(str(wav))
        assert (i.samplerate, i.channels, row["sample_rate"]) == (16000, 1, 16000)
        assert row["duration"] == pytest.approx(i.frames / i.samplerate, abs=1e-5)
        assert 0.3 < row["duration"] < 10
        audio, _ = sf.read(str(wav), dtype="float32")
        assert np.abs(audio).max() == pytest.approx(0.95, abs=0.01), "not peak-normalised"
    assert len({r["id"] for r in rows}) == len(rows)
    assert not list(speech_corpus.rglob(".tmp-*"))


@needs_espeak
def test_speakers_distinct_and_heldout_disjoint(speech_corpus):
    speakers = json.loads((speech_corpus / "speakers.json").read_text())["speakers"]
    langs = speech_mod.LANGUAGES
    assert len(speakers) == len(langs) * (SPEECH_ARGS["voices"] + SPEECH_ARGS["heldout_voices"])
    keys = [(s["engine"], s["voice"], s["variant"], s["pitch"], s["rate"]) for s in speakers]
    assert len(set(keys)) == len(keys) and len({s["id"] for s in speakers}) == len(speakers)
    train_voices = {(s["engine"], s["variant"] or s["voice"]) for s in speakers if s["split"] == "train"}
    held_voices = {(s["engine"], s["variant"] or s["voice"]) for s in speakers if s["split"] == "heldout"}
    assert held_voices and not train_voices & held_voices
    split_of = {s["id"]: (s["split"], s["language"]) for s in speakers}
    for row in read_manifest(speech_corpus):
        assert split_of[row["speaker"]] == (row["split"], row["language"])


def test_make_speakers_pure():
    variants = [f"v{i}" for i in range(12)]
    mbrola = {"fr": ["mb-fr1", "mb-fr4"]}
    langs = ["en", "fr"]
    speakers = speech_mod.make_speakers(0, langs, voices=20, heldout_voices=3, variants=variants,
                                        flite=["slt", "awb"], mbrola=mbrola)
    assert speakers == speech_mod.make_speakers(0, langs, 20, 3, variants, ["slt", "awb"], mbrola)
    assert speakers != speech_mod.make_speakers(1, langs, 20, 3, variants, ["slt", "awb"], mbrola)
    # More speakers than variants: identities repeat, but every speaker tuple is distinct.
    keys = [(s.engine, s.voice, s.variant, s.pitch, s.rate) for s in speakers]
    assert len(set(keys)) == len(speakers) == 2 * 23
    train = {s.variant for s in speakers if s.split == "train" and s.engine == "espeak-ng"}
    held = {s.variant for s in speakers if s.split == "heldout"}
    assert held and not train & held
    engines = {(s.language, s.engine) for s in speakers if s.split == "train"}
    assert {("en", "flite"), ("fr", "mbrola"), ("en", "espeak-ng")} <= engines and ("fr", "flite") not in engines
    assert all(s.voice.startswith("mb-fr") and s.variant is None for s in speakers if s.engine == "mbrola")
    with pytest.raises(MissingToolError):
        speech_mod.make_speakers(0, langs, 2, 1, variants=[], flite=[])


def test_heldout_speakers_independent_of_training_voices():
    variants = [f"v{i}" for i in range(40)]
    held = [[s for s in speech_mod.make_speakers(0, ["en"], voices=n, heldout_voices=4, variants=variants, flite=[])
             if s.split == "heldout"] for n in (4, 12, 36)]
    assert held[0] == held[1] == held[2]
    # One pitch per equal slice of PITCH_RANGE: no two held-out voices share a slice.
    low, high = speech_mod.PITCH_RANGE
    width = (high - low + 1) / 4
    slices = sorted(int((s.pitch - low) // width) for s in held[0])
    assert slices == [0, 1, 2, 3]


@needs_espeak
def test_parallel_sentences_share_text_id(speech_corpus):
    groups = defaultdict(list)
    for row in read_manifest(speech_corpus):
        groups[row["text_id"]].append(row)
    assert len(groups) >= 2
    for rows in groups.values():
        assert sorted(r["language"] for r in rows) == sorted(LANGUAGES)
        assert len({r["transcript"] for r in rows}) == len(LANGUAGES)
        assert len({r["id"].split("-")[0] for r in rows}) == 1


@needs_espeak
def test_speech_deterministic_across_workers(speech_corpus, tmp_path):
    again = tmp_path / "again"
    speech_mod.make_speech_corpus(again, workers=1, **SPEECH_ARGS)
    assert manifest_bytes(again) == manifest_bytes(speech_corpus)
    assert wav_bytes(again) == wav_bytes(speech_corpus)
    other = tmp_path / "other"
    speech_mod.make_speech_corpus(other, workers=1, **{**SPEECH_ARGS, "seed": 4})
    assert manifest_bytes(other) != manifest_bytes(speech_corpus)


@needs_espeak
def test_speech_resume_after_deleted_files_and_crash(speech_corpus, tmp_path, monkeypatch):
    work = tmp_path / "c"
    shutil.copytree(speech_corpus, work)
    (work / "manifest.jsonl").unlink()
    wavs = sorted(work.rglob("*.wav"))
    for p in wavs[::3]:
        p.unlink()
    kept = {p: p.stat().st_mtime_ns for p in wavs if p.exists()}
    # What kill -9 during an atomic write leaves behind; the rerun must clear it.
    (wavs[1].parent / f".tmp-{wavs[1].name}.abc123.wav").write_bytes(b"partial")
    # A crash half-way through the missing files: the manifest must not appear.
    calls = {"n": 0}
    real = speech_mod.render_utterance

    def crashing(task):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        real(task)

    monkeypatch.setattr(speech_mod, "render_utterance", crashing)
    with pytest.raises(KeyboardInterrupt):
        speech_mod.make_speech_corpus(work, workers=1, **SPEECH_ARGS)
    assert not (work / "manifest.jsonl").exists()
    monkeypatch.setattr(speech_mod, "render_utterance", real)
    speech_mod.make_speech_corpus(work, workers=1, **SPEECH_ARGS)
    assert manifest_bytes(work) == manifest_bytes(speech_corpus)
    assert wav_bytes(work) == wav_bytes(speech_corpus)
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items()), "resume re-rendered finished files"


@needs_espeak
def test_speech_refuses_other_settings_and_bad_args(speech_corpus, tmp_path):
    with pytest.raises(ValueError, match="other settings"):
        speech_mod.make_speech_corpus(speech_corpus, workers=1, **{**SPEECH_ARGS, "voices": 3})
    with pytest.raises(ValueError, match="languages"):
        speech_mod.make_speech_corpus(tmp_path / "x", hours=0.01, languages=["en", "xx"])
    for hours in (0, float("nan"), float("inf")):  # inf would plan utterances forever
        with pytest.raises(ValueError, match="hours must be positive and finite"):
            speech_mod.make_speech_corpus(tmp_path / "x", hours=hours)


def test_cli_missing_espeak_says_how_to_install(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from soundlm.cli import app

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    result = CliRunner().invoke(app, ["data", "speech", "--out", str(tmp_path / "s"), "--hours", "0.01"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "apt-get install espeak-ng" in lines[0]
    with pytest.raises(MissingToolError):
        speech_mod.make_speech_corpus(tmp_path / "s", hours=0.01)


# ---------------------------------------------------------------- piano corpus


@needs_fluidsynth
def test_piano_manifest(piano_corpus):
    rows = read_manifest(piano_corpus)
    assert len(rows) == PIANO_ARGS["pieces"]
    for row in rows:
        assert row["speaker"] is None and row["language"] is None and row["split"] in ("train", "heldout")
        assert row["transcript"].startswith("bach/")
        i = sf.info(str(audio_path(piano_corpus, row)))
        assert (i.samplerate, i.channels) == (16000, 1)
        assert row["duration"] == pytest.approx(i.frames / i.samplerate, abs=1e-5)
        assert 1.0 < row["duration"] <= PIANO_ARGS["max_seconds"]
        audio, _ = sf.read(str(audio_path(piano_corpus, row)), dtype="float32")
        assert np.abs(audio).max() == pytest.approx(0.95, abs=0.01)
        # Real music, not silence: most 100 ms frames carry sound.
        frames = audio[: len(audio) // 1600 * 1600].reshape(-1, 1600)
        assert (np.sqrt((frames ** 2).mean(axis=1)) > 1e-3).mean() > 0.8


@needs_fluidsynth
def test_piano_deterministic_and_resumes(piano_corpus, tmp_path):
    from soundlm.data.piano import make_piano_corpus

    work = tmp_path / "p"
    shutil.copytree(piano_corpus, work)
    (work / "manifest.jsonl").unlink()
    next(iter(sorted(work.rglob("*.wav")))).unlink()
    make_piano_corpus(work, workers=1, **PIANO_ARGS)
    assert manifest_bytes(work) == manifest_bytes(piano_corpus)
    assert wav_bytes(work) == wav_bytes(piano_corpus)
    with pytest.raises(ValueError, match="only"):
        make_piano_corpus(tmp_path / "q", pieces=100_000)


def test_sentences_per_utterance_joins_parallel_sentences(tmp_path):
    from soundlm.data import read_manifest
    from soundlm.data.speech import make_speech_corpus

    single = read_manifest(make_speech_corpus(tmp_path / "one", hours=0.004, languages=["en", "fr"], voices=1,
                                              heldout_voices=0, workers=2))
    joined = read_manifest(make_speech_corpus(tmp_path / "three", hours=0.004, languages=["en", "fr"], voices=1,
                                              heldout_voices=0, workers=2, sentences_per_utterance=3))
    assert all(r["transcript"].count(".") == 3 for r in joined)
    mean = lambda rows: sum(r["duration"] for r in rows) / len(rows)  # noqa: E731
    assert mean(joined) > 2 * mean(single)
    by_text = {}
    for r in joined:
        by_text.setdefault(r["text_id"], set()).add(r["language"])
    assert all(langs == {"en", "fr"} for langs in by_text.values())
    with pytest.raises(ValueError, match="sentences-per-utterance"):
        make_speech_corpus(tmp_path / "bad", hours=0.01, languages=["en"], sentences_per_utterance=0)


@pytest.mark.parametrize("voice", ["festival:ked_diphone", "flite:slt"])
def test_single_voice_corpus(tmp_path, voice):
    """`voice=ENGINE:NAME` reads every utterance with that one voice (the new voice `soundlm finetune` adapts to)."""
    manifest = speech_mod.make_speech_corpus(tmp_path / "one", hours=0.002, seed=1, languages=["en"], workers=1,
                                             voice=voice)
    rows = read_manifest(manifest)
    assert rows and {r["speaker"] for r in rows} == {f"en-{voice.replace(':', '-')}"}
    for r in rows:
        audio, sr = sf.read(audio_path(manifest, r))
        assert sr == 16000 and audio.shape[0] > 0.5 * sr and np.abs(audio).max() > 0.1


def test_single_voice_errors(tmp_path):
    with pytest.raises(ValueError, match="ENGINE:NAME"):
        speech_mod.make_speech_corpus(tmp_path / "a", hours=0.002, languages=["en"], voice="ked")
    with pytest.raises(MissingToolError, match="not installed"):
        speech_mod.make_speech_corpus(tmp_path / "b", hours=0.002, languages=["en"], voice="festival:no_such_voice")
    with pytest.raises(ValueError, match="one language"):
        speech_mod.make_speech_corpus(tmp_path / "c", hours=0.002, languages=["en", "fr"], voice="flite:slt")
