import torch

from conftest import random_gaussian
from empriors.gaussian import LowRankGaussian, fit_ppca


def test_ppca_recovers_low_rank_covariance(g):
    true = random_gaussian(12, 3, g, residual=0.1)
    x = true.sample(200_000, g)
    fit = fit_ppca(x, rank=3)
    err = (fit.covariance() - true.covariance()).abs().max().item()
    assert err < 0.05, err
    assert abs(fit.residual - 0.1) < 0.005
    assert (fit.mean - true.mean).abs().max() < 0.02
    # the fitted principal subspace is the true one
    overlap = torch.linalg.svdvals(true.basis.T @ fit.basis)
    assert overlap.min() > 0.999


def test_ppca_full_rank_is_empirical_covariance(g):
    x = torch.randn(1000, 4, generator=g, dtype=torch.float64) @ torch.randn(
        4, 4, generator=g, dtype=torch.float64
    )
    fit = fit_ppca(x, rank=None)
    assert torch.allclose(fit.covariance(), torch.cov(x.T), atol=1e-10)


def test_closed_forms_match_dense(g):
    gauss = random_gaussian(6, 2, g)
    cov = gauss.covariance()
    sigma = torch.tensor(0.7, dtype=torch.float64)
    x_t = torch.randn(5, 6, generator=g, dtype=torch.float64)
    shifted = cov + sigma**2 * torch.eye(6, dtype=torch.float64)
    expected = gauss.mean + (cov @ torch.linalg.solve(shifted, (x_t - gauss.mean).T)).T
    assert torch.allclose(gauss.denoise(x_t, sigma), expected, atol=1e-12)
    v = torch.randn(5, 6, generator=g, dtype=torch.float64)
    post_cov = torch.linalg.inv(
        torch.linalg.inv(cov) + torch.eye(6, dtype=torch.float64) / sigma**2
    )
    assert torch.allclose(gauss.posterior_cov_mv(v, sigma), v @ post_cov, atol=1e-12)


def test_sample_moments(g):
    gauss = random_gaussian(5, 2, g)
    x = gauss.sample(100_000, g)
    assert (x.mean(0) - gauss.mean).abs().max() < 0.03
    assert (torch.cov(x.T) - gauss.covariance()).abs().max() < 0.05


def test_state_roundtrip(g):
    gauss = random_gaussian(5, 2, g)
    back = LowRankGaussian.from_state_dict(gauss.state_dict())
    assert torch.equal(back.covariance(), gauss.covariance())
