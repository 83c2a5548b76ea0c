"""Precision (fp32 | tf32 | bf16) and torch.compile of the networks (src/empriors/compute.py).

Compiled runs use torch.compile's ``aot_eager`` backend: it traces, guards and recompiles
exactly as ``inductor`` does, without the minute of C++ code generation per graph on a CPU.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch._dynamo

from empriors.compute import (
    CPU_AUTO_BATCH,
    CompiledOrEager,
    Compute,
    batch_from_memory,
    batch_rows,
    probe_batch,
    resolve_precision,
)
from empriors.config import (
    ConfigError,
    ExperimentSettings,
    NetworkSettings,
    PosteriorSettings,
    SamplerSettings,
)
from empriors.diffusion import Denoiser, VESchedule
from empriors.gaussian import LowRankGaussian
from empriors.methods.em_mmps import posterior_sample, prior_sample
from empriors.methods.prior import Prior
from empriors.nn import build_backbone
from empriors.operators import PixelMask
from empriors.train import TrainSettings, train_denoiser

CPU = torch.device("cpu")
SCHEDULE = VESchedule(1e-3, 10.0)
UNET = NetworkSettings(
    "unet", 16, shape=(1, 8, 8), channels=(8, 16), blocks=(1, 1), attention=((1, 2),)
)


def _unet(seed=0) -> Denoiser:
    torch.manual_seed(seed)
    return Denoiser(build_backbone(UNET, 64)).eval()


def _observations(n=10, seed=1):
    g = torch.Generator().manual_seed(seed)
    op = PixelMask.random_shared(n, (1, 8, 8), 0.5, g)
    y = op(torch.randn(n, 64, generator=g))
    return op, y


MMPS = PosteriorSettings("mmps", "tweedie", 1e-4, 1e-3, 2)
DDPM = SamplerSettings("ddpm", 4)


def _estep(network, compute, batch=4, n=10, rows=None):
    op, y = _observations(n)
    if rows is not None:
        op, y = op[rows], y[rows]
    prior = Prior(LowRankGaussian.standard(64), network)
    g = torch.Generator().manual_seed(3)
    return posterior_sample(prior, op, y, SCHEDULE, DDPM, MMPS, batch, g, CPU, False, compute)


@pytest.fixture
def dynamo():
    """A fresh dynamo cache that fails on any recompilation."""
    torch._dynamo.reset()
    old = torch._dynamo.config.error_on_recompile
    torch._dynamo.config.error_on_recompile = True
    yield
    torch._dynamo.config.error_on_recompile = old
    torch._dynamo.reset()


def test_auto_precision_is_bf16_on_cuda_and_fp32_on_cpu():
    assert resolve_precision("auto", torch.device("cuda")) == "bf16"
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("tf32", CPU) == "tf32"
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", CPU)


def test_unknown_precision_is_a_config_error_before_any_work():
    with pytest.raises(ConfigError, match="precision"):
        ExperimentSettings("t", {}, 0, "cpu", precision="fp16")


def test_fp32_is_bit_identical_to_no_compute_settings():
    """The demo's default on a CPU (auto -> fp32) changes no bit of an E-step."""
    plain = _estep(_unet(), None)
    fp32 = _estep(_unet(), Compute.from_config(CPU, "auto"))
    tf32 = _estep(_unet(), Compute.from_config(CPU, "tf32"))  # CUDA flags only: CPU unchanged
    assert torch.equal(plain, fp32) and torch.equal(plain, tf32)


def test_tf32_flags_follow_the_precision():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for precision, tf32 in (("fp32", False), ("tf32", True), ("bf16", True)):
            Compute(CPU, precision).apply_backend_flags()
            assert torch.backends.cuda.matmul.allow_tf32 is tf32
            assert torch.backends.cudnn.allow_tf32 is tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def test_bf16_runs_the_network_in_bf16_and_everything_around_it_in_fp32():
    network = _unet()
    compute = Compute(CPU, "bf16")
    compute.accelerate(network)
    seen = []
    for m in network.modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            m.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    x_t = torch.randn(4, 64, requires_grad=True)
    out = network(x_t, torch.tensor(0.5))
    assert seen and set(seen) == {torch.bfloat16}  # every matmul/convolution in bf16
    assert out.dtype == torch.float32  # the preconditioned output
    (vjp,) = torch.autograd.grad(out, x_t, torch.ones_like(out))
    assert vjp.dtype == torch.float32  # what MMPS's CG works with
    # the posterior samples are float32 and close to the fp32 ones (within bf16's precision)
    bf16 = _estep(_unet(), compute)
    fp32 = _estep(_unet(), None)
    assert bf16.dtype == torch.float32
    assert not torch.equal(bf16, fp32)
    rel = (bf16 - fp32).norm() / fp32.norm()
    assert rel < 0.1, rel


def test_bf16_training_keeps_adam_ema_and_weights_in_fp32():
    data = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    settings = TrainSettings(steps=20, batch_size=16, lr=1e-3, ema=0.9)
    network = _unet()
    weights, losses = train_denoiser(
        network, data, SCHEDULE, settings, 0, progress=False, compute=Compute(CPU, "bf16")
    )
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())
    assert all(torch.isfinite(torch.tensor(losses)))
    fp32, _ = train_denoiser(_unet(), data, SCHEDULE, settings, 0, progress=False)
    assert any(not torch.equal(weights[k], fp32[k]) for k in fp32)  # bf16 did run


