"""Stop signals (src/empriors/preemption.py): SIGUSR1 (SLURM's warning) or SIGTERM during a
long loop lets the current batch or training step finish, saves the resume state, then stops
the stage with Preempted; the rerun continues to the bytes of an uninterrupted run. Outside a
long loop the signal stops the stage at once."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch
import yaml
from workflow_support import REPO

from empriors import cli, preemption, train
from empriors.config import NetworkSettings, SamplerSettings
from empriors.data.io import now, provenance, write_h5
from empriors.diffusion import Denoiser, VESchedule
from empriors.gaussian import LowRankGaussian
from empriors.methods import em_mmps
from empriors.methods.prior import Prior
from empriors.nn import build_backbone
from empriors.resume import BatchResume
from empriors.stages import artifacts
from empriors.train import TrainSettings, train_denoiser

CPU = torch.device("cpu")
SCHEDULE = VESchedule(1e-3, 10.0)


@pytest.fixture(autouse=True)
def handlers():
    """The stage's handlers for the test; the previous ones back afterwards."""
    before = {s: signal.getsignal(s) for s in preemption.STOP_SIGNALS}
    preemption.install()
    yield
    preemption.install()  # forget this test's request
    for s, h in before.items():
        signal.signal(s, h)


def _net() -> Denoiser:
    torch.manual_seed(0)
    return Denoiser(build_backbone(NetworkSettings("mlp", 16, hidden=(32,)), 5))


def _draw(prior, resume=None):
    g = torch.Generator().manual_seed(3)
    sampler = SamplerSettings("ddpm", 8)
    return em_mmps.prior_sample(prior, 50, SCHEDULE, sampler, 8, g, CPU, None, resume)


def _signal_on_call(monkeypatch, module, name: str, call: int, signum: int) -> None:
    """``module.name`` sends ``signum`` to this process on its ``call``-th call."""
    calls, real = [], getattr(module, name)

    def signalling(*args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, signalling)


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM])
def test_signal_during_sampling_saves_the_batch_then_stops(tmp_path, monkeypatch, signum):
    prior = Prior(LowRankGaussian.standard(5), _net().eval())
    reference = _draw(prior)
    resume = BatchResume(tmp_path / "state.pt", "key")
    _signal_on_call(monkeypatch, em_mmps, "sample", 3, signum)  # inside the 3rd of 7 batches
    with pytest.raises(preemption.Preempted) as stop:
        _draw(prior, resume)
    name = signal.Signals(signum).name
    assert str(stop.value) == f"stopped by {name} after batch 3 of 7, saved to {resume.path}"
    assert len(torch.load(resume.path, weights_only=True)["batches"]) == 3  # the 3rd finished
    monkeypatch.undo()
    preemption.install()  # a new stage
    assert torch.equal(_draw(prior, resume), reference)


SETTINGS = TrainSettings(steps=40, batch_size=32, lr=1e-3, ema=0.9, resume_every_s=1e9)


def _train(resume):
    data = torch.randn(256, 5, generator=torch.Generator().manual_seed(1))
    weights, _ = train_denoiser(_net(), data, SCHEDULE, SETTINGS, 7, resume, progress=False)
    return weights


def test_signal_during_training_saves_the_step_then_stops(tmp_path, monkeypatch):
    reference = _train(None)
    resume = tmp_path / "state.pt"  # never saved on time (resume_every_s): only on the signal
    _signal_on_call(monkeypatch, train, "denoising_loss", 25, signal.SIGUSR1)  # in step 25
    with pytest.raises(preemption.Preempted, match="SIGUSR1 at step 25 of 40, saved to"):
        _train(resume)
    assert torch.load(resume, weights_only=True)["step"] == 25
    monkeypatch.undo()
    preemption.install()
    resumed = _train(resume)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_signal_in_the_last_batch_lets_the_stage_finish(tmp_path, monkeypatch):
    prior = Prior(LowRankGaussian.standard(5), _net().eval())
    reference = _draw(prior)
    _signal_on_call(monkeypatch, em_mmps, "sample", 7, signal.SIGTERM)
    assert torch.equal(_draw(prior, BatchResume(tmp_path / "s.pt", "key")), reference)
    assert preemption.requested()  # the stage may still stop afterwards


def test_signal_outside_a_long_loop_stops_at_once():
    with pytest.raises(preemption.Preempted, match="stopped by SIGTERM"):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10**8):  # the handler interrupts this
            pass
    with pytest.raises(preemption.Preempted):  # a request made earlier stops a loop on entry
        with preemption.deferred():
            pass


def test_a_twice_resumed_mstep_lists_its_three_attempts(tmp_path, monkeypatch, capsys):
    """SIGUSR1 in step 10, then in step 25 of the resumed run, then a run to the end: the
    prior's provenance lists the three attempts (steps 0, 10, 25) and lineage shows them."""
    samples, prior = tmp_path / "samples_0.h5", tmp_path / "iter_0" / "prior.pt"
    prov = provenance("test", {}, [], 0, now())
    x = torch.randn(256, 5, generator=torch.Generator().manual_seed(0))
    write_h5(samples, {"x": x, "index": torch.arange(256)}, prov, {})
    artifacts.save_prior(prior, Prior(LowRankGaussian.standard(5)), {"iteration": 0}, prov)
    paper = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["experiments"]
    block = {k: dict(paper["manifold"][k]) for k in ("estep", "mstep", "diffusion", "network")}
    block["network"].update(hidden=[32], embedding=16)
    block["mstep"].update(steps=40, batch_size=32, ppca_samples=256, resume_every_s=1e9)
    block["mstep"].pop("gpus", None)
    out = tmp_path / "iter_1" / "prior.pt"
    argv = ["mstep", "--exp", "manifold", "--seed", "0", "--device", "cpu", "--threads", "1",
            "--config", json.dumps({"method": "em_mmps", **block}), "--iteration", "1",
            "--samples", str(samples), "--prior", str(prior), "--out", str(out),
            "--resume-dir", str(tmp_path / ".resume")]  # fmt: skip
    for stop_in in (10, 15):  # the 10th step, then the 15th step of the resumed run: 25
        _signal_on_call(monkeypatch, train, "denoising_loss", stop_in, signal.SIGUSR1)
        assert cli.main(argv) == preemption.EXIT_STATUS
        monkeypatch.undo()
    assert cli.main(argv) == 0
    record = json.loads(torch.load(out, weights_only=True)["provenance"])
    assert [a["step"] for a in record["attempts"]] == [0, 10, 25]
    capsys.readouterr()
    assert cli.main(["lineage", str(out)]) == 0
    assert "attempts: 3 (step 0 at " in capsys.readouterr().out
