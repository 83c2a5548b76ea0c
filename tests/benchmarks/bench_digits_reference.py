"""Reference values of the digits demo's metric (the README's scale for fid.csv).

    python tests/benchmarks/bench_digits_reference.py

fd_pixels of 1,024 real digits drawn without replacement against all 1,797 (the estimator's
floor at the demo's sample size), and of 1,024 samples of a rank-16 PPCA Gaussian fitted to the
clean digits (the best model of q0's family), each over a few seeds.
"""

from __future__ import annotations

import torch

from empriors.data.digits import load_digits_images
from empriors.gaussian import fit_ppca
from empriors.metrics.fid import image_metric


def main():
    x = load_digits_images().float()
    g = torch.Generator().manual_seed(0)
    real = [
        image_metric("fd_pixels", x[torch.randperm(len(x), generator=g)[:1024]], x, (1, 8, 8))
        for _ in range(5)
    ]
    gaussian = fit_ppca(x.double(), 16)
    fitted = [
        image_metric("fd_pixels", gaussian.sample(1024, g).float(), x, (1, 8, 8)) for _ in range(3)
    ]
    print("fd_pixels, 1,024 samples against the 1,797 clean digits:")
    print("  real digits:", " ".join(f"{r['fd_pixels']:.2f}" for r in real))
    print("  rank-16 Gaussian fitted to the clean digits:", end=" ")
    print(" ".join(f"{r['fd_pixels']:.2f}" for r in fitted))


if __name__ == "__main__":
    main()
