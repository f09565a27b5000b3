import pytest
import torch

from soundlm.sampler import SamplingParams, sample_next_token


def test_top_k_one_and_zero_temperature_are_argmax():
    logits = torch.randn(16, 50)
    g = torch.Generator().manual_seed(1)
    assert torch.equal(sample_next_token(logits, temperature=1.3, top_k=1, generator=g), logits.argmax(-1))
    assert torch.equal(sample_next_token(logits, temperature=0.0), logits.argmax(-1))


def test_seeded_determinism():
    logits = torch.randn(8, 100)
    draws = [sample_next_token(logits, 1.0, 20, 0.9, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*draws)
    other = sample_next_token(logits.repeat(8, 1), 1.0, None, None, torch.Generator().manual_seed(8))
    assert not torch.equal(other, sample_next_token(logits.repeat(8, 1), 1.0, None, None,
                                                    torch.Generator().manual_seed(7)))


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, None), (2.0, 5, None), (0.7, None, 0.5),
                                                     (5.0, 50, 0.99), (0.0, None, None)])
def test_constrained_sampling_never_leaves_the_range(temperature, top_k, top_p):
    g = torch.Generator().manual_seed(0)
    # Make the disallowed ids the most likely ones, so leaks would show.
    logits = torch.randn(4096, 64)
    logits[:, :20] += 10.0
    ids = sample_next_token(logits, temperature, top_k, top_p, g, allowed=(20, 40))
    assert int(ids.min()) >= 20 and int(ids.max()) < 40
    mask = torch.zeros(64, dtype=torch.bool)
    mask[[3, 60, 61]] = True
    ids = sample_next_token(logits, temperature, top_k, top_p, g, allowed=mask)
    assert set(ids.tolist()) <= {3, 60, 61}
    row_mask = torch.zeros(4096, 64, dtype=torch.bool)
    row_mask[torch.arange(4096), torch.arange(4096) % 64] = True
    ids = sample_next_token(logits, temperature, top_k, top_p, g, allowed=row_mask)
    assert torch.equal(ids, torch.arange(4096) % 64)


def test_top_k_and_top_p_restrict_the_support():
    g = torch.Generator().manual_seed(0)
    logits = torch.linspace(0, 10, 30).repeat(2000, 1)
    ids = sample_next_token(logits, 1.0, top_k=3, generator=g)
    assert set(ids.tolist()) <= {27, 28, 29} and len(set(ids.tolist())) == 3
    probs = torch.softmax(logits[0], -1)
    # Smallest set with mass >= 0.9, from the top.
    order = probs.argsort(descending=True)
    n = int((probs[order].cumsum(0) < 0.9).sum()) + 1
    ids = sample_next_token(logits, 1.0, top_p=0.9, generator=g)
    assert set(ids.tolist()) <= set(order[:n].tolist())
    # Frequencies follow the softmax when nothing is cut.
    ids = sample_next_token(torch.tensor([[0.0, 1.0, 2.0]]).repeat(20000, 1), 1.0, generator=g)
    freq = torch.bincount(ids, minlength=3).float() / 20000
    assert torch.allclose(freq, torch.softmax(torch.tensor([0.0, 1.0, 2.0]), -1), atol=0.02)


def test_bad_arguments():
    logits = torch.randn(2, 10)
    with pytest.raises(ValueError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        sample_next_token(logits, top_p=1.5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        sample_next_token(logits, allowed=(5, 11))
    with pytest.raises(ValueError, match="no valid token"):
        sample_next_token(logits, allowed=torch.zeros(10, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"\[B, V\]"):
        sample_next_token(torch.randn(10))


def test_row_generators_draw_per_request_and_skip_rows_left_out():
    from soundlm.sampler import RowGenerators, sample_next_token

    logits = torch.randn(3, 50)
    a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    rows = sample_next_token(logits, 1.0, generator=RowGenerators([a, a, b]))
    # Rows 0-1 draw what one call for them alone draws from seed 1, row 2 what seed 2 alone draws.
    assert torch.equal(rows[:2], sample_next_token(logits[:2], 1.0, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(rows[2:], sample_next_token(logits[2:], 1.0, generator=torch.Generator().manual_seed(2)))
    # A row left out draws nothing: its generator's next draw is the one it would have made.
    a, b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    RowGenerators([a, b]).only(torch.tensor([True, False])).rand(2, torch.device("cpu"))
    assert torch.equal(torch.rand(1, generator=b), torch.rand(1, generator=torch.Generator().manual_seed(2)))
    # The delay pattern's [B*K] logits rows: each batch row draws its K in one call.
    g = torch.Generator().manual_seed(3)
    u = RowGenerators([g, torch.Generator().manual_seed(4)]).rand(6, torch.device("cpu"))
    assert torch.equal(u[:3], torch.rand(3, 1, generator=torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="do not split"):
        RowGenerators([g, g]).rand(3, torch.device("cpu"))
