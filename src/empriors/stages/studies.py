"""The studies (workflow/rules/studies.smk): the covariance-heuristics study (ours and the
reference's ``paper`` variant), stage ``heuristics-part`` / ``heuristics-aggregate``, and
the posterior-sampling benchmark, ``benchmark-task`` / ``benchmark-table``."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from empriors.config import ConfigError, parse_json_config, validate_study
from empriors.data.io import now, provenance
from empriors.seeding import derive_seed, generator
from empriors.stages.artifacts import write_csv, write_json
from empriors.stages.common import plots

log = logging.getLogger("empriors")


# the study's variants: ours, and the reference code's procedure (studies/heuristics_paper.py)
HEURISTIC_VARIANTS = ("heuristics", "heuristics_paper")


def _heuristics_one_seed(variant: str, cfg: dict, g: torch.Generator, device: str) -> list[dict]:
    from empriors.studies.heuristics import study_one_seed
    from empriors.studies.heuristics_paper import paper_study_one_seed

    common = (g, cfg["sigma_t"], cfg["components"], cfg["std"], cfg["sigma_y"], cfg["n_prior"])
    if variant == "heuristics":
        return study_one_seed(*common, cfg["support"], cfg["sinkhorn_reg"], device=device)
    return paper_study_one_seed(
        *common,
        cfg["n_eval"],
        cfg["sinkhorn_reg"],
        cfg["sinkhorn_iterations"],
        cfg["sinkhorn_stop"],
        cfg["floor"],
        cfg["exact_points"],
        device=device,
    )


def cmd_heuristics_part(args):
    started, cfg = now(), parse_json_config(args.config)
    validate_study(args.variant, cfg)
    rows = []
    first = args.part * cfg["seeds_per_job"]
    for seed in tqdm(range(first, min(first + cfg["seeds_per_job"], cfg["seeds"])), "seeds"):
        # the `heuristics` stream for both variants: seed k's prior is the same mixture
        g = generator(derive_seed(args.seed, "heuristics", seed))
        t0 = time.perf_counter()
        rows += [
            {"seed": seed, **r} for r in _heuristics_one_seed(args.variant, cfg, g, args.device)
        ]
        log.info("%s: seed %d done in %.1f s", args.variant, seed, time.perf_counter() - t0)
    prov = provenance(f"{args.variant}_part", cfg, [], args.seed, started)
    write_json(args.out, {"rows": rows, "provenance": prov})


def cmd_heuristics_aggregate(args):
    from empriors.studies.heuristics import summarize
    from empriors.studies.heuristics_paper import summarize_paper

    first = ("seed", "sigma_t", "heuristic")
    rows = [
        {k: r[k] for k in first} | {k: v for k, v in r.items() if k not in first}
        for p in args.parts
        for r in json.loads(Path(p).read_text())["rows"]
    ]
    rows.sort(key=lambda r: (r["seed"], r["sigma_t"], r["heuristic"]))
    write_csv(args.out, rows)
    if args.variant == "heuristics":
        summary = summarize(rows)
        write_csv(args.summary, summary)
        plots().heuristic_study(summary, Path(args.figure))
        return
    write_csv(args.summary, summarize_paper(rows))
    plots().heuristic_study_paper(rows, Path(args.figure))


def cmd_benchmark_task(args):
    from empriors.studies.posterior_benchmark import run_task

    started, cfg = now(), parse_json_config(args.config)
    validate_study("posterior_benchmark", cfg)
    if args.task not in cfg["tasks"]:
        raise ConfigError(
            f"task {args.task!r} is not configured; configured: {sorted(cfg['tasks'])}"
        )
    g = generator(derive_seed(args.seed, "posterior_benchmark", args.task))
    rows = run_task(args.task, cfg["tasks"][args.task], cfg, g)
    prov = provenance("benchmark_task", cfg, [], args.seed, started)
    write_json(args.out, {"rows": rows, "provenance": prov})


def cmd_benchmark_table(args):
    fields = (
        "task",
        "sampler",
        "solver_iterations",
        "steps",
        "sinkhorn",
        "sinkhorn_floor",
        "mean_rmse",
        "psnr",
        "ms_per_step",
        "peak_mb",
    )
    rows = [
        {k: r[k] for k in fields}
        for p in args.tasks
        for r in json.loads(Path(p).read_text())["rows"]
    ]
    write_csv(args.out, rows)
    lines = [
        "| task | sampler | solver it. | steps | Sinkhorn (floor) | mean RMSE | PSNR | ms/step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['sampler']} | {r['solver_iterations']} | {r['steps']} "
            f"| {r['sinkhorn']:.3g} ({r['sinkhorn_floor']:.2g}) | {r['mean_rmse']:.3f} "
            f"| {r['psnr']:.1f} | {r['ms_per_step']:.1f} |"
        )
    Path(args.markdown).write_text("\n".join(lines) + "\n")
