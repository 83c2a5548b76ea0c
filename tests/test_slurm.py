"""The slurm profile for real: a 1-lap demo through sbatch on a one-node SLURM cluster
(tests/slurm/start_cluster.sh; CI starts one). SLURM's warning signal
(``scancel --signal=USR1``, what the profile's ``--signal=USR1@300`` sends before the time
limit) reaches an E-step shard mid-shard and the M-step mid-run: each saves its state and
exits, the profile's retries resubmit it, the job resumes, and the results equal those of an
uninterrupted local run.

Without a cluster this test is skipped with that reason; CI sets EMPRIORS_REQUIRE_SLURM=1 so
that a missing cluster fails there instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import h5py
import pytest
import yaml
from workflow_support import ENV, MANIFOLD_ONLY, REPO, make_project, payload, run, same, snakemake

pytestmark = pytest.mark.workflow

ONE_LAP = (
    """
experiments:
  manifold:
    em: {iterations: 1}
    estep: {batch_size: 64, steps: 128}  # 32 batches per shard: time to catch one mid-shard
    mstep: {steps: 1000, resume_every_s: 0.5}
    evaluate: {n_samples: 256, steps: 32, figure_iterations: [0, 1]}"""
    + MANIFOLD_ONLY
)
PROFILE = yaml.safe_load((REPO / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
WARNING = PROFILE["default-resources"]["slurm_extra"]  # --signal=USR1@300, kept below
# The slurm profile as shipped, with sizes that fit a 2-core node and the two settings a
# cluster without accounting needs (SLURM_LOCAL.md); real clusters keep the defaults.
SLURM = [
    "--profile", "slurm", "--configfile", "config/demo.yaml", "one.yaml",
    "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
    "--default-resources", "mem_mb=500", "cpus_per_task=1", "runtime=30",
    f"slurm_extra={WARNING}",
    "--set-resources", "estep:mem_mb=500", "mstep:mem_mb=500", "evaluate:mem_mb=500",
    "init_prior:mem_mb=500",
]  # fmt: skip


def _cluster_up() -> bool:
    if shutil.which("sinfo") is None:
        return False
    proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
    return proc.returncode == 0 and ("idle" in proc.stdout or "mix" in proc.stdout)


def _running_jobs() -> list[tuple[str, str]]:
    """The running jobs (one squeue call): (job id, comment), the comment naming the rule."""
    out = subprocess.run(
        ["squeue", "-h", "-t", "R", "-o", "%i %k"], capture_output=True, text=True
    ).stdout
    return [tuple(line.partition(" ")[::2]) for line in out.splitlines()]


@pytest.fixture(scope="module")
def cluster():
    if not _cluster_up():
        if os.environ.get("EMPRIORS_REQUIRE_SLURM"):
            pytest.fail("EMPRIORS_REQUIRE_SLURM is set but no SLURM cluster answers sinfo")
        pytest.skip("no SLURM cluster here (start one with: sudo tests/slurm/start_cluster.sh)")


def test_slurm_warning_signal_stops_and_resumes_the_estep_and_the_mstep(cluster, tmp_path):
    assert "--signal=USR1@" in WARNING
    project = make_project(tmp_path / "slurm")
    (project / "one.yaml").write_text(ONE_LAP)
    res = project / "results" / "manifold"
    proc = subprocess.Popen(
        snakemake(*SLURM),
        cwd=project,
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    # the job to signal (its sbatch comment: rule and wildcards; E-step shard 0, not whichever
    # shard squeue lists first) and the resume file that shows it is past its first batch or save
    pending = {
        "rule_estep_wildcards_manifold_1_0": res / ".resume" / "estep_1_0.pt",
        "rule_mstep_wildcards_manifold_1": res / ".resume" / "iter_1.pt",
    }
    deadline = time.monotonic() + 900
    try:
        while pending:
            assert proc.poll() is None, f"workflow ended before {sorted(pending)} got the signal"
            assert time.monotonic() < deadline, f"timed out waiting for {sorted(pending)}"
            running = _running_jobs()
            for comment, state in list(pending.items()):
                job = next((j for j, note in running if note == comment), None)
                if job and state.exists():
                    subprocess.run(["scancel", "--signal=USR1", job], check=True)
                    del pending[comment]
            time.sleep(0.1)
        out, _ = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 2)  # SIGINT: Snakemake scancels its jobs
            proc.wait(60)
    assert proc.returncode == 0, out
    assert "SLURM" in out and "jobid" in out  # jobs went through sbatch
    assert (res / "sinkhorn.csv").exists() and (res / "iter_1.dvc").exists()
    # the signalled attempt's SLURM log (the plugin keeps failed jobs' logs) and the retry's
    # stage log (which replaces the first attempt's)
    for rule, job, stopped, resumed in [
        ("estep", "manifold_1_0", "after batch", "resumed sampling from"),
        ("mstep", "manifold_1", "at step", "resumed training from"),
    ]:
        slurm_logs = (project / ".snakemake" / "slurm_logs" / f"rule_{rule}" / job).glob("*.log")
        text = "".join(p.read_text() for p in slurm_logs)
        assert f"stopped by SIGUSR1 {stopped}" in text and "exit status 75" in text, text[-3000:]
        assert resumed in (res / "logs" / f"{job.replace('manifold', rule)}.log").read_text()

    # the same config run locally, uninterrupted, gives the same samples and model
    local = make_project(tmp_path / "local")
    (local / "one.yaml").write_text(ONE_LAP)
    target = "results/manifold/iter_1/prior.pt"
    run(snakemake("--profile", "local", "--configfile", "config/demo.yaml", "one.yaml",
                  "--cores", "2", target), local)  # fmt: skip
    assert same(payload(local / target), payload(project / target))
    samples = "results/manifold/iter_1/samples_0.h5"
    with h5py.File(local / samples) as a, h5py.File(project / samples) as b:
        assert a["x"][()].tobytes() == b["x"][()].tobytes()
