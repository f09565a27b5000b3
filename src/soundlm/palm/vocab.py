"""AudioPaLM's combined vocabulary: a text LM's ids, then task tags and audio ids.

Layout of the global id space (the text block keeps the text LM's ids unchanged, so its
embedding and output rows can be reused as they are):

    [text ids 0 .. text_size)  [PAD BOS EOS SEP + task tags]  [semantic ids]  [codebook 0] ... [codebook K-1]

Everything after the text block is a `soundlm.vocab.VocabLayout` shifted by `text_size`,
so the audio streams follow the same layout as the AudioLM stages. `text_size` is the
number of rows of the text LM's embedding table (which may exceed `len(tokenizer)`, e.g.
GPT-2 pads its table), not the tokenizer's length.

Task tags (AudioPaLM writes "[ASR English]"; we use language codes):
    [ASR en]  [TTS en]  [AST en->fr]  [S2ST en->fr]  [ASR AST en->fr]  [CONTINUE]

`PalmTokenizer` pairs the layout with the Hugging Face text tokenizer and saves both into
a folder (`palm_vocab.json` + `text_tokenizer/`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch

from soundlm.fileio import atomic_dir, read_json, write_json_atomic
from soundlm.vocab import VocabLayout

VOCAB_NAME = "palm_vocab.json"
TEXT_TOKENIZER_DIR = "text_tokenizer"
FORMAT_VERSION = 1

TASKS = ("asr", "tts", "ast", "s2st", "asr_ast", "continue")
CONTINUE_TAG = "[CONTINUE]"


def asr_tag(language: str) -> str:
    return f"[ASR {language}]"


def tts_tag(language: str) -> str:
    return f"[TTS {language}]"


def ast_tag(source: str, target: str) -> str:
    return f"[AST {source}->{target}]"


def s2st_tag(source: str, target: str) -> str:
    return f"[S2ST {source}->{target}]"


def asr_ast_tag(source: str, target: str) -> str:
    """Multi-step: transcribe, then translate the transcript (AudioPaLM's "[ASR AST ...]")."""
    return f"[ASR AST {source}->{target}]"


def task_tag(task: str, source: str | None, target: str | None = None) -> str:
    """The tag of one task; `source`/`target` are language codes (None for `continue`)."""
    if task == "continue":
        return CONTINUE_TAG
    if source is None:
        raise ValueError(f"task {task!r} needs a source language (e.g. 'en')")
    if task in ("asr", "tts"):
        return asr_tag(source) if task == "asr" else tts_tag(source)
    if task in ("ast", "s2st", "asr_ast"):
        if target is None or target == source:
            raise ValueError(f"task {task!r} needs a target language different from the source {source!r}, "
                             f"got {target!r}")
        return {"ast": ast_tag, "s2st": s2st_tag, "asr_ast": asr_ast_tag}[task](source, target)
    raise ValueError(f"unknown task {task!r}; choose from {list(TASKS)}")


def task_tags(languages: Sequence[str]) -> tuple[str, ...]:
    """Every tag for these languages, in a fixed order (the order fixes the tag ids)."""
    langs = list(dict.fromkeys(languages))
    if not langs:
        raise ValueError("task_tags needs at least one language code, e.g. ['en', 'fr']")
    tags = [asr_tag(x) for x in langs] + [tts_tag(x) for x in langs]
    for a, b in itertools.permutations(langs, 2):
        tags += [ast_tag(a, b), s2st_tag(a, b), asr_ast_tag(a, b)]
    return (*tags, CONTINUE_TAG)


@dataclass(frozen=True)
class PalmVocab:
    """Where text, tags, semantic and acoustic ids live in one id space."""

    text_size: int
    audio: VocabLayout
    languages: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.text_size, int) or self.text_size <= 0:
            raise ValueError(f"text_size must be a positive int (rows of the text LM's embeddings), "
                             f"got {self.text_size!r}")
        object.__setattr__(self, "languages", tuple(self.languages))

    @classmethod
    def build(cls, text_size: int, languages: Sequence[str], semantic_size: int, codebook_size: int = 0,
              num_codebooks: int = 0) -> "PalmVocab":
        """A vocabulary with every task tag for `languages`."""
        if semantic_size <= 0:
            raise ValueError(f"semantic_size must be > 0 (the semantic tokenizer's clusters), got {semantic_size}")
        layout = VocabLayout(semantic_size=semantic_size, codebook_size=codebook_size, num_codebooks=num_codebooks,
                             task_tokens=task_tags(languages))
        return cls(text_size=text_size, audio=layout, languages=tuple(dict.fromkeys(languages)))

    # ---- sizes and ids ---------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return self.text_size + self.audio.vocab_size

    @property
    def num_new_tokens(self) -> int:
        """Rows appended to the text LM's embedding table."""
        return self.audio.vocab_size

    @property
    def pad_id(self) -> int:
        return self.text_size + self.audio.pad_id

    @property
    def bos_id(self) -> int:
        return self.text_size + self.audio.bos_id

    @property
    def eos_id(self) -> int:
        return self.text_size + self.audio.eos_id

    @property
    def sep_id(self) -> int:
        return self.text_size + self.audio.sep_id

    def tag_id(self, tag: str) -> int:
        if tag not in self.audio.task_tokens:
            raise ValueError(f"unknown task tag {tag!r}; this vocabulary was built for languages "
                             f"{list(self.languages)} (tags like {list(self.audio.task_tokens[:3])})")
        return self.text_size + self.audio.special(tag)

    def range_of(self, stream: str) -> tuple[int, int]:
        """Half-open global range [lo, hi): "text", or any stream of `VocabLayout.range_of`."""
        if stream == "text":
            return 0, self.text_size
        lo, hi = self.audio.range_of(stream)
        return lo + self.text_size, hi + self.text_size

    def output_mask(self, stream: str, device: torch.device | str = "cpu") -> torch.Tensor:
        """bool [V]: the ids a task may emit when its output is `stream` ("text" or "semantic"), plus EOS and SEP.

        SEP is allowed in text outputs because multi-step tasks separate their steps with it.
        """
        mask = torch.zeros(self.vocab_size, dtype=torch.bool, device=device)
        lo, hi = self.range_of(stream)
        mask[lo:hi] = True
        mask[self.eos_id] = True
        if stream == "text":
            mask[self.sep_id] = True
        return mask

    def semantic_to_global(self, ids: torch.Tensor) -> torch.Tensor:
        """Semantic ids (any shape) -> global ids."""
        return self.audio.semantic_to_global(ids) + self.text_size

    def global_to_semantic(self, ids: torch.Tensor) -> torch.Tensor:
        return self.audio.global_to_semantic(ids.long() - self.text_size)

    def acoustic_to_global(self, codes: torch.Tensor, first_level: int = 0) -> torch.Tensor:
        """Codes [K, T] or [B, K, T] -> global ids, same shape."""
        return self.audio.acoustic_to_global(codes, first_level) + self.text_size

    def global_to_acoustic(self, ids: torch.Tensor, first_level: int = 0) -> torch.Tensor:
        return self.audio.global_to_acoustic(ids.long() - self.text_size, first_level)

    # ---- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "text_size": self.text_size, "languages": list(self.languages),
                "audio": self.audio.to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "PalmVocab":
        version = int(d.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise ValueError(f"palm vocabulary format {version} is newer than this soundlm reads ({FORMAT_VERSION}); "
                             "upgrade soundlm")
        return cls(text_size=int(d["text_size"]), audio=VocabLayout.from_dict(d["audio"]),
                   languages=tuple(d["languages"]))


def load_text_tokenizer(spec: str | Path) -> Any:
    """A Hugging Face tokenizer from a hub id or a local folder (AutoTokenizer)."""
    from transformers import AutoTokenizer

    path = Path(spec)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{spec}: a text tokenizer is a folder (save_pretrained) or a hub id, not a file")
    try:
        return AutoTokenizer.from_pretrained(str(spec))
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"{spec}: cannot load a text tokenizer ({e}); pass a folder written by "
                                "tokenizer.save_pretrained (e.g. by `soundlm train textlm`) or a hub id") from None


