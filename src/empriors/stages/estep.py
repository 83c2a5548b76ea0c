"""Stage ``estep`` (workflow/rules/em.smk): one shard of lap k's posterior samples
x ~ q_{k-1}(x | y_i), resumable batch by batch. The shard's attributes record how its CG
solves ended (cg_residual, cg_iterations, cg_solves; NaN without CG): a label-free
diagnostic, over the batches of the attempt that finished the shard."""

from __future__ import annotations

import logging
import time

import torch

from empriors.data.io import now, write_h5
from empriors.posterior import CGMonitor
from empriors.seeding import derive_seed
from empriors.stages.artifacts import load_observations, load_prior
from empriors.stages.common import (
    estep_samples,
    sampling_resume,
    seed_name,
    settings_from_args,
    shard_slice,
    stage_provenance,
)

log = logging.getLogger("empriors")


def cmd_estep(args):
    started, s = now(), settings_from_args(args)
    y, op, dim, _ = load_observations(args.observations)
    index = shard_slice(y.shape[0], args.shard, s.em.shards)
    rows = torch.arange(y.shape[0])[index].repeat_interleave(s.estep.samples_per_observation)
    prior = load_prior(args.prior, s, dim, args.observations)
    seed = derive_seed(args.seed, seed_name(args), "estep", args.iteration, args.shard)
    resume = sampling_resume(args, s, f"estep_{args.iteration}_{args.shard}", seed)
    t0 = time.perf_counter()
    with CGMonitor() as cg:
        x = estep_samples(s, prior, op, y, rows, seed, resume)
    if not torch.isfinite(x).all():
        raise FloatingPointError("E-step produced NaN/Inf samples; nothing written")
    log.info(
        "E-step shard %d: %d samples in %.1f s; CG: %s",
        args.shard,
        x.shape[0],
        time.perf_counter() - t0,
        cg.summary(),
    )
    prov = stage_provenance("estep", s, [args.prior, args.observations], seed, started, resume)
    write_h5(
        args.out,
        {"x": x, "index": rows},
        prov,
        {"iteration": args.iteration, "shard": args.shard, **cg.summary()},
    )
    resume.clear()
