"""Moment-matching posterior sampling (MMPS, Rozet et al. 2024).

Posterior denoiser, with x_hat = d(x_t), J = d x_hat / d x_t, Sigma_t = sigma_t^2 I:

    E[x | x_t, y] ~= x_hat + Sigma_t J^T A^T u,   (Sigma_y + A V A^T) u = y - A x_hat,

solved by conjugate gradient: per sample (``cg="per_sample"``, as azula), or as one system
per group of ``cg_group`` rows (``cg="batch"``, as the reference code's
jax.scipy.sparse.linalg.cg on each array it samples at once: alpha, beta and the stopping test
shared by the group). V = V[x | x_t] is one
of (PAPERS.md 1):

    tweedie    V v = sigma_t^2 J^T v                 (one vector-Jacobian product; the method)
    identity   V = (I + Sigma_t^{-1})^{-1}           (Gaussian formula with Sigma_x = I)
    sigma_t    V = Sigma_t                           (Sigma_x -> infinity)
    cov_x      V = (Sigma_x^{-1} + Sigma_t^{-1})^{-1} (Sigma_x from the current PPCA fit)
    zeros      V = 0                                 (DPS-like; then u = Sigma_y^{-1} r)

Only V changes between variants; the outer correction always uses J^T, as in the authors'
code. Shapes: x_t (B, *S), y (B, *O); the operator follows the batch.
Cost per call: one forward plus (k + 1) VJPs for k CG iterations (tweedie), or 1 VJP otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from empriors.diffusion import DenoiserFn
from empriors.gaussian import LowRankGaussian
from empriors.operators import LinearOperator

COVARIANCES = ("tweedie", "identity", "sigma_t", "cov_x", "zeros")
CG_MODES = ("per_sample", "batch")


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(dim=1)


def _bcast(s: Tensor, like: Tensor) -> Tensor:
    return s.reshape(-1, *([1] * (like.ndim - 1)))


@dataclass(eq=False)  # identity, not field equality: open monitors are found by it
class CGMonitor:
    """Records how every CG solve run inside ``with CGMonitor() as cg:`` ended (an E-step's
    label-free diagnostic): per sample, the final relative residual ||b - M u|| / ||b|| and the
    iterations it took. Sums stay on the solves' device until read (no sync per solve).

    Monitors nest; each open one records. Samples of a compiled E-step's padded last batch
    are counted too.
    """

    solves: int = 0  # sample-solves recorded
    _residual: Tensor | float = 0.0
    _iterations: Tensor | float = 0.0

    def __enter__(self) -> CGMonitor:
        _MONITORS.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _MONITORS.remove(self)

    def record(self, relative_residual: Tensor, iterations: Tensor) -> None:
        """relative_residual, iterations: (B,) of one batched solve."""
        self.solves += relative_residual.numel()
        self._residual = self._residual + relative_residual.detach().double().sum()
        self._iterations = self._iterations + iterations.double().sum()

    def summary(self) -> dict[str, float]:
        """{cg_residual: the mean final relative residual, cg_iterations: the mean iterations,
        cg_solves}; NaN means when nothing was solved (no CG in this sampler)."""
        if not self.solves:
            return {"cg_residual": float("nan"), "cg_iterations": float("nan"), "cg_solves": 0}
        return {
            "cg_residual": float(self._residual) / self.solves,
            "cg_iterations": float(self._iterations) / self.solves,
            "cg_solves": self.solves,
        }


_MONITORS: list[CGMonitor] = []


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    rtol: float = 1e-3,
    maxiter: int | None = None,
    group: int | None = None,
) -> Tensor:
    """Solve M u = b for a batch b (B, *O) of symmetric positive-definite systems.

    Per sample (``group=None``): each sample has its own alpha, beta and stopping test
    ||r_i|| <= rtol ||b_i||, and stops at non-positive curvature p_i^T M p_i <= 0 (M
    indefinite, e.g. a network's Jacobian); ``maxiter`` defaults to the size of one system.
    In groups of ``group`` consecutive rows (the reference code's jax.scipy.sparse.linalg.cg
    on each array it samples at once): the inner products run over the group, so alpha, beta
    and the test ||r_G|| <= rtol ||b_G|| are the group's, with no curvature safeguard;
    ``maxiter`` defaults to 10 times the group's size, as JAX's. Both stop after ``maxiter``
    iterations. Every open :class:`CGMonitor` records how each sample's solve ended.

    Hand-written because the systems are batched and matrix-free (M is only available through
    VJPs); neither torch nor scipy offers a batched matrix-free CG.
    """
    if group is not None:
        ids = torch.arange(b.shape[0], device=b.device) // group
        groups = -(-b.shape[0] // group)  # counted here: no device sync in the loop
        n = min(group, b.shape[0]) * b[0].numel()
        maxiter = 10 * n if maxiter is None else maxiter

        def dot(u: Tensor, v: Tensor) -> Tensor:  # the group's inner product, on its rows
            sums = torch.zeros(groups, dtype=u.dtype, device=u.device)
            return sums.index_add_(0, ids, _dot(u, v))[ids]

    else:
        n = b[0].numel()
        maxiter = n if maxiter is None else maxiter
        dot = _dot
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = dot(r, r)
    threshold = (rtol**2) * dot(b, b)
    iterations = torch.zeros_like(rs)
    for _ in range(maxiter):
        active = rs > threshold
        if not active.any():
            break
        mp = matvec(p)
        curvature = dot(p, mp)
        if group is None:
            # A learned Jacobian need not be PSD: stop a sample at non-positive curvature (the
            # standard CG safeguard) instead of dividing by it; its x is the last good iterate.
            active = active & (curvature > 0)
        iterations = iterations + active
        alpha = torch.where(active, rs / torch.where(active, curvature, 1), 0)
        x = x + _bcast(alpha, x) * p
        r = r - _bcast(alpha, r) * mp
        rs_new = dot(r, r)
        beta = torch.where(active, rs_new / rs.clamp_min(torch.finfo(b.dtype).tiny), 0)
        p = r + _bcast(beta, p) * p
        rs = rs_new
    if _MONITORS:
        bb = _dot(b, b).clamp_min(torch.finfo(b.dtype).tiny)
        relative = (_dot(r, r) / bb).sqrt()
        for monitor in _MONITORS:
            monitor.record(relative, iterations)
    return x


class MMPSDenoiser:
    """d(x_t, sigma | y) for a prior denoiser, a linear operator and observations y.

    Args:
        prior: unconditional denoiser d(x_t, sigma) -> E[x | x_t].
        op: forward model for this batch; y: (B, *O) observations.
        sigma_y2: observation noise variance assumed by MMPS (Sigma_y = sigma_y2 I).
        covariance: one of :data:`COVARIANCES`.
        gaussian: the PPCA fit (needed for ``cov_x``).
        cg_rtol, cg_maxiter: conjugate gradient stopping rule.
        cg: ``per_sample`` (a CG per sample) or ``batch`` (one CG per ``cg_group`` consecutive
            rows, the whole batch if None: the reference code's); see
            :func:`conjugate_gradient`.
    """

    def __init__(
        self,
        prior: DenoiserFn,
        op: LinearOperator,
        y: Tensor,
        sigma_y2: float,
        covariance: str = "tweedie",
        gaussian: LowRankGaussian | None = None,
        cg_rtol: float = 1e-3,
        cg_maxiter: int | None = None,
        cg: str = "per_sample",
        cg_group: int | None = None,
    ):
        if covariance not in COVARIANCES:
            raise ValueError(f"unknown MMPS covariance {covariance!r}; choose one of {COVARIANCES}")
        if cg not in CG_MODES:
            raise ValueError(f"unknown CG mode {cg!r}; choose one of {CG_MODES}")
        if covariance == "cov_x" and gaussian is None:
            raise ValueError("MMPS covariance 'cov_x' needs the Gaussian (PPCA) fit of the prior")
        if gaussian is not None:
            gaussian = gaussian.to(device=y.device, dtype=y.dtype)
        self.prior, self.op, self.y = prior, op, y
        self.sigma_y2, self.covariance, self.gaussian = sigma_y2, covariance, gaussian
        self.cg_rtol, self.cg_maxiter = cg_rtol, cg_maxiter
        self.cg_group = None if cg == "per_sample" else (cg_group or y.shape[0])

    def _cov_mv(self, v: Tensor, sigma: Tensor, vjp: Callable[[Tensor], Tensor]) -> Tensor:
        s2 = sigma**2
        if self.covariance == "tweedie":
            return s2 * vjp(v)
        if self.covariance == "identity":
            return s2 / (1 + s2) * v
        if self.covariance == "sigma_t":
            return s2 * v
        if self.covariance == "cov_x":
            flat = v.flatten(1)
            return self.gaussian.posterior_cov_mv(flat, sigma).reshape(v.shape)
        return torch.zeros_like(v)

    def __call__(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        x_t = x_t.detach().requires_grad_(True)
        x_hat = self.prior(x_t, sigma)

        def vjp(v: Tensor) -> Tensor:
            return torch.autograd.grad(x_hat, x_t, v, retain_graph=True)[0]

        def system(u: Tensor) -> Tensor:  # (Sigma_y + A V A^T) u
            return self.sigma_y2 * u + self.op(self._cov_mv(self.op.adjoint(u), sigma, vjp))

        residual = (self.y - self.op(x_hat)).detach()
        u = conjugate_gradient(system, residual, self.cg_rtol, self.cg_maxiter, self.cg_group)
        return (x_hat + sigma**2 * vjp(self.op.adjoint(u))).detach()
