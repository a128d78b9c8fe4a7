"""The gated PixelCNN: causal, no blind spot, row crops equal the full pass, exact bits/dim, conditional sampling."""

from __future__ import annotations

import math

import pytest
import torch

from restore.priors.pixelcnn import PixelCNN, PixelCNNPrior, pixel_bits_per_dim


pytestmark = pytest.mark.usefixtures("one_thread")


def _net(size=6, layers=5):
    torch.manual_seed(0)
    return PixelCNN(size, layers=layers, channels=8, kernel=3).double().eval()


def _input_gradient(net, i, j, size=6):
    x = torch.rand(1, 1, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    (grad,) = torch.autograd.grad(net(x)[0, :, i, j].square().sum(), x)
    return grad[0, 0].abs()


@pytest.mark.parametrize("i, j", [(0, 0), (2, 3), (3, 0), (5, 5)])
def test_causal_and_without_blind_spot(i, j):
    grad = _input_gradient(_net(), i, j)
    order = torch.arange(36).view(6, 6)
    earlier = order < 6 * i + j
    # Causal: pixel (i, j) and every later pixel have exactly zero influence on its logits.
    assert grad[~earlier].max() == 0
    # No blind spot: with 5 layers of 3x3 windows the receptive field covers every earlier pixel
    # of a 6x6 image, and each one must influence the logits (a single masked convolution stack
    # misses the pixels above and to the right).
    if earlier.any():
        assert grad[earlier].min() > 0, grad


def test_row_crops_give_the_same_logits():
    net = _net()
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64)
    full = net(x)
    for i in range(6):
        assert torch.allclose(net(x[:, :, : i + 1])[:, :, i], full[:, :, i], atol=1e-12)


def test_bits_per_dim_is_the_exact_cross_entropy():
    net = _net().float()
    images = (torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(2)) * 255).round().to(torch.uint8)
    logp = net(images.float() / 255).log_softmax(1)
    expected = -logp.gather(1, images.long()).flatten(1).sum(1) / (36 * math.log(2))
    assert torch.allclose(pixel_bits_per_dim(net, images), expected, atol=1e-5)
    # A softmax over 256 values sums to one: the bits/dim of a constant-logit model is exactly 8.
    with torch.no_grad():
        net.head[-1].weight.zero_()
        net.head[-1].bias.zero_()
    assert torch.allclose(pixel_bits_per_dim(net, images), torch.full((3,), 8.0), atol=1e-5)


def test_conditional_sampling_keeps_known_pixels_and_weights_only_later_ones():
    prior = PixelCNNPrior(_net().float())
    x = (torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(3)) * 255).round() / 255
    top = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    top[..., :3, :] = True  # bottom half missing: every missing pixel after every known one
    filled, log_w = prior.sample_conditional(x, top, generator=torch.Generator().manual_seed(0))
    assert torch.equal(filled[..., :3, :], x[..., :3, :]) and torch.equal(log_w, torch.zeros(4))
    assert ((filled * 255).round() == filled * 255).all()
    middle = torch.ones(1, 1, 6, 6, dtype=torch.bool)
    middle[..., 2:4, 2:4] = False  # known pixels after missing ones: their likelihood weighs the draw
    filled, log_w = prior.sample_conditional(x, middle, generator=torch.Generator().manual_seed(0))
    assert torch.equal(filled[middle.expand_as(x)], x[middle.expand_as(x)]) and (log_w < 0).all()
    assert filled.shape == x.shape and prior.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 6, 6)


def test_the_benchmark_counts_one_network_pass_per_drawn_pixel_row_position():
    from restore.solvers.counting import CountingPrior

    prior = CountingPrior(PixelCNNPrior(PixelCNN(6, 2, 4, 3)).eval())
    known = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    known[..., :3, :] = True  # rows 0-2 observed: rows 3-5 are drawn, 6 passes each
    prior.sample_conditional(torch.zeros(2, 1, 6, 6), known, generator=torch.Generator().manual_seed(0))
    assert prior.calls == 18
