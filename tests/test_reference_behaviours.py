"""Issue 19: the reference code's behaviours that are code, not config values (parity.yaml
``behaviours``): each test fails on the behaviour the project had before."""

import copy

import pytest
import torch
from scipy import stats

from empriors.config import ExperimentSettings
from empriors.diffusion import beta33, beta_mixture
from empriors.gaussian import LowRankGaussian
from empriors.methods import diffem, em_mmps, posterior_samples
from empriors.methods.prior import Prior
from empriors.metrics.sinkhorn import paper_baseline, paper_scores
from empriors.nn import MLPBackbone
from empriors.operators import Projection, observe

SECTIONS = {
    "method": "diffem",
    "diffusion": {"sigma_min": 1e-3, "sigma_max": 10.0},
    "network": {"kind": "mlp", "hidden": [16], "embedding": 8},
    "observation": {"kind": "projection", "rows": 1, "sigma_y": 0.05},
    "estep": {"posterior": "mmps", "sampler": "ddpm", "steps": 4, "corrector_tau": 0.1,
              "covariance": "tweedie", "sigma_y2": 1e-4, "cg_rtol": 1e-3, "cg_maxiter": 1,
              "batch_size": 256, "keep_range": 3.0},
    "mstep": {"steps": 2, "batch_size": 16, "lr": 1e-3, "lr_end": None, "clip": 1.0,
              "ema": None, "ppca_samples": 1000, "ppca_rank": None, "resume_every_s": 300},
}  # fmt: skip


def settings_with(section: str, **changes) -> ExperimentSettings:
    sections = copy.deepcopy(SECTIONS)
    sections[section].update(changes)
    return ExperimentSettings("t", sections, 0, "cpu")


@pytest.fixture
def no_training(monkeypatch):
    """The M-step without its training loop; records the data and condition it was given."""
    captured = {}

    def fake_train(denoiser, data, schedule, train, seed, resume, progress, condition=None, **_):
        captured.update(data=data, condition=condition, train=train)
        return denoiser.state_dict(), [0.0]

    monkeypatch.setattr(em_mmps, "train_denoiser", fake_train)
    return captured


def test_beta_mixture_is_dffems_manifold_time_law(g):
    """19.15: t ~ 1/2 Beta(2, 5) + 1/2 Beta(5, 2) (KS distance to the mixture's CDF), not
    Beta(3, 3)."""
    t = beta_mixture(200_000, g).double().numpy()
    mixture = lambda s: 0.5 * stats.beta(2, 5).cdf(s) + 0.5 * stats.beta(5, 2).cdf(s)  # noqa: E731
    assert stats.kstest(t, mixture).statistic < 0.005
    assert stats.kstest(t, stats.beta(3, 3).cdf).statistic > 0.05
    assert stats.kstest(beta33(200_000, g).double().numpy(), stats.beta(3, 3).cdf).statistic < 0.005


def test_training_reads_the_time_law_from_the_config():
    assert settings_with("mstep").mstep.train.t_law == "beta33"
    assert settings_with("mstep", t_law="beta_mixture").mstep.train.t_law == "beta_mixture"


def test_fixed_moments_keep_q0s_fit_for_every_lap(g, no_training):
    """19.4: with mstep.moments fixed, G_k is q_0's Gaussian (lap 1 and later); refit fits
    PPCA to the lap's samples."""
    q0 = LowRankGaussian(torch.tensor([1.0, 2.0, 3.0]), torch.eye(3)[:, :2], torch.ones(2), 0.5)
    x = torch.randn(400, 3, generator=g) * 0.1
    settings = settings_with("mstep", moments="fixed")
    lap1, _ = em_mmps.m_step(x, Prior(q0), settings, 0, None, progress=False)
    lap2, _ = em_mmps.m_step(x, lap1, settings, 1, None, progress=False)
    assert lap1.gaussian is q0 and lap2.gaussian is q0
    refit, _ = em_mmps.m_step(x, Prior(q0), settings_with("mstep"), 0, None, progress=False)
    assert (refit.gaussian.mean - x.mean(0)).abs().max() < 1e-5


def test_range_filter_skips_q0s_samples():
    """19.5: samples drawn under q_0 (no network) are kept whole; under a trained prior the
    (-3, 3) filter applies."""
    x = torch.tensor([[0.0, 1.0], [3.5, 0.0]])
    gaussian = LowRankGaussian.standard(2)
    assert em_mmps.keep_trained_in_range(x, 3.0, Prior(gaussian)).shape[0] == 2
    trained = Prior(gaussian, MLPBackbone(2, (4,), 4))
    assert em_mmps.keep_trained_in_range(x, 3.0, trained).shape[0] == 1


def test_diffem_conditional_sampling_starts_at_zero(monkeypatch):
    """19.14: x_1 = 0 + sigma_max z, whatever G_k's mean (it was G_k's mean)."""
    seen = {}

    def fake_sample(denoise, shape, *args, mean=None, **kwargs):
        seen["mean"] = mean
        return torch.zeros(shape)

    monkeypatch.setattr(diffem, "sample", fake_sample)

    class Net(torch.nn.Module):
        condition_features = 4

        def forward(self, x_t, sigma, condition):
            return x_t

    far = LowRankGaussian(torch.full((3,), 100.0), torch.zeros(3, 0), torch.zeros(0), 1.0)
    op = Projection(torch.eye(3, dtype=torch.float64)[:1].expand(4, 1, 3).clone())
    posterior_samples(Prior(far, Net()), op, torch.zeros(4, 1), settings_with("estep"), 0)
    assert "mean" in seen and seen["mean"] is None


