"""Linear forward models y = A x + e with their adjoints.

Every operator acts on a batch: ``x`` has shape (B, *signal_shape), ``A(x)`` shape
(B, *obs_shape), and ``adjoint(y)`` maps back to (B, *signal_shape). Operators whose
parameters differ per sample (one projection matrix or mask per observation) hold those
parameters for the whole data set and are sliced with ``op[indices]`` to follow a batch.

The adjoint satisfies <A x, y> = <x, A^T y> for every x, y (tested).
"""

from __future__ import annotations

import math
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

    preview_title = "observation"

    def condition(self, y: Tensor) -> Tensor:
        """The observation as a conditional network's input (DiffEM, FlowDiff), (B, m'): the
        zero-filled, signal-shaped observation (:meth:`preview`); the mask itself is not an
        input (PAPERS.md 2). Operators whose y does not determine A override this."""
        return self.preview(y)

    def preview(self, y: Tensor) -> Tensor:
        """Observations drawn as signals, for figures: y itself where it has the signal's
        shape (masks, blur); operators whose y does not (k-space) override this."""
        return y


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

    def condition(self, y: Tensor) -> Tensor:
        """[y_i, vec(A_i)], (B, m + m n): the manifold's conditional MLP input (PAPERS.md 2)."""
        return torch.cat([y, self.matrices.to(y).flatten(1)], dim=1)

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

    @staticmethod
    def random_shared(
        n: int, shape: tuple[int, int, int], missing: float, generator: torch.Generator
    ) -> PixelMask:
        """Flat masks (n, C H W): each pixel missing with probability ``missing``, the same
        pixel missing in every channel (PAPERS.md 1, masked CIFAR-10)."""
        if not 0 <= missing < 1:
            raise ValueError(f"missing rate must be in [0, 1), got {missing}")
        c, h, w = shape
        keep = (torch.rand(n, 1, h, w, generator=generator) >= missing).to(torch.float32)
        return PixelMask(keep.expand(n, c, h, w).reshape(n, -1).contiguous())


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


@dataclass
class GaussianBlur(LinearOperator):
    """Gaussian blur of images shared by every sample, y_i = k * x_i, with reflect padding.

    Signals are flat (B, C H W) in (C, H, W) order; ``shape`` = (C, H, W). The kernel is
    the separable ``kernel_size`` x ``kernel_size`` Gaussian of std ``std`` (normalised to
    sum 1), applied per channel. The paper's blur kernel is not public: the CIFAR config's
    9x9, std 2 is our choice. The adjoint is computed exactly by a vector-Jacobian product
    of the (linear) forward map, so it includes the transpose of the reflect padding.
    """

    shape: tuple[int, int, int]
    kernel_size: int
    std: float

    def __post_init__(self):
        self.shape = tuple(int(s) for s in torch.as_tensor(self.shape).tolist())
        self.kernel_size, self.std = int(self.kernel_size), float(self.std)
        if len(self.shape) != 3 or self.kernel_size % 2 == 0:
            raise ValueError("GaussianBlur needs shape (C, H, W) and an odd kernel_size")
        if self.kernel_size // 2 >= min(self.shape[1:]):
            raise ValueError(f"blur kernel {self.kernel_size} too large for {self.shape}")

    def kernel(self, dtype=torch.float64, device=None) -> Tensor:
        """(k, k) normalised Gaussian."""
        r = torch.arange(self.kernel_size, dtype=dtype, device=device) - self.kernel_size // 2
        g = torch.exp(-0.5 * (r / self.std) ** 2)
        g = g / g.sum()
        return torch.outer(g, g)

    def __call__(self, x: Tensor) -> Tensor:
        c, h, w = self.shape
        img = x.reshape(-1, c, h, w)
        pad = self.kernel_size // 2
        img = torch.nn.functional.pad(img, (pad, pad, pad, pad), mode="reflect")
        k = self.kernel(x.dtype, x.device).expand(c, 1, -1, -1)
        return torch.nn.functional.conv2d(img, k, groups=c).reshape(x.shape[0], -1)

    def adjoint(self, y: Tensor) -> Tensor:
        _, vjp = torch.func.vjp(self.__call__, torch.zeros_like(y))
        return vjp(y)[0]

    def __getitem__(self, index) -> GaussianBlur:
        return self

    def __len__(self) -> int:
        raise TypeError("a shared GaussianBlur operator applies to any number of samples")

    def to(self, device=None, dtype=None) -> GaussianBlur:
        return self

    def parameters(self) -> dict[str, Tensor]:
        return {
            "shape": torch.tensor(self.shape),
            "kernel_size": torch.tensor(self.kernel_size),
            "std": torch.tensor(self.std, dtype=torch.float64),
        }


