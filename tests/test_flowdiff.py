"""FlowDiff: the conditional flow's density is a proper density consistent with its samples
(change of variables checked numerically), and the amortized objective decreases."""

import math

import torch

from empriors.config import FlowSettings
from empriors.diffusion import Denoiser, VESchedule
from empriors.gaussian import LowRankGaussian
from empriors.methods.flowdiff import (
    amortized_loss,
    build_flow,
    flow_from_state,
    representation,
    train_flow,
)
from empriors.nn import MLPBackbone
from empriors.operators import Projection, observe

FLOW = FlowSettings(transforms=2, hidden=(32, 32), steps=300, batch_size=128, lr=3e-3,
                    sigma_y=0.1)  # fmt: skip


def _gaussian(dim: int, rank: int) -> LowRankGaussian:
    q, _ = torch.linalg.qr(torch.randn(dim, rank, generator=torch.Generator().manual_seed(0)))
    return LowRankGaussian(torch.tensor([0.3, -0.2][:dim]), q, torch.tensor([2.0, 0.7][:rank]), 0.3)


def test_flow_density_integrates_to_one_and_matches_its_samples():
    """In R^2 with a rank-1 representation (flow coordinate + Gaussian residual), the density
    integrates to 1 on a grid (the change of variables of the whitening, the rotation and the
    residual is right), and log_prob of a sample equals the log-density returned with it."""
    torch.manual_seed(0)
    flow = build_flow(_gaussian(2, 1), torch.randn(64, 3), FLOW)
    with torch.no_grad():  # move the flow away from the identity
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    c = torch.randn(1, 3)
    h = 0.04
    axis = torch.arange(-8, 8, h)
    grid = torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        density = flow.log_prob(grid, c.expand(grid.shape[0], -1)).exp()
        mass = density.sum() * h * h
        x, lp = flow.rsample_and_log_prob(c.expand(256, -1))
        again = flow.log_prob(x, c.expand(256, -1))
    assert abs(mass.item() - 1) < 0.01, mass
    assert torch.allclose(lp, again, atol=1e-4)
    # the samples follow the density: their mean matches the grid's mean
    grid_mean = (density[:, None] * grid).sum(0) * h * h
    with torch.no_grad():
        many = flow.rsample_and_log_prob(c.expand(20000, -1))[0]
    assert torch.allclose(many.mean(0), grid_mean, atol=0.05)


def test_full_rank_flow_is_a_whitened_nsf():
    """Rank n (the manifold): no residual, log q(x) = log NSF(u) - sum log sqrt(lambda)."""
    torch.manual_seed(1)
    g = _gaussian(2, 2)
    flow = build_flow(g, torch.randn(32, 3), FLOW)
    c = torch.randn(5, 3)
    x = torch.randn(5, 2)
    u = ((x - flow.mean) @ flow.basis) / flow.scales
    with torch.no_grad():
        expected = flow.nsf(flow._context(c)).log_prob(u) - 0.5 * g.variances.log().sum()
        assert torch.allclose(flow.log_prob(x, c), expected, atol=1e-5)
    assert flow.residual_dim == 0


def test_amortized_loss_decreases_and_the_flow_round_trips():
    """On a linear-Gaussian toy (x in R^2, one random projection per observation) the flow's
    objective falls during training, and a saved flow rebuilds to the same density."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 2, generator=gen) * torch.tensor([1.0, 0.5])
    op = Projection.random(2048, 1, 2, gen)
    y = observe(x.double(), op, 0.1, gen).float()
    op = op.to(dtype=torch.float32)
    schedule = VESchedule(1e-2, 10.0)
    denoiser = Denoiser(MLPBackbone(2, (32,), 8))
    flow = build_flow(LowRankGaussian.standard(2, torch.float32), op.condition(y), FLOW)
    torch.manual_seed(5)
    with torch.no_grad():
        before = sum(amortized_loss(flow, denoiser, op, y, 0.1, schedule) for _ in range(5)) / 5
    losses = train_flow(flow, denoiser, op, y, FLOW, schedule, 0, torch.device("cpu"), False)
    torch.manual_seed(5)
    with torch.no_grad():
        after = sum(amortized_loss(flow, denoiser, op, y, 0.1, schedule) for _ in range(5)) / 5
    assert all(math.isfinite(v) for v in losses)
    assert after < before - 1.0, (before, after)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10
    rebuilt = flow_from_state(flow.state_dict(), flow.transforms, flow.hidden)
    c = op[:8].condition(y[:8])
    with torch.no_grad():
        assert torch.allclose(rebuilt.log_prob(x[:8], c), flow.log_prob(x[:8], c), atol=1e-5)


def test_representation_completes_q0s_axes_with_its_residual():
    """flow.rank above q0's: Q's columns kept, orthonormal completion, variance D on the new
    axes, so the whitened Gaussian density is q0's own."""
    g = _gaussian(2, 1)
    full = representation(g, 2)
    assert torch.allclose(full.basis[:, :1], g.basis.double())
    assert torch.allclose(full.basis.T @ full.basis, torch.eye(2, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(full.variances, torch.tensor([2.0, 0.3], dtype=torch.float64))
    assert torch.allclose(full.covariance(), g.covariance().double(), atol=1e-6)
    assert representation(g, None).rank == 1
