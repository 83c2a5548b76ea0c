"""Backbones: networks net(x_scaled, log_sigma) used inside :class:`empriors.diffusion.Denoiser`."""

from __future__ import annotations

from torch import nn

from empriors.nn.mlp import MLPBackbone
from empriors.nn.unet import UNetBackbone

__all__ = ["MLPBackbone", "UNetBackbone", "build_backbone"]


def build_backbone(settings, features: int) -> nn.Module:
    """The backbone named by a :class:`empriors.config.NetworkSettings`."""
    if settings.kind == "mlp":
        return MLPBackbone(features, settings.hidden, settings.embedding)
    if settings.kind == "unet":
        c, h, w = settings.shape
        if c * h * w != features:
            raise ValueError(
                f"network.shape {settings.shape} has {c * h * w} values but the data has "
                f"{features} features"
            )
        return UNetBackbone(
            settings.shape,
            settings.channels,
            settings.blocks,
            dict(settings.attention),
            settings.embedding,
            settings.dropout,
            settings.unshuffle,
        )
    raise ValueError(f"unknown network kind {settings.kind!r}")
