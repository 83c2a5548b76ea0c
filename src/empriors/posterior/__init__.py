"""E-step posterior samplers, one file each. Each builds a posterior denoiser
d(x_t, sigma | y) for :func:`empriors.diffusion.sample` (DPS adds a ``post_step`` guidance).

- ``mmps``    moment matching (ours; covariance variants in mmps.py)
- ``pigdm``   PiGDM, noisy form: exactly MMPS with V = (I + Sigma_t^{-1})^{-1} = r_t^2 I
              (Song et al. 2023, eq. 8; the relation the MMPS paper draws)
- ``tmpd``    Tweedie moment projection (row-sum diagonal of A V A^T)
- ``diffpir`` proximal data step with a fixed number of CG iterations
- ``dps``     gradient of the residual norm, step-level
"""

from __future__ import annotations

from empriors.diffusion import DenoiserFn
from empriors.gaussian import LowRankGaussian
from empriors.operators import LinearOperator
from empriors.posterior.diffpir import DiffPIRDenoiser
from empriors.posterior.dps import DPSDenoiser
from empriors.posterior.mmps import (
    CG_MODES,
    COVARIANCES,
    CGMonitor,
    MMPSDenoiser,
    conjugate_gradient,
)
from empriors.posterior.tmpd import TMPDDenoiser

POSTERIORS = ("mmps", "pigdm", "tmpd", "diffpir", "dps")

__all__ = [
    "CG_MODES",
    "COVARIANCES",
    "CGMonitor",
    "POSTERIORS",
    "DPSDenoiser",
    "DiffPIRDenoiser",
    "MMPSDenoiser",
    "TMPDDenoiser",
    "build_posterior",
    "conjugate_gradient",
]


def build_posterior(
    kind: str,
    prior: DenoiserFn,
    op: LinearOperator,
    y,
    sigma_y2: float,
    *,
    covariance: str = "tweedie",
    gaussian: LowRankGaussian | None = None,
    cg_rtol: float = 1e-3,
    cg_maxiter: int | None = None,
    cg: str = "per_sample",
    cg_group: int | None = None,
    dps_zeta: float = 1.0,
    diffpir_lambda: float = 10.0,
):
    """The posterior denoiser ``kind`` for observations y of this batch; ``cg``, ``cg_group``:
    MMPS's and PiGDM's CG per sample or per group of rows (:func:`conjugate_gradient`)."""
    solver = (cg_rtol, cg_maxiter, cg, cg_group)
    if kind == "mmps":
        return MMPSDenoiser(prior, op, y, sigma_y2, covariance, gaussian, *solver)
    if kind == "pigdm":
        return MMPSDenoiser(prior, op, y, sigma_y2, "identity", None, *solver)
    if kind == "tmpd":
        return TMPDDenoiser(prior, op, y, sigma_y2)
    if kind == "diffpir":
        return DiffPIRDenoiser(prior, op, y, sigma_y2, diffpir_lambda, cg_maxiter or 1)
    if kind == "dps":
        return DPSDenoiser(prior, op, y, dps_zeta)
    raise ValueError(f"unknown posterior sampler {kind!r}; choose one of {POSTERIORS}")