def test_diffem_first_lap_trains_on_the_observed_pairs(g, no_training):
    """19.15: with first_lap_pairs observed, lap 1's condition is c(A_i, y_i) of the original
    observations; later laps (a network in the previous prior) draw fresh corruptions."""
    settings = settings_with("mstep", first_lap_pairs="observed")
    x = torch.randn(64, 3, generator=g)
    op = Projection.random(64, 1, 3, g)
    y = observe(x.double(), op, 0.05, g)

    def draw(n, gen):
        return settings.observation.random_operator(n, 3, None, gen)

    q0 = Prior(LowRankGaussian.standard(3))
    lap1, _ = diffem.m_step(x, q0, draw, 0.05, settings, 3, None, False, observed=(op, y))
    assert torch.allclose(no_training["condition"], op.condition(y).float())
    diffem.m_step(x, lap1, draw, 0.05, settings, 4, None, False, observed=(op, y))
    assert not torch.allclose(no_training["condition"], op.condition(y).float(), atol=1e-2)
    with pytest.raises(ValueError, match="one lap-1 sample per observation"):
        diffem.m_step(x[:10], q0, draw, 0.05, settings, 3, None, False, observed=(op, y))


def test_first_lap_sampler_applies_under_q0_only():
    estep = settings_with("estep", first_lap_sampler="pc").estep
    assert estep.sampler_for(trained=False).method == "pc"
    assert estep.sampler_for(trained=True).method == "ddpm"
    assert settings_with("estep").estep.sampler_for(trained=False).method == "ddpm"


def test_paper_scores_floor_cap_and_checks(g):
    """19.8: the reference's S floored at 1e-6, its cap flag and marginal error, and the
    exact and converged figures on the same clouds."""
    u1, u2 = torch.randn(200, 2, generator=g), torch.randn(200, 2, generator=g)
    base = paper_baseline(u1, u2, reg=0.05, iterations=1024, stop=1e-3)
    far = paper_scores(u1 + 1.0, u1, base, reg=0.05, iterations=1024, stop=1e-3)
    assert far["paper_sinkhorn"] == far["paper_unfloored"] > 0.5
    assert far["paper_exact"] > 0.5 and far["paper_debiased"] > 0.5
    assert far["paper_capped"] == 0.0 and far["paper_marginal_l1"] < 0.05
    same = paper_scores(u1, u1, base, reg=0.05, iterations=1024, stop=1e-3)
    assert same["paper_unfloored"] < 0 and same["paper_sinkhorn"] == 1e-6
    assert abs(same["paper_debiased"]) < 1e-6
    base = paper_baseline(u1, u2, reg=1e-3, iterations=3, stop=1e-9, exact_points=0)
    capped = paper_scores(u1 + 1.0, u1, base, 1e-3, 3, 1e-9, exact_points=0)
    assert capped["paper_capped"] == 1.0 and capped["paper_marginal_l1"] > 0.01
    assert capped["paper_exact"] != capped["paper_exact"]  # NaN: skipped


def test_hsv_conversion_matches_colorsys(g):
    """The HSV used by the hue/saturation augmentation is the standard one (colorsys)."""
    import colorsys

    from empriors.train import hsv_to_rgb, rgb_to_hsv

    rgb = torch.rand(3, 5, 7, generator=g, dtype=torch.float64)
    hsv = rgb_to_hsv(rgb)
    for i, j in [(0, 0), (2, 3), (4, 6)]:
        assert torch.allclose(hsv[:, i, j], torch.tensor(colorsys.rgb_to_hsv(*rgb[:, i, j])))
    assert torch.allclose(hsv_to_rgb(hsv), rgb, atol=1e-12)
    grey = torch.full((3, 2, 2), 0.4, dtype=torch.float64)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(grey)), grey)


def test_colour_augmentation_acts_jointly_and_within_its_range(g):
    """19.13: hue and saturation change an image and its stacked condition with the same
    draw (DiffEM augments x and y with one key); hue 0 and saturation (1, 1) change nothing."""
    from empriors.train import Augment, _augment

    x = (torch.rand(64, 3 * 4 * 4, generator=g) * 4 - 2).clamp(-1.9, 1.9)
    augment = Augment((3, 4, 4), False, 0, hue=0.1, saturation=(0.5, 1.5))
    out, cond = _augment(augment, x, x.clone(), torch.Generator().manual_seed(0))
    assert torch.allclose(out, cond) and not torch.allclose(out, x, atol=1e-3)
    assert out.min() >= -2 - 1e-5 and out.max() <= 2 + 1e-5
    same = Augment((3, 4, 4), False, 0, hue=0.0, saturation=(1.0, 1.0))
    assert torch.allclose(same(x, torch.Generator().manual_seed(0)), x, atol=1e-5)
    with pytest.raises(ValueError, match="RGB groups"):
        Augment((1, 4, 4), False, 0, hue=0.1)(x[:, :16], g)
