"""MusicRL pieces: the DPO loss on a tiny real TokenLM, the music rewards on signals of known key and tempo."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from soundlm.lm.model import TokenLM, lm_tiny
from soundlm.stages import Stage
from soundlm.music.dpo import delay_logprobs, dpo_loss, frozen_reference, sequence_logprobs
from soundlm.music.rewards import (InstrumentReward, KeyReward, MuLanReward, MusicRequest, TempoReward, WeightedReward,
                                   key_credit, request_from_attributes, request_from_caption, tempo_credit)
from test_music_analysis import A_MINOR_CADENCE, C_MAJOR_CADENCE, SR, chords, click_track

V = 40


def tiny_lm(seed: int = 0) -> TokenLM:
    torch.manual_seed(seed)
    return TokenLM.from_config(lm_tiny(V, max_positions=64))


def sequences(seed: int, batch: int = 3, length: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(4, V, (batch, length), generator=g)
    tokens[:, 0] = 1  # BOS
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[:, :3] = False  # BOS and a two-token prompt
    return tokens, mask


# ---------------------------------------------------------------------------- DPO

def test_sequence_logprobs_sum_the_kept_token_logprobs():
    model = tiny_lm()
    tokens, mask = sequences(0, batch=1)
    labels = tokens.masked_fill(~mask, -100)
    mean_nll = model(tokens, labels=labels).loss  # mean over the kept targets
    assert sequence_logprobs(model, tokens, mask).item() == pytest.approx(-mean_nll.item() * int(mask.sum()), rel=1e-5)
    # Padding after a row's end (masked) does not change it.
    padded = torch.cat([tokens, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    pmask = torch.cat([mask, torch.zeros(1, 5, dtype=torch.bool)], dim=1)
    assert sequence_logprobs(model, padded, pmask).item() == pytest.approx(
        sequence_logprobs(model, tokens, mask).item(), rel=1e-5)
    with pytest.raises(ValueError, match="first token"):
        sequence_logprobs(model, tokens, torch.ones_like(mask))


def test_identical_pairs_give_log2_and_no_gradient():
    policy = tiny_lm()
    reference = frozen_reference(policy)
    with torch.no_grad():  # the policy has moved away from the reference: the test is not trivial
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    tokens, mask = sequences(1)
    chosen = sequence_logprobs(policy, tokens, mask)
    rejected = sequence_logprobs(policy, tokens.clone(), mask)
    with torch.no_grad():
        ref = sequence_logprobs(reference, tokens, mask)
    out = dpo_loss(chosen, rejected, ref, ref.clone(), beta=0.5)
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    out.loss.backward()
    grads = [p.grad for p in policy.parameters() if p.grad is not None]
    assert grads and max(float(g.abs().max()) for g in grads) < 1e-6


def test_one_step_raises_the_chosen_margin_and_the_reference_stays_frozen():
    policy = tiny_lm()
    reference = frozen_reference(policy)
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    chosen, cmask = sequences(2)
    rejected, rmask = sequences(3)

    def margin() -> float:
        with torch.no_grad():
            return float((sequence_logprobs(policy, chosen, cmask) - sequence_logprobs(policy, rejected, rmask)).mean())

    start = margin()
    opt = torch.optim.SGD(policy.parameters(), lr=0.5)
    with torch.no_grad():
        ref_c, ref_r = sequence_logprobs(reference, chosen, cmask), sequence_logprobs(reference, rejected, rmask)
    out = dpo_loss(sequence_logprobs(policy, chosen, cmask), sequence_logprobs(policy, rejected, rmask), ref_c, ref_r,
                   beta=0.1)
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6)  # policy == reference at the start
    out.loss.backward()
    opt.step()
    assert margin() > start + 1e-3
    assert all(not p.requires_grad and p.grad is None for p in reference.parameters())
    assert all(torch.equal(before[k], v) for k, v in reference.state_dict().items())
    assert not any(torch.equal(a, b) for a, b in zip(policy.parameters(), reference.parameters()) if a.dim() == 2)


def test_sft_term_adds_the_chosen_nll_per_token():
    lp = torch.tensor([-20.0, -30.0])
    out = dpo_loss(lp, lp, lp, lp, beta=0.1, sft_weight=0.5, chosen_tokens=torch.tensor([10, 10]))
    assert out.loss.item() == pytest.approx(math.log(2) + 0.5 * 2.5)
    with pytest.raises(ValueError, match="chosen_tokens"):
        dpo_loss(lp, lp, lp, lp, beta=0.1, sft_weight=0.5)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(lp, lp, lp, lp, beta=0.0)


# ---------------------------------------------------------------------------- DPO on a delay-pattern stage

DELAY_K, CARD, SEM, COND_Q, COND_C = 2, 8, 10, 3, 5


def delay_stage(seed: int = 0) -> Stage:
    """A tiny conditioned delay-pattern coarse stage (MusicLM's acoustic stage, `delay1`): prefix = condition ids,
    then semantic ids."""
    from soundlm.lm.model import DelayLM, DelayLMConfig
    from soundlm.stages import StageMeta, delay_prefix_offset, stage_layout

    layout = stage_layout("coarse", SEM, CARD, DELAY_K, DELAY_K, condition_size=COND_C)
    meta = StageMeta("coarse", 1.0, DELAY_K, DELAY_K, 8.0, 12.0, pattern="delay", condition_tokens=COND_Q,
                     condition_size=COND_C)
    torch.manual_seed(seed)
    model = DelayLM(DelayLMConfig(num_codebooks=DELAY_K, codebook_size=CARD, backbone=lm_tiny(1, max_positions=64),
                                  prefix_vocab_size=delay_prefix_offset(meta, layout) + COND_C + 1))
    return Stage(model, layout, meta)


def delay_sample(stage: Stage, seed: int, frames: int = 12, condition: bool = True):
    from soundlm.music.pairs import DelaySequence
    from soundlm.stages import Window

    rng = np.random.default_rng(seed)
    window = Window("r", 0.0, rng.integers(0, SEM, frames * 2 // 3), rng.integers(0, CARD, (DELAY_K, frames)),
                    rng.integers(0, COND_C, COND_Q) if condition else None)
    return DelaySequence.from_example(stage.example(window))


def test_delay_logprobs_are_minus_the_training_cross_entropy():
    from soundlm.stages import Window, collate, token_loss_sum

    stage = delay_stage()
    window = Window("r", 0.0, np.arange(8) % SEM, np.arange(2 * 12).reshape(2, 12) % CARD, np.array([1, 4, 0]))
    batch = collate([stage.example(window)], pad_id=stage.pad_id)
    assert int((batch["targets"] == -100).sum()) > 0  # the delay pads, which count nothing
    with torch.no_grad():
        nll = token_loss_sum(stage.logits(batch, torch.device("cpu")), batch["targets"])  # what training takes
        lp = delay_logprobs(stage.model, batch["input_ids"], batch["targets"], batch["prefix"])
    assert lp.shape == (1,) and lp.item() == pytest.approx(-nll.item(), rel=1e-5)


def test_delay_logprobs_of_a_row_alone_equal_it_in_a_padded_batch():
    from soundlm.music.pairs import TokenSequence
    from soundlm.train.prefer import sample_logprobs

    stage = delay_stage()
    model = stage.model.eval()
    # Shorter codes (padded on the right) with shorter prefixes (their own batches).
    samples = [delay_sample(stage, 0), delay_sample(stage, 1, frames=7), delay_sample(stage, 2, frames=9),
               delay_sample(stage, 3)]
    with torch.no_grad():
        batched = sample_logprobs(model, samples, stage.pad_id, torch.device("cpu"))
        alone = torch.cat([sample_logprobs(model, [s], stage.pad_id, torch.device("cpu")) for s in samples])
    assert torch.allclose(batched, alone, rtol=1e-5, atol=1e-4)
    assert len({s.prefix.shape[0] for s in samples}) > 1 and len({s.inputs.shape[1] for s in samples}) > 1
    flat = TokenSequence(torch.tensor([1, 5, 6]), torch.tensor([False, True, True]))
    with pytest.raises(ValueError, match="mix flat and delay-pattern"):
        sample_logprobs(model, [samples[0], flat], stage.pad_id, torch.device("cpu"))


def test_dpo_steps_raise_the_margin_of_a_conditioned_delay_stage():
    from soundlm.music.pairs import PreferencePair, TokenSequence
    from soundlm.train.prefer import PreferenceTrainer, PreferTrainConfig, logprob_margins

    stage = delay_stage()
    pairs = [PreferencePair("c", delay_sample(stage, 10 + i), delay_sample(stage, 20 + i)) for i in range(4)]
    cfg = PreferTrainConfig(pairs="x", steps=5, batch_size=4, lr=3e-3, warmup=1, beta=0.5)
    trainer = PreferenceTrainer(stage, pairs, cfg, torch.device("cpu"))
    before = logprob_margins(trainer.policy, pairs, stage.pad_id, torch.device("cpu"))
    trainer.begin(0)
    for step in range(cfg.steps):
        out = trainer.train_step(step)
    after = logprob_margins(trainer.policy, pairs, stage.pad_id, torch.device("cpu"))
    assert after.mean() > before.mean() + 0.5 and out["accuracy"] == 1.0
    ref = logprob_margins(trainer.reference, pairs, stage.pad_id, torch.device("cpu"))
    assert np.allclose(ref, before, atol=1e-4)  # the reference stayed the base
    flat = TokenSequence(torch.tensor([1, 5, 6]), torch.tensor([False, True, True]))
    with pytest.raises(ValueError, match="1 samples are not DelaySequences.*delay-pattern"):
        PreferenceTrainer(stage, pairs + [PreferencePair("c", pairs[0].chosen, flat)], cfg, torch.device("cpu"))


# ---------------------------------------------------------------------------- rewards

def test_key_credit_follows_the_mirex_weights():
    assert key_credit(0, "major", 0, "major") == 1.0
    assert key_credit(0, "major", 7, "major") == 0.5  # G major for C major: the dominant
    assert key_credit(0, "major", 9, "minor") == 0.3  # A minor: relative
    assert key_credit(9, "minor", 0, "major") == 0.3  # C major for A minor: relative
    assert key_credit(0, "major", 0, "minor") == 0.2  # parallel
    assert key_credit(0, "major", 2, "major") == 0.0


def test_key_reward_on_known_keys():
    reward = KeyReward()
    c_major = chords(C_MAJOR_CADENCE)
    a_minor = chords(A_MINOR_CADENCE)
    want_c = MusicRequest("a piece in C major", tonic=0, mode="major")
    assert reward.applies(want_c) and not reward.applies(MusicRequest("anything"))
    assert reward.score(c_major, SR, want_c) == 1.0
    assert reward.score(a_minor, SR, MusicRequest("", tonic=9, mode="minor")) == 1.0
    assert reward.score(c_major, SR, MusicRequest("", tonic=5, mode="major")) == 0.5  # asked F: C is its dominant
    assert reward.score(a_minor, SR, want_c) == 0.3  # the relative minor
    assert reward.score(chords(C_MAJOR_CADENCE, transpose=1), SR, want_c) == 0.0
    assert reward.score(np.zeros(SR, dtype=np.float32), SR, want_c) == 0.0


def test_tempo_credit_and_reward():
    assert tempo_credit(120, 120) == 1.0
    assert tempo_credit(128, 120) == 1.0  # within 8%
    assert tempo_credit(60, 120) == 0.5 and tempo_credit(240, 120) == 0.5  # half / double beat level
    assert tempo_credit(120 * 1.12, 120) == pytest.approx(0.5)  # half-way down the fall-off
    assert tempo_credit(90, 120) == 0.0 and tempo_credit(0, 120) == 0.0
    reward = TempoReward()
    clicks = click_track(120)
    assert reward.score(clicks, SR, MusicRequest("", tempo_bpm=120)) == 1.0
    assert reward.score(clicks, SR, MusicRequest("", tempo_bpm=60)) == 0.5
    assert reward.score(clicks, SR, MusicRequest("", tempo_bpm=88)) == 0.0


def test_requests_from_captions_and_attributes():
    from soundlm.data.music import MusicAttributes

    r = request_from_caption("Upbeat flute melody in F# minor, 3/4, 138 BPM")
    assert (r.tonic, r.mode, r.tempo_bpm, r.instrument) == (6, "minor", 138.0, "flute")
    r = request_from_caption("choir (aahs), Bb major, 4/4, 72 bpm, quiet")
    assert (r.tonic, r.mode, r.tempo_bpm, r.instrument) == (10, "major", 72.0, "choir")
    r = request_from_caption("a quartet movement for string orchestra in g minor, about 88 beats per minute")
    assert (r.tonic, r.mode, r.tempo_bpm, r.instrument) == (7, "minor", 88.0, "strings")
    assert request_from_caption("something calm") == MusicRequest("something calm")
    music = MusicAttributes(piece="bach/x", composer="bach", form="chorale", instrument="organ", program=19, tonic=2,
                            mode="major", key="D major", tempo_bpm=104, meter="4/4", loudness="loud", velocity=115,
                            loudness_db=-10.0, key_confidence=0.9, transposition=0)
    # The attributes win over the caption's words (which may be vaguer or wrong).
    r = request_from_attributes(music, "a slow piano piece")
    assert (r.tonic, r.mode, r.tempo_bpm, r.instrument, r.caption) == (2, "major", 104.0, "organ", "a slow piano piece")


def test_instrument_reward_is_the_classifier_probability():
    from soundlm.music.instrument import InstrumentClassifier, InstrumentConfig

    torch.manual_seed(0)
    clf = InstrumentClassifier(InstrumentConfig(classes=["organ", "piano"], channels=8)).eval()
    reward = InstrumentReward(clf)
    audio = chords(C_MAJOR_CADENCE)
    probs = clf.predict(audio, SR).probs
    assert reward.score(audio, SR, MusicRequest("", instrument="piano")) == pytest.approx(probs["piano"])
    assert not reward.applies(MusicRequest("", instrument="flute"))  # the classifier does not know it


class StandInMuLan:
    """A fixed embedding in place of MuLan (the real one is `soundlm.music.mulan`): chroma-like
    audio features and caption word hashes, both L2-normalised."""

    sample_rate = 8000

    def embed_audio(self, audio: torch.Tensor) -> torch.Tensor:
        spec = torch.fft.rfft(audio, n=64).abs()[:, :16]  # [B, 16]
        return torch.nn.functional.normalize(spec, dim=-1)

    def embed_text(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), 16)
        for i, text in enumerate(texts):
            for word in text.split():
                out[i, sum(map(ord, word)) % 16] += 1
        return torch.nn.functional.normalize(out, dim=-1)


def test_mulan_reward_is_the_embedding_cosine_at_mulans_rate():
    from soundlm.audio import resample

    mulan = StandInMuLan()
    audio = chords(C_MAJOR_CADENCE)
    request = MusicRequest("a calm piano piece")
    expected = float(mulan.embed_audio(torch.from_numpy(resample(audio[None], SR, 8000)))[0]
                     @ mulan.embed_text([request.caption])[0])
    assert MuLanReward(mulan).score(audio, SR, request) == pytest.approx(expected, abs=1e-6)


def test_weighted_reward_renormalises_over_what_the_request_asks():
    audio = np.concatenate([chords(C_MAJOR_CADENCE)] * 2)
    key, tempo = KeyReward(), TempoReward()
    both = WeightedReward([(key, 3.0), (tempo, 1.0)])
    only_key = MusicRequest("", tonic=0, mode="major")
    assert both.score(audio, SR, only_key) == key.score(audio, SR, only_key) == 1.0
    full = MusicRequest("", tonic=0, mode="major", tempo_bpm=300)
    parts = both.components(audio, SR, full)
    assert set(parts) == {"key", "tempo"}
    assert both.score(audio, SR, full) == pytest.approx((3 * parts["key"] + parts["tempo"]) / 4)
    assert not both.applies(MusicRequest("nothing asked")) and math.isnan(both.score(audio, SR, MusicRequest("x")))
    with pytest.raises(ValueError, match="weights"):
        WeightedReward([(key, 0.0)])
