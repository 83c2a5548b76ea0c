"""Measured per-step costs of the manifold experiment, projected to the paper-scale run.

    python tests/benchmarks/bench_manifold_cost.py [--device cpu|cuda] [--threads N]

Times one M-step training step (batch 1024), one E-step predictor-corrector step (MMPS,
cov_x, one shard of 65,536 / 8 observations), one evaluation sampling step (16,384 samples)
and one log-domain Sinkhorn iteration (16,384 x 16,384), then multiplies by the counts of
config/config.yaml. Prints a markdown table; projections are labelled as such.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from empriors.diffusion import Denoiser, VESchedule, denoising_loss, sample
from empriors.gaussian import fit_ppca
from empriors.metrics.sinkhorn import entropic_ot
from empriors.nn import MLPBackbone
from empriors.operators import Projection
from empriors.posterior import MMPSDenoiser

PAPER = dict(
    laps=32,
    train_steps=65536,
    batch=1024,
    n_obs=65536,
    shards=8,
    pc_steps=4096,
    eval_samples=16384,
    sinkhorn_iterations=1024,
)


def timeit(fn, repeat: int, device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeat


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--sinkhorn-n",
        type=int,
        default=4096,
        help="points per side for the timed Sinkhorn (cost scales as n^2)",
    )
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    g = torch.Generator(device=device).manual_seed(0)
    schedule = VESchedule(1e-3, 1e1)
    net = Denoiser(MLPBackbone(5)).to(device)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    data = torch.randn(PAPER["n_obs"], 5, device=device)

    def train_step():
        idx = torch.randint(data.shape[0], (PAPER["batch"],), generator=g, device=device)
        loss = denoising_loss(net, data[idx], schedule, g)
        opt.zero_grad()
        loss.backward()
        opt.step()

    shard = PAPER["n_obs"] // PAPER["shards"]
    gcpu = torch.Generator().manual_seed(0)
    op = Projection.random(shard, 2, 5, gcpu).to(device, torch.float32)
    y = torch.randn(shard, 2, device=device)
    gauss = fit_ppca(torch.randn(4096, 5))
    mmps = MMPSDenoiser(net, op, y, 1e-4, "cov_x", gauss)

    def estep_steps():  # 4 PC steps = 8 MMPS calls
        sample(mmps, (shard, 5), schedule, 4, "pc", g, device=device)

    def eval_steps():
        sample(net, (PAPER["eval_samples"], 5), schedule, 4, "pc", g, device=device)

    n = args.sinkhorn_n
    u, v = torch.randn(n, 5, device=device), torch.randn(n, 5, device=device)

    def sinkhorn_16():
        entropic_ot(u, v, 1e-3, 16)

    t_train = timeit(train_step, 20, device)
    t_estep = timeit(estep_steps, 2, device) / 4
    t_eval = timeit(eval_steps, 2, device) / 4
    t_sink = timeit(sinkhorn_16, 2, device) / 16 * (PAPER["eval_samples"] / n) ** 2

    P = PAPER
    rows = [
        (
            "M-step: one Adam step, batch 1024",
            t_train,
            P["train_steps"] * P["laps"],
            "65,536 steps x 32 laps",
        ),
        (
            "E-step: one PC step, one shard (8,192 obs)",
            t_estep,
            P["pc_steps"] * P["laps"] * P["shards"],
            "4,096 steps x 32 laps x 8 shards",
        ),
        (
            "Evaluate: one PC step, 16,384 samples",
            t_eval,
            P["pc_steps"] * (P["laps"] + 1),
            "4,096 steps x 32 laps",
        ),
        (
            f"Evaluate: one Sinkhorn iteration 16,384^2 (scaled from n={n})",
            t_sink,
            2 * P["sinkhorn_iterations"] * (P["laps"] + 1),
            "2 OT x 1,024 iterations x 33",
        ),
    ]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"device: {device} ({name or platform.machine()}), torch threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}\n"
    )
    print("| stage | measured per step | steps in the paper run | projected hours | count |")
    print("|---|---|---|---|---|")
    total = 0.0
    for label, t, count, what in rows:
        hours = t * count / 3600
        total += hours
        print(f"| {label} | {t * 1e3:.2f} ms | {count:,} | {hours:,.1f} h | {what} |")
    estep_hours = rows[1][1] * rows[1][2] / 3600
    wall = total - estep_hours + estep_hours / P["shards"]
    print(f"| **total device time** | | | **{total:,.1f} h** | |")
    print(f"| **wall time, 8 devices for the E-step shards** | | | **{wall:,.1f} h** | |")
    print("\nProjected from measured step times, not a measured end-to-end run.")


if __name__ == "__main__":
    main()
