"""AudioLM's three stages end to end: audio prompt -> continuation, or unconditional audio.

    prompt audio --semantic tokenizer--> semantic ids --semantic LM--> more semantic ids
                 --codec--> coarse + fine codes      --coarse LM (semantic + coarse prompt)--> coarse codes
                                                     --fine LM (coarse + fine prompt)-------> fine codes
                                                     --codec decode--> waveform

Lengths. `continue_audio(prompt, seconds)` returns the prompt followed by exactly `seconds`
of continuation: `prompt_samples + round(seconds * sample_rate)` samples, where the prompt
is first cut to a whole number of codec frames. The whole file (prompt part included) is
the codec's decoding of the full code sequence, so there is no seam at the boundary;
`include_prompt=False` returns only the `round(seconds * sample_rate)` continuation
samples. `generate(seconds)` returns exactly `round(seconds * sample_rate)` samples.

Windows. Each stage was trained on crops of `window_seconds` (stored in its folder).
Longer audio is generated window by window: every new window keeps the last part of
the window as context (half by default, `AudioLMSampling.context`; for the coarse stage
together with the semantic ids of the whole window, as in training) and generates the
rest, so no stage ever sees a sequence longer than it was trained on. Coarse and fine stages trained with the delay pattern
(`--pattern delay`, MusicGen's `DelayLM`) are decoded the same way, window by window, with
`generate_delayed`.

Streaming. `stream_continue` / `stream_generate` yield the audio in chunks as it is made:
each stage runs a window only when the next one needs it (a coarse window needs the
semantic ids of its whole window, a fine window the coarse codes of its frames), and the
codec decodes each chunk with `decode_context` seconds of codes on either side, so the
first chunk comes after one window of each stage instead of after the whole file. The first
window of every stage is short (`AudioLMSampling.first_window`, 0.5 s; the coarse one then reads
the semantic ids of its own span) in streamed and non-streamed generation alike, so the first
chunk waits for half a second of each stage, not for whole windows. Each
stage draws from its own random generator (seeded from `seed`), so the order in which the
stages run does not change what they sample: the streamed chunks, concatenated, are the
non-streamed output (up to float rounding at chunk seams; exact codes).

Batches. The stage loops run rounds of windows over a list of requests (one request for
`continue_audio`, several for `generate_batch`): each request plans its own windows from its
own prompt length, and a round's windows share one generation call, left-padded, each
request's rows drawing from its own stage generators and stopping at their own length. So
a request in a batch gets the tokens it would get alone.

Conditions (MusicLM, `soundlm.music.pipeline`). Conditioned semantic and coarse stages read a
request's condition ids (`BatchRequest.condition`) after BOS, NULLs when it has none; with
`AudioLMSampling.guidance` g != 1 every window also runs the NULL-conditioned twin of each row
in the same call (classifier-free guidance, `lm.generate`). A guided request in a batch gets what
it gets alone up to the float rounding of the larger decoding step (logits within ~1e-6), which
can flip a draw that falls on a tie.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch

from soundlm.audio_tokenizer import AudioTokenizer
from soundlm.devices import default_device
from soundlm.lm.quantize import quantize_lm, quantized_mode, resolve_quantize
from soundlm.sampler import RowGenerators, SamplingParams
from soundlm.stages import (Stage, condition_prefix, delay_prefix, delay_prefix_offset, load_stage,
                            write_stage_files)

if TYPE_CHECKING:
    from soundlm.patterns import AllowedFn
    from soundlm.codec.base import AcousticTokenizer
    from soundlm.semantic.base import SemanticTokenizer

BUNDLE_PARTS = ("semantic", "coarse", "fine")
REQUIRED_PARTS = BUNDLE_PARTS[:2]  # a one-stage acoustic model has no fine/
# Seconds each stage generates in its first window: a short first window gives early streamed audio.
FIRST_WINDOW_SECONDS = 0.5
# Seconds of codes a streamed chunk is decoded with on either side (the shipped codec's decoder reaches 0.28 s).
DECODE_CONTEXT_SECONDS = 0.32
SEMANTIC_TOKENIZER_DIR = "semantic_tokenizer"
CODEC_DIR = "codec"


@dataclass
class AudioLMSampling:
    """Sampling per stage; the defaults are AudioLM's temperatures (0.6 / 0.8 / 0.6).

    `context` is the fraction of a stage's training window kept as context each time
    generation slides past the window (the rest of the window is generated). Keeping more
    keeps the prompt in view for longer, at the cost of more, shorter windows.

    `first_window` caps the seconds each stage generates in its first window (None: a whole
    window), so that streaming hears audio after a short window of each stage instead of a
    whole one; it applies to streamed and non-streamed generation alike, which therefore give
    the same audio. Its cost: the acoustic stage's first window is conditioned on the semantic
    ids of its own, shorter span (less semantic look-ahead, a shorter sequence than in training).
    """

    semantic: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.6, top_p=0.95))
    coarse: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.8, top_p=0.95))
    fine: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.6, top_p=0.95))
    context: float = 0.5
    guidance: float = 1.0  # classifier-free guidance of conditioned stages (1: the conditional model alone)
    first_window: float | None = FIRST_WINDOW_SECONDS

    def __post_init__(self) -> None:
        if not 0.0 < self.context < 1.0:
            raise ValueError(f"context must be a fraction of the window in (0, 1), got {self.context}")
        if self.first_window is not None and not (math.isfinite(self.first_window) and self.first_window > 0):
            raise ValueError(f"first_window must be a positive number of seconds (or None for whole windows), "
                             f"got {self.first_window}")
        if not math.isfinite(self.guidance) or self.guidance < 0:
            raise ValueError(f"guidance must be >= 0 (1: no guidance, MusicLM used 3), got {self.guidance}")

    def keep(self, window: int) -> int:
        """Context frames kept in a window of `window` frames (at least 1, at most window - 1)."""
        return min(max(int(round(self.context * window)), 1), window - 1)

    def first_frames(self, rate: float) -> int | None:
        """Frames a stage at `rate` Hz generates at most in its first window (None: no limit)."""
        return None if self.first_window is None else max(1, _frames(self.first_window, rate))


def context_windows(have: int, total: int, window: int, keep: int,
                    first: int | None = None) -> Iterator[tuple[int, int]]:
    """Plan windowed generation in frames: yields (context_start, new_frames) until `total`.

    Frames [context_start, have) are the context of a window and `new_frames` follow them;
    context + new never exceeds `window`. While much remains, the context is `keep` frames
    (or all there is); near the end it grows so the last window is as full as possible.
    `first`: the first window generates at most this many frames (a short first window).
    """
    if not 0 < keep < window:
        raise ValueError(f"need 0 < keep < window, got keep={keep}, window={window}")
    if first is not None and first < 1:
        raise ValueError(f"the first window must generate at least one frame, got first={first}")
    while have < total:
        remaining = total - have
        context = min(have, max(keep, window - remaining))
        new = min(remaining, window - context, first or remaining)
        yield have - context, new
        have += new
        first = None


def _frames(seconds: float, rate: float) -> int:
    """Frames needed to cover `seconds` (ceil, tolerant to float error)."""
    return int(math.ceil(seconds * rate - 1e-6))


def semantic_aligned_start(start: int, have: int, sem_rate: float, ac_rate: float) -> tuple[int, int]:
    """An acoustic window planned to start at frame `start` (`have` frames exist), moved onto a semantic frame
    boundary as training crops start: (its first semantic frame, its acoustic start frame). Moving the start
    later only shortens the context, so context + new frames still fit the window."""
    s0 = int(math.ceil(start * sem_rate / ac_rate - 1e-6))
    return s0, min(int(math.floor(s0 * ac_rate / sem_rate + 1e-6)), have)


def stage_generators(seed: int, device: torch.device | str = "cpu") -> tuple[torch.Generator, ...]:
    """One random generator per stage (semantic, coarse, fine), all derived from `seed`.

    Separate streams let streaming interleave the stages without changing any stage's draws.
    """
    states = np.random.SeedSequence(seed).generate_state(len(BUNDLE_PARTS), dtype=np.uint64)
    # manual_seed takes a signed 64-bit range; keep 63 bits of each derived seed.
    return tuple(torch.Generator(device=device).manual_seed(int(x) >> 1) for x in states)


class _Growing:
    """Each request's stage output [n_r, ..., T_r] as rounds of windows run: `upto(r, n)` runs rounds until
    request r has n frames (or all)."""

    def __init__(self, value: list[torch.Tensor], windows: Iterator[list[torch.Tensor]] | None = None):
        self.value = value
        self._windows = windows

    def upto(self, request: int, frames: float) -> torch.Tensor:
        while self._windows is not None and self.value[request].shape[-1] < frames:
            nxt = next(self._windows, None)
            if nxt is None:
                self._windows = None
                break
            self.value = nxt
        return self.value[request]

    def all(self) -> list[torch.Tensor]:
        while self._windows is not None:
            nxt = next(self._windows, None)
            if nxt is None:
                self._windows = None
            else:
                self.value = nxt
        return self.value


@dataclass
class AudioChunk:
    """A piece of streamed audio: [B, C, S] samples starting at sample `start` of the whole output."""

    audio: np.ndarray
    start: int


@dataclass
class GeneratedTokens:
    """One request's output of `generate_batch_tokens`: the stages' ids and the waveforms they decode to."""

    semantic: torch.Tensor  # [n, T_s] semantic ids (the prompt's first)
    codes: torch.Tensor  # [n, K, T_a] codec codes (coarse levels first)
    audio: list[np.ndarray]  # n waveforms [C, S]


@dataclass
class BatchRequest:
    """One request of `AudioLMPipeline.generate_batch`: a continuation of `prompt` (a file, or a [C, S] / [S]
    array at `prompt_sample_rate`) by `seconds`, or `seconds` of unconditional audio when prompt is None.
    The fields mean what `continue_audio`'s arguments of the same names mean."""

    seconds: float
    prompt: str | Path | np.ndarray | None = None
    prompt_sample_rate: int | None = None
    num_samples: int = 1
    seed: int = 0
    acoustic_prompt: bool = True
    include_prompt: bool = True
    prompt_source: str | Path | None = None
    condition: torch.Tensor | None = None  # [Q] condition ids in [0, C) for conditioned stages (None: NULL)


