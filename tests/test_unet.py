import pytest
import torch

from empriors.diffusion import Denoiser
from empriors.nn.unet import UNetBackbone, sincos_positions


def _count(m):
    return sum(p.numel() for p in m.parameters())


def test_paper_cifar_unet_parameter_count():
    """Channels 128/256/384, 5 blocks per level, attention at level 1 (16x16) with 4 heads,
    emb 256: the reference architecture has about 57-58 M parameters."""
    net = UNetBackbone((3, 32, 32), (128, 256, 384), (5, 5, 5), {1: 4}, 256, 0.1)
    assert 57.0e6 < _count(net) < 58.0e6, _count(net)
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


def test_positional_embedding_distinguishes_positions():
    emb = sincos_positions(16, 4, 4)
    assert emb.shape == (16, 4, 4)
    flat = emb.reshape(16, -1).T
    assert torch.cdist(flat, flat).fill_diagonal_(1.0).min() > 1e-3
