import math

import pytest
import torch

from conftest import random_gaussian
from empriors.diffusion import Denoiser, VESchedule, beta33, denoising_loss, sample


def test_schedule_endpoints():
    s = VESchedule(1e-3, 1e1)
    assert math.isclose(s.sigma(torch.tensor(0.0)).item(), 1e-3, rel_tol=1e-6)
    assert math.isclose(s.sigma(torch.tensor(1.0)).item(), 1e1, rel_tol=1e-6)
    with pytest.raises(ValueError):
        VESchedule(1.0, 0.5)


def test_preconditioning_coefficients():
    class Zero(torch.nn.Module):
        def forward(self, x, log_sigma):
            return torch.zeros_like(x)

    class One(torch.nn.Module):
        def forward(self, x, log_sigma):
            return torch.ones_like(x)

    x = torch.randn(4, 3, dtype=torch.float64)
    sigma = torch.tensor(2.0, dtype=torch.float64)
    assert torch.allclose(Denoiser(Zero())(x, sigma), x / 5)  # c_skip = 1/(s^2+1)
    assert torch.allclose(
        Denoiser(One())(x, sigma) - x / 5, torch.full_like(x, 2 / math.sqrt(5))
    )  # c_out = s/sqrt(s^2+1)


def test_beta33_moments(g):
    t = beta33(200_000, g, dtype=torch.float64)
    assert abs(t.mean().item() - 0.5) < 0.003
    assert abs(t.var().item() - 1 / 28) < 0.001  # Var Beta(3,3) = 9/(36*7)


def test_loss_of_exact_denoiser_is_its_expected_value(g):
    """For x ~ N(0, I) in n dims, E[(d*(x_t) - x)^2] per feature = sigma^2/(1+sigma^2);
    with lambda = 1/sigma^2 + 1 the weighted loss is exactly 1 per sample."""
    gauss = random_gaussian(3, 3, g)
    gauss.variances[:] = 1.0
    gauss.mean[:] = 0.0

    class Exact(torch.nn.Module):
        def forward(self, x_t, sigma):
            return gauss.denoise(x_t, sigma.reshape(-1))

    x = gauss.sample(100_000, g)
    loss = denoising_loss(Exact(), x, VESchedule(1e-3, 1e1), g)
    assert abs(loss.item() - 1.0) < 0.01


@pytest.mark.parametrize("method", ["ddpm", "ddim", "pc"])
def test_samplers_reproduce_gaussian(method, g):
    gauss = random_gaussian(3, 2, g)
    n, steps = 20_000, 256
    x = sample(
        gauss.denoise,
        (n, 3),
        VESchedule(1e-3, 1e1),
        steps,
        method,
        g,
        mean=gauss.mean,
        dtype=torch.float64,
    )
    cov = gauss.covariance()
    # Monte-Carlo standard errors: mean sqrt(C_ii/n); covariance sqrt((C_ii C_jj + C_ij^2)/n)
    se_mean = (cov.diag() / n).sqrt()
    assert ((x.mean(0) - gauss.mean).abs() < 5 * se_mean).all()
    se_cov = ((cov.diag()[:, None] * cov.diag()[None] + cov**2) / n).sqrt()
    assert ((torch.cov(x.T) - cov).abs() < 5 * se_cov + 0.01 * cov.abs().max()).all()
