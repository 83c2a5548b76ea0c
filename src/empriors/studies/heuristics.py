"""The MMPS paper's covariance study (Fig. 2): how close is the Gaussian-approximate
posterior q(x_t | y) to the true p(x_t | y) under each heuristic for V[x | x_t]?

Setting (PAPERS.md 1, "Heuristic study"): the prior p(x) is a mixture of K Gaussians (std s)
centred on K points of a random 1-d manifold in R^3; one unit-norm measurement row
W in R^{1x3}; y = W x* + sigma_y e for x* ~ p. For each sigma_t:

- draw N prior samples x_i and x_t,i = x_i + sigma_t z_i;
- true posterior p(x_t | y): the x_t,i weighted by N(y; W x_i, sigma_y^2) (exact importance
  weights of p(x, x_t | y));
- approximation q(x_t | y) for heuristic h: the same x_t,i weighted by
      q(y | x_t) = N(y; W E[x | x_t], sigma_y^2 + W V_h W^T),
  with E[x | x_t] the mixture's exact denoiser and
      zeros: V = 0;  sigma_t: V = sigma_t^2 I;  cov_x: V = (Sigma_x^{-1} + sigma_t^{-2} I)^{-1}
      (Sigma_x the prior's covariance);  tweedie: V = Cov[x | x_t] = sigma_t^2 J (exact);
- distance: debiased Sinkhorn divergence between the two weightings of the same x_t samples
  (no resampling noise), on coordinates divided by their standard deviation so that one
  entropic reg fits every sigma_t (our choice: the paper gives no Sinkhorn settings).
"""

from __future__ import annotations

import math

import ot
import torch
from torch import Tensor

from empriors.data.manifold import RandomManifold, minmax_scale
from empriors.mixture import GaussianMixture

HEURISTICS = ("zeros", "sigma_t", "cov_x", "tweedie")


def manifold_mixture(
    components: int, std: float, generator: torch.Generator, dim: int = 3
) -> GaussianMixture:
    """K equal-weight components of std ``std`` on a random 1-d manifold in R^dim, the
    manifold min-max scaled to [-2, 2] per coordinate (our choice, as the manifold data)."""
    manifold = RandomManifold.random(dim, 1, alpha=3.0, eps=1e-3, generator=generator)
    centres = manifold.sample(components, generator)
    low, high = centres.min(0).values, centres.max(0).values
    means = minmax_scale(centres, low, high)
    return GaussianMixture(
        means,
        torch.full((components,), std, dtype=torch.float64),
        torch.full((components,), 1 / components, dtype=torch.float64),
    )


def mixture_covariance(mix: GaussianMixture) -> Tensor:
    """Sigma_x = sum_k w_k (s_k^2 I + mu_k mu_k^T) - mu mu^T: (n, n)."""
    mu = mix.weights @ mix.means
    second = torch.einsum("k,kn,km->nm", mix.weights, mix.means, mix.means)
    iso = (mix.weights * mix.stds**2).sum() * torch.eye(mix.dim, dtype=mix.means.dtype)
    return iso + second - torch.outer(mu, mu)


def _gauss_logpdf(y: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    return -0.5 * (y - mean) ** 2 / var - 0.5 * torch.log(2 * math.pi * var)


def approximate_logliks(
    mix: GaussianMixture,
    x_t: Tensor,
    sigma: float,
    w: Tensor,
    y: float,
    sigma_y2: float,
    cov_x: Tensor,
) -> dict[str, Tensor]:
    """log q(y | x_t) under every heuristic: x_t (B, n), w (n,) -> {heuristic: (B,)}."""
    s = torch.tensor(sigma, dtype=x_t.dtype)
    mean = mix.denoise(x_t, s) @ w
    eye = torch.eye(mix.dim, dtype=x_t.dtype)
    v_cov_x = torch.linalg.inv(torch.linalg.inv(cov_x) + eye / sigma**2)
    wvw = {
        "zeros": torch.zeros(()),
        "sigma_t": torch.tensor(sigma**2 * float(w @ w)),
        "cov_x": torch.tensor(float(w @ v_cov_x @ w)),
        "tweedie": torch.einsum("n,bnm,m->b", w, mix.posterior_covariance(x_t, s), w),
    }
    y_ = torch.tensor(y, dtype=x_t.dtype)
    return {h: _gauss_logpdf(y_, mean, sigma_y2 + wvw[h].to(x_t)) for h in HEURISTICS}


def sinkhorn_divergence(
    u: Tensor, a: Tensor, v: Tensor, b: Tensor, reg: float, iterations: int = 2000
) -> float:
    """Debiased Sinkhorn divergence OT(a,b) - (OT(a,a) + OT(b,b)) / 2 between weighted point
    clouds (u, a) and (v, b). Standard Sinkhorn: reg is large enough here for it to be
    stable, and it is far faster than POT's log-domain solver."""

    def ot_(p, wp, q, wq):
        return float(ot.sinkhorn2(wp, wq, ot.dist(p, q), reg, numItermax=iterations, stopThr=1e-7))

    return ot_(u, a, v, b) - 0.5 * (ot_(u, a, u, a) + ot_(v, b, v, b))


def study_one_seed(
    generator: torch.Generator,
    sigmas: list[float],
    components: int,
    std: float,
    sigma_y: float,
    n_prior: int,
    support: int,
    reg: float,
    chunk: int = 1 << 14,
) -> list[dict]:
    """All sigma_t and heuristics for one random prior, row W and observation y.

    p(x_t | y) and every q(x_t | y) are weightings of the same N samples x_t; they are
    compared on the ``support`` samples carrying the most weight (summed over methods), so
    the divergence measures the weights' disagreement without resampling noise. The mass
    left outside that support is reported (``mass_outside``).
    """
    mix = manifold_mixture(components, std, generator)
    cov_x = mixture_covariance(mix)
    w = torch.randn(mix.dim, generator=generator, dtype=torch.float64)
    w = w / w.norm()
    noise = sigma_y * torch.randn(1, generator=generator, dtype=torch.float64)
    y = float(mix.sample(1, generator)[0] @ w + noise)
    rows = []
    for sigma in sigmas:
        x = mix.sample(n_prior, generator)
        x_t = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        logw = {
            "exact": _gauss_logpdf(
                torch.tensor(y, dtype=x.dtype), x @ w, torch.tensor(sigma_y**2, dtype=x.dtype)
            )
        }
        parts = [
            approximate_logliks(mix, x_t[i : i + chunk], sigma, w, y, sigma_y**2, cov_x)
            for i in range(0, n_prior, chunk)
        ]
        logw.update({h: torch.cat([p[h] for p in parts]) for h in HEURISTICS})
        probs = {k: torch.softmax(v, 0) for k, v in logw.items()}
        keep = torch.stack(list(probs.values())).sum(0).topk(min(support, n_prior)).indices
        points = x_t[keep] / x_t[keep].std()
        exact = probs["exact"][keep]
        for h in HEURISTICS:
            approx = probs[h][keep]
            rows.append(
                {
                    "sigma_t": sigma,
                    "heuristic": h,
                    "divergence": sinkhorn_divergence(
                        points, exact / exact.sum(), points, approx / approx.sum(), reg
                    ),
                    "mass_outside": float(max(1 - exact.sum(), 1 - approx.sum())),
                    "ess_exact": float(1 / (probs["exact"] ** 2).sum()),
                }
            )
    return rows
