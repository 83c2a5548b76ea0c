"""The manifold experiment's backbone (PAPERS.md 1): MLP with 3 hidden layers of 256, SiLU,
LayerNorm (without scale and bias, as the reference's), input [x, emb(log sigma)] with a
64-feature sinusoidal embedding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from empriors.diffusion import sinusoidal_embedding


class MLPBackbone(nn.Module):
    """net(x, log_sigma): (B, n), (B,) -> (B, n_out), n_out = ``out_features`` (default n).

    Layers: [Linear -> SiLU -> LayerNorm] x len(hidden), then Linear to n_out. DiffEM's
    conditional MLP takes x = [x_t, y, vec(A)] and returns n_out = dim(x_t) features.
    """

    def __init__(
        self,
        features: int,
        hidden: tuple[int, ...] = (256, 256, 256),
        embedding: int = 64,
        out_features: int | None = None,
    ):
        super().__init__()
        self.features, self.embedding = features, embedding
        layers: list[nn.Module] = []
        width = features + embedding
        for h in hidden:
            # no scale or bias: the reference's inox LayerNorm (priors/nn.py, issue 19.3)
            layers += [nn.Linear(width, h), nn.SiLU(), nn.LayerNorm(h, elementwise_affine=False)]
            width = h
        layers.append(nn.Linear(width, out_features or features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, log_sigma: Tensor) -> Tensor:
        emb = sinusoidal_embedding(log_sigma, self.embedding).to(x.dtype)
        return self.net(torch.cat([x, emb], dim=-1))
