"""Residual vector quantization with EMA codebooks (SoundStream / EnCodec).

Each stage quantizes what the previous stages left over. Codebooks are not trained by
gradients: they follow an exponential moving average of the vectors assigned to them,
start from k-means on the first batch, and codes that fall out of use are restarted on
random vectors of the current batch. Gradients reach the encoder through the
straight-through estimator, and a commitment loss pulls encoder outputs towards their codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from soundlm.distributed import all_gather_rows, process_rank


@dataclass
class RVQResult:
    quantized: torch.Tensor  # [B, D, T], straight-through: gradients flow to the input
    codes: torch.Tensor  # [B, K, T] int64, K = n_q active quantizers
    commit_loss: torch.Tensor  # scalar, summed over active quantizers
    perplexity: torch.Tensor  # [K], exp(entropy) of code usage in this batch
    n_q: int


def _sample_vectors(x: torch.Tensor, n: int) -> torch.Tensor:
    """n rows of x [N, D] drawn at random (with replacement when N < n)."""
    if x.shape[0] >= n:
        idx = torch.randperm(x.shape[0], device=x.device)[:n]
    else:
        idx = torch.randint(0, x.shape[0], (n,), device=x.device)
    return x[idx]


def kmeans(x: torch.Tensor, num_clusters: int, num_iters: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain Lloyd k-means on x [N, D]: returns centroids [num_clusters, D] and cluster sizes."""
    centroids = _sample_vectors(x, num_clusters)
    counts = torch.zeros(num_clusters, device=x.device, dtype=x.dtype)
    for _ in range(num_iters):
        assign = torch.cdist(x, centroids).argmin(dim=-1)  # [N]
        counts = torch.bincount(assign, minlength=num_clusters).to(x.dtype)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        # Empty clusters keep their previous centroid instead of collapsing to zero.
        centroids = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centroids)
    return centroids, counts


