"""DiffEM: fresh corruptions in the M-step, and the conditional denoiser's target on a
linear-Gaussian toy where E[x | x_t, y] has a closed form."""

import torch

from empriors.config import ExperimentSettings
from empriors.diffusion import Denoiser
from empriors.gaussian import LowRankGaussian
from empriors.methods import diffem, em_mmps, model_samples, posterior_samples
from empriors.methods.prior import Prior, build_denoiser
from empriors.nn import MLPBackbone
from empriors.operators import Projection, observe
from empriors.train import TrainSettings, train_denoiser

SECTIONS = {
    "method": "diffem",
    "diffusion": {"sigma_min": 1e-3, "sigma_max": 10.0},
    "network": {"kind": "mlp", "hidden": [64, 64], "embedding": 16},
    "observation": {"kind": "projection", "rows": 1, "sigma_y": 0.05},
    "estep": {"posterior": "mmps", "sampler": "ddpm", "steps": 8, "corrector_tau": 0.1,
              "covariance": "tweedie", "sigma_y2": 1e-4, "cg_rtol": 1e-3, "cg_maxiter": 1,
              "batch_size": 256, "keep_range": None},
    "mstep": {"steps": 3, "batch_size": 16, "lr": 1e-3, "lr_end": None, "clip": 1.0,
              "ema": None, "ppca_samples": 1000, "ppca_rank": None, "resume_every_s": 300},
}  # fmt: skip


def _draw(settings):
    return lambda n, g: settings.observation.random_operator(n, 3, None, g)


def test_mstep_trains_on_fresh_corruptions_not_the_original_observations(g, monkeypatch):
    """The pairs (x_hat, c(A', y')) of the M-step: A' is new, y' observes x_hat through A'
    (residual at the noise level), and neither equals the original (A, y). Reusing the
    original y, or the original operator, fails this test."""
    settings = ExperimentSettings("t", SECTIONS, 0, "cpu")
    x = torch.randn(512, 3, generator=g)
    op = Projection.random(512, 1, 3, g)
    y = observe(x.double(), op, 0.05, g)
    captured = {}

    def fake_train(denoiser, data, schedule, train, seed, resume, progress, condition=None, **_):
        captured["data"], captured["condition"] = data, condition
        return denoiser.state_dict(), [0.0]

    monkeypatch.setattr(em_mmps, "train_denoiser", fake_train)
    previous = Prior(LowRankGaussian.standard(3))
    diffem.m_step(x, previous, _draw(settings), 0.05, settings, 7, None, progress=False)
    cond = captured["condition"].double()
    assert torch.equal(captured["data"], x.float())
    y_new, a_new = cond[:, :1], cond[:, 1:].reshape(-1, 1, 3)
    original = op.condition(y)
    assert (a_new - op.matrices).abs().amax(dim=(1, 2)).min() > 1e-3  # every A' is new
    assert not torch.allclose(cond, original.double(), atol=1e-2)
    residual = y_new - torch.einsum("nij,nj->ni", a_new, x.double())
    assert residual.std() < 0.06 and residual.abs().max() < 0.3  # y' = A' x_hat + noise
    # drawn once per lap: the same seed gives the same corruptions, another seed others
    op2, y2 = diffem.fresh_corruptions(x, _draw(settings), 0.05, torch.Generator().manual_seed(7))
    op3, _ = diffem.fresh_corruptions(x, _draw(settings), 0.05, torch.Generator().manual_seed(8))
    assert torch.allclose(op2.condition(y2).double(), cond, atol=1e-6)
    assert not torch.allclose(op3.matrices, op2.matrices)


def test_conditional_denoiser_learns_the_exact_gaussian_posterior_mean(g):
    """x ~ N(0, S) in R^2, y = A x + e with a random unit row A per sample, c = [y, vec A].
    The trained d(x_t, sigma, c) must match E[x | x_t, y] (closed form: a Gaussian observed
    through [A; I] with noise diag(sigma_y^2, sigma^2)), loosely: RMSE below 0.25 and below
    a third of the error of E[x | x_t], the best denoiser that ignores y."""
    torch.manual_seed(0)
    cov = torch.tensor([[1.0, 0.6], [0.6, 0.8]])
    n, sigma_y = 8192, 0.1
    x = torch.randn(n, 2, generator=g) @ torch.linalg.cholesky(cov).T
    op = Projection.random(n, 1, 2, g)
    y = observe(x.double(), op, sigma_y, g).float()
    cond = op.condition(y).float()
    net = Denoiser(MLPBackbone(2 + 3, (128, 128), 16, out_features=2), condition_features=3)
    settings = TrainSettings(steps=2500, batch_size=256, lr=2e-3, lr_end=1e-4, ema=0.99)
    schedule = ExperimentSettings("t", SECTIONS, 0, "cpu").schedule
    weights, _ = train_denoiser(net, x, schedule, settings, 0, None, False, condition=cond)
    net.load_state_dict(weights)
    test = slice(0, 512)
    for sigma in (0.3, 1.0, 3.0):
        x_t = x[test] + sigma * torch.randn(512, 2, generator=g)
        a = op.matrices[test].float()  # (B, 1, 2)
        # posterior precision S^-1 + A^T A / sigma_y^2 + I / sigma^2, and its mean
        prec = torch.linalg.inv(cov) + a.transpose(1, 2) @ a / sigma_y**2 + torch.eye(2) / sigma**2
        rhs = (a.transpose(1, 2) @ y[test, :, None]).squeeze(-1) / sigma_y**2 + x_t / sigma**2
        exact = torch.linalg.solve(prec, rhs)
        with torch.no_grad():
            d = net(x_t, torch.tensor(sigma), cond[test])
        rmse = (d - exact).square().sum(1).mean().sqrt()
        prec_x = torch.linalg.inv(cov) + torch.eye(2) / sigma**2
        ignores_y = torch.linalg.solve(prec_x, (x_t / sigma**2).T).T
        baseline = (ignores_y - exact).square().sum(1).mean().sqrt()
        assert rmse < 0.25 and rmse < baseline / 3, (sigma, rmse, baseline)


def test_conditional_sampling_and_evaluation_go_through_the_network():
    """A conditional prior's E-step and evaluation samples come from the conditional
    denoiser at c(A, y) = [y, vec A]: a network that returns the condition's y part at every
    step yields samples equal to it."""

    class EchoY(torch.nn.Module):
        condition_features = 4

        def forward(self, x_t, sigma, condition):
            return condition[:, :1].expand(-1, 3)

    settings = ExperimentSettings("t", SECTIONS, 0, "cpu")
    prior = Prior(LowRankGaussian.standard(3), EchoY())
    op = Projection(torch.eye(3, dtype=torch.float64)[:1].expand(10, 1, 3).clone())
    y = torch.arange(10.0)[:, None]
    x = posterior_samples(prior, op, y, settings, 0)
    assert torch.allclose(x, y.expand(-1, 3))
    v = model_samples(prior, 4, settings.estep.sampler, 8, settings, 0, (op[:4], y[:4]))
    assert torch.allclose(v, y[:4].expand(-1, 3))


def test_build_denoiser_sizes_the_condition():
    settings = ExperimentSettings("t", SECTIONS, 0, "cpu")
    net = build_denoiser(settings, 5, 12)
    out = net(torch.randn(4, 5), torch.tensor(0.5), torch.randn(4, 12))
    assert out.shape == (4, 5) and net.condition_features == 12
