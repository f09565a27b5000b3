"""Preference pairs for DPO: made by sampling and scoring (MusicRL-R), or read from people's judgements (MusicRL-U).

A pairs file is JSON lines, one *group* per line: a caption, its token sequences (each with its
loss mask, and its reward when a reward model scored it) and the pairs among them as
(chosen index, rejected index):

    {"index": 3, "caption": "...", "source": "self" | "human", "where": "prefs.jsonl:4",
     "samples": [{"tokens": [...], "mask": [0, 1, ...], "reward": 0.8, "components": {"key": 1.0},
                  "audio": "samples/00003_0.wav"}, ...],
     "pairs": [[0, 2]]}

A sample of a delay-pattern stage (`DelaySequence`) is stored as what that stage trains on
(`stages.delay_example`) in place of "tokens" and "mask":
`{"pattern": "delay", "inputs": [[...]], "targets": [[...]], "prefix": [...], "reward": ...}`.

Both makers append a group per caption (or per judgement), flushed and fsynced, so a killed job
resumes where it stopped (`read_groups` drops a half-written last line); `index` is the caption's
position (the judgement's line number), which resume skips.

- `generate_pairs`: each request's caption sampled `num_samples` times through an injected
  `Sampler` (the MusicLM pipeline; `register_sampler` / the `soundlm.music_samplers` entry point
  group lets the command line find one), each output scored by a `RewardModel`, and the best
  against the worst (`strategy="best-worst"`) or every pair (`"all"`) whose reward gap is at least
  `margin`. Batch k of captions draws with seed `seed + k`, whatever ran before.
- `read_human_pairs`: `{"caption", "chosen", "rejected"}` lines (`soundlm serve`'s
  `{"prompt", "a", "b", "choice"}` too), wav paths relative to the JSONL file, tokenized by an
  injected `PairTokenizer`; a bad line or file is skipped with its line number, reason and fix.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass, field
from itertools import permutations
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from soundlm.fileio import read_json, write_json_atomic, write_text_atomic
from soundlm.music.rewards import MusicRequest, RewardModel, WeightedReward

log = logging.getLogger(__name__)

STRATEGIES = ("best-worst", "all")
SAMPLER_ENTRY_POINTS = "soundlm.music_samplers"
TOKENIZER_ENTRY_POINTS = "soundlm.music_pair_tokenizers"


@dataclass
class TokenSequence:
    """One sample as the LM sees it: tokens [T] and which of them the preference loss counts [T]."""

    tokens: torch.Tensor  # [T] int64
    loss_mask: torch.Tensor  # [T] bool; False on BOS and the prompt/condition

    def __post_init__(self) -> None:
        if self.tokens.dim() != 1 or self.tokens.shape != self.loss_mask.shape:
            raise ValueError(f"tokens and loss_mask must both be [T], got {tuple(self.tokens.shape)} and "
                             f"{tuple(self.loss_mask.shape)}")
        if not bool(self.loss_mask.any()):
            raise ValueError("the loss mask keeps no token: the sample has nothing the LM generated")
        if bool(self.loss_mask[0]):
            raise ValueError("loss_mask[0] must be False: nothing predicts a sequence's first token (BOS)")

    def to_json(self) -> dict:
        return {"tokens": self.tokens.tolist(), "mask": self.loss_mask.int().tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> TokenSequence:
        return cls(torch.tensor(obj["tokens"], dtype=torch.long), torch.tensor(obj["mask"], dtype=torch.bool))

    @property
    def positions(self) -> int:
        """Positions of the LM the sequence takes."""
        return int(self.tokens.shape[0])

    @property
    def kept(self) -> int:
        """Tokens the loss counts."""
        return int(self.loss_mask.sum())


@dataclass
class DelaySequence:
    """One sample as a delay-pattern stage (`DelayLM`) sees it, exactly what it trains on (`stages.delay_example`):
    delayed input codes [K, S], their targets [K, S] (IGNORE_INDEX at the delay pads: the loss counts the
    rest) and the prefix [P] (a conditioned stage's condition ids, then its own prefix stream)."""

    inputs: torch.Tensor  # [K, S] int64, ids in [0, card] (card: pad/start)
    targets: torch.Tensor  # [K, S] int64, IGNORE_INDEX where nothing is generated
    prefix: torch.Tensor  # [P] int64, ids of the stage's prefix vocabulary

    def __post_init__(self) -> None:
        from soundlm.lm.model import IGNORE_INDEX

        if self.inputs.dim() != 2 or self.inputs.shape != self.targets.shape or self.prefix.dim() != 1:
            raise ValueError(f"a delay sample needs inputs and targets [K, S] and a prefix [P], got "
                             f"{tuple(self.inputs.shape)}, {tuple(self.targets.shape)} and {tuple(self.prefix.shape)}")
        if not bool((self.targets != IGNORE_INDEX).any()):
            raise ValueError("the delay sample has no target: it has nothing the LM generated")

    @classmethod
    def from_example(cls, example) -> DelaySequence:
        """A `soundlm.stages.Example` of a delay-pattern stage (numpy) as a sample."""
        return cls(torch.from_numpy(np.asarray(example.inputs)).long(), torch.from_numpy(np.asarray(example.targets))
                   .long(), torch.from_numpy(np.asarray(example.prefix)).long())

    def to_json(self) -> dict:
        return {"pattern": "delay", "inputs": self.inputs.tolist(), "targets": self.targets.tolist(),
                "prefix": self.prefix.tolist()}

    @classmethod
    def from_json(cls, obj: dict) -> DelaySequence:
        return cls(torch.tensor(obj["inputs"], dtype=torch.long), torch.tensor(obj["targets"], dtype=torch.long),
                   torch.tensor(obj["prefix"], dtype=torch.long))

    @property
    def positions(self) -> int:
        return int(self.prefix.shape[0] + self.inputs.shape[1])

    @property
    def kept(self) -> int:
        from soundlm.lm.model import IGNORE_INDEX

        return int((self.targets != IGNORE_INDEX).sum())


# A sample of the stage being tuned: one token stream (TokenLM) or delayed codebooks with a prefix (DelayLM).
StageSample = TokenSequence | DelaySequence


def sample_from_json(obj: dict) -> StageSample:
    """A stored sample of either kind (a flat one carries no "pattern": files written before delay samples)."""
    return DelaySequence.from_json(obj) if obj.get("pattern") == "delay" else TokenSequence.from_json(obj)


def window_sequence(stage, semantic: torch.Tensor | None, acoustic: torch.Tensor | None,
                    condition: torch.Tensor | None = None) -> StageSample:
    """The first window of one clip's ids as the stage `stage` (a `soundlm.stages.Stage`) reads it.

    A flat stage: BOS, the condition ids [1, Q] of a conditioned stage, its context, its own ids; the loss
    mask on its own ids. A delay-pattern stage: its training example of the window (`DelaySequence`).
    semantic [1, T_s] and acoustic [1, K, T_a] (None where the stage reads none) are cut to the stage's
    window as generation cuts them (`AudioLMPipeline`'s windows), so the sequence fits its positions.
    """
    from soundlm.stages import Window, stage_tokens

    w, meta = stage.window_seconds, stage.meta
    if semantic is not None:
        semantic = semantic[:, : (int(w * meta.semantic_rate) if stage.name == "semantic"
                                  else int(round(w * meta.semantic_rate)))]
    if acoustic is not None:
        acoustic = acoustic[:, :, : int(w * meta.acoustic_rate)]
    if stage.delayed:
        window = Window("", 0.0, semantic[0].long().cpu().numpy() if semantic is not None else np.zeros(0, np.int64),
                        acoustic[0].long().cpu().numpy(),
                        condition[0].long().cpu().numpy() if condition is not None else None)
        return DelaySequence.from_example(stage.example(window))
    seq = stage_tokens(stage.name, semantic, acoustic, stage.layout, stage.coarse_codebooks, condition=condition)
    tokens = seq.tokens[0].long().cpu()  # [L]
    return TokenSequence(tokens, torch.arange(tokens.shape[0]) >= max(int(seq.prefix_len), 1))


@dataclass
class GeneratedSample:
    """One output of a sampler: its LM tokens and loss mask (a flat stage) or its `DelaySequence` (a
    delay-pattern stage), and the audio they decode to."""

    tokens: torch.Tensor | None  # [T] int64; None for a delay-pattern sample
    loss_mask: torch.Tensor | None  # [T] bool; None for a delay-pattern sample
    audio: np.ndarray  # [S] float mono
    sample_rate: int
    delay: DelaySequence | None = None

    @classmethod
    def of(cls, sample: StageSample, audio: np.ndarray, sample_rate: int) -> GeneratedSample:
        if isinstance(sample, DelaySequence):
            return cls(None, None, audio, sample_rate, delay=sample)
        return cls(sample.tokens, sample.loss_mask, audio, sample_rate)

    @property
    def sequence(self) -> StageSample:
        """The sample as the pairs file stores it."""
        if self.delay is not None:
            return self.delay
        return TokenSequence(self.tokens.long().cpu(), self.loss_mask.bool().cpu())


class Sampler(Protocol):
    """Captions -> samples of the model being tuned (the MusicLM pipeline, wrapped).

    Each sample's `tokens` are the tuned stage's whole sequence as its LM reads it (BOS, any
    condition ids, the generated ids) and `loss_mask` keeps only the generated ids (a delay-pattern
    stage's sample is its `delay` example instead: `window_sequence` makes either); `audio` is what
    the full pipeline decodes the sample to (what the rewards hear). Same seed, same samples.
    """

    def sample(self, captions: list[str], num_samples: int, seed: int) -> list[list[GeneratedSample]]:
        """`num_samples` outputs for each caption (one list per caption, in order), drawn from `seed`."""


# audio [C, S] or [S] at sample_rate, caption -> the LM's tokens of that audio for that caption.
PairTokenizer = Callable[[np.ndarray, int, str], StageSample]


@dataclass
class PreferencePair:
    caption: str
    chosen: StageSample
    rejected: StageSample
    chosen_reward: float | None = None  # None: a person chose
    rejected_reward: float | None = None


@dataclass
class PairGroup:
    """One line of a pairs file (see the module doc)."""

    index: int
    caption: str
    source: str  # "self" | "human"
    samples: list[StageSample]
    pairs: list[tuple[int, int]]
    rewards: list[float | None] = field(default_factory=list)
    components: list[dict[str, float]] = field(default_factory=list)
    where: str | None = None
    audio: list[str] = field(default_factory=list)  # each sample's wav, relative to the pairs file's folder

    def to_json(self) -> dict:
        rewards = self.rewards or [None] * len(self.samples)
        components = self.components or [{}] * len(self.samples)
        audio = self.audio or [None] * len(self.samples)
        samples = [{**s.to_json(), "reward": r, "components": c, **({"audio": a} if a else {})}
                   for s, r, c, a in zip(self.samples, rewards, components, audio)]
        return {"index": self.index, "caption": self.caption, "source": self.source, "where": self.where,
                "samples": samples, "pairs": [list(p) for p in self.pairs]}

    @classmethod
    def from_json(cls, obj: dict) -> PairGroup:
        return cls(index=int(obj["index"]), caption=str(obj["caption"]), source=str(obj["source"]),
                   samples=[sample_from_json(s) for s in obj["samples"]],
                   pairs=[(int(a), int(b)) for a, b in obj["pairs"]],
                   rewards=[s.get("reward") for s in obj["samples"]],
                   components=[s.get("components") or {} for s in obj["samples"]], where=obj.get("where"),
                   audio=[s["audio"] for s in obj["samples"] if s.get("audio")])

    def preference_pairs(self) -> list[PreferencePair]:
        rewards = self.rewards or [None] * len(self.samples)
        return [PreferencePair(self.caption, self.samples[a], self.samples[b], rewards[a], rewards[b])
                for a, b in self.pairs]


def read_groups(path: str | Path) -> list[PairGroup]:
    """The groups of a pairs file; a half-written last line (a killed writer) is cut off the file."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    groups, good = [], 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        try:
            groups.append(PairGroup.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            break
        good += len(line)
    if good < len(data):
        log.warning("%s: dropping a half-written last group (%d bytes); it is made again", path, len(data) - good)
        with open(path, "r+b") as f:
            f.truncate(good)
    return groups


def append_group(path: Path, group: PairGroup) -> None:
    """Append one group as one line, flushed to disk (a reader sees whole groups only)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(group.to_json()) + "\n")
        f.flush()
        os.fsync(f.fileno())


