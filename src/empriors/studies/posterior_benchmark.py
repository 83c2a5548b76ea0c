"""Posterior-sampling benchmark with exact answers (after the MMPS paper's appendix).

Prior: a Gaussian mixture on 8x8 images, p(x) = (1/K) sum_k N(mu_k, s^2 I), the means being K
real handwritten digits (scikit-learn's). With a linear A and y = A x + N(0, sigma_y^2 I) the
posterior is again a mixture, in closed form:

    p(x | y) = sum_k pi_k N(m_k, C),  C = (I / s^2 + A^T A / sigma_y^2)^{-1},
    m_k = C (mu_k / s^2 + A^T y / sigma_y^2),  pi_k propto N(y; A mu_k, s^2 A A^T + sigma_y^2 I).

Tasks (8x8 versions of the paper's, sizes and noise levels our choice): box inpainting (the
central 4x4 box missing), random inpainting (a fixed mask), Gaussian deblurring (3x3 kernel),
4x super-resolution (4x4 average pooling). Each sampler runs on the exact mixture denoiser
with DDPM (DDIM eta = 1) at several step counts; metrics: debiased Sinkhorn divergence between
its samples and exact posterior samples, RMSE of its sample mean to the exact posterior mean,
PSNR of its samples to the truth, and wall time per step (peak memory on CUDA only).
"""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor

from empriors.data.digits import load_digits_images
from empriors.diffusion import VESchedule, sample
from empriors.metrics.sinkhorn import weighted_sinkhorn_divergence
from empriors.mixture import GaussianMixture
from empriors.operators import Matrix
from empriors.posterior import build_posterior
from empriors.seeding import generator as seeded_generator

SIDE = 8


def digit_mixture(components: int, std: float, generator: torch.Generator) -> GaussianMixture:
    images = load_digits_images()
    idx = torch.randperm(images.shape[0], generator=generator)[:components]
    return GaussianMixture(
        images[idx],
        torch.full((components,), std, dtype=torch.float64),
        torch.full((components,), 1 / components, dtype=torch.float64),
    )


def _rows(keep: Tensor) -> Tensor:
    """Selection matrix of the pixels where ``keep`` (64,) is True."""
    return torch.eye(SIDE * SIDE, dtype=torch.float64)[keep]


