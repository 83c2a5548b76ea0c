"""Tweedie moment projected diffusion (TMPD, Boys et al. 2023), in posterior-denoiser form.

    E[x | x_t, y] ~= x_hat + sigma_t^2 J^T A^T [ (y - A x_hat) / (sigma_y^2 + diag(A V A^T)) ],
    V = sigma_t^2 J,  diag(A V A^T) ~= A V A^T 1   (row sums, one VJP),

i.e. MMPS with the system matrix replaced by its row-sum diagonal, so no linear solve.
Caveat (measured): when sigma_y^2 is small the row sums of A V A^T can be near zero or
negative and the correction blows up (seen at sigma_y^2 = 1e-4 with random 2 x 3 A).
Written here (not wrapped) so that it follows a per-sample operator and our seeded samplers;
tests check it equals azula 0.11.1's ``TMPDenoiser`` on the same inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from empriors.diffusion import DenoiserFn
from empriors.operators import LinearOperator


class TMPDDenoiser:
    def __init__(self, prior: DenoiserFn, op: LinearOperator, y: Tensor, sigma_y2: float):
        self.prior, self.op, self.y, self.sigma_y2 = prior, op, y, sigma_y2

    def __call__(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        x_t = x_t.detach().requires_grad_(True)
        x_hat = self.prior(x_t, sigma)

        def vjp(v: Tensor) -> Tensor:
            return torch.autograd.grad(x_hat, x_t, v, retain_graph=True)[0]

        var_ax = self.op(sigma**2 * vjp(self.op.adjoint(torch.ones_like(self.y))))
        u = (self.y - self.op(x_hat)).detach() / (self.sigma_y2 + var_ax)
        return (x_hat + sigma**2 * vjp(self.op.adjoint(u))).detach()
