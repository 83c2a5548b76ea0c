"""Random-kill campaign: kill a small demo run at random moments in every stage, rerun it
plainly, and check that the result is what an uninterrupted run gives.

    python tests/reliability/kill_campaign.py --kills 21 --seed 0 --report kills.md

One uninterrupted reference run first; it also measures each stage's window (first to last
moment one of its processes runs). Then, per trial, a fresh project: the workflow starts; once
the trial's stage (corrupt, init, estep, mstep, snapshot, evaluate, aggregate: in turn,
shuffled) runs, a random part (up to 80%) of its window later (at the first moment after that
when the stage runs), a signal (SIGKILL or SIGTERM, at random) goes to the whole workflow (its
process group: a node failure, a cancelled job) or to the stage's process alone (the OOM killer,
a stray kill). Then the plain rerun, the same command; where it stops at Snakemake's stale lock
("Directory cannot be locked", after the head process was killed), ``--unlock`` first, as the
README says, which the table counts. A trial passes when the rerun succeeds, ``python -m
empriors diff`` finds the reference's content in every file (src/empriors/rundiff.py: only a
run's history is ignored), no temp file is left, ``dvc status`` is clean and Snakemake has
nothing left to do. Exit status 1 if any trial fails. CPU only; a trial takes about two demo
runs of this size (half a minute each on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: workflow_support
from workflow_support import BIN, ENV, MANIFOLD_ONLY, make_project, run, snakemake  # noqa: E402

from empriors.rundiff import run_differences  # noqa: E402

CONFIG = (
    """
experiments:
  manifold:
    data: {n_train: 1024, n_eval: 256}
    init: {rounds: 2, steps: 32}
    em: {iterations: 1, shards: 2}
    estep: {steps: 64, batch_size: 128}
    mstep: {steps: 600, batch_size: 128, ppca_samples: 1024, resume_every_s: 0.5}
    evaluate: {n_samples: 256, steps: 32, figure_iterations: [0, 1]}"""
    + MANIFOLD_ONLY
)
COMMAND = ["--profile", "local", "--configfile", "config/demo.yaml", "kills.yaml", "--cores", "2"]
# a stage -> what its process's command line holds
STAGES = {
    "corrupt": "-m empriors corrupt ",
    "init": "-m empriors init-prior ",
    "estep": "-m empriors estep ",
    "mstep": "-m empriors mstep ",
    "snapshot": "dvc --wait-for-lock add ",
    "evaluate": "-m empriors evaluate ",
    "aggregate": "-m empriors aggregate ",
}
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM}
LOCKED = "Directory cannot be locked"


def running_stages(project: Path) -> dict[str, int]:
    """The stages running in ``project`` now: stage -> PID of its process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            if os.readlink(entry / "cwd") != str(project):
                continue
        except OSError:
            continue
        for stage, marker in STAGES.items():
            if marker in cmdline and "bash -c" not in cmdline:
                found.setdefault(stage, int(entry.name))
    return found


def start(project: Path) -> subprocess.Popen:
    return subprocess.Popen(
        snakemake(*COMMAND),
        cwd=project,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as a login shell gives it
    )


def reference_run(project: Path) -> dict[str, float]:
    """Run uninterrupted; return how long each stage's processes were seen running (s)."""
    proc, first, last = start(project), {}, {}
    while proc.poll() is None:
        now = time.monotonic()
        for stage in running_stages(project):
            first.setdefault(stage, now)
            last[stage] = now
        time.sleep(0.02)
    if proc.returncode != 0:
        raise SystemExit(f"the reference run failed; see {project}/.snakemake/log")
    return {stage: last[stage] - first[stage] for stage in first}


def _kill_moment(project: Path, proc, stage: str, delay: float) -> dict[str, int] | None:
    """Wait until ``stage`` runs, then ``delay`` seconds more, and then until it runs (again,
    if its job ended meanwhile: a stage of several jobs); the stages running then. None if
    the workflow ended first."""
    deadline, due = time.monotonic() + 600, None
    while proc.poll() is None and time.monotonic() < deadline:
        running = running_stages(project)
        if stage in running:
            due = due if due is not None else time.monotonic() + delay
            if time.monotonic() >= due:
                return running
        time.sleep(0.01)
    return None


