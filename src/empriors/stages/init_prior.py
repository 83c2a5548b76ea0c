"""Stage ``init-prior`` (workflow/rules/em.smk): q0, a Gaussian fitted to the observations
by Monte-Carlo EM (empriors.methods.em_mmps.fit_initial_gaussian)."""

from __future__ import annotations

import json

from empriors.data.io import now
from empriors.methods import em_mmps
from empriors.seeding import derive_seed, generator
from empriors.stages.artifacts import load_observations, save_prior
from empriors.stages.common import seed_name, settings_from_args, stage_provenance


def cmd_init_prior(args):
    started, s = now(), settings_from_args(args)
    y, op, dim, _ = load_observations(args.observations)
    n_fit = s.init.n_fit
    if n_fit is not None:
        y, op = y[:n_fit], op[:n_fit]
    seed = derive_seed(args.seed, seed_name(args), "init")
    gaussian, history = em_mmps.fit_initial_gaussian(op, y, dim, s, generator(seed))
    prov = stage_provenance(
        "init_prior",
        s,
        [args.observations],
        seed,
        started,
    )
    save_prior(
        args.out, em_mmps.Prior(gaussian), {"iteration": 0, "history": json.dumps(history)}, prov
    )
