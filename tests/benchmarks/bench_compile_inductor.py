"""torch.compile with the real inductor backend against eager, on an MMPS E-step (CPU).

    python tests/benchmarks/bench_compile_inductor.py

The test suite checks compiled runs with the ``aot_eager`` backend (same graphs, no code
generation). This runs the ``inductor`` backend the configs use: a manifold-sized MLP, 96
observations in batches of 40 (the last one padded), DDPM 16 steps, MMPS with 3 CG iterations,
``error_on_recompile`` on. It prints the distance of one compiled denoiser call to eager, the
compiled E-step to its eager twin (the same padded batches), and, for scale, the eager E-step to
an eager one whose weights were multiplied by 1 + 1e-6: the E-step amplifies float rounding
on some samples (a sample near two posterior modes can change mode), so compiled and eager
runs agree to rounding on most samples and are not bit-identical.
"""

from __future__ import annotations

import time

import torch
import torch._dynamo

from empriors.compute import Compute
from empriors.config import NetworkSettings, PosteriorSettings, SamplerSettings
from empriors.diffusion import Denoiser, VESchedule
from empriors.gaussian import LowRankGaussian
from empriors.methods.em_mmps import posterior_sample
from empriors.methods.prior import Prior
from empriors.nn import build_backbone
from empriors.operators import Projection

CPU = torch.device("cpu")
PADDED = torch.tensor([*range(96), *[95] * 24])  # 3 batches of 40, the last one padded


def network(scale: float = 1.0) -> Denoiser:
    torch.manual_seed(0)
    net = Denoiser(build_backbone(NetworkSettings("mlp", 16, hidden=(64, 64)), 5)).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    return net


def estep(net, op, y, compute=None):
    return posterior_sample(
        Prior(LowRankGaussian.standard(5), net),
        op,
        y,
        VESchedule(1e-3, 10.0),
        SamplerSettings("ddpm", 16),
        PosteriorSettings("mmps", "tweedie", 1e-4, 1e-3, 3),
        40,
        torch.Generator().manual_seed(1),
        CPU,
        False,
        compute,
    )


def main():
    torch._dynamo.config.error_on_recompile = True
    g = torch.Generator().manual_seed(0)
    op, y = Projection.random(96, 2, 5, g), torch.randn(96, 2, generator=g)
    compute = Compute(CPU, "fp32", compile=True, compile_backend="inductor")
    t0 = time.perf_counter()
    compiled = estep(network(), op, y, compute)
    seconds = time.perf_counter() - t0
    eager = estep(network(), op[PADDED], y[PADDED])[:96]
    nudged = estep(network(1 + 1e-6), op[PADDED], y[PADDED])[:96]
    torch._dynamo.reset()  # a new network instance would recompile (guards on the module)
    x, sigma, net = torch.randn(40, 5, generator=g), torch.tensor(0.01), network()
    one = (net(x, sigma) - compute.accelerate(net)(x, sigma)).abs().max()
    print(
        f"torch {torch.__version__}, inductor on {CPU}; compiled E-step {seconds:.1f} s "
        "(compilation included), no recompilation\n"
    )
    print("| comparison | max abs diff | median abs diff |\n|---|---|---|")
    print(f"| one denoiser call, compiled vs eager | {one:.1e} | |")
    for label, a in (
        ("E-step, compiled vs eager", compiled),
        ("E-step, eager with weights x (1 + 1e-6) vs eager", nudged),
    ):
        d = (a - eager).abs()
        print(f"| {label} | {d.max():.2e} | {d.median():.1e} |")


if __name__ == "__main__":
    main()