def trial(project: Path, stage: str, how: str, target: str, delay: float) -> dict:
    """One kill in ``stage`` and the rerun, in a fresh ``project``; the row of the report."""
    row = {"stage": stage, "signal": how, "target": target, "unlock": "no"}
    proc = start(project)
    running = _kill_moment(project, proc, stage, delay)
    if running is None:
        row["running"] = "(run ended first: nothing killed)"
    else:
        row["running"] = ",".join(sorted(running))
        if target == "workflow":
            os.killpg(proc.pid, SIGNALS[how])
        else:
            os.kill(running[stage], SIGNALS[how])
    try:
        proc.wait(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        row["running"] += " (hung: SIGKILL after 300 s)"
    _wait_for_group(proc.pid)
    rerun = run(snakemake(*COMMAND), project, check=False)
    if rerun.returncode != 0 and LOCKED in rerun.stdout + rerun.stderr:
        row["unlock"] = "yes"
        run(snakemake(*COMMAND, "--unlock"), project)
        rerun = run(snakemake(*COMMAND), project, check=False)
    row["rerun"] = rerun.returncode
    return row


def _wait_for_group(pgid: int, timeout: float = 120.0) -> None:
    """Until no process of the killed workflow's group is left (jobs it left running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def check(project: Path, reference: Path) -> list[str]:
    """Why the trial's results differ from the reference's (empty: they do not)."""
    problems = run_differences(reference / "results", project / "results")
    leftovers = [str(p.relative_to(project)) for p in (project / "results").rglob(".*.tmp*")]
    problems += [f"temp file left: {p}" for p in leftovers]
    status = run([str(BIN / "dvc"), "status"], project, check=False)
    if "up to date" not in status.stdout:
        problems.append(f"dvc status: {status.stdout.strip()} {status.stderr.strip()}"[:300])
    plan = run(snakemake(*COMMAND, "-n"), project, check=False)
    if "Nothing to be done" not in plan.stdout:
        problems.append("snakemake -n: jobs left to run")
    return problems


def campaign(kills: int, seed: int, workdir: Path, stages: list[str]) -> list[dict]:
    rng = random.Random(seed)
    template = make_project(workdir / "template")
    (template / "kills.yaml").write_text(CONFIG)
    reference = workdir / "reference"
    shutil.copytree(template, reference, symlinks=True)
    spans = reference_run(reference)
    print("reference run: stage durations (s)", {k: round(v, 2) for k, v in spans.items()})
    order: list[str] = []
    while len(order) < kills:
        order += rng.sample(stages, len(stages))
    rows = []
    for i, stage in enumerate(order[:kills]):
        project = workdir / f"trial_{i}"
        shutil.copytree(template, project, symlinks=True)
        how, target = rng.choice(list(SIGNALS)), rng.choice(["workflow", "stage"])
        # within the first 80% of the reference's window: a trial's stage may run faster
        delay = round(0.8 * rng.random() * spans.get(stage, 0.0), 2)
        row = {"trial": i, **trial(project, stage, how, target, delay), "delay_s": delay}
        problems = check(project, reference) if row["rerun"] == 0 else ["rerun failed"]
        row["identical"] = "yes" if not problems else "NO"
        row["problems"] = "; ".join(problems)[:400]
        print(" | ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        rows.append(row)
        if not problems:
            shutil.rmtree(project)  # keep failing trials to look at
    return rows


def report(rows: list[dict]) -> str:
    keys = ["trial", "stage", "signal", "target", "delay_s", "running", "unlock", "identical",
            "problems"]  # fmt: skip
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    same = sum(r["identical"] == "yes" for r in rows)
    killed = sum(not r["running"].startswith("(") for r in rows)
    unlock = sum(r["unlock"] == "yes" for r in rows)
    lines += ["", f"identical: {same} / {len(rows)} (trials that killed their stage: {killed}; "
              f"reruns that needed --unlock first: {unlock})"]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="default: a new temporary folder")
    parser.add_argument("--report", type=Path, help="also write the table (markdown) there")
    parser.add_argument(
        "--stages",
        default=",".join(STAGES),
        help=f"the stages to kill in (default: all of {list(STAGES)})",
    )
    args = parser.parse_args(argv)
    if args.kills < 1:
        parser.error("--kills must be >= 1")
    stages = args.stages.split(",")
    if unknown := sorted(set(stages) - set(STAGES)):
        parser.error(f"unknown stage(s) {unknown}; choose from {list(STAGES)}")
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="kills_"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    rows = campaign(args.kills, args.seed, workdir, stages)
    table = report(rows)
    print(table)
    if args.report:
        args.report.write_text(table + "\n")
    return 0 if all(r["identical"] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
