"""Noiselessly observed pixels are certain: every prior solver returns y there (issue 27)."""

from __future__ import annotations

import pytest
import torch

from restore.data import mnist_images
from restore.operators import GaussianNoise, Inpainting
from restore.priors import load_prior
from restore.solvers import PRIOR_SOLVERS, missing_capabilities, solvers_for

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = {"tweedie": None}


# PixelCNN's conditional sampler clamps observed pixels by construction and refuses noise (test_pixelcnn.py).
@pytest.mark.parametrize("family", ["gaussian", "ddpm", "vae", "flow"])
def test_every_sample_equals_y_on_noiselessly_observed_pixels(family):
    prior = load_prior(family)
    x, _ = mnist_images(2)
    op = Inpainting.random((1, 28, 28), 0.6, seed=0)
    y = op(x)
    observed = op.mask.expand_as(x).bool()
    names = [n for n in solvers_for(prior) if not missing_capabilities(PRIOR_SOLVERS[n], op)]
    assert names
    for name in names:
        out = PRIOR_SOLVERS[name](y, op, prior, steps=STEPS.get(name, 3), generator=torch.Generator().manual_seed(0))
        assert torch.equal(out[observed], y[observed]), name
    # With noise, y is not the truth: nothing is replaced.
    noisy = Inpainting.random((1, 28, 28), 0.6, seed=0, noise=GaussianNoise(0.2))
    y = noisy(x, generator=torch.Generator().manual_seed(1))
    out = PRIOR_SOLVERS[names[0]](y, noisy, prior, steps=STEPS.get(names[0], 3), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(out[observed], y[observed])
