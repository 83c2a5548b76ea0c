"""Reference values of the MRI demo's fid.csv (the README's scale), from its own data.

    python tests/benchmarks/bench_mri_reference.py [results/mri/truth.h5]

Run after the demo. fd_pixels of 512 clean *training* slices against the held-out slices (the
estimator's floor at the demo's sample sizes: 512 samples, 256 references, 1,024 pixels) and
of 512 samples of a rank-16 PPCA Gaussian fitted to the clean training slices (the best model
of q0's family), each over a few seeds.
"""

from __future__ import annotations

import sys

import torch

from empriors.data.io import read_h5
from empriors.gaussian import fit_ppca
from empriors.metrics.fid import image_metric


def main(path: str = "results/mri/truth.h5"):
    arrays, attrs = read_h5(path, ["train", "val"])
    x, val = arrays["train"].float(), arrays["val"].float()
    shape = tuple(int(v) for v in attrs["shape"])
    g = torch.Generator().manual_seed(0)

    def fd(samples):
        return image_metric("fd_pixels", samples, val, shape)["fd_pixels"]

    real = [fd(x[torch.randperm(len(x), generator=g)[:512]]) for _ in range(3)]
    gaussian = fit_ppca(x.double(), 16)
    fitted = [fd(gaussian.sample(512, g).float()) for _ in range(3)]
    print(f"fd_pixels against the {len(val)} held-out slices of {path}, 512 samples each:")
    print("  clean training slices:", " ".join(f"{v:.1f}" for v in real))
    print("  rank-16 Gaussian fitted to the clean training slices:", end=" ")
    print(" ".join(f"{v:.1f}" for v in fitted))


if __name__ == "__main__":
    main(*sys.argv[1:])
