"""Stage ``mstep`` (workflow/rules/em.smk): q_k fitted to lap k's E-step samples (all
shards), data-parallel under torchrun when mstep.gpus > 1; stage ``final-prior``: DiffEM's
final unconditional prior."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from empriors import distributed, methods
from empriors.config import ConfigError
from empriors.data.io import ArtifactError, now, read_h5
from empriors.methods import em_mmps
from empriors.seeding import derive_seed
from empriors.stages.artifacts import load_observations, load_prior, save_prior
from empriors.stages.common import seed_name, settings_from_args, stage_provenance

log = logging.getLogger("empriors")


def cmd_mstep(args):
    distributed.launch(args.processes, ["-m", "empriors", *args.argv])
    started, s = now(), settings_from_args(args)
    # torchrun's processes (mstep.gpus > 1): join the group and take this rank's GPU first
    s.ranks, s.device = distributed.from_environment(s.device)
    if s.ranks.distributed and s.method == "flowdiff":
        raise ConfigError("FlowDiff's M-step runs as one process (mstep.gpus must be 1)")
    shards = [read_h5(p, ["x"])[0]["x"] for p in args.samples]
    x = torch.cat(shards)
    previous = load_prior(args.prior, s, x.shape[1], args.samples[0])
    kept = em_mmps.keep_trained_in_range(x, s.estep.keep_range, previous)
    log.info(
        "M-step %d: %d samples, %d kept inside the range", args.iteration, x.shape[0], kept.shape[0]
    )
    if kept.shape[0] < 2:
        raise ArtifactError("fewer than 2 E-step samples left after the range filter")
    seed = derive_seed(args.seed, seed_name(args), "mstep", args.iteration)
    resume = Path(args.resume_dir) / f"iter_{args.iteration}.pt"
    observations = None
    if s.method != "em_mmps":
        y, op, _, shape = load_observations(args.observations)
        observations = (op, y, shape)
    prior, losses = methods.m_step(kept, previous, s, seed, resume, observations)
    if s.ranks.main:  # the weights are the same on every rank; one writes them
        inputs = [*args.samples, args.prior] + ([args.observations] if observations else [])
        prov = stage_provenance("mstep", s, inputs, seed, started, resume)
        save_prior(
            args.out,
            prior,
            {"iteration": args.iteration, **losses, "kept": kept.shape[0], "method": s.method},
            prov,
        )
        resume.unlink(missing_ok=True)
    distributed.finish(s.ranks)


def cmd_final_prior(args):
    """DiffEM: the prior evaluation samples, a fresh unconditional denoiser trained on the last
    lap's reconstructions (all shards)."""
    from empriors.methods import diffem

    started, s = now(), settings_from_args(args)
    x = torch.cat([read_h5(p, ["x"])[0]["x"] for p in args.samples])
    kept = em_mmps.keep_in_range(x, s.estep.keep_range)
    seed = derive_seed(args.seed, seed_name(args), "final_prior")
    resume = Path(args.resume_dir) / "final.pt"
    prior, losses = diffem.final_prior(kept, s, seed, resume)
    prov = stage_provenance("final_prior", s, list(args.samples), seed, started, resume)
    payload = {"iteration": "final", "losses": torch.tensor(losses, dtype=torch.float64)}
    save_prior(args.out, prior, {**payload, "kept": kept.shape[0]}, prov)
    resume.unlink(missing_ok=True)