class EuclideanCodebook(nn.Module):
    """One codebook [codebook_size, dim] with k-means init, EMA updates and dead-code restart."""

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99, epsilon: float = 1e-5,
                 kmeans_init: bool = True, kmeans_iters: int = 10, dead_code_threshold: float = 0.02):
        super().__init__()
        self.codebook_size = codebook_size
        self.decay = decay
        self.epsilon = epsilon
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        embed = torch.zeros(codebook_size, dim) if kmeans_init else torch.randn(codebook_size, dim)
        self.register_buffer("inited", torch.tensor([not kmeans_init], dtype=torch.bool))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())

    def init_from(self, x: torch.Tensor) -> None:
        """k-means on the first batch x [N, D] sets the codebook (once)."""
        centroids, counts = kmeans(x, self.codebook_size, self.kmeans_iters)
        self.embed.copy_(centroids)
        self.embed_avg.copy_(centroids)
        self.cluster_size.copy_(counts)
        self.inited.fill_(True)

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Nearest code for each row of x [N, D] -> [N] int64."""
        # ||x - e||^2 = ||x||^2 - 2 x.e + ||e||^2; the ||x||^2 term does not change the argmin.
        dist = -2 * x @ self.embed.t() + self.embed.pow(2).sum(-1)[None]  # [N, codebook_size]
        return dist.argmin(dim=-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.embed)

    def restart_dead_codes(self, x: torch.Tensor) -> int:
        """Replace codes whose EMA usage fell below `dead_code_threshold` x the mean usage.

        The threshold is relative because absolute usage scales with the batch: with 400
        vectors per step and 1024 codes, an absolute threshold of 2 would call every code dead.
        """
        if self.dead_code_threshold <= 0:
            return 0
        mean_usage = self.cluster_size.mean()
        dead = self.cluster_size < self.dead_code_threshold * mean_usage  # [codebook_size]
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        fresh = _sample_vectors(x, self.codebook_size)
        # Restarted codes get the mean usage: they have ~log(threshold)/log(decay) steps to be
        # picked before counting as dead again.
        usage = torch.where(dead, mean_usage.expand_as(self.cluster_size), self.cluster_size)
        self.embed.copy_(torch.where(dead[:, None], fresh, self.embed))
        self.embed_avg.copy_(torch.where(dead[:, None], fresh * usage[:, None], self.embed_avg))
        self.cluster_size.copy_(usage)
        return n_dead

    def ema_update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        onehot = F.one_hot(codes, self.codebook_size).type(x.dtype)  # [N, codebook_size]
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        # Laplace smoothing keeps rarely used codes from dividing by ~0.
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (n + self.codebook_size * self.epsilon) * n
        self.embed.copy_(self.embed_avg / smoothed[:, None])


class VectorQuantizer(nn.Module):
    """One RVQ stage: [B, D, T] -> quantized [B, D, T] and codes [B, T]."""

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99, kmeans_init: bool = True,
                 kmeans_iters: int = 10, dead_code_threshold: float = 0.02):
        super().__init__()
        self.codebook = EuclideanCodebook(dim, codebook_size, decay=decay, kmeans_init=kmeans_init,
                                          kmeans_iters=kmeans_iters, dead_code_threshold=dead_code_threshold)

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # [B, D, T] -> [B, T]
        b, d, t = x.shape
        flat = x.transpose(1, 2).reshape(-1, d)  # [B*T, D]
        return self.codebook.assign(flat).view(b, t)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:  # [B, T] -> [B, D, T]
        return self.codebook.lookup(codes).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, d, t = x.shape
        flat = x.detach().transpose(1, 2).reshape(-1, d)  # [B*T, D]
        if not self.training:
            codes = self.codebook.assign(flat)  # [B*T]
            return self.codebook.lookup(codes).view(b, t, d).transpose(1, 2), codes.view(b, t)
        # Under data parallelism every process updates its codebook from the vectors of all
        # processes (in rank order): the k-means init, EMA and restarts then equal one process's
        # on the global batch, and the codebooks stay identical without being broadcast.
        everyone = all_gather_rows(flat)  # [world*B*T, D]
        if not bool(self.codebook.inited):
            self.codebook.init_from(everyone)
        all_codes = self.codebook.assign(everyone)  # [world*B*T]
        codes = all_codes.view(-1, flat.shape[0])[process_rank()]  # [B*T]: this process's rows
        quantized = self.codebook.lookup(codes).view(b, t, d).transpose(1, 2)  # [B, D, T]
        self.codebook.ema_update(everyone, all_codes)
        self.codebook.restart_dead_codes(everyone)
        return quantized, codes.view(b, t)


class ResidualVectorQuantizer(nn.Module):
    """n_q stages of residual quantization, with quantizer dropout for variable bitrate."""

    def __init__(self, dim: int, n_q: int = 8, codebook_size: int = 1024, decay: float = 0.99,
                 kmeans_init: bool = True, kmeans_iters: int = 10, dead_code_threshold: float = 0.02,
                 quantizer_dropout: bool = True):
        super().__init__()
        self.n_q = n_q
        self.codebook_size = codebook_size
        self.quantizer_dropout = quantizer_dropout
        self.layers = nn.ModuleList([
            VectorQuantizer(dim, codebook_size, decay=decay, kmeans_init=kmeans_init, kmeans_iters=kmeans_iters,
                            dead_code_threshold=dead_code_threshold)
            for _ in range(n_q)
        ])

    def _check_n_q(self, n_q: int | None) -> int:
        n_q = self.n_q if n_q is None else n_q
        if not 1 <= n_q <= self.n_q:
            raise ValueError(f"n_q must be in [1, {self.n_q}], got {n_q}")
        return n_q

    def forward(self, x: torch.Tensor, n_q: int | None = None) -> RVQResult:
        """Quantize x [B, D, T]. In training, quantizer dropout draws n_q in [1, n_q] per batch."""
        n_q = self._check_n_q(n_q)
        if self.training and self.quantizer_dropout:
            # One model serves every bitrate: train on a random prefix of the codebooks (SoundStream).
            n_q = int(torch.randint(1, n_q + 1, (1,)))
        residual = x
        quantized_sum = torch.zeros_like(x)
        codes, perplexities = [], []
        commit = x.new_zeros(())
        for layer in self.layers[:n_q]:
            q, c = layer(residual)
            commit = commit + F.mse_loss(residual, q.detach())
            quantized_sum = quantized_sum + q
            residual = residual - q.detach()
            codes.append(c)
            usage = torch.bincount(c.flatten(), minlength=self.codebook_size).float()
            probs = usage / usage.sum()
            perplexities.append(torch.exp(-(probs * torch.log(probs + 1e-10)).sum()))
        # Straight-through: the forward value is the quantized sum, the gradient is the identity.
        quantized = x + (quantized_sum - x).detach()
        return RVQResult(quantized=quantized, codes=torch.stack(codes, dim=1), commit_loss=commit,
                         perplexity=torch.stack(perplexities), n_q=n_q)

    def encode(self, x: torch.Tensor, n_q: int | None = None) -> torch.Tensor:
        """[B, D, T] -> [B, n_q, T] int64 codes (no codebook updates)."""
        n_q = self._check_n_q(n_q)
        residual = x
        codes = []
        for layer in self.layers[:n_q]:
            c = layer.encode(residual)
            residual = residual - layer.decode(c)
            codes.append(c)
        return torch.stack(codes, dim=1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[B, K, T] codes (K <= n_q) -> [B, D, T]: the sum of the first K stages."""
        if codes.shape[1] > self.n_q:
            raise ValueError(f"got {codes.shape[1]} codebooks, the quantizer has {self.n_q}")
        out = None
        for k in range(codes.shape[1]):
            q = self.layers[k].decode(codes[:, k])
            out = q if out is None else out + q
        if out is None:
            raise ValueError("codes have zero codebooks; pass at least one")
        return out


@torch.no_grad()
def codebook_stats(rvq: ResidualVectorQuantizer, x: torch.Tensor) -> dict[str, float]:
    """How each level of `rvq` uses its codebook on latents x [B, D, T] (no codebook updates).

    Per level q (1-based), the values a run-health check reads:
    - `codes_used@level{q}`: distinct codes used / min(codebook_size, frames): 1 is every code
      the frames could reach; a collapsed codebook uses a handful.
    - `code_perplexity@level{q}`: exp(entropy) of the code histogram.
    - `energy@level{q}`: the share of the latents' energy ||x||^2 that level q removes from the
      residual; the shares sum to the variance the whole RVQ explains. A first level near 1
      leaves nothing to the others (their bits are wasted).
    """
    frames = x.shape[0] * x.shape[2]
    total = float(x.pow(2).sum().clamp(min=1e-12))
    residual = x
    stats: dict[str, float] = {}
    for q, layer in enumerate(rvq.layers, start=1):
        codes = layer.encode(residual)  # [B, T]
        quantized = layer.decode(codes)  # [B, D, T]
        before = float(residual.pow(2).sum())
        residual = residual - quantized
        usage = torch.bincount(codes.flatten(), minlength=rvq.codebook_size).float()
        probs = usage / usage.sum()
        stats[f"codes_used@level{q}"] = float((usage > 0).sum()) / min(rvq.codebook_size, frames)
        stats[f"code_perplexity@level{q}"] = float(torch.exp(-(probs * torch.log(probs + 1e-10)).sum()))
        stats[f"energy@level{q}"] = (before - float(residual.pow(2).sum())) / total
    return stats
