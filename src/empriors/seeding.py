"""Deterministic seeds derived from (config seed, experiment, stage, iteration, shard).

Python's built-in ``hash`` is salted per process, so seeds are derived with SHA-256 instead:
the same parts always give the same 63-bit integer on every machine.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """Stable 63-bit seed from printable parts, e.g. ``(0, "manifold", "estep", 3, 1)``."""
    text = "/".join(repr(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(*parts: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of ``parts``."""
    g = torch.Generator()
    g.manual_seed(derive_seed(*parts))
    return g