def test_batch_rows_pads_the_last_batch_only_when_static():
    assert [(r.tolist(), m) for r, m in batch_rows(5, 2)] == [([0, 1], 2), ([2, 3], 2), ([4], 1)]
    padded = [(r.tolist(), m) for r, m in batch_rows(5, 2, static=True)]
    assert padded == [([0, 1], 2), ([2, 3], 2), ([4, 4], 1)]
    assert [(r.tolist(), m) for r, m in batch_rows(3, 8, static=True)] == [([0, 1, 2], 3)]


def test_compiled_estep_compiles_once_and_matches_eager(dynamo):
    """Three batches (the last one padded), 4 DDPM steps of MMPS with 2 CG iterations: one
    graph, no recompilation (error_on_recompile), the eager samples to float tolerance.
    The padded batch draws noise for 4 rows, so its eager twin is the run on observations
    padded the same way (the last one repeated)."""
    compute = Compute(CPU, "fp32", compile=True, compile_backend="aot_eager")
    compiled = _estep(_unet(), compute)
    padded = torch.tensor([*range(10), 9, 9])
    eager = _estep(_unet(), None, rows=padded)[:10]
    assert compiled.shape == eager.shape == (10, 64)
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    unpadded = _estep(_unet(), None)
    torch.testing.assert_close(compiled[:8], unpadded[:8], rtol=1e-4, atol=1e-4)
    # the evaluation sampler (a job of its own: a fresh cache), a padded last batch too
    torch._dynamo.reset()
    prior = Prior(LowRankGaussian.standard(64), _unet())
    g = torch.Generator().manual_seed(0)
    x = prior_sample(prior, 6, SCHEDULE, SamplerSettings("ddim", 3), 4, g, CPU, compute)
    assert x.shape == (6, 64) and torch.isfinite(x).all()


def test_compiled_mstep_compiles_once_and_matches_eager(dynamo):
    data = torch.randn(64, 64, generator=torch.Generator().manual_seed(0))
    settings = TrainSettings(steps=6, batch_size=16, lr=1e-3, ema=0.9)
    compute = Compute(CPU, "fp32", compile=True, compile_backend="aot_eager")
    compiled, _ = train_denoiser(
        _unet(), data, SCHEDULE, settings, 0, progress=False, compute=compute
    )
    eager, _ = train_denoiser(_unet(), data, SCHEDULE, settings, 0, progress=False)
    assert compiled.keys() == eager.keys()  # no "_orig_mod." keys in the checkpoint
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5)


def test_compile_failure_falls_back_to_eager_with_a_log_line(dynamo, caplog):
    def broken_backend(graph, example_inputs):
        raise RuntimeError("no C++ compiler on this node")

    network = _unet()
    fn = Compute(CPU, "fp32", compile=True, compile_backend=broken_backend).accelerate(network)
    assert isinstance(fn, CompiledOrEager)
    x = torch.randn(2, 64)
    with caplog.at_level(logging.WARNING, logger="empriors.compute"):
        out = fn(x, torch.tensor(1.0))
    assert torch.equal(out, network(x, torch.tensor(1.0)))
    assert "torch.compile failed, running the network eagerly" in caplog.text
    assert "no C++ compiler" in caplog.text
    assert fn.eager and fn.condition_features == 0  # later calls go straight to eager


def test_batch_from_memory_fits_the_free_memory_in_multiples_of_8():
    mib = 2**20
    assert batch_from_memory(10 * mib, 1000 * mib, 10_000) == 80  # 0.8 * 1000 / 10
    assert batch_from_memory(10 * mib, 1000 * mib, 50) == 50  # the shard is smaller
    assert batch_from_memory(300 * mib, 1000 * mib, 50) == 2  # below 8: as it is
    assert batch_from_memory(1 * mib, 1000 * mib, 10_000) == 800
    with pytest.raises(MemoryError, match="one sample needs"):
        batch_from_memory(2000 * mib, 1000 * mib, 10)


def test_auto_batch_on_a_cpu_is_the_documented_default(caplog):
    calls = []
    with caplog.at_level(logging.INFO, logger="empriors.compute"):
        assert probe_batch(calls.append, 10_000, CPU) == CPU_AUTO_BATCH
        assert probe_batch(calls.append, 100, CPU) == 100
    assert calls == [] and "batch_size auto on a CPU" in caplog.text


def test_auto_batch_estep_runs_and_equals_the_fixed_batch_it_picks():
    """batch_size: auto through the E-step entry point (CPU: 256 rows, here all 10)."""
    from empriors.methods import posterior_samples

    sections = {
        "estep": {
            "posterior": "mmps", "sampler": "ddpm", "steps": 3, "corrector_tau": 0.1,
            "covariance": "tweedie", "sigma_y2": 1e-4, "cg_rtol": 1e-3, "cg_maxiter": 1,
            "batch_size": "auto", "keep_range": None,
        },
        "diffusion": {"sigma_min": 1e-3, "sigma_max": 10.0},
    }  # fmt: skip
    op, y = _observations(10)
    prior = Prior(LowRankGaussian.standard(64), _unet())
    auto = posterior_samples(prior, op, y, ExperimentSettings("t", sections, 0, "cpu"), 5)
    sections["estep"]["batch_size"] = 10
    fixed = posterior_samples(prior, op, y, ExperimentSettings("t", sections, 0, "cpu"), 5)
    assert torch.equal(auto, fixed)
