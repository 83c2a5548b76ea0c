"""Label-free convergence (workflow/rules/diagnostics.smk): stage ``diagnose`` (one lap's
diagnostics, no clean data), ``diagnostics`` (diagnostics.csv, rank correlations, figure),
``stop-check`` (em.stop_when's decision after a lap) and ``final`` (final.json)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch

from empriors.config import parse_json_config
from empriors.data.io import ArtifactError, now, provenance, read_h5
from empriors.seeding import derive_seed, generator
from empriors.stages.artifacts import estep_rows, load_observations, read_csv, write_csv, write_json
from empriors.stages.common import plots, seed_name, settings_from_args

log = logging.getLogger("empriors")


def cmd_diagnose(args):
    """Label-free diagnostics of lap k (empriors.metrics.diagnostics): the posterior-predictive
    distance of q_k's evaluation samples, the E-step residual and the change of the E-step
    samples from lap k - 1. Reads no clean data."""
    from empriors.metrics import diagnostics

    started, s = now(), settings_from_args(args)
    y, op, _, _ = load_observations(args.observations)
    sigma_y = s.observation.sigma_y
    x = torch.cat([read_h5(p, ["x"])[0]["x"] for p in args.samples])
    n = min(x.shape[0], y.shape[0])
    g = generator(derive_seed(args.seed, seed_name(args), "diagnose", args.iteration))
    first = torch.arange(n)
    result = {
        "iteration": args.iteration,
        "predictive": diagnostics.predictive_distance(y[first], op[first], x[:n], sigma_y, g),
        "residual": float("nan"),
        "change": float("nan"),
        "cg_residual": float("nan"),
    }
    if args.estep:
        xe, index, shards = estep_rows(args.estep)
        result["cg_residual"] = _cg_residual(shards)
        result["residual"] = diagnostics.residual_ratio(y[index], op[index], xe, sigma_y)
        if args.previous:
            xp, previous, _ = estep_rows(args.previous)
            if not torch.equal(index, previous):
                raise ArtifactError("E-step samples of consecutive laps index other observations")
            result["change"] = diagnostics.sample_change(xe, xp)
    log.info("iteration %d: %s", args.iteration, result)
    inputs = [args.observations, *args.samples, *(args.estep or []), *(args.previous or [])]
    prov = provenance("diagnose", s.raw, inputs, args.seed, started)
    write_json(args.out, {**result, "provenance": prov})


def _cg_residual(shards: list[dict]) -> float:
    """The E-step shards' mean final CG relative residual ||b - M u|| / ||b|| (from their
    attributes, which stage estep writes), weighted by their solves; NaN where no shard solved
    with CG (DiffEM's and FlowDiff's later laps)."""
    solves = residual = 0.0
    for attrs in shards:
        n = float(attrs.get("cg_solves", 0))
        if n:
            solves, residual = solves + n, residual + n * float(attrs["cg_residual"])
    return residual / solves if solves else float("nan")


def _read_laps(paths) -> list[dict]:
    """Per-lap diagnostics JSONs (results/{exp}/diagnostics/iter_k.json), in lap order."""
    return sorted((json.loads(Path(p).read_text()) for p in paths), key=lambda r: r["iteration"])


def cmd_diagnostics_aggregate(args):
    """diagnostics.csv (one row per lap: the label-free diagnostics beside the clean metric),
    their Spearman rank correlations with the clean metric over the laps, and the figure."""
    from empriors.metrics.diagnostics import DIAGNOSTICS, spearman

    laps = _read_laps(args.diagnostics)
    metric_rows = {r["iteration"]: r for r in read_csv(args.metric)}
    column = next(
        c for c in ("sinkhorn", "fid", "fd_pixels") if c in next(iter(metric_rows.values()))
    )
    rows = [
        {
            "iteration": r["iteration"],
            **{d: r.get(d, float("nan")) for d in DIAGNOSTICS},  # laps diagnosed before a
            column: float(metric_rows[str(r["iteration"])][column]),  # diagnostic existed: NaN
        }
        for r in laps
    ]
    correlation = {
        d: spearman([r[d] for r in rows], [r[column] for r in rows]) for d in DIAGNOSTICS
    }
    log.info("Spearman rank correlation with %s over laps: %s", column, correlation)
    plots().diagnostics(rows, column, correlation, Path(args.figure))
    spearman_json = {d: (None if math.isnan(v) else v) for d, v in correlation.items()}
    write_json(args.correlation, {"metric": column, "spearman": spearman_json, "laps": len(rows)})
    write_csv(args.out, rows)


def cmd_stop_check(args):
    """em.stop_when after lap k: whether EM stops here (the Snakemake checkpoint stop_check
    reads the answer), from the diagnostics of laps 0..k."""
    from empriors.metrics.diagnostics import stop_decision

    rule = parse_json_config(args.rule)
    laps = _read_laps(args.diagnostics)
    values = [float(r[rule["diagnostic"]]) for r in laps]
    stop, reason = stop_decision(values, rule["rel_change"], rule["window"])
    k = laps[-1]["iteration"]
    log.info("lap %d: %s %s (%s)", k, "stop" if stop else "continue", rule["diagnostic"], reason)
    write_json(args.out, {"iteration": k, "stop": stop, "reason": reason, "rule": rule})


def cmd_final(args):
    """final.json: which prior is the experiment's final one (the last lap, the lap
    em.stop_when chose, or DiffEM's iter_final)."""
    write_json(args.out, {"prior": args.prior, "iteration": args.iteration, "reason": args.reason})
