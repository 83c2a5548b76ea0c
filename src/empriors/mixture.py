"""Analytic Gaussian-mixture prior p(x) = sum_k w_k N(mu_k, s_k^2 I): exact denoiser and
Jacobian, so posterior samplers can run on an exact prior with no network.

For x_t = x + sigma z, component k's posterior is N(m_k, v_k I) with
    m_k = mu_k + s_k^2 / (s_k^2 + sigma^2) (x_t - mu_k),  v_k = s_k^2 sigma^2 / (s_k^2 + sigma^2),
and responsibilities r_k(x_t) proportional to w_k N(x_t; mu_k, (s_k^2 + sigma^2) I). Then
    E[x | x_t] = sum_k r_k m_k,
    Cov[x | x_t] = sum_k r_k (v_k I + m_k m_k^T) - E[x | x_t] E[x | x_t]^T,
    J = d E[x | x_t] / d x_t = Cov[x | x_t] / sigma^2    (Tweedie's second-order identity).
Shapes: x_t (B, n); means (K, n); stds, weights (K,).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class GaussianMixture:
    means: Tensor  # (K, n)
    stds: Tensor  # (K,)
    weights: Tensor  # (K,), sums to 1

    def __post_init__(self):
        k = self.means.shape[0]
        if self.stds.shape != (k,) or self.weights.shape != (k,):
            raise ValueError("GaussianMixture needs means (K, n), stds (K,) and weights (K,)")

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _components(self, x_t: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Responsibilities (B, K), component means m_k (B, K, n), variances v_k (K,) or (B, K)."""
        s2 = self.stds.to(x_t) ** 2
        sig2 = torch.as_tensor(sigma, dtype=x_t.dtype, device=x_t.device) ** 2
        sig2 = sig2.reshape(-1, 1) if sig2.ndim else sig2  # (B, 1) or scalar
        total = s2 + sig2  # (K,) or (B, K)
        diff = x_t[:, None, :] - self.means.to(x_t)[None]  # (B, K, n)
        logits = (
            torch.log(self.weights.to(x_t))
            - 0.5 * diff.square().sum(-1) / total
            - 0.5 * self.dim * torch.log(2 * math.pi * total)
        )
        resp = torch.softmax(logits, dim=-1)
        gain = (s2 / total)[..., None]  # (K, 1) or (B, K, 1)
        m = self.means.to(x_t)[None] + gain * diff
        return resp, m, s2 * sig2 / total

    def denoise(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        """E[x | x_t]: (B, n) -> (B, n); differentiable (autograd gives J)."""
        resp, m, _ = self._components(x_t, sigma)
        return torch.einsum("bk,bkn->bn", resp, m)

    def posterior_covariance(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        """Cov[x | x_t]: (B, n) -> (B, n, n)."""
        resp, m, v = self._components(x_t, sigma)
        mean = torch.einsum("bk,bkn->bn", resp, m)
        v = v.expand(resp.shape)
        second = torch.einsum("bk,bkn,bkm->bnm", resp, m, m)
        eye = torch.eye(self.dim, dtype=x_t.dtype, device=x_t.device)
        iso = (resp * v).sum(-1)[:, None, None] * eye
        return iso + second - mean[:, :, None] * mean[:, None, :]

    def jacobian(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        """J = Cov[x | x_t] / sigma^2: (B, n) -> (B, n, n), symmetric."""
        s2 = torch.as_tensor(sigma, dtype=x_t.dtype, device=x_t.device) ** 2
        s2 = s2.reshape(-1, 1, 1) if s2.ndim else s2
        return self.posterior_covariance(x_t, sigma) / s2

    def projected_components(
        self, x_t: Tensor, sigma: float, w: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Responsibilities r_k (B, K), projected component means w^T m_k (B, K) and component
        variances v_k (K,) for a scalar sigma, without forming the (B, K, n) means:

            ||x_t - mu_k||^2 = ||x_t||^2 - 2 x_t^T mu_k + ||mu_k||^2   (one matmul),
            w^T m_k = w^T mu_k + s_k^2 / (s_k^2 + sigma^2) (w^T x_t - w^T mu_k).

        Memory O(B K) instead of O(B K n); what the covariance study needs at 2^20 samples."""
        means = self.means.to(x_t)
        s2 = self.stds.to(x_t) ** 2
        total = s2 + sigma**2  # (K,)
        sq = x_t.square().sum(-1, keepdim=True) - 2 * x_t @ means.T + means.square().sum(-1)
        logits = (
            torch.log(self.weights.to(x_t))
            - 0.5 * sq.clamp_min(0) / total
            - 0.5 * self.dim * torch.log(2 * math.pi * total)
        )
        resp = torch.softmax(logits, dim=-1)
        w_mu = means @ w  # (K,)
        wm = w_mu + (s2 / total) * ((x_t @ w)[:, None] - w_mu)
        return resp, wm, s2 * sigma**2 / total

    def linear_loglik(
        self, x_t: Tensor, sigma: float, w: Tensor, y: float, sigma_y2: float
    ) -> Tensor:
        """Exact log p(y | x_t) for one linear measurement y = w^T x + N(0, sigma_y2):

        p(y | x_t) = sum_k r_k(x_t) N(y; w^T m_k, sigma_y2 + v_k ||w||^2).
        x_t (B, n), w (n,), y scalar -> (B,)."""
        resp, wm, v = self.projected_components(x_t, float(sigma), w)
        var = sigma_y2 + v * (w @ w)
        log_n = -0.5 * (float(y) - wm) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)
        return torch.logsumexp(torch.log(resp.clamp_min(1e-300)) + log_n, dim=-1)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k, None] * z
