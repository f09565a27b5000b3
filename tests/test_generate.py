
import pytest
import torch

from soundlm.lm import (DelayLM, DelayLMConfig, SamplingParams, TokenLM, generate, generate_delayed, lm_tiny)
from soundlm.lm.model import LMConfig
from soundlm.patterns import acoustic_allowed_fn, coarse_sequence, delay_codes, delay_inputs, undelay_codes
from soundlm.vocab import VocabLayout

GREEDY = SamplingParams(temperature=0.0)


def tiny_lm(vocab: int = 40, max_positions: int = 64, kv_heads: int | None = None) -> TokenLM:
    cfg = lm_tiny(vocab, max_positions=max_positions)
    cfg.num_kv_heads = kv_heads
    return TokenLM.from_config(cfg).eval()


@pytest.mark.parametrize("kv_heads", [None, 2])
def test_cached_decoding_matches_full_forward(kv_heads):
    m = tiny_lm(kv_heads=kv_heads)
    x = torch.randint(0, 40, (3, 24))
    full = m(x).logits  # [B, T, V]
    cache = m.new_cache(3, 32)
    got = [m.step(x[:, :10], cache, 0)]  # prefill
    got.append(m.step(x[:, 10:14], cache, 10))  # a chunk after cached positions
    ends = [9, 13]
    for t in range(14, 24):
        got.append(m.step(x[:, t:t + 1], cache, t))
        ends.append(t)
    assert cache.length == 24
    assert torch.allclose(torch.stack(got, 1), full[:, ends], atol=1e-5, rtol=1e-4)
    # reset() makes the cache reusable from position 0.
    cache.reset()
    assert cache.length == 0
    assert torch.allclose(m.step(x[:, :5], cache, 0), full[:, 4], atol=1e-5)


def test_cache_is_preallocated_and_bounded():
    m = tiny_lm()
    cache = m.new_cache(2, 8)
    k_ptr = cache.k.data_ptr()
    m.step(torch.zeros(2, 8, dtype=torch.long), cache, 0)
    assert cache.k.data_ptr() == k_ptr and cache.k.shape == (2, 2, 4, 8, 16)
    with pytest.raises(ValueError, match="KV cache holds 8 positions"):
        m.step(torch.zeros(2, 1, dtype=torch.long), cache, 8)


