"""Weight-only int8 and bf16 decoding (`soundlm.lm.quantize`): what they cost in logits and tokens."""

import copy

import pytest
import torch
from torch import nn

from soundlm.lm import DelayLM, DelayLMConfig, SamplingParams, TokenLM, generate, generate_delayed, lm_tiny
from soundlm.lm.quantize import Int8Linear, quantize_lm, quantized_mode

GREEDY = SamplingParams(temperature=0.0)


def tiny(vocab: int = 48, seed: int = 0) -> TokenLM:
    torch.manual_seed(seed)
    return TokenLM.from_config(lm_tiny(vocab, max_positions=64)).eval()


def test_int8_replaces_the_block_and_head_linears_and_keeps_embeddings():
    m = quantize_lm(tiny(), "int8")
    assert quantized_mode(m) == "int8"
    kinds = {type(mod) for mod in m.modules() if isinstance(mod, (nn.Linear, Int8Linear))}
    assert kinds == {Int8Linear}
    assert isinstance(m.hf.get_output_embeddings(), Int8Linear)
    assert m.hf.get_input_embeddings().weight.dtype == torch.float32
    assert m.fast_decoding  # the cached decoder runs Int8Linear layers
    # The int8 copy reads a quarter of the bytes of the fp32 weights it replaces.
    lin = nn.Linear(64, 32)
    q = Int8Linear.from_linear(lin)
    assert q.qweight.dtype == torch.int8 and q.qweight.numel() * 1 == lin.weight.numel() * lin.weight.element_size() // 4


def test_int8_logits_stay_within_the_quantization_bound():
    """Per-row absmax int8 weights and bf16 activations move each logit by a small fraction of the logit range."""
    m = tiny()
    q = quantize_lm(copy.deepcopy(m), "int8")
    x = torch.randint(0, 48, (4, 32), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref, got = m(x).logits, q(x).logits  # [B, T, V]
    spread = (ref.amax(-1) - ref.amin(-1)).mean()
    assert (got - ref).abs().max() <= 0.03 * spread
    # The cached decoder on the int8 model gives the int8 model's own full-forward logits.
    cache = q.new_cache(4, 32)
    steps = [q.step(x[:, :8], cache, 0)] + [q.step(x[:, t:t + 1], cache, t) for t in range(8, 32)]
    assert torch.allclose(torch.stack(steps, 1), got[:, 7:], atol=1e-4)


def test_int8_greedy_decoding_matches_fp32_wherever_the_margin_exceeds_the_error():
    """Along 48 fp32 greedy steps, the int8 model picks the same token at every step whose fp32
    top-1 margin is more than twice the largest int8 logit error (the steps where rounding cannot flip it)."""
    m = tiny(seed=3)
    q = quantize_lm(copy.deepcopy(m), "int8")
    prompt = torch.randint(0, 48, (4, 5), generator=torch.Generator().manual_seed(2))
    ref = generate(m, prompt, 48, GREEDY)  # [B, 53]
    with torch.inference_mode():
        f, i8 = m(ref).logits[:, 4:-1], q(ref).logits[:, 4:-1]  # the logits that chose each new token
    error = (f - i8).abs().amax(-1)  # [B, 48]
    top2 = f.topk(2, dim=-1).values
    clear = (top2[..., 0] - top2[..., 1]) > 2 * error
    assert clear.float().mean() > 0.5  # most steps are decided beyond the int8 error
    assert torch.equal(i8.argmax(-1)[clear], ref[:, 5:][clear])
    # Decoding with the cache agrees with that: the int8 greedy run follows fp32 up to its first unclear step.
    out = generate(q, prompt, 48, GREEDY)
    for row in range(4):
        unclear = (~clear[row]).nonzero()
        n = int(unclear[0]) if len(unclear) else 48
        assert torch.equal(out[row, 5:5 + n], ref[row, 5:5 + n])


def test_bf16_decodes_and_delay_models_quantize():
    m = tiny()
    b = quantize_lm(copy.deepcopy(m), "bf16")
    assert quantized_mode(b) == "bf16" and b.hf.lm_head.weight.dtype == torch.bfloat16
    out = generate(b, torch.randint(0, 48, (2, 4)), 8, SamplingParams(1.0), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, 12)
    cfg = DelayLMConfig(num_codebooks=2, codebook_size=16, backbone=lm_tiny(1, 32), prefix_vocab_size=4)
    d = DelayLM(cfg).eval()
    qd = quantize_lm(copy.deepcopy(d), "int8")
    assert all(isinstance(h, Int8Linear) for h in qd.heads)
    prompt = torch.randint(0, 16, (2, 2, 3))
    out = generate_delayed(qd, prompt, 4, SamplingParams(1.0), torch.Generator().manual_seed(0),
                           prefix=torch.zeros(2, 2, dtype=torch.long))
    assert out.shape == (2, 2, 7) and torch.equal(out[:, :, :3], prompt)


def test_quantize_errors_and_odd_widths():
    with pytest.raises(ValueError, match="--quantize must be one of none, bf16, int8"):
        quantize_lm(tiny(), "int4")
    # The int8 kernel needs input widths that are multiples of 8; other layers stay float.
    odd = nn.Sequential(nn.Linear(12, 8), nn.Linear(8, 5))
    quantize_lm(odd, "int8")
    assert type(odd[0]) is nn.Linear and type(odd[1]) is Int8Linear
