"""The `wide` voice inventory: hundreds of speakers a speaker encoder tells apart.

Training speakers (per language):
- one in five is a plain synthesizer voice: an espeak-ng accent and variant (or a flite
  voice, or an mbrola voice where installed) with its own pitch and rate, drawn from wider
  ranges than the classic inventory's;
- the others are pseudo-speakers: such a voice passed through a `VoiceTransform` of their
  own (vocal-tract length, pitch, tempo, spectral tilt, channel EQ, room), drawn from the seed.
Held-out speakers are built from kinds no training speaker uses, so the speaker test measures
generalisation rather than recall: festival voices (an engine absent from training; English),
vibrato (a transform absent from training) and espeak-ng variants reserved for them.
espeak-ng variants that render byte-identical audio (caleb/klatt/klatt6 ...) count as one
(`distinct_espeak_variants`), so a held-out variant never duplicates a training one.
"""

from __future__ import annotations

import hashlib
import random
import subprocess
import tempfile
from pathlib import Path

from soundlm.data import MissingToolError
from soundlm.data.speech import ESPEAK_LANGUAGE_VOICES, Speaker
from soundlm.data.transforms import VoiceTransform, random_transform

WIDE_PITCH_RANGE = (10, 90)  # espeak-ng -p
WIDE_PITCH_HIGH, WIDE_PITCH_LOW = (50, 90), (10, 49)  # halves for the rounds of plain voices
WIDE_RATE_RANGE = (125, 195)  # espeak-ng -s
PLAIN_EVERY = 5  # one training speaker in PLAIN_EVERY is an untransformed voice (plain voices duplicate more)
_PROBE_TEXT = "The quick brown fox jumps over the lazy dog."


def distinct_espeak_variants(variants: list[str]) -> list[str]:
    """`variants` less those that render the same audio as an earlier one (sorted order).

    Each is rendered once reading a fixed sentence at a fixed pitch and rate; equal sample
    bytes mean espeak-ng treats the two names as one voice.
    """
    seen: dict[str, str] = {}
    keep = []
    with tempfile.TemporaryDirectory(prefix="soundlm-variants-") as tmp:
        for v in sorted(variants):
            wav = Path(tmp) / "probe.wav"
            subprocess.run(["espeak-ng", "-v", f"en-us+{v}", "-p", "50", "-s", "160", "-w", str(wav), _PROBE_TEXT],
                           capture_output=True, check=True)
            digest = hashlib.sha256(wav.read_bytes()[44:]).hexdigest()  # the samples, not the header
            if digest not in seen:
                seen[digest] = v
                keep.append(v)
    return keep


def make_wide_speakers(seed: int, languages: list[str], voices: int, heldout_voices: int, variants: list[str],
                       flite: list[str], festival: list[str], mbrola: dict[str, list[str]] | None = None
                       ) -> list[Speaker]:
    """Draw `voices` training and `heldout_voices` held-out speakers per language (see the module doc).

    Held-out speakers come from their own random stream, so the same seed gives the same
    held-out voices whatever `voices` is.
    """
    if not variants:
        raise MissingToolError("espeak-ng lists no voice variants; reinstall it with `sudo apt-get install espeak-ng`")
    if len(variants) < 8:
        raise ValueError(f"only {len(variants)} distinct espeak-ng variants installed; the wide inventory needs 8")
    pool = sorted(variants)
    random.Random(f"wide-variants-{seed}").shuffle(pool)
    # A quarter of the variants (at most one per two held-out speakers) are held-out only.
    reserve = min(max(2, -(-heldout_voices // 2)), len(pool) // 4)
    heldout_pool, train_pool = pool[:reserve], pool[reserve:]
    speakers: list[Speaker] = []
    for lang in languages:
        rng = random.Random(f"wide-speakers-{seed}-{lang}")
        bases = [("espeak-ng", v) for v in train_pool] + ([("flite", v) for v in flite] if lang == "en" else []) + [
            ("mbrola", v) for v in (mbrola or {}).get(lang, [])]
        plain_order = list(bases)
        rng.shuffle(plain_order)
        for i in range(voices):
            if i % PLAIN_EVERY == 0:
                # Plain voices go through the bases in turn (random draws gave two plain voices of
                # one variant at close pitches: one voice to the encoder); each later round
                # moves to the other half of the pitch range.
                k = i // PLAIN_EVERY
                engine, name = plain_order[k % len(plain_order)]
                low = (k // len(plain_order)) % 2 == 1
                speakers.append(_speaker(f"{lang}-s{i:03d}", engine, lang, name, rng, "train", None,
                                         pitch_range=WIDE_PITCH_LOW if low else WIDE_PITCH_HIGH))
            else:
                engine, name = rng.choice(bases)
                speakers.append(_speaker(f"{lang}-s{i:03d}", engine, lang, name, rng, "train", random_transform(rng)))

        held_rng = random.Random(f"wide-heldout-{seed}-{lang}")
        kinds = (["festival"] if lang == "en" and festival else []) + ["vibrato", "variant"]
        for i in range(heldout_voices):
            kind = kinds[i % len(kinds)]
            if kind == "festival":
                k = i // len(kinds)
                # Each festival voice once as it is, then with transforms (still an unseen engine).
                transform = None if k < len(festival) else random_transform(held_rng)
                speakers.append(_speaker(f"{lang}-h{i:02d}", "festival", lang, festival[k % len(festival)],
                                         held_rng, "heldout", transform))
            else:
                transform = random_transform(held_rng, vibrato=kind == "vibrato")
                speakers.append(_speaker(f"{lang}-h{i:02d}", "espeak-ng", lang, held_rng.choice(heldout_pool),
                                         held_rng, "heldout", transform))
    return speakers


def _speaker(sid: str, engine: str, lang: str, name: str, rng: random.Random, split: str,
             transform: VoiceTransform | None, pitch_range: tuple[int, int] = WIDE_PITCH_RANGE) -> Speaker:
    """One speaker of `engine` voice `name` with its own pitch and rate (festival has neither: nominal values)."""
    pitch, rate = rng.randint(*pitch_range), rng.randint(*WIDE_RATE_RANGE)
    if engine == "festival":
        pitch, rate = 50, 160
    voice = rng.choice(ESPEAK_LANGUAGE_VOICES[lang]) if engine == "espeak-ng" else name
    variant = name if engine == "espeak-ng" else None
    return Speaker(sid, engine, lang, voice, variant, pitch, rate, split, transform)
