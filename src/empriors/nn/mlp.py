"""The manifold experiment's backbone (PAPERS.md 1): MLP with 3 hidden layers of 256,
SiLU, LayerNorm, input [x, emb(log sigma)] with a 64-feature sinusoidal embedding."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from empriors.diffusion import sinusoidal_embedding


class MLPBackbone(nn.Module):
    """net(x, log_sigma): (B, n), (B,) -> (B, n).

    Layers: [Linear -> SiLU -> LayerNorm] x len(hidden), then Linear to n.
    """

    def __init__(
        self, features: int, hidden: tuple[int, ...] = (256, 256, 256), embedding: int = 64
    ):
        super().__init__()
        self.features, self.embedding = features, embedding
        layers: list[nn.Module] = []
        width = features + embedding
        for h in hidden:
            layers += [nn.Linear(width, h), nn.SiLU(), nn.LayerNorm(h)]
            width = h
        layers.append(nn.Linear(width, features))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, log_sigma: Tensor) -> Tensor:
        emb = sinusoidal_embedding(log_sigma, self.embedding).to(x.dtype)
        return self.net(torch.cat([x, emb], dim=-1))
