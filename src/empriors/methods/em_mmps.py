"""EM with moment-matching posterior sampling (EM-MMPS), on tensors (no I/O).

The model after lap k is q_k = (denoiser weights theta_k, Gaussian fit G_k = (mu_x, Sigma_x)).
- init:   q_0 = Gaussian fitted by Monte-Carlo EM: rounds of exact Gaussian posterior sampling
          (MMPS with the Gaussian's own denoiser and covariance) followed by PPCA.
- E-step: x_i ~ q_{k-1}(x | y_i) for every observation, by MMPS inside a diffusion sampler.
- M-step: G_k = PPCA of the new samples (or G_0 kept: ``mstep.moments: fixed``);
          theta_k = train the denoiser on them, starting from
          theta_{k-1} (fresh at k = 1); Adam, EMA and LR schedule restart every lap.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from empriors.compute import Compute, batch_rows
from empriors.config import ExperimentSettings, PosteriorSettings, SamplerSettings
from empriors.diffusion import VESchedule, sample
from empriors.gaussian import LowRankGaussian, fit_ppca
from empriors.methods.prior import Prior, build_denoiser
from empriors.operators import LinearOperator
from empriors.posterior import build_posterior
from empriors.resume import BatchResume, ResumableBatches
from empriors.train import train_denoiser

log = logging.getLogger(__name__)


def posterior_sample(
    prior: Prior,
    op: LinearOperator,
    y: Tensor,
    schedule: VESchedule,
    sampler: SamplerSettings,
    settings: PosteriorSettings,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    progress: bool = True,
    compute: Compute | None = None,
    resume: BatchResume | None = None,
) -> Tensor:
    """One posterior sample per observation, x_i ~ q(x | y_i), with the sampler named by
    ``settings`` (MMPS by default). y: (N, *O) -> (N, n). ``compute``: the network's
    precision and compilation (a compiled network gets padded, equal-sized batches).
    ``resume``: finished batches are saved there and skipped by a rerun (the same samples, bit
    for bit)."""
    n, dim = y.shape[0], prior.gaussian.dim
    dtype = torch.float64 if prior.network is None else torch.float32
    gaussian = prior.gaussian.to(device=device, dtype=dtype)
    if prior.network is None:
        denoise, static = gaussian.denoise, False
    else:
        compute = compute or Compute(device)
        denoise, static = compute.accelerate(prior.network), compute.compile
    batches = list(batch_rows(n, batch_size, static))
    with ResumableBatches(batches, resume, generator, batch_size) as job:
        for rows, real in tqdm(
            job.remaining(),
            desc="E-step batches",
            initial=job.done,
            total=len(batches),
            disable=not progress or len(batches) == 1,
        ):
            yb = y[rows].to(device=device, dtype=dtype)
            opb = op[rows].to(device=device, dtype=dtype)
            posterior = build_posterior(
                settings.kind,
                denoise,
                opb,
                yb,
                settings.sigma_y2,
                covariance=settings.covariance,
                gaussian=gaussian,
                cg_rtol=settings.cg_rtol,
                cg_maxiter=settings.cg_maxiter,
                cg=settings.cg,
                cg_group=settings.cg_group,
                dps_zeta=settings.dps_zeta,
                diffpir_lambda=settings.diffpir_lambda,
            )
            job.finish(
                sample(
                    posterior,
                    (yb.shape[0], dim),
                    schedule,
                    sampler.steps,
                    sampler.method,
                    generator,
                    mean=gaussian.mean,
                    corrector_tau=sampler.corrector_tau,
                    dtype=dtype,
                    device=device,
                    progress=progress,
                )[:real].cpu()
            )
    return job.result()


def prior_sample(
    prior: Prior,
    n: int,
    schedule: VESchedule,
    sampler: SamplerSettings,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    compute: Compute | None = None,
    resume: BatchResume | None = None,
) -> Tensor:
    """n samples of q_k: exact for the Gaussian q_0, the diffusion sampler otherwise
    (``compute``: the network's precision and compilation; ``resume``: as in
    :func:`posterior_sample`)."""
    if prior.network is None:
        return prior.gaussian.sample(n, generator).to(torch.float32)
    mean = prior.gaussian.mean.to(device=device, dtype=torch.float32)
    compute = compute or Compute(device)
    network = compute.accelerate(prior.network)
    batches = list(batch_rows(n, batch_size, compute.compile))
    with ResumableBatches(batches, resume, generator, batch_size) as job:
        for rows, real in job.remaining():
            job.finish(
                sample(
                    network,
                    (rows.shape[0], prior.gaussian.dim),
                    schedule,
                    sampler.steps,
                    sampler.method,
                    generator,
                    mean=mean,
                    corrector_tau=sampler.corrector_tau,
                    device=device,
                )[:real].cpu()
            )
    return job.result()


def fit_initial_gaussian(
    op: LinearOperator,
    y: Tensor,
    dim: int,
    settings: ExperimentSettings,
    generator: torch.Generator,
    progress: bool = True,
) -> tuple[LowRankGaussian, list[dict]]:
    """q_0 by Monte-Carlo EM from N(0, I): ``init_rounds`` x (exact Gaussian posterior
    sampling with MMPS + PPCA). Returns the fit and per-round summaries."""
    gaussian = LowRankGaussian.standard(dim)
    posterior = settings.init.posterior
    history = []
    for r in tqdm(range(settings.init.rounds), desc="q0 Monte-Carlo EM", disable=not progress):
        x = posterior_sample(
            Prior(gaussian),
            op,
            y,
            settings.schedule,
            settings.init.sampler,
            posterior,
            settings.init.batch_size,
            generator,
            settings.device,
            progress=False,
        )
        gaussian = fit_ppca(x, settings.init.rank)
        history.append(
            {
                "round": r + 1,
                "mean_norm": float(gaussian.mean.norm()),
                "total_variance": float(torch.trace(gaussian.covariance()))
                if dim <= 4096
                else float(gaussian.variances.sum()),
            }
        )
        log.info("q0 round %d: %s", r + 1, history[-1])
    return gaussian, history


def keep_in_range(x: Tensor, bound: float | None) -> Tensor:
    """Drop samples with any coordinate outside (-bound, bound) (the manifold E-step rule)."""
    if bound is None:
        return x
    return x[(x.abs() < bound).flatten(1).all(dim=1)]


def keep_trained_in_range(x: Tensor, bound: float | None, sampled_under: Prior) -> Tensor:
    """:func:`keep_in_range` for samples drawn under a trained prior (one with a network); the
    samples of q_0 (lap 1) are kept whole, as the manifold reference filters only the samples
    it generates after a training lap (issue 19.5)."""
    return keep_in_range(x, bound if sampled_under.network is not None else None)


def m_step(
    samples: Tensor,
    previous: Prior,
    settings: ExperimentSettings,
    seed: int,
    resume_path: Path | None,
    progress: bool = True,
    final: bool = False,
    condition: Tensor | None = None,
) -> tuple[Prior, list[float]]:
    """G_k = PPCA of (up to ``ppca_samples``) samples, or G_{k-1} (= q_0's fit) when
    ``mstep.moments`` is "fixed" (not for DiffEM's final prior); theta_k trained from theta_{k-1}
    (``final``: DiffEM's final prior, with ``settings.mstep.final_train``; ``condition`` (N, m):
    DiffEM's conditional denoiser on the pairs (samples_i, condition_i)). theta_{k-1} is
    carried over when it has the same conditioning, else the network starts fresh."""
    features = samples.shape[1]
    extra = 0 if condition is None else condition.shape[1]
    if settings.mstep.moments == "fixed" and not final:
        gaussian = previous.gaussian
    else:
        gaussian = fit_ppca(samples[: settings.mstep.ppca_samples], settings.mstep.ppca_rank)
    torch.manual_seed(seed)  # lap 1: a fresh, seeded init; later laps overwrite it
    denoiser = build_denoiser(settings, features, extra)
    if previous.network is not None and previous.network.condition_features == extra:
        denoiser.load_state_dict(previous.network.state_dict())
    denoiser.to(settings.device)
    weights, losses = train_denoiser(
        denoiser,
        samples.to(settings.device, torch.float32),
        settings.schedule,
        settings.mstep.final_train if final else settings.mstep.train,
        seed,
        resume_path,
        progress,
        condition=None if condition is None else condition.to(settings.device, torch.float32),
        compute=settings.compute,
        ranks=settings.ranks,
    )
    denoiser.load_state_dict(weights)
    return Prior(gaussian, denoiser.cpu().eval()), losses
