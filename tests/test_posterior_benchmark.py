import torch

from empriors.studies.posterior_benchmark import (
    digit_mixture,
    exact_posterior,
    run_task,
    sample_exact,
    task_matrix,
)


def test_task_matrices_shapes(g):
    assert task_matrix("box", {}, g).shape == (48, 64)
    assert task_matrix("sr4", {}, g).shape == (4, 64)
    blur = task_matrix("blur", {"kernel_std": 1.0}, g)
    assert torch.allclose(blur.sum(1), torch.ones(64, dtype=torch.float64))  # rows average
    assert 0 < task_matrix("random", {"missing": 0.75}, g).shape[0] < 64


def test_exact_posterior_against_importance_sampling(g):
    """The closed-form mixture posterior mean equals a self-normalised importance estimate
    (prior samples weighted by the likelihood)."""
    mix = digit_mixture(8, 0.5, g)
    a = task_matrix("sr4", {}, g)
    truth = mix.sample(1, g)[0]
    y = truth @ a.T + 0.2 * torch.randn(4, generator=g, dtype=torch.float64)
    weights, means, cov = exact_posterior(mix, a, y, 0.04)
    x = mix.sample(400_000, g)
    logw = -0.5 * ((x @ a.T - y) ** 2).sum(1) / 0.04
    mc = (torch.softmax(logw, 0)[:, None] * x).sum(0)
    assert (weights @ means - mc).abs().max() < 0.05
    s = sample_exact(weights, means, cov, 50_000, g)
    assert (s.mean(0) - weights @ means).abs().max() < 0.05


def test_benchmark_orders_mmps_above_dps_on_deblurring():
    """Measured (seed 0): on deblurring, MMPS with 5 solver iterations is closer to the
    exact posterior than DPS at the same steps, and more iterations help."""
    cfg = dict(
        components=16,
        std=0.1,
        samples=64,
        steps=[20],
        mmps_iterations=[1, 5],
        samplers=["mmps", "dps"],
        dps_zeta=1.0,
        diffpir_lambda=10.0,
        sinkhorn_reg=0.5,
    )
    rows = run_task(
        "blur", {"sigma_y": 0.05, "kernel_std": 1.0}, cfg, torch.Generator().manual_seed(0)
    )
    by = {(r["sampler"], r["solver_iterations"]): r for r in rows}
    assert by[("mmps", 5)]["sinkhorn"] < by[("dps", "")]["sinkhorn"]
    assert by[("mmps", 5)]["sinkhorn"] < by[("mmps", 1)]["sinkhorn"]
    assert by[("mmps", 5)]["mean_rmse"] < by[("dps", "")]["mean_rmse"]


def test_a_configuration_row_does_not_depend_on_the_other_configurations():
    """Each configuration draws from its own seeded stream: adding a step count or a sampler
    leaves the other rows' samples (hence every sample-based column) unchanged."""
    cfg = dict(components=8, std=0.1, samples=32, steps=[5], mmps_iterations=[1],
               samplers=["dps"], dps_zeta=1.0, diffpir_lambda=10.0, sinkhorn_reg=0.5)  # fmt: skip
    task = ("box", {"sigma_y": 0.1})
    alone = run_task(*task, cfg, torch.Generator().manual_seed(0))
    more = {**cfg, "steps": [3, 5], "samplers": ["mmps", "dps"]}
    rows = run_task(*task, more, torch.Generator().manual_seed(0))
    same = [r for r in rows if r["sampler"] == "dps" and r["steps"] == 5]
    columns = ("sinkhorn", "sinkhorn_floor", "mean_rmse", "psnr")
    assert [alone[0][c] for c in columns] == [same[0][c] for c in columns]
