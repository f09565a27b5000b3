"""Token mode: a file's codec codes and semantic ids, entropy-coded with the AudioLM stage LMs.

The codec's RVQ codes cost log2(codebook_size) bits each when stored raw (10 bits for
1024 codes). Here each token is coded with the probability its stage LM gives it, in the
order and with the conditioning the stages were trained on and generate with
(`soundlm.pipeline`): the semantic LM codes the semantic ids, the coarse LM the first Qc
codebooks given the window's semantic ids, the fine LM the rest given the coarse codes;
long files go window by window with half a window of context, as in generation. Decoding
gives back the exact codes, and the codec turns them into audio: the codec's lossy quality
at a lower bitrate.

Every bundle soundlm makes codes: flattened stages (one token per step, its codebook's id
range allowed), delay-pattern stages (MusicGen's `DelayLM`: one step per delayed column,
through `generate_delayed` itself, each of the K' codebooks of the column coded with its own
head's logits over all its codes; the cells the pattern pads and the window's context codes
are known and not coded), and one-stage bundles (no fine/: the coarse stage models every
codebook).

Streams: [info, semantic, coarse, fine]. info is `<IBB`: the number of semantic ids, then how
the coarse and the fine stream are laid out (`STAGE_LAYOUTS`: 0 flattened, frame-major codes
per window; 1 delay pattern, per window the new frames' codes column by column of the delayed
sequence, level order within a column; 2 no such stage, an empty stream). A 4-byte info (files
written before delay-pattern support) means flattened coarse and fine.

Determinism. Floats from a neural network are only reproducible under the same
computation. Encoder and decoder here run literally the same loop (`walk`): the
same prefill of the same prompt tensor, then one KV-cached step per token (per delayed column),
batch 1, on the CPU, with torch limited to one thread while coding (thread count changes how
matrix products split their sums). The logits of the allowed id range become integer
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
# How an acoustic stage's stream is laid out (the info stream records one per acoustic stage).
STAGE_LAYOUTS = {"flatten": 0, "delay": 1, "none": 2}
_INFO = struct.Struct("<IBB")  # semantic ids, coarse layout, fine layout
_LEGACY_INFO = struct.Struct("<I")  # semantic ids; flattened coarse and fine


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


# Codes the next symbol given the integer frequencies: encodes the true symbol (passed when
# encoding) or decodes one (passed None); returns the symbol.
CodeStep = Callable[[np.ndarray, int | None], int]


def _code_tokens(model, prompt: torch.Tensor, count: int, ranges: Callable[[int], tuple[int, int]],
                 step: CodeStep, truth: torch.Tensor | None) -> torch.Tensor:
    """Code `count` tokens of a flattened stage after prompt [1, L]: ranges(i) is the global id range of token i,
    truth [1, count] the global ids when encoding (None when decoding).

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
        known = None if truth is None else int(truth[0, i]) - lo
        symbol = step(softmax_freqs(logits[0, lo:hi].double().numpy()), known)
        out[0, i] = lo + symbol
        if i + 1 == count:
            break
        if fast:
            logits = model.step(out[:, i: i + 1], cache, prompt.shape[1] + i)
        else:
            seq = torch.cat([seq, out[:, i: i + 1]], dim=1)
            logits = model.last_logits(seq)
    return out


