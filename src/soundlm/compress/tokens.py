"""Token mode: a file's codec codes and semantic ids, entropy-coded with the AudioLM stage LMs.

The codec's RVQ codes cost log2(codebook_size) bits each when stored raw (10 bits for
1024 codes). Here each token is coded with the probability its stage LM gives it, in the
order and with the conditioning the stages were trained on and generate with
(`soundlm.pipeline`): the semantic LM codes the semantic ids, the coarse LM the first Qc
codebooks given the window's semantic ids, the fine LM the rest given the coarse codes;
long files go window by window with half a window of context, as in generation. Decoding
gives back the exact codes, and the codec turns them into audio: the codec's lossy quality
at a lower bitrate. Streams: [Ts as uint32, semantic, coarse, fine].

Determinism. Floats from a neural network are only reproducible under the same
computation. Encoder and decoder here run literally the same loop (`_code_tokens`): the
same prefill of the same prompt tensor, then one KV-cached step per token, batch 1, on the
CPU, with torch limited to one thread while coding (thread count changes how matrix
products split their sums). The logits of the allowed id range become integer
frequencies by `coder.softmax_freqs`. A file therefore decodes on the soundlm version, torch
build and CPU kind that wrote it; across different CPUs (other vector units) float results,
and so token-mode streams, may differ. Lossless mode has no such limit (integer model).
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from soundlm.compress.coder import Decoder, Encoder, bytes_to_words, categorical, softmax_freqs, words_to_bytes
from soundlm.compress.container import Header

STREAMS = ("semantic", "coarse", "fine")


@dataclass
class TokenContent:
    """What token mode codes for one file."""

    semantic: torch.Tensor  # [Ts] int64 semantic ids
    codes: torch.Tensor  # [K, T] int64 codec codes


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread (restored after): the same reduction order on every run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# Codes the next symbol: given the integer frequencies, encode a known symbol or decode one.
CodeStep = Callable[[np.ndarray], int]


def _code_tokens(model, prompt: torch.Tensor, count: int, ranges: Callable[[int], tuple[int, int]],
                 step: CodeStep) -> torch.Tensor:
    """Code `count` tokens after prompt [1, L]: ranges(i) is the global id range of token i.

    Returns the coded global ids [1, count]. The same function runs in both directions, so
    both see the same logits.
    """
    out = torch.zeros(1, count, dtype=torch.long)
    if count == 0:
        return out
    fast = model.fast_decoding
    if fast:
        cache = model.new_cache(1, prompt.shape[1] + count)
        logits = model.step(prompt, cache, 0)  # [1, V]
    else:
        seq = prompt
        logits = model.last_logits(seq)
    for i in range(count):
        lo, hi = ranges(i)
        symbol = step(softmax_freqs(logits[0, lo:hi].double().numpy()))
        out[0, i] = lo + symbol
        if i + 1 == count:
            break
        if fast:
            logits = model.step(out[:, i: i + 1], cache, prompt.shape[1] + i)
        else:
            seq = torch.cat([seq, out[:, i: i + 1]], dim=1)
            logits = model.last_logits(seq)
    return out


def _encoder_step(enc: Encoder, symbols: Iterator[int]) -> CodeStep:
    def step(freqs: np.ndarray) -> int:
        s = next(symbols)
        enc.encode(s, categorical(freqs))
        return s
    return step


def _decoder_step(dec: Decoder) -> CodeStep:
    return lambda freqs: dec.decode(categorical(freqs))


class TokenCodec:
    """The file-level coder of token mode over an AudioLM bundle (semantic tokenizer, codec, three stages)."""

    mode = "tokens"

    def __init__(self, pipeline, model_hash: bytes):
        for part in pipeline.stages:
            if part.delayed:
                raise ValueError(f"{part.folder}: token mode codes flattened stages; this one uses the delay "
                                 "pattern")
            if part.meta.conditioned:
                raise ValueError(f"{part.folder}: token mode codes unconditioned stages; this one reads MusicLM "
                                 "condition ids, which a compressed file does not carry")
        if pipeline.fine is None:
            raise ValueError(f"{pipeline.coarse.folder}: token mode codes the three AudioLM stages; this model has "
                             "no fine stage (a one-stage acoustic model); use a bundle with fine/")
        self.pipe = pipeline
        self.hash = model_hash

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "TokenCodec":
        """A bundle folder (default: the shipped speech-tiny model), on the CPU."""
        from soundlm.pretrained import check_model_folder, default_model_dir, load_pipeline

        folder = check_model_folder(folder or default_model_dir())
        pipe = load_pipeline(folder, device="cpu")
        return cls(pipe, bundle_hash(folder))

    # ---- tokens <-> streams -------------------------------------------------------------
    def tokenize(self, path: str | Path) -> tuple[TokenContent, int]:
        """Audio file -> its semantic ids and codes, and its length in samples at the codec's rate."""
        from soundlm.audio import info, load_audio

        # The tokens `soundlm tokenize` would store for this file (one audio -> tokens path).
        prepared = self.pipe.audio_tokenizer.prepare(load_audio(path, sample_rate=None, mono=False),
                                                     info(path).sample_rate, path)
        tokens = self.pipe.audio_tokenizer.encode_prepared([prepared])[0]
        content = TokenContent(semantic=torch.from_numpy(tokens.semantic), codes=torch.from_numpy(tokens.acoustic))
        return content, prepared.codec.shape[-1]

    def walk(self, steps: dict[str, CodeStep], frames: int, semantic_len: int) -> TokenContent:
        """Code every token of a file, stage by stage; `steps` encode known symbols or decode them."""
        from soundlm import patterns
        from soundlm.pipeline import AudioLMSampling, context_windows

        pipe, keep = self.pipe, AudioLMSampling().keep
        qc, k = pipe.num_coarse, pipe.num_codebooks
        semantic = torch.zeros(1, 0, dtype=torch.long)
        stage, layout = pipe.semantic, pipe.semantic.layout
        window = max(2, int(stage.window_seconds * stage.meta.semantic_rate))
        sem_range = layout.range_of("semantic")
        for start, new in context_windows(0, semantic_len, window, keep(window)):
            prompt = torch.cat([torch.full((1, 1), layout.bos_id), layout.semantic_to_global(semantic[:, start:])], 1)
            ids = _code_tokens(stage.model, prompt, new, lambda i: sem_range, steps["semantic"])
            semantic = torch.cat([semantic, layout.global_to_semantic(ids)], dim=1)

        stage, layout = pipe.coarse, pipe.coarse.layout
        sem_rate, ac_rate = stage.meta.semantic_rate, stage.meta.acoustic_rate
        window = max(2, int(stage.window_seconds * ac_rate))
        sem_window = int(round(stage.window_seconds * sem_rate))
        coarse = torch.zeros(1, qc, 0, dtype=torch.long)
        for start, new in context_windows(0, frames, window, keep(window)):
            s0 = int(np.ceil(start * sem_rate / ac_rate - 1e-6))  # window starts on a semantic frame, as in training
            start = min(int(np.floor(s0 * ac_rate / sem_rate + 1e-6)), coarse.shape[2])
            seq = patterns.coarse_sequence(semantic[:, s0: s0 + sem_window], coarse[:, :, start:], layout, eos=False)
            ids = _code_tokens(stage.model, seq.tokens, new * qc,
                               lambda i, lay=layout: lay.range_of(f"acoustic:{i % qc}"), steps["coarse"])
            coarse = torch.cat([coarse, patterns.unflatten_frames(ids, layout, qc)], dim=2)

        stage, layout = pipe.fine, pipe.fine.layout
        qf = k - qc
        window = max(2, int(stage.window_seconds * stage.meta.acoustic_rate))
        fine = torch.zeros(1, qf, 0, dtype=torch.long)
        for start, new in context_windows(0, frames, window, keep(window)):
            end = fine.shape[2] + new
            prefix = patterns.fine_sequence(coarse[:, :, start:end], None, layout)
            known = patterns.flatten_frames(fine[:, :, start:], layout, first_level=qc)
            ids = _code_tokens(stage.model, torch.cat([prefix.tokens, known], dim=1), new * qf,
                               lambda i, lay=layout: lay.range_of(f"acoustic:{qc + i % qf}"), steps["fine"])
            fine = torch.cat([fine, patterns.unflatten_frames(ids, layout, qf, first_level=qc)], dim=2)
        return TokenContent(semantic=semantic[0], codes=torch.cat([coarse, fine], dim=1)[0])

    def encode_content(self, content: TokenContent) -> list[bytes]:
        """Tokens -> streams [Ts, semantic, coarse, fine]."""
        qc = self.pipe.num_coarse
        codes = content.codes[: self.pipe.num_codebooks]
        content = TokenContent(content.semantic, codes)
        symbols = {"semantic": iter(content.semantic.tolist()),
                   "coarse": iter(codes[:qc].T.reshape(-1).tolist()),  # frame-major, as the coarse LM reads them
                   "fine": iter(codes[qc:].T.reshape(-1).tolist())}
        encoders = {name: Encoder() for name in STREAMS}
        steps = {name: _encoder_step(encoders[name], symbols[name]) for name in STREAMS}
        with one_thread(), torch.inference_mode():
            self.walk(steps, codes.shape[1], len(content.semantic))
        return [struct.pack("<I", len(content.semantic))] + [words_to_bytes(encoders[n].words()) for n in STREAMS]

    def decode_content(self, frames: int, streams: list[bytes]) -> TokenContent:
        if len(streams) != 1 + len(STREAMS) or len(streams[0]) != 4:
            raise ValueError(f"token mode needs {1 + len(STREAMS)} streams, the file has {len(streams)}")
        (semantic_len,) = struct.unpack("<I", streams[0])
        decoders = {n: Decoder(bytes_to_words(s)) for n, s in zip(STREAMS, streams[1:])}
        with one_thread(), torch.inference_mode():
            return self.walk({n: _decoder_step(decoders[n]) for n in STREAMS}, frames, semantic_len)

    # ---- the FileCodec interface (soundlm.compress.files) ---------------------------------
    def compress(self, path: str | Path) -> tuple[Header, list[bytes]]:
        content, length = self.tokenize(path)
        content = TokenContent(content.semantic, content.codes[: self.pipe.num_codebooks])
        header = Header(mode=self.mode, bits=16, model_hash=self.hash, sample_rate=int(self.pipe.codec.sample_rate),
                        channels=1, length=length, segment=content.codes.shape[1], crc32=tokens_crc32(content))
        return header, self.encode_content(content)

    def decode(self, items: list[tuple[Header, list[bytes]]]) -> list[TokenContent]:
        return [self.decode_content(h.segment, s) for h, s in items]

    def crc(self, header: Header, content: TokenContent) -> int:
        return tokens_crc32(content)

    def write(self, path: Path, header: Header, content: TokenContent) -> None:
        from soundlm.audio import save_audio

        with torch.inference_mode():
            audio = self.pipe.codec.decode(content.codes[None]).float()[0].numpy()  # [C, S]
        audio = audio[:, : header.length]
        audio = np.pad(audio, ((0, 0), (0, header.length - audio.shape[1])))
        save_audio(path, audio, header.sample_rate)


def tokens_crc32(content: TokenContent) -> int:
    """CRC32 of the semantic ids and the codes (little-endian int32)."""
    data = content.semantic.numpy().astype("<i4").tobytes() + content.codes.numpy().astype("<i4").tobytes()
    return zlib.crc32(data)


def bundle_hash(folder: str | Path) -> bytes:
    """The id of a bundle for token mode: its stage LMs and its codec (what decoding depends on)."""
    from soundlm.compress.container import model_hash
    from soundlm.pipeline import BUNDLE_PARTS, CODEC_DIR

    folder = Path(folder)
    parts = []
    for sub in (*BUNDLE_PARTS, CODEC_DIR):
        for f in sorted((folder / sub).rglob("*")) if (folder / sub).is_dir() else []:
            if f.is_file():
                parts.append(f"{sub}/{f.relative_to(folder / sub)}".encode() + f.read_bytes())
    return model_hash(*parts)
