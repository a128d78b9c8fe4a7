"""Diffusion posterior sampling (DPS), Chung, Kim, Mccann, Klasky & Ye (2023), "Diffusion Posterior
Sampling for General Noisy Inverse Problems" (ICLR).

Guidance turns the prior's score into an approximate posterior score, grad log p(x_t | y) = grad log
p(x_t) + grad log p(y | x_t), with p(y | x_t) approximated by p(y | x0_hat(x_t)); the gradient goes through
the network (k-diffusion's "guidance wraps a denoiser").
"""

from __future__ import annotations

import math

import torch

from ..priors.sampling import ddim_step
from .base import Callback, hyperparameters, report, requires
from .diffusion import TWEEDIE, alpha_bars, check_fidelity, check_prior, clip, noise_like, schedule, to_image


@hyperparameters(fidelity="(0, inf)", zeta="(0, inf)", eta="[0, 1]")
@requires(noise=("gaussian", "poisson"), prior=TWEEDIE)
def dps(y, operator, prior, *, steps: int = 1000, generator: torch.Generator | None = None,
        callback: Callback = None, fidelity: float = 1.0, zeta: float | None = None, eta: float = 1.0):
    """Diffusion posterior sampling, Algorithm 1 of Chung et al. (2023).

    Each step is the unconditional step (DDIM with ``eta``; eta = 1 is their ancestral step)
    followed by x_{t'} -= zeta grad_{x_t} ||y - A(x0_hat(x_t))||, the step of the authors' code, with
    which their zeta values were tuned (the paper's zeta_i = zeta / ||y - A(x0_hat)|| on the squared
    norm would be twice as long). The residual is measured in the model's [-1, 1] units, as in the
    paper, and is a plain l2 norm also for Poisson noise (the paper weights it). Works for any
    differentiable operator, linear or not; ``fidelity`` multiplies zeta.

    zeta defaults to sqrt(T / steps * H W) / 28 for H x W images, gray or colour:
    - sqrt(T / steps): longer steps when fewer are taken, each of which then stands for several of the
      paper's 1000 (the sweep on 28x28 digits that chose it: benchmarks/results/tune/results.md;
      ``benchmarks/tune_solvers.py`` reruns such sweeps);
    - sqrt(H W) / 28: the gradient of the residual's norm has a norm of order one whatever the image size, so
      its share per pixel falls as 1 / sqrt(H W), and the step keeps the per-pixel length the digits (28 x 28)
      were tuned at. Without it, 4x super-resolution of 180x180 held-out photos at 100 steps gave 20.85 dB;
      with it (zeta 20.3), 25.59, where a sweep peaked (zeta 17.8: 25.64); on a 480x320 photo the default
      (44.3) gave 26.99 dB, zeta 20 26.96, 100 24.93 and 3.16 23.23 (benchmarks/results/tune/dps_photo.md).
      Pixels, not values: on two 480x320 held-out colour photos (``ddpm-photo-rgb``, the same task) zeta
      8.8 / 17.6 / 44.3 / 70.4 / 76.9 gave 27.13 / 28.45 / 28.79 / 28.40 / 28.29 dB, the peak at the
      pixel rule's 44.3 for both photos, where counting the 3 values of a pixel gave 76.9
      (benchmarks/results/tune/photo.md). Checked at 100 steps on super-resolution only.
    """
    shape = check_prior(y, operator, prior)
    check_fidelity(fidelity)
    pairs = schedule(prior, steps)
    if zeta is None:
        zeta = math.sqrt(prior.num_timesteps / len(pairs)) * (math.sqrt(math.prod(shape[-2:])) / 28)  # 1 at 28 x 28
    x = noise_like(shape, generator, y.device)  # x_T
    for i, (t, t_prev) in enumerate(pairs):
        a, a_prev = alpha_bars(prior, t, t_prev, x)
        x = x.detach().requires_grad_(True)
        x0 = prior.eps_and_x0(x, t)[1]
        # 1. The residual norm ||y - A(x0_hat)|| per image, in [-1, 1] units (twice the [0, 1] residual).
        norm = (2 * (y - operator.A(to_image(x0)))).flatten(1).norm(dim=1)
        (grad,) = torch.autograd.grad(norm.sum(), x)
        # 2. Unconditional step, then the measurement-gradient step (lines 4-7 of Algorithm 1).
        with torch.no_grad():
            x_prev = ddim_step(x.detach(), clip(prior, x0.detach()), a, a_prev, eta, generator)
            x = x_prev - zeta * fidelity * grad
        report(callback, i, t=t, x0_hat=to_image(clip(prior, x0.detach())))
    return to_image(x.detach())


# How the defaults of None are computed; the benchmarks' caches key cells on it (bench.solver_settings).
dps.default_rules = {"zeta": ("sqrt(T / steps * H * W) / 28", 784)}
