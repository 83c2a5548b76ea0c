"""GPU benchmark of the paper CIFAR-10 configuration, side by side in one run (one table).

    python tests/benchmarks/gpu.py                 # on a GPU: the paper U-Net, batch 256
    python tests/benchmarks/gpu.py --smoke         # on a CPU: a tiny U-Net (the test suite)

Rows, each timed after warm-up calls (which include compilation):
- E-step: MMPS denoiser calls per second (Tweedie covariance, ``--cg`` CG iterations, one
  forward and cg + 1 VJPs per call) at batch ``--batch``: ours in fp32 / tf32 / bf16 /
  bf16 + torch.compile, and azula 0.11.1's MMPSDenoiser on the same network (fp32 and bf16
  autocast), so the speed-up over azula is measured in the same process.
- M-step: Adam steps per second of the training step (augmentation, loss, backward, clip,
  Adam, EMA) at the global batch, and the model FLOPs utilisation (MFU): FLOPs of one step
  counted by torch.utils.flop_counter / step time / the GPU's dense bf16 peak.
- Evaluate: DDIM denoiser calls per second (forward only).
- Peak memory of each row (CUDA: max allocated), and for the E-step rows the relative L2
  distance of the call's output to ours in fp32 on the same inputs (azula fp32 ~ 1e-6 says the
  two compute the same thing; bf16 and compile say what they cost in accuracy).
Then the projected GPU-hours of one CIFAR lap (50,000 observations x 256 DDPM steps, 50,000
Adam steps of 256, 50,176 samples x 256 DDIM steps; config/config.yaml, cifar10_mask75) and of
32 laps with the fastest configuration, against the reference allocation (one lap = one SLURM
job on 4 GPUs for up to 24 h: 96 GPU-hours per lap, 3,072 for 32), and the issue's targets.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from empriors.compute import Compute
from empriors.config import ExperimentSettings
from empriors.diffusion import Denoiser, VESchedule, denoising_loss
from empriors.nn import build_backbone
from empriors.operators import PixelMask
from empriors.posterior import MMPSDenoiser
from empriors.train import Augment

REPO = Path(__file__).resolve().parents[2]
REFERENCE_GPU_HOURS_PER_LAP = 4 * 24  # 4 GPUs, up to a day per lap (reference code, SLURM)
LAPS = 32
# dense bf16 peak FLOP/s (no sparsity) by device name; MFU is "n/a" elsewhere
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A6000": 155e12}


@dataclass
class Row:
    stage: str
    variant: str
    per_s: float  # calls or steps per second
    peak_mb: float
    mfu: float | None = None
    rel_diff: float | None = None  # ||out - out(ours fp32)|| / ||out(ours fp32)||, E-step


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeats: int, warmup: int) -> tuple[float, float]:
    """(calls per second over ``repeats`` calls after ``warmup`` calls, peak MB of them)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return repeats / seconds, peak


def paper_config() -> dict:
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    return config["experiments"]["cifar10_mask75"]


def network_and_data(smoke: bool, batch: int, device):
    cfg = paper_config()
    if smoke:
        cfg = {
            **cfg,
            "network": {
                **cfg["network"],
                "shape": [1, 8, 8],
                "channels": [8, 16],
                "blocks": [1, 1],
                "heads": 2,
                "embedding": 16,
            },
        }
    settings = ExperimentSettings("cifar10_mask75", {"network": cfg["network"]}, 0, "cpu")
    shape = settings.network.shape
    features = shape[0] * shape[1] * shape[2]
    torch.manual_seed(0)
    net = Denoiser(build_backbone(settings.network, features)).to(device)
    g = torch.Generator().manual_seed(0)
    op = PixelMask.random_shared(batch, shape, cfg["observation"]["missing"], g).to(device)
    x = torch.randn(batch, features, generator=g).to(device)
    return cfg, net, shape, op, x


def estep_rows(net, op, x, device, args, azula_ok: bool) -> list[Row]:
    y = op(x)
    x_t = x + torch.randn_like(x)
    schedule = VESchedule(1e-3, 1e2)
    t = torch.tensor(0.6, device=device)  # sigma_t = 1
    sigma = schedule.sigma(t)
    rows, reference = [], None
    net.eval()
    variants = [
        ("ours fp32", "fp32", False),
        ("ours tf32", "tf32", False),
        ("ours bf16", "bf16", False),
        ("ours bf16 + compile", "bf16", True),
    ]
    if azula_ok:
        variants += [("azula fp32", "fp32", False), ("azula bf16", "bf16", False)]
    for label, precision, compile_ in variants:
        compute = Compute(device, precision, compile_, args.compile_backend)
        compute.apply_backend_flags()
        fn = compute.accelerate(net)
        if label.startswith("azula"):
            mmps = _azula_mmps(fn, op, y, schedule, args.cg)

            def call(mmps=mmps):
                return mmps(x_t, t).mean.detach()
        else:
            mmps = MMPSDenoiser(fn, op, y, 1e-6, "tweedie", None, cg_rtol=0.0, cg_maxiter=args.cg)

            def call(mmps=mmps):
                return mmps(x_t, sigma)

        per_s, peak = timed(call, device, args.repeats, args.warmup)
        out = call().float()
        reference = out if reference is None else reference
        diff = float((out - reference).norm() / reference.norm())
        rows.append(Row("E-step MMPS call", label, per_s, peak, rel_diff=diff))
    net.compute = None
    return rows