def task_matrix(task: str, options: dict, generator: torch.Generator) -> Tensor:
    """A of one task, (m, 64)."""
    grid = torch.arange(SIDE)
    if task == "box":
        inside = (
            (grid[:, None] >= 2) & (grid[:, None] < 6) & (grid[None] >= 2) & (grid[None] < 6)
        ).flatten()
        return _rows(~inside)
    if task == "random":
        return _rows(torch.rand(SIDE * SIDE, generator=generator) >= options["missing"])
    if task == "blur":
        r = torch.arange(-1, 2, dtype=torch.float64)
        k1 = torch.exp(-(r**2) / (2 * options["kernel_std"] ** 2))
        kernel = torch.outer(k1, k1) / torch.outer(k1, k1).sum()
        a = torch.zeros(SIDE * SIDE, SIDE * SIDE, dtype=torch.float64)
        for i in range(SIDE):
            for j in range(SIDE):
                for di in range(-1, 2):
                    for dj in range(-1, 2):
                        ii = min(max(i + di, 0), SIDE - 1)  # replicate padding
                        jj = min(max(j + dj, 0), SIDE - 1)
                        a[i * SIDE + j, ii * SIDE + jj] += kernel[di + 1, dj + 1]
        return a
    if task == "sr4":
        a = torch.zeros((SIDE // 4) ** 2, SIDE * SIDE, dtype=torch.float64)
        for i in range(SIDE):
            for j in range(SIDE):
                a[(i // 4) * (SIDE // 4) + j // 4, i * SIDE + j] = 1 / 16
        return a
    raise ValueError(f"unknown task {task!r}")


def exact_posterior(
    mix: GaussianMixture, a: Tensor, y: Tensor, sigma_y2: float
) -> tuple[Tensor, Tensor, Tensor]:
    """(weights pi (K,), means m_k (K, n), shared covariance C (n, n)) of p(x | y)."""
    s2 = float(mix.stds[0]) ** 2
    n = mix.dim
    precision = torch.eye(n, dtype=a.dtype) / s2 + a.T @ a / sigma_y2
    cov = torch.linalg.inv(precision)
    cov = (cov + cov.T) / 2
    means = (mix.means / s2 + (a.T @ y) / sigma_y2) @ cov
    marg = s2 * a @ a.T + sigma_y2 * torch.eye(a.shape[0], dtype=a.dtype)
    diff = y - mix.means @ a.T
    logw = torch.log(mix.weights) - 0.5 * (diff @ torch.linalg.inv(marg) * diff).sum(1)
    return torch.softmax(logw, 0), means, cov


def sample_exact(
    weights: Tensor, means: Tensor, cov: Tensor, n: int, generator: torch.Generator
) -> Tensor:
    k = torch.multinomial(weights, n, replacement=True, generator=generator)
    z = torch.randn(n, means.shape[1], generator=generator, dtype=means.dtype)
    return means[k] + z @ torch.linalg.cholesky(cov).T


def psnr(x: Tensor, truth: Tensor, value_range: float = 4.0) -> float:
    mse = (x - truth).square().mean()
    return float(10 * torch.log10(value_range**2 / mse))


def run_task(task: str, options: dict, cfg: dict, generator: torch.Generator) -> list[dict]:
    """Every sampler configuration of ``cfg`` on one task; one row each."""
    mix = digit_mixture(cfg["components"], cfg["std"], generator)
    a = task_matrix(task, options, generator)
    sigma_y2 = options["sigma_y"] ** 2
    truth = mix.sample(1, generator)[0]
    y = truth @ a.T + options["sigma_y"] * torch.randn(
        a.shape[0], generator=generator, dtype=torch.float64
    )
    weights, means, cov = exact_posterior(mix, a, y, sigma_y2)
    exact_mean = weights @ means
    n = cfg["samples"]
    reference = sample_exact(weights, means, cov, n, generator)
    floor = weighted_sinkhorn_divergence(
        reference, sample_exact(weights, means, cov, n, generator), cfg["sinkhorn_reg"]
    )
    op, ys = Matrix(a), y.expand(n, -1)
    variants = []
    for kind in cfg["samplers"]:
        its = cfg["mmps_iterations"] if kind == "mmps" else [None]
        variants += [(kind, it) for it in its]
    # Each configuration samples from its own stream, seeded by the task's stream and the
    # configuration: a row does not depend on which other steps or samplers are configured.
    base = int(torch.randint(2**62, (1,), generator=generator))
    # warm-up (allocator, thread pool), so that the first timed configuration is not penalised
    sample(
        build_posterior("mmps", mix.denoise, op, ys, sigma_y2, cg_maxiter=1),
        (n, mix.dim),
        VESchedule(1e-3, 1e2),
        2,
        "ddpm",
        seeded_generator(base, "warm-up"),
        dtype=torch.float64,
    )
    rows = []
    for kind, iterations in variants:
        for steps in cfg["steps"]:
            post = build_posterior(
                kind,
                mix.denoise,
                op,
                ys,
                sigma_y2,
                covariance="tweedie",
                cg_rtol=0.0,
                cg_maxiter=iterations or 1,
                cg=cfg.get("cg", "per_sample"),
                cg_group=cfg.get("cg_group"),
                dps_zeta=cfg["dps_zeta"],
                diffpir_lambda=cfg["diffpir_lambda"],
            )
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            x = sample(
                post,
                (n, mix.dim),
                VESchedule(1e-3, 1e2),
                steps,
                "ddpm",
                seeded_generator(base, kind, iterations, steps),
                dtype=torch.float64,
            )
            seconds = time.perf_counter() - t0
            finite = bool(torch.isfinite(x).all())
            rows.append(
                {
                    "task": task,
                    "sampler": kind,
                    "solver_iterations": iterations if iterations is not None else "",
                    "steps": steps,
                    "sinkhorn": weighted_sinkhorn_divergence(x, reference, cfg["sinkhorn_reg"])
                    if finite
                    else math.inf,
                    "sinkhorn_floor": floor,
                    "mean_rmse": float((x.mean(0) - exact_mean).square().mean().sqrt())
                    if finite
                    else math.inf,
                    "psnr": sum(psnr(xi, truth) for xi in x[:64]) / min(64, n)
                    if finite
                    else -math.inf,
                    "ms_per_step": 1e3 * seconds / (steps + 1),
                    "peak_mb": torch.cuda.max_memory_allocated() / 2**20
                    if torch.cuda.is_available()
                    else "",
                }
            )
    return rows
