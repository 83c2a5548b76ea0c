import math

import pytest
import torch

from conftest import random_gaussian
from empriors.diffusion import VESchedule, sample
from empriors.gaussian import LowRankGaussian, gaussian_posterior
from empriors.operators import Projection
from empriors.posterior import COVARIANCES, MMPSDenoiser, conjugate_gradient


def exact_posterior_denoiser(gauss, op, x_t, y, sigma, sigma_y2):
    """E[x | x_t, y] for x ~ N(mu, Sigma), x_t = x + sigma z, y = A x + e (dense)."""
    cov = gauss.covariance()
    n = gauss.dim
    eye = torch.eye(n, dtype=torch.float64)
    gain_t = cov @ torch.linalg.inv(cov + sigma**2 * eye)
    m = gauss.mean + (x_t - gauss.mean) @ gain_t.T  # E[x | x_t]
    v = cov - gain_t @ cov  # V[x | x_t]
    prior_t = LowRankGaussian(torch.zeros(n, dtype=torch.float64), *torch.linalg.eigh(v)[::-1], 0.0)
    means, _ = gaussian_posterior(prior_t, op, y - op(m), sigma_y2)
    return m + means


@pytest.mark.parametrize("covariance", ["tweedie", "cov_x"])
@pytest.mark.parametrize("sigma", [0.01, 0.3, 5.0])
def test_mmps_equals_exact_gaussian_posterior_mean(covariance, sigma, g):
    gauss = random_gaussian(5, 5, g)
    op = Projection.random(32, 2, 5, g)
    x = gauss.sample(32, g)
    y = op(x) + 0.01 * torch.randn(32, 2, generator=g, dtype=torch.float64)
    sigma = torch.tensor(sigma, dtype=torch.float64)
    x_t = x + sigma * torch.randn(32, 5, generator=g, dtype=torch.float64)
    mmps = MMPSDenoiser(gauss.denoise, op, y, 1e-4, covariance, gauss, cg_rtol=1e-12)
    expected = exact_posterior_denoiser(gauss, op, x_t, y, sigma, 1e-4)
    assert (mmps(x_t, sigma) - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("covariance", ["tweedie", "cov_x"])
def test_mmps_with_one_cg_over_the_batch_is_exact_to_tolerance(covariance, g):
    """cg="batch" (the reference's, here in groups of 8 rows) solves the same block-diagonal
    systems: to tolerance it gives the exact posterior mean too."""
    gauss = random_gaussian(5, 5, g)
    op = Projection.random(32, 2, 5, g)
    x = gauss.sample(32, g)
    y = op(x) + 0.01 * torch.randn(32, 2, generator=g, dtype=torch.float64)
    sigma = torch.tensor(0.3, dtype=torch.float64)
    x_t = x + sigma * torch.randn(32, 5, generator=g, dtype=torch.float64)
    mmps = MMPSDenoiser(gauss.denoise, op, y, 1e-4, covariance, gauss, 1e-12, None, "batch", 8)
    expected = exact_posterior_denoiser(gauss, op, x_t, y, sigma, 1e-4)
    assert (mmps(x_t, sigma) - expected).abs().max().item() < 1e-5


def textbook_cg(m: torch.Tensor, b: torch.Tensor, iterations: int) -> torch.Tensor:
    """Plain CG on one vector system M u = b (jax.scipy.sparse.linalg.cg's recursion)."""
    u, r = torch.zeros_like(b), b.clone()
    p, rs = r.clone(), r @ r
    for _ in range(iterations):
        mp = m @ p
        alpha = rs / (p @ mp)
        u, r = u + alpha * p, r - alpha * mp
        rs_new = r @ r
        p, rs = r + rs_new / rs * p, rs_new
    return u


def test_grouped_cg_is_one_cg_on_each_stacked_group(g):
    """CG in groups = plain CG on the block-diagonal system of each group's samples stacked
    (the reference's jax cg on each array it samples at once), iterate by iterate, with the
    last group shorter; per-sample CG differs."""
    b = torch.randn(6, 4, generator=g, dtype=torch.float64)
    m = torch.randn(6, 4, 4, generator=g, dtype=torch.float64)
    spd = m @ m.transpose(1, 2) + 0.5 * torch.eye(4, dtype=torch.float64)
    block = torch.block_diag(*spd)

    def matvec(v):
        return (spd @ v[..., None])[..., 0]

    for k in (1, 2, 3):
        shared = conjugate_gradient(matvec, b, 0.0, k, group=6)
        assert torch.allclose(shared.flatten(), textbook_cg(block, b.flatten(), k), atol=1e-12)
        assert not torch.allclose(shared, conjugate_gradient(matvec, b, 0.0, k), atol=1e-6)
        grouped = conjugate_gradient(matvec, b, 0.0, k, group=4)  # rows 0-3, then 4-5
        for rows in (slice(0, 4), slice(4, 6)):
            stacked = textbook_cg(torch.block_diag(*spd[rows]), b[rows].flatten(), k)
            assert torch.allclose(grouped[rows].flatten(), stacked, atol=1e-12)
    for group in (1, 4, 6):
        solved = conjugate_gradient(matvec, b, 1e-12, None, group=group)
        assert torch.allclose(solved, torch.linalg.solve(spd, b), atol=1e-9)
    with pytest.raises(ValueError, match="unknown CG mode"):
        MMPSDenoiser(lambda x, s: x, Projection(spd[:, :2]), b[:, :2], 1e-4, cg="batched")


def test_identity_heuristic_is_exact_for_standard_normal(g):
    gauss = LowRankGaussian.standard(4)
    op = Projection.random(16, 2, 4, g)
    y = torch.randn(16, 2, generator=g, dtype=torch.float64)
    sigma = torch.tensor(0.5, dtype=torch.float64)
    x_t = torch.randn(16, 4, generator=g, dtype=torch.float64)
    mmps = MMPSDenoiser(gauss.denoise, op, y, 1e-4, "identity", cg_rtol=1e-12)
    expected = exact_posterior_denoiser(gauss, op, x_t, y, sigma, 1e-4)
    assert (mmps(x_t, sigma) - expected).abs().max().item() < 1e-8


@pytest.mark.parametrize("covariance", [c for c in COVARIANCES if c != "zeros"])
def test_every_variant_runs_and_pulls_towards_y(covariance, g):
    gauss = random_gaussian(5, 5, g)
    op = Projection.random(64, 2, 5, g)
    x = gauss.sample(64, g)
    y = op(x)
    sigma = torch.tensor(0.1, dtype=torch.float64)
    x_t = x + sigma * torch.randn(64, 5, generator=g, dtype=torch.float64)
    mmps = MMPSDenoiser(gauss.denoise, op, y, 1e-4, covariance, gauss)
    out = mmps(x_t, sigma)
    assert torch.isfinite(out).all()
    before = (op(gauss.denoise(x_t, sigma)) - y).norm()
    assert (op(out) - y).norm() <= before


def test_zeros_variant_is_the_dps_step(g):
    """V = 0: u = (y - A x_hat)/sigma_y2, correction sigma^2 J^T A^T u (J = dense Gaussian gain)."""
    gauss = random_gaussian(5, 5, g)
    op = Projection.random(8, 2, 5, g)
    y = torch.randn(8, 2, generator=g, dtype=torch.float64)
    sigma = torch.tensor(0.2, dtype=torch.float64)
    x_t = torch.randn(8, 5, generator=g, dtype=torch.float64)
    out = MMPSDenoiser(gauss.denoise, op, y, 1e-2, "zeros")(x_t, sigma)
    cov = gauss.covariance()
    jac = cov @ torch.linalg.inv(cov + sigma**2 * torch.eye(5, dtype=torch.float64))
    x_hat = gauss.denoise(x_t, sigma)
    expected = x_hat + sigma**2 * op.adjoint((y - op(x_hat)) / 1e-2) @ jac
    assert torch.allclose(out, expected, atol=1e-10)


def test_conjugate_gradient_batched(g):
    b = torch.randn(8, 6, generator=g, dtype=torch.float64)
    m = torch.randn(8, 6, 6, generator=g, dtype=torch.float64)
    spd = m @ m.transpose(1, 2) + 0.5 * torch.eye(6, dtype=torch.float64)
    u = conjugate_gradient(lambda v: (spd @ v[..., None])[..., 0], b, rtol=1e-12, maxiter=50)
    assert torch.allclose(u, torch.linalg.solve(spd, b), atol=1e-9)


def test_conjugate_gradient_respects_maxiter(g):
    b = torch.randn(4, 6, generator=g, dtype=torch.float64)
    calls = []
    conjugate_gradient(lambda v: calls.append(1) or 2 * v + 0.1 * v.roll(1, 1), b, 1e-30, 2)
    assert len(calls) == 2


def test_cg_monitor_records_the_true_final_residual_and_iterations(g):
    """CGMonitor: the mean of ||b - M u|| / ||b|| (recomputed here from u) and of the
    iterations each sample took; nested monitors both record; none is left open."""
    from empriors.posterior import CGMonitor

    b = torch.randn(8, 6, generator=g, dtype=torch.float64)
    m = torch.randn(8, 6, 6, generator=g, dtype=torch.float64)
    spd = m @ m.transpose(1, 2) + 0.5 * torch.eye(6, dtype=torch.float64)

    def matvec(v):
        return (spd @ v[..., None])[..., 0]

    with CGMonitor() as outer:
        with CGMonitor() as inner:
            u = conjugate_gradient(matvec, b, rtol=1e-30, maxiter=2)
        conjugate_gradient(matvec, b, rtol=1e-12, maxiter=50)
    true = ((b - matvec(u)).norm(dim=1) / b.norm(dim=1)).mean()
    s = inner.summary()
    assert s["cg_solves"] == 8 and s["cg_iterations"] == 2
    assert abs(s["cg_residual"] - float(true)) < 1e-9 * float(true) and float(true) > 1e-3
    assert outer.summary()["cg_solves"] == 16
    assert outer.summary()["cg_residual"] < s["cg_residual"]  # the converged solves pull it down
    conjugate_gradient(matvec, b, rtol=1e-12, maxiter=50)  # outside: nothing recorded
    assert outer.summary()["cg_solves"] == 16
    assert math.isnan(CGMonitor().summary()["cg_residual"])


def test_mmps_sampling_draws_the_gaussian_posterior(g):
    """DDPM + MMPS with a Gaussian prior samples the exact posterior: mean and covariance
    within Monte-Carlo error (one observation repeated)."""
    gauss = random_gaussian(3, 3, g)
    n = 8000
    a = Projection.random(1, 1, 3, g)
    op = Projection(a.matrices.expand(n, -1, -1))
    y = torch.full((n, 1), 0.7, dtype=torch.float64)
    mmps = MMPSDenoiser(gauss.denoise, op, y, 1e-2, "tweedie", cg_rtol=1e-10)
    x = sample(
        mmps, (n, 3), VESchedule(1e-3, 1e1), 256, "ddpm", g, mean=gauss.mean, dtype=torch.float64
    )
    means, covs = gaussian_posterior(gauss, op[:1], y[:1], 1e-2)
    cov = covs[0]
    se = (cov.diag() / n).sqrt()
    assert ((x.mean(0) - means[0]).abs() < 5 * se + 1e-3).all()
    assert (torch.cov(x.T) - cov).abs().max() < 0.05 * cov.abs().max() + 1e-3


def test_conjugate_gradient_stops_at_negative_curvature():
    """An indefinite M (a learned Jacobian may be one) must not blow the solution up."""
    from empriors.posterior.mmps import conjugate_gradient

    m = torch.diag(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    b = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]], dtype=torch.float64)
    x = conjugate_gradient(lambda v: v @ m, b, rtol=1e-10, maxiter=3)
    assert torch.isfinite(x).all()
    assert torch.equal(x[0], torch.zeros(3, dtype=torch.float64))  # p^T M p < 0 at once
    assert torch.allclose(x[1], torch.tensor([1.0, 0.0, 1 / 3], dtype=torch.float64))
