"""A small text LM trained offline, so "text-initialised vs scratch" runs without a hub.

`train_text_lm` draws parallel sentences from `soundlm.data.text` (en, fr, de, es),
trains a byte-level BPE tokenizer on them, then a tiny Llama on `<s> sentence </s>`, and
exports a Hugging Face folder (`save_pretrained` + tokenizer) at `OUT/final/` that
`soundlm train palm --init OUT` (or `--init OUT/final`) loads like any hub model.
Rerunning the same command resumes from `OUT/checkpoints/`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from soundlm.checkpoint import check_resume_settings
from soundlm.devices import default_device
from soundlm.distributed import Processes, require_single_process
from soundlm.fileio import atomic_dir
from soundlm.palm.loop import LoopConfig, train_loop
from soundlm.palm.tasks import FormattedExample

TOKENIZER_DIR = "tokenizer"
_RESUME_MUST_MATCH = ("num_sentences", "languages", "vocab_size", "hidden_size", "num_layers", "num_heads",
                      "intermediate_size", "max_length", "seed")


@dataclass
class TextLMConfig:
    out: str
    num_sentences: int = 5000
    languages: tuple[str, ...] = ("en", "fr", "de", "es")
    vocab_size: int = 1000
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    max_positions: int = 2048
    max_length: int = 64
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    ckpt_every: int = 500
    seed: int = 0
    device: str | None = None
    progress: bool = True

    def validate(self) -> None:
        from soundlm.data.text import LANGUAGES

        bad = [x for x in self.languages if x not in LANGUAGES]
        if bad or not self.languages:
            raise ValueError(f"unknown languages {bad or self.languages}; choose from {list(LANGUAGES)}")
        if self.num_sentences <= 0 or self.vocab_size < 300:
            raise ValueError(f"num_sentences must be > 0 and vocab_size >= 300 (256 bytes + specials), got "
                             f"{self.num_sentences} and {self.vocab_size}")


@dataclass
class TextLMResult:
    folder: Path  # the exported Hugging Face folder
    step: int
    loss: float | None


def text_lm_corpus(num_sentences: int, languages: tuple[str, ...], seed: int) -> list[str]:
    """Sentences of every language, deterministic in the seed."""
    from soundlm.data.text import sentences

    return [s.text[lang] for s in sentences(seed, num_sentences) for lang in languages]




def train_text_lm(cfg: TextLMConfig) -> TextLMResult:
    """Train (or resume) the tiny text LM; returns the exported folder `OUT/final`."""
    from transformers import LlamaForCausalLM

    from soundlm.lm.model import LMConfig
    from soundlm.palm.vocab import load_text_tokenizer, train_text_tokenizer

    cfg.validate()
    require_single_process("train textlm")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    check_resume_settings(out, asdict(cfg), _RESUME_MUST_MATCH)
    texts = text_lm_corpus(cfg.num_sentences, tuple(cfg.languages), cfg.seed)
    tok_dir = out / TOKENIZER_DIR
    if not tok_dir.is_dir():
        tokenizer = train_text_tokenizer(texts, cfg.vocab_size)
        with atomic_dir(tok_dir) as tmp:
            tokenizer.save_pretrained(str(tmp))
    tokenizer = load_text_tokenizer(tok_dir)
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    examples = []
    for text in texts:
        ids = torch.tensor([bos, *tokenizer(text, add_special_tokens=False)["input_ids"], eos][: cfg.max_length])
        examples.append(FormattedExample(tokens=ids, labels=ids.clone(), prompt_len=0))

    torch.manual_seed(cfg.seed)
    lm_cfg = LMConfig(vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                      num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
                      max_positions=cfg.max_positions)
    hf_cfg = lm_cfg.to_hf()
    hf_cfg.bos_token_id, hf_cfg.eos_token_id, hf_cfg.pad_token_id = bos, eos, pad
    model = LlamaForCausalLM(hf_cfg)

    def write_model(folder: Path) -> None:
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))

    def restore_model(folder: Path) -> None:
        loaded = LlamaForCausalLM.from_pretrained(str(folder))
        model.load_state_dict(loaded.state_dict())

    loop = LoopConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup,
                      ckpt_every=cfg.ckpt_every, seed=cfg.seed, progress=cfg.progress)
    result = train_loop(model, examples, pad, out, write_model, restore_model, loop,
                        Processes(device=default_device(cfg.device)), desc="textlm")
    final = out / "final"
    model.to("cpu")
    with atomic_dir(final) as tmp:
        write_model(tmp)
    return TextLMResult(folder=final, step=result.step, loss=result.last_loss)
