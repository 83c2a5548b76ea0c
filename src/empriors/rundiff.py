"""Content equality of two runs: ``python -m empriors diff RUN_A RUN_B``.

Two runs of the same config and code, one of them killed and resumed, or both uninterrupted,
write files whose *content* is identical but whose *bytes* differ: every artifact carries its
provenance, and provenance records when and where it was made. This module compares what a
result is, and ignores only what records how a run went:

- provenance ``started``, ``finished`` (times), ``host`` and ``attempts`` (the run's history),
  and the SHA-256 values of its ``inputs`` (the input paths must agree): those inputs hold
  provenance times themselves, and they are compared as files of their own;
- the timing columns of CSV and JSON results (:data:`TIMING_FIELDS`);
- DVC records' hashes and sizes (``md5``, ``size``): they hash bytes, times included; paths
  and file counts must agree, and ``dvc status`` checks each hash against its workspace;
- ``logs/`` folders, and in a lineage listing (``lineage.txt``) its hosts, times, input hashes and
  attempts (the same history as the provenance records it prints).

Everything else must be equal: HDF5 datasets byte for byte (dtype and shape included) and
their attributes, checkpoint tensors with ``torch.equal``, JSON values, CSV cells, figures and
any other file byte for byte, and the two runs' sets of files.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

VOLATILE_PROVENANCE = ("started", "finished", "host", "attempts")
TIMING_FIELDS = frozenset({"wall_s", "job_hours", "gpu_hours", "ms_per_step"})
SKIPPED_FOLDERS = frozenset({"logs"})


def normalise_provenance(prov: dict | str) -> dict:
    """A provenance record without its run history (see the module docstring)."""
    prov = json.loads(prov) if isinstance(prov, str) else dict(prov)
    for key in VOLATILE_PROVENANCE:
        prov.pop(key, None)
    if isinstance(prov.get("inputs"), dict):
        prov["inputs"] = sorted(prov["inputs"])
    return prov


def _values_differ(a, b, where: str) -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            yield f"{where}: keys {sorted(a.keys() ^ b.keys())} in one run only"
        for key in [k for k in a if k in b]:
            if key == "provenance":
                a_key, b_key = normalise_provenance(a[key]), normalise_provenance(b[key])
            elif key in TIMING_FIELDS:
                continue
            else:
                a_key, b_key = a[key], b[key]
            yield from _values_differ(a_key, b_key, f"{where}[{key}]")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            yield f"{where}: {len(a)} against {len(b)} items"
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _values_differ(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            shapes = f"{a.dtype} {tuple(a.shape)}, {b.dtype} {tuple(b.shape)}"
            yield f"{where}: tensors differ ({shapes})"
    elif isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
            yield f"{where}: arrays differ ({a.dtype} {a.shape}, {b.dtype} {b.shape})"
    elif isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return
    elif type(a) is not type(b) or a != b:
        yield f"{where}: {a!r:.80} against {b!r:.80}"


def _h5_content(path: Path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[f"dataset {name}"] = obj[()]
            for key, value in obj.attrs.items():
                out[f"attr {name}:{key}"] = value.tolist() if hasattr(value, "tolist") else value

        visit("/", f)
        f.visititems(visit)
    prov = out.pop("attr /:provenance", None)
    if prov is not None:
        out["provenance"] = prov
    return out


def _csv_content(path: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rows]


def _dvc_content(path: Path) -> dict:
    record = yaml.safe_load(path.read_text())
    for out in record.get("outs", []):
        for key in ("md5", "size", "hash"):
            out.pop(key, None)
    return record


# lineage.txt (python -m empriors lineage): the same run history as the provenance records
LINEAGE_VOLATILE = re.compile(r"host=\S+ \S+ -> \S+|sha256=[0-9a-f]+|^[ \t]*attempts: .*\n?", re.M)


def _lineage_content(path: Path) -> str:
    """A lineage listing without hosts, times, input hashes and attempts."""
    return LINEAGE_VOLATILE.sub("", path.read_text())


READERS = {
    ".h5": _h5_content,
    ".pt": lambda p: torch.load(p, map_location="cpu", weights_only=True),
    ".json": lambda p: json.loads(p.read_text()),
    ".csv": _csv_content,
    ".dvc": _dvc_content,
}
NAMED_READERS = {"lineage.txt": _lineage_content}  # by file name: other .txt stay bytes


def file_differences(a: Path, b: Path, name: str = "") -> list[str]:
    """How the content of files ``a`` and ``b`` differs (empty: equal)."""
    name = name or str(b)
    reader = NAMED_READERS.get(a.name) or READERS.get(a.suffix)
    if reader is None:
        return [] if a.read_bytes() == b.read_bytes() else [f"{name}: bytes differ"]
    try:
        return list(_values_differ(reader(a), reader(b), name))
    except Exception as e:  # unreadable in one run: a difference, not a crash
        return [f"{name}: cannot compare ({type(e).__name__}: {e})"]


def _files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and not SKIPPED_FOLDERS & set(p.relative_to(root).parts[:-1])
    }


def run_differences(a: str | Path, b: str | Path) -> list[str]:
    """How two results folders (or two files) differ in content (empty: equal)."""
    a, b = Path(a), Path(b)
    for p in (a, b):
        if not p.exists():
            raise FileNotFoundError(f"nothing to compare: {p} does not exist")
    if a.is_file() or b.is_file():
        return file_differences(a, b)
    ours, theirs = _files(a), _files(b)
    out = [f"{name}: only in {a}" for name in sorted(ours - theirs)]
    out += [f"{name}: only in {b}" for name in sorted(theirs - ours)]
    for name in sorted(ours & theirs):
        out += file_differences(a / name, b / name, name)
    return out
