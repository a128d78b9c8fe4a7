"""Solvers on explicit densities and scores: Langevin posterior sampling, MAP, and PixelCNN inpainting.

- ``langevin``: unadjusted Langevin dynamics on log p(x) + log p(y | x) (Roberts & Tweedie 1996;
  Welling & Teh 2011 for the decreasing step). With a flow it samples the flow's latent, whose prior
  is N(0, I), and decodes it (exact, the flow being a bijection); in pixel space, with an exact image
  score: x <- x + delta (grad log p(x) - grad ||A(x) - y||^2 / (2 sigma_y^2)) + sqrt(2 delta) z.
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
from .base import Callback, check_measurement, effective_sigma, hyperparameters, progress, report, requires
from .diffusion import TWEEDIE, check_fidelity
from .latent import csgm

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


@hyperparameters(inner="[1, inf)", epsilon="(0, inf)", fidelity="(0, inf)", sigma_min="(0, inf)")
@requires(noise=("gaussian", "poisson"), prior=TWEEDIE)
def annealed_langevin(y, operator, prior, *, steps: int = 100, generator: torch.Generator | None = None,
                      callback: Callback = None, inner: int = 3, epsilon: float = 5e-5, fidelity: float = 1.0,
                      sigma_min: float = 0.01):
    """Annealed Langevin with a diffusion prior (Song & Ermon 2019, Algorithm 1; Jalal et al. 2021).

    A DDPM's x_t / sqrt(alpha_bar_t) = x0' + sigma_t eps is a noisy image at level
    sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) (model space [-1, 1]), with score
    -eps_hat / sigma_t. ``steps`` levels spaced geometrically from the largest sigma_t down to
    ``sigma_min``, ``inner`` Langevin steps at each with step alpha = epsilon sigma^2 / sigma_min^2.
    The default epsilon 5e-5 keeps every step stable: at a level sigma the posterior's curvature is
    at most 2 / sigma^2 (the prior's 1 / sigma^2 plus a noiseless data term's), so alpha times it is
    at most 2 epsilon / sigma_min^2 = 1, below the bound 2 of a gradient step. The earlier default
    2e-5 left the chains short of the posterior in 300 passes: posterior-mean PSNR of the shipped DDPM on
    8 blurred MNIST digits 16.4 dB at 2e-5, 19.0 dB at 5e-5; 1.5e-4 gave NaN.
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
        report(callback, i)
    # Tweedie at the last level removes its remaining noise.
    t = int(torch.searchsorted(sig_all, torch.tensor(sigma_min, dtype=torch.float64)).clamp(max=len(a) - 1))
    x0 = prior.eps_and_x0(x * math.sqrt(float(a[t])), t)[1]
    return ((x0 + 1) / 2).clamp(0, 1).detach()


@hyperparameters(lr="(0, inf)", fidelity="(0, inf)", restarts="[1, inf)")
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
    start = _pixel_start(y, operator, shape).clamp(0.01, 0.99)
    # Optimise logits u, x = sigmoid(u): the estimate stays in (0, 1) where the flow's density lives.
    u = torch.logit(start.reshape(shape)).requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    for k in range(steps):
        x = torch.sigmoid(u)
        objective = (fidelity * (operator.A(x) - y).square().flatten(1).sum(1) / (2 * sigma**2) - prior.log_prob(x)).sum()
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        report(callback, k)
    return torch.sigmoid(u).detach()


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
