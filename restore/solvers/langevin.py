"""Langevin posterior sampling on an explicit density: unadjusted Langevin dynamics on
log p(x) + log p(y | x) (Roberts & Tweedie 1996; Welling & Teh 2011 for the decreasing step). With a flow
it samples the flow's latent, whose prior is N(0, I), and decodes it (exact, the flow being a bijection);
in pixel space, with an exact image score:
x <- x + delta (grad log p(x) - grad ||A(x) - y||^2 / (2 sigma_y^2)) + sqrt(2 delta) z.
"""

from __future__ import annotations

import math

import torch

from ..errors import RestoreError
from .base import Callback, check_measurement, effective_sigma, hyperparameters, report, requires
from .diffusion import check_fidelity

#: A flow: an exact score of images, a log-density and a latent to decode.
SCORE = ("image_score", "image_shape")


def _pixel_start(y, operator, shape) -> torch.Tensor:
    """Where a pixel-space solver starts: A's pseudo-inverse or adjoint applied to y, or, for an operator
    with neither (phase retrieval: only A itself is differentiable), mid-gray."""
    if hasattr(operator, "A_pinv"):
        return operator.A_pinv(y).reshape(shape)
    if hasattr(operator, "A_adjoint"):
        return operator.A_adjoint(y).reshape(shape)
    return torch.full(shape, 0.5, dtype=y.dtype, device=y.device)


