"""Entropic optimal transport between point clouds, with POT (log-domain Sinkhorn).

OT_eps(u, v) = <P*, C> where P* is the entropic plan for the squared Euclidean cost C and
uniform weights. Two figures (PAPERS.md 1):

- the paper's figure:  S(v) = OT(u1, v) - OT(u1, u2), u1, u2 disjoint true sets, v model samples;
- the debiased Sinkhorn divergence: OT(u1, v) - (OT(u1, u1) + OT(v, v)) / 2 (labelled as such).

The reference code's own metric (francois-rozet/diffusion-priors experiments/manifold/utils.py,
issue 19.8) is :func:`paper_scores`: the same S with POT's Sinkhorn stopped as the reference
stops it (stopThr 1e-3, at most 1,024 iterations) and floored at 1e-6, reported beside the
checks of what that early stop costs (the iteration cap, the plan's marginal error, the exact
OT difference and the converged debiased divergence).
"""

from __future__ import annotations

import torch
from geomloss import SamplesLoss
from torch import Tensor


def entropic_ot(u: Tensor, v: Tensor, reg: float = 1e-3, iterations: int = 1024) -> float:
    """<P, C> of the log-domain Sinkhorn plan between u (N, n) and v (M, n), uniform weights."""
    import ot  # here, not at the top: POT pulls in scikit-learn (~2 s for every stage job)

    u, v = u.to(torch.float64), v.to(torch.float64)
    a = torch.full((u.shape[0],), 1 / u.shape[0], dtype=torch.float64, device=u.device)
    b = torch.full((v.shape[0],), 1 / v.shape[0], dtype=torch.float64, device=u.device)
    cost = ot.dist(u, v, metric="sqeuclidean")
    value = ot.sinkhorn2(
        a, b, cost, reg, method="sinkhorn_log", numItermax=iterations, stopThr=1e-9
    )
    return float(value)


def sinkhorn_scores(
    v: Tensor, u1: Tensor, u2: Tensor, reg: float = 1e-3, iterations: int = 1024
) -> dict[str, float]:
    """The paper's S = OT(u1, v) - OT(u1, u2) and the debiased Sinkhorn divergence."""
    ot_u1_v = entropic_ot(u1, v, reg, iterations)
    return {
        "sinkhorn": ot_u1_v - entropic_ot(u1, u2, reg, iterations),
        "sinkhorn_divergence": ot_u1_v
        - 0.5 * (entropic_ot(u1, u1, reg, iterations) + entropic_ot(v, v, reg, iterations)),
        "ot_u1_v": ot_u1_v,
    }


def weighted_sinkhorn_divergence(
    u: Tensor, v: Tensor, reg: float, a: Tensor | None = None, b: Tensor | None = None
) -> float:
    """Debiased Sinkhorn divergence OT(a,b) - (OT(a,a) + OT(b,b)) / 2 for the cost
    ||x - y||^2 and entropic reg ``reg``, between clouds u (N, n), v (M, n) with optional
    weights a (N,), b (M,) (uniform by default). Used by the studies.

    geomloss (log-domain, epsilon-scaling) rather than POT: POT's standard solver underflows
    on far-apart points and its log-domain solver is ~100x slower on a CPU. geomloss's cost
    is ||x - y||^2 / 2 with eps = blur^2, so blur = sqrt(reg / 2) and the value is doubled.
    """
    loss = SamplesLoss(
        "sinkhorn", p=2, blur=(reg / 2) ** 0.5, debias=True, scaling=0.9, backend="tensorized"
    )
    if a is None:
        a = torch.full((u.shape[0],), 1 / u.shape[0], dtype=u.dtype, device=u.device)
    if b is None:
        b = torch.full((v.shape[0],), 1 / v.shape[0], dtype=v.dtype, device=v.device)
    return 2 * float(loss(a, u, b, v))


