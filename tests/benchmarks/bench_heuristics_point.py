"""Paper-scale points of the covariance study, timed (the README's paper-scale table).

    python tests/benchmarks/bench_heuristics_point.py [--sigma 0.1 0.2] [--seeds 0 1] \
        [--threads 1] [--device cpu]

2^20 prior samples (float64), 4,096 support points, reg 1e-3 on raw coordinates (the
paper's settings, config/config.yaml), for the given sigma_t values and seeds
(torch.Generator().manual_seed(seed), not the workflow's derived seeds). Prints one line per
point as it finishes, then the medians over seeds and the ratios to Tweedie.
"""

from __future__ import annotations

import argparse
import time

import torch

from empriors.studies.heuristics import HEURISTICS, study_one_seed


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sigma", type=float, nargs="+", default=[0.2])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    values: dict[tuple[float, str], list[float]] = {}
    for seed in args.seeds:
        for sigma in args.sigma:
            t0 = time.perf_counter()
            rows = study_one_seed(
                torch.Generator().manual_seed(seed),
                [sigma],
                256,
                0.01,
                0.01,
                1 << 20,
                4096,
                1e-3,
                device=args.device,
            )
            seconds = time.perf_counter() - t0
            d = {r["heuristic"]: r["divergence"] for r in rows}
            for h, v in d.items():
                values.setdefault((sigma, h), []).append(v)
            cells = "  ".join(f"{h} {d[h]:.2e}" for h in HEURISTICS)
            print(f"seed {seed} sigma_t {sigma}: {cells}  ({seconds:.0f} s)", flush=True)
    print(f"\nmedians over seeds {args.seeds} ({args.threads} thread(s), {args.device}):")
    print("| sigma_t | " + " | ".join(HEURISTICS) + " | Sigma_t / Tweedie | cov_x / Tweedie |")
    print("|---" * (len(HEURISTICS) + 3) + "|")
    for sigma in args.sigma:
        med = {h: torch.tensor(values[(sigma, h)]).median().item() for h in HEURISTICS}
        cells = " | ".join(f"{med[h]:.2e}" for h in HEURISTICS)
        ratios = f"{med['sigma_t'] / med['tweedie']:.1f} | {med['cov_x'] / med['tweedie']:.1f}"
        print(f"| {sigma} | {cells} | {ratios} |")


if __name__ == "__main__":
    main()
