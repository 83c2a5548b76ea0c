"""Variance-exploding diffusion: schedule, EDM-preconditioned denoiser, loss and samplers.

Notation (PAPERS.md 1): x_t = x + sigma_t z, z ~ N(0, I), t in [0, 1],
sigma_t = exp(log a + (log b - log a) t).

A *denoiser* is any callable ``d(x_t, sigma) -> E[x | x_t]`` with ``x_t`` of shape (B, *S) and
``sigma`` a 0-d tensor or shape (B,); samplers only ever see this callable, so the same
samplers run an unconditional network, a closed-form Gaussian or a posterior (MMPS) denoiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

DenoiserFn = Callable[[Tensor, Tensor], Tensor]


class VESchedule:
    """sigma_t = exp(log a + (log b - log a) t), a = sigma_min, b = sigma_max."""

    def __init__(self, sigma_min: float, sigma_max: float):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.log_a, self.log_b = math.log(sigma_min), math.log(sigma_max)

    def sigma(self, t: Tensor) -> Tensor:
        return torch.exp(self.log_a + (self.log_b - self.log_a) * t)


def sinusoidal_embedding(x: Tensor, features: int) -> Tensor:
    """(B,) -> (B, features): [sin(x w_i), cos(x w_i)], w_i = 1e4^(-i/(features/2)) ... scaled.

    Applied to log sigma (range about [-7, 5]), so frequencies span 1 down to 1e-4.
    """
    half = features // 2
    freqs = torch.exp(-math.log(1e4) * torch.arange(half, dtype=x.dtype, device=x.device) / half)
    angles = x[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class Denoiser(nn.Module):
    """EDM preconditioning with sigma_data = 1:

    d(x_t, sigma) = c_skip x_t + c_out net(c_in x_t, log sigma),
    c_skip = 1/(sigma^2+1), c_out = sigma/sqrt(sigma^2+1), c_in = 1/sqrt(sigma^2+1).

    ``backbone(x_scaled, log_sigma) -> (B, *S)``; it embeds log sigma itself.

    Conditional (DiffEM's d(x_t, y), ``condition_features`` > 0): the backbone sees the
    concatenation [c_in x_t, c] with c (B, m) the observation as network input
    (:meth:`empriors.operators.LinearOperator.condition`); for flat images of shape (C, H, W)
    and c of shape (B, C' H W) that is the channel concatenation (C + C', H, W).

    ``compute`` (set by :meth:`empriors.compute.Compute.accelerate`; None: float32): the
    backbone runs under its autocast (bf16); its output is cast back to x_t's dtype, so the
    preconditioning, the loss and the posterior corrections stay in float32.
    """

    compute = None  # an empriors.compute.Compute, or None

    def __init__(self, backbone: nn.Module, condition_features: int = 0):
        super().__init__()
        self.backbone = backbone
        self.condition_features = condition_features

    def forward(self, x_t: Tensor, sigma: Tensor, condition: Tensor | None = None) -> Tensor:
        if (condition is None) != (self.condition_features == 0):
            raise ValueError(
                f"this denoiser takes {self.condition_features} condition features; "
                f"got condition={None if condition is None else tuple(condition.shape)}"
            )
        sigma = torch.as_tensor(sigma, dtype=x_t.dtype, device=x_t.device).expand(x_t.shape[0])
        s = sigma.reshape(-1, *([1] * (x_t.ndim - 1)))
        c_skip = 1 / (s**2 + 1)
        c_out = s / torch.sqrt(s**2 + 1)
        c_in = 1 / torch.sqrt(s**2 + 1)
        inputs = c_in * x_t
        if condition is not None:
            inputs = torch.cat([inputs, condition.to(x_t.dtype)], dim=-1)
        with self.compute.autocast() if self.compute is not None else nullcontext():
            out = self.backbone(inputs, torch.log(sigma))
        return c_skip * x_t + c_out * out.to(x_t.dtype)  # .to: a no-op unless autocast


class Conditioned:
    """The denoiser x_t, sigma -> d(x_t, sigma, c) of a conditional network at fixed c (B, m),
    so that the unconditional samplers draw x ~ q(x | y)."""

    def __init__(self, network: Denoiser, condition: Tensor):
        self.network, self.condition = network, condition

    def __call__(self, x_t: Tensor, sigma: Tensor) -> Tensor:
        return self.network(x_t, sigma, self.condition)


def beta33(n: int, generator: torch.Generator, dtype=torch.float32, device=None) -> Tensor:
    """t ~ Beta(3, 3), drawn as the median of 5 uniforms (the 3rd order statistic of 5
    U(0,1) is Beta(3, 3)). torch.distributions.Beta cannot take a generator, which resumable,
    seeded training needs."""
    u = torch.rand(n, 5, generator=generator, dtype=dtype, device=device)
    return u.sort(dim=1).values[:, 2]


def beta_mixture(n: int, generator: torch.Generator, dtype=torch.float32, device=None) -> Tensor:
    """t ~ 1/2 Beta(2, 5) + 1/2 Beta(5, 2) (DiffEM's manifold training times, danialht/DiffEM
    experiments/manifold/train_diffem.py): the 2nd or, with probability 1/2, the 5th order
    statistic of 6 uniforms (the k-th of n U(0,1) is Beta(k, n + 1 - k))."""
    u = torch.rand(n, 7, generator=generator, dtype=dtype, device=device)
    order = u[:, :6].sort(dim=1).values
    return torch.where(u[:, 6] < 0.5, order[:, 1], order[:, 4])


# mstep.t_law: the law of the training noise times t
TIME_LAWS = {"beta33": beta33, "beta_mixture": beta_mixture}


def denoising_loss(
    denoiser: nn.Module,
    x: Tensor,
    schedule: VESchedule,
    generator: torch.Generator,
    condition: Tensor | None = None,
    rows: slice | None = None,
    t_law: str = "beta33",
) -> Tensor:
    """E_t E_z [ lambda_t * mean_features (d(x + sigma_t z [, c]) - x)^2 ], t ~ ``t_law``
    (Beta(3,3) by default, :data:`TIME_LAWS`), lambda_t = 1/sigma_t^2 + 1. ``x``: (B, *S),
    ``condition`` c: (B, m) or None. Returns a scalar. ``rows``: t and z are drawn for the
    whole batch, the loss is the mean over these rows only (a data-parallel rank's share of
    the global batch)."""
    t = TIME_LAWS[t_law](x.shape[0], generator, dtype=x.dtype, device=x.device)
    sigma = schedule.sigma(t)
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    if rows is not None:
        x, sigma, z = x[rows], sigma[rows], z[rows]
        condition = None if condition is None else condition[rows]
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    extra = () if condition is None else (condition,)
    err = (denoiser(x + s * z, sigma, *extra) - x).square().flatten(1).mean(dim=1)
    return ((1 / sigma**2 + 1) * err).mean()


def diffusion_bound(denoiser: DenoiserFn, x: Tensor, schedule: VESchedule) -> Tensor:
    """A one-sample estimate of the denoising bound on -log p_theta(x), up to a constant:

    -log p(x) <= (1/2) int_0^1 g(t)^2 E_z |s_theta(x_t) - grad log p(x_t | x)|^2 dt + C
              = log(sigma_max / sigma_min) E_{t ~ U(0,1)} E_z [ |d(x_t) - x|^2 / sigma_t^2 ] + C,

    with g(t)^2 = d sigma_t^2 / dt = 2 sigma_t^2 log(sigma_max / sigma_min) for the log-linear
    schedule and s_theta = (d - x_t) / sigma_t^2 (the continuous-time ELBO of score models;
    C holds the prior term at sigma_max and the reconstruction term at sigma_min, which do
    not depend on theta). ``x``: (B, n), differentiable. Returns (B,), summed over features.
    The global RNG draws t and z (this is used inside FlowDiff's training only)."""
    t = torch.rand(x.shape[0], dtype=x.dtype, device=x.device)
    sigma = schedule.sigma(t)
    s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    x_t = x + s * torch.randn_like(x)
    err = (denoiser(x_t, sigma) - x).square().flatten(1).sum(dim=1)
    return (schedule.log_b - schedule.log_a) * err / sigma**2


SAMPLERS = ("ddpm", "ddim", "pc")


@torch.no_grad()
def sample(
    denoise: DenoiserFn,
    shape: tuple[int, ...],
    schedule: VESchedule,
    steps: int,
    method: str = "ddpm",
    generator: torch.Generator | None = None,
    mean: Tensor | None = None,
    corrector_tau: float = 0.1,
    dtype=torch.float32,
    device=None,
    progress: bool = False,
) -> Tensor:
    """Reverse the VE diffusion on the grid t_i = 1 - i/N, i = 0..N, then denoise at sigma(0).

    x_1 = mean + sigma_max z. For each step t -> s (d = denoise(x_t, sigma_t)):
      ddpm: x_s = x_t - tau (x_t - d) + sigma_s sqrt(tau) eps,  tau = 1 - sigma_s^2 / sigma_t^2
      ddim: x_s = x_t - (1 - sigma_s/sigma_t)(x_t - d)
      pc:   ddim step, then one Langevin correction at s:
            x <- x - tau (x - d(x)) + sigma_s sqrt(2 tau) eps, tau = ``corrector_tau``
    ``denoise`` may need gradients (MMPS): it is called with grad enabled and must return a
    detached tensor. If it has a ``post_step(x_s)`` method (step-guided samplers such as DPS),
    that is applied after each predictor step. Returns x of shape ``shape``.
    """
    post_step = getattr(denoise, "post_step", None)
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; choose one of {SAMPLERS}")
    if steps < 1:
        raise ValueError("steps must be >= 1")

    def randn():
        dev = generator.device if generator is not None else device
        return torch.randn(shape, generator=generator, dtype=dtype, device=dev).to(device)

    def d(x, sigma):
        with torch.enable_grad():
            return denoise(x, sigma).detach()

    time = torch.linspace(1, 0, steps + 1, dtype=torch.float64)
    sigmas = schedule.sigma(time).to(dtype=dtype, device=device)
    x = sigmas[0] * randn()
    if mean is not None:
        x = x + mean.to(dtype=dtype, device=device)
    for i in tqdm(range(steps), disable=not progress, desc=f"{method} sampling", leave=False):
        sigma_t, sigma_s = sigmas[i], sigmas[i + 1]
        x_hat = d(x, sigma_t)
        if method == "ddpm":
            tau = 1 - (sigma_s / sigma_t) ** 2
            x = x - tau * (x - x_hat) + sigma_s * torch.sqrt(tau) * randn()
        else:
            x = x - (1 - sigma_s / sigma_t) * (x - x_hat)
        if post_step is not None:  # step-level guidance (DPS): x_s <- x_s + correction
            x = post_step(x)
        if method == "pc":
            x = (
                x
                - corrector_tau * (x - d(x, sigma_s))
                + sigma_s * math.sqrt(2 * corrector_tau) * randn()
            )
    return d(x, sigmas[-1])
