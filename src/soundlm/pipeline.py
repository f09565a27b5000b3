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
first chunk comes after one window of each stage instead of after the whole file. Each
stage draws from its own random generator (seeded from `seed`), so the order in which the
stages run does not change what they sample: the streamed chunks, concatenated, are the
non-streamed output (up to float rounding at chunk seams; exact codes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np
import torch

from soundlm.audio_tokenizer import AudioTokenizer
from soundlm.devices import default_device
from soundlm.lm.quantize import quantize_lm, quantized_mode, resolve_quantize
from soundlm.sampler import SamplingParams
from soundlm.stages import Stage, delay_prefix, load_stage, write_stage_files

if TYPE_CHECKING:
    from soundlm.codec.base import AcousticTokenizer
    from soundlm.semantic.base import SemanticTokenizer

BUNDLE_PARTS = ("semantic", "coarse", "fine")
SEMANTIC_TOKENIZER_DIR = "semantic_tokenizer"
CODEC_DIR = "codec"


@dataclass
class AudioLMSampling:
    """Sampling per stage; the defaults are AudioLM's temperatures (0.6 / 0.8 / 0.6).

    `context` is the fraction of a stage's training window kept as context each time
    generation slides past the window (the rest of the window is generated). Keeping more
    keeps the prompt in view for longer, at the cost of more, shorter windows.
    """

    semantic: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.6, top_p=0.95))
    coarse: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.8, top_p=0.95))
    fine: SamplingParams = field(default_factory=lambda: SamplingParams(temperature=0.6, top_p=0.95))
    context: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.context < 1.0:
            raise ValueError(f"context must be a fraction of the window in (0, 1), got {self.context}")

    def keep(self, window: int) -> int:
        """Context frames kept in a window of `window` frames (at least 1, at most window - 1)."""
        return min(max(int(round(self.context * window)), 1), window - 1)


def context_windows(have: int, total: int, window: int, keep: int) -> Iterator[tuple[int, int]]:
    """Plan windowed generation in frames: yields (context_start, new_frames) until `total`.

    Frames [context_start, have) are the context of a window and `new_frames` follow them;
    context + new never exceeds `window`. While much remains, the context is `keep` frames
    (or all there is); near the end it grows so the last window is as full as possible.
    """
    if not 0 < keep < window:
        raise ValueError(f"need 0 < keep < window, got keep={keep}, window={window}")
    while have < total:
        remaining = total - have
        context = min(have, max(keep, window - remaining))
        new = min(remaining, window - context)
        yield have - context, new
        have += new


def _frames(seconds: float, rate: float) -> int:
    """Frames needed to cover `seconds` (ceil, tolerant to float error)."""
    return int(math.ceil(seconds * rate - 1e-6))


def stage_generators(seed: int, device: torch.device | str = "cpu") -> tuple[torch.Generator, ...]:
    """One random generator per stage (semantic, coarse, fine), all derived from `seed`.

    Separate streams let streaming interleave the stages without changing any stage's draws.
    """
    states = np.random.SeedSequence(seed).generate_state(len(BUNDLE_PARTS), dtype=np.uint64)
    # manual_seed takes a signed 64-bit range; keep 63 bits of each derived seed.
    return tuple(torch.Generator(device=device).manual_seed(int(x) >> 1) for x in states)


class _Growing:
    """A stage's output [..., T] as its windows run: `upto(n)` runs windows until it has n frames (or all)."""

    def __init__(self, value: torch.Tensor, windows: Iterator[torch.Tensor] | None = None):
        self.value = value
        self._windows = windows

    def upto(self, frames: float) -> torch.Tensor:
        while self._windows is not None and self.value.shape[-1] < frames:
            nxt = next(self._windows, None)
            if nxt is None:
                self._windows = None
                break
            self.value = nxt
        return self.value

    def all(self) -> torch.Tensor:
        return self.upto(math.inf)


@dataclass
class AudioChunk:
    """A piece of streamed audio: [B, C, S] samples starting at sample `start` of the whole output."""

    audio: np.ndarray
    start: int


