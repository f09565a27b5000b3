"""Inference with a trained palm model: ASR, AST, S2ST, TTS and multi-step translation.

Each task feeds `BOS [TAG] source SEP` and decodes until EOS with constrained decoding
(text tasks may emit only text ids, speech tasks only semantic ids), through the shared
KV-cache decoder and sampler (`soundlm.lm.generate`). Speech outputs are semantic ids;
`semantic_to_audio` turns them into a waveform with the AudioLM coarse and fine stages
and the codec of an AudioLM bundle (`soundlm.pipeline`), keeping the source speaker's
voice when given a voice prompt (AudioPaLM's S2ST voice transfer: the acoustic stage
continues the source speaker's codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from soundlm.palm.model import PalmModel
from soundlm.palm.tasks import TaskExample, prompt_ids
from soundlm.sampler import SamplingParams

if TYPE_CHECKING:
    from soundlm.pipeline import AudioLMPipeline

GREEDY = SamplingParams(temperature=0.0)


@dataclass
class TaskOutput:
    tokens: list[int]  # generated global ids, EOS excluded
    text: str | None = None  # text tasks: the decoded answer (multi-step: the last step)
    steps: list[str] | None = None  # multi-step: the text of each step (transcript, translation)
    semantic: np.ndarray | None = None  # speech tasks: semantic ids [T]


def run_task(palm: PalmModel, example: TaskExample, max_new_tokens: int = 256, sampling: SamplingParams = GREEDY,
             seed: int = 0) -> TaskOutput:
    """Answer one example (its target fields are ignored)."""
    from soundlm.lm.generate import generate
    from soundlm.lm.model import TokenLM

    vocab = palm.vocab
    device = next(palm.model.parameters()).device
    prompt = torch.tensor([prompt_ids(example, palm.tokenizer)], dtype=torch.long, device=device)  # [1, T0]
    stream = example.output_stream
    allowed = vocab.output_mask(stream, device)  # [V]
    if example.task != "asr_ast":
        allowed[vocab.sep_id] = False
    room = int(getattr(palm.model.config, "max_position_embeddings", prompt.shape[1] + max_new_tokens))
    max_new = max(0, min(max_new_tokens, room - prompt.shape[1]))
    if max_new == 0:
        raise ValueError(f"the prompt has {prompt.shape[1]} tokens, the model's limit is {room}; use shorter audio")
    lm = TokenLM(palm.model)
    gen = torch.Generator(device=device).manual_seed(seed)
    out = generate(lm, prompt, max_new, sampling, allowed_fn=lambda pos: allowed, generator=gen,
                   eos_id=vocab.eos_id, pad_id=vocab.pad_id)
    new = out[0, prompt.shape[1]:].tolist()
    if vocab.eos_id in new:
        new = new[: new.index(vocab.eos_id)]
    if stream == "semantic":
        return TaskOutput(tokens=new, semantic=vocab.global_to_semantic(torch.tensor(new, dtype=torch.long)).numpy())
    parts: list[list[int]] = [[]]
    for t in new:
        if t == vocab.sep_id:
            parts.append([])
        else:
            parts[-1].append(t)
    steps = [palm.tokenizer.decode_text(p) for p in parts]
    return TaskOutput(tokens=new, text=steps[-1], steps=steps)


def transcribe(palm: PalmModel, semantic: np.ndarray, language: str, **kw) -> str:
    """ASR: semantic ids [T] -> transcript."""
    return run_task(palm, TaskExample("asr", "asr", language, source_semantic=semantic), **kw).text or ""


def translate(palm: PalmModel, semantic: np.ndarray, source: str, target: str, speech: bool = False,
              multi_step: bool = False, **kw) -> TaskOutput:
    """AST (text out), S2ST (`speech=True`: semantic ids out) or ASR-then-AST (`multi_step=True`)."""
    if speech and multi_step:
        raise ValueError("choose speech output (S2ST) or the multi-step text translation, not both")
    task = "s2st" if speech else ("asr_ast" if multi_step else "ast")
    return run_task(palm, TaskExample(task, task, source, target, source_semantic=semantic), **kw)


def synthesize(palm: PalmModel, text: str, language: str, **kw) -> np.ndarray:
    """TTS: text -> semantic ids [T] (turn them into audio with `semantic_to_audio`)."""
    out = run_task(palm, TaskExample("tts", "tts", language, source_text=text), **kw)
    if out.semantic is None or len(out.semantic) == 0:
        raise ValueError("the model produced no semantic ids for this text (it emitted EOS at once); "
                         "train longer or check the language tag")
    return out.semantic


def encode_audio(palm: PalmModel, path: str | Path, semantic_tokenizer: str | Path | None = None) -> np.ndarray:
    """A wav file -> semantic ids [T] with the tokenizer of the training store (or the one given)."""
    from soundlm.audio import info, load_audio
    from soundlm.audio_tokenizer import AudioTokenizer
    from soundlm.semantic import load_semantic_tokenizer

    spec = semantic_tokenizer or palm.meta.get("semantic_spec")
    if not spec:
        raise ValueError("this palm model does not name its semantic tokenizer; pass --semantic-tokenizer FOLDER")
    # The path `soundlm tokenize` took for the training store, so the ids match what the model learned.
    tokenizer = AudioTokenizer(load_semantic_tokenizer(spec), None)
    tokens = tokenizer.encode(load_audio(path, sample_rate=None, mono=False), info(path).sample_rate, path)
    return tokens.semantic


def semantic_to_audio(semantic: np.ndarray, audiolm: "str | Path | AudioLMPipeline | None",
                      voice_prompt: str | Path | None = None, seed: int = 0) -> tuple[np.ndarray, int]:
    """Semantic ids [T] -> (waveform [C, S], sample rate) through an AudioLM bundle's coarse/fine stages.

    audiolm: a bundle folder, or an already loaded AudioLMPipeline (callers rendering many
    outputs load it once: loading the codec and three LMs costs more than a short render).
    voice_prompt: a wav of the speaker to keep; its codes are the acoustic prompt the coarse
    stage continues (its part is cut from the result).
    """
    if audiolm is None:
        raise ValueError("speech output needs the AudioLM acoustic stages: pass --audiolm BUNDLE, a folder written by "
                         "AudioLMPipeline.save_bundle holding semantic/, coarse/ and fine/ run folders (trained with "
                         "`soundlm train lm --stage coarse|fine` on the same token store) plus the codec; or use "
                         "--out-tokens to save the semantic ids")
    from soundlm.pipeline import AudioLMPipeline, AudioLMSampling

    pipe = audiolm if isinstance(audiolm, AudioLMPipeline) else AudioLMPipeline.from_bundle(audiolm)
    dev = pipe.device
    params = AudioLMSampling()
    gen = torch.Generator(device=dev).manual_seed(seed)
    target = torch.as_tensor(np.asarray(semantic), dtype=torch.long, device=dev)[None]  # [1, T]
    size = pipe.semantic.layout.semantic_size
    if target.numel() == 0 or int(target.min()) < 0 or int(target.max()) >= size:
        raise ValueError(f"semantic ids must be a non-empty sequence in [0, {size}) for this AudioLM bundle, got "
                         f"{target.numel()} ids in [{int(target.min()) if target.numel() else '-'}, "
                         f"{int(target.max()) if target.numel() else '-'}]; use a bundle trained on the palm "
                         "model's token store (same semantic tokenizer)")
    sem_rate, ac_rate = float(pipe.semantic_tokenizer.frame_rate), float(pipe.codec.frame_rate)
    new_frames = max(1, int(round(target.shape[1] / sem_rate * ac_rate)))
    hop = pipe.codec.sample_rate / ac_rate
    if voice_prompt is not None:
        # Whole codec frames, as AudioLM continuation cuts its prompt: the target starts on a frame boundary.
        prompt_sem, codes = pipe.tokenize_prompt(voice_prompt)  # [1, T_s], [1, K, T_a]
    else:
        prompt_sem = torch.zeros(1, 0, dtype=torch.long, device=dev)
        codes = torch.zeros(1, pipe.num_codebooks, 0, dtype=torch.long, device=dev)
    semantic_all = torch.cat([prompt_sem, target], dim=1)  # [1, T_p + T]
    total = codes.shape[2] + new_frames
    # The same windowed decoding AudioLM continuation uses.
    full = pipe.acoustic_codes(semantic_all, codes, total, params, gen)  # [1, K, T_a]
    with torch.inference_mode():
        wav = pipe.codec.decode(full).float()[0].cpu().numpy()  # [C, S]
    cut = int(round(codes.shape[2] * hop))
    return wav[:, cut:], pipe.sample_rate
