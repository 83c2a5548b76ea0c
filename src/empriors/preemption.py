"""Stop a stage cleanly on SLURM's warning signal (SIGUSR1) or on SIGTERM, keeping its work.

The slurm profile asks SLURM for SIGUSR1 five minutes before a job's time limit
(``--signal=USR1@300``); SLURM also sends SIGTERM (then SIGKILL after its KillWait) at the limit,
on preemption and on a plain ``scancel``. Every stage installs :func:`install` at start:

- Outside a long loop a stop signal raises :class:`Preempted` at once: the stage exits with
  :data:`EXIT_STATUS`, and its atomic writes leave nothing half-written.
- Long loops (M-step training, batched sampling) run inside :func:`deferred`: the signal only
  records the request; at its next safe point (the end of a training step or of a batch) the
  loop saves its resume state and calls :func:`stop_if_requested`, which raises
  :class:`Preempted`. A rerun, or Snakemake's ``retries`` in the next allocation, continues
  from that state. A long loop's warning lead must exceed one step or batch (the progress bars
  show their time).

The Snakefile makes Snakemake and the rules' shells survive the signals so that the stage,
not its parents, decides when the job ends (see the comment there).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
EXIT_STATUS = 75  # EX_TEMPFAIL: try again later (any non-zero status makes Snakemake retry)

_requested: int | None = None  # the stop signal received, if any
_deferring = 0  # depth of deferred() sections


class Preempted(Exception):
    """A stop signal arrived; the stage saved what it could and must exit. ``signum`` None:
    the signal reached another rank of a multi-process M-step."""

    def __init__(self, signum: int | None, where: str = ""):
        self.signum = signum
        name = signal.Signals(signum).name if signum else "another rank's stop signal"
        super().__init__(f"stopped by {name}" + (f" {where}" if where else ""))


def _on_signal(signum: int, frame) -> None:
    global _requested
    _requested = signum
    if not _deferring:
        raise Preempted(signum)


def install() -> None:
    """Catch SIGUSR1 and SIGTERM in this process (a stage's main thread), also where the
    parent left them ignored."""
    global _requested
    _requested = None
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_signal)


def requested() -> bool:
    """Whether a stop signal has arrived."""
    return _requested is not None


def stop_if_requested(where: str = "") -> None:
    """Raise :class:`Preempted` if a stop signal has arrived (call after saving state)."""
    if _requested is not None:
        raise Preempted(_requested, where)


@contextmanager
def deferred() -> Iterator[None]:
    """A section whose stop signals wait for :func:`stop_if_requested` at a safe point. A
    signal that arrived before the section raises on entry."""
    global _deferring
    stop_if_requested()
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
