"""Mid-job resume of batched sampling (E-step shards, evaluation sampling jobs).

A long sampling job draws its batches from one seeded generator, in order. After every
finished batch it saves the batches so far and the generator's state, atomically, to a file
outside the job's declared outputs (``results/{exp}/.resume/``, as the M-step's training
state). A rerun with the same fingerprint (inputs, settings, seed, batch size) loads them,
restores the generator and continues with the next batch, so its output has the same bytes as
an uninterrupted run. A state with another fingerprint is ignored with a warning; the stage
deletes the file once its output is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from empriors.data.io import ArtifactError, atomic_torch_save, load_checkpoint, sha256

log = logging.getLogger(__name__)


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
        if not self.path.exists():
            return []
        try:
            state = load_checkpoint(self.path)
        except ArtifactError as e:
            log.warning("ignoring resume state %s: %s", self.path, e)
            return []
        if (state.get("fingerprint"), state.get("batch_size")) != (self.fingerprint, batch_size):
            log.warning(
                "ignoring resume state %s: it was made from other inputs or settings", self.path
            )
            return []
        generator.set_state(state["generator"])
        batches = list(state["batches"])
        log.info("resumed sampling from %s after %d finished batch(es)", self.path, len(batches))
        return batches

    def save(self, batches: list[Tensor], generator: torch.Generator, batch_size: int) -> None:
        atomic_torch_save(
            {
                "fingerprint": self.fingerprint,
                "batch_size": batch_size,
                "generator": generator.get_state(),
                "batches": batches,
            },
            self.path,
        )

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
