"""Backbones: networks net(x_scaled, log_sigma) used inside :class:`empriors.diffusion.Denoiser`."""

from __future__ import annotations

from torch import nn

from empriors.nn.mlp import MLPBackbone
from empriors.nn.unet import UNetBackbone

__all__ = ["MLPBackbone", "UNetBackbone", "build_backbone"]


def build_backbone(settings, features: int, condition_features: int = 0) -> nn.Module:
    """The backbone named by a :class:`empriors.config.NetworkSettings`, for signals of
    ``features`` values and (DiffEM) ``condition_features`` extra input values."""
    if settings.kind == "mlp":
        return MLPBackbone(
            features + condition_features, settings.hidden, settings.embedding, features
        )
    if settings.kind == "unet":
        c, h, w = settings.shape
        if c * h * w != features:
            raise ValueError(
                f"network.shape {settings.shape} has {c * h * w} values but the data has "
                f"{features} features"
            )
        if condition_features % (h * w):
            raise ValueError(
                f"a U-Net is conditioned on images of {h}x{w}; got {condition_features} values"
            )
        return UNetBackbone(
            (c + condition_features // (h * w), h, w),
            settings.channels,
            settings.blocks,
            dict(settings.attention),
            settings.embedding,
            settings.dropout,
            settings.unshuffle,
            out_channels=c,
        )
    raise ValueError(f"unknown network kind {settings.kind!r}")