def reference_sinkhorn(u: Tensor, v: Tensor, reg: float, iterations: int, stop: float) -> dict:
    """POT's sinkhorn_log between uniform clouds u (N, n), v (M, n) with the reference's
    settings: {"value": <P, C>, "converged": stopped before the cap, "marginal_error":
    ||P 1 - a||_1 + ||P^T 1 - b||_1}."""
    import ot  # here, not at the top: POT pulls in scikit-learn

    a = torch.full((u.shape[0],), 1 / u.shape[0], dtype=u.dtype, device=u.device)
    b = torch.full((v.shape[0],), 1 / v.shape[0], dtype=v.dtype, device=v.device)
    cost = ot.dist(u, v, metric="sqeuclidean")
    plan, log = ot.sinkhorn(
        a, b, cost, reg, method="sinkhorn_log", numItermax=iterations, stopThr=stop, log=True,
        warn=False,
    )  # fmt: skip
    error = (plan.sum(1) - a).abs().sum() + (plan.sum(0) - b).abs().sum()
    return {
        "value": float((plan * cost).sum()),
        # POT reports niter = numItermax - 1 when it ran out of iterations (measured: 1023)
        "converged": int(log["niter"]) < iterations - 1,
        "marginal_error": float(error),
    }


def exact_ot(u: Tensor, v: Tensor) -> float:
    """W2^2 between uniform clouds by POT's network simplex (on the CPU)."""
    import ot

    u, v = u.cpu().numpy(), v.cpu().numpy()
    return float(ot.emd2([], [], ot.dist(u, v, metric="sqeuclidean"), numItermax=10**8))


def paper_baseline(
    u1: Tensor,
    u2: Tensor,
    reg: float = 1e-3,
    iterations: int = 1024,
    stop: float = 1e-3,
    exact_points: int | None = None,
) -> dict[str, float]:
    """The terms of :func:`paper_scores` that do not depend on the model, computed once:
    the reference's OT(u1, u2) with its checks and the exact W2^2(u1, u2) (NaN when
    ``exact_points`` is 0). u1, u2 (N, n)."""
    u1, u2 = u1.to(torch.float64), u2.to(torch.float64)
    base = reference_sinkhorn(u1, u2, reg, iterations, stop)
    k = len(u1) if exact_points is None else exact_points
    base["exact"] = exact_ot(u1[:k], u2[:k]) if k > 0 else float("nan")
    return base


def paper_scores(
    v: Tensor,
    u1: Tensor,
    base: dict,
    reg: float = 1e-3,
    iterations: int = 1024,
    stop: float = 1e-3,
    floor: float = 1e-6,
    exact_points: int | None = None,
) -> dict[str, float]:
    """The reference's S(v) = max(OT(u1, v) - OT(u1, u2), floor), OT by :func:`reference_sinkhorn`
    (float64; OT(u1, u2) and W2^2(u1, u2) from ``base`` = :func:`paper_baseline`), with its
    checks: ``paper_unfloored`` (the difference before the floor), ``paper_capped`` (1.0 when
    either Sinkhorn ran to its cap), ``paper_marginal_l1`` (the larger plan marginal error),
    ``paper_exact`` (W2^2(u1, v) - W2^2(u1, u2) by the network simplex, on the first
    ``exact_points`` points of each cloud; None: all; 0: skipped, NaN) and ``paper_debiased``
    (the converged debiased Sinkhorn divergence between u1 and v, geomloss: the study's
    converged column). u1 (N, n), v (M, n)."""
    u1, v = u1.to(torch.float64), v.to(torch.float64)
    near = reference_sinkhorn(u1, v, reg, iterations, stop)
    difference = near["value"] - base["value"]
    k = max(len(u1), len(v)) if exact_points is None else exact_points
    exact = exact_ot(u1[:k], v[:k]) - base["exact"] if k > 0 else float("nan")
    return {
        "paper_sinkhorn": max(difference, floor),
        "paper_unfloored": difference,
        "paper_capped": float(not (near["converged"] and base["converged"])),
        "paper_marginal_l1": max(near["marginal_error"], base["marginal_error"]),
        "paper_exact": exact,
        "paper_debiased": weighted_sinkhorn_divergence(u1, v, reg),
    }