def _azula_mmps(denoise, op, y, schedule: VESchedule, cg: int):
    """azula's MMPSDenoiser around the same network: our VE schedule as azula's."""
    from azula.denoise import Denoiser as AzulaDenoiser
    from azula.denoise import DiracPosterior
    from azula.guidance.mmps import MMPSDenoiser as AzulaMMPS
    from azula.linalg.covariance import IsotropicCovariance
    from azula.noise import VESchedule as AzulaVE

    class Wrapped(AzulaDenoiser):
        def __init__(self):
            super().__init__()
            self.schedule = AzulaVE(schedule.sigma_min, schedule.sigma_max)

        def forward(self, x_t, t, **kwargs):
            return DiracPosterior(mean=denoise(x_t, self.schedule.sigma(t)))

    noise = IsotropicCovariance(torch.tensor(1e-6, device=y.device))
    return AzulaMMPS(Wrapped(), y, op, noise, solver="cg", iterations=cg)


def train_flops(net, x, schedule, augment) -> float:
    """FLOPs of one training step (forward + backward of the loss), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    g = torch.Generator(device=x.device).manual_seed(0)
    with FlopCounterMode(display=False) as counter:
        denoising_loss(net, augment(x, g), schedule, g).backward()
    net.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def mstep_rows(net, shape, x, device, args, peak_flops: float | None) -> list[Row]:
    """The M-step's training step (train.train_denoiser's loop body) at the global batch."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    schedule = VESchedule(1e-3, 1e2)
    augment = Augment(tuple(shape), True, 1)
    net.train()
    flops = train_flops(net, x, schedule, augment)
    rows = []
    for label, precision, compile_ in (
        ("fp32", "fp32", False),
        ("tf32", "tf32", False),
        ("bf16", "bf16", False),
        ("bf16 + compile", "bf16", True),
    ):
        compute = Compute(device, precision, compile_, args.compile_backend)
        compute.apply_backend_flags()
        model = compute.accelerate(net)
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-4)
        ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(0.9999))
        g = torch.Generator(device=device).manual_seed(0)

        def step(model=model, optimizer=optimizer, ema=ema, g=g):
            loss = denoising_loss(model, augment(x, g), schedule, g)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            ema.update_parameters(net)
            loss.item()  # the loop's per-step host sync (NaN check, logging)

        per_s, peak = timed(step, device, args.repeats, args.warmup)
        mfu = flops * per_s / peak_flops if peak_flops else None
        rows.append(Row("M-step Adam step", label, per_s, peak, mfu))
        del optimizer, ema
    net.compute = None
    return rows


def eval_rows(net, x, device, args) -> list[Row]:
    sigma = torch.tensor(1.0, device=device)
    net.eval()
    rows = []
    for label, precision, compile_ in (("fp32", "fp32", False), ("bf16 + compile", "bf16", True)):
        compute = Compute(device, precision, compile_, args.compile_backend)
        compute.apply_backend_flags()
        fn = compute.accelerate(net)

        def call(fn=fn):
            with torch.no_grad():
                fn(x, sigma)

        per_s, peak = timed(call, device, args.repeats, args.warmup)
        rows.append(Row("Evaluate DDIM call", label, per_s, peak))
    net.compute = None
    return rows


