"""CIFAR-10 from the standard python archive ``cifar-10-python.tar.gz`` placed in data/.

Never downloaded: the archive (https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz,
170,498,071 bytes) is checked by MD5 and read in place with tarfile + pickle. Each batch is a
pickled dict with b"data" (10000, 3072) uint8, rows = [R plane | G plane | B plane] of a
32x32 image, and b"labels". Pixels map to [-2, 2] as the paper: x * 4 / 256 - 2.

Images are returned flat, (N, 3 * 32 * 32) in (C, H, W) order, as the pipeline's signals.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
SHAPE = (3, 32, 32)
SPLITS = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
}


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_archive(path: Path, md5: str | None = CIFAR10_MD5) -> None:
    """Clear errors for a missing archive or one whose checksum is not ``md5`` (default:
    :data:`CIFAR10_MD5`, the official archive's; another CIFAR-format archive names its own,
    ``data.md5``; None: not checked, with a warning)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"CIFAR-10 archive not found at {path}. Download cifar-10-python.tar.gz from "
            f"{CIFAR10_URL}, check that `md5sum` prints {md5 or CIFAR10_MD5}, and place it "
            "there (this tool never downloads at run time)."
        )
    if md5 is None:
        log.warning("data.md5 is null: the checksum of %s is not checked", path)
        return
    actual = file_md5(path)
    if actual != md5:
        raise ValueError(
            f"CIFAR-10 archive {path} has MD5 {actual}, expected {md5}: the file is corrupt, "
            f"truncated or not the python version of CIFAR-10. Download cifar-10-python.tar.gz "
            f"again from {CIFAR10_URL}, check that `md5sum` prints {md5}, and replace the "
            "file (the results of earlier runs are kept; rerun the same command). Another "
            "archive in the CIFAR-10 python format: set data.md5 to its checksum."
        )


def _read_batch(archive: tarfile.TarFile, name: str) -> np.ndarray:
    member = next((m for m in archive.getmembers() if m.name.endswith(f"/{name}")), None)
    if member is None:
        raise ValueError(f"CIFAR-10 archive {archive.name} has no batch {name!r}")
    with archive.extractfile(member) as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"CIFAR-10 batch {name!r} in {archive.name}: expected uint8 (N, 3072) data, "
            f"got {data.dtype} {data.shape}"
        )
    return data


def load_cifar10(path: Path, split: str = "train", md5: str | None = CIFAR10_MD5) -> Tensor:
    """(N, 3072) float32 in [-2, 2] for split "train" (50,000), "test" (10,000) or "all";
    ``md5``: the archive's expected checksum (None: not checked)."""
    if split not in (*SPLITS, "all"):
        raise ValueError(f"unknown CIFAR-10 split {split!r}; use train, test or all")
    check_archive(path, md5)
    names = SPLITS["train"] + SPLITS["test"] if split == "all" else SPLITS[split]
    with tarfile.open(path, "r:gz") as archive:
        data = np.concatenate([_read_batch(archive, n) for n in names])
    return torch.from_numpy(data).to(torch.float32) * 4 / 256 - 2
