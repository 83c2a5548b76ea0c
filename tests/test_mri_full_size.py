"""One EM lap at the real fastMRI size, end to end through the workflow: 320x320
reconstructions from 640x368 k-space (files written in the real format and size), the
paper's 4x4 pixel-unshuffle (80x80x16) with a tiny U-Net, a few slices. It exercises the
shapes and the memory that the demo's 32x32 phantoms never reach (d = 102,400: any (d, d)
matrix would need 84 GB in float64), and prints every stage's peak memory."""

from __future__ import annotations

import re

import h5py
from workflow_support import make_project, run, snakemake

FULL_SIZE = """
experiments:
  manifold: {enabled: false}
  digits_mask: {enabled: false}
  mri:
    data: {kind: phantoms, folder: results/mri/phantoms, slices: [0, 3], size: [320, 320],
           kspace: [640, 368], validation_volumes: 1, volumes: 3, volume_slices: 4}
    network: {shape: [1, 320, 320], channels: [8, 16], blocks: [1, 1], attention_levels: [1],
              heads: 1, embedding: 16, dropout: 0.0, unshuffle: 4}
    init: {rounds: 2, rank: 4, steps: 8, n_fit: null, batch_size: 8}
    em: {iterations: 1, shards: 1}
    estep: {steps: 4, batch_size: 4, cg_maxiter: 1}
    mstep: {steps: 4, batch_size: 4, ppca_samples: 16, ppca_rank: 4, resume_every_s: 30}
    evaluate: {n_samples: 8, shards: 1, steps: 4, batch_size: 8, figure_iterations: [0, 1],
               examples: 2, accelerations: [4, 8], reconstructions: 2, posterior_samples: 1}
studies:
  heuristics: {enabled: false}
  heuristics_paper: {enabled: false}
  posterior_benchmark: {enabled: false}
"""
PEAK = re.compile(r"INFO empriors\S*: (\S+): peak memory (\d+) MiB RSS")
# every stage measured at 0.3-0.75 GiB on the CI-sized machine; a (d, d) float32 matrix is 42 GB
LIMIT_MIB = 4096


def test_one_lap_at_the_real_fastmri_size(tmp_path):
    project = make_project(tmp_path / "project")
    (project / "full.yaml").write_text(FULL_SIZE)
    run(snakemake("--profile", "local", "--configfile", "config/demo.yaml", "full.yaml"), project)
    results = project / "results/mri"
    with h5py.File(results / "phantoms/file_phantom_000.h5") as f:
        assert f["kspace"].shape == (4, 640, 368) and f["reconstruction_rss"].shape == (4, 320, 320)
    with h5py.File(results / "observations.h5") as f:
        assert f["y"].shape == (8, 2 * 320 * 320)  # 2 volumes x 4 slices, real and imaginary
    with h5py.File(results / "truth.h5") as f:
        assert f["train"].shape == (8, 320 * 320) and f["val"].shape == (4, 320 * 320)
    with h5py.File(results / "iter_1/samples_0.h5") as f:
        assert f["x"].shape == (16, 320 * 320)  # 2 posterior samples per observation
    rows = (results / "fid.csv").read_text().strip().splitlines()
    assert rows[0].startswith("iteration,fd_pixels,psnr_r4") and len(rows) == 3
    for name in ("samples", "metric_curve", "posterior_examples", "reconstructions_iter_1"):
        assert (results / f"figures/{name}.png").stat().st_size > 10_000
    peaks = {}
    for log in sorted((results / "logs").glob("*.log")):
        for _, mib in PEAK.findall(log.read_text()):
            peaks[log.stem] = max(peaks.get(log.stem, 0), int(mib))
    stages = {"phantoms", "corrupt", "init_prior", "estep_1_0", "mstep_1", "sample_prior_1_0"}
    assert stages | {"evaluate_1", "reconstruct_1", "posterior_examples"} <= set(peaks), peaks
    print("\nstage peak memory at 320x320 (MiB RSS):")
    for name, mib in sorted(peaks.items()):
        print(f"  {name:32s} {mib:6d}")
    assert max(peaks.values()) < LIMIT_MIB, peaks
