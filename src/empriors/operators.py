"""Linear forward models y = A x + e with their adjoints.

Every operator acts on a batch: ``x`` has shape (B, *signal_shape), ``A(x)`` shape
(B, *obs_shape), and ``adjoint(y)`` maps back to (B, *signal_shape). Operators whose
parameters differ per sample (one projection matrix or mask per observation) hold those
parameters for the whole data set and are sliced with ``op[indices]`` to follow a batch.

The adjoint satisfies <A x, y> = <x, A^T y> for every x, y (tested).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


class LinearOperator:
    """Interface of a batched linear forward model."""

    def __call__(self, x: Tensor) -> Tensor:  # A x
        raise NotImplementedError

    def adjoint(self, y: Tensor) -> Tensor:  # A^T y
        raise NotImplementedError

    def __getitem__(self, index) -> LinearOperator:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def to(self, device=None, dtype=None) -> LinearOperator:
        raise NotImplementedError

    def parameters(self) -> dict[str, Tensor]:
        """Tensors that fully describe the operator (stored next to y in observations.h5)."""
        raise NotImplementedError


@dataclass
class Projection(LinearOperator):
    """Per-sample linear projection y_i = A_i x_i, A_i in R^{m x n} (the manifold experiment).

    ``matrices``: (N, m, n).
    """

    matrices: Tensor

    def __post_init__(self):
        if self.matrices.ndim != 3:
            raise ValueError(
                f"Projection needs matrices of shape (N, m, n), got {tuple(self.matrices.shape)}"
            )

    def __call__(self, x: Tensor) -> Tensor:
        return torch.einsum("bij,bj->bi", self.matrices, x)

    def adjoint(self, y: Tensor) -> Tensor:
        return torch.einsum("bij,bi->bj", self.matrices, y)

    def __getitem__(self, index) -> Projection:
        return Projection(self.matrices[index])

    def __len__(self) -> int:
        return self.matrices.shape[0]

    def to(self, device=None, dtype=None) -> Projection:
        return Projection(self.matrices.to(device=device, dtype=dtype))

    def parameters(self) -> dict[str, Tensor]:
        return {"matrices": self.matrices}

    @staticmethod
    def random(n: int, rows: int, dim: int, generator: torch.Generator) -> Projection:
        """A_i with i.i.d. N(0, 1) entries, each row normalized to unit norm (PAPERS.md 1)."""
        a = torch.randn(n, rows, dim, generator=generator, dtype=torch.float64)
        return Projection(a / a.norm(dim=-1, keepdim=True))


@dataclass
class PixelMask(LinearOperator):
    """Per-sample pixel mask y_i = m_i * x_i, m_i in {0, 1} (masked images).

    ``masks``: (N, *signal_shape) or broadcastable to it (a mask shared over channels has a
    channel axis of size 1). The observation keeps the signal's shape with zeros where missing,
    so A is a diagonal projection and A^T = A.
    """

    masks: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        return self.masks * x

    def adjoint(self, y: Tensor) -> Tensor:
        return self.masks * y

    def __getitem__(self, index) -> PixelMask:
        return PixelMask(self.masks[index])

    def __len__(self) -> int:
        return self.masks.shape[0]

    def to(self, device=None, dtype=None) -> PixelMask:
        return PixelMask(self.masks.to(device=device, dtype=dtype))

    def parameters(self) -> dict[str, Tensor]:
        return {"masks": self.masks}


@dataclass
class Matrix(LinearOperator):
    """One dense matrix shared by every sample: y_i = M x_i, M in R^{m x n}.

    Used where exact posteriors are wanted (blur, super-resolution, inpainting of small
    images written as matrices). Slicing returns the operator itself.
    """

    matrix: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        return x @ self.matrix.T

    def adjoint(self, y: Tensor) -> Tensor:
        return y @ self.matrix

    def __getitem__(self, index) -> Matrix:
        return self

    def __len__(self) -> int:
        raise TypeError("a shared Matrix operator applies to any number of samples")

    def to(self, device=None, dtype=None) -> Matrix:
        return Matrix(self.matrix.to(device=device, dtype=dtype))

    def parameters(self) -> dict[str, Tensor]:
        return {"matrix": self.matrix}


OPERATORS = {"projection": Projection, "pixel_mask": PixelMask, "matrix": Matrix}


def operator_from_parameters(kind: str, params: dict[str, Tensor]) -> LinearOperator:
    """Rebuild an operator stored with :meth:`LinearOperator.parameters`."""
    if kind not in OPERATORS:
        raise ValueError(f"unknown operator kind {kind!r}; known: {sorted(OPERATORS)}")
    return OPERATORS[kind](**params)


def observe(x: Tensor, op: LinearOperator, sigma_y: float, generator: torch.Generator) -> Tensor:
    """y = A x + sigma_y * e, e ~ N(0, I)."""
    ax = op(x)
    noise = torch.randn(ax.shape, generator=generator, dtype=ax.dtype, device=ax.device)
    return ax + sigma_y * noise