@dataclass
class KSpaceColumnMask(LinearOperator):
    """Accelerated single-coil MRI: y_i = M_i F x_i, x_i a real image (H, W) (flat, H W),
    F = fastmri's centred orthonormal 2-d FFT (fft2c) on the complex embedding of x, M_i a
    per-sample mask of k-space columns (along W). y keeps the full k-space shape (H, W, 2:
    real and imaginary parts), zero where not sampled, flat: (B, 2 H W).

    F is unitary, so A^T y = Re(F^H M y) = Re(ifft2c(M y)), which is also the zero-filled
    reconstruction of an observation (the paper's baseline). ``masks``: (N, W) in {0, 1}.
    """

    masks: Tensor
    shape: tuple[int, int]

    def __post_init__(self):
        self.shape = tuple(int(s) for s in torch.as_tensor(self.shape).tolist())
        if self.masks.ndim != 2 or self.masks.shape[1] != self.shape[1]:
            raise ValueError(f"KSpaceColumnMask needs masks (N, W={self.shape[1]})")

    def _mask(self, like: Tensor) -> Tensor:
        return self.masks.to(like)[:, None, :, None]  # (B, 1, W, 1) over (B, H, W, 2)

    def __call__(self, x: Tensor) -> Tensor:
        import fastmri

        img = x.reshape(-1, *self.shape)
        k = fastmri.fft2c(torch.stack([img, torch.zeros_like(img)], dim=-1))
        return (self._mask(k) * k).reshape(x.shape[0], -1)

    def adjoint(self, y: Tensor) -> Tensor:
        import fastmri

        k = y.reshape(-1, *self.shape, 2)
        return fastmri.ifft2c(self._mask(k) * k)[..., 0].reshape(y.shape[0], -1)

    zero_filled = adjoint
    preview = adjoint
    preview_title = "zero-filled"

    def __getitem__(self, index) -> KSpaceColumnMask:
        return KSpaceColumnMask(self.masks[index], self.shape)

    def __len__(self) -> int:
        return self.masks.shape[0]

    def to(self, device=None, dtype=None) -> KSpaceColumnMask:
        return KSpaceColumnMask(self.masks.to(device=device, dtype=dtype), self.shape)

    def parameters(self) -> dict[str, Tensor]:
        return {"masks": self.masks, "shape": torch.tensor(self.shape)}

    @staticmethod
    def random(
        n: int, shape: tuple[int, int], acceleration: float, generator: torch.Generator
    ) -> KSpaceColumnMask:
        """The paper's random column masks (PAPERS.md 1, MRI), for width W = 320 exactly:
        the centre band [W/2 - ceil(60/r), W/2 + ceil(60/r)) always kept, every other column
        kept with probability 200 / (320 r - 120), so 320 / r columns are kept on average.
        Other widths scale the band by W/320 (half-width ceil(0.1875 W / r)) and keep the
        probability 0.625 / (r - 0.375), the same formula. Written here rather than with
        fastmri's RandomMaskFunc: that one rounds the centre band and derives the
        probability from the rounded band, which differs from the paper's masks."""
        width = shape[1]
        if acceleration <= 1:
            raise ValueError(f"acceleration must be > 1, got {acceleration}")
        half = math.ceil(0.1875 * width / acceleration)
        prob = 0.625 / (acceleration - 0.375)
        keep = torch.rand(n, width, generator=generator) < prob
        keep[:, width // 2 - half : width // 2 + half] = True
        return KSpaceColumnMask(keep.to(torch.float32), shape)


OPERATORS = {
    "projection": Projection,
    "pixel_mask": PixelMask,
    "matrix": Matrix,
    "gaussian_blur": GaussianBlur,
    "kspace_columns": KSpaceColumnMask,
}


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
