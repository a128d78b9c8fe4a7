"""Solvers on explicit densities and scores: Langevin posterior sampling, MAP, and PixelCNN inpainting.

- ``langevin``: unadjusted Langevin dynamics on log p(x) + log p(y | x) with an exact image-space
  score (a flow): x <- x + delta (grad log p(x) - grad ||A(x) - y||^2 / (2 sigma_y^2)) + sqrt(2 delta) z,
  the step delta annealed geometrically from ``step_size`` to ``step_size * anneal`` (Roberts &
  Tweedie 1996; Welling & Teh 2011 for the decreasing step).
- ``annealed_langevin``: annealed Langevin dynamics with a diffusion prior's score at a ladder of
  noise levels (Song & Ermon 2019, Algorithm 1), guided by the measurement as in Jalal et al.
  (2021), "Robust Compressed Sensing MRI with Deep Generative Priors": at level sigma the data term
  is ||A(x) - y||^2 / (2 (sigma_y^2 + sigma^2)).
- ``map_estimate``: the MAP estimate argmax log p(x) - ||A(x) - y||^2 / (2 sigma_y^2). In the
  flow's latent space by default (latent optimization with lam = 1/2: pixel-space MAP on a flow
  drifts to smooth, over-likely images), or in pixel space with Adam.
- ``pixelcnn_inpaint``: PixelCNN inpainting by conditional sampling in raster order with the known
  pixels clamped, and sampling-importance-resampling over ``particles`` draws: the draw is exact
  when every missing pixel comes after every known one (the bottom of an image); otherwise the
  known pixels after a missing one weigh the draws (their likelihood under the PixelCNN), which is
  exact as particles grow. It needs a noiseless mask: other operators have no useful gradient
  through a softmax PixelCNN and are refused.
"""

from __future__ import annotations

import math

import torch

from ..errors import RestoreError
from .base import Callback, check_measurement, effective_sigma, requires
from .diffusion import TWEEDIE, check_fidelity
from .latent import csgm

#: A flow: an exact score of images, a log-density and a latent to decode.
SCORE = ("image_score", "image_shape")


