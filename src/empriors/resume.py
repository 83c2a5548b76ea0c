"""Mid-job resume of batched sampling (E-step shards, evaluation sampling jobs).

A long sampling job draws its batches from one seeded generator, in order. After every
finished batch it saves the batches so far and the generator's state, atomically, to a file
outside the job's declared outputs (``results/{exp}/.resume/``, as the M-step's training
state). A rerun with the same fingerprint (inputs, settings, seed, batch size) loads them,
restores the generator and continues with the next batch, so its samples equal an
uninterrupted run's bit for bit (the file differs only in its provenance times). A state with
another fingerprint is ignored with a warning; the stage deletes the file once its output is
written.

:class:`ResumableBatches` is the loop's side of it: it skips the finished batches, saves after
each new one and, on SLURM's warning signal or SIGTERM (:mod:`empriors.preemption`), stops the
job right after that save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from empriors import preemption
from empriors.data.io import ArtifactError, atomic_torch_save, load_checkpoint, now, sha256

log = logging.getLogger(__name__)


# The attempts of the jobs this process runs, by resume path: where each began (``step`` of
# an M-step, ``batch`` of a sampling job), when (UTC) and on which host. A job's resume state
# carries the earlier attempts; the stage writes the list into its output's provenance.
_ATTEMPTS: dict[str, list[dict]] = {}


def new_attempt(path: str | Path, earlier: list[dict], **where) -> list[dict]:
    """Record this process's attempt at the job whose resume state is ``path``, after the
    ``earlier`` ones (from the state it continues; [] for a fresh start)."""
    attempts = [*earlier, {**where, "started": now(), "host": socket.gethostname()}]
    _ATTEMPTS[str(path)] = attempts
    if earlier:
        log.info("attempt %d of this job; earlier: %s", len(attempts), describe(earlier))
    return attempts


def attempts(path: str | Path) -> list[dict]:
    """The attempts recorded for the job whose resume state is ``path`` ([] if none)."""
    return list(_ATTEMPTS.get(str(path), []))


def describe(attempts: list[dict]) -> str:
    """One line: where, when and on which host each attempt began."""
    parts = []
    for a in attempts:
        where = ", ".join(f"{k} {a[k]}" for k in ("step", "batch") if k in a)
        parts.append(f"{where} at {a.get('started', '?')} on {a.get('host', '?')}")
    return "; ".join(parts)


def fingerprint(inputs: list[str | Path], **settings) -> str:
    """SHA-256 of the input files' checksums and of the (JSON-able) settings."""
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(sha256(path).encode())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class BatchResume:
    """The resume file of one sampling job (``path``) and what it must have been made from."""

    path: Path
    fingerprint: str

    def load(self, generator: torch.Generator, batch_size: int) -> list[Tensor]:
        """The finished batches of an interrupted run with this fingerprint, with
        ``generator`` set to the state after them; [] (generator untouched) otherwise."""
        state = self._matching_state(batch_size)
        if state is None:
            new_attempt(self.path, [], batch=0)
            return []
        generator.set_state(state["generator"])
        batches = list(state["batches"])
        log.info("resumed sampling from %s after %d finished batch(es)", self.path, len(batches))
        new_attempt(self.path, list(state.get("attempts", [])), batch=len(batches))
        return batches

    def _matching_state(self, batch_size: int) -> dict | None:
        if not self.path.exists():
            return None
        try:
            state = load_checkpoint(self.path)
        except ArtifactError as e:
            log.warning("ignoring resume state %s: %s", self.path, e)
            return None
        if (state.get("fingerprint"), state.get("batch_size")) != (self.fingerprint, batch_size):
            log.warning(
                "ignoring resume state %s: it was made from other inputs or settings", self.path
            )
            return None
        return state

    def save(self, batches: list[Tensor], generator: torch.Generator, batch_size: int) -> None:
        atomic_torch_save(
            {
                "fingerprint": self.fingerprint,
                "batch_size": batch_size,
                "generator": generator.get_state(),
                "batches": batches,
                "attempts": attempts(self.path),
            },
            self.path,
        )

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class ResumableBatches:
    """The batches of one sampling job, as a context for its loop::

        with ResumableBatches(batches, resume, generator, batch_size) as job:
            for rows, real in job.remaining():
                job.finish(draw(rows)[:real])
        samples = job.result()

    ``batches``: the job's (rows, real) batches in order; ``resume`` (or None: nothing is
    saved) holds the finished ones. Inside the context a stop signal waits for the end of the
    current batch: :meth:`finish` saves, then stops the job (:class:`preemption.Preempted`)."""

    def __init__(
        self,
        batches: list,
        resume: BatchResume | None,
        generator: torch.Generator,
        batch_size: int,
    ):
        self.batches, self.resume = batches, resume
        self.generator, self.batch_size = generator, batch_size
        self.out: list[Tensor] = resume.load(generator, batch_size) if resume is not None else []
        self._deferred = preemption.deferred()

    def __enter__(self) -> ResumableBatches:
        self._deferred.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._deferred.__exit__(*exc)

    @property
    def done(self) -> int:
        return len(self.out)

    def remaining(self) -> list:
        """The batches no earlier run finished."""
        return self.batches[len(self.out) :]

    def finish(self, samples: Tensor) -> None:
        """Record one batch's samples; save the state unless it was the last batch."""
        self.out.append(samples)
        if len(self.out) == len(self.batches):
            return  # complete: the stage writes its output next, even after a stop signal
        if self.resume is not None:
            self.resume.save(self.out, self.generator, self.batch_size)
        kept = f", saved to {self.resume.path}" if self.resume is not None else ""
        preemption.stop_if_requested(f"after batch {len(self.out)} of {len(self.batches)}{kept}")

    def result(self) -> Tensor:
        return torch.cat(self.out)
