"""Conditioned stages and classifier-free guidance: condition ids after BOS, NULL, one batched forward."""

import numpy as np
import pytest
import torch

from soundlm.lm import DelayLM, DelayLMConfig, SamplingParams, TokenLM, generate, generate_delayed, lm_tiny
import importlib

generate_module = importlib.import_module("soundlm.lm.generate")
from soundlm.lm.generate import guided_logits, left_pad_prompts
from soundlm.patterns import null_condition, semantic_sequence
from soundlm.stages import StageMeta, Window, stage_layout, window_example
from soundlm.vocab import VocabLayout

GREEDY = SamplingParams(temperature=0.0)
Q, C = 3, 8  # condition ids per clip, condition vocabulary


def conditioned_layout() -> VocabLayout:
    return stage_layout("semantic", 10, 0, 0, 0, condition_size=C)


def conditioned_lm(max_positions: int = 64) -> TokenLM:
    torch.manual_seed(0)
    layout = conditioned_layout()
    return TokenLM.from_config(lm_tiny(layout.vocab_size, max_positions=max_positions), layout=layout).eval()


def prompts(layout: VocabLayout, condition: torch.Tensor, semantic: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(conditional, unconditional) prompts: BOS m.. s.. and BOS NULL.. s.."""
    cond = semantic_sequence(semantic, layout, eos=False, condition=condition).tokens
    null = null_condition(condition.shape[1], layout, semantic.shape[0])
    return cond, semantic_sequence(semantic, layout, eos=False, condition=null).tokens


def record_sampled_logits(monkeypatch) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    real = generate_module.sample_next_token

    def spy(logits, *args, **kwargs):
        seen.append(logits.clone())
        return real(logits, *args, **kwargs)

    monkeypatch.setattr(generate_module, "sample_next_token", spy)
    return seen


def test_layout_condition_block_comes_last_and_old_layouts_round_trip():
    plain = VocabLayout(semantic_size=10, codebook_size=4, num_codebooks=2)
    cond = VocabLayout(semantic_size=10, codebook_size=4, num_codebooks=2, condition_size=C)
    # Every id of the unconditioned layout keeps its place; the condition ids and NULL follow.
    assert cond.range_of("acoustic") == plain.range_of("acoustic") == (14, 22)
    assert cond.range_of("condition") == (22, 22 + C) and cond.condition_null_id == 22 + C
    assert cond.vocab_size == plain.vocab_size + C + 1
    assert "condition_size" not in plain.to_dict() and VocabLayout.from_dict(plain.to_dict()) == plain
    assert VocabLayout.from_dict(cond.to_dict()) == cond
    assert cond.condition_to_global(torch.tensor([0, C])).tolist() == [22, 22 + C]
    with pytest.raises(ValueError, match="no condition ids"):
        plain.range_of("condition")
    with pytest.raises(ValueError, match="condition ids must lie"):
        cond.condition_to_global(torch.tensor([C + 1]))


def test_condition_ids_follow_bos_and_carry_no_loss():
    layout = conditioned_layout()
    window = Window("r", 0.0, semantic=np.array([1, 2, 3]), acoustic=np.zeros((0, 0), dtype=np.int64),
                    condition=np.array([4, 0, 7]))
    ex = window_example(window, "semantic", layout, 0, condition_tokens=Q)
    m0 = layout.condition_offset
    assert ex.inputs.tolist() == [layout.bos_id, m0 + 4, m0, m0 + 7, *layout.semantic_to_global(torch.tensor([1, 2]))
                                  .tolist()]
    # Targets: nothing for the condition ids, then the semantic ids.
    assert ex.targets.tolist() == [-100, -100, -100, *layout.semantic_to_global(torch.tensor([1, 2, 3])).tolist()]
    # A record without condition ids reads NULLs.
    bare = window_example(Window("r", 0.0, np.array([1, 2]), np.zeros((0, 0), dtype=np.int64)), "semantic",
                          layout, 0, condition_tokens=Q)
    assert bare.inputs[1:1 + Q].tolist() == [layout.condition_null_id] * Q


def test_one_batched_forward_equals_the_mix_of_two_separate_forwards(monkeypatch):
    m, layout = conditioned_lm(), conditioned_layout()
    cond, uncond = prompts(layout, torch.tensor([[1, 2, 3], [4, 5, 6]]), torch.tensor([[0, 1], [2, 3]]))
    seen = record_sampled_logits(monkeypatch)
    g = 3.0
    gen = torch.Generator().manual_seed(0)
    out = generate(m, cond, 8, SamplingParams(temperature=1.0), generator=gen, guidance=g, uncond_prompt=uncond)
    assert len(seen) == 8 and seen[0].shape == (2, layout.vocab_size)
    t0 = cond.shape[1]
    for i, logits in enumerate(seen):
        new = out[:, t0: t0 + i]
        with torch.no_grad():
            c = m(torch.cat([cond, new], 1)).logits[:, -1]
            u = m(torch.cat([uncond, new], 1)).logits[:, -1]
        assert torch.allclose(logits, u + g * (c - u), atol=1e-4, rtol=1e-4), i
    assert torch.equal(guided_logits(torch.stack([c, u]).flatten(0, 1), g), u + g * (c - u))


def test_guidance_one_or_no_twin_is_todays_path_bit_for_bit():
    m, layout = conditioned_lm(), conditioned_layout()
    cond, uncond = prompts(layout, torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1]]))
    params = SamplingParams(temperature=1.0)
    plain = generate(m, cond, 10, params, generator=torch.Generator().manual_seed(5))
    for kwargs in ({"guidance": 1.0, "uncond_prompt": uncond}, {"guidance": 3.0}):
        assert torch.equal(generate(m, cond, 10, params, generator=torch.Generator().manual_seed(5), **kwargs), plain)


def test_null_condition_under_guidance_is_the_unconditional_model():
    m, layout = conditioned_lm(), conditioned_layout()
    _, uncond = prompts(layout, torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1]]))
    # cond == uncond: the mix is the unconditional logits whatever the guidance.
    guided = generate(m, uncond, 12, GREEDY, guidance=4.0, uncond_prompt=uncond)
    assert torch.equal(guided, generate(m, uncond, 12, GREEDY))


def test_left_padded_guided_batch_decodes_each_row_as_alone():
    m, layout = conditioned_lm(), conditioned_layout()
    rows = [prompts(layout, torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1, 2, 3]])),
            prompts(layout, torch.tensor([[7, 0, 5]]), torch.tensor([[4]]))]
    alone = [generate(m, c, 9, GREEDY, guidance=2.5, uncond_prompt=u)[0, c.shape[1]:] for c, u in rows]
    cond, pad = left_pad_prompts([c[0] for c, _ in rows])
    uncond, pad_u = left_pad_prompts([u[0] for _, u in rows])
    assert torch.equal(pad, pad_u)
    batch = generate(m, cond, 9, GREEDY, left_pad=pad, guidance=2.5, uncond_prompt=uncond)
    for b in range(2):
        assert torch.equal(batch[b, cond.shape[1]:], alone[b])


def test_uncond_twin_of_another_shape_is_refused():
    m, layout = conditioned_lm(), conditioned_layout()
    cond, uncond = prompts(layout, torch.tensor([[1, 2, 3]]), torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="uncond_prompt must match"):
        generate(m, cond, 2, GREEDY, guidance=2.0, uncond_prompt=uncond[:, :-1])


def test_delayed_guidance_is_one_batched_forward(monkeypatch):
    torch.manual_seed(0)
    cfg = DelayLMConfig(num_codebooks=2, codebook_size=6, backbone=lm_tiny(1, max_positions=64),
                        prefix_vocab_size=10 + C + 1)
    m = DelayLM(cfg).eval()
    semantic = torch.tensor([[1, 2, 3, 4]])
    cond = torch.cat([torch.tensor([[10 + 2, 10 + 5, 10 + 1]]), semantic], 1)  # condition ids first
    uncond = torch.cat([torch.full((1, Q), 10 + C), semantic], 1)
    seen = record_sampled_logits(monkeypatch)
    g = 2.0
    out = generate_delayed(m, torch.zeros(1, 2, 0, dtype=torch.long), 5, SamplingParams(temperature=1.0),
                           generator=torch.Generator().manual_seed(1), prefix=cond, guidance=g,
                           uncond_prefix=uncond)
    assert out.shape == (1, 2, 5)
    from soundlm.patterns import delay_codes, delay_inputs

    delayed = delay_codes(out, cfg.pad_id)  # [1, K, S]
    inputs = delay_inputs(delayed, cfg.pad_id)
    with torch.no_grad():
        c = m(inputs, prefix=cond).logits  # [1, K, S, card]
        u = m(inputs, prefix=uncond).logits
    want = (u + g * (c - u))[0].transpose(0, 1)  # [S, K, card]
    for s, logits in enumerate(seen):
        assert torch.allclose(logits.view(2, -1), want[s], atol=1e-4, rtol=1e-4), s
    plain = generate_delayed(m, torch.zeros(1, 2, 0, dtype=torch.long), 5, SamplingParams(temperature=1.0),
                             generator=torch.Generator().manual_seed(1), prefix=cond)
    same = generate_delayed(m, torch.zeros(1, 2, 0, dtype=torch.long), 5, SamplingParams(temperature=1.0),
                            generator=torch.Generator().manual_seed(1), prefix=cond, guidance=1.0,
                            uncond_prefix=uncond)
    assert torch.equal(plain, same)


def test_trained_stage_follows_its_condition_and_guidance_sharpens_it():
    """A tiny conditioned semantic stage trained (with condition dropout) on recordings whose semantic
    ids are their first condition id: greedy decoding then writes the id it is given."""
    from soundlm.stages import build_stage
    from soundlm.store import StoreManifest, StoreTokens, TokenRecord
    from soundlm.train.lm_data import stage_dataset
    from soundlm.stages import collate, token_loss_sum

    manifest = StoreManifest(semantic_frame_rate=10.0, semantic_vocab_size=C, condition_tokens=Q,
                             condition_codebook_size=C)
    stage = build_stage("semantic", manifest, preset="tiny", window_seconds=1.0)
    assert stage.meta.conditioned and stage.layout.condition_size == C
    rng = np.random.default_rng(0)
    records = []
    for i in range(32):
        c = rng.integers(0, C, size=Q)
        records.append(TokenRecord(id=f"r{i}", semantic=np.full(20, c[0]), acoustic=np.zeros((0, 0), np.int64),
                                   condition=c))
    tokens = StoreTokens(records, manifest, semantic_rate=10.0, acoustic_rate=1.0)
    data = stage_dataset(stage, tokens, range(32), seed=0, condition_dropout=0.1)
    dropped = sum(data.window(i).condition[0] == C for i in range(200))
    assert 5 <= dropped <= 40  # about 10% of crops see NULL
    torch.manual_seed(0)
    opt = torch.optim.AdamW(stage.model.parameters(), lr=3e-3)
    stage.model.train()
    for step in range(120):
        batch = collate([data[step * 16 + j] for j in range(16)], stage.pad_id)
        logits = stage.logits(batch, torch.device("cpu"))
        loss = token_loss_sum(logits, batch["targets"]) / (batch["targets"] != -100).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    stage.model.eval()
    layout = stage.layout
    firsts = set()
    for r in records[:6]:
        cond, uncond = prompts(layout, torch.from_numpy(r.condition)[None], torch.zeros(1, 0, dtype=torch.long))
        out = generate(stage.model, cond, 6, GREEDY, allowed_fn=lambda pos: layout.range_of("semantic"))
        assert layout.global_to_semantic(out[0, cond.shape[1]:]).tolist() == [r.condition[0]] * 6
        guided = generate(stage.model, cond, 6, GREEDY, allowed_fn=lambda pos: layout.range_of("semantic"),
                          guidance=3.0, uncond_prompt=uncond)
        assert torch.equal(guided, out)
        firsts.add(int(r.condition[0]))
    # The condition alone decides (the prompts are otherwise equal): several conditions, several outputs.
    assert len(firsts) >= 3
