import torch

from empriors.diffusion import VESchedule, sample
from empriors.mixture import GaussianMixture


def _mixture(g, k=4, n=3):
    means = torch.randn(k, n, generator=g, dtype=torch.float64) * 2
    stds = 0.1 + torch.rand(k, generator=g, dtype=torch.float64) * 0.5
    w = torch.rand(k, generator=g, dtype=torch.float64) + 0.2
    return GaussianMixture(means, stds, w / w.sum())


def test_single_component_is_the_gaussian_formula(g):
    mix = GaussianMixture(
        torch.tensor([[1.0, -2.0]], dtype=torch.float64),
        torch.tensor([0.5], dtype=torch.float64),
        torch.tensor([1.0], dtype=torch.float64),
    )
    x_t = torch.randn(5, 2, generator=g, dtype=torch.float64)
    sigma = torch.tensor(0.8, dtype=torch.float64)
    expected = mix.means + 0.25 / (0.25 + 0.64) * (x_t - mix.means)
    assert torch.allclose(mix.denoise(x_t, sigma), expected)
    cov = mix.posterior_covariance(x_t, sigma)
    assert torch.allclose(cov, torch.eye(2, dtype=torch.float64) * 0.25 * 0.64 / 0.89)


def test_jacobian_matches_autograd(g):
    mix = _mixture(g)
    x_t = torch.randn(6, 3, generator=g, dtype=torch.float64)
    sigma = torch.tensor(0.7, dtype=torch.float64)
    auto = torch.stack(
        [
            torch.autograd.functional.jacobian(lambda x: mix.denoise(x[None], sigma)[0], x)
            for x in x_t
        ]
    )
    assert torch.allclose(mix.jacobian(x_t, sigma), auto, atol=1e-10)
    assert torch.allclose(auto, auto.transpose(1, 2), atol=1e-10)  # J symmetric


def test_denoiser_is_the_posterior_mean_by_monte_carlo(g):
    """E[x | x_t] by importance weighting of prior samples agrees with the closed form."""
    mix = _mixture(g)
    sigma = 0.5
    x = mix.sample(400_000, g)
    x_t = torch.tensor([[0.3, -0.2, 0.1]], dtype=torch.float64)
    logw = -0.5 * (x - x_t).square().sum(1) / sigma**2
    w = torch.softmax(logw, 0)
    mc = (w[:, None] * x).sum(0)
    assert torch.allclose(
        mix.denoise(x_t, torch.tensor(sigma, dtype=torch.float64))[0], mc, atol=0.02
    )


def test_ddpm_samples_the_mixture(g):
    mix = _mixture(g, k=3, n=2)
    x = sample(mix.denoise, (20_000, 2), VESchedule(1e-3, 1e1), 256, "ddpm", g, dtype=torch.float64)
    ref = mix.sample(20_000, g)
    assert (x.mean(0) - ref.mean(0)).abs().max() < 0.06
    assert (torch.cov(x.T) - torch.cov(ref.T)).abs().max() < 0.15
