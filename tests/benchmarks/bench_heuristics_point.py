"""One paper-scale point of the covariance study, timed (the README's 146 s and 14x / 15x).

    python tests/benchmarks/bench_heuristics_point.py [--sigma 0.2] [--seed 0] [--threads 1]

2^20 prior samples, 4,096 support points, reg 0.05, one sigma_t, one seed.
"""

from __future__ import annotations

import argparse
import time

import torch

from empriors.studies.heuristics import study_one_seed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sigma", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = study_one_seed(
        torch.Generator().manual_seed(args.seed), [args.sigma], 256, 0.01, 0.01, 1 << 20, 4096, 0.05
    )
    seconds = time.perf_counter() - t0
    d = {r["heuristic"]: r["divergence"] for r in rows}
    print(f"sigma_t {args.sigma}, seed {args.seed}, {args.threads} thread(s): {seconds:.0f} s")
    for h, v in d.items():
        print(f"  {h:8s} {v:.2e}  ({v / d['tweedie']:.1f}x Tweedie)")


if __name__ == "__main__":
    main()