def test_greedy_generation_equals_uncached_reference(monkeypatch):
    m = tiny_lm()
    prompt = torch.randint(0, 40, (2, 6))
    fast = generate(m, prompt, 20, GREEDY)
    assert fast.shape == (2, 26) and torch.equal(fast[:, :6], prompt)
    ref = prompt
    for _ in range(20):
        ref = torch.cat([ref, m(ref).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert torch.equal(fast, ref)


def test_windowed_generation_slides_past_max_positions(monkeypatch):
    m = tiny_lm(max_positions=16)
    prompt = torch.randint(0, 40, (2, 20))  # already longer than the context
    fast = generate(m, prompt, 30, GREEDY, window_keep=10)
    assert fast.shape == (2, 50) and torch.equal(fast[:, :20], prompt)
    # The HF fallback recomputes each window from scratch: same windows, same tokens.
    monkeypatch.setattr(TokenLM, "fast_decoding", property(lambda self: False))
    slow = generate(m, prompt, 30, GREEDY, window_keep=10)
    assert torch.equal(fast, slow)


def test_constrained_generation_and_eos():
    layout = VocabLayout(semantic_size=10, codebook_size=6, num_codebooks=3)
    m = tiny_lm(layout.vocab_size)
    seq = coarse_sequence(torch.randint(0, 10, (4, 5)), torch.randint(0, 6, (4, 3, 1)), layout, eos=False)
    prompt = seq.tokens[:, : seq.prefix_len]
    allowed = acoustic_allowed_fn(layout, seq.prefix_len, num_levels=3)
    for params in (SamplingParams(1.5), SamplingParams(1.0, top_k=3), SamplingParams(0.8, top_p=0.7), GREEDY):
        out = generate(m, prompt, 30, params, allowed, torch.Generator().manual_seed(0))
        for pos in range(seq.prefix_len, 30 + seq.prefix_len):
            lo, hi = allowed(pos)
            assert bool(((out[:, pos] >= lo) & (out[:, pos] < hi)).all())
    # EOS: row 0 may only say EOS at step 2, row 1 at step 4; generation stops when all are done
    # and a finished row is padded.
    t0 = prompt.shape[1]

    def eos_at(pos: int) -> torch.Tensor:
        mask = torch.zeros(4, layout.vocab_size, dtype=torch.bool)
        mask[:, layout.range_of("acoustic")[0]:] = True
        for row, step in ((0, 2), (1, 4), (2, 4), (3, 4)):
            if pos - t0 == step:
                mask[row] = False
                mask[row, layout.eos_id] = True
        return mask

    out = generate(m, prompt, 10, SamplingParams(1.0), eos_at, eos_id=layout.eos_id, pad_id=layout.pad_id)
    assert out.shape[1] == t0 + 5
    assert out[0, t0 + 2] == layout.eos_id and out[0, t0 + 3:].eq(layout.pad_id).all()
    assert out[1:, -1].eq(layout.eos_id).all() and not out[:, t0:t0 + 2].eq(layout.eos_id).any()


def test_seeded_generation_is_deterministic():
    m = tiny_lm()
    prompt = torch.randint(0, 40, (2, 4))
    a = generate(m, prompt, 15, SamplingParams(1.0, top_k=10), generator=torch.Generator().manual_seed(3))
    b = generate(m, prompt, 15, SamplingParams(1.0, top_k=10), generator=torch.Generator().manual_seed(3),
                 cache=m.new_cache(2, 64))
    assert torch.equal(a, b)


def test_bad_prompt_errors():
    m = tiny_lm()
    with pytest.raises(ValueError, match="int64"):
        generate(m, torch.zeros(1, 3), 2)
    with pytest.raises(ValueError, match=r"prompt ids must lie in \[0, 40\)"):
        generate(m, torch.tensor([[41]]), 2)
    with pytest.raises(ValueError, match=r"\[B, T0\]"):
        generate(m, torch.zeros(1, 0, dtype=torch.long), 2)


def test_delay_cached_step_matches_full_and_generation_keeps_prompt():
    cfg = DelayLMConfig(num_codebooks=3, codebook_size=8, backbone=lm_tiny(1, 64), prefix_vocab_size=5)
    m = DelayLM(cfg).eval()
    codes = torch.randint(0, 8, (2, 3, 6))
    inputs = delay_inputs(delay_codes(codes, cfg.pad_id), cfg.pad_id)  # [B, K, S]
    prefix = torch.randint(0, 5, (2, 2))
    full = m(inputs, prefix=prefix).logits  # [B, K, S, card]
    cache = m.new_cache(2, 16)
    got = [m.step(inputs[:, :, :3], cache, 0, prefix)]
    for s in range(3, inputs.shape[2]):
        got.append(m.step(inputs[:, :, s:s + 1], cache, 2 + s))
    assert torch.allclose(torch.stack(got, 2), full[:, :, 2:], atol=1e-5)

    out = generate_delayed(m, codes[:, :, :4], 5, SamplingParams(1.0), torch.Generator().manual_seed(0), prefix)
    assert out.shape == (2, 3, 9) and torch.equal(out[:, :, :4], codes[:, :, :4])
    assert int(out.max()) < 8  # the pad id never lands in real frames
    # Greedy decoding equals an uncached reference that re-runs the full model per step.
    greedy = generate_delayed(m, codes[:, :, :2], 3, GREEDY, prefix=prefix)
    ref = delay_codes(torch.cat([codes[:, :, :2], torch.zeros(2, 3, 3, dtype=torch.long)], 2), cfg.pad_id)
    for s in range(2, ref.shape[2]):
        logits = m(delay_inputs(ref, cfg.pad_id)[:, :, : s + 1], prefix=prefix).logits[:, :, s]  # [B, K, card]
        for k in range(3):
            if 2 <= s - k < 5:  # a generated frame (not prompt, not a delay pad)
                ref[:, k, s] = logits[:, k].argmax(-1)
    assert torch.equal(greedy, undelay_codes(ref))


def test_tiny_model_learns_and_reproduces_a_pattern():
    torch.manual_seed(0)
    period = [5, 9, 3, 12, 7, 7, 2, 14]
    vocab, length = 16, 40

    def batch(n):
        phase = torch.randint(0, len(period), (n,))
        idx = (phase[:, None] + torch.arange(length)[None]) % len(period)
        return torch.tensor(period)[idx]

    m = TokenLM.from_config(LMConfig(vocab, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                                     max_positions=64))
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    m.train()
    for _ in range(150):
        x = batch(16)
        loss = m(x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1, f"training did not converge (loss {loss.item():.3f})"
    prompt = batch(3)[:, :4]
    out = generate(m.eval(), prompt, 60, SamplingParams(temperature=0.3), generator=torch.Generator().manual_seed(0))
    # Every next token follows the pattern (windowed past max_positions=64 too).
    nxt = {a: b for a, b in zip(period, period[1:] + period[:1]) if period.count(a) == 1}
    for row in out.tolist():
        for a, b in zip(row, row[1:]):
            if a in nxt:
                assert b == nxt[a]


def test_left_padded_batch_decodes_each_row_as_alone(monkeypatch):
    from soundlm.lm.generate import left_pad_prompts

    torch.manual_seed(1)
    m = tiny_lm(max_positions=64)
    prompts = [torch.randint(1, 40, (n,)) for n in (3, 11, 7)]
    tokens, pad = left_pad_prompts(prompts, pad_id=0)
    assert tokens.shape == (3, 11) and pad.tolist() == [8, 0, 4]
    batched = generate(m, tokens, 25, GREEDY, left_pad=pad)
    for row, p in enumerate(prompts):
        alone = generate(m, p[None], 25, GREEDY)
        assert torch.equal(batched[row, pad[row]:], alone[0]), f"row {row} decodes differently when padded"
    # The first step's logits agree to float rounding, not just their argmax.
    cache = m.new_cache(3, 16)
    cache.reset(pad)
    padded_logits = m.step(tokens, cache, 0)
    for row, p in enumerate(prompts):
        assert torch.allclose(padded_logits[row], m.step(p[None], m.new_cache(1, 16), 0)[0], atol=1e-5)
    # The uncached HF fallback masks and positions the pads the same way.
    monkeypatch.setattr(TokenLM, "fast_decoding", property(lambda self: False))
    assert torch.equal(generate(m, tokens, 25, GREEDY, left_pad=pad), batched)


def test_left_pad_errors():
    m = tiny_lm()
    with pytest.raises(ValueError, match="left_pad must be"):
        generate(m, torch.ones(2, 4, dtype=torch.long), 3, left_pad=torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="left_pad must be"):
        generate(m, torch.ones(2, 4, dtype=torch.long), 3, left_pad=torch.tensor([1]))


def test_head_rows_are_the_full_logits_slice():
    m = tiny_lm()
    x = torch.randint(0, 40, (2, 6))
    full = m.step(x, m.new_cache(2, 8), 0)
    assert torch.allclose(m.step(x, m.new_cache(2, 8), 0, rows=(10, 25)), full[:, 10:25], atol=1e-6)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        m.step(x, m.new_cache(2, 8), 0, rows=(30, 41))


def test_delay_sliding_window_matches_full_forward_at_the_seam():
    cfg = DelayLMConfig(num_codebooks=3, codebook_size=8, backbone=lm_tiny(1, 12), prefix_vocab_size=5)
    torch.manual_seed(2)
    m = DelayLM(cfg).eval()
    prompt = torch.randint(0, 8, (2, 3, 4))
    prefix = torch.randint(0, 5, (2, 2))
    room, keep = 12 - 2, 4  # input columns beside the prefix; kept after a slide
    out = generate_delayed(m, prompt, 14, GREEDY, prefix=prefix, window_keep=keep)  # 20 columns > room
    assert out.shape == (2, 3, 18) and torch.equal(out[:, :, :4], prompt)
    # Reference: every column from a full (uncached) forward over prefix + the window's input columns,
    # the window sliding by the same rule: when full, keep the last `keep` columns.
    seq = torch.full((2, 3, 21), cfg.pad_id, dtype=torch.long)
    seq[:, :, 1:] = delay_codes(torch.cat([prompt, torch.zeros(2, 3, 14, dtype=torch.long)], 2), cfg.pad_id)
    begin, slid = 0, 0
    for s in range(4, 20):
        if s + 1 - begin > room:
            begin, slid = s + 1 - keep, slid + 1
        logits = m(seq[:, :, begin:s + 1], prefix=prefix).logits[:, :, -1]  # [B, K, card]
        for k in range(3):
            if 4 <= s - k < 18:  # a generated frame (not prompt, not a delay pad)
                seq[:, k, s + 1] = logits[:, k].argmax(-1)
    assert slid >= 2  # the seam was crossed (twice)
    assert torch.equal(out, undelay_codes(seq[:, :, 1:]))


def test_delay_window_errors():
    cfg = DelayLMConfig(num_codebooks=2, codebook_size=8, backbone=lm_tiny(1, 8), prefix_vocab_size=5)
    m = DelayLM(cfg).eval()
    with pytest.raises(ValueError, match="shorten the prefix"):
        generate_delayed(m, torch.zeros(1, 2, 1, dtype=torch.long), 3, prefix=torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="window_keep"):
        generate_delayed(m, torch.zeros(1, 2, 1, dtype=torch.long), 3, window_keep=8)


def test_decoding_follows_weights_updated_in_place_and_swapped_layers():
    from soundlm.lm.quantize import quantize_lm

    m = tiny_lm()
    x = torch.randint(0, 40, (2, 8))
    m.step(x, m.new_cache(2, 8), 0)  # the decoder is built here
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m.train()
    m(x, labels=x).loss.backward()
    opt.step()  # in place, as training does
    m.eval()
    assert torch.allclose(m.step(x, m.new_cache(2, 8), 0), m(x).logits[:, -1], atol=1e-5)
    quantize_lm(m, "int8")  # swaps the layers the decoder runs
    with torch.inference_mode():
        assert torch.allclose(m.step(x, m.new_cache(2, 8), 0), m(x).logits[:, -1], atol=1e-4)
