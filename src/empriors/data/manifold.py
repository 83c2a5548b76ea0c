"""The low-dimensional manifold data set (PAPERS.md 1, after "randman").

A random smooth m-dimensional manifold in R^n: with cutoff K = ceil(eps^(-1/alpha)) and
a, b, c ~ U(0, 1) of shape (n, m, K), a point with intrinsic coordinates z ~ U(0, 1)^m is

    x_i = prod_j sum_k a_ijk / k^alpha * sin(2 pi (k b_ijk z_j + c_ijk)),   i = 1..n.

Each coordinate is then min-max scaled to [-2, 2] with the extremes of the training points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class RandomManifold:
    a: Tensor  # (n, m, K)
    b: Tensor
    c: Tensor
    alpha: float

    @staticmethod
    def random(dim: int, manifold_dim: int, alpha: float, eps: float,
               generator: torch.Generator) -> RandomManifold:
        cutoff = math.ceil(eps ** (-1 / alpha))
        shape = (dim, manifold_dim, cutoff)
        a, b, c = (torch.rand(shape, generator=generator, dtype=torch.float64) for _ in range(3))
        return RandomManifold(a, b, c, alpha)

    def embed(self, z: Tensor) -> Tensor:
        """Intrinsic coordinates z (N, m) in [0, 1]^m -> points (N, n)."""
        k = torch.arange(1, self.a.shape[-1] + 1, dtype=z.dtype)
        phase = 2 * math.pi * (k * self.b[None] * z[:, None, :, None] + self.c[None])
        terms = self.a[None] / k**self.alpha * torch.sin(phase)  # (N, n, m, K)
        return terms.sum(dim=-1).prod(dim=-1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        z = torch.rand(n, self.a.shape[1], generator=generator, dtype=torch.float64)
        return self.embed(z)


def minmax_scale(x: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Map [low, high] (per coordinate) affinely to [-2, 2]."""
    return 4 * (x - low) / (high - low) - 2


def manifold_dataset(n_train: int, n_eval: int, dim: int, manifold_dim: int, alpha: float,
                     eps: float, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(train (n_train, dim), eval_u1 (n_eval, dim), eval_u2 (n_eval, dim)), float64.

    The two evaluation sets are disjoint fresh draws from the same manifold; all three are
    scaled with the training set's per-coordinate min and max.
    """
    manifold = RandomManifold.random(dim, manifold_dim, alpha, eps, generator)
    train = manifold.sample(n_train, generator)
    u1, u2 = manifold.sample(n_eval, generator), manifold.sample(n_eval, generator)
    low, high = train.min(dim=0).values, train.max(dim=0).values
    return tuple(minmax_scale(x, low, high) for x in (train, u1, u2))
