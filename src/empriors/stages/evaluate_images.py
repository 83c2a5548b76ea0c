"""Image evaluation (workflow/rules/evaluate.smk): stage ``sample-prior`` (one shard of q_k's
evaluation samples), ``evaluate-images`` (the metric of lap k), ``aggregate-images``
(fid.csv, metric curve, sample grids) and ``posterior-examples`` (the figure)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from empriors import methods
from empriors.data.io import ArtifactError, now, provenance, read_h5, write_h5
from empriors.metrics.fid import image_metric
from empriors.operators import PixelMask
from empriors.seeding import derive_seed
from empriors.stages.artifacts import (
    iteration_order,
    load_observations,
    load_prior,
    samples_by_iteration,
    write_csv,
    write_json,
)
from empriors.stages.common import (
    conditional_inputs,
    estep_samples,
    plots,
    sampling_resume,
    seed_name,
    settings_from_args,
    shard_slice,
    stage_provenance,
)

log = logging.getLogger("empriors")


def cmd_sample_prior(args):
    """One shard of the evaluation samples of iteration k (images: sharded like the E-step)."""
    started, s = now(), settings_from_args(args)
    ev = s.evaluate
    index = shard_slice(ev.n_samples, args.shard, ev.shards)
    n = index.stop - index.start
    prior = load_prior(args.prior, s)
    seed = derive_seed(args.seed, seed_name(args), "sample_prior", args.iteration, args.shard)
    observations = conditional_inputs(args, prior, torch.arange(index.start, index.stop))
    resume = sampling_resume(args, s, f"sample_prior_{args.iteration}_{args.shard}", seed)
    x = methods.model_samples(prior, n, ev.sampler, ev.batch_size, s, seed, observations, resume)
    if not torch.isfinite(x).all():
        raise FloatingPointError(f"samples of {args.prior} contain NaN/Inf; nothing written")
    prov = stage_provenance("sample_prior", s, [args.prior], seed, started, resume)
    write_h5(args.out, {"x": x}, prov, {"iteration": args.iteration, "shard": args.shard})
    resume.clear()


def cmd_evaluate_images(args):
    """The image metric of iteration k: samples (all shards) against the clean images."""
    started, s = now(), settings_from_args(args)
    ev = s.evaluate
    reference = ev.reference
    truth, attrs = read_h5(args.truth, [reference])
    shape = tuple(int(v) for v in attrs["shape"])
    samples = torch.cat([read_h5(p, ["x"])[0]["x"] for p in args.samples])
    weights = Path(ev.inception_weights) if ev.inception_weights else None
    scores = image_metric(ev.metric, samples, truth[reference], shape, weights)
    result = {"iteration": args.iteration, **scores, "n": samples.shape[0]}
    log.info("iteration %d: %s", args.iteration, result)
    prov = provenance("evaluate_images", s.raw, [*args.samples, args.truth], None, started)
    write_json(args.out, {**result, "metric": ev.metric, "provenance": prov})


def cmd_aggregate_images(args):
    """fid.csv (the metric per iteration, named columns), the metric curve and sample grids."""
    from empriors.metrics import reconstruction

    evals = [json.loads(Path(p).read_text()) for p in args.evals]
    metric = evals[0]["metric"]
    columns = ["fd_pixels"] if metric == "fd_pixels" else ["fid", "is", "is_std", "fd_pixels"]
    rows = sorted(
        ({"iteration": r["iteration"], **{c: r[c] for c in columns}} for r in evals),
        key=lambda r: iteration_order(r["iteration"]),
    )
    shape = tuple(int(v) for v in read_h5(args.truth, [])[1]["shape"])
    figures = Path(args.figures_dir)
    accelerations = []
    if args.reconstructions:
        recs = [json.loads(Path(p).read_text()) for p in args.reconstructions]
        recs = {r["iteration"]: r for r in recs}
        covered = [r["iteration"] for r in rows if r["iteration"] != "final"]
        if sorted(recs) != covered:
            raise ArtifactError(f"reconstructions of iterations {sorted(recs)}, evals {covered}")
        accelerations = recs[covered[0]]["accelerations"]
        scores = reconstruction.score_columns(accelerations)
        for r in rows:
            r.update({c: recs.get(r["iteration"], {}).get(c, "") for c in scores})
    plots().metric_curve(rows, columns[0], figures / "metric_curve.png", accelerations)
    plots().sample_grids(samples_by_iteration(args.grid_samples), shape, figures / "samples.png")
    write_csv(args.out, rows)  # last: the CSV is the rule's completion marker


def cmd_posterior_examples(args):
    """Figure: observations, several posterior samples each (the last prior), truth."""
    s = settings_from_args(args)
    y, op, dim, shape = load_observations(args.observations)
    truth = read_h5(args.truth, ["train"])[0]["train"]
    e, p = s.evaluate.examples, 4
    index = torch.arange(e)
    prior = load_prior(args.prior, s, dim, args.observations)
    seed = derive_seed(args.seed, seed_name(args), "posterior_examples")
    x = estep_samples(s, prior, op, y, index.repeat_interleave(p), seed)
    missing = (op.masks[index] == 0) if isinstance(op, PixelMask) else None
    plots().posterior_examples(
        op[index].preview(y[index]),
        missing,
        x.reshape(e, p, -1),
        truth[index],
        shape,
        Path(args.out),
        op.preview_title,
    )
    log.info("posterior examples of %d observations from %s", e, args.prior)
