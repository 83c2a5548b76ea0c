"""How the networks run: numeric precision (fp32 | tf32 | bf16) and torch.compile.

Only the *network* changes precision. Under ``bf16`` the backbone's forward runs under
``torch.autocast(dtype=bfloat16)``, so its matmuls and convolutions (and, through autograd,
their backward passes and the VJPs that MMPS takes) run in bfloat16, while everything around
it stays float32: the EDM preconditioning c_skip x_t + c_out net(...) (the network output is
cast back before it), the denoising loss and its mean, the conjugate-gradient scalars and
residuals, the optimizer (Adam moments of float32 parameters), the EMA, the PPCA fit and the
metrics. ``tf32`` keeps float32 tensors and lets CUDA matmuls/convolutions use TensorFloat-32
(also on under ``bf16``, for the float32 ops that remain). ``fp32`` turns TF32 off. On a CPU
``tf32`` is plain float32 (the flags are CUDA's), so a CPU run under ``auto`` or ``fp32`` is
bit-identical to one without this module.

``compile``: ``torch.compile(dynamic=False)`` of the denoiser the stages call (E-step,
M-step, evaluation); the stages keep shapes static (one batch size per job, a padded last
batch), so a job compiles once per training mode. Where compilation fails (no C++ compiler,
an unsupported operator) the call falls back to eager with one warning in the job's log.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "tf32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` -> bf16 on CUDA, fp32 elsewhere; the others as given (validated)."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


@dataclass(frozen=True)
class Compute:
    """The resolved compute settings of one job.

    ``precision``: fp32 | tf32 | bf16 (resolved, never ``auto``); ``compile``: whether the
    denoiser is compiled; ``compile_backend``: torch.compile's backend (``inductor``; tests
    use ``aot_eager``, which traces and guards the same graphs without generating code).
    """

    device: torch.device
    precision: str = "fp32"
    compile: bool = False
    compile_backend: str = "inductor"

    @classmethod
    def from_config(
        cls, device: torch.device, precision: str = "auto", compile: bool = False
    ) -> Compute:
        return cls(device, resolve_precision(precision, device), bool(compile))

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.precision == "bf16" else None

    def record(self) -> dict:
        """What provenance records of these settings."""
        return {"precision": self.precision, "compile": self.compile}

    def apply_backend_flags(self) -> None:
        """TF32 for CUDA matmuls and cuDNN convolutions on under tf32/bf16, off under fp32
        (process-wide; every stage calls this once before its work)."""
        tf32 = self.precision in ("tf32", "bf16")
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

    def autocast(self) -> AbstractContextManager:
        """The context the backbone's forward runs in."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def accelerate(self, module: torch.nn.Module):
        """Set ``module``'s precision (a :class:`empriors.diffusion.Denoiser` reads
        ``compute``) and return the callable the stages use: compiled, or the module."""
        module.compute = self
        return self.compiled(module)

    def compiled(self, module: torch.nn.Module):
        """``module`` compiled (with the eager fallback) when ``compile`` is on, else itself."""
        if not self.compile:
            return module
        return CompiledOrEager(module, self.compile_backend)


def _compile_errors() -> tuple[type[BaseException], ...]:
    """What torch.compile raises when tracing or code generation fails (at a first call)."""
    from torch._dynamo.exc import TorchDynamoException

    errors: list[type[BaseException]] = [TorchDynamoException]
    try:
        from torch._inductor.exc import InductorError

        errors.append(InductorError)
    except ImportError:  # older torch
        pass
    return tuple(errors)


def _reason(error: BaseException) -> str:
    """One line on why compilation failed: the backend's own error where torch wraps it."""
    cause = getattr(error, "inner_exception", None) or error.__cause__ or error
    text = str(cause).strip()
    return f"{type(cause).__name__}: {text.splitlines()[0] if text else ''}"


