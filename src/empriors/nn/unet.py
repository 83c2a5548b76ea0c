"""The MMPS paper's U-Net (PAPERS.md 1, CIFAR-10 and MRI columns), as a backbone
net(x, log_sigma) for :class:`empriors.diffusion.Denoiser`.

Layout, for levels i = 0..L-1 with channels C_i and B_i blocks:
- descent: level 0 starts with conv3x3 (C_in -> C_0), level i > 0 with a stride-2 conv3x3
  (C_{i-1} -> C_i) followed by a channel LayerNorm; then B_i x [ResBlock(C_i) (+ AttBlock(C_i)
  at attention levels)];
- ascent: level i < L-1 starts by concatenating the skip of level i with the upsampled
  features of level i+1 and a conv3x3 (C_i + C_{i+1} -> C_i); then B_i x [ResBlock (+ AttBlock)];
  level i > 0 ends with a channel LayerNorm and a nearest-neighbour x2 upsampling, level 0 with
  a pointwise linear layer (C_0 -> C_out, a 1x1 convolution).
- ResBlock(x, emb): (a, b, c) = MLP(emb) (Linear -> SiLU -> Linear to 3C);
  y = conv3x3(dropout(SiLU(conv3x3(LayerNorm_C((1 + a) x + b)))));  out = (x + c y) / sqrt(1 + c^2).
- AttBlock(x, emb): the same modulation and normalised residual around multi-head
  self-attention over the H W positions (no positional embedding).
- emb: sinusoidal embedding of log sigma (``embedding`` features).
- Optional pixel-unshuffle by ``unshuffle`` (MRI: 4, 320x320x1 -> 80x80x16) and shuffle back.

Written here rather than wrapping azula.nn.UNet: azula 0.11's U-Net has no attention blocks
and a different residual (ada-norm-zero without the 1/sqrt(1 + c^2) normalisation), so it
is not the paper's network. The layout is the reference code's (francois-rozet/diffusion-priors
priors/nn.py, issue 19.2): every LayerNorm is over channels without affine parameters, as
inox's. The CIFAR configuration (channels 128/256/384, 5 blocks, attention at level 1 with
4 heads, emb 256) has 57,563,011 parameters; the MRI one (128/256/384/512, 3 blocks,
attention at level 3, unshuffle 4) 77,651,984.

Inputs are flat vectors (B, C H W), as everywhere in the pipeline (operators, Gaussian
fits and posterior samplers all act on (B, D)); the backbone reshapes to (B, C, H, W).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from empriors.diffusion import sinusoidal_embedding


def channel_layer_norm(x: Tensor, eps: float = 1e-5) -> Tensor:
    """LayerNorm over the channel axis of (B, C, H, W), no affine parameters."""
    mean = x.mean(dim=1, keepdim=True)
    var = x.var(dim=1, keepdim=True, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


class Modulation(nn.Module):
    """emb (B, E) -> a, b, c each (B, C, 1, 1); the last layer starts small (x 0.1)."""

    def __init__(self, channels: int, embedding: int):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(embedding, embedding), nn.SiLU(), nn.Linear(embedding, 3 * channels)
        )
        with torch.no_grad():
            self.mlp[-1].weight.mul_(0.1)

    def forward(self, emb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, b, c = self.mlp(emb)[..., None, None].chunk(3, dim=1)
        return a, b, c


class ResBlock(nn.Module):
    def __init__(self, channels: int, embedding: int, dropout: float):
        super().__init__()
        self.modulation = Modulation(channels, embedding)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        a, b, c = self.modulation(emb)
        y = channel_layer_norm((1 + a) * x + b)
        y = self.conv2(self.dropout(F.silu(self.conv1(y))))
        return (x + c * y) / torch.sqrt(1 + c**2)


class AttBlock(nn.Module):
    def __init__(self, channels: int, embedding: int, heads: int):
        super().__init__()
        self.modulation = Modulation(channels, embedding)
        self.attention = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        a, b, c = self.modulation(emb)
        y = channel_layer_norm((1 + a) * x + b)
        batch, channels, height, width = y.shape
        seq = y.flatten(2).transpose(1, 2)  # (B, H W, C)
        seq, _ = self.attention(seq, seq, seq, need_weights=False)
        y = seq.transpose(1, 2).reshape(batch, channels, height, width)
        return (x + c * y) / torch.sqrt(1 + c**2)


class UNetBackbone(nn.Module):
    """net(x, log_sigma): (B, C H W), (B,) -> (B, C_out H W) for images of ``shape`` (C, H, W);
    C_out = ``out_channels`` (default C; DiffEM's conditional U-Net reads 2C channels, x_t and
    the zero-filled observation, and returns C)."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        channels: tuple[int, ...] = (128, 256, 384),
        blocks: tuple[int, ...] = (5, 5, 5),
        attention: dict[int, int] | None = None,
        embedding: int = 256,
        dropout: float = 0.1,
        unshuffle: int = 1,
        out_channels: int | None = None,
    ):
        super().__init__()
        if len(channels) != len(blocks):
            raise ValueError("U-Net: channels and blocks need one entry per level")
        c, h, w = shape
        down = 2 ** (len(channels) - 1) * unshuffle
        if h % down or w % down:
            raise ValueError(f"U-Net: image {h}x{w} not divisible by {down} (levels, unshuffle)")
        self.shape, self.embedding, self.unshuffle = tuple(shape), embedding, unshuffle
        self.attention = dict(attention or {})
        c_in = c * unshuffle**2
        c_out = (out_channels or c) * unshuffle**2

        def level_blocks(i: int) -> nn.ModuleList:
            layers = nn.ModuleList()
            for _ in range(blocks[i]):
                layers.append(ResBlock(channels[i], embedding, dropout))
                if i in self.attention:
                    layers.append(AttBlock(channels[i], embedding, self.attention[i]))
            return layers

        self.entry = nn.ModuleList(
            [nn.Conv2d(c_in, channels[0], 3, padding=1)]
            + [
                nn.Conv2d(channels[i - 1], channels[i], 3, stride=2, padding=1)
                for i in range(1, len(channels))
            ]
        )
        self.descent = nn.ModuleList([level_blocks(i) for i in range(len(channels))])
        self.merge = nn.ModuleList(
            [
                nn.Conv2d(channels[i] + channels[i + 1], channels[i], 3, padding=1)
                for i in range(len(channels) - 1)
            ]
        )
        self.ascent = nn.ModuleList([level_blocks(i) for i in range(len(channels))])
        self.exit = nn.Conv2d(channels[0], c_out, 1)  # pointwise: the reference's Linear

    @staticmethod
    def _blocks(layers: nn.ModuleList, x: Tensor, emb: Tensor) -> Tensor:
        for layer in layers:
            x = layer(x, emb)
        return x

    def forward(self, x: Tensor, log_sigma: Tensor) -> Tensor:
        batch = x.shape[0]
        x = x.reshape(batch, *self.shape)
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        emb = sinusoidal_embedding(log_sigma, self.embedding).to(x.dtype)
        skips = []
        for i, (entry, layers) in enumerate(zip(self.entry, self.descent, strict=True)):
            x = entry(x) if i == 0 else channel_layer_norm(entry(x))
            x = self._blocks(layers, x, emb)
            skips.append(x)
        for i in reversed(range(len(self.ascent))):
            if i < len(self.ascent) - 1:
                x = F.interpolate(channel_layer_norm(x), scale_factor=2, mode="nearest")
                x = self.merge[i](torch.cat([skips[i], x], dim=1))
            x = self._blocks(self.ascent[i], x, emb)
        x = self.exit(x)
        if self.unshuffle > 1:
            x = F.pixel_shuffle(x, self.unshuffle)
        return x.reshape(batch, -1)
