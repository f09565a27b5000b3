import json

import pytest
import torch

from soundlm.lm import (DelayLM, DelayLMConfig, LMConfig, TokenLM, delay_inputs, lm_base, lm_micro, lm_mini, lm_small,
                        lm_tiny, load_lm, save_lm)
from soundlm.patterns import delay_codes
from soundlm.vocab import VocabLayout


def tiny_lm(vocab: int = 40, **kw) -> TokenLM:
    cfg = lm_tiny(vocab, max_positions=64)
    for k, v in kw.items():
        setattr(cfg, k, v)
    return TokenLM.from_config(cfg).eval()


def test_forward_shapes_and_loss():
    m = tiny_lm()
    x = torch.randint(0, 40, (3, 12))
    out = m(x, labels=x)
    assert out.logits.shape == (3, 12, 40)
    manual = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 40), x[:, 1:].reshape(-1))
    assert torch.allclose(out.loss, manual)
    with pytest.raises(ValueError, match="max_positions"):
        m(torch.zeros(1, 65, dtype=torch.long))


def test_causality_by_gradients():
    m = tiny_lm()
    x = torch.randint(0, 40, (2, 16))
    emb = m.hf.get_input_embeddings()(x).detach().requires_grad_(True)
    logits = m.hf(inputs_embeds=emb).logits
    t = 7
    logits[:, t].sum().backward()
    grad = emb.grad.abs().sum(dim=(0, 2))  # [T]
    assert bool((grad[: t + 1] > 0).all())
    assert bool((grad[t + 1:] == 0).all())


def test_delay_lm_causality_and_loss_masks_pads():
    cfg = DelayLMConfig(num_codebooks=3, codebook_size=8, backbone=lm_tiny(1, 64), prefix_vocab_size=5)
    m = DelayLM(cfg).eval()
    codes = torch.randint(0, 8, (2, 3, 6))
    target = delay_codes(codes, cfg.pad_id)  # [B, K, S]
    inputs = delay_inputs(target, cfg.pad_id)
    assert inputs[:, :, 0].eq(cfg.pad_id).all() and torch.equal(inputs[:, :, 1:], target[:, :, :-1])
    prefix = torch.randint(0, 5, (2, 4))
    out = m(inputs, prefix=prefix, labels=target)
    assert out.logits.shape == (2, 3, 8, 8) and torch.isfinite(out.loss)
    # Gradient from step s reaches inputs <= s only (prefix included).
    x = m.embed(inputs, prefix).detach().requires_grad_(True)
    h = m.backbone(inputs_embeds=x).last_hidden_state
    s = 4 + 3
    m.project(h)[:, :, s].sum().backward()
    g = x.grad.abs().sum(dim=(0, 2))
    assert bool((g[: s + 1] > 0).all()) and bool((g[s + 1:] == 0).all())


def test_save_load_round_trip(tmp_path):
    layout = VocabLayout(semantic_size=20, codebook_size=4, num_codebooks=2)
    m = TokenLM.from_config(lm_tiny(layout.vocab_size, 64), layout=layout, meta={"stage": "coarse", "num_coarse": 2})
    folder = save_lm(m, tmp_path / "coarse")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["type"] == "token_lm" and cfg["meta"]["stage"] == "coarse"
    back = load_lm(folder)
    assert isinstance(back, TokenLM) and back.layout == layout and back.meta == m.meta
    x = torch.randint(0, layout.vocab_size, (2, 10))
    assert torch.equal(m.eval()(x).logits, back(x).logits)
    assert not list(tmp_path.glob(".tmp-*"))

    d = DelayLM(DelayLMConfig(num_codebooks=2, codebook_size=8, backbone=lm_tiny(1, 32))).eval()
    back_d = load_lm(save_lm(d, tmp_path / "delay"))
    c = torch.randint(0, 9, (1, 2, 5))
    assert isinstance(back_d, DelayLM) and torch.equal(d(c).logits, back_d(c).logits)


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an LM stage folder"):
        load_lm(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"type": "codec"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="expected 'token_lm'"):
        load_lm(tmp_path)
    with pytest.raises(ValueError, match="divisible"):
        LMConfig(10, hidden_size=30, num_heads=4)
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        TokenLM.from_hf_pretrained(tmp_path / "nothing")


def test_hf_pretrained_folder_resize_and_reexport(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    hf = LlamaForCausalLM(LlamaConfig(vocab_size=30, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    hf.save_pretrained(tmp_path / "text_lm")
    layout = VocabLayout(semantic_size=16, codebook_size=4, num_codebooks=2, task_tokens=("A", "B"))
    m = TokenLM.from_hf_pretrained(tmp_path / "text_lm", layout=layout).eval()
    assert m.vocab_size == layout.vocab_size and m.fast_decoding
    # The original rows survive the resize.
    assert torch.equal(m.hf.get_input_embeddings().weight[:30], hf.get_input_embeddings().weight)
    back = load_lm(save_lm(m, tmp_path / "stage"))
    x = torch.randint(0, layout.vocab_size, (1, 9))
    assert torch.allclose(m(x).logits, back(x).logits)


def test_presets_sizes():
    def params(cfg: LMConfig) -> int:
        with torch.device("meta"):
            model = TokenLM.from_config(cfg)
        return sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)

    assert params(lm_tiny(100)) < 200_000
    assert 1.0e6 < params(lm_micro(100)) < 1.5e6
    assert 2.5e6 < params(lm_mini(100)) < 3.5e6
    assert 15e6 < params(lm_small(100)) < 25e6
    assert 0.25e9 < params(lm_base(100)) < 0.35e9
