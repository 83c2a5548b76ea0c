"""The slurm profile for real: a 1-lap demo through sbatch on a one-node SLURM cluster
(tests/slurm/start_cluster.sh; CI starts one), with the M-step job cancelled by scancel
mid-run. The profile's retries resubmit it, the job resumes from its saved training state,
and the results equal those of an uninterrupted local run.

Without a cluster this test is skipped with that reason; CI sets EMPRIORS_REQUIRE_SLURM=1 so
that a missing cluster fails there instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest
from workflow_support import ENV, make_project, payload, run, same, snakemake

pytestmark = pytest.mark.workflow

ONE_LAP = """
experiments:
  manifold:
    em: {iterations: 1}
    mstep: {steps: 3000, resume_every_s: 0.5}
    evaluate: {figure_iterations: [0, 1]}
  digits_mask: {enabled: false}
  mri: {enabled: false}
studies:
  heuristics: {enabled: false}
  posterior_benchmark: {enabled: false}
"""
# The slurm profile as shipped, with sizes that fit a 2-core node and the two settings a
# cluster without accounting needs (SLURM_LOCAL.md); real clusters keep the defaults.
SLURM = [
    "--profile", "slurm", "--configfile", "config/demo.yaml", "one.yaml",
    "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
    "--default-resources", "mem_mb=500", "cpus_per_task=1", "runtime=30",
    "--set-resources", "estep:mem_mb=500", "mstep:mem_mb=500", "evaluate:mem_mb=500",
    "init_prior:mem_mb=500",
]  # fmt: skip


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return proc.returncode == 0 and ("idle" in proc.stdout or "mix" in proc.stdout)


def _running_job(rule: str) -> str | None:
    out = subprocess.run(
        ["squeue", "-h", "-t", "R", "-o", "%i %k"], capture_output=True, text=True
    ).stdout
    for line in out.splitlines():
        job, _, comment = line.partition(" ")
        if comment.startswith(f"rule_{rule}"):
            return job
    return None


@pytest.fixture(scope="module")
def cluster():
    if not _cluster_up():
        if os.environ.get("EMPRIORS_REQUIRE_SLURM"):
            pytest.fail("EMPRIORS_REQUIRE_SLURM is set but no SLURM cluster answers sinfo")
        pytest.skip("no SLURM cluster here (start one with: sudo tests/slurm/start_cluster.sh)")


def test_slurm_profile_runs_and_survives_scancel(cluster, tmp_path):
    project = make_project(tmp_path / "slurm")
    (project / "one.yaml").write_text(ONE_LAP)
    resume = project / "results" / "manifold" / ".resume" / "iter_1.pt"
    proc = subprocess.Popen(
        snakemake(*SLURM),
        cwd=project,
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    cancelled, deadline = None, time.monotonic() + 900
    try:
        while cancelled is None:
            assert proc.poll() is None, "workflow ended before the M-step could be cancelled"
            assert time.monotonic() < deadline, "timed out waiting for the M-step"
            job = _running_job("mstep")
            if job and resume.exists():
                subprocess.run(["scancel", job], check=True)
                cancelled = job
            time.sleep(0.2)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 2)  # SIGINT: Snakemake scancels its jobs
            proc.wait(60)
    assert proc.returncode == 0, out
    assert "SLURM" in out and "jobid" in out  # jobs went through sbatch
    res = project / "results" / "manifold"
    assert (res / "sinkhorn.csv").exists() and (res / "iter_1.dvc").exists()
    assert "resumed training from" in (res / "logs" / "mstep_1.log").read_text()

    # the same config run locally, uninterrupted, gives the same model
    local = make_project(tmp_path / "local")
    (local / "one.yaml").write_text(ONE_LAP)
    run(
        snakemake(
            "--profile",
            "local",
            "--configfile",
            "config/demo.yaml",
            "one.yaml",
            "--cores",
            "2",
            "results/manifold/iter_1/prior.pt",
        ),
        local,
    )
    assert same(
        payload(local / "results/manifold/iter_1/prior.pt"), payload(res / "iter_1" / "prior.pt")
    )
