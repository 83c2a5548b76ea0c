"""The three methods through the workflow: tiny real runs of DiffEM and FlowDiff beside
EM-MMPS with the comparison table, and full-depth dry runs of the DiffEM paper configs."""

from __future__ import annotations

import csv
import math
import re

import pytest
import torch
from workflow_support import DEMO, make_project, run, snakemake

pytestmark = pytest.mark.workflow

# One shard per lap and no DVC snapshots: few jobs (EM-MMPS, sharding and snapshots have
# their own workflow tests; the final prior's snapshot is planned in the dry run below).
# final_steps too: config/demo.yaml's (3x a demo lap) is deep-merged in otherwise.
TINY = """
dvc: {enabled: false}
experiments:
  manifold_diffem: &tiny
    data: {n_train: 1024, n_eval: 256}
    em: {iterations: 2, shards: 1}
    init: {rounds: 2, steps: 16}
    estep: {steps: 8}
    mstep: {steps: 100, final_steps: 100, ppca_samples: 1024}
    evaluate: {n_samples: 128, steps: 8, figure_iterations: [0, 2]}
  manifold_flowdiff:
    <<: *tiny
    flow: {steps: 50}
  digits_mask_diffem: &tiny_digits
    em: {iterations: 2, shards: 1}
    init: {rounds: 2, steps: 16}
    mstep: {steps: 50, final_steps: 50}
    estep: {steps: 8}
    evaluate: {n_samples: 128, shards: 1, steps: 8, figure_iterations: [0, 2], examples: 2}
  digits_mask_flowdiff:
    <<: *tiny_digits
    flow: {steps: 25}
compare:
  manifold: [manifold_diffem, manifold_flowdiff]
  digits: [digits_mask_diffem, digits_mask_flowdiff]
"""


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("methods"))
    (project / "tiny.yaml").write_text(TINY)
    targets = ["results/compare/manifold.csv", "results/compare/digits.csv"]
    run(snakemake(*targets, *DEMO, "tiny.yaml", "--cores", "2"), project)
    return project


def _rows(path):
    return list(csv.DictReader(open(path)))


def test_manifold_methods_share_data_and_give_the_comparison(compared):
    res = compared / "results"
    q0 = [torch.load(res / e / "iter_0" / "prior.pt", weights_only=True)["gaussian"]["mean"]
          for e in ("manifold_diffem", "manifold_flowdiff")]  # fmt: skip
    assert torch.equal(q0[0], q0[1])  # seed_name: the same observations, the same q0
    rows = _rows(res / "compare" / "manifold.csv")
    assert list(rows[0]) == ["experiment", "method", "iteration", "metric", "value", "wall_s",
                             "job_hours", "gpu_hours"]  # fmt: skip
    by_method = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append(r["iteration"])
        assert math.isfinite(float(r["value"])) and float(r["job_hours"]) > 0, r
        assert float(r["gpu_hours"]) == 0  # the demo runs on the CPU
    assert by_method == {
        "diffem": ["0", "1", "2", "final"],
        "flowdiff": ["0", "1", "2"],
    }
    assert (res / "compare" / "figures" / "manifold.png").stat().st_size > 10_000
    # DiffEM: the conditional network from lap 1, the final prior unconditional
    lap = torch.load(res / "manifold_diffem" / "iter_2" / "prior.pt", weights_only=True)
    final = torch.load(res / "manifold_diffem" / "iter_final" / "prior.pt", weights_only=True)
    assert lap["network_condition"] == 2 + 2 * 5 and final["network_condition"] == 0
    # FlowDiff: a flow and its loss curve in every round
    rounds = [torch.load(res / "manifold_flowdiff" / f"iter_{k}" / "prior.pt",
                         weights_only=True) for k in (1, 2)]  # fmt: skip
    assert all("flow" in r and len(r["flow_losses"]) > 0 for r in rounds)


def test_image_methods_run_on_digits(compared):
    rows = _rows(compared / "results" / "compare" / "digits.csv")
    assert {r["method"] for r in rows} == {"diffem", "flowdiff"}
    assert all(r["metric"] == "fd_pixels" and float(r["value"]) > 0 for r in rows)
    lap = torch.load(compared / "results" / "digits_mask_diffem" / "iter_2" / "prior.pt",
                     weights_only=True)  # fmt: skip
    assert lap["network_condition"] == 64  # the zero-filled 8x8 image as a second channel
    fid = _rows(compared / "results" / "digits_mask_diffem" / "fid.csv")
    assert [r["iteration"] for r in fid] == ["0", "1", "2", "final"]


DIFFEM_CIFAR = ("cifar10_mask90_diffem", "cifar10_mask75_diffem", "cifar10_blur_diffem")


def test_diffem_cifar_paper_configs_plan_every_target(tmp_path):
    """DiffEM at paper scale (90% and 75% masking, blur): 32 laps x 16 shards, the final
    unconditional prior, and its FID beside every lap's."""
    project = make_project(tmp_path)
    n = len(DIFFEM_CIFAR)  # one dry run plans all three (one DAG build, jobs add up)
    targets = [f"results/{exp}/fid.csv" for exp in DIFFEM_CIFAR]
    proc = run(snakemake("--profile", "slurm", *targets, "-n"), project)
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert stats["estep"] == str(n * 512) and stats["mstep"] == str(n * 32), stats
    assert stats["final_prior"] == str(n) and stats["evaluate_images"] == str(n * 34), stats
    assert stats["sample_prior"] == str(n * 34 * 16), stats
    assert stats["snapshot_iteration"] == str(n * 34), stats
    for exp in DIFFEM_CIFAR:
        assert f"results/{exp}/iter_final/prior.pt" in proc.stdout, exp
    # the comparison tables of the paper configs: 2 experiments (CIFAR 90%) and 3 (MRI)
    targets = ["results/compare/cifar10_mask90.csv", "results/compare/mri.csv"]
    proc = run(snakemake("--profile", "slurm", *targets, "-n"), project)
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert stats["compare"] == "2" and stats["init_prior"] == str(2 + 3), stats


def test_demo_rule_all_leaves_the_compared_methods_to_make_compare(tmp_path):
    """`make demo` runs EM-MMPS only; the DiffEM/FlowDiff variants are `make compare`'s
    (their YAML anchors must not carry an experiment's `enabled: true` into rule all)."""
    project = make_project(tmp_path)
    proc = run(snakemake("--configfile", "config/demo.yaml", "-n"), project)
    assert "results/mri/fid.csv" in proc.stdout
    assert "_diffem" not in proc.stdout and "_flowdiff" not in proc.stdout
