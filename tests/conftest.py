import pytest
import torch


@pytest.fixture
def g():
    gen = torch.Generator()
    gen.manual_seed(1234)
    return gen


def random_gaussian(dim, rank, g, residual=0.05):
    """A LowRankGaussian with known parameters (float64)."""
    from empriors.gaussian import LowRankGaussian

    q, _ = torch.linalg.qr(torch.randn(dim, rank, generator=g, dtype=torch.float64))
    variances = residual + torch.rand(rank, generator=g, dtype=torch.float64) * 2 + 0.5
    mean = torch.randn(dim, generator=g, dtype=torch.float64)
    return LowRankGaussian(mean, q, variances, residual)
