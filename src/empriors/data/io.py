"""Artifact I/O: HDF5 arrays and torch checkpoints, written atomically with provenance.

Atomic: every file is written to a temporary name in the destination folder and moved into
place with os.replace, so a killed job never leaves a file that looks finished.

Provenance (a JSON dict stored as the HDF5 attribute ``provenance`` or the checkpoint key
``provenance``): stage, config subset, sha256 of every input file, code version, seed, host,
start and end time. :func:`lineage` walks it back to the raw observations.
"""

from __future__ import annotations

import datetime as dt
import errno
import hashlib
import json
import os
import socket
from collections.abc import Iterable
from contextlib import contextmanager
from functools import cache
from glob import escape as glob_escape
from pathlib import Path

import h5py
import numpy as np
import torch

import empriors


class ArtifactError(RuntimeError):
    """A missing, truncated or invalid artifact, with a message naming the file."""


_CHECKSUMS: dict[tuple[str, int, int], str] = {}


def sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read once per (path, size, mtime) in a process: a stage
    that fingerprints its inputs for a resume state and records them in its provenance
    reads a GB-sized observations file once, not twice."""
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _CHECKSUMS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
        _CHECKSUMS[key] = h.hexdigest()
    return _CHECKSUMS[key]


@cache
def code_version() -> str:
    """Package version plus a digest of the package's source files (no git call in jobs)."""
    root = Path(empriors.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return f"{empriors.__version__}+src.{h.hexdigest()[:12]}"


def now() -> str:
    """UTC time stamp to the millisecond: job durations (compare.py) of sub-second jobs
    (a Gaussian q0 fit on small data) must not round to zero."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def provenance(stage: str, config: dict, inputs: Iterable[str | Path], seed: int | None,
               started: str) -> dict:
    """The provenance record of an artifact produced now from ``inputs``."""
    return {
        "stage": stage,
        "config": config,
        "inputs": {str(p): sha256(p) for p in inputs},
        "code_version": code_version(),
        "seed": seed,
        "host": socket.gethostname(),
        "started": started,
        "finished": now(),
    }


@contextmanager
def atomic_path(path: str | Path, suffix: str = ""):
    """A temporary path beside ``path`` (``.NAME.tmp`` + ``suffix``) that becomes ``path`` by
    os.replace when the block ends without an exception.

    The name is fixed, one per target (one job writes a target at a time), so a write killed
    by SIGKILL leaves at most one temp file, which the target's next write removes; the old
    random names (``.NAME.XXXX.tmp``) are removed then too. DVC and git ignore both."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{suffix}")
    for stale in [tmp, *path.parent.glob(f".{glob_escape(path.name)}.*.tmp")]:
        stale.unlink(missing_ok=True)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise ArtifactError(
                f"cannot write {path}: {e.strerror} (is {path.parent} read-only?)"
            ) from e
        raise


def atomic_torch_save(obj: dict, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: str | Path, payload: dict, prov: dict) -> None:
    """torch.save of ``payload`` (tensors, numbers, strings) plus its provenance, atomically."""
    atomic_torch_save({**payload, "provenance": json.dumps(prov, sort_keys=True)}, path)


def load_checkpoint(path: str | Path) -> dict:
    """torch.load(weights_only=True) with a clear error for missing or truncated files."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, wrong format, unsafe pickle
        raise ArtifactError(f"cannot read checkpoint {path}: {e}") from e


def write_h5(path: str | Path, arrays: dict[str, np.ndarray | torch.Tensor], prov: dict,
             attrs: dict | None = None) -> None:
    """Write named arrays (and scalar attrs) to HDF5 atomically, with provenance."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for name, value in arrays.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().cpu().numpy()
            f.create_dataset(name, data=value)
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        f.attrs["provenance"] = json.dumps(prov, sort_keys=True)