def _code_delayed(model, context: torch.Tensor, new: int, prefix: torch.Tensor, step: CodeStep,
                  truth: torch.Tensor | None) -> torch.Tensor:
    """Code `new` frames of a delay-pattern stage after its codes context [1, K', T0] and prefix [1, P]; truth
    [1, K', new] the codes when encoding (None when decoding). Returns the coded codes [1, K', new].

    Generation's own loop (`generate_delayed`: its prefill, KV-cached steps and sliding) runs with the
    sampler replaced: at delayed column s, each free level l (frame s - l) is coded with head l's logits.
    """
    from soundlm.lm.generate import generate_delayed

    t0 = context.shape[2]

    def pick(s: int, logits: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
        codes = torch.zeros(1, logits.shape[1], dtype=torch.long)  # [1, K']
        for level in free.nonzero()[:, 0].tolist():
            known = None if truth is None else int(truth[0, level, s - level - t0])
            codes[0, level] = step(softmax_freqs(logits[0, level].double().numpy()), known)
        return codes

    return generate_delayed(model, context, new, prefix=prefix, pick=pick)[:, :, t0:]


def _encoder_step(enc: Encoder) -> CodeStep:
    def step(freqs: np.ndarray, symbol: int | None) -> int:
        enc.encode(symbol, categorical(freqs))
        return symbol
    return step


def _decoder_step(dec: Decoder) -> CodeStep:
    return lambda freqs, symbol: dec.decode(categorical(freqs))


class TokenCodec:
    """The file-level coder of token mode over an AudioLM bundle (semantic tokenizer, codec, stage LMs: flattened
    or delay-pattern, with or without a fine stage)."""

    mode = "tokens"

    def __init__(self, pipeline, model_hash: bytes):
        for part in pipeline.stages:
            if part.meta.conditioned:
                raise ValueError(f"{part.folder}: token mode codes unconditioned stages; this one reads MusicLM "
                                 "condition ids, which a compressed file does not carry")
        self.pipe = pipeline
        self.hash = model_hash

    @classmethod
    def load(cls, folder: str | Path | None = None) -> "TokenCodec":
        """A bundle folder (default: the shipped speech-tiny model), on the CPU."""
        from soundlm.pretrained import check_model_folder, default_model_dir, load_pipeline

        folder = check_model_folder(folder or default_model_dir())
        pipe = load_pipeline(folder, device="cpu")
        return cls(pipe, bundle_hash(folder))

    @property
    def layouts(self) -> tuple[str, str]:
        """How the coarse and the fine stream are laid out (`STAGE_LAYOUTS` names)."""
        coarse, fine = self.pipe.coarse, self.pipe.fine
        return (("delay" if coarse.delayed else "flatten"),
                "none" if fine is None else "delay" if fine.delayed else "flatten")

    def stage_symbols(self, frames: int, semantic_len: int) -> dict[str, int]:
        """How many symbols each stream codes for a file of `frames` codec frames."""
        qc, k = self.pipe.num_coarse, self.pipe.num_codebooks
        return {"semantic": semantic_len, "coarse": qc * frames, "fine": (k - qc) * frames}

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

    def walk(self, steps: dict[str, CodeStep], frames: int, semantic_len: int,
             truth: TokenContent | None = None) -> TokenContent:
        """Code every token of a file, stage by stage, window by window as generation does; `steps` encode the
        tokens of `truth` or (truth None) decode them."""
        semantic = self._walk_semantic(steps["semantic"], semantic_len, truth)
        coarse = self._walk_coarse(steps["coarse"], semantic, frames, truth)
        codes = coarse if self.pipe.fine is None else self._walk_fine(steps["fine"], coarse, frames, truth)
        return TokenContent(semantic=semantic[0], codes=codes[0])

    def _walk_semantic(self, step: CodeStep, total: int, truth: TokenContent | None) -> torch.Tensor:
        """The semantic ids [1, Ts]."""
        from soundlm.pipeline import AudioLMSampling, context_windows

        stage, layout = self.pipe.semantic, self.pipe.semantic.layout
        window = max(2, int(stage.window_seconds * stage.meta.semantic_rate))
        allowed = layout.range_of("semantic")
        semantic = torch.zeros(1, 0, dtype=torch.long)
        for start, new in context_windows(0, total, window, AudioLMSampling().keep(window)):
            have = semantic.shape[1]
            prompt = torch.cat([torch.full((1, 1), layout.bos_id), layout.semantic_to_global(semantic[:, start:])], 1)
            known = None if truth is None else layout.semantic_to_global(truth.semantic[None, have: have + new])
            ids = _code_tokens(stage.model, prompt, new, lambda i: allowed, step, known)
            semantic = torch.cat([semantic, layout.global_to_semantic(ids)], dim=1)
        return semantic

    def _walk_coarse(self, step: CodeStep, semantic: torch.Tensor, frames: int,
                     truth: TokenContent | None) -> torch.Tensor:
        """The coarse codes [1, Qc, T], each window conditioned on the semantic ids of its whole span."""
        from soundlm import patterns
        from soundlm.pipeline import AudioLMSampling, context_windows, semantic_aligned_start

        stage, layout, qc = self.pipe.coarse, self.pipe.coarse.layout, self.pipe.num_coarse
        sem_rate, ac_rate = stage.meta.semantic_rate, stage.meta.acoustic_rate
        window = max(2, int(stage.window_seconds * ac_rate))
        sem_window = int(round(stage.window_seconds * sem_rate))
        coarse = torch.zeros(1, qc, 0, dtype=torch.long)
        for start, new in context_windows(0, frames, window, AudioLMSampling().keep(window)):
            have = coarse.shape[2]
            s0, start = semantic_aligned_start(start, have, sem_rate, ac_rate)  # as generation moves it
            ids = semantic[:, s0: s0 + sem_window]
            known = None if truth is None else truth.codes[None, :qc, have: have + new]  # [1, Qc, new]
            if stage.delayed:
                out = _code_delayed(stage.model, coarse[:, :, start:], new, ids, step, known)
            else:
                seq = patterns.coarse_sequence(ids, coarse[:, :, start:], layout, eos=False)
                flat = _code_tokens(stage.model, seq.tokens, new * qc,
                                    lambda i: layout.range_of(f"acoustic:{i % qc}"), step,
                                    None if known is None else patterns.flatten_frames(known, layout))
                out = patterns.unflatten_frames(flat, layout, qc)
            coarse = torch.cat([coarse, out], dim=2)
        return coarse

    def _walk_fine(self, step: CodeStep, coarse: torch.Tensor, frames: int,
                   truth: TokenContent | None) -> torch.Tensor:
        """All codes [1, K, T]: the fine codes, each window conditioned on the coarse codes of its frames."""
        from soundlm import patterns
        from soundlm.pipeline import AudioLMSampling, context_windows
        from soundlm.stages import delay_prefix

        stage, layout, qc = self.pipe.fine, self.pipe.fine.layout, self.pipe.num_coarse
        qf = self.pipe.num_codebooks - qc
        window = max(2, int(stage.window_seconds * stage.meta.acoustic_rate))
        fine = torch.zeros(1, qf, 0, dtype=torch.long)
        for start, new in context_windows(0, frames, window, AudioLMSampling().keep(window)):
            have = fine.shape[2]
            span = coarse[:, :, start: have + new]  # [1, Qc, end-start]
            known = None if truth is None else truth.codes[None, qc:, have: have + new]  # [1, Qf, new]
            if stage.delayed:
                prefix = delay_prefix("fine", semantic=None, coarse=span, codebook_size=layout.codebook_size)
                out = _code_delayed(stage.model, fine[:, :, start:], new, prefix, step, known)
            else:
                # BOS coarse(start:end) SEP, then the fine codes already known in this window as context.
                prefix = patterns.fine_sequence(span, None, layout)
                context = patterns.flatten_frames(fine[:, :, start:], layout, first_level=qc)
                flat = _code_tokens(stage.model, torch.cat([prefix.tokens, context], dim=1), new * qf,
                                    lambda i: layout.range_of(f"acoustic:{qc + i % qf}"), step,
                                    None if known is None else patterns.flatten_frames(known, layout, first_level=qc))
                out = patterns.unflatten_frames(flat, layout, qf, first_level=qc)
            fine = torch.cat([fine, out], dim=2)
        return torch.cat([coarse, fine], dim=1)

    def encode_content(self, content: TokenContent) -> list[bytes]:
        """Tokens -> streams [info, semantic, coarse, fine] (see the module doc)."""
        content = TokenContent(content.semantic, content.codes[: self.pipe.num_codebooks])
        encoders = {name: Encoder() for name in STREAMS}
        with one_thread(), torch.inference_mode():
            self.walk({n: _encoder_step(encoders[n]) for n in STREAMS}, content.codes.shape[1],
                      len(content.semantic), truth=content)
        info = _INFO.pack(len(content.semantic), *(STAGE_LAYOUTS[name] for name in self.layouts))
        return [info] + [words_to_bytes(encoders[n].words()) for n in STREAMS]

    def decode_content(self, frames: int, streams: list[bytes]) -> TokenContent:
        if len(streams) != 1 + len(STREAMS) or len(streams[0]) not in (_INFO.size, _LEGACY_INFO.size):
            raise ValueError(f"token mode needs {1 + len(STREAMS)} streams, the first of {_INFO.size} bytes; the "
                             f"file has {len(streams)}; it is damaged or not a token-mode file")
        if len(streams[0]) == _LEGACY_INFO.size:
            (semantic_len,), layouts = _LEGACY_INFO.unpack(streams[0]), ("flatten", "flatten")
        else:
            semantic_len, *ids = _INFO.unpack(streams[0])
            names = {v: k for k, v in STAGE_LAYOUTS.items()}
            layouts = tuple(names.get(i, f"unknown ({i})") for i in ids)
        if layouts != self.layouts:
            raise ValueError(f"the file's coarse/fine streams are {'/'.join(layouts)}, this model's stages "
                             f"{'/'.join(self.layouts)}; decompress it with the model that wrote it")
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
