"""bf16 fidelity gate: do bf16 E-step samples score like fp32 ones? (CPU autocast bf16.)

    python tests/benchmarks/bench_bf16_fidelity.py [--samples 512] [--steps 100]
    python tests/benchmarks/bench_bf16_fidelity.py --prior results/digits_mask/iter_4/prior.pt

1. Exact posteriors (the posterior-sampling benchmark's digit mixture, src/empriors/studies/
   posterior_benchmark.py, 4 tasks): MMPS with the mixture's denoiser in float32, and the same
   with the denoiser under bf16 autocast (its matmuls in bfloat16; CG, sampler and metric in
   float32/float64), at 1 and 3 CG iterations. Score: the Sinkhorn divergence to exact
   posterior samples. The seed-to-seed spread of fp32 (a second fp32 run on another stream)
   is the yardstick.
2. With ``--prior`` (a trained digits-demo prior, after ``make demo``): E-step samples of the
   first ``--observations`` digits with the demo's E-step settings, fp32 (two streams) and
   bf16 (the network under autocast): fd_pixels against the clean digits, and the relative
   L2 distance of bf16 to fp32 on the same stream.
Gate: |score(bf16) - score(fp32)| <= max(|score(fp32) - score(fp32, other stream)|,
0.05 score(fp32)) per row.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext

import torch
import yaml

from empriors.diffusion import VESchedule, sample
from empriors.metrics.sinkhorn import weighted_sinkhorn_divergence
from empriors.posterior import build_posterior
from empriors.seeding import generator as seeded
from empriors.studies.posterior_benchmark import (
    digit_mixture,
    exact_posterior,
    sample_exact,
    task_matrix,
)

TASKS = {
    "box": {"sigma_y": 0.1},
    "random": {"sigma_y": 0.1, "missing": 0.75},
    "blur": {"sigma_y": 0.05, "kernel_std": 1.0},
    "sr4": {"sigma_y": 0.05},
}


def within_gate(fp32: float, other: float, bf16: float) -> bool:
    return abs(bf16 - fp32) <= max(abs(fp32 - other), 0.05 * abs(fp32))


class Autocast:
    """A denoiser called under bf16 autocast, its output back in the input's dtype."""

    def __init__(self, denoise, bf16: bool):
        self.denoise, self.bf16 = denoise, bf16

    def __call__(self, x_t, sigma):
        context = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with context:
            out = self.denoise(x_t, sigma)
        return out.to(x_t.dtype)


def mixture_rows(samples: int, steps: int, components: int, iterations=(1, 3)):
    """One row per (task, CG iterations): Sinkhorn of fp32, fp32 (other stream), bf16."""
    rows = []
    for task, options in TASKS.items():
        g = seeded(0, "bf16-fidelity", task)
        mix = digit_mixture(components, 0.1, g)
        a = task_matrix(task, options, g)
        truth = mix.sample(1, g)[0]
        y = truth @ a.T + options["sigma_y"] * torch.randn(
            a.shape[0], generator=g, dtype=torch.float64
        )
        weights, means, cov = exact_posterior(mix, a, y, options["sigma_y"] ** 2)
        reference = sample_exact(weights, means, cov, samples, g)
        mix32 = type(mix)(mix.means.float(), mix.stds.float(), mix.weights.float())
        from empriors.operators import Matrix

        op, ys = Matrix(a.float()), y.float().expand(samples, -1)
        for its in iterations:
            scores = {}
            for label, bf16, stream in (
                ("fp32", False, 0),
                ("fp32_b", False, 1),
                ("bf16", True, 0),
            ):
                post = build_posterior(
                    "mmps",
                    Autocast(mix32.denoise, bf16),
                    op,
                    ys,
                    options["sigma_y"] ** 2,
                    covariance="tweedie",
                    cg_rtol=0.0,
                    cg_maxiter=its,
                )
                x = sample(
                    post,
                    (samples, mix.dim),
                    VESchedule(1e-3, 1e2),
                    steps,
                    "ddpm",
                    seeded(1, task, its, stream),
                    dtype=torch.float32,
                )
                scores[label] = (
                    weighted_sinkhorn_divergence(x.double(), reference, 0.5)
                    if torch.isfinite(x).all()
                    else float("inf")
                )
            rows.append((task, its, scores))
    return rows


def prior_rows(prior_path: str, n: int, seed: int = 0):
    """fp32 / fp32' / bf16 E-step samples of the digits demo under a trained prior."""
    from empriors.compute import Compute
    from empriors.config import ExperimentSettings
    from empriors.data.io import read_h5
    from empriors.methods import posterior_samples
    from empriors.metrics.fid import feature_moments, frechet_distance
    from empriors.stages.artifacts import load_observations, load_prior

    demo = yaml.safe_load(open("config/demo.yaml"))["experiments"]["digits_mask"]
    cfg = {k: demo[k] for k in ("estep", "diffusion", "network", "em")}
    folder = prior_path.rsplit("/iter_", 1)[0]
    y, op, _, _ = load_observations(f"{folder}/observations.h5")
    truth = read_h5(f"{folder}/truth.h5", ["train"])[0]["train"]
    out = {}
    for label, precision, stream in (
        ("fp32", "fp32", 0),
        ("fp32_b", "fp32", 1),
        ("bf16", "bf16", 0),
    ):
        s = ExperimentSettings("digits_mask", cfg, 0, "cpu", precision)
        prior = load_prior(prior_path, s)
        assert s.compute == Compute(torch.device("cpu"), precision)
        out[label] = posterior_samples(prior, op[:n], y[:n], s, seed + stream)
    clean = feature_moments(truth.double())
    scores = {k: frechet_distance(*feature_moments(v.double()), *clean) for k, v in out.items()}
    rel = float((out["bf16"] - out["fp32"]).norm() / out["fp32"].norm())
    rel_streams = float((out["fp32_b"] - out["fp32"]).norm() / out["fp32"].norm())
    return scores, rel, rel_streams


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--components", type=int, default=256)
    p.add_argument("--prior", help="a trained digits prior (results/digits_mask/iter_k/prior.pt)")
    p.add_argument("--observations", type=int, default=512)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"CPU autocast bf16 vs fp32; {args.samples} samples, DDPM {args.steps} steps, "
        f"mixture of {args.components} digits; torch {torch.__version__}\n"
    )
    print("| task | CG it. | Sinkhorn fp32 | fp32 other stream | bf16 | within gate |")
    print("|---|---|---|---|---|---|")
    for task, its, s in mixture_rows(args.samples, args.steps, args.components):
        ok = within_gate(s["fp32"], s["fp32_b"], s["bf16"])
        print(
            f"| {task} | {its} | {s['fp32']:.4f} | {s['fp32_b']:.4f} | "
            f"{s['bf16']:.4f} | {'yes' if ok else 'no'} |"
        )
    if args.prior:
        scores, rel, rel_streams = prior_rows(args.prior, args.observations)
        ok = within_gate(scores["fp32"], scores["fp32_b"], scores["bf16"])
        print(f"\ntrained prior {args.prior}, {args.observations} observations, demo E-step:")
        print(
            "| fd_pixels fp32 | fp32 other stream | bf16 | within gate | "
            "rel. L2 bf16 vs fp32 (same stream) | rel. L2 fp32 vs other stream |"
        )
        print("|---|---|---|---|---|---|")
        print(
            f"| {scores['fp32']:.3f} | {scores['fp32_b']:.3f} | "
            f"{scores['bf16']:.3f} | {'yes' if ok else 'no'} | {rel:.4f} | {rel_streams:.4f} |"
        )


if __name__ == "__main__":
    main()
