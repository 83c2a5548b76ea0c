"""Data-parallel M-steps: N processes (one per GPU) inside one SLURM job, started by torchrun.

For ``mstep.gpus: N`` > 1 the mstep rule passes ``--processes N``, and the stage restarts
itself as ``torchrun --standalone --nnodes 1 --nproc-per-node N -m empriors mstep ...``
(:func:`launch`); torchrun sets RANK, LOCAL_RANK and WORLD_SIZE, which
:func:`from_environment` reads. Each rank draws the same global batch of B rows (the same
seeded generator on every rank: indices, augmentation, t and z), keeps rows
[r B/N, (r + 1) B/N), and DistributedDataParallel averages the gradients, so every optimizer
step equals the 1-process step on the whole global batch up to float summation order. Rank 0
alone writes the resume state and the checkpoint. On a CPU (device cpu) the ranks are gloo
processes, which is how the tests run a 2-rank M-step without GPUs.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist


class DistributedError(RuntimeError):
    """A multi-process M-step that cannot start as configured."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: rank r of ``world`` processes (``local`` on its node)."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes outputs and resume states (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def rows(self, batch: int) -> slice:
        """This rank's rows of a global batch of ``batch`` rows."""
        if batch % self.world:
            raise DistributedError(
                f"mstep.batch_size {batch} is not divisible by the {self.world} processes"
            )
        per = batch // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar over the ranks (every rank gets it)."""
        if not self.distributed:
            return value
        value = value.detach().clone()
        dist.all_reduce(value)
        return value / self.world

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.distributed:
            dist.barrier()


SINGLE = Ranks()


def launch(processes: int, argv: list[str]) -> None:
    """Restart this command (``python`` + ``argv``) under torchrun with ``processes``
    processes on this node, one per GPU; return at once for one process or when torchrun
    started this one. The process becomes torchrun (exec: same PID), so a signal to the job
    reaches every rank."""
    if processes < 1:
        raise DistributedError(f"--processes must be >= 1, got {processes}")
    world = os.environ.get("WORLD_SIZE")
    if world is not None:
        if int(world) != processes:
            raise DistributedError(
                f"started by torchrun with {world} processes but --processes is {processes}"
            )
        return
    if processes == 1:
        return
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1"]
    run += ["--nproc-per-node", str(processes), *argv]
    sys.stderr.flush()
    # torchrun itself ignores SLURM's warning signal, which reaches every rank directly; the
    # ranks save and stop together (empriors.preemption), then torchrun exits with them
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    os.execv(sys.executable, run)


def from_environment(device: torch.device) -> tuple[Ranks, torch.device]:
    """The ranks torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK), with the process group
    initialised (NCCL on CUDA, gloo on a CPU) and this rank's device; one process without
    them. Raises :class:`DistributedError` before any work when there are fewer GPUs than
    processes on this node."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return SINGLE, device
    ranks = Ranks(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if device.type == "cuda":
        visible = torch.cuda.device_count()
        if visible < local_world:
            raise DistributedError(
                f"mstep.gpus asks for {local_world} processes on this node but only {visible} "
                "GPU(s) are visible; lower mstep.gpus or request more GPUs"
            )
        device = torch.device("cuda", ranks.local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(
            "nccl" if device.type == "cuda" else "gloo",
            rank=ranks.rank,
            world_size=world,
            timeout=datetime.timedelta(minutes=30),
        )
    return ranks, device


def wrap(module: torch.nn.Module, ranks: Ranks, device: torch.device) -> torch.nn.Module:
    """``module`` in DistributedDataParallel when there are several ranks (rank 0's
    weights are broadcast at construction), else ``module``."""
    if not ranks.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def finish(ranks: Ranks) -> None:
    """Wait for every rank, then close the process group."""
    if ranks.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
