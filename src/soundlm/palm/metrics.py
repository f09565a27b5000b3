"""Recognition and translation scores: WER/CER (jiwer) and corpus BLEU (sacrebleu)."""

from __future__ import annotations

import re
import unicodedata
from typing import Sequence

_PUNCT = re.compile(r"[^\w\s']", re.UNICODE)


def normalize_text(text: str) -> str:
    """Lowercase, drop punctuation (keeping apostrophes of elisions) and collapse spaces, for WER/CER."""
    text = unicodedata.normalize("NFC", text).lower()
    return " ".join(_PUNCT.sub(" ", text).split())


def _check(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if len(references) != len(hypotheses) or not references:
        raise ValueError(f"need the same non-zero number of references and hypotheses, got {len(references)} "
                         f"and {len(hypotheses)}")


def wer(references: Sequence[str], hypotheses: Sequence[str], normalize: bool = True) -> float:
    """Corpus word error rate (0 = perfect; can exceed 1 with many insertions)."""
    import jiwer

    _check(references, hypotheses)
    refs = [normalize_text(r) if normalize else r for r in references]
    hyps = [normalize_text(h) if normalize else h for h in hypotheses]
    if any(not r.strip() for r in refs):
        raise ValueError("a reference is empty after normalisation; WER needs at least one word per reference")
    return float(jiwer.wer(refs, hyps))


def cer(references: Sequence[str], hypotheses: Sequence[str], normalize: bool = True) -> float:
    """Corpus character error rate."""
    import jiwer

    _check(references, hypotheses)
    refs = [normalize_text(r) if normalize else r for r in references]
    hyps = [normalize_text(h) if normalize else h for h in hypotheses]
    if any(not r for r in refs):
        raise ValueError("a reference is empty after normalisation; CER needs at least one character")
    return float(jiwer.cer(refs, hyps))


def bleu(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU in [0, 100] with sacrebleu's default 13a tokenisation (one reference per segment)."""
    import sacrebleu

    _check(references, hypotheses)
    return float(sacrebleu.corpus_bleu(list(hypotheses), [list(references)]).score)
