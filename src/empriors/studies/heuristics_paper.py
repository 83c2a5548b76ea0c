"""The covariance study (paper Fig. 2) as the reference code runs it: the ``paper`` variant of
empriors.studies.heuristics (facts from francois-rozet/diffusion-priors
experiments/manifold/compare.py and utils.py; config/parity.yaml).

Per seed: the prior p(x) is the K-component mixture on a random 1-d manifold in R^3 (as the
``ours`` variant); W in R^{1x3} unit norm; y = W mu_0 + sigma_y e with mu_0 the FIRST
component's mean; N prior samples x_i (float64) and their empirical covariance Sigma_x (cov_x).

- true posterior: resample N of the x_i with weights N(y; W x_i, sigma_y^2) (with replacement);
  u1, u2 = the first and last n_eval of them, each plus sigma_t z: two samples of p(x_t | y);
- approximation, per heuristic h: x_t,i = x_i + sigma_t z_i, resampled with weights
  q_h(y | x_t,i) = N(y; W E[x | x_t], sigma_y^2 + W V_h W^T); v = the first n_eval;
- metric: S = max(OT(u1, v) - OT(u1, u2), floor), OT = <P, C> of POT's log-domain Sinkhorn plan
  (squared Euclidean cost, reg 1e-3, at most 1024 iterations, stopThr 1e-3: the reference's
  sinkhorn_divergence, which is not the debiased Sinkhorn divergence).

Only the first n_eval (and 2 n_eval) resampled points are used, so only those are drawn: the
same law as resampling N and slicing. The reference gets Tweedie's V from the Hessian of
log p(x_t) by autodiff; here the mixture's closed-form Cov[x | x_t] (the same matrix,
empriors.studies.heuristics.approximate_logliks).

Beside the reference's S, each row records what the issue asks about it: the unfloored value,
whether either Sinkhorn stopped at its iteration cap, the L1 error of the plan's marginals,
the exact (unregularised) OT difference W2^2(u1, v) - W2^2(u1, u2) by POT's network simplex
(on the first ``exact_points`` points), and the converged debiased Sinkhorn divergence between
u1 and v (geomloss, the ``ours`` metric on the same clouds).
"""

from __future__ import annotations

import torch
from torch import Tensor

from empriors.metrics.sinkhorn import exact_ot, reference_sinkhorn, weighted_sinkhorn_divergence
from empriors.mixture import GaussianMixture
from empriors.studies.heuristics import HEURISTICS, approximate_logliks, manifold_mixture


def _resample(logw: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """n indices drawn with replacement with probabilities softmax(logw)."""
    return torch.multinomial(torch.softmax(logw, 0).cpu(), n, replacement=True, generator=generator)


def paper_study_one_seed(
    generator: torch.Generator,
    sigmas: list[float],
    components: int,
    std: float,
    sigma_y: float,
    n_prior: int,
    n_eval: int,
    reg: float,
    iterations: int,
    stop: float,
    floor: float,
    exact_points: int | None = None,
    chunk: int = 1 << 16,
    device: str = "cpu",
) -> list[dict]:
    """Every sigma_t and heuristic for one seed, the reference's procedure; one row each."""
    mix = manifold_mixture(components, std, generator)
    w = torch.randn(mix.dim, generator=generator, dtype=torch.float64)
    w = w / w.norm()
    y = float(mix.means[0] @ w + sigma_y * torch.randn(1, generator=generator, dtype=torch.float64))
    x = mix.sample(n_prior, generator)
    cov_x = torch.cov(x.T)
    true = x[_resample(-0.5 * (y - x @ w) ** 2 / sigma_y**2, 2 * n_eval, generator)]
    mix_d = GaussianMixture(mix.means.to(device), mix.stds.to(device), mix.weights.to(device))
    w_d, cov_x_d = w.to(device), cov_x.to(device)
    m = exact_points or n_eval
    rows = []
    for sigma in sigmas:
        noisy = true + sigma * torch.randn(true.shape, generator=generator, dtype=true.dtype)
        u1, u2 = noisy[:n_eval].to(device), noisy[n_eval:].to(device)
        x_t = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype)
        x_t_d = x_t.to(device)
        logliks = [
            approximate_logliks(mix_d, x_t_d[i : i + chunk], sigma, w_d, y, sigma_y**2, cov_x_d)
            for i in range(0, n_prior, chunk)
        ]
        base = reference_sinkhorn(u1, u2, reg, iterations, stop)
        base_exact = exact_ot(u1[:m], u2[:m])
        for h in HEURISTICS:
            v = x_t_d[_resample(torch.cat([ll[h] for ll in logliks]), n_eval, generator).to(device)]
            ot_v = reference_sinkhorn(u1, v, reg, iterations, stop)
            raw = ot_v["value"] - base["value"]
            rows.append(
                {
                    "sigma_t": sigma,
                    "heuristic": h,
                    "divergence": max(raw, floor),
                    "raw": raw,
                    "floored": raw < floor,
                    "converged": ot_v["converged"] and base["converged"],
                    "marginal_error": max(ot_v["marginal_error"], base["marginal_error"]),
                    "exact": exact_ot(u1[:m], v[:m]) - base_exact,
                    "converged_divergence": weighted_sinkhorn_divergence(u1, v, reg),
                }
            )
    return rows


PAPER_METRICS = ("divergence", "exact", "converged_divergence")
RATIO_METRICS = ("divergence", "converged_divergence")


def summarize_paper(rows: list[dict]) -> list[dict]:
    """Per (sigma_t, heuristic): medians over seeds of the reference's S, of the exact OT
    difference and of the converged divergence; the fractions of seeds at the floor and
    unconverged, and with an exact difference below 0 (sampling noise); the largest marginal
    error; and the median over seeds of the ratio heuristic / Tweedie of S and of the
    converged divergence (> 1: Tweedie is closer)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["sigma_t"], r["heuristic"]), []).append(r)
    out = []
    for (sigma, h), group in sorted(groups.items()):
        tweedie = {r["seed"]: r for r in groups[(sigma, "tweedie")]}
        row = {"sigma_t": sigma, "heuristic": h, "seeds": len(group)}
        for metric in PAPER_METRICS:
            values = torch.tensor([r[metric] for r in group], dtype=torch.float64)
            row[f"median_{metric}"] = float(values.median())
        for metric in RATIO_METRICS:  # the exact difference can be < 0: no ratio
            ratios = torch.tensor(
                [r[metric] / tweedie[r["seed"]][metric] for r in group], dtype=torch.float64
            )
            row[f"ratio_{metric}"] = "" if h == "tweedie" else float(ratios.median())
        row["exact_below_zero"] = sum(r["exact"] < 0 for r in group) / len(group)
        row["floored"] = sum(r["floored"] for r in group) / len(group)
        row["unconverged"] = sum(not r["converged"] for r in group) / len(group)
        row["max_marginal_error"] = max(r["marginal_error"] for r in group)
        out.append(row)
    return out
