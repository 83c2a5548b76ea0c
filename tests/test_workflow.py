"""The workflow end to end: lint, full-depth dry run of the paper config, a real 2-iteration
demo run with DVC snapshots, lineage, bad configs (kills and resumes: test_reliability.py).

Each test works in a fresh project folder (the repository's workflow files, its own git and
DVC repos), the way a user's clone does.
"""

from __future__ import annotations

import csv
import json
import re
import sys

import pytest
from workflow_support import BIN, DEMO, REPO, make_project, run, snakemake

from empriors.data.io import read_h5

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted 2-iteration demo run."""
    project = make_project(tmp_path_factory.mktemp("finished"))
    run(snakemake(*DEMO, "--cores", "2"), project)
    return project


def test_lint_is_clean():
    proc = run(snakemake("--lint"), REPO, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_paper_config_dry_run_plans_every_iteration(tmp_path):
    """The README's literal command, dry: 64 iterations x 8 shards, nothing needs SLURM."""
    project = make_project(tmp_path)
    proc = run(snakemake("--profile", "slurm", "results/manifold/sinkhorn.csv", "-n"), project)
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert stats["estep"] == "512" and stats["mstep"] == "64"
    assert stats["evaluate"] == "65" and stats["snapshot_iteration"] == "65"
    assert stats["init_prior"] == "1" and stats["corrupt"] == "1"


def test_demo_run_produces_every_target(finished):
    res = finished / "results" / "manifold"
    rows = (res / "sinkhorn.csv").read_text().strip().splitlines()
    assert rows[0].startswith("iteration,sinkhorn,sinkhorn_divergence")
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 1, 2]
    # evaluate.paper_metric (issue 19.7-8): the reference's curve beside ours, with its checks
    paper = list(csv.DictReader((res / "sinkhorn.csv").open()))
    n = json.loads((res / "eval" / "iter_0.json").read_text())["n"]
    for r in paper:
        assert float(r["paper_sinkhorn"]) == max(float(r["paper_unfloored"]), 1e-6), r
        assert r["paper_capped"] in ("0.0", "1.0") and float(r["paper_marginal_l1"]) >= 0
        assert all(abs(float(r[k])) < 1e3 for k in ("paper_debiased", "paper_exact"))
        assert 0 < int(r["paper_kept"]) <= n
    assert int(paper[0]["paper_kept"]) == n  # q0's posterior samples are not range-filtered
    for k in (0, 1, 2):
        assert (res / f"iter_{k}" / "prior.pt").exists()
        assert (res / f"iter_{k}.dvc").exists()
        assert (res / "eval" / f"iter_{k}.json").exists()
    for k in (1, 2):
        assert sorted(p.name for p in (res / f"iter_{k}").iterdir()) == [
            "prior.pt",
            "samples_0.h5",
            "samples_1.h5",
        ]
    assert (res / "figures" / "sinkhorn.png").stat().st_size > 10_000
    assert (res / "figures" / "marginals.png").stat().st_size > 10_000
    assert not (res / ".resume" / "iter_2.pt").exists()  # deleted on success
    claims = (finished / "results" / "claims.md").read_text()
    assert "EM laps improve monotonically" in claims and "results/manifold/sinkhorn.csv" in claims
    status = run([str(BIN / "dvc"), "status"], finished)
    assert "up to date" in status.stdout, status.stdout
    # nothing left to do
    assert "Nothing to be done" in run(snakemake(*DEMO, "-n"), finished).stdout


def test_demo_run_writes_label_free_diagnostics(finished):
    """diagnostics.csv: one row per lap beside the clean metric; no truth among its inputs."""
    res = finished / "results" / "manifold"
    rows = list(csv.DictReader((res / "diagnostics.csv").open()))
    assert [r["iteration"] for r in rows] == ["0", "1", "2"]
    assert float(rows[0]["predictive"]) > 0 and rows[0]["residual"] == "nan"
    assert 0.3 < float(rows[1]["residual"]) < 3  # posterior samples fit y to the noise level
    assert float(rows[2]["change"]) > 0 and rows[1]["change"] == "nan"
    # the E-step's CG solves (MMPS with cov_x, to tolerance rtol 1e-3 on SPD systems): their
    # final relative residual, recorded by each shard
    assert rows[0]["cg_residual"] == "nan" and all(
        0 <= float(r["cg_residual"]) <= 1e-3 for r in rows[1:]
    )
    shard = read_h5(res / "iter_1" / "samples_0.h5", [])[1]
    assert shard["cg_solves"] > 0 and shard["cg_iterations"] >= 1
    clean = list(csv.DictReader((res / "sinkhorn.csv").open()))
    assert [float(r["sinkhorn"]) for r in rows] == [float(r["sinkhorn"]) for r in clean]
    for k in (0, 1, 2):
        inputs = json.loads((res / f"diagnostics/iter_{k}.json").read_text())["provenance"]
        assert not any("truth" in p for p in inputs["inputs"]), inputs
    assert (res / "figures" / "diagnostics.png").stat().st_size > 10_000


