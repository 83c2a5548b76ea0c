"""The README's table of posterior-sampler errors on an exact Gaussian posterior.

    python tests/benchmarks/bench_posterior_gaussian.py

Same problem as tests/test_posterior_baselines.py (Gaussian prior in R^4, 2 x 4 A,
sigma_y = 0.1, 20,000 samples, DDPM 256 steps), seeds 0-2; prints mean error and relative
covariance error per sampler.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from test_posterior_baselines import EXPECTED, N, _errors  # noqa: E402

from conftest import random_gaussian  # noqa: E402
from empriors.gaussian import gaussian_posterior  # noqa: E402
from empriors.operators import Projection  # noqa: E402


def main():
    g = torch.Generator().manual_seed(1234)
    gauss = random_gaussian(4, 4, g)
    op = Projection(Projection.random(1, 2, 4, g).matrices.expand(N, -1, -1))
    y = torch.tensor([[0.7, -0.4]], dtype=torch.float64).expand(N, 2)
    means, covs = gaussian_posterior(gauss, op[:1], y[:1], 1e-2)
    problem = (gauss, op, y, means[0], covs[0])
    cases = [(k, o) for k, o, *_ in EXPECTED] + [("mmps", {"covariance": "zeros"})]
    print("| sampler | options | mean error (seeds 0-2) | covariance error (seeds 0-2) |")
    print("|---|---|---|---|")
    for kind, options in cases:
        errs = [_errors(problem, kind, options, seed) for seed in range(3)]
        mean = ", ".join(f"{e[0]:.3f}" for e in errs)
        cov = ", ".join(f"{e[1]:.3g}" for e in errs)
        print(f"| {kind} | {options} | {mean} | {cov} |")


if __name__ == "__main__":
    main()