def read_h5(path: str | Path, names: Iterable[str], check_finite: bool = True
            ) -> tuple[dict[str, torch.Tensor], dict]:
    """Read arrays as tensors and the file's attrs; clear errors for missing files or keys,
    truncated files and NaN/Inf values."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            missing = [n for n in names if n not in f]
            if missing:
                raise ArtifactError(f"{path} lacks datasets {missing}; it has {sorted(f)}")
            arrays = {n: torch.from_numpy(f[n][()]) for n in names}
            attrs = dict(f.attrs)
    except OSError as e:
        raise ArtifactError(f"cannot read HDF5 file {path} (truncated or not HDF5?): {e}") from e
    if check_finite:
        for n, a in arrays.items():
            if a.is_floating_point() and not torch.isfinite(a).all():
                raise ArtifactError(f"{path}: dataset {n!r} contains NaN or Inf")
    return arrays, attrs


ARTIFACT_SUFFIXES = (".h5", ".hdf5", ".json", ".pt")


def read_provenance(path: str | Path) -> dict:
    """The provenance dict of an HDF5 file, a JSON result or a checkpoint made by a stage.
    Raises :class:`ArtifactError` for a file without one (raw data, an archive)."""
    path = Path(path)
    try:
        if path.suffix in (".h5", ".hdf5"):
            with h5py.File(path, "r") as f:
                return json.loads(f.attrs["provenance"])
        if path.suffix == ".json":
            return json.loads(path.read_text())["provenance"]
        if path.suffix == ".pt":
            return json.loads(load_checkpoint(path)["provenance"])
    except (KeyError, OSError, TypeError, ValueError) as e:
        raise ArtifactError(f"{path} has no readable provenance ({type(e).__name__}: {e})") from e
    raise ArtifactError(f"{path} has no provenance: not an artifact of this workflow")


def _external_input(path: Path) -> str:
    """A leaf of the lineage: a file no stage made (raw data, an archive), with its size,
    SHA-256 and, where a .dvc record tracks it, its DVC md5."""
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        return f"[external folder] {len(files)} files, {sum(p.stat().st_size for p in files)} bytes"
    text = f"[external input] {path.stat().st_size} bytes sha256={sha256(path)[:16]}"
    record = path.with_name(path.name + ".dvc")
    if record.exists():
        import yaml  # DVC's format; only read here

        outs = (yaml.safe_load(record.read_text()) or {}).get("outs") or [{}]
        text += f" dvc md5={outs[0].get('md5', '?')}"
    return text


def lineage(path: str | Path) -> list[str]:
    """Lines describing ``path``'s chain of inputs back to the observations and the raw data.

    Each artifact is listed once (depth-first), with its stage, seed, config and whether each
    input still has the checksum recorded when the artifact was made. Files no stage made (the
    raw fastMRI files, the CIFAR-10 archive) are the leaves, with their size and hashes.
    """
    lines: list[str] = []
    seen: set[str] = set()

    def visit(p: Path, depth: int):
        pad = "  " * depth
        key = str(p)
        if key in seen:
            lines.append(f"{pad}{p}  (listed above)")
            return
        seen.add(key)
        if not p.exists():
            lines.append(f"{pad}{p}  MISSING")
            return
        if p.is_dir() or p.suffix not in ARTIFACT_SUFFIXES:
            lines.append(f"{pad}{p}  {_external_input(p)}")
            return
        try:
            prov = read_provenance(p)
        except ArtifactError as e:  # e.g. a fastMRI file: an .h5 no stage wrote
            lines.append(f"{pad}{p}  {_external_input(p)} (no provenance: {e})")
            return
        lines.append(f"{pad}{p}  [{prov['stage']}] seed={prov['seed']} code={prov['code_version']}"
                     f" host={prov['host']} {prov['started']} -> {prov['finished']}")
        lines.append(f"{pad}  config: {json.dumps(prov['config'], sort_keys=True)}")
        if len(prov.get("attempts", [])) > 1:  # killed or preempted, then resumed
            from empriors.resume import describe

            lines.append(f"{pad}  attempts: {len(prov['attempts'])} ({describe(prov['attempts'])})")
        for inp, digest in prov["inputs"].items():
            ip = Path(inp)
            status = "ok" if ip.exists() and sha256(ip) == digest else (
                "MISSING" if not ip.exists() else "CHANGED since use")
            lines.append(f"{pad}  input {inp} sha256={digest[:16]} ({status})")
        for inp in prov["inputs"]:
            visit(Path(inp), depth + 1)

    visit(Path(path), 0)
    return lines