def test_deleted_observations_need_forcerun_to_redo_their_stage(finished):
    """README (troubleshooting): Snakemake does not remake a deleted intermediate file whose
    consumers are up to date; ``-R corrupt`` (or ``--forcerun corrupt``) reruns the stage and
    everything after it."""
    obs = finished / "results" / "manifold" / "observations.h5"
    kept = obs.with_name("kept.h5")
    obs.rename(kept)
    try:
        assert "Nothing to be done" in run(snakemake(*DEMO, "-n"), finished).stdout
        planned = _planned(finished, "-R", "corrupt")
        assert planned["corrupt"] == "1" and int(planned["estep"]) > 0, planned
        assert int(planned["evaluate"]) > 0 and planned.get("aggregate_sinkhorn") == "1"
    finally:
        kept.rename(obs)


def _planned(project, *extra):
    proc = run(snakemake(*DEMO, *extra, "-n"), project)
    return dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))


def test_config_changes_rerun_exactly_what_they_affect(finished):
    # more laps: only the new lap (and the aggregate) runs
    (finished / "more.yaml").write_text("experiments: {manifold: {em: {iterations: 3}}}\n")
    plan = _planned(finished, "more.yaml")
    assert plan["estep"] == "2" and plan["mstep"] == "1" and plan["evaluate"] == "1"
    assert "corrupt" not in plan and "init_prior" not in plan
    # another M-step setting: every M-step reruns, and what follows; the data does not
    (finished / "steps.yaml").write_text("experiments: {manifold: {mstep: {steps: 500}}}\n")
    plan = _planned(finished, "steps.yaml")
    assert plan["mstep"] == "2" and plan["estep"] == "2"  # lap 1 E-step reads only q0
    assert "corrupt" not in plan and "init_prior" not in plan


def test_lineage_reaches_the_observations(finished):
    proc = run(
        [sys.executable, "-m", "empriors", "lineage", "results/manifold/iter_2/prior.pt"], finished
    )
    out = proc.stdout
    for stage in ("[mstep]", "[estep]", "[init_prior]", "[corrupt]"):
        assert stage in out, out
    assert "results/manifold/observations.h5" in out
    assert "CHANGED" not in out and "MISSING" not in out
    assert '"steps": 600' in out  # the config that made the prior


def test_bad_config_fails_before_any_job(tmp_path):
    project = make_project(tmp_path)
    (project / "bad.yaml").write_text("experiments:\n  manifold:\n    mstep: {stepz: 10}\n")
    proc = run(
        snakemake("--configfile", "config/demo.yaml", "bad.yaml", "--cores", "1"),
        project,
        check=False,
    )
    assert proc.returncode != 0
    assert "stepz" in proc.stdout + proc.stderr
    assert not (project / "results").exists()


def test_dvc_can_be_disabled(tmp_path):
    project = make_project(tmp_path)
    (project / "nodvc.yaml").write_text("dvc: {enabled: false}\n")
    proc = run(snakemake(*DEMO, "nodvc.yaml", "-n"), project)
    assert "snapshot" not in proc.stdout


def test_heuristics_study_target(tmp_path):
    """The covariance study's rules end to end on a tiny override, both variants (ours and
    the reference's procedure): per-part jobs, CSVs, figure."""
    project = make_project(tmp_path)
    (project / "tiny.yaml").write_text(
        "studies:\n  heuristics: {seeds: 2, seeds_per_job: 1, n_prior: 4096, support: 256,"
        " sigma_t: [0.1, 1.0]}\n"
        "  heuristics_paper: {seeds: 2, seeds_per_job: 1, n_prior: 4096, n_eval: 64,"
        " sigma_t: [0.1, 1.0], exact_points: 32}\n"
    )
    targets = ["results/heuristics/divergence.csv", "results/heuristics_paper/divergence.csv"]
    run(
        snakemake(*targets, "--cores", "2", "--configfile", "config/demo.yaml", "tiny.yaml"),
        project,
    )
    rows = (project / targets[0]).read_text().strip().splitlines()
    assert rows[0] == "seed,sigma_t,heuristic,divergence,ess_exact"
    assert len(rows) == 1 + 2 * 2 * 4  # seeds x sigma_t x heuristics
    paper = list(csv.DictReader((project / targets[1]).open()))
    assert len(paper) == 2 * 2 * 4
    assert {"raw", "floored", "converged", "marginal_error", "exact"} <= set(paper[0])
    for study in ("heuristics", "heuristics_paper"):
        summary = (project / f"results/{study}/summary.csv").read_text().splitlines()
        assert len(summary) == 1 + 2 * 4
        assert (project / f"results/{study}/figures/divergence.png").stat().st_size > 10_000


