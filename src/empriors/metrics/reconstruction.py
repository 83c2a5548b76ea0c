"""Posterior reconstructions of held-out k-space observations, scored by PSNR and SSIM against
the truth and against the zero-filled baseline (the MRI experiment's second table).

For each acceleration r, the same held-out clean slices x_i (N, H W) are observed with fresh
random column masks, y_i = M_i F x_i + sigma_y e; the masks and noise depend on r and the seed
only, so every EM iteration is scored on the same observations. Each y_i gets P posterior samples
from the caller's sampler (method independent: EM-MMPS, DiffEM, ...).

Scores follow fastMRI's evaluation code (``fastmri.evaluate``: scikit-image's PSNR and SSIM,
7x7 window) on magnitudes m = (x + 2) / 4 in [0, 1] (x = 4 m / max_volume - 2 undone), data
range 1, no clipping of either estimate. PSNR and SSIM are computed per slice, then averaged
over slices (and over the P samples for posterior samples).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from empriors.operators import KSpaceColumnMask, observe
from empriors.seeding import derive_seed, generator

PosteriorFn = Callable[[KSpaceColumnMask, Tensor, float], Tensor]


@dataclass
class Reconstructions:
    """Held-out observations at one acceleration and their reconstructions.
    masks (N, W), zero_filled (N, H W), samples (N, P, H W)."""

    acceleration: float
    masks: Tensor
    zero_filled: Tensor
    samples: Tensor


def acceleration_label(r: float) -> str:
    """Column suffix of an acceleration: 6 -> 'r6', 2.5 -> 'r2.5'."""
    return f"r{float(r):g}"


def score_columns(accelerations: list[float]) -> list[str]:
    """The CSV columns of :func:`scores`, grouped by acceleration in the given order."""
    kinds = ("psnr", "psnr_mean", "psnr_zf", "ssim", "ssim_mean", "ssim_zf")
    return [f"{kind}_{acceleration_label(r)}" for r in accelerations for kind in kinds]


def reconstruct_held_out(
    truth: Tensor,
    shape: tuple[int, int],
    accelerations: list[float],
    sigma_y: float,
    samples_per_observation: int,
    posterior: PosteriorFn,
    seed: int,
) -> list[Reconstructions]:
    """truth (N, H W) -> one :class:`Reconstructions` per acceleration. ``posterior(op, y, r)``
    returns one sample per row of y: (B, H W)."""
    n, p = truth.shape[0], samples_per_observation
    rows = torch.arange(n).repeat_interleave(p)
    out = []
    for r in accelerations:
        g = generator(derive_seed(seed, "held-out observations", acceleration_label(r)))
        op = KSpaceColumnMask.random(n, shape, r, g)
        y = observe(truth, op, sigma_y, g)
        x = posterior(op[rows], y[rows], r).reshape(n, p, -1)
        out.append(Reconstructions(float(r), op.masks, op.zero_filled(y), x))
    return out


def psnr_ssim(truth: Tensor, estimate: Tensor, shape: tuple[int, int]) -> tuple[float, float]:
    """Mean over slices of fastMRI's PSNR and SSIM; truth, estimate (N, H W) in [-2, 2]."""
    from fastmri.evaluate import psnr, ssim

    gt = ((truth.double() + 2) / 4).reshape(-1, *shape).numpy()
    pred = ((estimate.double() + 2) / 4).reshape(-1, *shape).numpy()
    psnrs = [psnr(gt[i], pred[i], maxval=1.0) for i in range(gt.shape[0])]
    return float(np.mean(psnrs)), float(ssim(gt, pred, maxval=1.0)[0])


def scores(recs: list[Reconstructions], truth: Tensor, shape: tuple[int, int]) -> dict:
    """Flat columns per acceleration: psnr_r{r}, ssim_r{r} (single posterior samples),
    psnr_mean_r{r}, ssim_mean_r{r} (the mean of the P samples, an estimate of E[x | y]) and
    psnr_zf_r{r}, ssim_zf_r{r} (zero-filled). For a calibrated posterior a single sample has
    about twice the squared error of E[x | y], so samples trail the mean by up to 3 dB."""
    out = {}
    for rec in recs:
        label = acceleration_label(rec.acceleration)
        p = rec.samples.shape[1]
        out[f"psnr_{label}"], out[f"ssim_{label}"] = psnr_ssim(
            truth.repeat_interleave(p, dim=0), rec.samples.flatten(0, 1), shape
        )
        out[f"psnr_mean_{label}"], out[f"ssim_mean_{label}"] = psnr_ssim(
            truth, rec.samples.mean(1), shape
        )
        out[f"psnr_zf_{label}"], out[f"ssim_zf_{label}"] = psnr_ssim(truth, rec.zero_filled, shape)
    return out
