"""A data-parallel M-step on the CPU: 2 gloo processes under torchrun, as the mstep stage
starts them for mstep.gpus: 2 (``--processes 2``; src/empriors/distributed.py).

- it equals the 1-process M-step with the same global batch, to float tolerance;
- killed in the middle (SIGKILL of one rank), the rerun resumes from rank 0's state and
  gives the same bytes as the uninterrupted 2-process run;
- SLURM's warning signal to one rank stops both after the same step, rank 0 saves the state,
  and the rerun gives the same bytes;
- the workflow passes --processes N and asks SLURM for mstep.gpus GPUs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from workflow_support import BIN, ENV, REPO, make_project, run, snakemake

from empriors.data.io import now, provenance, write_h5
from empriors.gaussian import LowRankGaussian
from empriors.methods.prior import Prior
from empriors.stages.artifacts import save_prior

pytestmark = pytest.mark.workflow

SECTIONS = ("estep", "mstep", "diffusion", "network", "observation")


def _manifold_config(steps: int) -> dict:
    paper = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["experiments"]
    block = {k: dict(paper["manifold"][k]) for k in SECTIONS}
    block["network"].update(hidden=[64, 64], embedding=16)
    block["mstep"].update(steps=steps, batch_size=64, ppca_samples=512, resume_every_s=0.05)
    block["mstep"].pop("gpus", None)  # workflow-only: never reaches the stage
    return {"method": "em_mmps", **block}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ddp")
    prov = provenance("test", {}, [], 0, now())
    x = torch.randn(512, 5, generator=torch.Generator().manual_seed(0))
    write_h5(folder / "samples_0.h5", {"x": x, "index": torch.arange(512)}, prov, {})
    save_prior(folder / "prior.pt", Prior(LowRankGaussian.standard(5)), {"iteration": 0}, prov)
    return folder


def _mstep(inputs: Path, out: str, processes: int, steps: int = 1000, **popen):
    command = ["-m", "empriors", "mstep", "--exp", "manifold", "--seed", "0", "--device", "cpu"]
    command += ["--threads", "1", "--config", json.dumps(_manifold_config(steps))]
    command += ["--iteration", "1", "--samples", str(inputs / "samples_0.h5")]
    command += ["--prior", str(inputs / "prior.pt"), "--out", str(inputs / out)]
    command += ["--resume-dir", str(inputs / f"resume_{out}")]
    command += ["--processes", str(processes)]  # > 1: the stage restarts under torchrun
    env = {**ENV, "OMP_NUM_THREADS": "1"}
    if popen:
        return subprocess.Popen([str(BIN / "python"), *command], env=env, **popen)
    return subprocess.run([str(BIN / "python"), *command], env=env, capture_output=True, text=True)


def _network(path):
    return torch.load(path, weights_only=True)["network"]


@pytest.fixture(scope="module")
def two_ranks(inputs):
    proc = _mstep(inputs, "two.pt", 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return inputs / "two.pt"


def test_two_ranks_equal_one_process_with_the_same_global_batch(inputs, two_ranks):
    proc = _mstep(inputs, "one.pt", 1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two = _network(inputs / "one.pt"), _network(two_ranks)
    assert one.keys() == two.keys()
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=1e-5)
    assert any(not torch.equal(one[k], two[k]) for k in one)  # it did run on 2 ranks
    a, b = (torch.load(p, weights_only=True) for p in (inputs / "one.pt", two_ranks))
    torch.testing.assert_close(a["losses"], b["losses"], rtol=1e-4, atol=1e-6)
    assert json.loads(b["provenance"])["config"]["compute"] == {
        "precision": "fp32",
        "compile": False,
        "processes": 2,
    }
    assert not (inputs / "resume_two.pt" / "iter_1.pt").exists()  # deleted on success


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def test_killed_rank_resumes_to_the_uninterrupted_bytes(inputs, two_ranks):
    state = inputs / "resume_killed.pt" / "iter_1.pt"
    launcher = _mstep(inputs, "killed.pt", 2, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)  # well into the run, past a few saved states
    ranks = _children(launcher.pid)
    assert len(ranks) == 2 and launcher.poll() is None, "the run ended before the kill"
    os.kill(max(ranks), signal.SIGKILL)  # one rank dies; torchrun stops the other
    assert launcher.wait(timeout=120) != 0
    assert state.exists() and not (inputs / "killed.pt").exists()

    rerun = _mstep(inputs, "killed.pt", 2)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed training from" in rerun.stderr
    resumed, reference = _network(inputs / "killed.pt"), _network(two_ranks)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)
    assert not state.exists()


def test_warning_signal_to_one_rank_stops_both_at_the_same_step(inputs, two_ranks, tmp_path):
    state = inputs / "resume_signalled.pt" / "iter_1.pt"
    with open(tmp_path / "stderr", "w") as err:
        launcher = _mstep(inputs, "signalled.pt", 2, stdout=err, stderr=err)
        deadline = time.monotonic() + 120
        while not state.exists() and time.monotonic() < deadline and launcher.poll() is None:
            time.sleep(0.05)
        ranks = _children(launcher.pid)
        assert len(ranks) == 2 and launcher.poll() is None, "the run ended before the signal"
        os.kill(max(ranks), signal.SIGUSR1)  # one rank only: the other learns it in the step
        assert launcher.wait(timeout=120) != 0
    log = (tmp_path / "stderr").read_text()
    # each rank's line (on stderr and stdout): the same step on both ranks
    found = set(re.findall(r"stopped by (SIGUSR1|another rank's stop signal) at step (\d+)", log))
    assert len(found) == 2 and len({step for _, step in found}) == 1, log[-3000:]
    assert {who for who, _ in found} == {"SIGUSR1", "another rank's stop signal"}
    assert torch.load(state, weights_only=True)["step"] == int(found.pop()[1])

    rerun = _mstep(inputs, "signalled.pt", 2)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed, reference = _network(inputs / "signalled.pt"), _network(two_ranks)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def _plan(project, gpus: int, check: bool = True):
    """A dry run of lap 1 of the paper manifold with mstep.gpus: ``gpus``, commands printed."""
    (project / "ddp.yaml").write_text(f"experiments:\n  manifold:\n    mstep: {{gpus: {gpus}}}\n")
    command = ["--profile", "slurm", "results/manifold/iter_1/prior.pt", "-n", "-p",
               "--configfile", "config/config.yaml", "ddp.yaml"]  # fmt: skip
    return run(snakemake(*command), project, check=check)


def test_workflow_starts_torchrun_and_asks_for_the_gpus(tmp_path):
    project = make_project(tmp_path)
    mstep = _plan(project, 4).stdout.split("rule mstep:", 1)[1].split("\n\n", 1)[0]
    assert "--processes 4 " in mstep  # the stage restarts itself under torchrun
    assert "gpu=4" in mstep.replace(" ", "")
    # one GPU: the command is what it always was (finished laps stay up to date)
    assert "--processes" not in _plan(project, 1).stdout
    # the global batch (1,024) must divide by the processes: refused before any job runs
    bad = _plan(project, 3, check=False)
    assert bad.returncode != 0
    assert "not divisible by mstep.gpus 3" in bad.stdout + bad.stderr


def test_more_processes_than_gpus_is_refused_before_any_work(monkeypatch):
    from empriors import distributed

    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(distributed.DistributedError, match="only 2 GPU"):
        distributed.from_environment(torch.device("cuda"))
    with pytest.raises(distributed.DistributedError, match="not divisible"):
        distributed.Ranks(0, 3).rows(64)
    assert distributed.Ranks(1, 2).rows(64) == slice(32, 64)
