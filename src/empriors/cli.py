"""``python -m empriors STAGE ...``: the command line, and only that. Each subcommand calls
``cmd_STAGE(args)`` of its stage module (:mod:`empriors.stages`, one module per workflow
stage); ``lineage``, ``diff`` and ``parity`` audit a run or the config.

Every stage reads its inputs, checks them, computes, and writes its outputs atomically with
provenance. The workflow passes each experiment's resolved config block as JSON (--config).
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch

from empriors import distributed, preemption
from empriors.config import ConfigError
from empriors.data.io import ArtifactError
from empriors.stages import (
    common,
    compare,
    corrupt,
    diagnostics,
    estep,
    evaluate,
    evaluate_images,
    init_prior,
    lineage,
    mstep,
    parity,
    reconstruct,
    studies,
)

log = logging.getLogger("empriors")


def _boolean(value: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return value.lower() == "true"


def _iteration(value: str) -> int | str:
    """--iteration: a lap number, or ``final`` (DiffEM's final unconditional prior)."""
    if value == "final":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"iteration must be an integer or 'final': {value!r}"
        ) from None


# What each command writes (its arguments' names; "/": a folder): checked writable before any
# compute starts, so a read-only or misplaced output costs no GPU time.
WRITES = {
    "corrupt": ("observations", "truth"),
    "phantoms": ("out/",),
    "init-prior": ("out",),
    "estep": ("out", "resume_dir/"),
    "mstep": ("out", "resume_dir/"),
    "final-prior": ("out", "resume_dir/"),
    "eval-reference": ("out",),
    "evaluate": ("out", "samples_out"),
    "diagnose": ("out",),
    "diagnostics": ("out", "correlation", "figure"),
    "sample-prior": ("out", "resume_dir/"),
    "evaluate-images": ("out",),
    "posterior-examples": ("out",),
    "reconstruct": ("out", "samples_out", "figure"),
    "aggregate-images": ("out", "figures_dir/"),
    "aggregate": ("out", "figures_dir/"),
    "heuristics-part": ("out",),
    "heuristics-aggregate": ("out", "summary", "figure"),
    "benchmark-task": ("out",),
    "benchmark-table": ("out", "markdown"),
    "compare": ("out", "figure", "claims"),
    "stop-check": ("out",),
    "final": ("out",),
    "claims": ("out", "markdown"),
    "parity": ("markdown",),
}


def _outputs(args) -> list[tuple[str, bool]]:
    """(path, is a folder) of everything ``args.command`` will write."""
    found = []
    for name in WRITES.get(args.command, ()):
        folder = name.endswith("/")
        value = getattr(args, name.rstrip("/"), None)
        if value:
            found.append((value, folder))
    return found


