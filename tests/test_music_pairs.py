"""Preference pairs: reward-ranked samples of a tiny real TokenLM (resumable), and people's judgements from JSONL."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from soundlm.audio import save_audio
from soundlm.lm.generate import generate
from soundlm.lm.model import TokenLM, lm_tiny
from soundlm.music.pairs import (GeneratedSample, TokenSequence, choose_pairs, generate_pairs, load_sampler,
                                 preference_pairs, read_groups, read_human_pairs, register_sampler)
from soundlm.music.rewards import KeyReward, MusicRequest
from soundlm.sampler import SamplingParams
from soundlm.vocab import VocabLayout

SR = 8000
NOTE_SECONDS = 0.2


def note(midi: int, seconds: float = NOTE_SECONDS) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440.0 * 2 ** ((midi - 69) / 12)
    return sum(np.sin(2 * np.pi * f0 * h * t) / h for h in (1, 2, 3)) * np.exp(-3 * t)


class ToneSampler:
    """A real tiny TokenLM samples semantic ids; id s plays MIDI note 60 + s % 12 for 0.2 s.

    Samples full of white keys read as C major, so the key reward ranks them.
    """

    def __init__(self, model: TokenLM, layout: VocabLayout, length: int = 10):
        self.model, self.layout, self.length = model, layout, length
        self.calls: list[tuple[list[str], int]] = []

    def sample(self, captions: list[str], num_samples: int, seed: int) -> list[list[GeneratedSample]]:
        self.calls.append((list(captions), seed))
        g = torch.Generator().manual_seed(seed)
        lo, hi = self.layout.range_of("semantic")
        prompt = torch.full((len(captions) * num_samples, 1), self.layout.bos_id, dtype=torch.long)
        tokens = generate(self.model, prompt, self.length, SamplingParams(temperature=1.0),
                          allowed_fn=lambda pos: (lo, hi), generator=g)  # [B*N, 1+length]
        out = []
        for c in range(len(captions)):
            row = []
            for t in tokens[c * num_samples:(c + 1) * num_samples]:
                ids = self.layout.global_to_semantic(t[1:]).tolist()
                audio = np.concatenate([note(60 + s % 12) for s in ids]).astype(np.float32)
                row.append(GeneratedSample(t.clone(), torch.arange(t.shape[0]) >= 1, audio / np.abs(audio).max(), SR))
            out.append(row)
        return out


def tiny_sampler(seed: int = 0) -> ToneSampler:
    torch.manual_seed(seed)
    layout = VocabLayout(semantic_size=12)
    return ToneSampler(TokenLM.from_config(lm_tiny(layout.vocab_size, max_positions=64), layout=layout).eval(), layout)


REQUESTS = [MusicRequest(f"piece {i} in C major", tonic=0, mode="major") for i in range(5)]


def test_token_sequences_check_their_mask():
    with pytest.raises(ValueError, match="keeps no token"):
        TokenSequence(torch.tensor([1, 5, 6]), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="first token"):
        TokenSequence(torch.tensor([1, 5, 6]), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"both be \[T\]"):
        TokenSequence(torch.tensor([1, 5, 6]), torch.ones(2, dtype=torch.bool))


def test_a_delay_pair_round_trips_exactly_and_old_flat_files_still_load(tmp_path):
    from soundlm.music.pairs import DelaySequence, PairGroup, append_group

    g = torch.Generator().manual_seed(0)

    def delayed(p: int) -> DelaySequence:
        targets = torch.randint(0, 8, (2, 6), generator=g)
        targets[1, 0] = targets[0, -1] = -100  # the delay pads
        return DelaySequence(torch.randint(0, 9, (2, 6), generator=g), targets, torch.randint(0, 30, (p,), generator=g))

    group = PairGroup(index=0, caption="a flute", source="self", samples=[delayed(7), delayed(5)], pairs=[(1, 0)],
                      rewards=[0.25, 0.75], components=[{"mulan": 0.25}, {"mulan": 0.75}])
    path = tmp_path / "pairs.jsonl"
    append_group(path, group)
    back = read_groups(path)[0]
    assert back.to_json() == group.to_json()
    pair = preference_pairs([back])[0]
    for got, want in ((pair.chosen, group.samples[1]), (pair.rejected, group.samples[0])):
        assert isinstance(got, DelaySequence)
        assert all(torch.equal(getattr(got, f), getattr(want, f)) for f in ("inputs", "targets", "prefix"))
    assert pair.chosen.kept == 2 * 6 - 2 and pair.chosen.positions == 5 + 6
    # A line as the flat-only format wrote it reads back as token sequences.
    old = ('{"index": 2, "caption": "c", "source": "human", "where": "j.jsonl:2", "samples": [{"tokens": [1, 5, 6], '
           '"mask": [0, 1, 1], "reward": null, "components": {}}, {"tokens": [1, 7, 6], "mask": [0, 1, 1], '
           '"reward": null, "components": {}}], "pairs": [[0, 1]]}\n')
    (tmp_path / "old.jsonl").write_text(old)
    pair = preference_pairs(read_groups(tmp_path / "old.jsonl"))[0]
    assert isinstance(pair.chosen, TokenSequence) and pair.chosen.tokens.tolist() == [1, 5, 6]
    assert pair.rejected.loss_mask.tolist() == [False, True, True]
    with pytest.raises(ValueError, match="no target"):
        DelaySequence(torch.zeros(2, 3, dtype=torch.long), torch.full((2, 3), -100), torch.zeros(2, dtype=torch.long))


def test_choose_pairs():
    assert choose_pairs([0.2, 0.9, 0.5]) == [(1, 0)]
    assert choose_pairs([0.2, 0.9, 0.5], margin=0.8) == []
    assert choose_pairs([0.5, 0.5]) == []  # a tie says nothing
    assert choose_pairs([0.2, float("nan"), 0.5]) == [(2, 0)]
    assert sorted(choose_pairs([0.2, 0.9, 0.5], "all", margin=0.35)) == [(1, 0), (1, 2)]
    with pytest.raises(ValueError, match="strategy"):
        choose_pairs([1.0], "best")


def test_generated_pairs_prefer_the_higher_reward(tmp_path):
    groups = generate_pairs(REQUESTS, tiny_sampler(), KeyReward(), tmp_path / "pairs.jsonl", num_samples=4, seed=3,
                            batch_captions=2, progress=False)
    assert [g.index for g in groups] == list(range(5))
    assert all(len(g.samples) == 4 and len(g.rewards) == 4 for g in groups)
    pairs = preference_pairs(groups)
    assert pairs, "the key reward should separate some samples"
    assert all(p.chosen_reward > p.rejected_reward for p in pairs)
    assert all(g.rewards[a] == max(g.rewards) and g.rewards[b] == min(g.rewards) for g in groups for a, b in g.pairs)
    # Every sample is there to listen to, and a person's judgement of two of them reads back as a pair.
    first = groups[0]
    assert len(first.audio) == 4 and all((tmp_path / a).is_file() for a in first.audio)
    jsonl = tmp_path / "mine.jsonl"
    judgement = {"caption": first.caption, "chosen": first.audio[1], "rejected": first.audio[0]}
    jsonl.write_text(json.dumps(judgement) + "\n")
    human = read_human_pairs(jsonl, energy_tokens, tmp_path / "human" / "pairs.jsonl", progress=False)
    assert len(preference_pairs(human.groups)) == 1 and not human.skipped
    # What is on disk is what came back.
    again = read_groups(tmp_path / "pairs.jsonl")
    assert [g.to_json() for g in again] == [g.to_json() for g in groups]


class Killed(RuntimeError):
    pass


class DiesAfter:
    """Passes `calls` sampler calls through, then dies (a killed job)."""

    def __init__(self, sampler: ToneSampler, calls: int):
        self.sampler, self.left = sampler, calls

    def sample(self, captions, num_samples, seed):
        if self.left == 0:
            raise Killed()
        self.left -= 1
        return self.sampler.sample(captions, num_samples, seed)


def test_generation_resumes_to_the_uninterrupted_result(tmp_path):
    straight = generate_pairs(REQUESTS, tiny_sampler(), KeyReward(), tmp_path / "a.jsonl", num_samples=3, seed=1,
                              batch_captions=2, progress=False)
    path = tmp_path / "b.jsonl"
    with pytest.raises(Killed):
        generate_pairs(REQUESTS, DiesAfter(tiny_sampler(), 1), KeyReward(), path, num_samples=3, seed=1,
                       batch_captions=2, progress=False)
    with open(path, "a") as f:  # a group half-written when the job died
        f.write('{"index": 2, "caption": "piece 2')
    sampler = tiny_sampler()
    resumed = generate_pairs(REQUESTS, sampler, KeyReward(), path, num_samples=3, seed=1, batch_captions=2,
                             progress=False)
    assert [g.to_json() for g in resumed] == [g.to_json() for g in straight]
    assert [seed for _, seed in sampler.calls] == [2, 3]  # batch 0 was not sampled again
    with pytest.raises(ValueError, match="other settings"):
        generate_pairs(REQUESTS, sampler, KeyReward(), path, num_samples=4, seed=1, batch_captions=2, progress=False)


def test_generation_errors(tmp_path):
    with pytest.raises(ValueError, match=">= 2 samples"):
        generate_pairs(REQUESTS, tiny_sampler(), KeyReward(), tmp_path / "p.jsonl", num_samples=1)
    with pytest.raises(ValueError, match="no music sampler named 'nope'.*register_sampler"):
        load_sampler("nope", tmp_path, None, torch.device("cpu"))
    register_sampler("tone-test", lambda base, stage, device: tiny_sampler())
    assert isinstance(load_sampler("tone-test", tmp_path, None, torch.device("cpu")), ToneSampler)


def energy_tokens(audio: np.ndarray, sample_rate: int, caption: str) -> TokenSequence:
    """A stand-in tokenizer: BOS, then the level of each 50 ms frame as one of 8 ids."""
    x = np.asarray(audio).mean(axis=0)
    hop = sample_rate // 20
    rms = np.sqrt([np.mean(x[i:i + hop] ** 2) for i in range(0, len(x) - hop + 1, hop)])
    if len(rms) < 2:
        raise ValueError("clip shorter than two 50 ms frames; pass longer clips")
    ids = np.minimum((rms * 16).astype(int), 7) + 4
    tokens = torch.tensor([1, *ids.tolist()], dtype=torch.long)
    return TokenSequence(tokens, torch.arange(len(tokens)) >= 1)


def test_human_judgements_with_bad_lines_skipped(tmp_path):
    data = tmp_path / "prefs"
    (data / "clips").mkdir(parents=True)
    save_audio(data / "clips" / "loud.wav", 0.8 * note(60, 0.5)[None], SR)
    save_audio(data / "clips" / "soft.wav", 0.1 * note(64, 0.5)[None], SR)
    save_audio(data / "clips" / "blip.wav", 0.5 * note(60, 0.03)[None], SR)
    (data / "clips" / "broken.wav").write_bytes(b"not audio at all")
    lines = [
        {"caption": "loud please", "chosen": "clips/loud.wav", "rejected": "clips/soft.wav"},  # 1 ok
        "this is not json",  # 2
        {"caption": "x", "chosen": "clips/missing.wav", "rejected": "clips/soft.wav"},  # 3
        {"caption": "x", "chosen": "clips/loud.wav"},  # 4
        {"prompt": "soft please", "a": "clips/loud.wav", "b": "clips/soft.wav", "choice": "b",
         "time": "2026-01-01T00:00:00+00:00", "settings": {}},  # 5 ok, soundlm serve's format
        {"caption": "x", "chosen": "clips/loud.wav", "rejected": "clips/loud.wav"},  # 6
        {"caption": "x", "chosen": "clips/broken.wav", "rejected": "clips/soft.wav"},  # 7
        "",  # 8 blank: ignored
        {"caption": "x", "chosen": "clips/blip.wav", "rejected": "clips/soft.wav"},  # 9 the tokenizer refuses it
        {"prompt": "x", "a": "clips/loud.wav", "b": "clips/soft.wav", "choice": "c"},  # 10
    ]
    jsonl = data / "judgements.jsonl"
    jsonl.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    out = tmp_path / "run" / "pairs.jsonl"
    result = read_human_pairs(jsonl, energy_tokens, out, progress=False)
    assert [g.index for g in result.groups] == [1, 5]
    first, fifth = preference_pairs(result.groups)
    assert first.caption == "loud please" and fifth.caption == "soft please"
    assert torch.equal(first.chosen.tokens, fifth.rejected.tokens)  # loud.wav both times, chosen then rejected
    reasons = {s.line: s.reason for s in result.skipped}
    assert sorted(reasons) == [2, 3, 4, 6, 7, 9, 10]
    assert "not valid JSON" in reasons[2] and "one JSON object per line" in reasons[2]
    assert "missing.wav: no such audio file; paths are relative to" in reasons[3]
    assert "'rejected' missing" in reasons[4]
    assert "same file" in reasons[6]
    assert "broken.wav" in reasons[7]
    assert "shorter than two 50 ms frames" in reasons[9]
    assert "must be \"a\" or \"b\"" in reasons[10]
    logged = [json.loads(x) for x in (out.parent / "pairs_errors.jsonl").read_text().splitlines()]
    assert [x["line"] for x in logged] == [2, 3, 4, 6, 7, 9, 10]
    # Resuming reads the two groups back and tokenizes nothing new.
    calls = []
    again = read_human_pairs(jsonl, lambda a, sr, c: calls.append(c) or energy_tokens(a, sr, c), out, progress=False)
    assert [g.to_json() for g in again.groups] == [g.to_json() for g in result.groups]
    assert calls == ["x"]  # skipped lines are tried again: only line 9's clip reaches the tokenizer (7's fails before)
    with open(jsonl, "a") as f:  # judgements added after the pairs were made: not the same pairs any more
        f.write(json.dumps(lines[0]) + "\n")
    with pytest.raises(ValueError, match="other settings.*sha256"):
        read_human_pairs(jsonl, energy_tokens, out, progress=False)
    with pytest.raises(FileNotFoundError, match="no such preference file"):
        read_human_pairs(tmp_path / "none.jsonl", energy_tokens, out, progress=False)
