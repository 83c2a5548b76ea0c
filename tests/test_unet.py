import pytest
import torch

import empriors.nn.unet as unet
from empriors.diffusion import Denoiser
from empriors.nn.unet import UNetBackbone


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_cifar_unet_parameter_count():
    """Channels 128/256/384, 5 blocks per level, attention at level 1 (16x16) with 4 heads,
    emb 256: 57,563,011 parameters (the count the parity table and README record)."""
    net = UNetBackbone((3, 32, 32), (128, 256, 384), (5, 5, 5), {1: 4}, 256, 0.1)
    assert _count(net) == 57_563_011
    attention = [m for m in net.modules() if isinstance(m, torch.nn.MultiheadAttention)]
    assert len(attention) == 10 and all(a.num_heads == 4 for a in attention)


def test_mri_unet_unshuffles_to_80x80x16():
    net = UNetBackbone((1, 32, 32), (8, 8, 8, 8), (1, 1, 1, 1), {3: 4}, 16, 0.0, unshuffle=4)
    assert net.entry[0].in_channels == 16
    x = torch.randn(2, 32 * 32)
    assert net(x, torch.zeros(2)).shape == (2, 1024)


def test_small_unet_denoiser_shapes_and_gradients():
    torch.manual_seed(0)
    d = Denoiser(UNetBackbone((1, 8, 8), (16, 32), (1, 1), {1: 2}, 32, 0.1))
    x = torch.randn(5, 64, requires_grad=True)
    out = d(x, torch.full((5,), 0.5))
    assert out.shape == (5, 64)
    out.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_indivisible_image_is_rejected():
    with pytest.raises(ValueError, match="not divisible"):
        UNetBackbone((1, 10, 10), (8, 8, 8), (1, 1, 1))


def test_layout_is_the_reference_one(monkeypatch):
    """Issue 19.2 (priors/nn.py): a channel LayerNorm after each stride-2 convolution and
    before each upsampling, a pointwise output layer, no positional embedding."""
    net = UNetBackbone((1, 16, 16), (8, 16, 32), (1, 1, 1), {2: 2}, 16, 0.0)
    assert net.exit.kernel_size == (1, 1)
    assert [e.stride for e in net.entry] == [(1, 1), (2, 2), (2, 2)]
    normalised = []  # the channel counts of the tensors normalised outside the blocks
    real = unet.channel_layer_norm
    monkeypatch.setattr(unet, "channel_layer_norm", lambda x: normalised.append(x.shape) or real(x))
    net(torch.randn(2, 256), torch.zeros(2))
    outside = [shape for shape in normalised if shape[0] == 2]
    # blocks normalise too (6 ResBlocks + 2 AttBlocks); the 4 extra ones are the layout's:
    # after the stride-2 convs (16 @ 8x8, 32 @ 4x4), before the upsamplings (32 @ 4x4, 16 @ 8x8)
    assert len(outside) == 6 + 2 + 4
    assert not hasattr(unet, "sincos_positions")
