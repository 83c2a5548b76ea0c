"""Frechet distances between sample sets, on named features.

FD(u, v) = ||mu_u - mu_v||^2 + Tr(S_u + S_v - 2 (S_u^{1/2} S_v S_u^{1/2})^{1/2}), with the
means and covariances of the features of the two sets, computed in float64 (the matrix square
root through symmetric eigendecompositions, so it stays real and PSD).

Feature extractors (the metric's name says which; never call it FID without Inception):
- ``fd_pixels``: the flat pixels themselves (offline; the digits demo's metric, and reported
  next to FID for every image experiment). It compares means and covariances only;
- ``fid_inception``: FID and Inception Score from torch-fidelity with Inception-v3 "compat"
  weights read from data/ (the CIFAR-10 paper configs). torch-fidelity needs torchvision, so it
  is an optional extra ([fid]) that GPU clusters install; without it this metric errors clearly.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

METRICS = ("fd_pixels", "fid_inception")


def _psd_sqrt(s: Tensor) -> Tensor:
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def feature_moments(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (d,) and unbiased covariance (d, d) of features (N, d), float64."""
    f = features.to(torch.float64)
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def frechet_distance(mu1: Tensor, s1: Tensor, mu2: Tensor, s2: Tensor) -> float:
    mu1, s1, mu2, s2 = (t.to(torch.float64) for t in (mu1, s1, mu2, s2))
    root1 = _psd_sqrt(s1)
    cross = torch.linalg.eigvalsh(root1 @ s2 @ root1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).square().sum() + torch.trace(s1) + torch.trace(s2) - 2 * cross)


def sample_frechet_distance(u: Tensor, v: Tensor) -> float:
    """FD between the sample sets u (N, d) and v (M, d), float64, never forming a (d, d)
    matrix when d > N + M (MRI: d = 320^2 = 102,400 would need 84 GB per covariance).

    With centred A = (u - mu_u)^T / sqrt(N - 1) (d, N) and B likewise (d, M), S_u = A A^T,
    S_v = B B^T, and the nonzero eigenvalues of S_u^{1/2} S_v S_u^{1/2} are those of
    (A^T B)(A^T B)^T, so Tr((S_u^{1/2} S_v S_u^{1/2})^{1/2}) = ||A^T B||_* (nuclear norm) and
    Tr(S_u) = ||A||_F^2: an (N, M) SVD instead of (d, d) eigendecompositions."""
    if u.shape[1] <= u.shape[0] + v.shape[0]:
        return frechet_distance(*feature_moments(u), *feature_moments(v))
    u, v = u.to(torch.float64), v.to(torch.float64)
    a = (u - u.mean(0)) / (u.shape[0] - 1) ** 0.5
    b = (v - v.mean(0)) / (v.shape[0] - 1) ** 0.5
    cross = torch.linalg.svdvals(a @ b.T).sum()
    mean = (u.mean(0) - v.mean(0)).square().sum()
    return float(mean + a.square().sum() + b.square().sum() - 2 * cross)


def to_uint8_images(x: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """Flat signals in [-2, 2] -> uint8 images (N, 3, H, W), grey replicated to 3 channels."""
    img = ((x.reshape(-1, *shape) + 2) / 4 * 255).round().clamp(0, 255).to(torch.uint8)
    return img.expand(-1, 3, -1, -1) if shape[0] == 1 else img


def inception_metrics(
    samples: Tensor, reference: Tensor, shape: tuple[int, int, int], weights: Path
) -> dict[str, float]:
    """FID (samples vs reference) and IS (10 splits) of flat images in [-2, 2] with
    torch-fidelity's "inception-v3-compat" features, weights read from ``weights``."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(
            f"Inception weights not found at {weights}: place torch-fidelity's "
            "pt_inception-2015-12-05-6726825d.pth there (never downloaded at run time)"
        )
    try:
        import torch_fidelity
    except ImportError as e:
        raise ImportError(
            "the fid_inception metric needs torch-fidelity (and torchvision): "
            "pip install -e .[fid] on a machine where torchvision loads"
        ) from e

    class _Images(torch.utils.data.Dataset):
        def __init__(self, images: Tensor):
            self.images = images

        def __len__(self):
            return self.images.shape[0]

        def __getitem__(self, i):
            return self.images[i]

    out = torch_fidelity.calculate_metrics(
        input1=_Images(to_uint8_images(samples, shape)),
        input2=_Images(to_uint8_images(reference, shape)),
        fid=True,
        isc=True,
        isc_splits=10,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(weights),
        cuda=torch.cuda.is_available(),
        verbose=False,
    )
    return {
        "fid": float(out["frechet_inception_distance"]),
        "is": float(out["inception_score_mean"]),
        "is_std": float(out["inception_score_std"]),
    }


def image_metric(
    metric: str,
    samples: Tensor,
    reference: Tensor,
    shape: tuple[int, int, int],
    weights: Path | None = None,
) -> dict[str, float]:
    """The experiment's metric as CSV columns, always with ``fd_pixels``:
    {"fd_pixels"} or {"fid", "is", "is_std", "fd_pixels"}."""
    if metric not in METRICS:
        raise ValueError(f"unknown image metric {metric!r}; known: {METRICS}")
    out = {}
    if metric == "fid_inception":
        if weights is None:
            raise ValueError("fid_inception needs evaluate.inception_weights")
        out.update(inception_metrics(samples, reference, shape, weights))
    out["fd_pixels"] = sample_frechet_distance(samples, reference)
    return out
