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
