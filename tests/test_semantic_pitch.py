import json

import numpy as np
import pytest
import torch

from soundlm.music.analysis import PITCH_CLASSES
from soundlm.semantic import ChromaFeatures, CQTFeatures, build_features, features_from_config
from soundlm.semantic.pitch import semitone_filterbank, tonal_centroid_matrix

SR = 16_000


def _sine(freq: float, seconds: float = 1.0, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    return (amp * torch.sin(2 * torch.pi * freq * t)).float()[None, None]  # [1, 1, S]


def _midi_hz(midi: int) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


@pytest.mark.parametrize("cls,dim", [(ChromaFeatures, 19), (CQTFeatures, 84)])
def test_frame_count_is_floor_s_over_320(cls, dim):
    fx = cls()
    assert fx.frame_rate == 50.0 and fx.dim == dim
    for s in (320, 639, 8000, 16001):
        y = fx(torch.randn(2, 1, s))
        assert y.shape == (2, s // 320, dim) and torch.isfinite(y).all()


def test_sine_at_a4_lands_in_the_a_bin():
    chroma = ChromaFeatures(tonal_centroid=False, onset=False)(_sine(440.0))[0]  # [T, 12]
    middle = chroma[10:-10]
    assert (middle.argmax(dim=-1) == PITCH_CLASSES.index("A")).all()
    # The neighbouring pitch classes get almost nothing of a pure tone.
    assert middle[:, PITCH_CLASSES.index("Ab")].max() < 0.05 and middle[:, PITCH_CLASSES.index("Bb")].max() < 0.05
    cqt = CQTFeatures()(_sine(440.0))[0]
    assert (cqt[10:-10].argmax(dim=-1) == 69 - 36).all()  # A4 is MIDI 69, the bins start at C2 = 36


@pytest.mark.parametrize("midi", [48, 60, 64, 67, 71, 76, 83])
def test_every_pitch_class_of_a_tone_in_range(midi):
    chroma = ChromaFeatures(onset=False)(_sine(_midi_hz(midi)))[0, 10:-10, :12]
    assert (chroma.argmax(dim=-1) == midi % 12).all()


def test_chroma_ignores_loudness_and_tonal_centroid_of_a_pure_pitch_class():
    fx = ChromaFeatures(onset=False)
    loud, quiet = fx(_sine(440.0, amp=0.8))[0, 10:-10], fx(_sine(440.0, amp=0.01))[0, 10:-10]
    assert torch.allclose(loud, quiet, atol=1e-3)
    expected = tonal_centroid_matrix()[PITCH_CLASSES.index("A")]
    assert torch.allclose(loud[:, 12:].mean(dim=0), expected, atol=0.05)


def test_onset_strength_peaks_where_a_note_starts():
    x = torch.cat([_sine(440.0, 0.5) * 0, _sine(440.0, 0.5)], dim=-1)  # silence, then A4 from 0.5 s
    onset = ChromaFeatures()(x)[0, :-3, -1]  # [T]; the last frames see the clip's own end
    assert abs(int(onset.argmax()) - 25) <= 2  # frame 25 = 0.5 s at 50 Hz
    assert onset[:20].max() == 0 and onset[30:].max() < 0.05 * onset.max()


def test_semitone_filters_are_one_on_the_pitch_and_zero_half_way():
    fb = semitone_filterbank(4096, SR, 36, 84)  # [F, 84]
    midi = 69 + 12 * np.log2(np.maximum(np.arange(fb.shape[0]) * SR / 4096, 1e-6) / 440.0)
    inside = torch.from_numpy((midi > 36) & (midi < 119))
    expected = torch.from_numpy(1 - 2 * np.abs(midi - np.round(midi))).float()
    assert torch.allclose(fb[inside].sum(dim=1), expected[inside], atol=1e-5)
    assert ((fb[inside] > 0).sum(dim=1) <= 1).all()  # each FFT bin feeds one semitone at most


def test_round_trip_and_errors():
    for kind in ("chroma", "cqt"):
        fx = build_features(kind, device="cpu")
        again = features_from_config(json.loads(json.dumps(fx.describe())), device="cpu")
        x = torch.randn(1, 1, 4000)
        assert torch.equal(fx(x), again(x))
    with pytest.raises(ValueError, match="above Nyquist"):
        CQTFeatures(num_bins=100)


def test_train_semantic_with_chroma_saves_a_tokenizer_that_loads(tmp_path):
    import soundfile as sf

    from soundlm.semantic import load_semantic_tokenizer
    from soundlm.semantic.kmeans import assign
    from soundlm.train.semantic import SemanticTrainConfig, train_semantic

    for i, midi in enumerate((57, 60, 64)):
        sf.write(tmp_path / f"tone{i}.wav", _sine(_midi_hz(midi), 1.0)[0, 0].numpy(), SR)
    result = train_semantic(tmp_path, tmp_path / "tok", SemanticTrainConfig(features="chroma", clusters=3, split=None),
                            device="cpu")
    tok = load_semantic_tokenizer(result.out_dir, device="cpu")
    assert tok.describe()["features"]["kind"] == "chroma" and tok.vocab_size == 3
    ids = [tok.features(_sine(_midi_hz(m)))[0, 10:-10] for m in (57, 60, 64)]
    units = [set(assign(f, tok.centroids).ids.tolist()) for f in ids]
    assert all(len(u) == 1 for u in units) and len(set.union(*units)) == 3  # one unit per pitch class
