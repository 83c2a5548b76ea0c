"""scikit-learn's bundled handwritten digits: 1,797 real 8x8 grey images, no download.

Pixels (0..16) are mapped to [-2, 2] as the papers map 8-bit images: x * 4 / 16 - 2.
"""

from __future__ import annotations

import torch
from torch import Tensor


def load_digits_images() -> Tensor:
    """(1797, 64) float64 in [-2, 2]; rows are 8x8 images in row-major order."""
    from sklearn.datasets import load_digits

    return torch.from_numpy(load_digits().data).to(torch.float64) * 4 / 16 - 2
