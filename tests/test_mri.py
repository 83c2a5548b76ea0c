"""MRI foundations: phantoms in the real fastMRI format, the validated loader, the k-space
column-mask operator and the paper's masks."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
import yaml
from workflow_support import REPO

from empriors.data.fastmri import MRIDataError, load_slices
from empriors.data.phantoms import write_phantom_dataset
from empriors.metrics.reconstruction import psnr_ssim, reconstruct_held_out, scores
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


def _smooth_images(n: int, size: int, g) -> torch.Tensor:
    """Blurred random images in [-2, 2] (N, size^2): structure for SSIM to see."""
    x = torch.nn.functional.avg_pool2d(torch.rand(n, 1, size, size, generator=g), 5, 1, 2)
    x = (x - x.amin()) / (x.amax() - x.amin())
    return (4 * x - 2).flatten(1).double()


def test_psnr_follows_the_unit_scale_mse_and_ssim_is_one_for_the_truth(g):
    truth = _smooth_images(3, 24, g)
    noise = 0.4 * torch.randn(truth.shape, generator=g, dtype=torch.float64)
    psnr, ssim = psnr_ssim(truth, truth + noise, (24, 24))
    expected = (10 * torch.log10(1 / ((noise / 4) ** 2).mean(1))).mean().item()
    assert psnr == pytest.approx(expected, abs=1e-6)
    assert ssim < 0.9
    assert psnr_ssim(truth, truth.clone() + 1e-9, (24, 24))[1] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.filterwarnings("ignore:divide by zero")  # the oracle's PSNR is inf
def test_held_out_reconstructions_reuse_observations_and_score_against_zero_filled(g):
    truth = _smooth_images(4, 32, g)
    calls = []

    def zero_filled(op, y, r):  # a "posterior" that returns the baseline itself
        calls.append((op.masks.clone(), y.clone(), r))
        return op.zero_filled(y)

    recs = reconstruct_held_out(truth, (32, 32), [4, 8], 1e-2, 2, zero_filled, seed=3)
    again = reconstruct_held_out(truth, (32, 32), [4, 8], 1e-2, 2, zero_filled, seed=3)
    for a, b in zip(recs, again, strict=True):  # same masks and noise whatever the iteration
        assert torch.equal(a.masks, b.masks) and torch.equal(a.zero_filled, b.zero_filled)
    masks, y, r = calls[0]
    assert r == 4 and torch.equal(masks[0::2], masks[1::2]) and torch.equal(y[0::2], y[1::2])
    assert [rec.samples.shape for rec in recs] == [(4, 2, 1024)] * 2
    table = scores(recs, truth, (32, 32))
    for label in ("r4", "r8"):  # sampling the baseline scores exactly the baseline
        assert table[f"psnr_{label}"] == pytest.approx(table[f"psnr_zf_{label}"])
        assert table[f"ssim_{label}"] == pytest.approx(table[f"ssim_zf_{label}"])
        assert table[f"psnr_mean_{label}"] == pytest.approx(table[f"psnr_zf_{label}"])
    assert table["psnr_zf_r4"] > table["psnr_zf_r8"]  # fewer columns, worse baseline
    oracle = reconstruct_held_out(truth, (32, 32), [8], 1e-2, 1, lambda op, y, r: truth, 3)
    assert scores(oracle, truth, (32, 32))["psnr_r8"] == float("inf")


def test_lineage_of_an_mri_run_on_raw_files_lists_them_as_leaves(tmp_path):
    """fastMRI-format files in a data folder (not the phantoms kind): the observations'
    lineage ends at the raw files, each with its size and SHA-256, and never crashes on a
    file without provenance (the raw files have none)."""
    knee = tmp_path / "data" / "knee"
    files = write_phantom_dataset(knee, 3, 32, 4, torch.Generator().manual_seed(1))
    paper = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["experiments"]["mri"]
    cfg = {k: paper[k] for k in ("data", "observation", "network", "diffusion")}
    cfg["data"] = {**cfg["data"], "kind": "fastmri", "folder": str(knee), "slices": [0, 4],
                   "size": [32, 32], "validation_volumes": 1,
                   "validation_folder": None}  # one folder, its last volume held out  # fmt: skip
    cfg["method"] = "em_mmps"
    obs = tmp_path / "observations.h5"
    corrupt = [sys.executable, "-m", "empriors", "corrupt", "--exp", "mri", "--seed", "0"]
    corrupt += ["--device", "cpu", "--config", json.dumps(cfg), "--observations", str(obs)]
    corrupt += ["--truth", str(tmp_path / "truth.h5")]
    proc = subprocess.run(corrupt, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lineage = [sys.executable, "-m", "empriors", "lineage", str(obs)]
    proc = subprocess.run(lineage, capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
        leaf = f"{f}  [external input] {f.stat().st_size} bytes sha256={digest}"
        assert leaf in proc.stdout, proc.stdout
        assert f"input {f} sha256={digest} (ok)" in proc.stdout
