"""Entropic optimal transport between point clouds, with POT (log-domain Sinkhorn).

OT_eps(u, v) = <P*, C> where P* is the entropic plan for the squared Euclidean cost C and
uniform weights. Two figures (PAPERS.md 1):

- the paper's figure:  S(v) = OT(u1, v) - OT(u1, u2), u1, u2 disjoint true sets, v model samples;
- the debiased Sinkhorn divergence: OT(u1, v) - (OT(u1, u1) + OT(v, v)) / 2 (labelled as such).
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