class AudioLMPipeline:
    """Semantic tokenizer + codec + the three stage LMs (AudioLM, Borsos et al. 2022)."""

    def __init__(self, semantic_tokenizer: SemanticTokenizer, codec: AcousticTokenizer, semantic: Stage, coarse: Stage,
                 fine: Stage, device: torch.device | str | None = None):
        self.device = default_device(device)
        self.semantic_tokenizer = semantic_tokenizer
        self.codec = codec
        self.semantic, self.coarse, self.fine = semantic, coarse, fine
        for part in (semantic, coarse, fine):
            part.model.to(self.device).eval()
        self.num_coarse = coarse.meta.coarse_codebooks
        self.num_codebooks = fine.layout.num_codebooks
        self._check_compatible()
        self.codec.set_num_codebooks(self.num_codebooks)
        # The prompt's path to tokens: the same one `soundlm tokenize` takes.
        self.audio_tokenizer = AudioTokenizer(semantic_tokenizer, codec, self.device, probe=False)

    # ---- loading -----------------------------------------------------------------------
    @classmethod
    def from_runs(cls, semantic_run: str | Path, coarse_run: str | Path, fine_run: str | Path,
                  semantic_tokenizer: str | Path | None = None, codec: str | Path | None = None,
                  device: torch.device | str | None = None) -> "AudioLMPipeline":
        """Load the three stages from run (or final) folders.

        The tokenizers default to the ones named in the stages' token store manifest.
        """
        device = default_device(device)
        stages = [load_stage(p, name, device) for p, name in zip((semantic_run, coarse_run, fine_run), BUNDLE_PARTS)]
        trained_on = stages[1].meta.tokenizers
        sem = _load_semantic_tokenizer(semantic_tokenizer or (trained_on and trained_on.semantic_spec),
                                       stages[0].folder, device)
        ac = _load_codec(codec or (trained_on and trained_on.acoustic_spec), stages[1].folder, device)
        return cls(sem, ac, *stages, device=device)

    @classmethod
    def from_bundle(cls, folder: str | Path, device: torch.device | str | None = None) -> "AudioLMPipeline":
        """Load a bundle folder: semantic/ coarse/ fine/ (+ semantic_tokenizer/ and codec/ when present)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such model folder; pass a folder written by "
                                    "AudioLMPipeline.save_bundle or use --semantic-run/--coarse-run/--fine-run")
        missing = [p for p in BUNDLE_PARTS if not (folder / p).is_dir()]
        if missing:
            raise FileNotFoundError(f"{folder}: a model folder needs subfolders {list(BUNDLE_PARTS)}, missing "
                                    f"{missing}")
        sem = folder / SEMANTIC_TOKENIZER_DIR
        ac = folder / CODEC_DIR
        return cls.from_runs(*(folder / p for p in BUNDLE_PARTS), semantic_tokenizer=sem if sem.is_dir() else None,
                             codec=ac if ac.is_dir() else None, device=device)

    def save_bundle(self, folder: str | Path) -> Path:
        """Write one folder holding all parts (stage models, semantic tokenizer, codec)."""
        from soundlm.fileio import atomic_dir

        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            for part in (self.semantic, self.coarse, self.fine):
                (tmp / part.name).mkdir()
                write_stage_files(part.model, tmp / part.name, part.meta, part.layout)
            self.semantic_tokenizer.save(tmp / SEMANTIC_TOKENIZER_DIR)
            if hasattr(self.codec, "save_pretrained"):
                self.codec.save_pretrained(tmp / CODEC_DIR)
        return folder

    def _check_compatible(self) -> None:
        sem, coarse, fine = self.semantic, self.coarse, self.fine
        checks = [
            (sem.layout.semantic_size == coarse.layout.semantic_size,
             f"semantic LM has {sem.layout.semantic_size} semantic ids, coarse LM {coarse.layout.semantic_size}"),
            (int(self.semantic_tokenizer.vocab_size) == sem.layout.semantic_size,
             f"semantic tokenizer has {self.semantic_tokenizer.vocab_size} ids, the LMs {sem.layout.semantic_size}"),
            (coarse.layout.num_codebooks == self.num_coarse and fine.meta.coarse_codebooks == self.num_coarse,
             f"coarse LM models {coarse.layout.num_codebooks} codebooks, fine LM expects {fine.meta.coarse_codebooks}"),
            (self.num_codebooks > self.num_coarse, f"fine LM has no codebooks beyond the {self.num_coarse} coarse ones"),
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
        for part in (self.semantic, self.coarse, self.fine):
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

    def stream_continue(self, prompt: str | Path | np.ndarray, seconds: float, num_samples: int = 1,
                        sampling: AudioLMSampling | None = None, seed: int = 0, prompt_sample_rate: int | None = None,
                        include_prompt: bool = True, progress: bool = False, acoustic_prompt: bool = True,
                        prompt_source: str | Path | None = None,
                        decode_context: float = 0.32) -> Iterator[AudioChunk]:
        """`continue_audio`, yielded in chunks [B, C, S_i] as the stages produce frames.

        The chunks, concatenated along time, are `np.stack(continue_audio(...))` with the same
        arguments: the same codes, decoded chunk by chunk with `decode_context` seconds of codes on
        either side (exact up to float rounding for a codec whose decoder sees no further; the
        shipped iSTFT codec sees about 0.31 s). The first chunk arrives after the first window of
        each stage has run.
        """
        plan = self._continuation(prompt, seconds, prompt_sample_rate, prompt_source, acoustic_prompt, include_prompt)
        yield from self._stream(*plan.tokens, plan.seconds, num_samples, sampling, seed, progress,
                                plan.first_sample, plan.total_samples, decode_context)

    def stream_generate(self, seconds: float, num_samples: int = 1, sampling: AudioLMSampling | None = None,
                        seed: int = 0, progress: bool = False, decode_context: float = 0.32) -> Iterator[AudioChunk]:
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

    def _codes(self, semantic: torch.Tensor, codes: torch.Tensor, seconds: float, num_samples: int,
               sampling: AudioLMSampling | None, seed: int, progress: bool) -> tuple[_Growing, int]:
        """Prompt tokens (possibly empty) -> all codes [B, K, T] as they grow window by window, and T."""
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        sampling = sampling or AudioLMSampling()
        gens = stage_generators(seed, self.device)
        sem_rate, ac_rate = self.semantic.meta.semantic_rate, float(self.codec.frame_rate)
        n_sem, n_ac = _frames(seconds, sem_rate), _frames(seconds, ac_rate)
        semantic = semantic.expand(num_samples, -1)  # [B, T_s]
        codes = codes.expand(num_samples, -1, -1)  # [B, K, T_a]
        qc = self.num_coarse
        sem = _Growing(semantic, self._semantic_windows(semantic, n_sem, sampling, gens[0], progress))
        coarse = _Growing(codes[:, :qc], self._coarse_windows(sem, codes[:, :qc], n_ac, sampling, gens[1], progress))
        full = _Growing(codes[:, :, :min(codes.shape[2], n_ac)],
                        self._fine_windows(coarse, n_ac, codes[:, qc:], sampling, gens[2], progress))
        return full, n_ac

    def _run(self, semantic: torch.Tensor, codes: torch.Tensor, seconds: float, num_samples: int,
             sampling: AudioLMSampling | None, seed: int, progress: bool) -> torch.Tensor:
        """Prompt tokens (possibly empty) -> decoded audio [B, C, S] covering `seconds` in total."""
        full, _ = self._codes(semantic, codes, seconds, num_samples, sampling, seed, progress)
        with torch.inference_mode():
            return self.codec.decode(full.all()).float()  # [B, C, S]

    def _stream(self, semantic: torch.Tensor, codes: torch.Tensor, seconds: float, num_samples: int,
                sampling: AudioLMSampling | None, seed: int, progress: bool, first_sample: int, total_samples: int,
                decode_context: float) -> Iterator[AudioChunk]:
        """The samples first_sample..total_samples-1 of `_run`'s output (fit to total_samples), in chunks."""
        if decode_context < 0:
            raise ValueError(f"decode_context must be >= 0 seconds, got {decode_context}")
        full, n_frames = self._codes(semantic, codes, seconds, num_samples, sampling, seed, progress)
        hop = int(round(self.codec.sample_rate / self.codec.frame_rate))
        context = _frames(decode_context, float(self.codec.frame_rate))
        done = first_sample  # samples yielded so far (absolute)
        have, exhausted = full.value.shape[-1], False
        while done < total_samples:
            final = exhausted or have >= n_frames
            # Samples that no code still to come can change: all at the end, else up to `context` frames back.
            end = total_samples if final else min(max(have - context, 0) * hop, total_samples)
            if end <= done:
                grown = full.upto(have + 1).shape[-1]  # run the next window (and what it needs upstream)
                exhausted, have = grown == have, grown
                continue
            f0 = max(0, done // hop - context)
            f1 = min(have, -(-end // hop) + context)
            with torch.inference_mode():
                audio = self.codec.decode(full.value[:, :, f0:f1]).float()  # [B, C, (f1-f0)*hop]
            piece = audio[:, :, done - f0 * hop: end - f0 * hop]
            if piece.shape[-1] < end - done:  # the codec's output ends early: zero-fill like _fit_length
                piece = torch.nn.functional.pad(piece, (0, end - done - piece.shape[-1]))
            yield AudioChunk(piece.cpu().numpy(), done)
            done = end

    def acoustic_codes(self, semantic: torch.Tensor, codes: torch.Tensor, frames: int,
                       sampling: AudioLMSampling | None = None, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
        """Given semantic ids [1, T_s], the coarse and fine stages -> codec codes [1, K, frames].

        codes [1, K, T_p]: an acoustic prompt (the codes of the audio the first semantic ids
        came from; T_p = 0 for none), kept as the first T_p frames of the result. This is
        AudioLM's acoustic generation alone, without the semantic stage (TTS output rendering,
        the acoustic-generation test on ground-truth semantic ids). One generator drives both stages.
        """
        sampling = sampling or AudioLMSampling()
        gen = generator if generator is not None else torch.Generator(device=self.device).manual_seed(0)
        coarse = self._coarse_stage(semantic, codes[:, : self.num_coarse], frames, sampling, gen, False)
        return self._fine_stage(coarse, codes[:, self.num_coarse:], sampling, gen, False)  # [1, K, frames]

    def _semantic_stage(self, semantic: torch.Tensor, total: int, sampling: AudioLMSampling,
                        gen: torch.Generator, progress: bool) -> torch.Tensor:
        """Extend semantic ids [B, T0] to [B, total] window by window."""
        return _Growing(semantic, self._semantic_windows(semantic, total, sampling, gen, progress)).all()

    def _coarse_stage(self, semantic: torch.Tensor, coarse: torch.Tensor, total: int, sampling: AudioLMSampling,
                      gen: torch.Generator, progress: bool) -> torch.Tensor:
        """Extend coarse codes [B, Qc, T0] to [B, Qc, total], conditioned on the semantic ids of each window."""
        windows = self._coarse_windows(_Growing(semantic), coarse, total, sampling, gen, progress)
        return _Growing(coarse, windows).all()

    def _fine_stage(self, coarse: torch.Tensor, fine: torch.Tensor, sampling: AudioLMSampling,
                    gen: torch.Generator, progress: bool) -> torch.Tensor:
        """Fine codes for every frame of coarse [B, Qc, T] (prompt frames' fine codes given) -> [B, K, T]."""
        qf = self.num_codebooks - self.num_coarse
        known = torch.cat([coarse[:, :, :fine.shape[2]], fine[:, :qf, :coarse.shape[2]]], dim=1)
        windows = self._fine_windows(_Growing(coarse), coarse.shape[2], fine, sampling, gen, progress)
        return _Growing(known, windows).all()

    def _semantic_windows(self, semantic: torch.Tensor, total: int, sampling: AudioLMSampling,
                          gen: torch.Generator, progress: bool) -> Iterator[torch.Tensor]:
        """Semantic ids [B, T0] extended window by window; yields the ids so far after each window."""
        from soundlm.lm.generate import generate

        stage, layout = self.semantic, self.semantic.layout
        window = max(2, int(stage.window_seconds * stage.meta.semantic_rate))
        allowed = layout.range_of("semantic")
        params = sampling.semantic
        for start, new in context_windows(semantic.shape[1], total, window, sampling.keep(window)):
            context = semantic[:, start:]
            prompt = torch.cat([_fill(context.shape[0], layout.bos_id, self.device),
                                layout.semantic_to_global(context)], dim=1)  # [B, 1 + ctx]
            out = generate(stage.model, prompt, new, params, allowed_fn=lambda pos: allowed, generator=gen,
                           progress=progress)
            semantic = torch.cat([semantic, layout.global_to_semantic(out[:, prompt.shape[1]:])], dim=1)
            yield semantic

    def _coarse_windows(self, semantic: _Growing, coarse: torch.Tensor, total: int, sampling: AudioLMSampling,
                        gen: torch.Generator, progress: bool) -> Iterator[torch.Tensor]:
        """Coarse codes [B, Qc, T0] extended window by window; yields the codes so far after each window.

        Each window is conditioned on the semantic ids of its whole span (run as far as needed).
        """
        from soundlm import patterns
        from soundlm.lm.generate import generate, generate_delayed

        stage, layout, qc = self.coarse, self.coarse.layout, self.num_coarse
        sem_rate, ac_rate = stage.meta.semantic_rate, stage.meta.acoustic_rate
        window = max(2, int(stage.window_seconds * ac_rate))
        sem_window = int(round(stage.window_seconds * sem_rate))
        params = sampling.coarse
        for start, new in context_windows(coarse.shape[2], total, window, sampling.keep(window)):
            # Training crops start on a semantic frame boundary; move the window start onto one.
            s0 = int(math.ceil(start * sem_rate / ac_rate - 1e-6))
            # Moving it later only shortens the context, so context + new still fits the window.
            start = min(int(math.floor(s0 * ac_rate / sem_rate + 1e-6)), coarse.shape[2])
            ids = semantic.upto(s0 + sem_window)[:, s0: s0 + sem_window]
            if stage.delayed:
                out = generate_delayed(stage.model, coarse[:, :, start:], new, params, generator=gen,
                                       prefix=ids, progress=progress)
                coarse = torch.cat([coarse, out[:, :, -new:]], dim=2)
                yield coarse
                continue
            seq = patterns.coarse_sequence(ids, coarse[:, :, start:], layout, eos=False)
            allowed = patterns.acoustic_allowed_fn(layout, seq.prefix_len, qc)
            out = generate(stage.model, seq.tokens, new * qc, params, allowed_fn=allowed, generator=gen,
                           progress=progress)
            fresh = patterns.unflatten_frames(out[:, seq.tokens.shape[1]:], layout, qc)  # [B, Qc, new]
            coarse = torch.cat([coarse, fresh], dim=2)
            yield coarse

    def _fine_windows(self, coarse: _Growing, total: int, fine: torch.Tensor, sampling: AudioLMSampling,
                      gen: torch.Generator, progress: bool) -> Iterator[torch.Tensor]:
        """All codes [B, K, T] for T up to `total` coarse frames, window by window (prompt frames' fine
        codes given); yields the codes so far after each window."""
        from soundlm import patterns
        from soundlm.lm.generate import generate, generate_delayed

        stage, layout, qc = self.fine, self.fine.layout, self.num_coarse
        qf = self.num_codebooks - qc
        window = max(2, int(stage.window_seconds * stage.meta.acoustic_rate))
        fine = fine[:, :qf, :total]
        params = sampling.fine
        for start, new in context_windows(fine.shape[2], total, window, sampling.keep(window)):
            end = fine.shape[2] + new
            span = coarse.upto(end)[:, :, start:end]  # [B, Qc, end-start]
            if stage.delayed:
                prefix = delay_prefix("fine", semantic=None, coarse=span, codebook_size=layout.codebook_size)
                out = generate_delayed(stage.model, fine[:, :, start:], new, params, generator=gen, prefix=prefix,
                                       progress=progress)
                fine = torch.cat([fine, out[:, :, -new:]], dim=2)
            else:
                # BOS coarse(start:end) SEP, then the fine codes already known in this window as context.
                prefix = patterns.fine_sequence(span, None, layout)
                known = patterns.flatten_frames(fine[:, :, start:], layout, first_level=qc)  # [B, ctx*Qf]
                tokens = torch.cat([prefix.tokens, known], dim=1)
                allowed = patterns.acoustic_allowed_fn(layout, prefix.prefix_len, qf, first_level=qc)
                out = generate(stage.model, tokens, new * qf, params, allowed_fn=allowed, generator=gen,
                               progress=progress)
                fresh = patterns.unflatten_frames(out[:, tokens.shape[1]:], layout, qf, first_level=qc)  # [B, Qf, new]
                fine = torch.cat([fine, fresh], dim=2)
            yield torch.cat([coarse.value[:, :, :end], fine], dim=1)


@dataclass
class _Plan:
    """A continuation's prompt tokens, total seconds covered and the output's sample range."""

    tokens: tuple[torch.Tensor, torch.Tensor]  # semantic [1, T_s], codes [1, K, T_a]
    seconds: float
    first_sample: int
    total_samples: int


def _fill(batch: int, value: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch, 1), value, dtype=torch.long, device=device)


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
