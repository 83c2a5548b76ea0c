import numpy as np
import pytest
import scipy.linalg
import torch

from empriors.metrics.fid import (
    feature_moments,
    frechet_distance,
    image_metric,
    sample_frechet_distance,
    to_uint8_images,
)


def _reference_fd(mu1, s1, mu2, s2):
    """The textbook formula with scipy's general matrix square root, float64."""
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_frechet_distance_matches_a_float64_reference(g):
    a = torch.randn(500, 6, generator=g, dtype=torch.float64) @ torch.randn(
        6, 6, generator=g, dtype=torch.float64
    )
    b = 0.5 * torch.randn(400, 6, generator=g, dtype=torch.float64) + 1.0
    m1, s1 = feature_moments(a)
    m2, s2 = feature_moments(b)
    ours = frechet_distance(m1, s1, m2, s2)
    ref = _reference_fd(m1.numpy(), s1.numpy(), m2.numpy(), s2.numpy())
    assert abs(ours - ref) < 1e-8 * max(1.0, abs(ref))


def test_frechet_distance_of_gaussians_in_closed_form():
    """Isotropic Gaussians: FD = ||mu1 - mu2||^2 + d (s1 - s2)^2."""
    d = 4
    fd = frechet_distance(torch.zeros(d), 4 * torch.eye(d), torch.ones(d), torch.eye(d))
    assert abs(fd - (d + d * (2 - 1) ** 2)) < 1e-12
    assert abs(frechet_distance(torch.zeros(d), torch.eye(d), torch.zeros(d), torch.eye(d))) < 1e-12


def test_pixel_metric_is_named_and_falls_as_samples_approach_the_data(g):
    data = torch.randn(800, 16, generator=g)
    far = image_metric("fd_pixels", torch.randn(800, 16, generator=g) + 1, data, (1, 4, 4))
    near = image_metric("fd_pixels", torch.randn(800, 16, generator=g), data, (1, 4, 4))
    assert set(far) == {"fd_pixels"} and near["fd_pixels"] < far["fd_pixels"]


def test_uint8_conversion_replicates_grey_images():
    x = torch.tensor([[-2.0, 0.0, 2.0, 1.0]])
    img = to_uint8_images(x, (1, 2, 2))
    assert img.shape == (1, 3, 2, 2) and img.dtype == torch.uint8
    assert (
        img[0, :, 0, 0].tolist() == [0, 0, 0] and img[0, 1, 1, 0] == 255 and img[0, 2, 0, 1] == 128
    )


def test_torch_fidelity_inception_metric(tmp_path):
    """Exercised where torch-fidelity imports (GPU clusters with the [fid] extra)."""
    pytest.importorskip(
        "torch_fidelity",
        reason="torch-fidelity needs torchvision, which cannot load with this CPU torch",
    )
    with pytest.raises(FileNotFoundError, match="Inception weights"):
        image_metric(
            "fid_inception", torch.zeros(4, 12), torch.zeros(4, 12), (3, 2, 2), tmp_path / "w.pth"
        )


def test_sample_frechet_distance_without_the_covariances_equals_the_full_form(g):
    """d > N + M: the (N, M) nuclear-norm form equals the (d, d) covariance form."""
    u = torch.randn(40, 300, generator=g, dtype=torch.float64)
    v = 0.5 * torch.randn(30, 300, generator=g, dtype=torch.float64) + 0.2
    full = frechet_distance(*feature_moments(u), *feature_moments(v))
    # the (d, d) form sums sqrt of ~1e-14 round-off eigenvalues: ~1e-8 relative error
    assert abs(sample_frechet_distance(u, v) - full) < 1e-6 * full
    assert abs(sample_frechet_distance(u, u)) < 1e-8