def preference_pairs(groups: list[PairGroup]) -> list[PreferencePair]:
    return [p for g in groups for p in g.preference_pairs()]


def _pin_settings(path: Path, settings: dict) -> None:
    """Refuse to extend a pairs file that was made with other settings; record them otherwise."""
    sidecar = path.with_name(path.name + ".settings.json")
    wanted = json.loads(json.dumps(settings))
    if sidecar.is_file() and path.is_file():
        old = read_json(sidecar)
        diffs = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in wanted.items() if old.get(k) != v]
        if diffs:
            raise ValueError(f"{path} was made with other settings ({'; '.join(diffs)}); pass the original ones to "
                             "resume, or another output to start again")
    write_json_atomic(sidecar, wanted)


# ---------------------------------------------------------------------------- self-generated

def choose_pairs(rewards: list[float], strategy: str = "best-worst", margin: float = 0.0) -> list[tuple[int, int]]:
    """(chosen, rejected) sample indices whose reward gap is positive and at least `margin`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    valid = [i for i, r in enumerate(rewards) if not math.isnan(r)]
    if strategy == "best-worst":
        if len(valid) < 2:
            return []
        best = max(valid, key=lambda i: rewards[i])
        worst = min(valid, key=lambda i: rewards[i])
        gap = rewards[best] - rewards[worst]
        return [(best, worst)] if gap > 0 and gap >= margin else []
    return [(a, b) for a, b in permutations(valid, 2) if rewards[a] - rewards[b] > 0 and
            rewards[a] - rewards[b] >= margin]


def generate_pairs(requests: list[MusicRequest], sampler: Sampler, reward: RewardModel, path: str | Path,
                   num_samples: int = 4, seed: int = 0, strategy: str = "best-worst", margin: float = 0.0,
                   batch_captions: int = 4, keep_audio: bool = True, progress: bool = True) -> list[PairGroup]:
    """Sample, score and pair every request into the pairs file `path` (resuming it); returns all its groups.

    keep_audio: write each sample as `samples/{index:05d}_{k}.wav` beside `path` (named in its group), so
    people can listen to them and judge pairs of their own (`read_human_pairs`: the MusicRL-U path).
    """
    if num_samples < 2:
        raise ValueError(f"--self needs >= 2 samples per caption to compare, got {num_samples}")
    if batch_captions < 1:
        raise ValueError(f"batch_captions must be >= 1, got {batch_captions}")
    choose_pairs([], strategy)  # an unknown strategy fails before any sampling
    if not requests:
        raise ValueError("no captions to sample; pass a music corpus or a caption file with at least one line")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _pin_settings(path, {"captions": [r.caption for r in requests], "num_samples": num_samples, "seed": seed,
                         "strategy": strategy, "margin": margin, "batch_captions": batch_captions})
    groups = read_groups(path)
    done = {g.index for g in groups}
    batches = [list(range(i, min(i + batch_captions, len(requests)))) for i in range(0, len(requests), batch_captions)]
    bar = tqdm(total=len(requests), initial=len(done), desc="preference pairs", unit="caption", disable=not progress)
    for k, batch in enumerate(batches):
        if all(i in done for i in batch):
            continue
        # The whole batch is drawn again even when part of it was written: its samples depend on its captions.
        outputs = sampler.sample([requests[i].caption for i in batch], num_samples, seed + k)
        if len(outputs) != len(batch) or any(len(o) != num_samples for o in outputs):
            raise ValueError(f"the sampler returned {[len(o) for o in outputs]} samples for {len(batch)} captions; "
                             f"it must return {num_samples} per caption")
        for i, samples in zip(batch, outputs):
            if i in done:
                continue
            request = requests[i]
            components, scores = _score_samples(reward, samples, request)
            if not reward.applies(request):
                log.warning("caption %d %r asks for nothing the rewards measure; no pair from it", i, request.caption)
            audio = _save_samples(path.parent, i, samples) if keep_audio else []
            group = PairGroup(index=i, caption=request.caption, source="self",
                              samples=[s.sequence for s in samples],
                              pairs=choose_pairs(scores, strategy, margin), rewards=scores, components=components,
                              audio=audio)
            append_group(path, group)
            groups.append(group)
            bar.update(1)
    bar.close()
    return sorted(groups, key=lambda g: g.index)


def _save_samples(folder: Path, index: int, samples: list[GeneratedSample]) -> list[str]:
    """Each sample's wav under folder/samples/ (atomic writes); their paths relative to `folder`."""
    from soundlm.audio import save_audio

    names = []
    for k, s in enumerate(samples):
        name = f"samples/{index:05d}_{k}.wav"
        save_audio(folder / name, np.asarray(s.audio, dtype=np.float32), s.sample_rate)
        names.append(name)
    return names