RESUME_HELP = "where finished batches are saved for a rerun (default: EXPERIMENT/.resume)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m empriors", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def stage(name, fn, help_):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("--exp", required=True, help="experiment name (a key of experiments:)")
        sp.add_argument("--config", required=True, help="the experiment's config block as JSON")
        sp.add_argument("--seed", type=int, required=True, help="the config's global seed")
        sp.add_argument("--device", default="auto", help="auto | cpu | cuda")
        sp.add_argument("--threads", type=int, default=None, help="torch CPU threads")
        sp.add_argument(
            "--precision", default="auto", help="auto | fp32 | tf32 | bf16 (the networks')"
        )
        sp.add_argument(
            "--compile", type=_boolean, default=False, help="true | false: torch.compile"
        )
        sp.set_defaults(fn=fn)
        return sp

    sp = stage("corrupt", corrupt.cmd_corrupt, "generate data and observations y = A x + e")
    sp.add_argument("--observations", required=True)
    sp.add_argument("--truth", required=True)
    sp = stage("phantoms", corrupt.cmd_phantoms, "MRI demo: phantom volumes in the fastMRI format")
    sp.add_argument("--out", required=True, help="the folder to write the .h5 files into")
    sp = stage("init-prior", init_prior.cmd_init_prior, "fit the Gaussian q0 by Monte-Carlo EM")
    sp.add_argument("--observations", required=True)
    sp.add_argument("--out", required=True)
    sp = stage("estep", estep.cmd_estep, "posterior samples for one shard of the observations")
    for a in ("--prior", "--observations", "--out"):
        sp.add_argument(a, required=True)
    # "final": DiffEM's regenerated reconstructions (mstep.final_data: regenerated)
    sp.add_argument("--iteration", type=_iteration, required=True)
    sp.add_argument("--shard", type=int, required=True)
    sp.add_argument("--resume-dir", help=RESUME_HELP)
    sp = stage("mstep", mstep.cmd_mstep, "fit the prior of iteration k to its E-step samples")
    sp.add_argument("--samples", nargs="+", required=True)
    for a in ("--prior", "--out", "--resume-dir"):
        sp.add_argument(a, required=True)
    sp.add_argument("--observations", help="observations.h5 (DiffEM, FlowDiff)")
    sp.add_argument("--iteration", type=int, required=True)
    sp.add_argument(
        "--processes",
        type=int,
        default=1,
        help="data-parallel processes (mstep.gpus): restarts itself under torchrun",
    )
    sp = stage("final-prior", mstep.cmd_final_prior, "DiffEM: the final unconditional prior")
    sp.add_argument("--samples", nargs="+", required=True)
    for a in ("--out", "--resume-dir"):
        sp.add_argument(a, required=True)
    sp = stage("eval-reference", evaluate.cmd_eval_reference, "OT terms between true sets (once)")
    sp.add_argument("--truth", required=True)
    sp.add_argument("--out", required=True)
    sp = stage("evaluate", evaluate.cmd_evaluate, "sample a prior and score it against the truth")
    for a in ("--prior", "--truth", "--reference", "--out", "--samples-out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--observations", help="observations.h5 (a DiffEM conditional model)")
    sp.add_argument("--iteration", type=_iteration, required=True)

    sp = stage(
        "diagnose", diagnostics.cmd_diagnose, "label-free diagnostics of one lap (no clean data)"
    )
    for a in ("--observations", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--samples", nargs="+", required=True, help="the lap's evaluation samples")
    sp.add_argument("--estep", nargs="*", help="the lap's E-step shards (none for q0)")
    sp.add_argument("--previous", nargs="*", help="the previous lap's E-step shards")
    sp.add_argument("--iteration", type=int, required=True)
    sp = sub.add_parser("diagnostics", help="diagnostics.csv, correlations and the figure")
    sp.add_argument("--diagnostics", nargs="+", required=True)
    for a in ("--metric", "--out", "--correlation", "--figure"):
        sp.add_argument(a, required=True)
    sp.set_defaults(fn=diagnostics.cmd_diagnostics_aggregate, threads=None)

    sp = stage(
        "sample-prior", evaluate_images.cmd_sample_prior, "images: one shard of evaluation samples"
    )
    for a in ("--prior", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--observations", help="observations.h5 (a DiffEM conditional model)")
    sp.add_argument("--iteration", type=_iteration, required=True)
    sp.add_argument("--shard", type=int, required=True)
    sp.add_argument("--resume-dir", help=RESUME_HELP)
    sp = stage(
        "evaluate-images",
        evaluate_images.cmd_evaluate_images,
        "images: the metric of one iteration",
    )
    sp.add_argument("--samples", nargs="+", required=True)
    for a in ("--truth", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--iteration", type=_iteration, required=True)
    sp = stage(
        "posterior-examples",
        evaluate_images.cmd_posterior_examples,
        "images: posterior samples figure",
    )
    for a in ("--prior", "--observations", "--truth", "--out"):
        sp.add_argument(a, required=True)
    sp = stage(
        "reconstruct", reconstruct.cmd_reconstruct, "MRI: held-out reconstructions, PSNR/SSIM"
    )
    for a in ("--prior", "--truth", "--out", "--samples-out", "--figure"):
        sp.add_argument(a, required=True)
    sp.add_argument("--iteration", type=int, required=True)
    sp = sub.add_parser("aggregate-images", help="images: fid.csv, metric curve, sample grids")
    sp.add_argument("--evals", nargs="+", required=True)
    sp.add_argument("--grid-samples", nargs="+", required=True)
    sp.add_argument("--reconstructions", nargs="*", default=[], help="MRI: reconstruct JSONs")
    for a in ("--truth", "--out", "--figures-dir"):
        sp.add_argument(a, required=True)
    sp.set_defaults(fn=evaluate_images.cmd_aggregate_images, threads=None)
    sp = sub.add_parser("aggregate", help="CSV of every iteration's scores and the figures")
    sp.add_argument("--evals", nargs="+", required=True)
    sp.add_argument("--marginal-samples", nargs="+", required=True)
    for a in ("--truth", "--out", "--figures-dir"):
        sp.add_argument(a, required=True)
    sp.set_defaults(fn=evaluate.cmd_aggregate, threads=None)
    sp = sub.add_parser("heuristics-part", help="covariance study: one job's seeds")
    sp.add_argument("--config", required=True, help="the study's config block as JSON")
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--part", type=int, required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--threads", type=int, default=None)
    sp.add_argument("--device", default="cpu", help="cpu or cuda")
    sp.add_argument("--variant", choices=studies.HEURISTIC_VARIANTS, default="heuristics")
    sp.set_defaults(fn=studies.cmd_heuristics_part)
    sp = sub.add_parser("heuristics-aggregate", help="covariance study: CSVs and figure")
    sp.add_argument("--parts", nargs="+", required=True)
    for a in ("--out", "--summary", "--figure"):
        sp.add_argument(a, required=True)
    sp.add_argument("--variant", choices=studies.HEURISTIC_VARIANTS, default="heuristics")
    sp.set_defaults(fn=studies.cmd_heuristics_aggregate, threads=None)
    sp = sub.add_parser("benchmark-task", help="posterior-sampling benchmark: one task")
    sp.add_argument("--config", required=True, help="the benchmark's config block as JSON")
    sp.add_argument("--seed", type=int, required=True)
    sp.add_argument("--task", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--threads", type=int, default=None)
    sp.set_defaults(fn=studies.cmd_benchmark_task)
    sp = sub.add_parser("benchmark-table", help="posterior-sampling benchmark: the table")
    sp.add_argument("--tasks", nargs="+", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--markdown", required=True)
    sp.set_defaults(fn=studies.cmd_benchmark_table, threads=None)
    sp = sub.add_parser("compare", help="methods side by side: metric and cost per iteration")
    sp.add_argument("--name", required=True)
    for a in ("--experiments", "--methods", "--metrics"):
        sp.add_argument(a, nargs="+", required=True)
    sp.add_argument("--device", default="cpu", help="the config's device (GPU-hours or not)")
    for a in ("--out", "--figure"):
        sp.add_argument(a, required=True)
    sp.add_argument("--claims", help="also check DiffEM's and FlowDiff's claims (markdown)")
    sp.set_defaults(fn=compare.cmd_compare, threads=None)
    sp = sub.add_parser("stop-check", help="em.stop_when: does EM stop after this lap?")
    sp.add_argument("--rule", required=True, help="em.stop_when as JSON")
    sp.add_argument("--diagnostics", nargs="+", required=True, help="laps 0..k")
    sp.add_argument("--out", required=True)
    sp.set_defaults(fn=diagnostics.cmd_stop_check, threads=None)
    sp = sub.add_parser("final", help="final.json: the experiment's final prior")
    for a in ("--prior", "--reason", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--iteration", type=_iteration, required=True)
    sp.set_defaults(fn=diagnostics.cmd_final, threads=None)
    sp = sub.add_parser("claims", help="the papers' qualitative claims on this run's tables")
    sp.add_argument("--manifold", nargs="*", help="sinkhorn.csv of manifold EM runs")
    sp.add_argument("--heuristics", help="the covariance study's summary.csv")
    sp.add_argument("--heuristics-paper", help="its paper variant's summary.csv")
    sp.add_argument("--benchmark", help="the posterior benchmark's table.csv")
    sp.add_argument("--compare", nargs="*", help="results/compare/NAME.csv")
    sp.add_argument("--out", required=True)
    sp.add_argument("--markdown", required=True)
    sp.set_defaults(fn=compare.cmd_claims, threads=None)
    sp = sub.add_parser("lineage", help="print an artifact's chain of inputs and configs")
    sp.add_argument("file")
    sp.set_defaults(fn=lineage.cmd_lineage, threads=None)
    sp = sub.add_parser(
        "diff", help="compare two runs' results (or two files) by content; exit 1 if they differ"
    )
    sp.add_argument("a", help="a results folder, e.g. results/manifold, or a file")
    sp.add_argument("b", help="the other run's folder or file")
    sp.set_defaults(fn=lineage.cmd_diff, threads=None)
    sp = sub.add_parser("parity", help="check config.yaml against the parity table")
    sp.add_argument("--table", default="config/parity.yaml")
    sp.add_argument("--config", default="config/config.yaml")
    sp.add_argument("--markdown", help="also render the table to this file (docs/parity.md)")
    sp.set_defaults(fn=parity.cmd_parity, threads=None)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to restart under torchrun
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.threads:
        torch.set_num_threads(args.threads)
    preemption.install()
    try:
        common.check_writable(_outputs(args))  # before any compute
        status = args.fn(args)
    except preemption.Preempted as e:
        # the resume state is saved: a rerun (or Snakemake's retry) continues from it. Also on
        # stdout, which the rules leave to Snakemake's log (SLURM's job log): the retry
        # overwrites the stage's log.
        for stream in (sys.stderr, sys.stdout):
            print(f"{e}; a rerun continues from there", file=stream, flush=True)
        return preemption.EXIT_STATUS
    except (
        ConfigError,
        ArtifactError,
        FloatingPointError,
        ValueError,
        OSError,  # a missing file or folder, a disk that is full or read-only: named by it
        distributed.DistributedError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    log.info("%s: %s", args.command, common.peak_memory())
    return status or 0
