"""The wide voice inventory (`soundlm.data.voices`, `soundlm data speech --inventory wide`)."""

from __future__ import annotations

import json
import shutil

import pytest

from soundlm.data import speech as speech_mod
from soundlm.data.voices import PLAIN_EVERY, distinct_espeak_variants, make_wide_speakers

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")
VARIANTS = [f"v{i:02d}" for i in range(90)]
FLITE = ["awb", "kal16", "rms", "slt"]
FESTIVAL = ["cmu_us_slt_arctic_hts", "kal_diphone", "ked_diphone"]


def wide(voices: int = 420, heldout: int = 12, seed: int = 0, languages=("en",)):
    return make_wide_speakers(seed, list(languages), voices, heldout, VARIANTS, FLITE, FESTIVAL)


def test_sizes_ids_and_determinism():
    speakers = wide()
    assert sum(s.split == "train" for s in speakers) == 420 and sum(s.split == "heldout" for s in speakers) == 12
    assert len({s.id for s in speakers}) == len(speakers)
    assert speakers == wide() and speakers != wide(seed=1)
    # Every speaker differs from every other in engine, voice, variant, pitch, rate or transform.
    keys = {(s.engine, s.voice, s.variant, s.pitch, s.rate, s.transform) for s in speakers}
    assert len(keys) == len(speakers)
    plain = [s for s in speakers if s.split == "train" and s.transform is None]
    assert len(plain) == -(-420 // PLAIN_EVERY)
    # The first round of plain voices uses each base once (the training variants and flite voices).
    bases = {(s.engine, s.variant or s.voice) for s in speakers if s.split == "train"}
    first = [(s.engine, s.variant or s.voice) for s in plain[: len(bases)]]
    assert len(set(first)) == len(first) == min(len(plain), len(bases)) > 80


def test_heldout_kinds_are_absent_from_training():
    speakers = wide()
    train = [s for s in speakers if s.split == "train"]
    held = [s for s in speakers if s.split == "heldout"]
    train_engines = {s.engine for s in train}
    train_kinds = set().union(*(s.transform.kinds() for s in train if s.transform is not None))
    assert "festival" not in train_engines and {"espeak-ng", "flite"} <= train_engines
    assert "vibrato" not in train_kinds and {"formant", "pitch", "tempo", "tilt", "room", "eq"} <= train_kinds
    # Every held-out voice has an engine, a transform kind or an espeak-ng variant no training voice has.
    train_variants = {s.variant for s in train if s.engine == "espeak-ng"}
    for s in held:
        assert s.engine == "festival" or s.variant not in train_variants
    assert {s.engine for s in held} == {"festival", "espeak-ng"}
    assert any(s.transform is not None and "vibrato" in s.transform.kinds() for s in held)


def test_heldout_independent_of_training_size_and_languages_without_festival():
    held = [[s for s in wide(voices=n) if s.split == "heldout"] for n in (30, 420)]
    assert held[0] == held[1]
    fr = [s for s in wide(voices=10, heldout=4, languages=("en", "fr")) if s.language == "fr"]
    assert {s.engine for s in fr if s.split == "heldout"} == {"espeak-ng"}  # festival voices read English only
    assert not any(s.engine == "flite" for s in fr)


def test_too_few_variants_is_refused():
    with pytest.raises(ValueError, match="distinct espeak-ng variants"):
        make_wide_speakers(0, ["en"], 10, 2, VARIANTS[:5], FLITE, FESTIVAL)


@needs_espeak
def test_variants_that_render_the_same_count_once():
    # espeak-ng's klatt and klatt6 variants render exactly like caleb (same sample bytes).
    assert distinct_espeak_variants(["klatt", "caleb", "m3", "klatt6"]) == ["caleb", "m3"]


@needs_espeak
def test_wide_corpus_is_deterministic_and_pinned(tmp_path):
    args = dict(hours=0.003, seed=2, languages=["en"], voices=6, heldout_voices=3, inventory="wide", workers=1)
    a = speech_mod.make_speech_corpus(tmp_path / "a", **args).parent
    # Rendering again from the seed (a resumed run) gives the same bytes, transforms included.
    wavs = {p: p.read_bytes() for p in sorted(a.rglob("*.wav"))}
    for p in wavs:
        p.unlink()
    speech_mod.make_speech_corpus(a, **args)
    assert wavs and all(p.read_bytes() == data for p, data in wavs.items())
    speakers = json.loads((a / "speakers.json").read_text())["speakers"]
    assert any("transform" in s for s in speakers) and len(speakers) == 9
    assert json.loads((a / "corpus.json").read_text())["inventory"] == "wide"
    with pytest.raises(ValueError, match="other settings"):
        speech_mod.make_speech_corpus(a, **{**args, "inventory": "classic"})
    with pytest.raises(ValueError, match="--inventory must be one of"):
        speech_mod.make_speech_corpus(tmp_path / "c", **{**args, "inventory": "huge"})