def train_text_tokenizer(texts: Iterable[str], vocab_size: int = 2000) -> Any:
    """A byte-level BPE tokenizer trained on `texts` (any script; no unknown tokens), as a HF fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<s>", "</s>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>")


class PalmTokenizer:
    """Text tokenizer + combined vocabulary: strings and audio ids <-> global ids."""

    def __init__(self, vocab: PalmVocab, text_tokenizer: Any):
        if len(text_tokenizer) > vocab.text_size:
            raise ValueError(f"the text tokenizer has {len(text_tokenizer)} ids but the text block has only "
                             f"{vocab.text_size}; build the vocabulary with text_size >= len(tokenizer)")
        self.vocab = vocab
        self.text_tokenizer = text_tokenizer

    def encode_text(self, text: str) -> list[int]:
        """Text -> text ids (no BOS/EOS of the text tokenizer: the task format adds its own)."""
        return list(self.text_tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode_text(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Text ids -> string; ids outside the text block (tags, audio, SEP) are dropped."""
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        text_ids = [i for i in ids if 0 <= i < self.vocab.text_size]
        return self.text_tokenizer.decode(text_ids, skip_special_tokens=True).strip()

    def save(self, folder: str | Path) -> Path:
        """Write `palm_vocab.json` and `text_tokenizer/` into `folder` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_dir(folder / TEXT_TOKENIZER_DIR) as tmp:
            self.text_tokenizer.save_pretrained(str(tmp))
        write_json_atomic(folder / VOCAB_NAME, self.vocab.to_dict())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "PalmTokenizer":
        folder = Path(folder)
        if not (folder / VOCAB_NAME).is_file():
            raise FileNotFoundError(f"{folder}: no {VOCAB_NAME}; pass a palm model folder (RUN/final or a "
                                    "checkpoint) written by `soundlm train palm`")
        if not (folder / TEXT_TOKENIZER_DIR).is_dir():
            raise FileNotFoundError(f"{folder}: no {TEXT_TOKENIZER_DIR}/ folder; the model folder is incomplete, "
                                    "re-export it with `soundlm train palm`")
        return cls(PalmVocab.from_dict(read_json(folder / VOCAB_NAME)), load_text_tokenizer(folder / TEXT_TOKENIZER_DIR))