def _data_grad(y, operator, x, weight):
    """-grad_x weight * ||A(x) - y||^2 / 2 (any differentiable operator)."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad((operator.A(x) - y).square().sum() * weight / 2, x)
    return -grad


@hyperparameters(step_size="(0, inf)", anneal="(0, 1]", fidelity="(0, inf)", sigma_start="(0, inf)",
                 hold="[0, 1)")
@requires(noise=("gaussian", "poisson"), prior=SCORE)
def langevin(y, operator, prior, *, steps: int = 500, generator: torch.Generator | None = None,
             callback: Callback = None, space: str = "auto", step_size: float | None = None, anneal: float = 0.1,
             fidelity: float = 1.0, sigma_start: float = 0.5, hold: float = 0.2):
    """Unadjusted Langevin posterior sampling; the last iterate is one posterior sample (draw several
    for a mean and std).

    ``space`` "latent" (the default for a flow, which decodes a latent) samples the flow's standardised
    latent eps, whose prior is N(0, I): the flow is a bijection, so eps ~ p(eps | y) decodes to
    x ~ p(x | y) exactly. In pixel space a flow's score is too stiff for Langevin steps (on MNIST its
    largest entry is ~8e3 at a test image and ~2e8 one step of 1e-4 later, then NaN), while in eps the
    prior is a unit Gaussian. The likelihood is still stiff there (the decoder's squared gain reaches
    ~400), so the latent chain (:func:`_latent_langevin`) anneals the data noise and preconditions its
    steps. "pixel" (the default for a prior without a latent) is plain unadjusted Langevin on x, started
    at the pseudo-inverse (or A^T y) estimate, with the step annealed geometrically from ``step_size``
    (default 1e-4) to ``step_size * anneal``.
    """
    shape = check_measurement(y, operator, prior)
    check_fidelity(fidelity)
    latent = hasattr(prior, "decode") and hasattr(prior, "latent_shape")
    if space == "auto":
        space = "latent" if latent else "pixel"
    if space not in ("latent", "pixel"):
        raise RestoreError(f"space must be auto, latent or pixel, got {space!r}")
    if step_size is not None and not step_size > 0:
        raise RestoreError(f"step_size must be positive, got {step_size}")
    sigma_y = max(effective_sigma(y, operator), 1e-3)  # a noiseless y is treated as sigma_y = 1e-3
    if space == "latent":
        if not latent:
            raise RestoreError("space latent needs a prior that decodes a latent (a flow)")
        return _latent_langevin(y, operator, prior, shape, steps, generator, callback, step_size or 0.03,
                                sigma_y / math.sqrt(fidelity), sigma_start, hold)
    step_size = step_size or 1e-4
    weight = fidelity / sigma_y**2
    x = _pixel_start(y, operator, shape).clamp(0, 1)
    for k in range(steps):
        # 1. delta_k = step_size * anneal^(k / (steps - 1)): large early moves, small final ones.
        delta = step_size * anneal ** (k / max(steps - 1, 1))
        # 2. Drift along the posterior score, plus sqrt(2 delta) noise.
        grad = prior.image_score(x) + _data_grad(y, operator, x, weight)
        noise = torch.randn(shape, generator=generator, device=y.device)
        x = (x + delta * grad + math.sqrt(2 * delta) * noise).clamp(0, 1).detach()
        report(callback, k)
    return x


def _latent_langevin(y, operator, prior, shape, steps, generator, callback, step_size, sigma_y, sigma_start, hold):
    """Langevin on the standardised latent eps of a flow, log p(eps | y) = -|eps|^2 / 2 - |A(G(eps)) - y|^2 / (2 sigma^2).

    - The data noise sigma is annealed geometrically from ``sigma_start`` down to sigma_y over the
      first (1 - ``hold``) of the steps and held at sigma_y for the rest, as annealed Langevin anneals
      its prior (Song & Ermon 2019): early steps see a smooth posterior and cross between modes.
    - Steps are preconditioned by a diagonal G = 1 / (sqrt(v) + 0.1), v a running mean of squared
      gradients (as in pSGLD, Li, Chen, Carlson & Carin 2016): directions where the decoder has a
      large gain take small steps, the rest Langevin steps of size ``step_size`` on the unit-Gaussian
      prior. G adapts only while sigma anneals and is then frozen: a G that follows the chain's own
      gradients, without pSGLD's correction term, widens the samples (by 20-30% in the variance of
      a Gaussian posterior, tests/test_langevin.py), while a constant G leaves the target exact up
      to the step's discretisation.
    - The inverse of a flow can overflow far from its typical set (Behrmann et al. 2021, "Understanding
      and mitigating exploding inverses in invertible neural networks"). eps is kept within the prior's
      ``latent_bound``, and a chain whose decoded image or gradient is not finite steps again from
      its last finite point, with fresh noise.
    """
    bound = getattr(prior, "latent_bound", None)
    B = shape[0]
    eps = torch.randn((B, *prior.latent_shape), generator=generator, device=y.device)
    if bound is not None:
        eps = eps.clamp(-bound, bound)
    n_anneal = max(1, round(steps * (1 - hold)))
    start = max(sigma_start, sigma_y)
    # The last finite point of each chain, its gradient, and whether the chain has had one yet.
    good_eps, good_grad = eps, torch.zeros_like(eps)
    seen = torch.zeros((B, 1), dtype=torch.bool, device=y.device)
    v = g = None
    for k in range(steps):
        f = min(k / max(n_anneal - 1, 1), 1.0)
        sigma = start ** (1 - f) * sigma_y**f
        with torch.enable_grad():
            e = eps.detach().requires_grad_(True)
            x = prior.decode(e)
            energy = (operator.A(x) - y).square().flatten(1).sum(1) / (2 * sigma**2) + e.square().flatten(1).sum(1) / 2
            (grad,) = torch.autograd.grad(energy.sum(), e)
        finite = (torch.isfinite(grad).flatten(1).all(1) & torch.isfinite(x.detach()).flatten(1).all(1)).view(B, 1)
        # A chain with a finite point behind it steps back there; one without walks on by the prior's
        # gradient alone, towards the typical set.
        eps = torch.where(finite | ~seen, eps, good_eps)
        grad = torch.where(finite, grad, torch.where(seen, good_grad, eps))
        good_eps, good_grad, seen = eps, grad, seen | finite
        if k < n_anneal:  # adapt while annealing, then hold still: a moving G would bias the samples
            v = grad.square() if v is None else 0.99 * v + 0.01 * grad.square()
            g = 1 / (v.sqrt() + 0.1)
        noise = torch.randn(eps.shape, generator=generator, device=y.device)
        eps = (eps - step_size * g * grad + (2 * step_size * g).sqrt() * noise).detach()
        if bound is not None:
            eps = eps.clamp(-bound, bound)
        report(callback, k)
    with torch.no_grad():
        x = prior.decode(eps)
        finite = torch.isfinite(x).flatten(1).all(1).view(B, 1, 1, 1)
        if not bool(finite.all()):
            x = torch.where(finite, x, prior.decode(good_eps))
        if not bool(torch.isfinite(x).all()):
            raise RestoreError("the flow's inverse gave no finite image along some chains: its latents overflow "
                               "(try a lower step_size, or space=pixel)")
    return x.reshape(shape)