def _score_samples(reward: RewardModel, samples: list[GeneratedSample],
                   request: MusicRequest) -> tuple[list[dict[str, float]], list[float]]:
    """Each sample's reward (nan where the request asks for nothing it measures) and its parts by reward name."""
    if not reward.applies(request):
        return [{} for _ in samples], [math.nan] * len(samples)
    if isinstance(reward, WeightedReward):
        parts = [reward.components(s.audio, s.sample_rate, request) for s in samples]
        return parts, [reward.combine(p) for p in parts]
    scores = [reward.score(s.audio, s.sample_rate, request) for s in samples]
    return [{reward.name: x} for x in scores], scores


# ---------------------------------------------------------------------------- human judgements

@dataclass
class SkippedLine:
    line: int  # 1-based line number in the JSONL file
    reason: str  # what is wrong and how to fix it


@dataclass
class HumanPairs:
    groups: list[PairGroup]
    skipped: list[SkippedLine]


_FORMAT = ('one JSON object per line: {"caption": ..., "chosen": "a.wav", "rejected": "b.wav"} '
           '(or soundlm serve\'s {"prompt", "a", "b", "choice"})')


def _parse_judgement(line: str) -> tuple[str, str, str]:
    """(caption, chosen path, rejected path) of one line; ValueError says what is wrong and the fix."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg}); write {_FORMAT}") from None
    if not isinstance(row, dict):
        raise ValueError(f"a JSON {type(row).__name__}, not an object; write {_FORMAT}")
    if "chosen" in row or "rejected" in row:
        caption, chosen, rejected = row.get("caption", row.get("prompt")), row.get("chosen"), row.get("rejected")
    elif "choice" in row:
        if row["choice"] not in ("a", "b"):
            raise ValueError(f"'choice' is {row['choice']!r}; it must be \"a\" or \"b\"")
        caption = row.get("prompt", row.get("caption"))
        chosen, rejected = (row.get("a"), row.get("b")) if row["choice"] == "a" else (row.get("b"), row.get("a"))
    else:
        raise ValueError(f"no 'chosen'/'rejected' (or 'choice') key; write {_FORMAT}")
    missing = [k for k, v in (("caption", caption), ("chosen", chosen), ("rejected", rejected))
               if not isinstance(v, str)]
    if missing:
        raise ValueError(f"{', '.join(repr(m) for m in missing)} missing or not a string; write {_FORMAT}")
    if chosen == rejected:
        raise ValueError(f"chosen and rejected are the same file {chosen!r}; a judgement compares two samples")
    return caption, chosen, rejected


def read_human_pairs(jsonl: str | Path, tokenize: PairTokenizer, path: str | Path,
                     progress: bool = True) -> HumanPairs:
    """Tokenize the judgements of `jsonl` into the pairs file `path` (resuming it).

    Skipped lines (bad JSON, missing keys, missing or unreadable audio, audio the tokenizer
    refuses) are logged and written to `path`'s folder as `pairs_errors.jsonl` ({"line", "reason"}).
    """
    from soundlm.audio import AudioError, load_audio

    jsonl = Path(jsonl)
    if not jsonl.is_file():
        raise FileNotFoundError(f"{jsonl}: no such preference file; pass a JSONL file with {_FORMAT}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The file's digest too: judgements added later would change the pairs a resumed run trains on.
    _pin_settings(path, {"judgements": str(jsonl.resolve()), "sha256": hashlib.sha256(jsonl.read_bytes()).hexdigest()})
    groups = read_groups(path)
    done = {g.index for g in groups}
    lines = jsonl.read_text(encoding="utf-8").splitlines()
    skipped: list[SkippedLine] = []
    for number, line in enumerate(tqdm(lines, desc="judgements", unit="line", disable=not progress), start=1):
        if number in done or not line.strip():
            continue
        try:
            caption, chosen, rejected = _parse_judgement(line)
            samples = []
            for name in (chosen, rejected):
                file = jsonl.parent / name
                if not file.is_file():
                    raise ValueError(f"{file}: no such audio file; paths are relative to {jsonl.parent}")
                audio = load_audio(file, mono=False)
                samples.append(tokenize(audio, _rate(file), caption))
        except (ValueError, AudioError, FileNotFoundError) as e:
            skipped.append(SkippedLine(number, str(e)))
            log.warning("%s:%d skipped: %s", jsonl, number, e)
            continue
        group = PairGroup(index=number, caption=caption, source="human", samples=samples, pairs=[(0, 1)],
                          where=f"{jsonl.name}:{number}")
        append_group(path, group)
        groups.append(group)
    write_text_atomic(path.parent / "pairs_errors.jsonl",
                      "".join(json.dumps({"line": s.line, "reason": s.reason}) + "\n" for s in skipped))
    if skipped:
        print(f"skipped {len(skipped)} of {len(lines)} judgements (reasons in {path.parent / 'pairs_errors.jsonl'})")
    return HumanPairs(sorted(groups, key=lambda g: g.index), skipped)


def _rate(file: Path) -> int:
    from soundlm.audio import info

    return int(info(file).sample_rate)


# ---------------------------------------------------------------------------- registries

class Registry:
    """Factories by name, for the command line to find code it does not import: registered in this
    process (`register`) or by an installed package's entry point in `group`."""

    def __init__(self, what: str, group: str, fix: str):
        self.what, self.group, self.fix = what, group, fix
        self.factories: dict[str, Callable] = {}

    def register(self, name: str, factory: Callable) -> None:
        self.factories[name] = factory

    def get(self, name: str) -> Callable:
        if name not in self.factories:
            from importlib.metadata import entry_points

            for ep in entry_points(group=self.group):
                if ep.name == name:
                    self.register(name, ep.load())
        if name not in self.factories:
            known = ", ".join(sorted(self.factories)) or "none"
            raise ValueError(f"no {self.what} named {name!r} is registered (registered: {known}); {self.fix}")
        return self.factories[name]


