"""Diagonal-plus-low-rank Gaussian N(mu, Sigma), Sigma = Q diag(lambda - D) Q^T + D I.

Q (n, r) has orthonormal columns (the principal axes), lambda (r,) the variances along them
and D the isotropic residual variance; equivalently Sigma = D I + U U^T with
U = Q diag(sqrt(lambda - D)). With r = n (full rank) D plays no role.

All closed forms use (Sigma + s I)^{-1} v = Q diag(1/(lambda + s)) Q^T v + (v - Q Q^T v)/(D + s),
which is stable for any s > 0 even when Sigma is singular.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from empriors.operators import LinearOperator


@dataclass
class LowRankGaussian:
    mean: Tensor  # (n,)
    basis: Tensor  # Q, (n, r), orthonormal columns
    variances: Tensor  # lambda, (r,)
    residual: float  # D

    @property
    def dim(self) -> int:
        return self.mean.shape[0]

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    @staticmethod
    def standard(dim: int, dtype=torch.float64) -> LowRankGaussian:
        """N(0, I)."""
        return LowRankGaussian(
            torch.zeros(dim, dtype=dtype),
            torch.zeros(dim, 0, dtype=dtype),
            torch.zeros(0, dtype=dtype),
            1.0,
        )

    def to(self, device=None, dtype=None) -> LowRankGaussian:
        return LowRankGaussian(
            self.mean.to(device, dtype),
            self.basis.to(device, dtype),
            self.variances.to(device, dtype),
            self.residual,
        )

    def covariance(self) -> Tensor:
        """Dense Sigma, (n, n); for tests and small n only."""
        q = self.basis
        eye = torch.eye(self.dim, dtype=q.dtype, device=q.device)
        return q @ torch.diag(self.variances - self.residual) @ q.T + self.residual * eye

    def _project(self, v: Tensor) -> Tensor:  # Q^T v for v (B, n) -> (B, r)
        return v @ self.basis

    def solve_shifted(self, v: Tensor, shift: Tensor | float) -> Tensor:
        """(Sigma + s I)^{-1} v for v (B, n), s scalar or (B,)."""
        s = torch.as_tensor(shift, dtype=v.dtype, device=v.device)
        s = s.reshape(-1, 1) if s.ndim else s
        c = self._project(v)
        inside = (c / (self.variances + s)) @ self.basis.T
        outside = (v - c @ self.basis.T) / (self.residual + s)
        return inside + outside

    def denoise(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        """Tweedie: E[x | x_t] = x_t - sigma^2 (Sigma + sigma^2 I)^{-1} (x_t - mu).

        x_t: (B, n), sigma: scalar or (B,) -> (B, n)."""
        s2 = torch.as_tensor(sigma, dtype=x_t.dtype, device=x_t.device) ** 2
        return x_t - (s2.reshape(-1, 1) if s2.ndim else s2) * self.solve_shifted(
            x_t - self.mean, s2
        )

    def posterior_cov_mv(self, v: Tensor, sigma: Tensor) -> Tensor:
        """V[x | x_t] v = (Sigma^{-1} + sigma^{-2} I)^{-1} v
        = sigma^2 (v - sigma^2 (Sigma + sigma^2 I)^{-1} v).  v: (B, n) -> (B, n)."""
        s2 = torch.as_tensor(sigma, dtype=v.dtype, device=v.device) ** 2
        s2 = s2.reshape(-1, 1) if s2.ndim else s2
        return s2 * (v - s2 * self.solve_shifted(v, s2))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """x = mu + Sigma^{1/2} z with
        Sigma^{1/2} z = Q diag(sqrt lambda) Q^T z + sqrt(D) (z - Q Q^T z).  -> (n, dim)."""
        z = torch.randn(n, self.dim, generator=generator, dtype=self.mean.dtype).to(
            self.mean.device
        )
        c = self._project(z)
        return (
            self.mean
            + (c * self.variances.clamp_min(0).sqrt()) @ self.basis.T
            + self.residual**0.5 * (z - c @ self.basis.T)
        )

    def state_dict(self) -> dict:
        return {
            "mean": self.mean,
            "basis": self.basis,
            "variances": self.variances,
            "residual": torch.tensor(self.residual, dtype=torch.float64),
        }

    @staticmethod
    def from_state_dict(state: dict) -> LowRankGaussian:
        return LowRankGaussian(
            state["mean"], state["basis"], state["variances"], float(state["residual"])
        )


def fit_ppca(x: Tensor, rank: int | None = None) -> LowRankGaussian:
    """Probabilistic PCA of samples x (N, n).

    mu = mean x; C = empirical covariance; (lambda, Q) = top-``rank`` eigenpairs of C;
    D = (trace C - sum lambda) / (n - rank). ``rank`` None or >= n gives the full covariance.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"fit_ppca needs samples of shape (N >= 2, n), got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("fit_ppca: samples contain NaN or Inf")
    x = x.to(torch.float64)
    n = x.shape[1]
    mu = x.mean(dim=0)
    xc = x - mu
    if rank is None or rank >= n:
        cov = xc.T @ xc / (x.shape[0] - 1)
        lam, q = torch.linalg.eigh(cov)
        return LowRankGaussian(mu, q, lam.clamp_min(0), 0.0)
    # Top eigenpairs from the thin SVD of the centered data: never forms the n x n matrix,
    # which matters for images (n = 3072) and MRI (n = 102400).
    _, sv, vh = torch.linalg.svd(xc, full_matrices=False)
    lam_all = sv**2 / (x.shape[0] - 1)
    lam, q = lam_all[:rank], vh[:rank].T
    trace = xc.square().sum() / (x.shape[0] - 1)
    residual = float((trace - lam.sum()) / (n - rank))
    return LowRankGaussian(mu, q, lam, max(residual, 1e-12))


def gaussian_posterior(
    prior: LowRankGaussian, op: LinearOperator, y: Tensor, sigma_y2: float
) -> tuple[Tensor, Tensor]:
    """Exact p(x | y) for x ~ prior, y = A x + N(0, sigma_y2 I), per sample; dense, for tests.

    Returns means (B, n) and covariances (B, n, n):
    m = mu + Sigma A^T (A Sigma A^T + sigma_y2 I)^{-1} (y - A mu),
    C = Sigma - Sigma A^T (A Sigma A^T + sigma_y2 I)^{-1} A Sigma.
    """
    sigma = prior.covariance()
    b = y.shape[0]
    eye_n = torch.eye(prior.dim, dtype=y.dtype, device=y.device)
    # Dense A_i by applying the operator to basis vectors: (B, m, n).
    a = torch.stack([op(eye_n[j].expand(b, -1)) for j in range(prior.dim)], dim=-1)
    s_at = sigma @ a.transpose(1, 2)  # (B, n, m)
    gram = a @ s_at + sigma_y2 * torch.eye(a.shape[1], dtype=y.dtype, device=y.device)
    gain = torch.linalg.solve(gram, s_at.transpose(1, 2)).transpose(1, 2)  # (B, n, m)
    resid = y - a @ prior.mean
    means = prior.mean + (gain @ resid[..., None])[..., 0]
    covs = sigma - gain @ s_at.transpose(1, 2)
    return means, covs
