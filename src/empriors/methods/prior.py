"""What a prior checkpoint holds, for every method: q_k = (Gaussian fit, network, flow).

- EM-MMPS: the Gaussian fit G_k and, from lap 1 on, the unconditional denoiser d(x_t, sigma).
- DiffEM: G_k and the conditional denoiser d(x_t, sigma, c(y)); its final prior is an
  unconditional one, as EM-MMPS's.
- FlowDiff: G_k, the unconditional diffusion prior and the conditional flow q_phi(x | y).
Lap 0 of every method is the Gaussian q0 alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from empriors.diffusion import Denoiser, DenoiserFn
from empriors.gaussian import LowRankGaussian
from empriors.nn import build_backbone


@dataclass
class Prior:
    """q_k: the Gaussian fit, the denoiser network (lap >= 1) and FlowDiff's flow."""

    gaussian: LowRankGaussian
    network: Denoiser | None = None
    flow: nn.Module | None = None

    @property
    def conditional(self) -> bool:
        """Whether the network is DiffEM's conditional denoiser d(x_t, sigma, c)."""
        return self.network is not None and self.network.condition_features > 0

    def denoiser(self) -> DenoiserFn:
        if self.network is None:
            return self.gaussian.denoise
        return self.network


def build_denoiser(settings, features: int, condition_features: int = 0) -> Denoiser:
    """The configured network (``settings.network``) as an EDM-preconditioned denoiser."""
    backbone = build_backbone(settings.network, features, condition_features)
    return Denoiser(backbone, condition_features)
