"""Audio -> tokens: the one path from a waveform to semantic ids and codec codes.

Every caller that turns audio into tokens goes through `AudioTokenizer`: the tokenize job
(many files, batched), the pipeline's prompt, AudioPaLM's speech input and the
evaluations. So a file gets the same tokens wherever it is tokenized:

    audio [C, S] at its own rate --prepare--> codec audio [C', S_codec] (mono or the codec's
                                              channels, resampled once from the native rate)
                                              semantic audio [1, S_sem] (mono, resampled once
                                              from the native rate)
                                 --encode---> Tokens(semantic [T_s], acoustic [K, T_a]),
                                              each cut to the file's own frame count

`prepare` is a pure function of the audio and an `AudioSpec` (no model), so data-loader
workers run it; `encode_batch` runs the models on many prepared files at once and gives
each file exactly the tokens it would get alone (see `probe_pad_invariance`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from soundlm import audio as audio_io

if TYPE_CHECKING:
    from soundlm.codec.base import AcousticTokenizer
    from soundlm.semantic.base import SemanticTokenizer


@dataclass(frozen=True)
class AudioSpec:
    """What preparing audio for a pair of tokenizers needs (picklable, for loader workers)."""

    codec_rate: int | None  # None: no codec, no codec audio
    codec_channels: int
    semantic_rate: int | None  # None: no semantic tokenizer


@dataclass
class PreparedAudio:
    """A recording at each tokenizer's rate and channel count."""

    codec: np.ndarray | None  # [C, S_codec] float32
    semantic: np.ndarray | None  # [1, S_sem] float32


@dataclass
class Tokens:
    """One recording's tokens; a stream whose tokenizer is absent is None."""

    semantic: np.ndarray | None  # [T_s] int64
    acoustic: np.ndarray | None  # [K, T_a] int64


def prepare_audio(audio: np.ndarray, sample_rate: int, spec: AudioSpec, path: str | Path | None = None,
                  min_seconds: float = 0.0) -> PreparedAudio:
    """audio [C, S] at `sample_rate` -> each tokenizer's input, resampled once from the native rate.

    Raises AudioError (naming `path`) for audio a tokenizer cannot take: too short, silent,
    NaN after resampling, or more channels than the codec has that are not mono-mixable.
    """
    if audio.ndim != 2:
        raise ValueError(f"audio must be [C, S], got shape {audio.shape}")
    mono = audio_io.to_mono(audio) if audio.shape[0] > 1 else audio  # [1, S]
    codec_audio = semantic_audio = None
    if spec.codec_rate is not None:
        if spec.codec_channels == 1:
            codec_in = mono
        elif audio.shape[0] == spec.codec_channels:
            codec_in = audio
        elif audio.shape[0] == 1:
            codec_in = np.repeat(audio, spec.codec_channels, axis=0)
        else:
            raise audio_io.AudioError(path, f"{audio.shape[0]} channels, the codec takes {spec.codec_channels}",
                                      "mix the file down to mono first")
        codec_audio = audio_io.resample(codec_in, sample_rate, spec.codec_rate)
        audio_io.check_audio(codec_audio, path, sample_rate=spec.codec_rate, min_seconds=min_seconds)
    if spec.semantic_rate is not None:
        semantic_audio = audio_io.resample(mono, sample_rate, spec.semantic_rate)
        audio_io.check_audio(semantic_audio, path, sample_rate=spec.semantic_rate, min_seconds=min_seconds)
    return PreparedAudio(codec=codec_audio, semantic=semantic_audio)


def semantic_num_frames(semantic: SemanticTokenizer, num_samples: int) -> int:
    """Frames the semantic tokenizer emits for `num_samples` samples at its own rate."""
    if hasattr(semantic, "num_frames"):
        return int(semantic.num_frames(num_samples))
    return math.ceil(num_samples * semantic.frame_rate / semantic.sample_rate)


@dataclass
class BatchTokenizer:
    """One tokenizer as batched encoding sees it: encode [B, C, S] -> [B, T] or [B, K, T], frame count.

    `pad_invariant` says whether right zero-padding and batch neighbours leave a file's
    own frames unchanged; if not, only files of identical length share a batch.
    """

    name: str
    encode: Callable[[torch.Tensor], torch.Tensor]
    num_frames: Callable[[int], int]
    sample_rate: int
    channels: int
    pad_invariant: bool = True


