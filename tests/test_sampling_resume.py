"""Mid-job resume of sampling stages (src/empriors/resume.py): an E-step shard or an
evaluation sampling job killed after some batches continues from the last finished batch,
and its output has the same bytes as an uninterrupted run."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time

import h5py
import pytest
import torch
import yaml
from workflow_support import BIN, ENV, REPO

from empriors.config import NetworkSettings, SamplerSettings
from empriors.diffusion import Denoiser, VESchedule
from empriors.gaussian import LowRankGaussian
from empriors.methods import em_mmps
from empriors.methods.prior import Prior
from empriors.nn import build_backbone
from empriors.resume import BatchResume

CPU = torch.device("cpu")


def _prior() -> Prior:
    torch.manual_seed(0)
    net = Denoiser(build_backbone(NetworkSettings("mlp", 16, hidden=(32,)), 5)).eval()
    return Prior(LowRankGaussian.standard(5), net)


def _draw(prior, resume=None):
    g = torch.Generator().manual_seed(3)
    sampler = SamplerSettings("ddpm", 8)
    return em_mmps.prior_sample(prior, 50, VESchedule(1e-3, 10.0), sampler, 8, g, CPU, None, resume)


def test_interrupted_sampling_resumes_to_the_same_bytes(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="empriors.resume")
    prior = _prior()
    reference = _draw(prior)
    resume = BatchResume(tmp_path / "state.pt", "key")
    calls, real_sample = [], em_mmps.sample

    def dies_at_the_fourth_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt("killed")
        return real_sample(*args, **kwargs)

    monkeypatch.setattr(em_mmps, "sample", dies_at_the_fourth_batch)
    with pytest.raises(KeyboardInterrupt):
        _draw(prior, resume)
    monkeypatch.setattr(em_mmps, "sample", real_sample)
    assert len(torch.load(resume.path, weights_only=True)["batches"]) == 3
    resumed = _draw(prior, resume)
    assert torch.equal(resumed, reference)
    assert "after 3 finished batch(es)" in caplog.text
    # a state made from other inputs is ignored, not continued
    other = BatchResume(resume.path, "another key")
    assert torch.equal(_draw(prior, other), reference)
    assert "made from other inputs or settings" in caplog.text


def _cli(*args):
    return [str(BIN / "python"), "-m", "empriors", *args]


def _config():
    paper = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["experiments"]
    cfg = {k: paper["manifold"][k] for k in ("data", "observation", "init", "diffusion", "em",
                                             "estep", "network")}  # fmt: skip
    cfg["data"] = {**cfg["data"], "n_train": 256, "n_eval": 16}
    cfg["init"] = {**cfg["init"], "rounds": 1, "steps": 8}
    cfg["em"] = {"iterations": 1, "shards": 1}
    cfg["estep"] = {**cfg["estep"], "sampler": "ddpm", "steps": 100, "batch_size": 16}
    return {"method": "em_mmps", **cfg}


def test_killed_estep_shard_resumes_to_the_uninterrupted_bytes(tmp_path):
    common = ["--exp", "manifold", "--seed", "0", "--device", "cpu", "--threads", "1"]
    common += ["--config", json.dumps(_config())]
    obs, prior = tmp_path / "observations.h5", tmp_path / "iter_0" / "prior.pt"
    subprocess.run(
        _cli("corrupt", *common, "--observations", obs, "--truth", tmp_path / "truth.h5"),
        env=ENV,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _cli("init-prior", *common, "--observations", obs, "--out", prior),
        env=ENV,
        check=True,
        capture_output=True,
    )
    estep = [*common, "--iteration", "1", "--shard", "0", "--prior", prior, "--observations", obs]
    ref = subprocess.run(
        _cli("estep", *estep, "--out", tmp_path / "ref.h5", "--resume-dir", tmp_path / "r0"),
        env=ENV,
        capture_output=True,
        text=True,
    )
    assert ref.returncode == 0, ref.stderr[-2000:]
    assert not (tmp_path / "r0" / "estep_1_0.pt").exists()  # deleted on success

    state = tmp_path / "iter_0" / ".." / ".resume" / "estep_1_0.pt"  # the default place
    out = tmp_path / "iter_1" / "samples_0.h5"
    job = subprocess.Popen(
        _cli("estep", *estep, "--out", out),
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not state.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.poll() is None, "the shard finished before the kill"
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    assert state.exists() and not out.exists()
    done = len(torch.load(state, weights_only=True)["batches"])
    assert 1 <= done < 16  # 256 observations in batches of 16

    rerun = subprocess.run(_cli("estep", *estep, "--out", out), env=ENV, capture_output=True,
                           text=True)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resumed sampling from" in rerun.stderr
    with h5py.File(tmp_path / "ref.h5") as a, h5py.File(out) as b:
        assert a["x"][()].tobytes() == b["x"][()].tobytes()
        assert a["index"][()].tobytes() == b["index"][()].tobytes()
        tried = json.loads(b.attrs["provenance"])["attempts"]  # the killed one and the rerun
        assert [t["batch"] for t in tried] == [0, done]
    assert not state.exists()
