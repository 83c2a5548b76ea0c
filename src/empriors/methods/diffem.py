"""DiffEM: EM with a conditional diffusion model (PAPERS.md 2), on tensors (no I/O).

The model after lap k is q_k = (Gaussian fit G_k, conditional denoiser d_theta_k(x_t, sigma, c)),
c = c(A, y) the observation as network input (:meth:`LinearOperator.condition`: the
zero-filled observation for images and MRI, [y, vec(A)] for the manifold).

- lap 0:  q_0 = the Gaussian of EM-MMPS (same init_prior stage); its E-step (lap 1) draws
          MMPS posterior samples under it. The conditional network starts from random weights.
- E-step: x_hat_i ~ q_{k-1}(x | y_i) for every observation, with the ORIGINAL y_i: ancestral
          (DDPM) sampling of the conditional denoiser at c(A_i, y_i).
- M-step: a FRESH corruption of every sample, drawn once per lap: A'_i from the observation
          family (new mask, new projection), y'_i = A'_i x_hat_i + sigma_y e'_i; theta_k is
          trained on the pairs (x_hat_i, c(A'_i, y'_i)) by the conditional denoising loss,
          starting from theta_{k-1} (weights carry over; Adam and EMA restart).
- final:  a fresh unconditional denoiser trained on the last lap's reconstructions is the
          prior that evaluation samples (:func:`final_prior`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor
from tqdm.auto import tqdm

from empriors.compute import Compute, batch_rows
from empriors.config import ExperimentSettings, SamplerSettings
from empriors.diffusion import Conditioned, VESchedule, sample
from empriors.gaussian import LowRankGaussian
from empriors.methods import em_mmps
from empriors.methods.prior import Prior
from empriors.operators import LinearOperator, observe
from empriors.resume import BatchResume, ResumableBatches

# n, generator -> n operators of the experiment's observation family
OperatorDraw = Callable[[int, torch.Generator], LinearOperator]


def conditional_sample(
    prior: Prior,
    op: LinearOperator,
    y: Tensor,
    schedule: VESchedule,
    sampler: SamplerSettings,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device,
    progress: bool = True,
    compute: Compute | None = None,
    resume: BatchResume | None = None,
) -> Tensor:
    """x_i ~ q(x | y_i) by the conditional network at c(A_i, y_i). y: (N, *O) -> (N, n).
    The reverse diffusion starts at x_1 = sigma_max z, centred at 0 (not at G_k's mean: the
    reference's start, danialht/DiffEM priors/common.py, issue 19.14).
    ``compute``: the network's precision and compilation (padded batches when compiled);
    ``resume``: finished batches are saved there and skipped by a rerun."""
    n, dim = y.shape[0], prior.gaussian.dim
    compute = compute or Compute(device)
    network = compute.accelerate(prior.network)
    batches = list(batch_rows(n, batch_size, compute.compile))
    quiet = not progress or n <= batch_size
    with ResumableBatches(batches, resume, generator, batch_size) as job:
        for rows, real in tqdm(
            job.remaining(),
            desc="conditional sampling",
            initial=job.done,
            total=len(batches),
            disable=quiet,
        ):
            yb = y[rows].to(device=device, dtype=torch.float32)
            opb = op[rows].to(device=device, dtype=torch.float32)
            denoise = Conditioned(network, opb.condition(yb))
            job.finish(
                sample(
                    denoise,
                    (yb.shape[0], dim),
                    schedule,
                    sampler.steps,
                    sampler.method,
                    generator,
                    mean=None,  # x_1 = 0 + sigma_max z, as DiffEM's sample_any_conditional
                    corrector_tau=sampler.corrector_tau,
                    device=device,
                )[:real].cpu()
            )
    return job.result()


def fresh_corruptions(
    x: Tensor, draw: OperatorDraw, sigma_y: float, generator: torch.Generator
) -> tuple[LinearOperator, Tensor]:
    """The M-step's training observations: A'_i drawn anew for every sample and
    y'_i = A'_i x_i + sigma_y e'_i. x: (N, n) -> (A', y' (N, *O))."""
    op = draw(x.shape[0], generator)
    return op, observe(x, op.to(dtype=x.dtype), sigma_y, generator)


def m_step(
    samples: Tensor,
    previous: Prior,
    draw: OperatorDraw,
    sigma_y: float,
    settings: ExperimentSettings,
    seed: int,
    resume_path: Path | None,
    progress: bool = True,
    observed: tuple[LinearOperator, Tensor] | None = None,
) -> tuple[Prior, list[float]]:
    """G_k = PPCA of the samples; theta_k = the conditional denoiser trained on (x_hat, c(A', y'))
    with fresh corruptions (seeded by ``seed``, so drawn once per lap), from theta_{k-1}.
    With ``mstep.first_lap_pairs: observed``, lap 1 (no network yet: the samples are q_0's,
    row i drawn for observation i) trains on the ORIGINAL pairs (x_hat_i, c(A_i, y_i)) of
    ``observed`` (op, y), as DiffEM's manifold code does (issue 19.15)."""
    if settings.mstep.first_lap_pairs == "observed" and previous.network is None:
        if observed is None or observed[1].shape[0] != samples.shape[0]:
            raise ValueError(
                "mstep.first_lap_pairs: observed needs one lap-1 sample per observation "
                "(no range filter, samples_per_observation 1)"
            )
        op, y = observed
    else:
        generator = torch.Generator().manual_seed(seed)
        op, y = fresh_corruptions(samples, draw, sigma_y, generator)
    condition = op.condition(y.to(samples.dtype)).to(torch.float32)
    return em_mmps.m_step(
        samples, previous, settings, seed, resume_path, progress, condition=condition
    )


def final_prior(
    samples: Tensor,
    settings: ExperimentSettings,
    seed: int,
    resume_path: Path | None,
    progress: bool = True,
) -> tuple[Prior, list[float]]:
    """The prior that DiffEM's evaluation samples: a fresh unconditional denoiser (and PPCA)
    trained on the last lap's reconstructions with the M-step's settings, for
    ``mstep.final_steps`` steps (default ``mstep.steps``)."""
    fresh = Prior(LowRankGaussian.standard(samples.shape[1]))  # no network: from scratch
    return em_mmps.m_step(samples, fresh, settings, seed, resume_path, progress, final=True)
