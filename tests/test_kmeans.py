import numpy as np
import pytest
import torch

from soundlm.semantic.kmeans import assign, fit_kmeans, inertia, kmeans_plusplus, squared_distances


def _blobs(n_per: int = 200, k: int = 6, d: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 10
    labels = torch.arange(k).repeat_interleave(n_per)
    x = centers[labels] + 0.3 * torch.randn(k * n_per, d, generator=g)
    return x, labels


def test_assign_matches_brute_force_numpy():
    g = torch.Generator().manual_seed(1)
    # Large offset: the centred distance expansion must still agree with the direct formula.
    x = torch.randn(1000, 12, generator=g) + 100.0
    c = torch.randn(37, 12, generator=g) + 100.0
    out = assign(x, c, batch_size=128)  # several batches
    xn, cn = x.double().numpy(), c.double().numpy()
    brute = ((xn[:, None, :] - cn[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(out.ids.numpy(), brute.argmin(1))
    np.testing.assert_allclose(out.distances.numpy(), brute.min(1), rtol=1e-3, atol=1e-3)
    assert out.ids.dtype == torch.int64


def test_assign_is_deterministic_and_batch_size_independent():
    x, _ = _blobs()
    c = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:10]]
    a = assign(x, c, batch_size=7).ids
    assert torch.equal(a, assign(x, c, batch_size=7).ids)
    assert torch.equal(a, assign(x, c, batch_size=100_000).ids)


def test_squared_distances_nonnegative_and_zero_on_self():
    x = torch.randn(20, 4)
    d = squared_distances(x, x)
    assert (d >= 0).all()
    assert torch.allclose(d.diagonal(), torch.zeros(20), atol=1e-4)


def test_fit_recovers_blobs_and_beats_random_centroids():
    x, labels = _blobs()
    res = fit_kmeans(x, 6, seed=0, device="cpu")
    assert res.centroids.shape == (6, 5)
    assert int(res.counts.sum()) == len(x)
    # Each true blob lands in exactly one cluster, all clusters used.
    ids = assign(x, res.centroids).ids
    for b in range(6):
        assert len(torch.unique(ids[labels == b])) == 1
    assert res.clusters_used == 6
    random_c = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(3))[:6]]
    assert res.inertia < 0.5 * inertia(x, random_c)
    assert res.inertia == pytest.approx(inertia(x, res.centroids), rel=1e-4)


def test_fit_is_deterministic_per_seed():
    x, _ = _blobs(n_per=50, k=10)
    a = fit_kmeans(x, 8, seed=5, device="cpu")
    b = fit_kmeans(x, 8, seed=5, device="cpu")
    assert torch.equal(a.centroids, b.centroids)
    assert a.iterations == b.iterations


def test_fit_with_fewer_distinct_points_than_clusters():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0]]).repeat(10, 1)
    res = fit_kmeans(x, 4, seed=0, device="cpu")
    assert int(res.counts.sum()) == 20
    assert res.inertia == pytest.approx(0.0, abs=1e-6)


def test_kmeans_plusplus_picks_data_points():
    x, _ = _blobs(n_per=20)
    c = kmeans_plusplus(x, 6, torch.Generator().manual_seed(0))
    assert all((x == row).all(dim=1).any() for row in c)


def test_bad_input_raises():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="cannot fit 11 clusters to 10 frames"):
        fit_kmeans(x, 11)
    with pytest.raises(ValueError, match="dimension 3 but centroids have 4"):
        assign(x, torch.randn(5, 4))
    x[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_kmeans(x, 2)
