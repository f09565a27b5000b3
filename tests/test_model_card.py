"""The model card (README.md) a bundle's own records make: speech and music bundles, one-stage layouts."""

import json
from pathlib import Path

from tiny_bundle import make_tiny_bundle, make_tiny_music_bundle

from soundlm.model_card import card_for_bundle

SETTINGS = {"hours": 3.0, "voices": 120, "heldout_voices": 4, "lm_preset": "mini", "codec_preset": "fast",
            "codec_steps": 100, **{f"{p}_lm": {"steps": 10, "batch_size": 8, "window_seconds": 2.0, "lr": 1e-3}
                                   for p in ("semantic", "coarse", "fine")}}


def _with_recipe(folder: Path, **settings) -> Path:
    record = {"recipe": "x", "command": "soundlm recipe x", "settings": {**SETTINGS, **settings}}
    (folder / "recipe.json").write_text(json.dumps(record))
    return folder


def test_speech_card_describes_speech_and_continuation(tmp_path):
    text = card_for_bundle(_with_recipe(make_tiny_bundle(tmp_path)), name="s", usage_id="u/s").render()
    assert "synthetic English speech" in text and "120 training voices" in text
    assert "soundlm continue prompt.wav --model u/s" in text and "from_pretrained(\"u/s\")" in text
    assert "fine LM: preset mini, 10 steps" in text and "musiclm" not in text


def test_music_card_describes_music_and_text_to_music_usage(tmp_path):
    folder = _with_recipe(make_tiny_music_bundle(tmp_path, pattern="delay1"), corpus="music", music_clips=400)
    card = card_for_bundle(folder, name="m", usage_id="u/m")
    text = card.render()
    assert card.music and "- musiclm" in text and "- text-to-music" in text
    assert "synthetic music (`soundlm data music`): 400 clips" in text and "English speech" not in text
    assert 'soundlm music "a calm piano piece in C major" --model u/m' in text
    assert 'MusicLMPipeline.from_bundle("u/m")' in text and "continue_audio" not in text
    # a one-stage bundle (no fine/) lists only the stages it has
    assert "coarse LM:" in text and "fine LM:" not in text
