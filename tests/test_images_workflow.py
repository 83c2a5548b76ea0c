"""The image pipeline through the workflow: a real 2-iteration run on the bundled digits and
full-depth dry runs of every CIFAR-10 paper config (no archive needed to plan)."""

from __future__ import annotations

import csv
import math
import re

import pytest
from workflow_support import BIN, DEMO, make_project, run, snakemake

pytestmark = pytest.mark.workflow

TINY_DIGITS = """
experiments:
  digits_mask:
    em: {iterations: 2}
    init: {rounds: 2, steps: 32}
    mstep: {steps: 150}
    estep: {steps: 8}
    evaluate: {n_samples: 128, steps: 8, figure_iterations: [0, 1, 2], examples: 3}
"""

TINY_MRI = """
experiments:
  mri:
    data: {volumes: 10, validation_volumes: 2}
    em: {iterations: 2}
    init: {rounds: 2}
    mstep: {steps: 100}
    estep: {steps: 16}
    evaluate: {n_samples: 128, steps: 16, figure_iterations: [0, 1, 2],
               accelerations: [4, 16], reconstructions: 6}
"""

GPU_RULES = ("init_prior", "estep", "mstep", "sample_prior", "evaluate_images", "reconstruct")

CIFAR_CONFIGS = [
    "cifar10_mask25",
    "cifar10_mask50",
    "cifar10_mask75",
    "cifar10_mask75_identity",
    "cifar10_mask75_sigma_t",
    "cifar10_blur",
]


def test_digits_run_gives_fid_csv_figures_and_snapshots(tmp_path):
    project = make_project(tmp_path)
    (project / "tiny.yaml").write_text(TINY_DIGITS)
    targets = [
        "results/digits_mask/fid.csv",
        "results/digits_mask/figures/posterior_examples.png",
        "results/digits_mask/diagnostics.csv",
    ]
    run(snakemake(*targets, *DEMO, "tiny.yaml", "--cores", "2"), project)
    res = project / "results" / "digits_mask"
    rows = list(csv.DictReader(open(res / "fid.csv")))
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    assert list(rows[0]) == ["iteration", "fd_pixels"]  # the metric is named, never "fid"
    assert all(math.isfinite(float(r["fd_pixels"])) and float(r["fd_pixels"]) > 0 for r in rows)
    for name in ("metric_curve.png", "samples.png", "posterior_examples.png"):
        assert (res / "figures" / name).stat().st_size > 5_000, name
    for k in (1, 2):
        assert sorted(p.name for p in (res / "eval" / f"iter_{k}").iterdir()) == [
            "samples_0.h5",
            "samples_1.h5",
        ]
        assert (res / f"iter_{k}.dvc").exists()
    assert "up to date" in run([str(BIN / "dvc"), "status"], project).stdout
    _check_diagnostics(res, "fd_pixels")


def _check_diagnostics(res, metric):
    """The label-free diagnostics of a 2-lap image run, beside the clean metric."""
    rows = list(csv.DictReader(open(res / "diagnostics.csv")))
    assert [r["iteration"] for r in rows] == ["0", "1", "2"] and metric in rows[0]
    assert all(float(r["predictive"]) > 0 for r in rows)
    assert all(math.isfinite(float(r["residual"])) and float(r["residual"]) > 0 for r in rows[1:])
    assert math.isfinite(float(rows[2]["change"])) and rows[1]["change"] == "nan"
    # MMPS's CG solves (1 iteration: the residual may grow, as CG's can on one step)
    assert all(
        math.isfinite(float(r["cg_residual"])) and float(r["cg_residual"]) > 0 for r in rows[1:]
    )
    assert (res / "figures" / "diagnostics.png").stat().st_size > 10_000


def test_cifar_paper_configs_plan_32_iterations_with_sharded_sampling(tmp_path):
    """Every Table 1 row: 32 laps x 16 E-step shards, 33 x 16 sampling shards (one dry run
    plans all six: one DAG build, and each experiment's jobs add up)."""
    project = make_project(tmp_path)
    n = len(CIFAR_CONFIGS)
    targets = [f"results/{exp}/fid.csv" for exp in CIFAR_CONFIGS]
    proc = run(snakemake("--profile", "slurm", *targets, "-n"), project)
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert stats["estep"] == str(n * 512) and stats["mstep"] == str(n * 32), stats
    assert stats["sample_prior"] == str(n * 528) and stats["evaluate_images"] == str(n * 33)
    assert stats["corrupt"] == str(n) and stats["init_prior"] == str(n), stats
    assert stats["aggregate_images"] == str(n), stats
    for exp in CIFAR_CONFIGS:
        assert f"results/{exp}/iter_32/prior.pt" in proc.stdout, exp


def test_mri_headline_command_plans_16_iterations_on_gpus(tmp_path):
    """`snakemake --profile slurm results/mri/fid.csv` from the root, dry: the paper's 16
    laps (16 E-step shards each, 2 posterior samples per observation), a GPU on every GPU job."""
    project = make_project(tmp_path)
    proc = run(snakemake("--profile", "slurm", "results/mri/fid.csv", "-n"), project)
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert stats["estep"] == "256" and stats["mstep"] == "16", stats
    assert stats["sample_prior"] == str(17 * 16) and stats["evaluate_images"] == "17", stats
    assert stats["reconstruct"] == "17", stats  # held-out PSNR/SSIM of every q_k
    jobs = re.findall(r"^rule (\w+):\n(.*?)(?=^\[|\Z)", proc.stdout, re.M | re.S)
    assert {name for name, _ in jobs} >= set(GPU_RULES)
    for name, block in jobs:
        if name in GPU_RULES:
            assert re.search(r"resources:.*\bgpu=1\b", block), (name, block)


def test_mri_demo_on_phantoms_gives_fid_csv(tmp_path):
    project = make_project(tmp_path)
    (project / "tiny.yaml").write_text(TINY_MRI)
    targets = ["results/mri/fid.csv", "results/mri/diagnostics.csv"]
    run(snakemake(*targets, *DEMO, "tiny.yaml", "--cores", "2"), project)
    res = project / "results" / "mri"
    assert len(list((res / "phantoms").glob("*.h5"))) == 10
    rows = list(csv.DictReader(open(res / "fid.csv")))
    assert [int(r["iteration"]) for r in rows] == [0, 1, 2]
    assert all(math.isfinite(float(r["fd_pixels"])) for r in rows)
    for r in ("r4", "r16"):  # held-out reconstructions: samples, their mean, zero-filled
        for column in ("psnr_", "ssim_", "psnr_mean_", "ssim_mean_", "psnr_zf_", "ssim_zf_"):
            assert all(math.isfinite(float(row[column + r])) for row in rows), column + r
        assert len({row["psnr_zf_" + r] for row in rows}) == 1  # the same observations
    assert float(rows[0]["psnr_zf_r4"]) > float(rows[0]["psnr_zf_r16"])
    assert (res / "figures" / "reconstructions_iter_2.png").stat().st_size > 0
    samples = res / "iter_1" / "samples_0.h5"
    import h5py

    with h5py.File(samples) as f:  # two posterior samples per observation
        index = f["index"][()]
    assert (index[0::2] == index[1::2]).all()
    _check_diagnostics(res, "fd_pixels")
