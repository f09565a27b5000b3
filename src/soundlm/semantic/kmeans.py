"""k-means for semantic units: k-means++ seeding + Lloyd iterations, and batched assignment.

Everything is torch, so fitting and assignment run on the GPU when the data lives there,
and are deterministic for a given seed on a given device. Cost on CPU: one Lloyd
iteration is an [N, D] x [D, K] matmul, about 3 s on two cores for k=1024 on 100k frames
of 768-dim features (a fraction of that for 39-dim MFCCs); seeding uses a subsample.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from soundlm.devices import default_device


@dataclass
class KMeansResult:
    centroids: torch.Tensor  # [K, D] float32
    counts: torch.Tensor  # [K] int64, frames assigned to each centroid at the end
    inertia: float  # sum of squared distances of the frames to their centroid
    iterations: int  # Lloyd iterations run
    converged: bool  # centroid shift fell below tolerance before max_iter

    @property
    def clusters_used(self) -> int:
        return int((self.counts > 0).sum())


@dataclass
class Assignment:
    ids: torch.Tensor  # [N] int64, nearest centroid
    distances: torch.Tensor  # [N] float32, squared distance to it


def _check_pair(x: torch.Tensor, centroids: torch.Tensor) -> None:
    if x.dim() != 2 or centroids.dim() != 2:
        raise ValueError(f"expected frames [N, D] and centroids [K, D], got {tuple(x.shape)} and "
                         f"{tuple(centroids.shape)}")
    if x.shape[1] != centroids.shape[1]:
        raise ValueError(f"frames have dimension {x.shape[1]} but centroids have {centroids.shape[1]}; "
                         "the features do not match the ones the centroids were fitted on")


def squared_distances(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """||x - c||^2 for all pairs, [N, D] x [K, D] -> [N, K], via ||x||^2 - 2 x.c + ||c||^2."""
    x_sq = x.pow(2).sum(dim=1, keepdim=True)  # [N, 1]
    c_sq = centroids.pow(2).sum(dim=1)  # [K]
    # addmm fuses the matmul with the add; clamp because rounding can go slightly negative.
    return torch.addmm(x_sq + c_sq, x, centroids.t(), alpha=-2.0).clamp_(min=0.0)


def assign(x: torch.Tensor, centroids: torch.Tensor, batch_size: int = 16384) -> Assignment:
    """Nearest centroid of each frame, [N, D] -> [N], in batches of `batch_size` frames.

    Runs on the device of `centroids` (frames are moved there batch by batch).
    """
    _check_pair(x, centroids)
    centroids = centroids.float()
    # Distances do not change under a common shift; moving the origin to the centroid mean
    # keeps the norms small and avoids cancellation in ||x||^2 - 2 x.c + ||c||^2 (MFCC c0
    # alone is in the hundreds).
    origin = centroids.mean(dim=0)
    c = centroids - origin
    ids, dists = [], []
    for start in range(0, x.shape[0], batch_size):
        xb = x[start: start + batch_size].to(c.device, torch.float32) - origin
        d, i = squared_distances(xb, c).min(dim=1)
        ids.append(i)
        dists.append(d)
    if not ids:
        return Assignment(torch.zeros(0, dtype=torch.long, device=c.device), torch.zeros(0, device=c.device))
    return Assignment(torch.cat(ids), torch.cat(dists))


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): each new centre is drawn with
    probability proportional to the squared distance to the nearest centre so far."""
    n = x.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centers = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    centers[0] = x[first]
    x_sq = x.pow(2).sum(dim=1)  # [N]
    # The expanded form costs one mat-vec per centre instead of an [N, D] temporary.
    closest = (x_sq - 2 * (x @ x[first]) + x_sq[first]).clamp_(min=0.0)  # [N]
    for j in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:
            # Fewer distinct points than clusters so far: any point is as good as another.
            idx = int(torch.randint(n, (1,), generator=generator))
        else:
            # Sample on CPU so the same seed gives the same centres on every device.
            idx = int(torch.multinomial(closest.double().cpu(), 1, generator=generator))
        centers[j] = x[idx]
        closest = torch.minimum(closest, (x_sq - 2 * (x @ x[idx]) + x_sq[idx]).clamp_(min=0.0))
    return centers


def fit_kmeans(x: torch.Tensor, k: int, max_iter: int = 50, tol: float = 1e-4, seed: int = 0,
               batch_size: int = 16384, init_size: int | None = None,
               device: str | torch.device | None = None, progress: bool = False) -> KMeansResult:
    """Fit k centroids to frames x [N, D] (k-means++ seeding, then Lloyd iterations).

    Seeding runs on a random subset of `init_size` frames (default max(8k, 10000)), as
    scikit-learn's MiniBatchKMeans does: k-means++ is k sequential passes over its input.

    Stops when the total squared centroid shift falls below `tol` times the mean per-
    dimension variance of the data (scikit-learn's criterion) or after `max_iter`
    iterations. Empty clusters are re-seeded with the frames farthest from their centroid.
    """
    if x.dim() != 2 or x.shape[0] == 0:
        raise ValueError(f"frames must be a non-empty [N, D] matrix, got shape {tuple(x.shape)}")
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"cannot fit {k} clusters to {x.shape[0]} frames; use more audio or fewer clusters")
    if not torch.isfinite(x).all():
        raise ValueError("frames contain NaN/inf values; check the feature extractor input")
    device = default_device(device)
    generator = torch.Generator().manual_seed(seed)
    x = x.to(device, torch.float32)
    # Centre the data once for numerical accuracy of the distance expansion (see `assign`).
    mean = x.mean(dim=0)
    x = x - mean
    threshold = tol * float(x.var(dim=0).mean())

    init_size = max(8 * k, 10_000) if init_size is None else max(init_size, k)
    if init_size < x.shape[0]:
        subset = torch.randperm(x.shape[0], generator=generator)[:init_size].to(x.device)
        centroids = kmeans_plusplus(x[subset], k, generator)
    else:
        centroids = kmeans_plusplus(x, k, generator)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=max_iter, desc="k-means", unit="iter")
    converged, iterations = False, 0
    for iterations in range(1, max_iter + 1):
        a = assign(x, centroids, batch_size=batch_size)
        # Accumulate in float64 batch by batch: float32 sums over 1e5 frames lose digits.
        sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
        for start in range(0, x.shape[0], batch_size):
            sums.index_add_(0, a.ids[start: start + batch_size], x[start: start + batch_size].double())
        counts = torch.bincount(a.ids, minlength=k)
        new = (sums / counts.clamp(min=1)[:, None]).float()
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            far = torch.topk(a.distances, len(empty)).indices
            new[empty] = x[far]
        shift = float((new - centroids).pow(2).sum())
        centroids = new
        if bar is not None:
            bar.update(1)
            bar.set_postfix(inertia=f"{float(a.distances.sum()):.4g}")
        if shift <= threshold:
            converged = True
            break
    if bar is not None:
        bar.close()
    final = assign(x, centroids, batch_size=batch_size)
    return KMeansResult(
        centroids=(centroids + mean).cpu(),
        counts=torch.bincount(final.ids, minlength=k).cpu(),
        inertia=float(final.distances.double().sum()),
        iterations=iterations,
        converged=converged,
    )


def inertia(x: torch.Tensor, centroids: torch.Tensor) -> float:
    """Sum of squared distances of frames [N, D] to their nearest centroid."""
    return float(assign(x, centroids).distances.double().sum())
