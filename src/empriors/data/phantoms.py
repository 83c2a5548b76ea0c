"""Phantom knee-like volumes written in the fastMRI single-coil h5 format, so the demo and
the tests read them through exactly the code path real fastMRI files take.

Each volume: a smooth random "anatomy" of 4-9 ellipses of varied intensity (one large outer
ellipse, inner structures, some darker), whose radii drift smoothly over the slices, times a
smooth random phase exp(i phi(u, v)) (a low-order polynomial). Per volume and slice:
    image    complex (S, S) = magnitude * exp(i phi)
    kspace   = fft2c(image)                      complex64 (slices, S, S)
    reconstruction_esc = reconstruction_rss = |ifft2c(kspace)| = magnitude, float32
plus the ISMRMRD XML header fields fastmri's SliceDataset reads (encodedSpace and reconSpace
matrix sizes, kspace_encoding_step_1 limits) and the attrs max, norm, acquisition,
patient_id. Real knee files have 640x368 k-space (readout oversampled 2x) and 320x320
reconstructions: with ``kspace_shape=(640, 368)`` the S x S image is zero-padded to that grid
before the FFT and the reconstruction is the centre S x S crop of |ifft2c(kspace)|, as in
the real files; by default k-space is S x S.
"""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import torch

from empriors.data.io import atomic_path

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <encoding>
    <encodedSpace><matrixSize><x>{ex}</x><y>{ey}</y><z>1</z></matrixSize></encodedSpace>
    <reconSpace><matrixSize><x>{n}</x><y>{n}</y><z>1</z></matrixSize></reconSpace>
    <encodingLimits>
      <kspace_encoding_step_1><minimum>0</minimum><maximum>{last}</maximum><center>{centre}</center></kspace_encoding_step_1>
      <kspace_encoding_step_2><minimum>0</minimum><maximum>0</maximum><center>0</center></kspace_encoding_step_2>
    </encodingLimits>
  </encoding>
</ismrmrdHeader>
"""


def phantom_volume(size: int, slices: int, generator: torch.Generator) -> torch.Tensor:
    """Complex volume (slices, size, size), magnitudes in [0, 1]."""

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=generator, dtype=torch.float64)

    grid = torch.linspace(-1, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(grid, grid, indexing="ij")
    count = int(torch.randint(4, 10, (1,), generator=generator))
    centres = torch.cat([torch.zeros(1, 2), u(-0.4, 0.4, count - 1, 2)])
    radii = torch.cat([u(0.6, 0.85, 1, 2), u(0.08, 0.35, count - 1, 2)])
    angles = u(0, math.pi, count)
    values = torch.cat([u(0.4, 0.6, 1), u(-0.35, 0.45, count - 1)])
    drift = u(-0.25, 0.25, count, 2)  # relative radius change from the first to last slice
    coeffs = u(-1.5, 1.5, 6)  # phase: a + b x + c y + d x^2 + e y^2 + f x y
    phase = (
        coeffs[0]
        + coeffs[1] * xx
        + coeffs[2] * yy
        + coeffs[3] * xx**2
        + coeffs[4] * yy**2
        + coeffs[5] * xx * yy
    )
    volume = []
    for s in range(slices):
        z = s / max(slices - 1, 1)
        img = torch.zeros(size, size, dtype=torch.float64)
        for k in range(count):
            c, sn = math.cos(angles[k]), math.sin(angles[k])
            dx, dy = xx - centres[k, 0], yy - centres[k, 1]
            a, b = radii[k] * (1 + drift[k] * z)
            inside = ((c * dx + sn * dy) / a) ** 2 + ((-sn * dx + c * dy) / b) ** 2 <= 1
            img = img + values[k] * inside
        volume.append(img.clamp(0, 1) * torch.exp(1j * phase))
    return torch.stack(volume)


def write_phantom_file(
    path: Path,
    size: int,
    slices: int,
    generator: torch.Generator,
    kspace_shape: tuple[int, int] | None = None,
) -> None:
    """One phantom volume as a fastMRI single-coil h5 file; k-space (slices, *kspace_shape)
    (default (slices, size, size)), reconstructions (slices, size, size)."""
    import fastmri
    from fastmri.data.transforms import complex_center_crop

    kh, kw = kspace_shape or (size, size)
    if kh < size or kw < size:
        raise ValueError(f"k-space {kspace_shape} is smaller than the {size}x{size} image")
    volume = phantom_volume(size, slices, generator)
    top, left = (kh - size) // 2, (kw - size) // 2
    padded = torch.zeros(slices, kh, kw, dtype=volume.dtype)
    padded[:, top : top + size, left : left + size] = volume
    image = torch.view_as_real(padded.to(torch.complex64))
    kspace = torch.view_as_complex(fastmri.fft2c(image).contiguous()).numpy()
    full = fastmri.ifft2c(torch.view_as_real(torch.from_numpy(kspace)))
    recon = fastmri.complex_abs(complex_center_crop(full, (size, size)))
    recon = recon.numpy().astype(np.float32)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("kspace", data=kspace.astype(np.complex64))
        f.create_dataset("reconstruction_esc", data=recon)
        f.create_dataset("reconstruction_rss", data=recon)
        f.create_dataset(
            "ismrmrd_header",
            data=HEADER.format(ex=kh, ey=kw, n=size, last=kw - 1, centre=kw // 2),
        )
        f.attrs["max"] = float(recon.max())
        f.attrs["norm"] = float(np.linalg.norm(recon))
        f.attrs["acquisition"] = "CORPD_FBK"
        f.attrs["patient_id"] = f"phantom{int(torch.randint(10**8, (1,), generator=generator)):08d}"


def write_phantom_dataset(
    folder: Path,
    volumes: int,
    size: int,
    slices: int,
    generator: torch.Generator,
    kspace_shape: tuple[int, int] | None = None,
) -> list[Path]:
    """``volumes`` files file_phantom_{i:03d}.h5 in ``folder``; returns their paths."""
    paths = [Path(folder) / f"file_phantom_{i:03d}.h5" for i in range(volumes)]
    for p in paths:
        write_phantom_file(p, size, slices, generator, kspace_shape)
    return paths
