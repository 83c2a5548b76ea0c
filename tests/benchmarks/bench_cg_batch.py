"""MMPS with one CG per sample against one CG over groups of rows (the reference code's), on the
posterior-sampling benchmark with exact answers (issue 19.1): the same tasks, prior, truth,
observation and sampler noise for both, so the rows differ only by the CG.

    python tests/benchmarks/bench_cg_batch.py [--steps 100] [--iterations 1 3] \
        [--groups 512 256] [--tasks box random blur sr4] [--samples 512]

The benchmark's configuration is config/config.yaml's ``studies.posterior_benchmark``; its
512 posterior samples of one observation form one sampler batch, so ``--groups 512`` is one CG
over the whole batch and 256 the reference's group size. Prints a markdown table: per task,
iterations and CG, the Sinkhorn divergence to exact posterior samples (its floor: two exact
sets), the RMSE of the sample mean to the exact posterior mean, and PSNR to the truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import yaml

from empriors.seeding import derive_seed, generator
from empriors.studies.posterior_benchmark import run_task

ROOT = Path(__file__).resolve().parents[2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, nargs="+", default=[100])
    p.add_argument("--iterations", type=int, nargs="+", default=[1, 3])
    p.add_argument("--groups", type=int, nargs="+", default=[512, 256])
    p.add_argument("--tasks", nargs="+", default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg = {**config["studies"]["posterior_benchmark"], "samplers": ["mmps"]}
    cfg |= {"steps": args.steps, "mmps_iterations": args.iterations}
    if args.samples:
        cfg["samples"] = args.samples
    modes = [("per sample", {"cg": "per_sample"})]
    modes += [(f"groups of {g}", {"cg": "batch", "cg_group": g}) for g in args.groups]
    print("| task | CG iterations | steps | CG | Sinkhorn (floor) | mean RMSE | PSNR |")
    print("|---|---|---|---|---|---|---|")
    for task in args.tasks or list(cfg["tasks"]):
        for label, mode in modes:
            # the workflow's stream of this task: every mode sees the same draws
            g = generator(derive_seed(config["seed"], "posterior_benchmark", task))
            for r in run_task(task, cfg["tasks"][task], {**cfg, **mode}, g):
                print(
                    f"| {task} | {r['solver_iterations']} | {r['steps']} | {label} "
                    f"| {r['sinkhorn']:.3g} ({r['sinkhorn_floor']:.2g}) "
                    f"| {r['mean_rmse']:.3f} | {r['psnr']:.1f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
