"""Manifold evaluation (workflow/rules/evaluate.smk): stage ``eval-reference`` (the OT terms
between the true evaluation sets, once), ``evaluate`` (samples of q_k against the truth:
Sinkhorn) and ``aggregate`` (sinkhorn.csv and the figures)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from empriors import methods
from empriors.data.io import ArtifactError, now, provenance, read_h5, write_h5
from empriors.methods import em_mmps
from empriors.metrics.sinkhorn import entropic_ot, paper_baseline, paper_scores
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
    plots,
    seed_name,
    settings_from_args,
    stage_provenance,
)

log = logging.getLogger("empriors")

# evaluate.paper_metric's columns of sinkhorn.csv (metrics.sinkhorn.paper_scores)
PAPER_COLUMNS = (
    "paper_sinkhorn",
    "paper_unfloored",
    "paper_capped",
    "paper_marginal_l1",
    "paper_exact",
    "paper_debiased",
    "paper_kept",
)


def cmd_eval_reference(args):
    started, s = now(), settings_from_args(args)
    arrays, _ = read_h5(args.truth, ["eval_u1", "eval_u2"])
    ev = s.evaluate
    n = ev.n_samples
    u1, u2 = arrays["eval_u1"][:n], arrays["eval_u2"][:n]
    reg, its = ev.sinkhorn_reg, ev.sinkhorn_iterations
    result = {
        "ot_u1_u2": entropic_ot(u1, u2, reg, its),
        "ot_u1_u1": entropic_ot(u1, u1, reg, its),
        "n": u1.shape[0],
        "reg": reg,
        "iterations": its,
    }
    if (pm := ev.paper_metric) is not None:  # the reference's OT(x[:n], x[-n:]), once
        train = read_h5(args.truth, ["train"])[0]["train"]
        result["paper_baseline"] = paper_baseline(
            train[:n], train[-n:], reg, its, pm.stop, pm.exact_points
        )
    result["provenance"] = provenance("eval_reference", s.raw, [args.truth], None, started)
    write_json(args.out, result)


def cmd_evaluate(args):
    started, s = now(), settings_from_args(args)
    paper = s.evaluate.paper_metric is not None
    arrays, _ = read_h5(args.truth, ["eval_u1", "train"] if paper else ["eval_u1"])
    u1 = arrays["eval_u1"][: s.evaluate.n_samples]
    reference = json.loads(Path(args.reference).read_text())
    prior = load_prior(args.prior, s, u1.shape[1], args.truth)
    seed = derive_seed(args.seed, seed_name(args), "evaluate", args.iteration)
    n = s.evaluate.n_samples
    observations = conditional_inputs(args, prior, torch.arange(n))
    v = methods.model_samples(
        prior, n, s.evaluate.sampler, s.evaluate.batch_size, s, seed, observations
    )
    if not torch.isfinite(v).all():
        raise FloatingPointError(f"model samples of {args.prior} contain NaN/Inf")
    reg, its = s.evaluate.sinkhorn_reg, s.evaluate.sinkhorn_iterations
    ot_u1_v, ot_v_v = entropic_ot(u1, v, reg, its), entropic_ot(v, v, reg, its)
    result = {
        "iteration": args.iteration,
        "sinkhorn": ot_u1_v - reference["ot_u1_u2"],
        "sinkhorn_divergence": ot_u1_v - 0.5 * (reference["ot_u1_u1"] + ot_v_v),
        "ot_u1_v": ot_u1_v,
        "n": v.shape[0],
        "reg": reg,
    }
    if paper:
        if "paper_baseline" not in reference:  # written by a version without paper_metric
            raise ArtifactError(
                f"{args.reference} has no paper_baseline (written before evaluate.paper_metric "
                "existed): delete it, or rerun with `snakemake -R eval_reference`"
            )
        result.update(paper_metric(args, s, prior, arrays["train"], reference["paper_baseline"]))
    log.info("iteration %s: %s", args.iteration, result)
    prov = stage_provenance("evaluate", s, [args.prior, args.truth, args.reference], seed, started)
    write_h5(args.samples_out, {"x": v}, prov, {"iteration": args.iteration})
    write_json(args.out, {**result, "provenance": prov})


def paper_metric(args, s, prior, train: torch.Tensor, baseline: dict) -> dict:
    """The reference's curve (issue 19.7-8; experiments/manifold/train.py): posterior samples of
    q_k for the first n observations with the E-step's settings (the samples the reference
    scores are the next lap's E-step samples: the same law), the range filter after trained
    laps, scored against the training latents u1 = train[:n] (u2 = train[-n:] in
    ``baseline``, eval-reference's) by :func:`paper_scores`."""
    pm, n = s.evaluate.paper_metric, s.evaluate.n_samples
    reg, its = s.evaluate.sinkhorn_reg, s.evaluate.sinkhorn_iterations
    y, op, _, _ = load_observations(args.observations)
    rows = torch.arange(min(n, y.shape[0]))
    seed = derive_seed(args.seed, seed_name(args), "evaluate_paper", args.iteration)
    x = methods.posterior_samples(prior, op[rows], y[rows], s, seed)
    x = em_mmps.keep_trained_in_range(x, s.estep.keep_range, prior)
    scores = paper_scores(x, train[:n], baseline, reg, its, pm.stop, pm.floor, pm.exact_points)
    return {**scores, "paper_kept": x.shape[0]}


def cmd_aggregate(args):
    rows = []
    for path in args.evals:
        r = json.loads(Path(path).read_text())
        keys = ("iteration", "sinkhorn", "sinkhorn_divergence", "ot_u1_v", *PAPER_COLUMNS)
        rows.append({k: r[k] for k in keys if k in r})
    rows.sort(key=lambda r: iteration_order(r["iteration"]))
    figures = Path(args.figures_dir)
    figures.mkdir(parents=True, exist_ok=True)
    plots().sinkhorn_curve(rows, figures / "sinkhorn.png")
    truth = read_h5(args.truth, ["eval_u1"])[0]["eval_u1"]
    plots().marginals(truth, samples_by_iteration(args.marginal_samples), figures / "marginals.png")
    write_csv(args.out, rows)  # last: the CSV is the rule's completion marker
