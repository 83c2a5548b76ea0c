"""Measured per-sample costs of the CIFAR-10 paper config (the 57.56 M-parameter U-Net),
projected to one E-step batch, one M-step epoch and the full 32-iteration run.

    python tests/benchmarks/bench_cifar_cost.py [--device cpu|cuda] [--batch 4] [--threads N]

Times, for ``--batch`` images of 3x32x32: one E-step DDPM step with MMPS (Tweedie covariance,
one CG iteration: a forward pass and two vector-Jacobian products), one M-step Adam step with
augmentation, one evaluation DDIM step; and the peak memory of each (CUDA: max allocated;
CPU: growth of the process's max RSS). Then scales to the paper's counts (config/config.yaml,
cifar10_mask75): 50,000 observations x 256 DDPM steps per E-step, 50,000 steps of batch 256
per M-step (256 epochs), 50,176 samples x 256 DDIM steps per evaluation, 32 iterations.
Per-sample times are assumed constant in the batch size (true on a saturated CPU, pessimistic
on a GPU): projections from a CPU are labelled as such.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import torch

from empriors.diffusion import Denoiser, VESchedule, denoising_loss
from empriors.nn.unet import UNetBackbone
from empriors.operators import PixelMask
from empriors.posterior import MMPSDenoiser
from empriors.train import Augment

PAPER = dict(laps=32, n_obs=50_000, ddpm=256, train_steps=50_000, batch=256, n_eval=50_176)


def measure(fn, device) -> tuple[float, float]:
    """(seconds per call after one warm-up call, peak MB). Peak: CUDA max allocated during
    the call; CPU: the process's peak resident memory so far (model, optimiser state and
    every stage measured before included; stages run in the table's order)."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return time.perf_counter() - t0, peak


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, b = torch.device(args.device), args.batch
    torch.manual_seed(0)
    g = torch.Generator(device=device).manual_seed(0)
    net = Denoiser(UNetBackbone((3, 32, 32), (128, 256, 384), (5, 5, 5), {1: 4}, 256, 0.1))
    net = net.to(device)
    schedule = VESchedule(1e-3, 1e2)
    opt = torch.optim.Adam(net.parameters(), 2e-4)
    augment = Augment((3, 32, 32), True, 1)
    data = torch.randn(b, 3072, device=device)
    op = PixelMask.random_shared(b, (3, 32, 32), 0.75, torch.Generator().manual_seed(0))
    op = op.to(device)
    y = op(data)

    def train_step():
        net.train()
        loss = denoising_loss(net, augment(data, g), schedule, g)
        opt.zero_grad()
        loss.backward()
        opt.step()

    x_t = data + torch.randn_like(data)
    sigma = torch.tensor(1.0, device=device)
    mmps = MMPSDenoiser(net, op, y, 1e-6, "tweedie", None, cg_maxiter=1)

    def estep_step():  # one DDPM step = one MMPS denoiser call (the update itself is free)
        net.eval()
        mmps(x_t, sigma)

    def eval_step():  # one DDIM step = one denoiser call
        net.eval()
        with torch.no_grad():
            net(x_t, sigma)

    rows = []
    for label, fn, per_run in (
        ("E-step: DDPM step with MMPS (1 CG it.)", estep_step, PAPER["n_obs"] * PAPER["ddpm"]),
        ("M-step: Adam step with augmentation", train_step, PAPER["train_steps"] * PAPER["batch"]),
        ("Evaluate: DDIM step", eval_step, PAPER["n_eval"] * PAPER["ddpm"]),
    ):
        seconds, peak = measure(fn, device)
        per_sample = seconds / b
        rows.append((label, seconds, peak, per_sample, per_run))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    kind = "measured on GPU" if device.type == "cuda" else "PROJECTED from CPU"
    print(
        f"device: {device} ({name or platform.machine()}), batch {b}, torch threads "
        f"{torch.get_num_threads()}, torch {torch.__version__}; {kind}\n"
    )
    print("| stage | per call (batch) | peak memory | per sample | per iteration | 32 iterations |")
    print("|---|---|---|---|---|---|")
    total = 0.0
    for label, seconds, peak, per_sample, per_run in rows:
        hours = per_sample * per_run / 3600
        total += hours * PAPER["laps"]
        print(
            f"| {label} | {seconds:.2f} s ({b}) | {peak:,.0f} MB | {per_sample * 1e3:.0f} ms "
            f"| {hours:,.0f} h | {hours * PAPER['laps']:,.0f} h |"
        )
    e = rows[0][3] * 256 * PAPER["ddpm"]  # one E-step batch: 256 observations x 256 steps
    m = rows[1][3] * PAPER["batch"] * (PAPER["n_obs"] // PAPER["batch"])
    print(
        f"\none E-step batch (256 observations x 256 steps): {e / 3600:,.1f} h; "
        f"one M-step epoch (195 steps of 256): {m / 3600:,.1f} h; "
        f"full 32-iteration run: {total:,.0f} h ({kind})"
    )


if __name__ == "__main__":
    main()