def test_paper_config_plans_the_heuristics_study(tmp_path):
    project = make_project(tmp_path)
    targets = ["results/heuristics/divergence.csv", "results/heuristics_paper/divergence.csv"]
    proc = run(snakemake(*targets, "-n"), project)
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", proc.stdout, re.M))
    assert stats["heuristics_part"] == "16" and stats["heuristics_aggregate"] == "2"


def test_posterior_benchmark_target(tmp_path):
    project = make_project(tmp_path)
    (project / "tiny.yaml").write_text(
        "studies:\n  posterior_benchmark: {components: 8, samples: 32, steps: [5],"
        " mmps_iterations: [1], samplers: [mmps, dps]}\n"
    )
    target = "results/posterior_benchmark/table.csv"
    run(snakemake(target, "--cores", "2", "--configfile", "config/demo.yaml", "tiny.yaml"), project)
    rows = (project / target).read_text().strip().splitlines()
    assert rows[0].startswith("task,sampler,solver_iterations,steps,sinkhorn")
    assert len(rows) == 1 + 4 * 2  # tasks x samplers
    assert (
        "| sr4 | mmps | 1 | 5 |" in (project / "results/posterior_benchmark/table.md").read_text()
    )


STOP_RULE = """
experiments:
  manifold:
    em: {iterations: 4, stop_when: {diagnostic: residual, rel_change: 1.0, window: 1}}
"""


def test_stop_rule_ends_em_early_and_names_the_final_lap(tmp_path):
    """em.stop_when on a 4-lap run: lap 1 cannot stop (lap 0 has no E-step residual), lap 2's
    residual changed by < 100%: EM stops there, laps 3 and 4 never run, final.json names lap 2
    and every aggregation covers laps 0..2. Without the rule the same config plans laps 3-4."""
    project = make_project(tmp_path)
    (project / "stop.yaml").write_text(STOP_RULE)
    run(snakemake(*DEMO, "stop.yaml", "--cores", "2"), project)
    res = project / "results" / "manifold"
    assert not (res / "iter_3").exists() and not (res / "iter_4").exists()
    final = json.loads((res / "final.json").read_text())
    assert final["iteration"] == 2 and final["prior"] == "results/manifold/iter_2/prior.pt"
    decisions = {k: json.loads((res / f"stop/iter_{k}.json").read_text())["stop"] for k in (1, 2)}
    assert decisions == {1: False, 2: True}
    for table in ("sinkhorn.csv", "diagnostics.csv"):
        assert [r["iteration"] for r in csv.DictReader((res / table).open())] == ["0", "1", "2"]
    assert "Nothing to be done" in run(snakemake(*DEMO, "stop.yaml", "-n"), project).stdout
    (project / "nostop.yaml").write_text("experiments:\n  manifold:\n    em: {iterations: 4}\n")
    planned = run(snakemake(*DEMO, "nostop.yaml", "-n"), project).stdout
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", planned, re.M))
    assert stats["mstep"] == "2" and stats["estep"] == "4"  # laps 3 and 4, 2 shards each


def test_stop_rule_turned_on_after_a_finished_run_is_applied(finished):
    """em.stop_when added to a finished run: rule all waits for the stop checks even though
    every table is up to date (they used to be skipped), and final.json gives the rule's
    verdict. (Last in this module: it changes the finished run's final.json.)"""
    res = finished / "results" / "manifold"
    rule = "{diagnostic: residual, rel_change: 1.0, window: 1}"
    (finished / "late_stop.yaml").write_text(
        f"experiments:\n  manifold:\n    em: {{stop_when: {rule}}}\n"
    )
    run(snakemake(*DEMO, "late_stop.yaml", "--cores", "2"), finished)
    check = json.loads((res / "stop" / "iter_1.json").read_text())
    assert check["stop"] is False  # lap 0 has no E-step residual: lap 1 cannot stop
    final = json.loads((res / "final.json").read_text())
    assert final["iteration"] == 2 and "em.stop_when never stopped" in final["reason"], final
    assert "Nothing to be done" in run(snakemake(*DEMO, "late_stop.yaml", "-n"), finished).stdout