class CompiledOrEager:
    """``torch.compile(module, dynamic=False)``, falling back to ``module`` (eager) with one
    logged warning when compilation fails. The module keeps its parameters and state_dict
    keys (the compiled wrapper is not a submodule of anything that is saved).

    MMPS takes several VJPs of one forward (``retain_graph=True``); AOTAutograd's donated
    buffers forbid that, so they are turned off when compiling.
    """

    def __init__(self, module: torch.nn.Module, backend: str = "inductor"):
        import torch._functorch.config as functorch_config

        functorch_config.donated_buffer = False
        self.module = module
        self.compiled = torch.compile(module, dynamic=False, backend=backend)
        self.eager = False

    def __call__(self, *args, **kwargs):
        if self.eager:
            return self.module(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as e:
            from torch._dynamo.exc import RecompileError

            # error_on_recompile (tests): a recompilation is the bug, not a reason to fall back
            if isinstance(e, RecompileError) or not isinstance(e, _compile_errors()):
                raise
            log.warning("torch.compile failed, running the network eagerly: %s", _reason(e))
            self.eager = True
            return self.module(*args, **kwargs)

    def __getattr__(self, name):  # condition_features, training, ... of the module
        return getattr(self.__dict__["module"], name)


def batch_rows(n: int, batch_size: int, static: bool = False):
    """The batches over n rows: (row indices, how many of them are real) per batch.

    With ``static`` (compiled networks), every batch has min(batch_size, n) rows: the last
    one is padded by repeating its last row and the caller drops the padding, so that the
    compiled graph sees one shape per job. Without it, the last batch is short.
    """
    size = min(batch_size, n)
    for start in range(0, n, batch_size):
        real = min(batch_size, n - start)
        rows = torch.arange(start, start + real)
        if static and real < size:
            rows = torch.cat([rows, rows[-1:].expand(size - real)])
        yield rows, real


CPU_AUTO_BATCH = 256  # batch_size: auto on a CPU (memory is rarely what limits it there)


def batch_from_memory(
    per_sample: float, free: float, n: int, fraction: float = 0.8, multiple: int = 8
) -> int:
    """The largest batch of at most n rows whose extra memory, ``per_sample`` bytes a row,
    fits in ``fraction`` of ``free`` bytes; a multiple of ``multiple`` when above it."""
    fits = int(fraction * free // max(per_sample, 1.0))
    if fits < 1:
        raise MemoryError(
            f"one sample needs {per_sample / 2**20:,.0f} MiB but only "
            f"{free / 2**20:,.0f} MiB of GPU memory are free"
        )
    batch = min(n, fits)
    return batch if batch < multiple or batch == n else batch - batch % multiple


def probe_batch(call, n: int, device: torch.device, probe: int = 4) -> int:
    """``batch_size: auto``: the batch that fits the GPU's free memory, from the peak memory
    of ``call(b)`` (one denoiser call of the stage on b rows) at b = probe and 2 probe: the
    growth between them is the per-row cost (the model's own memory cancels out). On a CPU:
    :data:`CPU_AUTO_BATCH` rows. Results depend on the batch (the noise of a batch is drawn
    together), so ``auto`` trades bit-reproducibility across GPU models for throughput."""
    if device.type != "cuda":
        log.info("batch_size auto on a CPU: %d rows per batch", min(n, CPU_AUTO_BATCH))
        return min(n, CPU_AUTO_BATCH)
    peaks = []
    for b in (probe, 2 * probe):
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        call(b)
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
    per_sample = (peaks[1] - peaks[0]) / probe
    if per_sample <= 0:  # allocator noise: charge the whole peak to the rows
        per_sample = peaks[1] / (2 * probe)
    free, _ = torch.cuda.mem_get_info(device)
    batch = batch_from_memory(per_sample, free, n)
    log.info(
        "batch_size auto: %.1f MiB per row, %.0f MiB free -> %d rows per batch",
        per_sample / 2**20,
        free / 2**20,
        batch,
    )
    return batch
