"""fastMRI knee single-coil volumes -> training slices, validated before anything is written.

Paper (PAPERS.md 1, MRI): ``reconstruction_rss`` slices 10..40 of each volume (31 per volume,
fewer if the volume is shorter), 320x320, each volume divided by its maximum then mapped to
[-2, 2] by 4x - 2. Files are read with h5py; the format is checked first (keys, dtypes,
shapes, attrs, readable data) and any problem raises :class:`MRIDataError` naming the file and
what is wrong. The same files open with fastmri's own SliceDataset (tested on phantoms).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch
from torch import Tensor

REQUIRED_KEYS = ("kspace", "reconstruction_rss", "ismrmrd_header")
REQUIRED_ATTRS = ("max", "norm", "acquisition", "patient_id")


class MRIDataError(ValueError):
    """A fastMRI file is missing, malformed or truncated."""


def check_volume(path: Path, size: tuple[int, int]) -> None:
    """Raise :class:`MRIDataError` unless ``path`` is a readable single-coil fastMRI file
    with (S, H, W) = (S, *size) float32 reconstructions and complex64 k-space of S slices."""
    path = Path(path)
    if not path.is_file():
        raise MRIDataError(f"{path}: file not found")
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in REQUIRED_KEYS if k not in f]
            if missing:
                raise MRIDataError(f"{path}: missing key(s) {missing}; it has {sorted(f)}")
            attrs = [a for a in REQUIRED_ATTRS if a not in f.attrs]
            if attrs:
                raise MRIDataError(f"{path}: missing attribute(s) {attrs}")
            kspace, rss = f["kspace"], f["reconstruction_rss"]
            if kspace.dtype != np.complex64:
                raise MRIDataError(f"{path}: kspace has dtype {kspace.dtype}, expected complex64")
            if rss.dtype != np.float32:
                raise MRIDataError(
                    f"{path}: reconstruction_rss has dtype {rss.dtype}, expected float32"
                )
            if rss.ndim != 3 or tuple(rss.shape[1:]) != tuple(size):
                raise MRIDataError(
                    f"{path}: reconstruction_rss has shape {rss.shape}, expected (slices, "
                    f"{size[0]}, {size[1]})"
                )
            if kspace.ndim != 3 or kspace.shape[0] != rss.shape[0]:
                raise MRIDataError(
                    f"{path}: kspace has shape {kspace.shape} for {rss.shape[0]} slices"
                )
            rss[()]  # reads every byte: a truncated file fails here
    except OSError as e:
        raise MRIDataError(f"{path}: unreadable or truncated HDF5 file ({e})") from e


def load_slices(
    paths: list[Path], first: int, last: int, size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Slices first..last (inclusive) of every volume, scaled per volume: x / max * 4 - 2.
    Returns images (N, H W) float32 and the volume index of each slice (N,). Every file is
    checked before any is used."""
    if not paths:
        raise MRIDataError("no fastMRI files given (expected *.h5 files in the data folder)")
    for p in paths:
        check_volume(p, size)
    images, volume = [], []
    for i, p in enumerate(paths):
        with h5py.File(p, "r") as f:
            rss = f["reconstruction_rss"][()]
        picked = rss[first : last + 1]
        if len(picked) == 0:
            raise MRIDataError(f"{p}: {len(rss)} slices, none in {first}..{last}")
        scale = rss.max()
        if not np.isfinite(rss).all() or scale <= 0:
            raise MRIDataError(f"{p}: reconstruction_rss has non-finite or all-zero values")
        images.append(torch.from_numpy(picked / scale * 4 - 2).reshape(len(picked), -1))
        volume.append(torch.full((len(picked),), i))
    return torch.cat(images).to(torch.float32), torch.cat(volume)
