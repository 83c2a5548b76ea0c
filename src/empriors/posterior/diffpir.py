"""DiffPIR (Zhu et al. 2023), in posterior-denoiser form: a proximal data step on x_hat,

    E[x | x_t, y] ~= argmin_x ||y - A x||^2 / sigma_y^2 + (lambda / sigma_t^2) ||x - x_hat||^2
                  = x_hat + u,
    (A^T A / sigma_y^2 + lambda / sigma_t^2 I) u = A^T (y - A x_hat) / sigma_y^2,

solved by conjugate gradient with a fixed number of iterations. No Jacobian of the network:
one forward per step. Written here (per-sample operators, our CG); tests check it equals azula
0.11.1's ``DiffPIRDenoiser(solver="cg")`` on the same inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from empriors.diffusion import DenoiserFn
from empriors.operators import LinearOperator
from empriors.posterior.mmps import conjugate_gradient


class DiffPIRDenoiser:
    def __init__(
        self,
        prior: DenoiserFn,
        op: LinearOperator,
        y: Tensor,
        sigma_y2: float,
        lmbda: float = 10.0,
        iterations: int = 1,
    ):
        self.prior, self.op, self.y = prior, op, y
        self.sigma_y2, self.lmbda, self.iterations = sigma_y2, lmbda, iterations

    def __call__(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        with torch.no_grad():
            x_hat = self.prior(x_t, sigma)

            def system(v: Tensor) -> Tensor:
                return self.op.adjoint(self.op(v)) / self.sigma_y2 + self.lmbda / sigma**2 * v

            rhs = self.op.adjoint(self.y - self.op(x_hat)) / self.sigma_y2
            u = conjugate_gradient(system, rhs, rtol=0.0, maxiter=self.iterations)
        return x_hat + u