def projection(rows: list[Row], cfg: dict, batch: int) -> dict[str, float]:
    """GPU-hours of one paper lap with the fastest of our rows of each stage."""
    n_obs, ddpm = 50_000, cfg["estep"]["steps"]
    train_steps, train_batch = cfg["mstep"]["steps"], cfg["mstep"]["batch_size"]
    n_eval, ddim = cfg["evaluate"]["n_samples"], cfg["evaluate"]["steps"]
    best = {}
    for r in rows:
        if not r.variant.startswith("azula"):
            best[r.stage] = max(best.get(r.stage, 0.0), r.per_s)
    estep = n_obs * ddpm / (best["E-step MMPS call"] * batch) / 3600
    # M-step rows ran the global batch ``batch``; the paper's is train_batch
    mstep = train_steps * (train_batch / batch) / best["M-step Adam step"] / 3600
    evaluate = n_eval * ddim / (best["Evaluate DDIM call"] * batch) / 3600
    return {"E-step": estep, "M-step": mstep, "evaluate": evaluate, "lap": estep + mstep + evaluate}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, tiny U-Net, batch 4")
    p.add_argument("--device", default=None, help="default: cuda if visible, else cpu")
    p.add_argument("--batch", type=int, default=None, help="default 256 (smoke: 4)")
    p.add_argument("--cg", type=int, default=1, help="CG iterations per MMPS call")
    p.add_argument("--repeats", type=int, default=None, help="timed calls (default 10; smoke 2)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first (compilation)")
    p.add_argument("--compile-backend", default=None, help="default inductor (smoke: aot_eager)")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    device = torch.device(args.device or ("cuda" if cuda and not args.smoke else "cpu"))
    args.batch = args.batch or (4 if args.smoke else 256)
    args.repeats = args.repeats or (2 if args.smoke else 10)
    if args.smoke:
        args.warmup = min(args.warmup, 1)
    args.compile_backend = args.compile_backend or ("aot_eager" if args.smoke else "inductor")
    try:
        import azula  # noqa: F401

        azula_ok = True
    except ImportError:
        azula_ok = False

    cfg, net, shape, op, x = network_and_data(args.smoke, args.batch, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    peak_flops = next((v for k, v in PEAK_BF16.items() if k in (name or "")), None)
    params = sum(p.numel() for p in net.parameters())
    print(
        f"device: {device} ({name or platform.machine()}), torch {torch.__version__}, "
        f"U-Net {params / 1e6:.1f} M parameters {tuple(shape)}, batch {args.batch}, "
        f"{args.cg} CG iteration(s), {args.repeats} timed calls after {args.warmup} warm-up, "
        f"compile backend {args.compile_backend}" + ("; SMOKE (not a GPU figure)" * args.smoke)
    )
    if not azula_ok:
        print("azula is not installed: its rows are missing (pip install --no-deps azula==0.11.1)")
    rows = estep_rows(net, op, x, device, args, azula_ok)
    rows += mstep_rows(net, shape, x, device, args, peak_flops)
    rows += eval_rows(net, x, device, args)
    azula_fp32 = next((r.per_s for r in rows if r.variant == "azula fp32"), None)

    print(
        "\n| stage | variant | per second | vs azula fp32 | MFU (bf16 peak) | peak memory "
        "| rel. diff to ours fp32 |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = (
            f"{r.per_s / azula_fp32:.2f}x" if azula_fp32 and r.stage.startswith("E-step") else ""
        )
        mfu = f"{100 * r.mfu:.1f}%" if r.mfu is not None else ("n/a" if "M-step" in r.stage else "")
        diff = f"{r.rel_diff:.1e}" if r.rel_diff is not None else ""
        print(
            f"| {r.stage} | {r.variant} | {r.per_s:,.2f} | {ratio} | {mfu} "
            f"| {r.peak_mb:,.0f} MB | {diff} |"
        )

    hours = projection(rows, cfg, args.batch)
    ref = REFERENCE_GPU_HOURS_PER_LAP
    print(
        f"\nprojected GPU-hours per paper CIFAR lap (fastest rows): E-step {hours['E-step']:,.2f}, "
        f"M-step {hours['M-step']:,.2f}, evaluate {hours['evaluate']:,.2f}; lap "
        f"{hours['lap']:,.2f}, {LAPS} laps {hours['lap'] * LAPS:,.1f} "
        f"(reference allocation: {ref} per lap, {ref * LAPS:,} for {LAPS} laps; ratio "
        f"{hours['lap'] / ref:.3f})"
    )
    ours = max(
        r.per_s for r in rows if r.stage.startswith("E-step") and r.variant.startswith("ours")
    )
    mfu = max((r.mfu for r in rows if r.mfu is not None), default=None)
    checks = [
        (
            "E-step >= 2x azula's MMPS calls/s",
            f"{ours / azula_fp32:.2f}x" if azula_fp32 else "n/a",
            azula_fp32 is not None and ours >= 2 * azula_fp32,
        ),
        (
            "M-step MFU >= 40% (bf16)",
            f"{100 * mfu:.1f}%" if mfu is not None else "n/a",
            mfu is not None and mfu >= 0.4,
        ),
        (
            "32 laps <= 1/4 of the reference GPU-hours",
            f"{hours['lap'] / ref:.3f}",
            hours["lap"] <= ref / 4,
        ),
    ]
    print("\n| target | measured | met |\n|---|---|---|")
    for target, value, met in checks:
        print(f"| {target} | {value} | {'yes' if met else 'no'} |")
    return rows, hours


if __name__ == "__main__":
    main()
