"""MRI foundations: phantoms in the real fastMRI format, the validated loader, the k-space
column-mask operator and the paper's masks."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch

from empriors.data.fastmri import MRIDataError, load_slices
from empriors.data.phantoms import write_phantom_dataset
from empriors.operators import KSpaceColumnMask, operator_from_parameters


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    folder = tmp_path_factory.mktemp("knee")
    return write_phantom_dataset(folder, 2, 32, 12, torch.Generator().manual_seed(0))


def test_fastmri_slice_dataset_opens_the_phantoms(phantoms):
    from fastmri.data import SliceDataset

    ds = SliceDataset(phantoms[0].parent, challenge="singlecoil")
    assert len(ds) == 2 * 12
    kspace, mask, target, attrs, fname, index = ds[3]
    assert kspace.shape == (32, 32) and kspace.dtype == np.complex64
    assert target.shape == (32, 32) and mask is None
    assert attrs["encoding_size"] == (32, 32, 1) and attrs["recon_size"] == (32, 32, 1)
    assert {"max", "norm", "acquisition", "patient_id"} <= set(attrs)
    # the stored reconstruction is |ifft2c(kspace)|, as in real single-coil files
    import fastmri

    rebuilt = fastmri.complex_abs(fastmri.ifft2c(torch.view_as_real(torch.from_numpy(kspace))))
    assert torch.allclose(rebuilt, torch.from_numpy(target), atol=1e-5)


def test_loader_selects_slices_and_scales_per_volume(phantoms):
    x, volume = load_slices(phantoms, 2, 9, (32, 32))
    assert x.shape == (16, 32 * 32) and x.dtype == torch.float32
    assert volume.tolist() == [0] * 8 + [1] * 8
    for v in (0, 1):  # each volume's maximum maps to 2 (unless it lies outside 2..9)
        assert x[volume == v].max() <= 2 + 1e-6 and x[volume == v].min() >= -2 - 1e-6
    with h5py.File(phantoms[0]) as f:
        rss = f["reconstruction_rss"][()]
    expected = torch.from_numpy(rss[2:10] / rss.max() * 4 - 2).reshape(8, -1).float()
    assert torch.allclose(x[:8], expected)


def _broken_copy(src, dst, edit):
    shutil.copy(src, dst)
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda f: f.__delitem__("reconstruction_rss"), "missing key.*reconstruction_rss"),
        (lambda f: f.attrs.__delitem__("patient_id"), "missing attribute.*patient_id"),
        (
            lambda f: (
                f.__delitem__("reconstruction_rss"),
                f.create_dataset("reconstruction_rss", data=np.zeros((12, 32, 32))),
            ),
            "dtype float64, expected float32",
        ),
        (
            lambda f: (
                f.__delitem__("kspace"),
                f.create_dataset("kspace", data=np.zeros((12, 32, 32), np.complex128)),
            ),
            "kspace has dtype complex128",
        ),
    ],
)
def test_loader_rejects_malformed_files_naming_them(phantoms, tmp_path, edit, message):
    bad = _broken_copy(phantoms[1], tmp_path / "bad.h5", edit)
    with pytest.raises(MRIDataError, match=message) as e:
        load_slices([phantoms[0], bad], 0, 11, (32, 32))
    assert "bad.h5" in str(e.value)


def test_loader_rejects_a_truncated_file(phantoms, tmp_path):
    data = phantoms[1].read_bytes()
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(MRIDataError, match="truncated.h5.*(unreadable|truncated)"):
        load_slices([bad], 0, 11, (32, 32))


def test_kspace_operator_adjoint_and_roundtrip(g):
    op = KSpaceColumnMask.random(6, (16, 20), 4, g).to(dtype=torch.float64)
    x = torch.randn(6, 320, generator=g, dtype=torch.float64)
    y = torch.randn(6, 640, generator=g, dtype=torch.float64)
    assert abs((op(x) * y).sum() - (x * op.adjoint(y)).sum()) < 1e-10
    rebuilt = operator_from_parameters("kspace_columns", op.parameters())
    assert torch.equal(rebuilt(x.float()), op.to(dtype=torch.float32)(x.float()))


def test_zero_filled_reconstruction_of_full_sampling_is_exact(g):
    full = KSpaceColumnMask(torch.ones(3, 24), (24, 24))
    x = torch.randn(3, 24 * 24, generator=g)
    assert torch.allclose(full.zero_filled(full(x)), x, atol=1e-5)


@pytest.mark.parametrize("r", [4, 6, 8, 16, 32])
def test_masks_keep_one_over_r_and_always_the_centre_band(g, r):
    op = KSpaceColumnMask.random(4000, (320, 320), r, g)
    assert abs(op.masks.mean().item() * r - 1) < 0.03
    half = -(-60 // r)  # ceil(60 / r): the paper's band [160 - ceil(60/r), 160 + ceil(60/r))
    assert bool(op.masks[:, 160 - half : 160 + half].all())
