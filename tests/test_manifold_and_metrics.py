import torch

from empriors.data.manifold import manifold_dataset
from empriors.metrics.sinkhorn import entropic_ot, sinkhorn_scores
from empriors.seeding import derive_seed, generator


def test_manifold_dataset_shape_range_determinism():
    a = manifold_dataset(2000, 300, 5, 1, 3.0, 1e-3, generator(0, "m"))
    b = manifold_dataset(2000, 300, 5, 1, 3.0, 1e-3, generator(0, "m"))
    train, u1, u2 = a
    assert train.shape == (2000, 5) and u1.shape == (300, 5)
    assert torch.allclose(train.min(0).values, torch.full((5,), -2.0, dtype=torch.float64))
    assert torch.allclose(train.max(0).values, torch.full((5,), 2.0, dtype=torch.float64))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(u1, u2)


def test_manifold_is_one_dimensional():
    """Points of a 1-d manifold: nearest neighbours lie along a curve, so local PCA of a
    neighbourhood has one dominant direction."""
    train, _, _ = manifold_dataset(20000, 10, 5, 1, 3.0, 1e-3, generator(1))
    centre = train[0]
    near = train[(train - centre).norm(dim=1).argsort()[:20]]
    s = torch.linalg.svdvals(near - near.mean(0))
    assert s[0] > 10 * s[1]


def test_seeds_are_stable():
    assert derive_seed(0, "manifold", "estep", 1, 0) == derive_seed(0, "manifold", "estep", 1, 0)
    assert derive_seed(0, "manifold", "estep", 1, 0) != derive_seed(0, "manifold", "estep", 1, 1)
    assert derive_seed(0, "x") == 7334593232816923618  # sha256-based, same on every machine


def test_sinkhorn_separates_distributions():
    g = generator(5)
    u1, u2, v_same = (torch.randn(256, 2, generator=g, dtype=torch.float64) for _ in range(3))
    v_far = v_same + 1.0
    same = sinkhorn_scores(v_same, u1, u2, reg=1e-2, iterations=500)
    far = sinkhorn_scores(v_far, u1, u2, reg=1e-2, iterations=500)
    assert abs(same["sinkhorn"]) < 0.1
    assert far["sinkhorn"] > 0.8  # a unit shift in 2-d costs about |shift|^2 = 1
    assert far["sinkhorn_divergence"] > 0.8
    assert entropic_ot(u1, u1, 1e-2, 500) < 0.05


def test_weighted_sinkhorn_divergence():
    from empriors.metrics.sinkhorn import weighted_sinkhorn_divergence

    g = generator(6)
    u = torch.randn(300, 2, generator=g, dtype=torch.float64)
    assert abs(weighted_sinkhorn_divergence(u, u, 0.05)) < 1e-6
    shifted = weighted_sinkhorn_divergence(
        u, u + torch.tensor([1.0, 0.0], dtype=torch.float64), 0.05
    )
    assert abs(shifted - 1.0) < 0.05  # a unit shift costs |shift|^2
    w = torch.zeros(300, dtype=torch.float64)
    w[:150] = 1 / 150  # weights on half the points: a different measure on the same support
    assert weighted_sinkhorn_divergence(u, u, 0.05, b=w) > 0.01
