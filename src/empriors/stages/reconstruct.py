"""Stage ``reconstruct`` (workflow/rules/evaluate.smk, MRI): posterior reconstructions of
held-out slices by q_k, PSNR/SSIM against the truth and the zero-filled baseline, Fig. 6."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from empriors.data.io import now, read_h5, write_h5
from empriors.seeding import derive_seed
from empriors.stages.artifacts import load_prior, write_json
from empriors.stages.common import (
    estep_samples,
    plots,
    seed_name,
    settings_from_args,
    stage_provenance,
)

log = logging.getLogger("empriors")


def cmd_reconstruct(args):
    """MRI: posterior reconstructions of held-out slices at every evaluation acceleration by
    q_k, PSNR/SSIM against the truth and the zero-filled baseline; Fig. 6 of iteration k."""
    from empriors.metrics import reconstruction

    started, s = now(), settings_from_args(args)
    ev = s.evaluate
    truth_all, attrs = read_h5(args.truth, ["val"])
    shape = tuple(int(v) for v in attrs["shape"])
    val = truth_all["val"]
    count = min(ev.reconstructions, val.shape[0])
    truth = val[torch.linspace(0, val.shape[0] - 1, count).round().long()]
    prior = load_prior(args.prior, s)
    seed = derive_seed(args.seed, seed_name(args), "reconstruct")
    # Fig. 6's sampler (the reference: 64 steps, 5 CG iterations) where it differs from the E-step
    s_rec = s.with_estep(ev.reconstruction_steps, ev.reconstruction_cg_maxiter)

    def posterior(op, y, r):
        label = reconstruction.acceleration_label(r)
        rows = torch.arange(y.shape[0])
        return estep_samples(s_rec, prior, op, y, rows, derive_seed(seed, args.iteration, label))

    recs = reconstruction.reconstruct_held_out(
        truth,
        shape[1:],
        list(ev.accelerations),
        s.observation.sigma_y,
        ev.posterior_samples,
        posterior,
        seed,
    )
    if not all(torch.isfinite(r.samples).all() for r in recs):
        raise FloatingPointError(f"reconstructions by {args.prior} contain NaN/Inf")
    scores = reconstruction.scores(recs, truth, shape[1:])
    log.info("iteration %d: %s", args.iteration, scores)
    prov = stage_provenance("reconstruct", s, [args.prior, args.truth], seed, started)
    tensors = {"truth": truth}
    for r in recs:
        label = reconstruction.acceleration_label(r.acceleration)
        tensors |= {f"{label}/masks": r.masks, f"{label}/zero_filled": r.zero_filled}
        tensors[f"{label}/samples"] = r.samples
    write_h5(args.samples_out, tensors, prov, {"iteration": args.iteration, "shape": shape})
    plots().mri_reconstructions(recs, truth, shape, Path(args.figure))
    result = {"iteration": args.iteration, "accelerations": list(ev.accelerations), **scores}
    write_json(args.out, {**result, "provenance": prov})
