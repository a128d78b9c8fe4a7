"""Pseudoinverse-guided diffusion (PiGDM), Song, Vahdat, Mardani & Kautz (2023), "Pseudoinverse-Guided
Diffusion Models for Inverse Problems" (ICLR).

Guidance as in DPS (:mod:`restore.solvers.dps`), with p(x0 | x_t) taken as a Gaussian around x0_hat, so
that p(y | x_t) is Gaussian and its score a vector-Jacobian product through the network.
"""

from __future__ import annotations

import math

import torch

from ..priors.sampling import ddim_step
from .base import Callback, effective_sigma, hyperparameters, report, requires
from .diffusion import (SVD_CAPABILITIES, TWEEDIE, alpha_bars, check_fidelity, check_prior, clip,
                        model_measurement, noise_like, schedule, to_image)


@hyperparameters(fidelity="(0, inf)", eta="[0, 1]", rcond="(0, 1)")
@requires(*SVD_CAPABILITIES, noise=("gaussian",), prior=TWEEDIE)
def pigdm(y, operator, prior, *, steps: int = 50, generator: torch.Generator | None = None,
          callback: Callback = None, fidelity: float = 1.0, eta: float = 1.0, rcond: float = 1e-3):
    """Pseudoinverse-guided diffusion, Song, Vahdat, Mardani & Kautz (2023).

    p(x0 | x_t) is taken as N(x0_hat, r_t^2 I) with r_t^2 = 1 - alpha_bar_t (their choice for data
    of unit variance), so that
    g = (d x0_hat / d x_t)^T A^T (r_t^2 A A^T + sigma_y^2 I)^{-1} (y - A x0_hat)
    is grad log p(y | x_t), one vector-Jacobian product; (r_t^2 A A^T + sigma_y^2 I)^{-1} is applied
    through the SVD. Where their Algorithm 1 adds g to the DDIM step with a weight, this step uses g
    as the score it estimates: DDIM with eps <- eps - sqrt(1 - alpha_bar_t) g and
    x0_hat <- x0_hat + (1 - alpha_bar_t) / sqrt(alpha_bar_t) g (Tweedie with the posterior score),
    which is exact when the prior is Gaussian with identity covariance in model space.
    """
    shape = check_prior(y, operator, prior)
    check_fidelity(fidelity)
    sigma = 2 * effective_sigma(y, operator) / math.sqrt(fidelity)  # in model space
    y_model = model_measurement(y, operator, shape)
    x = noise_like(shape, generator, y.device)  # x_T
    for i, (t, t_prev) in enumerate(schedule(prior, steps)):
        a, a_prev = alpha_bars(prior, t, t_prev, x)
        x = x.detach().requires_grad_(True)
        x0 = prior.eps_and_x0(x, t)[1]
        # 1. v = A^T (r^2 A A^T + sigma^2 I)^-1 (y - A x0), spectrally: V (s / (r^2 s^2 + sigma^2)) U^T (y - A x0).
        with torch.no_grad():
            z, s = operator.spectral(y_model - operator.A(x0.detach()))
            s = s.to(torch.float64)
            keep = s > rcond * s.max()
            weight = torch.where(keep, s / torch.where(keep, (1 - a) * s**2 + sigma**2, torch.ones_like(s)),
                                 torch.zeros_like(s))
            v = operator.V(weight * z).to(x.dtype)
        # 2. The vector-Jacobian product g = (d x0_hat / d x_t)^T v.
        (g,) = torch.autograd.grad(x0, x, grad_outputs=v)
        with torch.no_grad():
            # x_t = sqrt(a) x0_c + sqrt(1 - a) eps_c still holds, with eps_c = eps - sqrt(1 - a) g.
            x0_c = clip(prior, x0 + (1 - a) / a.sqrt() * g)
            x = ddim_step(x.detach(), x0_c, a, a_prev, eta, generator)
        report(callback, i, t=t, x0_hat=to_image(x0_c))
    return to_image(x.detach())