class AudioLMPipeline:
    """Semantic tokenizer + codec + the three stage LMs (AudioLM, Borsos et al. 2022).

    fine=None: a one-stage acoustic model, the coarse stage (a delay pattern, or a flattened one over all
    the codec's codebooks) models every codebook and the fine step is skipped.
    """

    def __init__(self, semantic_tokenizer: SemanticTokenizer, codec: AcousticTokenizer, semantic: Stage, coarse: Stage,
                 fine: Stage | None, device: torch.device | str | None = None):
        self.device = default_device(device)
        self.semantic_tokenizer = semantic_tokenizer
        self.codec = codec
        self.semantic, self.coarse, self.fine = semantic, coarse, fine
        for part in self.stages:
            part.model.to(self.device).eval()
        self.num_coarse = coarse.meta.coarse_codebooks
        self.num_codebooks = (fine or coarse).layout.num_codebooks
        self._check_compatible()
        self.codec.set_num_codebooks(self.num_codebooks)
        # The prompt's path to tokens: the same one `soundlm tokenize` takes.
        self.audio_tokenizer = AudioTokenizer(semantic_tokenizer, codec, self.device, probe=False)

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The stage LMs this pipeline runs: semantic, coarse and (when it has one) fine."""
        return tuple(s for s in (self.semantic, self.coarse, self.fine) if s is not None)

    # ---- loading -----------------------------------------------------------------------
    @classmethod
    def from_runs(cls, semantic_run: str | Path, coarse_run: str | Path, fine_run: str | Path | None,
                  semantic_tokenizer: str | Path | None = None, codec: str | Path | None = None,
                  device: torch.device | str | None = None) -> "AudioLMPipeline":
        """Load the stages from run (or final) folders (fine_run None: a one-stage acoustic model).

        The tokenizers default to the ones named in the stages' token store manifest.
        """
        device = default_device(device)
        stages = [load_stage(p, name, device) if p is not None else None
                  for p, name in zip((semantic_run, coarse_run, fine_run), BUNDLE_PARTS)]
        trained_on = stages[1].meta.tokenizers
        sem = _load_semantic_tokenizer(semantic_tokenizer or (trained_on and trained_on.semantic_spec),
                                       stages[0].folder, device)
        ac = _load_codec(codec or (trained_on and trained_on.acoustic_spec), stages[1].folder, device)
        return cls(sem, ac, *stages, device=device)

    @classmethod
    def from_bundle(cls, folder: str | Path, device: torch.device | str | None = None) -> "AudioLMPipeline":
        """Load a bundle folder: semantic/ coarse/ fine/ (+ semantic_tokenizer/ and codec/ when present); a
        bundle without fine/ is a one-stage acoustic model."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such model folder; pass a folder written by "
                                    "AudioLMPipeline.save_bundle or use --semantic-run/--coarse-run/--fine-run")
        missing = [p for p in REQUIRED_PARTS if not (folder / p).is_dir()]
        if missing:
            raise FileNotFoundError(f"{folder}: a model folder needs subfolders {list(REQUIRED_PARTS)} (and fine/ "
                                    f"unless its coarse stage models every codebook), missing {missing}")
        sem = folder / SEMANTIC_TOKENIZER_DIR
        ac = folder / CODEC_DIR
        return cls.from_runs(*(folder / p if (folder / p).is_dir() else None for p in BUNDLE_PARTS),
                             semantic_tokenizer=sem if sem.is_dir() else None,
                             codec=ac if ac.is_dir() else None, device=device)

    def save_bundle(self, folder: str | Path) -> Path:
        """Write one folder holding all parts (stage models, semantic tokenizer, codec)."""
        from soundlm.fileio import atomic_dir

        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            self.write_bundle(tmp)
        return folder

    def write_bundle(self, folder: Path) -> None:
        """The bundle's parts into an existing (temporary) folder: for writers that add parts of their own."""
        for part in self.stages:
            (folder / part.name).mkdir()
            write_stage_files(part.model, folder / part.name, part.meta, part.layout)
        self.semantic_tokenizer.save(folder / SEMANTIC_TOKENIZER_DIR)
        if hasattr(self.codec, "save_pretrained"):
            self.codec.save_pretrained(folder / CODEC_DIR)

    def _check_compatible(self) -> None:
        sem, coarse, fine = self.semantic, self.coarse, self.fine
        checks = [] if fine is not None else [
            (coarse.delayed or self.num_coarse == self.codec.total_codebooks,
             f"without a fine stage the coarse LM must model every codec codebook: it is a flattened stage over "
             f"{self.num_coarse} of the codec's {self.codec.total_codebooks}; add the fine/ stage"),
        ]
        fine = fine or coarse  # one-stage: the coarse stage stands in for the fine one in the checks below
        checks += [
            (sem.layout.semantic_size == coarse.layout.semantic_size,
             f"semantic LM has {sem.layout.semantic_size} semantic ids, coarse LM {coarse.layout.semantic_size}"),
            (int(self.semantic_tokenizer.vocab_size) == sem.layout.semantic_size,
             f"semantic tokenizer has {self.semantic_tokenizer.vocab_size} ids, the LMs {sem.layout.semantic_size}"),
            (coarse.layout.num_codebooks == self.num_coarse and fine.meta.coarse_codebooks == self.num_coarse,
             f"coarse LM models {coarse.layout.num_codebooks} codebooks, fine LM expects {fine.meta.coarse_codebooks}"),
            (self.fine is None or self.num_codebooks > self.num_coarse, f"fine LM has no codebooks beyond the {self.num_coarse} coarse ones"),
            (coarse.layout.codebook_size == fine.layout.codebook_size == self.codec.codebook_size,
             f"codebook sizes differ: coarse {coarse.layout.codebook_size}, fine {fine.layout.codebook_size}, "
             f"codec {self.codec.codebook_size}"),
            (self.num_codebooks <= self.codec.total_codebooks,
             f"fine LM models {self.num_codebooks} codebooks, the codec has {self.codec.total_codebooks}"),
            (abs(float(self.semantic_tokenizer.frame_rate) - sem.meta.semantic_rate) < 1e-6,
             f"semantic tokenizer runs at {self.semantic_tokenizer.frame_rate} Hz, the LMs at {sem.meta.semantic_rate}"),
            (abs(float(self.codec.frame_rate) - coarse.meta.acoustic_rate) < 1e-6,
             f"codec runs at {self.codec.frame_rate} Hz, the LMs at {coarse.meta.acoustic_rate}"),
        ]
        if sem.meta.conditioned and coarse.meta.conditioned:
            checks.append(((sem.meta.condition_tokens, sem.meta.condition_size)
                           == (coarse.meta.condition_tokens, coarse.meta.condition_size),
                           f"semantic LM reads {sem.meta.condition_tokens} condition ids of {sem.meta.condition_size}, "
                           f"coarse LM {coarse.meta.condition_tokens} of {coarse.meta.condition_size}"))
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise ValueError("the pipeline parts do not fit together: " + "; ".join(bad) +
                             "; train all stages on one token store and load its tokenizers")

    # ---- public API --------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    def quantize(self, mode: str) -> "AudioLMPipeline":
        """Run the three stage LMs with int8 or bf16 weights ("none": as loaded; "auto": int8 on CPU, none
        elsewhere); see `soundlm.lm.quantize`. In place, once: a quantized pipeline is not converted again.
        """
        mode = resolve_quantize(mode, self.device)
        for part in self.stages:
            current = quantized_mode(part.model)
            if current == mode:
                continue
            if current != "none":
                raise ValueError(f"the {part.name} stage already runs {current}; load the model again for {mode}")
            quantize_lm(part.model, mode)
        return self

    @property
    def quantized(self) -> str:
        return quantized_mode(self.semantic.model)

    def continue_audio(self, prompt: str | Path | np.ndarray, seconds: float, num_samples: int = 1,
                       sampling: AudioLMSampling | None = None, seed: int = 0, prompt_sample_rate: int | None = None,
                       include_prompt: bool = True, progress: bool = False,
                       acoustic_prompt: bool = True, prompt_source: str | Path | None = None) -> list[np.ndarray]:
        """Continue a prompt (a file, or a [C, S] / [S] array at `prompt_sample_rate`) by `seconds`.

        acoustic_prompt=False gives the coarse and fine stages the prompt's semantic ids only,
        not its codec codes, so they sample the acoustics (voice, recording conditions) of the
        whole file afresh: AudioLM's contrast for speaker preservation (sec. 5.3).
        Returns `num_samples` waveforms [C, S] at `self.sample_rate` (see the module doc for lengths).
        """
        plan = self._continuation(prompt, seconds, prompt_sample_rate, prompt_source, acoustic_prompt, include_prompt)
        out = self._run(*plan.tokens, plan.seconds, num_samples, sampling, seed, progress)
        out = _fit_length(out, plan.total_samples)[:, :, plan.first_sample:]
        return [x for x in out.cpu().numpy()]

    def generate(self, seconds: float, num_samples: int = 1, sampling: AudioLMSampling | None = None, seed: int = 0,
                 progress: bool = False) -> list[np.ndarray]:
        """Unconditional audio: `num_samples` waveforms [C, round(seconds * sample_rate)]."""
        out = self._run(*self._empty_prompt(), seconds, num_samples, sampling, seed, progress)
        return [x for x in _fit_length(out, int(round(seconds * self.sample_rate))).cpu().numpy()]

    def generate_batch(self, requests: list[BatchRequest], sampling: AudioLMSampling | None = None,
                       progress: bool = False) -> list[list[np.ndarray]]:
        """Several requests in shared generation batches: each request's waveforms, as `continue_audio`
        (a request with a prompt) or `generate` (without) give them for its seed alone.

        Prompts of different lengths, different seeds, lengths and sample counts mix freely: every
        window's call left-pads the requests' rows, each request's rows draw from their own
        generators and stop drawing at their own length, so each request gets the same tokens as
        alone. Only the sampling settings are shared.
        """
        return [g.audio for g in self.generate_batch_tokens(requests, sampling, progress)]

    def generate_batch_tokens(self, requests: list[BatchRequest], sampling: AudioLMSampling | None = None,
                              progress: bool = False) -> list[GeneratedTokens]:
        """`generate_batch`, keeping each request's tokens beside its waveforms: what a preference tuner
        (MusicRL) trains a stage on is the ids the stage drew, not a re-tokenization of the audio."""
        if not requests:
            raise ValueError("generate_batch needs at least one request")
        plans = [self._plan_of(r) for r in requests]
        full, _, semantic = self._codes([p.tokens for p in plans], [p.seconds for p in plans],
                                        [r.num_samples for r in requests], sampling, [r.seed for r in requests],
                                        progress, [r.condition for r in requests])
        out = []
        for plan, codes, sem in zip(plans, full.all(), semantic.all()):
            with torch.inference_mode():
                audio = self.codec.decode(codes).float()  # [n, C, S]
            audio = _fit_length(audio, plan.total_samples)[:, :, plan.first_sample:]
            out.append(GeneratedTokens(sem, codes, [x for x in audio.cpu().numpy()]))
        return out

    def _plan_of(self, request: BatchRequest) -> _Plan:
        if request.prompt is None:
            return _Plan(self._empty_prompt(), request.seconds, 0, int(round(request.seconds * self.sample_rate)))
        return self._continuation(request.prompt, request.seconds, request.prompt_sample_rate,
                                  request.prompt_source, request.acoustic_prompt, request.include_prompt)

    def stream_continue(self, prompt: str | Path | np.ndarray, seconds: float, num_samples: int = 1,
                        sampling: AudioLMSampling | None = None, seed: int = 0, prompt_sample_rate: int | None = None,
                        include_prompt: bool = True, progress: bool = False, acoustic_prompt: bool = True,
                        prompt_source: str | Path | None = None,
                        decode_context: float = DECODE_CONTEXT_SECONDS) -> Iterator[AudioChunk]:
        """`continue_audio`, yielded in chunks [B, C, S_i] as the stages produce frames.

        The chunks, concatenated along time, are `np.stack(continue_audio(...))` with the same
        arguments: the same codes, decoded chunk by chunk with `decode_context` seconds of codes on
        either side (exact up to float rounding for a codec whose decoder sees no further; the
        shipped iSTFT codec sees about 0.31 s). The first chunk arrives after the first window of
        each stage has run, which `sampling.first_window` keeps short (0.5 s by default), plus
        `decode_context` of codes beyond the chunk: a first window no longer than `decode_context`
        holds the first chunk back until the second windows have run.
        """
        plan = self._continuation(prompt, seconds, prompt_sample_rate, prompt_source, acoustic_prompt, include_prompt)
        yield from self._stream(*plan.tokens, plan.seconds, num_samples, sampling, seed, progress,
                                plan.first_sample, plan.total_samples, decode_context)

    def stream_generate(self, seconds: float, num_samples: int = 1, sampling: AudioLMSampling | None = None,
                        seed: int = 0, progress: bool = False,
                        decode_context: float = DECODE_CONTEXT_SECONDS) -> Iterator[AudioChunk]:
        """`generate`, yielded in chunks as the stages produce frames (see `stream_continue`)."""
        yield from self._stream(*self._empty_prompt(), seconds, num_samples, sampling, seed, progress, 0,
                                int(round(seconds * self.sample_rate)), decode_context)

    def _continuation(self, prompt: str | Path | np.ndarray, seconds: float, prompt_sample_rate: int | None,
                      prompt_source: str | Path | None, acoustic_prompt: bool, include_prompt: bool) -> _Plan:
        semantic, codes = self.tokenize_prompt(prompt, prompt_sample_rate, prompt_source)
        prompt_samples = int(round(codes.shape[2] * self.codec.sample_rate / self.codec.frame_rate))
        prompt_seconds = codes.shape[2] / self.codec.frame_rate
        if not acoustic_prompt:
            codes = codes[:, :, :0]  # [1, K, 0]
        total = prompt_samples + int(round(seconds * self.sample_rate))
        return _Plan((semantic, codes), prompt_seconds + seconds, 0 if include_prompt else prompt_samples, total)

    def _empty_prompt(self) -> tuple[torch.Tensor, torch.Tensor]:
        semantic = torch.zeros(1, 0, dtype=torch.long, device=self.device)
        codes = torch.zeros(1, self.num_codebooks, 0, dtype=torch.long, device=self.device)
        return semantic, codes

    # ---- stages ------------------------------------------------------------------------
    def _prompt_audio(self, prompt: str | Path | np.ndarray, sample_rate: int | None) -> tuple[np.ndarray, int]:
        """The prompt as float32 [C, S] at its own rate, checked; and that rate."""
        from soundlm.audio import check_audio, info, load_audio

        if isinstance(prompt, (str, Path)):
            return load_audio(prompt, sample_rate=None, mono=False), info(prompt).sample_rate
        if sample_rate is None:
            raise ValueError("an array prompt needs prompt_sample_rate (the rate of its samples)")
        audio = np.asarray(prompt, dtype=np.float32)
        audio = audio[None] if audio.ndim == 1 else audio
        if audio.ndim != 2:
            raise ValueError(f"an array prompt must be [S] or [C, S], got shape {audio.shape}")
        check_audio(audio)
        return audio, int(sample_rate)

    @torch.inference_mode()
    def tokenize_prompt(self, prompt: str | Path | np.ndarray, sample_rate: int | None = None,
                        source: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A prompt (file, or [C, S] / [S] array at `sample_rate`) -> semantic ids [1, T_s], codes [1, K, T_a].

        source: the file an array prompt was read from, named in error messages.

        The prompt is cut to whole codec frames (T_a of them), so its semantic ids and codes
        cover the same time and what follows starts on a frame boundary.
        """
        audio, rate = self._prompt_audio(prompt, sample_rate)  # [C, S] at its own rate
        native_hop = rate / self.codec.frame_rate
        frames = int(audio.shape[-1] // native_hop)
        if frames < 1:
            from soundlm.audio import AudioError

            raise AudioError(prompt if isinstance(prompt, (str, Path)) else source,
                             f"prompt too short: {audio.shape[-1]} samples, less than one codec frame "
                             f"({native_hop:g})", "use a longer prompt")
        seconds = frames / self.codec.frame_rate
        tokens = self.audio_tokenizer.encode(audio[:, : int(round(frames * native_hop))], rate,
                                             prompt if isinstance(prompt, (str, Path)) else source)
        codes = torch.from_numpy(tokens.acoustic)[None, :, : _frames(seconds, self.codec.frame_rate)]  # [1, K, T_a]
        semantic = torch.from_numpy(tokens.semantic)[None, : _frames(seconds, self.semantic_tokenizer.frame_rate)]
        return semantic.long().to(self.device), codes.long().to(self.device)

    def _codes(self, prompts: list[tuple[torch.Tensor, torch.Tensor]], seconds: list[float], counts: list[int],
               sampling: AudioLMSampling | None, seeds: list[int], progress: bool,
               conditions: list[torch.Tensor | None] | None = None) -> tuple[_Growing, list[int], _Growing]:
        """Requests' prompt tokens (semantic [1, T_s], codes [1, K, T_a], possibly empty) -> each request's codes
        [n_r, K, T_r] as they grow window by window, each T_r, and its semantic ids [n_r, T_s] (growing ahead of
        the codes). conditions: each request's condition ids
        [Q] (or None: NULL) for the conditioned stages.

        The requests share every window's generation call (rows left-padded, each request's rows
        drawing from its own generators), so each gets the codes it would get alone.
        """
        if any(s <= 0 for s in seconds):
            raise ValueError(f"seconds must be positive, got {min(seconds)}")
        if any(n < 1 for n in counts):
            raise ValueError(f"num_samples must be >= 1, got {min(counts)}")
        sampling = sampling or AudioLMSampling()
        conds = self._conditions(conditions or [None] * len(counts), counts)
        gens = [stage_generators(seed, self.device) for seed in seeds]
        sem_rate, ac_rate = self.semantic.meta.semantic_rate, float(self.codec.frame_rate)
        n_sem = [_frames(s, sem_rate) for s in seconds]
        n_ac = [_frames(s, ac_rate) for s in seconds]
        semantic = [s.expand(n, -1) for (s, _), n in zip(prompts, counts)]  # [n_r, T_s]
        codes = [c.expand(n, -1, -1) for (_, c), n in zip(prompts, counts)]  # [n_r, K, T_a]
        qc = self.num_coarse
        sem = _Growing(semantic, self._semantic_windows(semantic, n_sem, sampling, [g[0] for g in gens], progress,
                                                        conds))
        coarse_prompt = [c[:, :qc] for c in codes]
        coarse = _Growing(coarse_prompt, self._coarse_windows(sem, coarse_prompt, n_ac, sampling,
                                                              [g[1] for g in gens], progress, conds))
        if self.fine is None:  # one-stage: the coarse codes are all the codes
            return coarse, n_ac, sem
        full = _Growing([c[:, :, :min(c.shape[2], n)] for c, n in zip(codes, n_ac)],
                        self._fine_windows(coarse, n_ac, [c[:, qc:] for c in codes], sampling, [g[2] for g in gens],
                                           progress))
        return full, n_ac, sem

    @property
    def condition_shape(self) -> tuple[int, int] | None:
        """(Q, C) of the conditioned stages: Q condition ids in [0, C) per request; None when no stage is."""
        for stage in (self.semantic, self.coarse):
            if stage.meta.conditioned:
                return stage.meta.condition_tokens, stage.meta.condition_size
        return None

    def _conditions(self, conditions: list[torch.Tensor | None], counts: list[int]) -> list[torch.Tensor | None]:
        """Each request's condition ids [Q] -> [n_r, Q] on the device (None stays None: NULL), checked."""
        shape = self.condition_shape
        out: list[torch.Tensor | None] = []
        for cond, n in zip(conditions, counts):
            if cond is None:
                out.append(None)
                continue
            if shape is None:
                raise ValueError("this model's stages take no condition ids; load a music bundle whose semantic and "
                                 "coarse stages were trained on a store tokenized with --mulan")
            q, c = shape
            cond = torch.as_tensor(cond, dtype=torch.long, device=self.device).reshape(-1)
            if cond.shape[0] != q or int(cond.min()) < 0 or int(cond.max()) >= c:
                raise ValueError(f"condition ids must be {q} ids in [0, {c}), got {cond.tolist()}; make them with "
                                 "the MuLan the model was trained with")
            out.append(cond[None].expand(n, -1))  # [n_r, Q]
        return out

    def _run(self, semantic: torch.Tensor, codes: torch.Tensor, seconds: float, num_samples: int,
             sampling: AudioLMSampling | None, seed: int, progress: bool) -> torch.Tensor:
        """Prompt tokens (possibly empty) -> decoded audio [B, C, S] covering `seconds` in total."""
        full, _, _ = self._codes([(semantic, codes)], [seconds], [num_samples], sampling, [seed], progress)
        with torch.inference_mode():
            return self.codec.decode(full.all()[0]).float()  # [B, C, S]

    def _stream(self, semantic: torch.Tensor, codes: torch.Tensor, seconds: float, num_samples: int,
                sampling: AudioLMSampling | None, seed: int, progress: bool, first_sample: int, total_samples: int,
                decode_context: float) -> Iterator[AudioChunk]:
        """The samples first_sample..total_samples-1 of `_run`'s output (fit to total_samples), in chunks."""
        if decode_context < 0:
            raise ValueError(f"decode_context must be >= 0 seconds, got {decode_context}")
        full, (n_frames,), _ = self._codes([(semantic, codes)], [seconds], [num_samples], sampling, [seed],
                                             progress)
        hop = int(round(self.codec.sample_rate / self.codec.frame_rate))
        context = _frames(decode_context, float(self.codec.frame_rate))
        done = first_sample  # samples yielded so far (absolute)
        have, exhausted = full.value[0].shape[-1], False
        while done < total_samples:
            final = exhausted or have >= n_frames
            # Samples that no code still to come can change: all at the end, else up to `context` frames back.
            end = total_samples if final else min(max(have - context, 0) * hop, total_samples)
            if end <= done:
                grown = full.upto(0, have + 1).shape[-1]  # run the next window (and what it needs upstream)
                exhausted, have = grown == have, grown
                continue
            f0 = max(0, done // hop - context)
            f1 = min(have, -(-end // hop) + context)
            with torch.inference_mode():
                audio = self.codec.decode(full.value[0][:, :, f0:f1]).float()  # [B, C, (f1-f0)*hop]
            piece = audio[:, :, done - f0 * hop: end - f0 * hop]
            if piece.shape[-1] < end - done:  # the codec's output ends early: zero-fill like _fit_length
                piece = torch.nn.functional.pad(piece, (0, end - done - piece.shape[-1]))
            yield AudioChunk(piece.cpu().numpy(), done)
            done = end

    def acoustic_codes(self, semantic: torch.Tensor, codes: torch.Tensor, frames: int,
                       sampling: AudioLMSampling | None = None, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
        """Given semantic ids [1, T_s], the coarse and fine stages (or the one-stage coarse) -> codes [1, K, frames].

        codes [1, K, T_p]: an acoustic prompt (the codes of the audio the first semantic ids
        came from; T_p = 0 for none), kept as the first T_p frames of the result. This is
        AudioLM's acoustic generation alone, without the semantic stage (TTS output rendering,
        the acoustic-generation test on ground-truth semantic ids). One generator drives both stages.
        """
        # Nothing streams from here and every semantic id is given: a short first window would only cost quality.
        sampling = replace(sampling or AudioLMSampling(), first_window=None)
        gen = generator if generator is not None else torch.Generator(device=self.device).manual_seed(0)
        coarse = self._coarse_stage(semantic, codes[:, : self.num_coarse], frames, sampling, gen, False)
        if self.fine is None:
            return coarse  # [1, K, frames]
        return self._fine_stage(coarse, codes[:, self.num_coarse:], sampling, gen, False)  # [1, K, frames]

    def _semantic_stage(self, semantic: torch.Tensor, total: int, sampling: AudioLMSampling,
                        gen: torch.Generator, progress: bool) -> torch.Tensor:
        """Extend semantic ids [B, T0] to [B, total] window by window."""
        return _Growing([semantic], self._semantic_windows([semantic], [total], sampling, [gen], progress)).all()[0]

    def _coarse_stage(self, semantic: torch.Tensor, coarse: torch.Tensor, total: int, sampling: AudioLMSampling,
                      gen: torch.Generator, progress: bool) -> torch.Tensor:
        """Extend coarse codes [B, Qc, T0] to [B, Qc, total], conditioned on the semantic ids of each window."""
        windows = self._coarse_windows(_Growing([semantic]), [coarse], [total], sampling, [gen], progress)
        return _Growing([coarse], windows).all()[0]

    def _fine_stage(self, coarse: torch.Tensor, fine: torch.Tensor, sampling: AudioLMSampling,
                    gen: torch.Generator, progress: bool) -> torch.Tensor:
        """Fine codes for every frame of coarse [B, Qc, T] (prompt frames' fine codes given) -> [B, K, T]."""
        qf = self.num_codebooks - self.num_coarse
        known = torch.cat([coarse[:, :, :fine.shape[2]], fine[:, :qf, :coarse.shape[2]]], dim=1)
        windows = self._fine_windows(_Growing([coarse]), [coarse.shape[2]], [fine], sampling, [gen], progress)
        return _Growing([known], windows).all()[0]

    def _semantic_windows(self, semantic: list[torch.Tensor], totals: list[int], sampling: AudioLMSampling,
                          gens: list[torch.Generator], progress: bool,
                          conditions: list[torch.Tensor | None] | None = None) -> Iterator[list[torch.Tensor]]:
        """Each request's semantic ids [n_r, T0_r] extended window by window; yields them after each round."""
        from soundlm import patterns

        stage, layout = self.semantic, self.semantic.layout
        conditions = conditions or [None] * len(semantic)
        window = max(2, int(stage.window_seconds * stage.meta.semantic_rate))
        allowed = layout.range_of("semantic")
        semantic = list(semantic)
        first = self._semantic_first_frames(sampling)
        plans = [list(context_windows(s.shape[1], total, window, sampling.keep(window), first))
                 for s, total in zip(semantic, totals)]
        for live in _rounds(plans):
            asks = []
            for r, (start, new) in live:
                context = semantic[r][:, start:]

                def tokens(condition: torch.Tensor | None) -> torch.Tensor:
                    return patterns.semantic_sequence(context, layout, eos=False, condition=condition).tokens

                asks.append(_conditioned_ask(stage, tokens, conditions[r], context.shape[0], new, gens[r],
                                             sampling.guidance))  # [n, 1+(Q)+ctx]
            fresh = _generate_windows(stage, asks, sampling.semantic, lambda t0: (lambda pos: allowed), progress,
                                      sampling.guidance)
            for (r, _), out in zip(live, fresh):
                semantic[r] = torch.cat([semantic[r], layout.global_to_semantic(out)], dim=1)
            yield list(semantic)

    def _semantic_first_frames(self, sampling: AudioLMSampling) -> int | None:
        """The semantic stage's first window: the ids that the acoustic stage's first window reads.

        Its F acoustic frames span at most ceil(F * semantic rate / acoustic rate) semantic frames past
        the prompt's (ceil(a + b) <= ceil(a) + ceil(b)); rounding `first_window` at the semantic rate
        instead could fall one id short where the rates differ (50 and 75 Hz), and a whole second
        semantic window would run before the first acoustic one.
        """
        frames = sampling.first_frames(self.coarse.meta.acoustic_rate)
        return None if frames is None else _frames(frames / self.coarse.meta.acoustic_rate,
                                                   self.semantic.meta.semantic_rate)

    def _coarse_windows(self, semantic: _Growing, coarse: list[torch.Tensor], totals: list[int],
                        sampling: AudioLMSampling, gens: list[torch.Generator], progress: bool,
                        conditions: list[torch.Tensor | None] | None = None) -> Iterator[list[torch.Tensor]]:
        """Each request's coarse codes [n_r, Qc, T0_r] extended window by window; yields them after each round.

        Each window is conditioned on the semantic ids of its whole span (run as far as needed).
        """
        from soundlm import patterns

        stage, layout, qc = self.coarse, self.coarse.layout, self.num_coarse
        conditions = conditions or [None] * len(coarse)
        sem_rate, ac_rate = stage.meta.semantic_rate, stage.meta.acoustic_rate
        window = max(2, int(stage.window_seconds * ac_rate))
        sem_window = int(round(stage.window_seconds * sem_rate))
        coarse = list(coarse)
        first = sampling.first_frames(ac_rate)
        plans = [list(context_windows(c.shape[2], total, window, sampling.keep(window), first))
                 for c, total in zip(coarse, totals)]
        for w, live in enumerate(_rounds(plans)):
            asks = []
            for r, (start, new) in live:
                s0, start = semantic_aligned_start(start, coarse[r].shape[2], sem_rate, ac_rate)
                span = sem_window
                if w == 0 and first is not None:
                    # A short first window reads the semantic ids of its own span only, so it can run as soon
                    # as the semantic stage's (equally short) first window has.
                    end = coarse[r].shape[2] + new
                    span = min(sem_window, _frames(end / ac_rate, sem_rate) - s0)
                ids = semantic.upto(r, s0 + span)[:, s0: s0 + span]
                context = coarse[r][:, :, start:]
                if stage.delayed:
                    def tokens(condition: torch.Tensor | None) -> torch.Tensor:
                        if condition is None:
                            return ids
                        offset = delay_prefix_offset(stage.meta, layout)
                        return torch.cat([condition_prefix(condition, offset), ids], dim=1)  # [n, Q+T_s]

                    ask = _conditioned_ask(stage, tokens, conditions[r], ids.shape[0], new, gens[r],
                                           sampling.guidance)
                    asks.append(_Ask(context, new, gens[r], prefix=ask.tokens, uncond_prefix=ask.uncond))
                else:
                    def tokens(condition: torch.Tensor | None) -> torch.Tensor:
                        return patterns.coarse_sequence(ids, context, layout, eos=False, condition=condition).tokens

                    asks.append(_conditioned_ask(stage, tokens, conditions[r], ids.shape[0], new * qc, gens[r],
                                                 sampling.guidance))
            fresh = _generate_windows(stage, asks, sampling.coarse,
                                      lambda t0: patterns.acoustic_allowed_fn(layout, t0, qc), progress,
                                      sampling.guidance)
            for (r, _), out in zip(live, fresh):
                if not stage.delayed:
                    out = patterns.unflatten_frames(out, layout, qc)  # [n, Qc, new]
                coarse[r] = torch.cat([coarse[r], out], dim=2)
            yield list(coarse)

    def _fine_windows(self, coarse: _Growing, totals: list[int], fine: list[torch.Tensor], sampling: AudioLMSampling,
                      gens: list[torch.Generator], progress: bool) -> Iterator[list[torch.Tensor]]:
        """Each request's codes [n_r, K, T] for T up to its `total` coarse frames, window by window (prompt
        frames' fine codes given); yields them after each round."""
        from soundlm import patterns

        stage, layout, qc = self.fine, self.fine.layout, self.num_coarse
        qf = self.num_codebooks - qc
        window = max(2, int(stage.window_seconds * stage.meta.acoustic_rate))
        fine = [f[:, :qf, :total] for f, total in zip(fine, totals)]
        first = sampling.first_frames(stage.meta.acoustic_rate)
        plans = [list(context_windows(f.shape[2], total, window, sampling.keep(window), first))
                 for f, total in zip(fine, totals)]
        ends = [f.shape[2] for f in fine]
        for live in _rounds(plans):
            asks = []
            for r, (start, new) in live:
                ends[r] = fine[r].shape[2] + new
                span = coarse.upto(r, ends[r])[:, :, start:ends[r]]  # [n, Qc, end-start]
                if stage.delayed:
                    prefix = delay_prefix("fine", semantic=None, coarse=span, codebook_size=layout.codebook_size)
                    asks.append(_Ask(fine[r][:, :, start:], new, gens[r], prefix=prefix))
                else:
                    # BOS coarse(start:end) SEP, then the fine codes already known in this window as context.
                    prefix = patterns.fine_sequence(span, None, layout)
                    known = patterns.flatten_frames(fine[r][:, :, start:], layout, first_level=qc)  # [n, ctx*Qf]
                    asks.append(_Ask(torch.cat([prefix.tokens, known], dim=1), new * qf, gens[r]))
            fresh = _generate_windows(stage, asks, sampling.fine,
                                      lambda t0: patterns.acoustic_allowed_fn(layout, t0, qf, first_level=qc),
                                      progress)
            for (r, _), out in zip(live, fresh):
                if not stage.delayed:
                    out = patterns.unflatten_frames(out, layout, qf, first_level=qc)  # [n, Qf, new]
                fine[r] = torch.cat([fine[r], out], dim=2)
            yield [torch.cat([coarse.value[r][:, :, :ends[r]], f], dim=1) for r, f in enumerate(fine)]


@dataclass
class _Ask:
    """One request's window in a generation call: its rows' input and how much to generate.

    Flattened stages: `tokens` [n, L] ids and `new` tokens. Delay-pattern stages: `tokens` the
    codes context [n, K', T] and `new` frames, after the conditioning `prefix` [n, P].
    """

    tokens: torch.Tensor
    new: int
    generator: torch.Generator
    prefix: torch.Tensor | None = None
    # Classifier-free guidance: the same input with NULL condition ids (flattened: `tokens`' twin,
    # delay pattern: `prefix`'s), run in the same call; None when unguided.
    uncond: torch.Tensor | None = None
    uncond_prefix: torch.Tensor | None = None

    @property
    def rows(self) -> int:
        return self.tokens.shape[0]


def _conditioned_ask(stage: Stage, tokens: Callable[[torch.Tensor | None], torch.Tensor],
                     condition: torch.Tensor | None, rows: int, new: int, generator: torch.Generator,
                     guidance: float) -> _Ask:
    """An ask whose input `tokens(condition ids [n, Q] | None)` builds: an unconditioned stage's as is, a
    conditioned stage's with the request's condition (NULLs without one) and, guided, the NULL twin."""
    from soundlm.patterns import null_condition

    if not stage.meta.conditioned:
        return _Ask(tokens(None), new, generator)
    null = null_condition(stage.meta.condition_tokens, stage.layout, rows, device=generator.device)
    cond = null if condition is None else condition
    # A NULL-conditioned row's twin is itself: guidance leaves it unconditional, so skip the twin.
    twin = tokens(null) if guidance != 1.0 and condition is not None else None
    return _Ask(tokens(cond), new, generator, uncond=twin)


def _rounds(plans: list[list[tuple[int, int]]]) -> Iterator[list[tuple[int, tuple[int, int]]]]:
    """Window rounds over requests' plans: round w is [(request, its w-th window)] for requests that have one."""
    for w in range(max((len(p) for p in plans), default=0)):
        yield [(r, p[w]) for r, p in enumerate(plans) if w < len(p)]


def _generate_windows(stage: Stage, asks: list[_Ask], params: SamplingParams,
                      allowed_at: Callable[[int], AllowedFn], progress: bool,
                      guidance: float = 1.0) -> list[torch.Tensor]:
    """Run windows of several requests as few generation calls; each ask's new tokens [n, new] (flattened) or
    codes [n, K', new] (delay pattern), exactly what it would get in a call of its own.

    Flattened: prompts are left-padded into one batch (split only where the padded length would
    outgrow the model's context, which would slide it), rows stop drawing at their own length,
    and each request's rows draw from its own generator. `allowed_at(t0)` is the constraint for
    new tokens starting at padded position t0 (every ask's new tokens start in phase).
    Delay pattern: asks of equal shape share a call (that decoder has no left padding).
    Asks with an unconditional twin run guided by `guidance` (their twins in the same call); a call
    holding twinned and untwinned asks gives the untwinned rows themselves as twins, which leaves
    them unguided (the mix of equal logits is those logits).
    """
    from soundlm.lm.generate import generate, generate_delayed

    out: list[torch.Tensor | None] = [None] * len(asks)
    if stage.delayed:
        groups: dict[tuple, list[int]] = {}
        for i, a in enumerate(asks):
            key = (a.tokens.shape[2], a.new, None if a.prefix is None else a.prefix.shape[1])
            groups.setdefault(key, []).append(i)
        for idx in groups.values():
            part = [asks[i] for i in idx]
            twins = any(a.uncond_prefix is not None for a in part)
            codes = generate_delayed(stage.model, torch.cat([a.tokens for a in part]), part[0].new, params,
                                     generator=_generators(part),
                                     prefix=None if part[0].prefix is None else torch.cat([a.prefix for a in part]),
                                     progress=progress, guidance=guidance,
                                     uncond_prefix=torch.cat([a.prefix if a.uncond_prefix is None else a.uncond_prefix
                                                              for a in part]) if twins else None)
            for i, rows in zip(idx, _split_rows(codes[:, :, -part[0].new:], part)):
                out[i] = rows
        return out
    for idx in _packs(asks, stage.model.max_positions):
        part = [asks[i] for i in idx]
        t0 = max(a.tokens.shape[1] for a in part)
        most = max(a.new for a in part)
        twins = any(a.uncond is not None for a in part)
        uncond = None
        if len(part) == 1:
            tokens, pad, row_new = part[0].tokens, None, None
            uncond = part[0].uncond
        else:
            from soundlm.lm.generate import left_pad_prompts

            tokens, pad = left_pad_prompts([row for a in part for row in a.tokens])
            if twins:  # same lengths as their rows, so the same left padding
                uncond, _ = left_pad_prompts([row for a in part for row in (a.tokens if a.uncond is None else a.uncond)])
            row_new = torch.tensor([a.new for a in part for _ in range(a.rows)], device=tokens.device)
            pad = pad if bool(pad.any()) else None
        seq = generate(stage.model, tokens, most, params, allowed_fn=allowed_at(t0), generator=_generators(part),
                       progress=progress, left_pad=pad, row_new_tokens=row_new, guidance=guidance,
                       uncond_prompt=uncond)
        for i, a, rows in zip(idx, part, _split_rows(seq, part)):
            out[i] = rows[:, t0: t0 + a.new]
    return out


def _generators(asks: list[_Ask]) -> torch.Generator | RowGenerators:
    """One request: its generator as is; several: each row draws from its request's generator."""
    if len(asks) == 1:
        return asks[0].generator
    return RowGenerators([a.generator for a in asks for _ in range(a.rows)])


def _split_rows(batch: torch.Tensor, asks: list[_Ask]) -> list[torch.Tensor]:
    return list(torch.split(batch, [a.rows for a in asks]))


def _packs(asks: list[_Ask], max_positions: int) -> list[list[int]]:
    """Asks grouped in order so each group's padded prompt plus its longest generation fits the context."""
    packs: list[list[int]] = []
    longest = most = 0
    for i, a in enumerate(asks):
        t0, new = max(longest, a.tokens.shape[1]), max(most, a.new)
        if packs and t0 + new <= max_positions:
            packs[-1].append(i)
            longest, most = t0, new
        else:
            packs.append([i])
            longest, most = a.tokens.shape[1], a.new
    return packs


@dataclass
class _Plan:
    """A continuation's prompt tokens, total seconds covered and the output's sample range."""

    tokens: tuple[torch.Tensor, torch.Tensor]  # semantic [1, T_s], codes [1, K, T_a]
    seconds: float
    first_sample: int
    total_samples: int


def _fit_length(audio: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad audio [B, C, S] to exactly `length` samples."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    return torch.nn.functional.pad(audio, (0, length - audio.shape[-1]))


def _load_semantic_tokenizer(spec: str | Path | None, stage_folder: Path, device: torch.device) -> SemanticTokenizer:
    from soundlm.semantic import load_semantic_tokenizer

    if spec is None:
        raise ValueError(f"{stage_folder}: its config names no semantic tokenizer; pass --semantic-tokenizer")
    if not Path(spec).exists():
        raise FileNotFoundError(f"semantic tokenizer {spec} (named by {stage_folder}/config.json) does not exist; "
                                "pass --semantic-tokenizer with its folder")
    return load_semantic_tokenizer(spec, device=device)


def _load_codec(spec: str | Path | None, stage_folder: Path, device: torch.device) -> AcousticTokenizer:
    from soundlm.codec import load_codec

    if spec is None:
        raise ValueError(f"{stage_folder}: its config names no codec; pass --codec")
    return load_codec(spec, device=device)
