import pytest
import torch

from soundlm.codec.rvq import EuclideanCodebook, ResidualVectorQuantizer, kmeans


def _clusters(n: int = 512, dim: int = 8, k: int = 16) -> torch.Tensor:
    centres = torch.randn(k, dim) * 3
    return centres[torch.randint(0, k, (n,))] + 0.05 * torch.randn(n, dim)


def test_codes_in_range_and_shapes():
    rvq = ResidualVectorQuantizer(dim=8, n_q=3, codebook_size=32, quantizer_dropout=False)
    x = torch.randn(2, 8, 50)  # [B, D, T]
    out = rvq(x)
    assert out.codes.shape == (2, 3, 50) and out.codes.dtype == torch.int64
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < 32
    assert out.quantized.shape == x.shape
    assert out.perplexity.shape == (3,) and torch.all(out.perplexity >= 1)
    rvq.eval()
    codes = rvq.encode(x, n_q=2)
    assert codes.shape == (2, 2, 50)
    # encode/decode agree with the training-path quantization in eval mode.
    assert torch.allclose(rvq.decode(codes), rvq(x, n_q=2).quantized, atol=1e-5)


def test_straight_through_gradient_reaches_input():
    rvq = ResidualVectorQuantizer(dim=4, n_q=2, codebook_size=16, quantizer_dropout=False)
    x = torch.randn(1, 4, 20, requires_grad=True)
    out = rvq(x)
    (out.quantized * torch.randn_like(out.quantized)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    x2 = torch.randn(1, 4, 20, requires_grad=True)
    rvq(x2).commit_loss.backward()
    assert x2.grad is not None


def test_quantizer_dropout_varies_active_codebooks():
    rvq = ResidualVectorQuantizer(dim=4, n_q=6, codebook_size=16, quantizer_dropout=True)
    seen = {rvq(torch.randn(2, 4, 10)).codes.shape[1] for _ in range(30)}
    assert len(seen) >= 3 and seen <= set(range(1, 7))
    rvq.eval()
    assert rvq(torch.randn(2, 4, 10)).codes.shape[1] == 6


def test_kmeans_init_finds_clusters():
    x = _clusters()
    cb = EuclideanCodebook(8, 16, kmeans_iters=10, dead_code_threshold=0)
    assert not bool(cb.inited)
    cb.init_from(x)
    assert bool(cb.inited)
    err_init = (cb.lookup(cb.assign(x)) - x).pow(2).mean()
    random_cb = EuclideanCodebook(8, 16, kmeans_init=False)
    err_random = (random_cb.lookup(random_cb.assign(x)) - x).pow(2).mean()
    assert err_init < 0.2 * err_random
    centroids, counts = kmeans(x, 4, 3)
    assert centroids.shape == (4, 8) and int(counts.sum()) == x.shape[0]


def test_dead_code_restart_moves_unused_codes_to_data():
    cb = EuclideanCodebook(2, 8, kmeans_init=False, dead_code_threshold=0.5)
    cb.embed.fill_(100.0)  # every code far away from the data
    cb.embed[0] = 0.0
    cb.cluster_size.zero_()
    cb.cluster_size[0] = 10.0
    x = torch.randn(64, 2)
    n = cb.restart_dead_codes(x)
    assert n == 7
    assert torch.all(cb.embed[0] == 0)
    # every restarted code is now one of the batch vectors
    d = torch.cdist(cb.embed[1:], x).min(dim=1).values
    assert torch.all(d < 1e-6)
    # restarted codes get the mean usage, so they are not restarted again on the next step
    assert torch.allclose(cb.cluster_size[1:], torch.full((7,), 10.0 / 8))
    assert cb.restart_dead_codes(x) == 0


def test_ema_update_moves_codes_towards_assigned_vectors():
    cb = EuclideanCodebook(2, 2, kmeans_init=False, decay=0.5, dead_code_threshold=0)
    cb.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    cb.embed_avg.copy_(cb.embed)
    cb.cluster_size.fill_(1.0)
    x = torch.tensor([[1.0, 1.0]] * 4)
    cb.ema_update(x, cb.assign(x))
    assert 0.0 < cb.embed[0, 0] <= 1.0


def test_more_codebooks_lower_error():
    x = torch.randn(4, 8, 64)
    rvq = ResidualVectorQuantizer(dim=8, n_q=6, codebook_size=32, quantizer_dropout=False)
    for _ in range(5):
        rvq(x)  # k-means init + a few EMA updates on the same data
    rvq.eval()
    errs = [(rvq.decode(rvq.encode(x, n_q=k)) - x).pow(2).mean().item() for k in range(1, 7)]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs


def test_bad_n_q_raises():
    rvq = ResidualVectorQuantizer(dim=4, n_q=2, codebook_size=8)
    with pytest.raises(ValueError, match="n_q"):
        rvq.encode(torch.randn(1, 4, 3), n_q=3)


def test_codebook_stats_see_collapse_and_energy_split():
    """A codebook whose every code is one vector uses 1 code; a spread one uses many; energies sum to the
    variance the RVQ explains."""
    torch.manual_seed(0)
    rvq = ResidualVectorQuantizer(dim=8, n_q=2, codebook_size=64, quantizer_dropout=False)
    x = _clusters(n=400, dim=8, k=16).t().reshape(1, 8, 400)  # [B, D, T]
    rvq.train()
    rvq(x)  # k-means init of both levels
    rvq.eval()
    from soundlm.codec.rvq import codebook_stats

    healthy = codebook_stats(rvq, x)
    assert healthy["codes_used@level1"] > 0.1 and healthy["code_perplexity@level1"] > 8
    residual = x - rvq.decode(rvq.encode(x))
    explained = 1 - float(residual.pow(2).sum() / x.pow(2).sum())
    assert abs(healthy["energy@level1"] + healthy["energy@level2"] - explained) < 1e-4
    assert healthy["energy@level1"] > healthy["energy@level2"]

    rvq.layers[0].codebook.embed.copy_(rvq.layers[0].codebook.embed[:1].expand(64, -1))  # collapse level 1
    collapsed = codebook_stats(rvq, x)
    assert collapsed["codes_used@level1"] == 1 / 64 and collapsed["code_perplexity@level1"] < 1.01
