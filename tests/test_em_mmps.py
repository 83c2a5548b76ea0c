import torch

from conftest import random_gaussian
from empriors.config import ExperimentSettings
from empriors.methods.em_mmps import Prior, fit_initial_gaussian, keep_in_range, m_step
from empriors.nn import MLPBackbone
from empriors.operators import PixelMask, Projection, observe

SECTIONS = {
    "diffusion": {"sigma_min": 1e-3, "sigma_max": 10.0},
    "init": {"rounds": 12, "rank": None, "sampler": "ddim", "steps": 256, "n_fit": None,
             "sigma_y2": 1e-4, "cg_rtol": 1e-6, "batch_size": 100_000},
    "network": {"kind": "mlp", "hidden": [64, 64], "embedding": 16},
    "estep": {"posterior": "mmps", "sampler": "ddpm", "steps": 16, "corrector_tau": 0.1,
              "covariance": "tweedie",
              "sigma_y2": 1e-4, "cg_rtol": 1e-3, "cg_maxiter": 2, "batch_size": 512,
              "keep_range": 3.0},
    "mstep": {"steps": 50, "batch_size": 64, "lr": 1e-3, "lr_end": None, "clip": 1.0,
              "ema": 0.99, "ppca_samples": 1000, "ppca_rank": None, "resume_every_s": 300},
}  # fmt: skip


def test_monte_carlo_em_recovers_a_gaussian_from_projections(g):
    """Observations y_i = A_i x_i + e with random 2x3 A_i identify N(mu, Sigma): the
    Monte-Carlo EM fit of q0 must find it from y alone.

    Tolerance: DDIM is deterministic and starts from x_1 = mu + sigma_max z (the paper's
    start), whose variance misses Sigma; the flow then contracts each eigenvalue by
    sigma_max^2 / (lambda + sigma_max^2), about 2% here, plus discretisation error.
    """
    true = random_gaussian(3, 3, g)
    x = true.sample(6000, g)
    op = Projection.random(6000, 2, 3, g)
    y = observe(x, op, 1e-2, g)
    settings = ExperimentSettings("t", SECTIONS, 0, "cpu")
    fit, history = fit_initial_gaussian(op, y, 3, settings, g, progress=False)
    assert len(history) == 12
    cov = true.covariance()
    assert (fit.mean - true.mean).abs().max() < 0.05
    assert torch.linalg.norm(fit.covariance() - cov) < 0.08 * torch.linalg.norm(cov)


def test_mlp_backbone_shapes():
    net = MLPBackbone(5, (32, 32), 8)
    out = net(torch.randn(7, 5), torch.randn(7))
    assert out.shape == (7, 5)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 and all(not list(m.parameters()) for m in norms)  # issue 19.3


def test_keep_in_range_drops_outliers():
    x = torch.tensor([[0.0, 1.0], [2.9, -2.9], [3.1, 0.0], [0.0, -3.5]])
    assert keep_in_range(x, 3.0).shape == (2, 2)
    assert keep_in_range(x, None).shape == (4, 2)


def test_m_step_carries_weights_over_and_refits_gaussian(g):
    settings = ExperimentSettings("t", SECTIONS, 0, "cpu")
    samples = torch.randn(1000, 3, generator=g) * 0.5 + 1.0
    first, losses = m_step(
        samples, Prior(random_gaussian(3, 3, g)), settings, seed=1, resume_path=None, progress=False
    )
    assert len(losses) > 0 and first.network is not None
    assert (first.gaussian.mean - 1.0).abs().max() < 0.1
    second, _ = m_step(samples, first, settings, seed=2, resume_path=None, progress=False)
    # lap 2 starts from lap 1's weights: a fresh network would be far from both
    fresh, _ = m_step(
        samples, Prior(first.gaussian), settings, seed=2, resume_path=None, progress=False
    )
    w = "backbone.net.0.weight"
    d_carry = (second.network.state_dict()[w] - first.network.state_dict()[w]).abs().mean()
    d_fresh = (fresh.network.state_dict()[w] - first.network.state_dict()[w]).abs().mean()
    assert d_carry < d_fresh


def test_every_configured_posterior_sampler_runs_the_e_step(g):
    """estep.posterior selects the E-step sampler: each gives finite samples near y.

    TMPD is the exception on random projections: its row-sum approximation of
    diag(A V A^T) goes near zero or negative when A's rows are not aligned with V's
    positive correlations, and the samples blow up (azula's TMPD does the same); it is
    checked on a pixel mask instead, where it is stable."""
    from empriors.methods.em_mmps import posterior_sample

    settings = ExperimentSettings("t", SECTIONS, 0, "cpu")
    gauss = random_gaussian(3, 3, g)
    op = Projection.random(64, 2, 3, g)
    y = observe(gauss.sample(64, g), op, 1e-2, g)
    for kind in ("mmps", "pigdm", "diffpir", "dps"):
        estep = {**SECTIONS["estep"], "posterior": kind, "dps_zeta": 0.1, "sigma_y2": 1e-2}
        sec = {**SECTIONS, "estep": estep}
        s = ExperimentSettings("t", sec, 0, "cpu")
        x = posterior_sample(
            Prior(gauss),
            op,
            y,
            s.schedule,
            s.estep.sampler,
            s.estep.posterior,
            32,
            g,
            s.device,
            progress=False,
        )
        assert x.shape == (64, 3) and torch.isfinite(x).all(), kind
        assert (op(x) - y).abs().mean() < 1.0, kind
    assert settings.estep.posterior.kind == "mmps"

    tmpd = {**SECTIONS, "estep": {**SECTIONS["estep"], "posterior": "tmpd"}}
    s = ExperimentSettings("t", tmpd, 0, "cpu")
    x = posterior_sample(
        Prior(gauss),
        op,
        y,
        s.schedule,
        s.estep.sampler,
        s.estep.posterior,
        32,
        g,
        s.device,
        progress=False,
    )
    assert (op(x) - y).abs().mean() > 1e3  # the documented blow-up on random projections
    mask = PixelMask((torch.rand(64, 3, generator=g) < 0.6).to(torch.float64))
    y_mask = observe(gauss.sample(64, g), mask, 1e-2, g)
    x = posterior_sample(
        Prior(gauss),
        mask,
        y_mask,
        s.schedule,
        s.estep.sampler,
        s.estep.posterior,
        32,
        g,
        s.device,
        progress=False,
    )
    assert (mask(x) - y_mask).abs().mean() < 0.1
