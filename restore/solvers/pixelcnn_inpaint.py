"""PixelCNN inpainting by conditional sampling in raster order with the known pixels clamped (van den Oord
et al. 2016), and sampling-importance-resampling over ``particles`` draws: the draw is exact when every
missing pixel comes after every known one (the bottom of an image); otherwise the known pixels after a
missing one weigh the draws (their likelihood under the PixelCNN), which is exact as particles grow. It
needs a noiseless mask: other operators have no useful gradient through a softmax PixelCNN and are refused.
"""

from __future__ import annotations

import torch

from ..errors import RestoreError
from .base import Callback, check_measurement, effective_sigma, hyperparameters, progress, requires


@hyperparameters(particles="[1, inf)")
@requires("mask", noise=("gaussian",), prior=("sample_conditional",))
@progress(lambda y, operator, steps, hyper: y.shape[-2])  # one callback per row of pixels
def pixelcnn_inpaint(y, operator, prior, *, steps: int | None = None, generator: torch.Generator | None = None,
                     callback: Callback = None, particles: int = 8):
    """One posterior draw per image: ``particles`` conditional samples, one kept by its importance weight."""
    shape = check_measurement(y, operator, prior)
    if effective_sigma(y, operator) > 0:
        raise RestoreError("PixelCNN inpainting clamps the observed pixels: it needs a noiseless measurement "
                           "(--noise 0); for noisy data use a ddpm, vae, gan or flow prior")
    if particles < 1:
        raise RestoreError(f"particles must be a positive integer, got {particles}")
    B = shape[0]
    known = operator.mask.expand(shape) > 0.5
    x = y.reshape(shape).repeat(particles, 1, 1, 1)  # (K * B, C, H, W), particle k of image b at k * B + b
    filled, log_w = prior.sample_conditional(x, known.repeat(particles, 1, 1, 1), generator=generator, callback=callback)
    # Sampling-importance-resampling: pick one particle per image with probability proportional to its weight.
    probs = torch.softmax(log_w.view(particles, B).T.double(), 1)  # (B, K)
    pick = torch.multinomial(probs, 1, generator=generator)[:, 0]
    return filled.view(particles, B, *shape[1:])[pick, torch.arange(B, device=y.device)]
