"""The Glow flow: invertibility, the exact log-determinant, the dequantization bound, decode."""

from __future__ import annotations

import math

import pytest
import torch

from restore.priors.flow import FlowPrior, Glow, dequantize, flow_bits_per_dim, squeeze, unsqueeze


pytestmark = pytest.mark.usefixtures("one_thread")


def _glow(size=8, levels=2, coupling="affine", seed=0):
    torch.manual_seed(seed)
    glow = Glow(size, 1, levels=levels, depth=2, hidden=8, coupling=coupling).double()
    # Zero-initialised couplings start as the identity; perturb every parameter so the test sees
    # nontrivial couplings, scales and split priors.
    with torch.no_grad():
        for p in glow.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed), dtype=p.dtype))
    return glow.eval()


def test_squeeze_is_inverted():
    x = torch.randn(2, 3, 4, 6)
    assert torch.equal(unsqueeze(squeeze(x)), x) and squeeze(x).shape == (2, 12, 2, 3)


@pytest.mark.parametrize("coupling", ["affine", "additive"])
def test_inverse_of_forward_is_the_identity(coupling):
    glow = _glow(coupling=coupling)
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64) - 0.5
    eps, _ = glow(x)
    assert eps.shape == (3, 64)
    assert torch.allclose(glow.inverse(eps), x, atol=1e-10)


@pytest.mark.parametrize("levels", [1, 2])
def test_log_density_matches_the_jacobian_determinant(levels):
    # log p(x) = log N(eps(x); 0, I) + log |det d eps / dx|: eps is the flow followed by the split
    # priors' standardisation, so the Jacobian from autograd checks every log-determinant term.
    glow = _glow(size=4, levels=levels)
    x = torch.rand(1, 1, 4, 4, dtype=torch.float64) - 0.5
    _, log_p = glow(x)
    jac = torch.autograd.functional.jacobian(lambda v: glow(v.view(1, 1, 4, 4))[0][0], x.flatten())  # (16, 16)
    eps = glow(x)[0][0]
    expected = -0.5 * eps.square().sum() - 8 * math.log(2 * math.pi) + torch.linalg.slogdet(jac)[1]
    assert float(log_p[0].detach()) == pytest.approx(float(expected.detach()), abs=1e-8)


def test_dequantization_bound_and_decode():
    glow = _glow().float()
    images = (torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 255).round().to(torch.uint8)
    x = dequantize(images, torch.Generator().manual_seed(0))
    k = images.float()
    assert ((x + 0.5) * 256 >= k).all() and ((x + 0.5) * 256 < k + 1).all()  # inside each value's bin
    bpd = flow_bits_per_dim(glow, images, torch.Generator().manual_seed(0))
    assert bpd.shape == (4,) and torch.isfinite(bpd).all()
    prior = FlowPrior(glow)
    eps, _ = glow(x)
    assert torch.allclose(prior.decode(eps), (x + 0.5).clamp(0, 1), atol=1e-5)
    score = prior.image_score(x + 0.5)
    assert score.shape == x.shape and torch.isfinite(score).all()
