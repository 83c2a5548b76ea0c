import torch

from empriors.operators import PixelMask, Projection, observe, operator_from_parameters


def _adjoint_gap(op, signal_shape, g):
    x = torch.randn(len(op), *signal_shape, generator=g, dtype=torch.float64)
    y = torch.randn(op(x).shape, generator=g, dtype=torch.float64)
    lhs = (op(x) * y).flatten(1).sum(1)
    rhs = (x * op.adjoint(y)).flatten(1).sum(1)
    return (lhs - rhs).abs().max().item()


def test_projection_adjoint(g):
    op = Projection.random(64, 2, 5, g)
    assert _adjoint_gap(op, (5,), g) < 1e-12


def test_projection_rows_unit_norm(g):
    op = Projection.random(100, 2, 5, g)
    assert torch.allclose(op.matrices.norm(dim=-1), torch.ones(100, 2, dtype=torch.float64))


def test_pixel_mask_adjoint(g):
    masks = (torch.rand(8, 1, 6, 6, generator=g) < 0.5).to(torch.float64)  # shared channels
    op = PixelMask(masks)
    assert _adjoint_gap(op, (3, 6, 6), g) < 1e-12


def test_slicing_follows_batch(g):
    op = Projection.random(10, 2, 5, g)
    x = torch.randn(10, 5, generator=g, dtype=torch.float64)
    assert torch.equal(op[3:7](x[3:7]), op(x)[3:7])


def test_roundtrip_parameters(g):
    op = Projection.random(4, 2, 5, g)
    assert torch.equal(
        operator_from_parameters("projection", op.parameters()).matrices, op.matrices
    )


def test_observe_noise_level(g):
    op = Projection.random(20000, 2, 5, g)
    x = torch.randn(20000, 5, generator=g, dtype=torch.float64)
    y = observe(x, op, 0.1, g)
    assert abs((y - op(x)).std().item() - 0.1) < 0.003


def test_matrix_operator_adjoint(g):
    from empriors.operators import Matrix

    op = Matrix(torch.randn(7, 12, generator=g, dtype=torch.float64))
    x = torch.randn(5, 12, generator=g, dtype=torch.float64)
    y = torch.randn(5, 7, generator=g, dtype=torch.float64)
    assert abs((op(x) * y).sum() - (x * op.adjoint(y)).sum()) < 1e-12


def test_gaussian_blur_adjoint_with_reflect_padding(g):
    from empriors.operators import GaussianBlur

    op = GaussianBlur((3, 10, 12), 9, 2.0)
    x = torch.randn(4, 360, generator=g, dtype=torch.float64)
    y = torch.randn(4, 360, generator=g, dtype=torch.float64)
    assert abs((op(x) * y).sum() - (x * op.adjoint(y)).sum()) < 1e-10
    # the adjoint is not the blur itself: reflect padding makes A non-symmetric at the border
    assert not torch.allclose(op.adjoint(y), op(y), atol=1e-6)


def test_gaussian_blur_preserves_constants_and_blurs_a_point(g):
    from empriors.operators import GaussianBlur

    op = GaussianBlur((1, 16, 16), 9, 2.0)
    const = torch.full((1, 256), 0.7, dtype=torch.float64)
    assert torch.allclose(op(const), const, atol=1e-12)
    point = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    point[0, 0, 8, 8] = 1.0
    out = op(point.reshape(1, -1)).reshape(16, 16)
    assert torch.allclose(out[4:13, 4:13], op.kernel(), atol=1e-12)  # the kernel, centred
    rebuilt = operator_from_parameters("gaussian_blur", op.parameters())
    assert torch.equal(rebuilt(const), op(const))


def test_gaussian_blur_rejects_a_kernel_larger_than_the_image():
    import pytest

    from empriors.operators import GaussianBlur

    with pytest.raises(ValueError, match="too large"):
        GaussianBlur((1, 8, 8), 17, 2.0)


def test_shared_pixel_masks_hit_the_rate_and_share_channels(g):
    op = PixelMask.random_shared(2000, (3, 8, 8), 0.75, g)
    masks = op.masks.reshape(2000, 3, 8, 8)
    assert torch.equal(masks[:, 0], masks[:, 1]) and torch.equal(masks[:, 0], masks[:, 2])
    assert abs(masks.mean().item() - 0.25) < 0.01  # kept fraction 1 - 0.75
