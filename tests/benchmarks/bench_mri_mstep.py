"""The MRI demo's lap-1 M-step under other training settings: why config/demo.yaml trains the
MRI demo without augmentation and with a warmed-up EMA.

    python tests/benchmarks/bench_mri_mstep.py [--jobs 2]

Run after the MRI demo (`snakemake results/mri/fid.csv --profile local --configfile
config/demo.yaml`). Each variant retrains lap 1's network from scratch on the demo's own lap-1
E-step samples (results/mri/iter_1/samples_*.h5, MMPS posterior samples under q0) with the
demo's M-step settings changed as named, then scores 512 prior samples (the demo's evaluation
sampler, two sampling seeds) by fd_pixels against the held-out slices; the first row scores the
E-step samples themselves (q0 scores 584.3: README, MRI section).
"""

from __future__ import annotations

import argparse
import copy
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
import yaml

from empriors.config import ExperimentSettings
from empriors.data.io import read_h5
from empriors.methods import em_mmps, model_samples
from empriors.metrics.fid import image_metric
from empriors.stages.artifacts import load_prior

ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path("results/mri")
# name -> overrides of experiments.mri.mstep in config/demo.yaml
VARIANTS = {
    "paper-like: flip + shift 2, EMA 0.999": {
        "augment": {"hflip": True, "shift": 2},
        "ema_warmup": False,
    },
    "flip + shift 2, no EMA": {"augment": {"hflip": True, "shift": 2}, "ema": None},
    "no augmentation, EMA 0.999": {"ema_warmup": False},
    "no augmentation, no EMA": {"ema": None},
    "flip only, EMA 0.999": {"augment": {"hflip": True, "shift": 0}, "ema_warmup": False},
    "no augmentation, warmed-up EMA (demo)": {},
}


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        deep = isinstance(v, dict) and isinstance(out.get(k), dict)
        out[k] = _merge(out[k], v) if deep else v
    return out


def demo_experiment() -> dict:
    cfgs = [yaml.safe_load((ROOT / "config" / n).read_text()) for n in ("config.yaml", "demo.yaml")]
    return _merge(cfgs[0], cfgs[1])["experiments"]["mri"]


def lap1_data() -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """The lap-1 E-step samples (N, D), the held-out slices (M, D) and the image shape."""
    x = torch.cat([read_h5(p, ["x"])[0]["x"] for p in sorted(RESULTS.glob("iter_1/samples_*.h5"))])
    arrays, attrs = read_h5(RESULTS / "truth.h5", ["val"])
    return x, arrays["val"].float(), tuple(int(v) for v in attrs["shape"])


def run_variant(name: str) -> tuple[str, list[float]]:
    torch.set_num_threads(1)
    exp = demo_experiment()
    exp["mstep"] = _merge(exp["mstep"], VARIANTS[name])
    s = ExperimentSettings("mri", exp, 0, "cpu")
    x, val, shape = lap1_data()
    previous = load_prior(RESULTS / "iter_0" / "prior.pt", s)
    prior, _ = em_mmps.m_step(x, previous, s, seed=123, resume_path=None, progress=False)
    fds = []
    for seed in (1, 2):
        v = model_samples(prior, 512, s.evaluate.sampler, 512, s, seed, None)
        fds.append(image_metric("fd_pixels", v, val, shape)["fd_pixels"])
    return name, fds


def estep_fd() -> str:
    """fd_pixels of 512 of the lap-1 E-step samples (two random subsets)."""
    x, val, shape = lap1_data()
    g = torch.Generator().manual_seed(0)
    subsets = [x[torch.randperm(len(x), generator=g)[:512]].float() for _ in range(2)]
    fds = [image_metric("fd_pixels", v, val, shape)["fd_pixels"] for v in subsets]
    return " / ".join(f"{f:.1f}" for f in fds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="variants trained at once")
    args = parser.parse_args()
    if not (RESULTS / "iter_1" / "prior.pt").exists():
        raise SystemExit(f"{RESULTS}/iter_1 not found: run the MRI demo first")
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(run_variant, VARIANTS))
    print("| lap-1 M-step variant | fd_pixels (sampling seeds 1, 2) |")
    print("|---|---|")
    print(f"| (the E-step samples it trains on, 512 drawn twice) | {estep_fd()} |")
    for name, fds in rows:
        print(f"| {name} | {' / '.join(f'{f:.1f}' for f in fds)} |")


if __name__ == "__main__":
    main()
