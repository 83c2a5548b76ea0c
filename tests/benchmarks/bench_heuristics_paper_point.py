"""Points of the covariance study's `paper` variant (the reference code's procedure and
metric), timed: the README's table of the variant, and the time per point for the GPU run.

    python tests/benchmarks/bench_heuristics_paper_point.py [--sigma 0.05 0.2] [--seeds 0 1] \
        [--n-eval 16384] [--n-prior 1048576] [--exact-points 4096] [--device cpu]

Defaults are the paper's (config/config.yaml studies.heuristics_paper). Seeds are
torch.Generator().manual_seed(seed), not the workflow's derived seeds. Prints one line per
(seed, sigma_t) as it finishes, with its time, then per sigma_t and heuristic: the median over
seeds of the reference's S (unconverged Sinkhorn, floored at 1e-6), how many seeds hit the
floor or the iteration cap, the exact OT difference, the converged debiased divergence, and
the medians of the per-seed ratios heuristic / Tweedie.
"""

from __future__ import annotations

import argparse
import time

import torch

from empriors.studies.heuristics import HEURISTICS
from empriors.studies.heuristics_paper import paper_study_one_seed, summarize_paper


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sigma", type=float, nargs="+", default=[0.05])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--n-eval", type=int, default=16384)
    p.add_argument("--n-prior", type=int, default=1 << 20)
    p.add_argument("--exact-points", type=int, default=4096)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for seed in args.seeds:
        for sigma in args.sigma:
            t0 = time.perf_counter()
            out = paper_study_one_seed(
                torch.Generator().manual_seed(seed),
                [sigma],
                256,
                0.01,
                0.01,
                args.n_prior,
                args.n_eval,
                1e-3,
                1024,
                1e-3,
                1e-6,
                min(args.exact_points, args.n_eval),
                device=args.device,
            )
            seconds = time.perf_counter() - t0
            rows += [{"seed": seed, **r} for r in out]
            cells = "  ".join(f"{r['heuristic']} {r['divergence']:.1e}" for r in out)
            print(f"seed {seed} sigma_t {sigma}: S {cells}  ({seconds:.0f} s)", flush=True)
    print(
        f"\nn_eval {args.n_eval}, n_prior {args.n_prior}, exact OT on "
        f"{min(args.exact_points, args.n_eval)} points, seeds {args.seeds}, {args.device}:"
    )
    print(
        "| sigma_t | heuristic | S (reference) | floored | unconverged | max marginal L1 "
        "| exact OT diff | converged div. | S / Tweedie | converged / Tweedie |"
    )
    print("|---" * 10 + "|")
    order = {h: i for i, h in enumerate(HEURISTICS)}
    for r in sorted(summarize_paper(rows), key=lambda r: (r["sigma_t"], order[r["heuristic"]])):
        ratios = [r["ratio_divergence"], r["ratio_converged_divergence"]]
        ratios = " | ".join("" if x == "" else f"{x:.2g}" for x in ratios)
        print(
            f"| {r['sigma_t']} | {r['heuristic']} | {r['median_divergence']:.1e} "
            f"| {r['floored']:.0%} | {r['unconverged']:.0%} | {r['max_marginal_error']:.2f} "
            f"| {r['median_exact']:.1e} | {r['median_converged_divergence']:.1e} | {ratios} |"
        )


if __name__ == "__main__":
    main()
