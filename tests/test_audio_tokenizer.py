"""AudioTokenizer: one audio -> tokens path, batched encoding exact per file, resampling once."""

import numpy as np
import pytest
import torch

from soundlm.audio import AudioError, resample
from soundlm.audio_tokenizer import (AudioSpec, AudioTokenizer, BatchTokenizer, encode_group, prepare_audio,
                                     probe_pad_invariance)
from soundlm.codec import load_codec
from soundlm.semantic.tokenizer import KMeansTokenizer
from test_tokenize import _tokenizers, _tone


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> AudioTokenizer:
    sem_dir, codec_dir = _tokenizers(tmp_path_factory.mktemp("tok"))
    return AudioTokenizer(KMeansTokenizer.load(sem_dir, device="cpu"), load_codec(str(codec_dir), device="cpu"))


def test_encode_batch_crops_each_file(tokenizer):
    # A causal codec is pad invariant in exact arithmetic. The probe compares codes exactly, so a
    # near-tie flip from another summation order (seen with one torch thread) can make it say no;
    # encoding then batches only equal lengths. Either way each file gets its own tokens.
    waves = [_tone(s, 16000, 300, i)[None] for i, s in enumerate((0.3, 0.71, 0.5))]
    together = tokenizer.encode_prepared([tokenizer.prepare(w, 16000) for w in waves])
    for w, enc in zip(waves, together):
        alone = tokenizer.encode(w, 16000)
        assert enc.acoustic.shape == (4, tokenizer.codec.num_frames(w.shape[-1]))
        assert (enc.acoustic == alone.acoustic).mean() >= 0.99
        np.testing.assert_array_equal(enc.semantic, alone.semantic)


def test_each_stream_is_resampled_once_from_the_native_rate(tokenizer):
    """A 22.05 kHz stereo file: both streams come from the native audio, mixed to mono, not
    from each other (the pipeline once resampled native -> codec rate -> semantic rate)."""
    stereo = np.stack([_tone(0.6, 22050, 300, 0), _tone(0.6, 22050, 500, 1)])  # [2, S]
    tokens = tokenizer.encode(stereo, 22050)
    mono = stereo.mean(axis=0, keepdims=True)
    direct = resample(mono, 22050, 16000)  # [1, S']
    expected_sem = tokenizer.semantic.encode(torch.from_numpy(direct)[None])[0].numpy()
    expected_codes = tokenizer.codec.encode(torch.from_numpy(direct)[None])[0].numpy()
    np.testing.assert_array_equal(tokens.semantic, expected_sem[: tokens.semantic.shape[0]])
    np.testing.assert_array_equal(tokens.acoustic, expected_codes[:, : tokens.acoustic.shape[1]])
    assert tokens.acoustic.shape[1] == tokenizer.codec.num_frames(direct.shape[-1])


def test_one_tokenizer_alone_and_bad_input():
    from soundlm.semantic.features import MFCCFeatures

    semantic_only = AudioTokenizer(KMeansTokenizer(MFCCFeatures(), torch.randn(8, 39)), None)
    tokens = semantic_only.encode(_tone(0.4, 16000, 200, 0), 16000)
    assert tokens.acoustic is None and tokens.semantic.ndim == 1 and tokens.semantic.max() < 8
    with pytest.raises(ValueError, match="needs a semantic tokenizer, a codec, or both"):
        AudioTokenizer(None, None)
    spec = AudioSpec(codec_rate=16000, codec_channels=2, semantic_rate=None)
    with pytest.raises(AudioError, match="3 channels, the codec takes 2"):
        prepare_audio(np.zeros((3, 1600), dtype=np.float32) + 0.1, 16000, spec, "three.wav")
    # A mono file feeds both channels of a stereo codec.
    both = prepare_audio(_tone(0.2, 16000, 300, 0)[None], 16000, spec)
    assert both.codec.shape[0] == 2 and np.array_equal(both.codec[0], both.codec[1]) and both.semantic is None
    with pytest.raises(AudioError, match="short"):
        prepare_audio(_tone(0.01, 16000, 300, 0)[None], 16000, spec, "tiny.wav", min_seconds=0.1)


def test_padding_probe_tells_exact_from_padding_sensitive_tokenizers():
    def framewise(x):  # [B, 1, S] -> [B, T]: each 160-sample frame on its own, like a causal model
        frames = torch.nn.functional.pad(x[:, 0], (0, (-x.shape[-1]) % 160)).unfold(-1, 160, 160)
        return (frames.mean(-1) > 0).long()

    def utterance_normalised(x):  # per-utterance mean removal: padding shifts every frame
        return framewise(x - x.mean(dim=-1, keepdim=True))

    def frames(n):
        return -(-n // 160)

    exact = BatchTokenizer("exact", framewise, frames, 16000, 1)
    sensitive = BatchTokenizer("sensitive", utterance_normalised, frames, 16000, 1)
    assert probe_pad_invariance(exact, "cpu")
    assert not probe_pad_invariance(sensitive, "cpu")
    # A padding-sensitive tokenizer still gives each file its unbatched tokens: equal lengths only share a batch.
    sensitive.pad_invariant = False
    waves = [_tone(s, 16000, 300, i)[None] for i, s in enumerate((0.2, 0.37, 0.2))]
    together = encode_group(sensitive, waves, "cpu")
    for w, tokens in zip(waves, together):
        np.testing.assert_array_equal(tokens, utterance_normalised(torch.from_numpy(w)[None])[0].numpy())