def _data_grad(y, operator, x, weight):
    """-grad_x weight * ||A(x) - y||^2 / 2 (any differentiable operator)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad((operator.A(x) - y).square().sum() * weight / 2, x)
    return -grad


@requires(noise=("gaussian", "poisson"), prior=SCORE)
def langevin(y, operator, prior, *, steps: int = 500, generator: torch.Generator | None = None,
             callback: Callback = None, step_size: float = 1e-4, anneal: float = 0.1, fidelity: float = 1.0):
    """Unadjusted Langevin posterior sampling with an exact score, started at the pseudo-inverse
    (or A^T y) estimate; the last iterate is one posterior sample (draw several for a mean and std)."""
    shape = check_measurement(y, operator, prior)
    check_fidelity(fidelity)
    sigma = max(effective_sigma(y, operator), 1e-3)  # a noiseless y is treated as sigma_y = 1e-3
    weight = fidelity / sigma**2
    x = (operator.A_pinv(y) if hasattr(operator, "A_pinv") else operator.A_adjoint(y)).clamp(0, 1).reshape(shape)
    for k in range(steps):
        # 1. delta_k = step_size * anneal^(k / (steps - 1)): large early moves, small final ones.
        delta = step_size * anneal ** (k / max(steps - 1, 1))
        # 2. Drift along the posterior score, plus sqrt(2 delta) noise.
        grad = prior.image_score(x) + _data_grad(y, operator, x, weight)
        noise = torch.randn(shape, generator=generator, device=y.device)
        x = (x + delta * grad + math.sqrt(2 * delta) * noise).clamp(0, 1).detach()
        if callback is not None:
            callback(k, None)
    return x


@requires(noise=("gaussian", "poisson"), prior=TWEEDIE)
def annealed_langevin(y, operator, prior, *, steps: int = 100, generator: torch.Generator | None = None,
                      callback: Callback = None, inner: int = 3, epsilon: float = 2e-5, fidelity: float = 1.0,
                      sigma_min: float = 0.01):
    """Annealed Langevin with a diffusion prior (Song & Ermon 2019, Algorithm 1; Jalal et al. 2021).

    A DDPM's x_t / sqrt(alpha_bar_t) = x0' + sigma_t eps is a noisy image at level
    sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) (model space [-1, 1]), with score
    -eps_hat / sigma_t. ``steps`` levels spaced geometrically from the largest sigma_t down to
    ``sigma_min``, ``inner`` Langevin steps at each with step alpha = epsilon sigma^2 / sigma_min^2.
    """
    from .diffusion import check_prior

    shape = check_prior(y, operator, prior)
    check_fidelity(fidelity)
    a = prior.alpha_bar.double()
    sig_all = ((1 - a) / a).sqrt()  # (T,), increasing
    sigma_y = effective_sigma(y, operator)
    levels = torch.logspace(math.log10(float(sig_all[-1])), math.log10(sigma_min), steps, dtype=torch.float64)
    x = float(sig_all[-1]) * torch.randn(shape, generator=generator, device=y.device)  # model space
    for i, sigma in enumerate(levels.tolist()):
        t = int(torch.searchsorted(sig_all, torch.tensor(sigma, dtype=torch.float64)).clamp(max=len(a) - 1))
        ab = float(a[t])
        alpha = epsilon * sigma**2 / sigma_min**2
        # Jalal et al.: the measurement noise grows by the level's noise, as seen through A (2x: [-1, 1] units).
        weight = fidelity / (sigma_y**2 + (sigma / 2) ** 2)
        for _ in range(inner):
            eps = prior.eps_and_x0(x * math.sqrt(ab), t)[0]
            score = -eps / sigma  # grad of log p_sigma in the variance-exploding variable
            # The data term on the image (x + 1) / 2: chain rule gives a factor 1/2.
            data = _data_grad(y, operator, (x + 1) / 2, weight) / 2
            noise = torch.randn(shape, generator=generator, device=y.device)
            x = (x + alpha * (score + data) + math.sqrt(2 * alpha) * noise).detach()
        if callback is not None:
            callback(i, None)
    # Tweedie at the last level removes its remaining noise.
    t = int(torch.searchsorted(sig_all, torch.tensor(sigma_min, dtype=torch.float64)).clamp(max=len(a) - 1))
    x0 = prior.eps_and_x0(x * math.sqrt(float(a[t])), t)[1]
    return ((x0 + 1) / 2).clamp(0, 1).detach()


@requires(noise=("gaussian", "poisson"), prior=("decode", "image_score", "log_prob"))
def map_estimate(y, operator, prior, *, steps: int = 500, generator: torch.Generator | None = None,
                 callback: Callback = None, space: str = "latent", lr: float = 0.05, fidelity: float = 1.0,
                 restarts: int = 4):
    """MAP estimate with a flow: in its latent space (latent optimization, lam = 1/2) or in pixel space."""
    if space == "latent":
        return csgm(y, operator, prior, steps=steps, generator=generator, callback=callback, restarts=restarts,
                    lr=lr, lam=0.5, fidelity=fidelity)
    if space != "pixel":
        raise RestoreError(f"space must be latent or pixel, got {space!r}")
    shape = check_measurement(y, operator, prior)
    check_fidelity(fidelity)
    sigma = max(effective_sigma(y, operator), 1e-3)
    start = (operator.A_pinv(y) if hasattr(operator, "A_pinv") else operator.A_adjoint(y)).clamp(0.01, 0.99)
    # Optimise logits u, x = sigmoid(u): the estimate stays in (0, 1) where the flow's density lives.
    u = torch.logit(start.reshape(shape)).requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    for k in range(steps):
        x = torch.sigmoid(u)
        objective = (fidelity * (operator.A(x) - y).square().flatten(1).sum(1) / (2 * sigma**2) - prior.log_prob(x)).sum()
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        if callback is not None:
            callback(k, None)
    return torch.sigmoid(u).detach()


@requires("mask", noise=("gaussian",), prior=("sample_conditional",))
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
