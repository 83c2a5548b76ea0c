"""Image data sets of the pipeline, as flat signals (N, C H W) in [-2, 2] with their shape.

- ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images, shipped);
- ``cifar10``: the CIFAR-10 python archive in data/ (checked by MD5, never downloaded).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from empriors.data.cifar10 import CIFAR10_MD5
from empriors.data.cifar10 import SHAPE as CIFAR10_SHAPE
from empriors.data.cifar10 import load_cifar10
from empriors.data.digits import load_digits_images


def load_image_data(data: dict) -> tuple[Tensor, tuple[int, int, int]]:
    """(x (N, C H W) float32, (C, H, W)) for a ``data:`` config block of an image kind."""
    if data["kind"] == "digits":
        return load_digits_images().to(torch.float32), (1, 8, 8)
    if data["kind"] == "cifar10":
        md5 = data.get("md5", CIFAR10_MD5)  # null: not checked (a warning says so)
        return load_cifar10(Path(data["archive"]), data["split"], md5), CIFAR10_SHAPE
    raise ValueError(f"{data['kind']!r} is not an image data kind")