def probe_pad_invariance(tok: BatchTokenizer, device: str | torch.device,
                         seconds: Sequence[float] = (0.53, 0.81, 1.27)) -> bool:
    """Whether padding a file (and batching it with another) changes its tokens.

    Causal codecs are exact under right padding; features with utterance-level steps
    (deltas with edge replication, per-utterance normalisation, self-attention over the
    padding) are not. This checks a few seeded test signals with rich spectra, so a
    tokenizer that passes is exact on them, not proven exact on every input.
    """
    g = torch.Generator().manual_seed(1234)
    for sec in seconds:
        n = int(sec * tok.sample_rate)
        t = torch.arange(n) / tok.sample_rate
        # A chirp under a slow tremolo plus noise: frames differ from each other, so the
        # tokens near the end are sensitive to what the tokenizer sees after it.
        chirp = torch.sin(2 * math.pi * (100 + 1500 * t) * t) * (0.5 + 0.4 * torch.sin(2 * math.pi * 3 * t))
        x = (0.3 * chirp + 0.05 * torch.randn(n, generator=g)).expand(tok.channels, n)[None]  # [1, C, S]
        other = 0.2 * torch.randn(1, tok.channels, n + n // 2 + 97, generator=g)  # [1, C, S + pad]
        padded = torch.cat([torch.nn.functional.pad(x, (0, other.shape[-1] - n)), other])  # [2, C, S + pad]
        with torch.inference_mode():
            alone = tok.encode(x.float().to(device)).cpu()
            batched = tok.encode(padded.float().to(device)).cpu()
        frames = tok.num_frames(n)
        if alone.shape[-1] != frames or not torch.equal(alone[0, ..., :frames], batched[0, ..., :frames]):
            return False
    return True


def _pad_stack(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """[C, S_i] arrays -> [B, C, max S_i], zero-padded on the right."""
    longest = max(a.shape[-1] for a in arrays)
    out = np.zeros((len(arrays), arrays[0].shape[0], longest), dtype=np.float32)
    for b, a in enumerate(arrays):
        out[b, :, : a.shape[-1]] = a
    return out


def encode_group(tok: BatchTokenizer, arrays: Sequence[np.ndarray], device: str | torch.device) -> list[np.ndarray]:
    """Tokenize files [C, S_i] together where that is exact; return each file's own frames."""
    if tok.pad_invariant:
        groups = [list(range(len(arrays)))]
    else:
        by_length: dict[int, list[int]] = {}
        for i, a in enumerate(arrays):
            by_length.setdefault(a.shape[-1], []).append(i)
        groups = list(by_length.values())
    out: list[np.ndarray | None] = [None] * len(arrays)
    for group in groups:
        x = torch.from_numpy(_pad_stack([arrays[i] for i in group])).to(device)  # [B, C, S]
        with torch.inference_mode():
            tokens = tok.encode(x).cpu().numpy()  # [B, T] or [B, K, T]
        for b, i in enumerate(group):
            n = tok.num_frames(arrays[i].shape[-1])
            if n > tokens.shape[-1]:
                raise ValueError(f"{tok.name} tokenizer returned {tokens.shape[-1]} frames for a file it says "
                                 f"has {n}")
            out[i] = tokens[b, ..., :n].astype(np.int64)
    return out  # type: ignore[return-value]


class AudioTokenizer:
    """A semantic tokenizer and a codec (either may be None) behind one `encode`.

    probe: check once, on first batched use, whether each tokenizer is exact under padding
    (else files of different lengths are encoded apart).
    """

    def __init__(self, semantic: SemanticTokenizer | None, codec: AcousticTokenizer | None,
                 device: str | torch.device = "cpu",
                 probe: bool = True):
        if semantic is None and codec is None:
            raise ValueError("an AudioTokenizer needs a semantic tokenizer, a codec, or both")
        self.semantic, self.codec = semantic, codec
        self.device = torch.device(device)
        self._probe = probe
        self._batch: dict[str, BatchTokenizer] = {}
        if semantic is not None:
            self._batch["semantic"] = BatchTokenizer(
                "semantic", semantic.encode, lambda n: semantic_num_frames(semantic, n), int(semantic.sample_rate), 1)
        if codec is not None:
            self._batch["acoustic"] = BatchTokenizer("acoustic", codec.encode, codec.num_frames,
                                                     int(codec.sample_rate), int(codec.channels))
        self._probed = not probe

    @property
    def spec(self) -> AudioSpec:
        return AudioSpec(codec_rate=int(self.codec.sample_rate) if self.codec is not None else None,
                         codec_channels=int(self.codec.channels) if self.codec is not None else 1,
                         semantic_rate=int(self.semantic.sample_rate) if self.semantic is not None else None)

    def tokenizers(self) -> list[BatchTokenizer]:
        """The batched view of each tokenizer present, probed for pad invariance when asked."""
        if not self._probed:
            for tok in self._batch.values():
                tok.pad_invariant = probe_pad_invariance(tok, self.device)
            self._probed = True
        return list(self._batch.values())

    def prepare(self, audio: np.ndarray, sample_rate: int, path: str | Path | None = None,
                min_seconds: float = 0.0) -> PreparedAudio:
        return prepare_audio(audio, sample_rate, self.spec, path, min_seconds)

    def encode(self, audio: np.ndarray, sample_rate: int, path: str | Path | None = None) -> Tokens:
        """One recording [C, S] (or [S]) at `sample_rate` -> its Tokens."""
        audio = np.asarray(audio, dtype=np.float32)
        audio = audio[None] if audio.ndim == 1 else audio
        return self.encode_prepared([self.prepare(audio, sample_rate, path)])[0]

    def encode_prepared(self, items: Sequence[PreparedAudio]) -> list[Tokens]:
        """Tokenize prepared recordings together; each result has the recording's own length."""
        # One recording needs no padding, so the probe (a few forward passes) is only paid by batches.
        toks = self.tokenizers() if len(items) > 1 else list(self._batch.values())
        out = [Tokens(None, None) for _ in items]
        for tok in toks:
            arrays = [x.semantic if tok.name == "semantic" else x.codec for x in items]
            for t, tokens in zip(out, encode_group(tok, arrays, self.device)):
                if tok.name == "semantic":
                    t.semantic = tokens  # [T_s]
                else:
                    t.acoustic = tokens  # [K, T_a]
        return out
