"""sWUGGY-style lexical discrimination: does a speech LM prefer real words to non-words?

Each pair is a real English word and a matched non-word of the same length, made by
swapping letter segments for others of the same kind (vowel spelling for vowel spelling,
a consonant for one with the same manner of articulation), so the two differ in a few
sounds and not in shape. A candidate is kept only if it is not in the lexicon (the CMU
dictionary shipped with pocketsphinx by default) and every letter trigram in it occurs
often in real words (a cheap phonotactic-legality check in the spirit of Wuggy). Both
items are spoken by the same espeak-ng voice; an LM scores each clip with a
log-likelihood and gets the pair right when the word scores higher.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from soundlm.fileio import write_json_atomic

# Frequent, regularly spelled English words that espeak-ng pronounces reliably.
COMMON_WORDS = (
    "apple", "basket", "bottle", "bread", "bridge", "brother", "butter", "candle", "carpet",
    "castle", "chair", "cheese", "chicken", "circle", "cloud", "coffee", "corner", "cotton",
    "dinner", "doctor", "dragon", "dream", "engine", "farmer", "finger", "flower", "forest",
    "garden", "ginger", "glass", "golden", "grass", "hammer", "harbor", "helmet", "honey",
    "island", "jacket", "kettle", "kitchen", "ladder", "lemon", "letter", "market", "meadow",
    "mirror", "monkey", "morning", "mountain", "music", "number", "orange", "paper", "parrot",
    "pencil", "pepper", "picture", "planet", "pocket", "rabbit", "river", "rocket", "salad",
    "sister", "silver", "spider", "spring", "station", "stone", "summer", "sunset", "table",
    "teacher", "thunder", "ticket", "timber", "tower", "travel", "turtle", "valley", "velvet",
    "village", "walnut", "water", "window", "winter", "wonder", "yellow", "blanket", "button",
    "camel", "cabin", "desert", "garlic", "lantern", "marble", "napkin", "pillow", "puzzle",
)

VOWEL_SEGMENTS = {
    1: ("a", "e", "i", "o", "u"),
    2: ("ai", "ea", "ee", "oa", "oo", "ou", "ie", "oi", "au"),
}
# Consonants swap only within a manner class, so the non-word keeps the word's rhythm.
CONSONANT_CLASSES = (
    ("b", "d", "g", "p", "t", "k"),
    ("f", "v", "s", "z"),
    ("m", "n"),
    ("l", "r"),
)
DIGRAPHS = ("ch", "sh", "th", "ph", "wh", "ck", "ng", "qu")
MIN_TRIGRAM_COUNT = 20  # a trigram seen in fewer lexicon words counts as illegal spelling


@dataclass
class LexicalPair:
    word: str
    nonword: str
    word_audio: str | None = None  # wav path, set by `synthesize_pairs`
    nonword_audio: str | None = None


@dataclass
class LexicalResult:
    accuracy: float  # ties count as half right
    num_pairs: int
    correct: list[float]  # per pair: 1.0, 0.5 (tie) or 0.0
    word_scores: list[float]
    nonword_scores: list[float]


def default_lexicon_path() -> Path:
    import pocketsphinx

    return Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"


@lru_cache(maxsize=4)
def load_lexicon(path: str | None = None) -> frozenset[str]:
    """Lower-case orthographic words of a CMU-style dictionary ("word PH ON ES" per line)
    or a plain word list (one word per line); alternates like "read(2)" fold into "read"."""
    path = Path(path) if path is not None else default_lexicon_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: lexicon not found; pass a word list file (one word per line)")
    words = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            token = line.split(maxsplit=1)[0].lower() if line.strip() else ""
            token = re.sub(r"\(\d+\)$", "", token)
            if token:
                words.add(token)
    if not words:
        raise ValueError(f"{path}: lexicon is empty")
    return frozenset(words)


@lru_cache(maxsize=4)
def _trigram_counts(lexicon: frozenset[str]) -> Counter:
    counts: Counter = Counter()
    for w in lexicon:
        if w.isalpha():
            s = f"^{w}$"
            counts.update({s[i: i + 3] for i in range(len(s) - 2)})
    return counts


def is_phonotactic(candidate: str, lexicon: frozenset[str], min_count: int = MIN_TRIGRAM_COUNT) -> bool:
    """True if every letter trigram (with word-boundary marks) is common in the lexicon."""
    counts = _trigram_counts(lexicon)
    s = f"^{candidate}$"
    return all(counts[s[i: i + 3]] >= min_count for i in range(len(s) - 2))


def segment(word: str) -> list[str]:
    """Split a spelling into vowel groups (at most 2 letters), consonant digraphs, doubled
    consonants and single letters."""
    segs, i = [], 0
    while i < len(word):
        if word[i] in "aeiou":
            j = i + 1
            if j < len(word) and word[j] in "aeiou":
                j += 1
            segs.append(word[i:j])
            i = j
        elif word[i: i + 2] in DIGRAPHS or word[i: i + 2] == word[i] * 2:
            segs.append(word[i: i + 2])  # "sh", or a doubled consonant that sounds as one
            i += 2
        else:
            segs.append(word[i])
            i += 1
    return segs


def _alternatives(seg: str, final: bool = False) -> tuple[str, ...]:
    if final and seg == "e":
        return ()  # a word-final "e" is silent; changing it would add a syllable
    if seg[0] in "aeiou":
        return tuple(v for v in VOWEL_SEGMENTS.get(len(seg), ()) if v != seg)
    doubled = len(seg) == 2 and seg[0] == seg[1]
    for cls in CONSONANT_CLASSES:
        if seg[0] in cls:
            others = tuple(c for c in cls if c != seg[0])
            return tuple(c * 2 for c in others) if doubled else others if len(seg) == 1 else ()
    return ()  # digraphs, y, w, h, j, c, x keep their spelling


def make_nonword(word: str, lexicon: frozenset[str], rng: np.random.Generator,
                 max_tries: int = 200) -> str | None:
    """One matched non-word for `word`, or None if no legal candidate was found."""
    segs = segment(word)
    last = len(segs) - 1
    changeable = [i for i, s in enumerate(segs) if _alternatives(s, i == last)]
    if not changeable:
        return None
    # About a third of the segments change, at least one (Wuggy's default overlap is 2/3).
    n_change = min(len(changeable), max(1, round(len(segs) / 3)))
    for _ in range(max_tries):
        picked = rng.choice(changeable, size=n_change, replace=False)
        new = list(segs)
        for i in picked:
            options = _alternatives(segs[i], i == last)
            new[i] = options[int(rng.integers(len(options)))]
        candidate = "".join(new)
        if (candidate != word and len(candidate) == len(word) and candidate not in lexicon
                and is_phonotactic(candidate, lexicon)):
            return candidate
    return None


def make_lexical_pairs(words: Iterable[str] = COMMON_WORDS, lexicon: frozenset[str] | None = None,
                       seed: int = 0) -> list[LexicalPair]:
    """Pair each word with a matched non-word; words with no legal non-word are skipped.

    A word's non-word depends only on the word, the seed and the lexicon, not on the other
    words or their order, so two word lists that share a word give it the same non-word
    (a later word whose non-word is already taken is skipped). Raises ValueError if a word
    is not itself in the lexicon (it could not then be told apart from a non-word).
    """
    lexicon = lexicon if lexicon is not None else load_lexicon()
    pairs, seen = [], set()
    for raw in words:
        word = raw.strip().lower()
        if not word.isalpha():
            raise ValueError(f"word {raw!r} has non-letters; pass plain words")
        if word not in lexicon:
            raise ValueError(f"word {raw!r} is not in the lexicon; only real words can anchor a pair")
        # One generator per word, seeded by the seed and the word's bytes.
        rng = np.random.default_rng([seed, *word.encode()])
        nonword = make_nonword(word, lexicon, rng)
        if nonword is not None and nonword not in seen:
            seen.add(nonword)
            pairs.append(LexicalPair(word=word, nonword=nonword))
    if not pairs:
        raise ValueError("no pair could be generated; pass longer words or a larger lexicon")
    return pairs


def corpus_words(transcripts: Iterable[str], lexicon: frozenset[str] | None = None, min_letters: int = 4) -> list[str]:
    """The distinct words of `transcripts` that can anchor a pair: letters only, at least
    `min_letters` long and in the lexicon; most frequent first (ties alphabetical).

    sWUGGY asks whether the LM knows the words of its language; on a closed-vocabulary
    corpus that language is the corpus's vocabulary, so pairs are built from its words.
    """
    lexicon = lexicon if lexicon is not None else load_lexicon()
    counts: Counter = Counter()
    for text in transcripts:
        for raw in re.findall(r"[A-Za-z']+", text or ""):
            word = raw.lower()
            if word.isalpha() and len(word) >= min_letters and word in lexicon:
                counts[word] += 1
    return sorted(counts, key=lambda w: (-counts[w], w))


def synthesize_pairs(pairs: Sequence[LexicalPair], out_dir: str | Path, voice: str = "en-us",
                     sample_rate: int = 16_000, progress: bool = True) -> list[LexicalPair]:
    """Speak both items of every pair with one voice into `out_dir`; writes `pairs.json`.

    Existing wavs are kept, so an interrupted run resumes; every file is written atomically.
    """
    from tqdm import tqdm

    from soundlm.audio import save_audio
    from soundlm.eval.tts import synthesize

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = []
    for pair in tqdm(pairs, desc="lexical pairs", unit="pair", disable=not progress):
        paths = []
        for text in (pair.word, pair.nonword):
            path = out_dir / f"{text}.wav"
            if not path.exists():
                save_audio(path, synthesize(text, voice=voice, sample_rate=sample_rate), sample_rate)
            paths.append(str(path))
        result.append(LexicalPair(pair.word, pair.nonword, word_audio=paths[0], nonword_audio=paths[1]))
    write_json_atomic(out_dir / "pairs.json", {
        "voice": voice, "sample_rate": sample_rate,
        "pairs": [{**asdict(p), "word_audio": os.path.basename(p.word_audio),
                   "nonword_audio": os.path.basename(p.nonword_audio)} for p in result],
    })
    return result


ScoreFn = Callable[[np.ndarray, int], float]  # (audio [S], sample_rate) -> log-likelihood


def lexical_accuracy(score_fn: ScoreFn, pairs: Sequence[LexicalPair], sample_rate: int | None = None,
                     progress: bool = False) -> LexicalResult:
    """Fraction of pairs whose word gets a higher score than its non-word (ties: half).

    `score_fn` receives mono float32 [S] audio (loaded from the pair's wavs, resampled to
    `sample_rate` if given) and its sample rate, and returns a log-likelihood.
    """
    from tqdm import tqdm

    from soundlm.audio import info, load_audio

    if not pairs:
        raise ValueError("no pairs to score; build them with make_lexical_pairs + synthesize_pairs")

    def score(path: str | None, what: str, pair: LexicalPair) -> float:
        if path is None:
            raise ValueError(f"pair ({pair.word}, {pair.nonword}) has no {what} audio; "
                             "run synthesize_pairs first")
        sr = sample_rate or info(path).sample_rate
        value = float(score_fn(load_audio(path, sample_rate=sr)[0], sr))
        if not np.isfinite(value):
            raise ValueError(f"score_fn returned {value} for {path}; it must return a finite log-likelihood")
        return value

    word_scores, nonword_scores, correct = [], [], []
    for pair in tqdm(pairs, desc="lexical", unit="pair", disable=not progress):
        w = score(pair.word_audio, "word", pair)
        n = score(pair.nonword_audio, "non-word", pair)
        word_scores.append(w)
        nonword_scores.append(n)
        correct.append(1.0 if w > n else 0.5 if w == n else 0.0)
    return LexicalResult(accuracy=float(np.mean(correct)), num_pairs=len(pairs), correct=correct,
                         word_scores=word_scores, nonword_scores=nonword_scores)