# name -> factory(base model folder, stage being tuned, device) -> Sampler
SAMPLERS = Registry("music sampler", SAMPLER_ENTRY_POINTS,
                    "--self needs one that turns captions into token sequences and audio: register it with "
                    "soundlm.music.pairs.register_sampler or the 'soundlm.music_samplers' entry point group, or train "
                    "on people's judgements with --pairs")
# name -> factory(base model folder, stage, device) -> PairTokenizer
PAIR_TOKENIZERS = Registry("pair tokenizer", TOKENIZER_ENTRY_POINTS,
                           "register it with soundlm.music.pairs.register_pair_tokenizer or the "
                           "'soundlm.music_pair_tokenizers' entry point group ('audiolm' is soundlm's own)")


def register_sampler(name: str, factory: Callable[..., Sampler]) -> None:
    """Make `soundlm train prefer --self N --sampler NAME` build its sampler with `factory(base, stage, device)`.

    `stage` is the loaded `soundlm.stages.Stage` being tuned: its samples' tokens must be that stage's
    sequences (its layout, its condition ids), no longer than its window (`stage.window_seconds`).
    """
    SAMPLERS.register(name, factory)


def load_sampler(name: str, base: Path, stage, device: torch.device) -> Sampler:
    """The sampler registered as `name`, built for the stage `stage` of the base model folder `base`."""
    return SAMPLERS.get(name)(base, stage, device)


def register_pair_tokenizer(name: str, factory: Callable[..., PairTokenizer]) -> None:
    """Make `soundlm train prefer --pairs ... --tokenizer NAME` tokenize clips with `factory(base, stage, device)`
    (a conditioned stage puts the caption's condition tokens in its sequences)."""
    PAIR_TOKENIZERS.register(name, factory)


def load_pair_tokenizer(name: str, base: Path, stage, device: torch.device) -> PairTokenizer:
    return PAIR_TOKENIZERS.get(name)(base, stage, device)


def _musiclm_sampler(base: Path, stage, device: torch.device) -> Sampler:
    # Imported on use: the sampler module builds on this one.
    from soundlm.music.sampler import musiclm_sampler

    return musiclm_sampler(base, stage, device)


register_sampler("musiclm", _musiclm_sampler)
