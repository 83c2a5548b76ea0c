"""Diffusion posterior sampling (DPS, Chung et al. 2022): a step-level guidance.

After each predictor step the sampler applies
    x_s <- x_s - zeta grad_{x_t} || y - A x_hat(x_t) ||      (per sample),
through :meth:`post_step`; the denoiser itself returns the unconditional x_hat.

Written, not wrapped: azula 0.11.1's ``DPSSampler`` takes the norm of the whole batch's
residual, which couples the samples of a batch (each sample's step shrinks as the batch
grows); the E-step samples many independent observations per batch, so the norm here is per
sample, as in Chung et al. for one image. With a batch of one the two agree (tested).
"""

from __future__ import annotations

import torch
from torch import Tensor

from empriors.diffusion import DenoiserFn
from empriors.operators import LinearOperator


class DPSDenoiser:
    def __init__(self, prior: DenoiserFn, op: LinearOperator, y: Tensor, zeta: float = 1.0):
        self.prior, self.op, self.y, self.zeta = prior, op, y, zeta
        self._grad: Tensor | None = None

    def __call__(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        x_t = x_t.detach().requires_grad_(True)
        x_hat = self.prior(x_t, sigma)
        norms = (self.y - self.op(x_hat)).flatten(1).norm(dim=1)
        self._grad = torch.autograd.grad(norms.sum(), x_t)[0]
        return x_hat.detach()

    def post_step(self, x_s: Tensor) -> Tensor:
        return x_s - self.zeta * self._grad
