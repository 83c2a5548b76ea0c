"""Label-free diagnostics of an EM lap: computed from the observations and the lap's own
samples, never from clean data (results/{exp}/diagnostics.csv).

- ``predictive``: posterior-predictive check in observation space. With x_i drawn from the
  lap's prior q_k and the operators A_i of the first n observations,
      y~_i = A_i x_i + sigma_y e_i,
  the sliced 2-Wasserstein distance SW2({y~_i}, {y_i}) (POT, fixed random directions). A prior
  close to the data's makes simulated observations indistinguishable from the recorded ones.
  (DiffEM's evaluation samples reconstruct the observations, so for it this is a consistency
  check of its reconstructions rather than of an unconditional prior.)
- ``residual``: the E-step's data fit, mean_i ||y_i - A_i x_i||^2 / (m sigma_y^2) over the
  lap's posterior samples x_i (m entries per observation); about 1 when the samples explain
  the data to the noise level, >> 1 when they do not.
- ``change``: the mean squared change of the E-step samples from the previous lap,
  mean_i ||x_i^(k) - x_i^(k-1)||^2 / d (the same observation, row by row), which falls as EM
  settles.
- ``cg_residual``: how the E-step's conjugate-gradient solves of MMPS,
  (Sigma_y + A V A^T) u = y - A x_hat, ended: the mean final relative residual
  ||b - M u|| / ||b|| over every sampler step and sample (recorded by the E-step stage with
  :class:`empriors.posterior.CGMonitor`). With the papers' 1-5 iterations it measures how well
  the prior's covariance V conditions the system; NaN for E-steps without CG (DiffEM's and
  FlowDiff's later laps).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from empriors.operators import LinearOperator, observe

# the columns of diagnostics.csv (and em.stop_when's choices), in the figure's order
DIAGNOSTICS = ("predictive", "residual", "change", "cg_residual")


def predictive_distance(
    y: Tensor,
    op: LinearOperator,
    x: Tensor,
    sigma_y: float,
    generator: torch.Generator,
    projections: int = 128,
) -> float:
    """SW2 between y (n, m) and A x + sigma_y e for prior samples x (n, d), row i of x under
    the operator of observation i."""
    import ot  # POT, here: it pulls in scikit-learn

    a = op.to(dtype=torch.float64)
    simulated = observe(x.to(torch.float64), a, sigma_y, generator)  # as the corrupt stage
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    sw = ot.sliced_wasserstein_distance(
        y.to(torch.float64), simulated, n_projections=projections, seed=seed
    )
    return float(sw)


def residual_ratio(y: Tensor, op: LinearOperator, x: Tensor, sigma_y: float) -> float:
    """mean_i ||y_i - A_i x_i||^2 / (m sigma_y^2) for posterior samples x (n, d) of y (n, m)
    (every one of the m entries carries noise, masked ones too: operators.observe)."""
    a = op.to(dtype=torch.float64)
    r = (y.to(torch.float64) - a(x.to(torch.float64))).square().mean(-1)
    return float((r / sigma_y**2).mean())


def sample_change(x: Tensor, previous: Tensor) -> float:
    """mean_i ||x_i - previous_i||^2 / d, rows matched by observation."""
    return float((x.to(torch.float64) - previous.to(torch.float64)).square().mean())


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation of two equal-length series (NaN if fewer than 3 pairs)."""
    from scipy.stats import spearmanr

    pairs = [(u, v) for u, v in zip(a, b, strict=True) if math.isfinite(u) and math.isfinite(v)]
    if len(pairs) < 3:
        return float("nan")
    return float(spearmanr(*zip(*pairs, strict=True)).statistic)


def stop_decision(values: list[float], rel_change: float, window: int) -> tuple[bool, str]:
    """The early-stopping rule em.stop_when on a diagnostic's values at laps 0..k: stop at k
    when each of the last ``window`` relative changes |v_j - v_{j-1}| / |v_{j-1}| is below
    ``rel_change`` (undefined values, such as lap 0's residual, never stop)."""
    if len(values) <= window:
        return False, f"{len(values)} lap(s): fewer than window + 1 = {window + 1}"
    recent = values[-window - 1 :]
    if not all(math.isfinite(v) and v != 0 for v in recent):
        return False, f"undefined or zero values among the last {window + 1}: {recent}"
    changes = [abs(b - a) / abs(a) for a, b in zip(recent, recent[1:], strict=False)]
    text = ", ".join(f"{c:.3g}" for c in changes)
    if all(c < rel_change for c in changes):
        return True, f"relative changes {text} all below {rel_change}"
    return False, f"relative changes {text}: not all below {rel_change}"
