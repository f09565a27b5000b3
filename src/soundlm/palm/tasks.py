"""Task examples and their token sequences (AudioPaLM's task-tag format).

Every example is one sequence over the combined vocabulary:

    BOS [TAG] <source tokens> SEP <target tokens> EOS

The source is text ids (TTS) or semantic ids (ASR, AST, S2ST, multi-step, continuation);
the target is text ids (ASR, AST), semantic ids (TTS, S2ST, continuation) or, for the
multi-step "[ASR AST]" task, the transcript, SEP, then the translation. Only the target
and its EOS carry a loss: the model learns to answer, not to reproduce the question.
Inference feeds the same prompt (through SEP) and decodes the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from soundlm.palm.vocab import PalmTokenizer, task_tag

IGNORE_INDEX = -100
TEXT_OUTPUT_TASKS = ("asr", "ast", "asr_ast")
SEMANTIC_OUTPUT_TASKS = ("tts", "s2st", "continue")


@dataclass
class TaskExample:
    """One training or evaluation example, before tokenization.

    voice_prompt: acoustic codes [K, T] of the source speaker (S2ST): the AudioLM acoustic
    stage continues them so the translated speech keeps the source voice. Not part of the
    PaLM sequence. source_path / source_speaker say where the source speech came from
    (evaluation uses them for voice prompts and speaker similarity); for speech-input tasks
    `source_text` is the source transcript (the copy baseline of translation), not model input.
    """

    task: str
    id: str
    source_language: str | None = None
    target_language: str | None = None
    source_semantic: np.ndarray | None = None  # [T_src]
    source_text: str | None = None
    target_text: str | None = None
    target_semantic: np.ndarray | None = None  # [T_tgt]
    intermediate_text: str | None = None  # multi-step: the transcript before the translation
    voice_prompt: np.ndarray | None = None  # [K, T_ac]
    source_path: str | None = None  # the source audio as stored (relative to the corpus manifest's folder)
    source_speaker: str | None = None

    @property
    def tag(self) -> str:
        return task_tag(self.task, self.source_language, self.target_language)

    @property
    def output_stream(self) -> str:
        """"text" or "semantic": what the model emits for this task."""
        return "text" if self.task in TEXT_OUTPUT_TASKS else "semantic"


@dataclass
class FormattedExample:
    tokens: torch.Tensor  # [T] int64 global ids
    labels: torch.Tensor  # [T] int64; IGNORE_INDEX outside the target (labels[t] is the target of position t-1)
    prompt_len: int  # tokens[:prompt_len] is what inference feeds (ends with SEP)


@dataclass
class Batch:
    tokens: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T] 1 = real token


def _semantic(tok: PalmTokenizer, ids: np.ndarray | None, what: str, ex_id: str) -> list[int]:
    if ids is None or len(ids) == 0:
        raise ValueError(f"example {ex_id!r}: {what} semantic ids are missing or empty")
    return tok.vocab.semantic_to_global(torch.as_tensor(np.asarray(ids), dtype=torch.long)).tolist()


def _text(tok: PalmTokenizer, text: str | None, what: str, ex_id: str) -> list[int]:
    if text is None or not text.strip():
        raise ValueError(f"example {ex_id!r}: {what} text is missing or empty")
    return tok.encode_text(text)


def prompt_ids(ex: TaskExample, tok: PalmTokenizer) -> list[int]:
    """BOS [TAG] source SEP for an example (its target fields may be empty)."""
    v = tok.vocab
    if ex.task == "tts":
        source = _text(tok, ex.source_text, "source", ex.id)
    else:
        source = _semantic(tok, ex.source_semantic, "source", ex.id)
    return [v.bos_id, v.tag_id(ex.tag), *source, v.sep_id]


def target_ids(ex: TaskExample, tok: PalmTokenizer) -> list[int]:
    """The target tokens followed by EOS."""
    v = tok.vocab
    if ex.task in ("asr", "ast"):
        target = _text(tok, ex.target_text, "target", ex.id)
    elif ex.task == "asr_ast":
        target = [*_text(tok, ex.intermediate_text, "intermediate (transcript)", ex.id), v.sep_id,
                  *_text(tok, ex.target_text, "target", ex.id)]
    elif ex.task in SEMANTIC_OUTPUT_TASKS:
        target = _semantic(tok, ex.target_semantic, "target", ex.id)
    else:
        raise ValueError(f"example {ex.id!r}: unknown task {ex.task!r}")
    return [*target, v.eos_id]


def format_example(ex: TaskExample, tok: PalmTokenizer) -> FormattedExample:
    """Token sequence and loss labels of one example (loss only on the target and EOS)."""
    prompt, target = prompt_ids(ex, tok), target_ids(ex, tok)
    tokens = torch.tensor(prompt + target, dtype=torch.long)  # [T]
    labels = tokens.clone()
    labels[: len(prompt)] = IGNORE_INDEX
    return FormattedExample(tokens=tokens, labels=labels, prompt_len=len(prompt))


def collate(examples: list[FormattedExample], pad_id: int) -> Batch:
    """Right-pad to the longest sequence; padding has no loss and is masked from attention."""
    if not examples:
        raise ValueError("collate needs at least one example")
    length = max(len(e.tokens) for e in examples)
    b = len(examples)
    tokens = torch.full((b, length), pad_id, dtype=torch.long)  # [B, T]
    labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)  # [B, T]
    mask = torch.zeros((b, length), dtype=torch.long)  # [B, T]
    for i, e in enumerate(examples):
        n = len(e.tokens)
        tokens[i, :n], labels[i, :n], mask[i, :n] = e.tokens, e.labels, 1
    return Batch(tokens=tokens, labels=labels, attention_mask=mask)
