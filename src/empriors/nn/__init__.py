"""Backbones: networks net(x_scaled, log_sigma) used inside :class:`empriors.diffusion.Denoiser`."""

from __future__ import annotations

from torch import nn

from empriors.nn.mlp import MLPBackbone

__all__ = ["MLPBackbone", "build_backbone"]


def build_backbone(settings, features: int) -> nn.Module:
    """The backbone named by a :class:`empriors.config.NetworkSettings`."""
    if settings.kind == "mlp":
        return MLPBackbone(features, settings.hidden, settings.embedding)
    raise ValueError(f"unknown network kind {settings.kind!r}")
