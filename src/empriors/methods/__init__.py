"""The three methods (em_mmps, diffem, flowdiff) behind one set of stage functions.

What a stage draws depends on what the prior checkpoint holds, not on the method's name:
a flow draws posterior samples itself (FlowDiff), a conditional network samples q(x | y)
(DiffEM), anything else (the Gaussian q0, an unconditional network) goes through the
configured posterior sampler (MMPS by default). Only the M-step is method specific.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from empriors.compute import CPU_AUTO_BATCH, probe_batch
from empriors.config import ConfigError, ExperimentSettings, SamplerSettings
from empriors.methods.prior import Prior
from empriors.operators import LinearOperator
from empriors.resume import BatchResume
from empriors.seeding import generator

METHODS = ("em_mmps", "diffem", "flowdiff")


def posterior_samples(
    prior: Prior,
    op: LinearOperator,
    y: Tensor,
    settings: ExperimentSettings,
    seed: int,
    resume: BatchResume | None = None,
) -> Tensor:
    """One sample of q(x | y_i) per observation with the E-step's settings. y: (N, *O) -> (N, n).
    ``resume``: finished batches are saved there and skipped by a rerun (a flow samples in
    one fast pass per batch and does not resume)."""
    from empriors.methods import diffem, em_mmps, flowdiff

    batch = settings.estep.batch_size
    if batch == "auto":
        batch = estep_batch_from_memory(prior, op, y, settings)
    if prior.flow is not None:
        return flowdiff.flow_sample(prior.flow, op, y, batch, seed, settings.device)
    if prior.conditional:
        return diffem.conditional_sample(
            prior,
            op,
            y,
            settings.schedule,
            settings.estep.sampler,
            batch,
            generator(seed),
            settings.device,
            compute=settings.compute,
            resume=resume,
        )
    return em_mmps.posterior_sample(
        prior,
        op,
        y,
        settings.schedule,
        settings.estep.sampler_for(trained=prior.network is not None),
        settings.estep.posterior,
        batch,
        generator(seed),
        settings.device,
        compute=settings.compute,
        resume=resume,
    )


def estep_batch_from_memory(
    prior: Prior, op: LinearOperator, y: Tensor, settings: ExperimentSettings
) -> int:
    """``estep.batch_size: auto``: the E-step batch that fits the GPU's free memory, probed
    with one sampler step of this stage's own posterior sampler (:func:`probe_batch`)."""
    from empriors.methods import diffem, em_mmps

    n = y.shape[0]
    if prior.flow is not None or prior.network is None:  # no network to size: the default
        return min(n, CPU_AUTO_BATCH)
    one_step = replace(settings.estep.sampler, steps=1)

    def call(b: int) -> None:
        rows = torch.arange(b) % n
        args = (settings.schedule, one_step)
        if prior.conditional:
            diffem.conditional_sample(
                prior,
                op[rows],
                y[rows],
                *args,
                b,
                generator(0),
                settings.device,
                False,
                settings.compute,
            )
        else:
            em_mmps.posterior_sample(
                prior,
                op[rows],
                y[rows],
                *args,
                settings.estep.posterior,
                b,
                generator(0),
                settings.device,
                False,
                settings.compute,
            )

    return probe_batch(call, n, settings.device)


def model_samples(
    prior: Prior,
    n: int,
    sampler: SamplerSettings,
    batch_size: int,
    settings: ExperimentSettings,
    seed: int,
    observations: tuple[LinearOperator, Tensor] | None = None,
    resume: BatchResume | None = None,
) -> Tensor:
    """n samples of the model that evaluation scores: the prior q_k, or, for DiffEM's
    conditional model, its reconstructions x_j ~ q_k(x | y_j) of the first n observations
    (cycled): a draw of the aggregate posterior E_y q_k(x | y), which is p(x) when q_k is
    the true posterior. (n, n_features). ``resume``: as in :func:`posterior_samples`."""
    from empriors.methods import diffem, em_mmps

    if not prior.conditional:
        return em_mmps.prior_sample(
            prior,
            n,
            settings.schedule,
            sampler,
            batch_size,
            generator(seed),
            settings.device,
            settings.compute,
            resume,
        )
    if observations is None:
        raise ValueError("sampling a conditional (DiffEM) model needs the observations")
    op, y = observations
    rows = torch.arange(n) % y.shape[0]
    return diffem.conditional_sample(
        prior,
        op[rows],
        y[rows],
        settings.schedule,
        sampler,
        batch_size,
        generator(seed),
        settings.device,
        compute=settings.compute,
        resume=resume,
    )


def m_step(
    samples: Tensor,
    previous: Prior,
    settings: ExperimentSettings,
    seed: int,
    resume_path: Path | None,
    observations: tuple[LinearOperator, Tensor, tuple[int, ...] | None] | None = None,
) -> tuple[Prior, dict[str, Tensor]]:
    """The configured method's M-step from lap k's samples (N, n). ``observations``
    (op, y, image shape) are needed by DiffEM (the observation family and sigma_y come from
    the config) and FlowDiff. Returns q_k and its loss curves by name."""
    from empriors.methods import diffem, em_mmps, flowdiff

    method = settings.method
    if method == "em_mmps":
        prior, losses = em_mmps.m_step(samples, previous, settings, seed, resume_path)
        return prior, {"losses": torch.tensor(losses, dtype=torch.float64)}
    if observations is None:
        raise ValueError(f"the {method} M-step needs the observations")
    op, y, shape = observations
    if method == "diffem":

        def draw(n, g):
            return settings.observation.random_operator(n, samples.shape[1], shape, g)

        sigma_y = settings.observation.sigma_y
        prior, losses = diffem.m_step(
            samples, previous, draw, sigma_y, settings, seed, resume_path, observed=(op, y)
        )
        return prior, {"losses": torch.tensor(losses, dtype=torch.float64)}
    if method == "flowdiff":
        prior, losses, flow_losses = flowdiff.m_step(
            samples, previous, op, y, settings, seed, resume_path
        )
        return prior, {
            "losses": torch.tensor(losses, dtype=torch.float64),
            "flow_losses": torch.tensor(flow_losses, dtype=torch.float64),
        }
    raise ConfigError(f"unknown method {method!r}; choose one of {METHODS}")
