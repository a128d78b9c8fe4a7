"""Latent optimization: Bora, Jalal, Price & Dimakis (2017), "Compressed Sensing using Generative Models" (CSGM).

Given a generator G (a GAN generator, a VAE decoder mean, a flow's inverse), search its latent space:

    z_hat = argmin_z  ||A(G(z)) - y||^2 / (2 sigma_y^2) + lam ||z||^2,     x_hat = G(z_hat),

with Adam from several random starts, keeping per image the start whose G(z_hat) fits the
measurement best (their section 3). For z ~ N(0, I), lam = 1/2 makes z_hat the MAP estimate of
the latent; the paper tunes lam (0.1 on its unnormalised objective). The objective is minimised
in the equivalent form fidelity ||A(G(z)) - y||^2 + 2 sigma_y^2 lam ||z||^2, which stays defined
for noiseless data (sigma_y = 0: the best data fit). ``fidelity`` is the knob every solver shares
(the data term as if the noise were sigma_y / sqrt(fidelity)). Poisson noise is treated as
Gaussian with its mean variance. Works for any differentiable operator, linear or not.
"""

from __future__ import annotations

import math

import torch

from ..errors import RestoreError
from .base import Callback, check_measurement, effective_sigma, hyperparameters, report, requires

#: What the latent solver needs from its prior: a generator from a latent.
LATENT = ("decode", "latent_shape", "image_shape")


@hyperparameters(restarts="[1, inf)", lr="(0, inf)", lam="[0, inf)", fidelity="(0, inf)")
@requires(noise=("gaussian", "poisson"), prior=LATENT)
def csgm(y, operator, prior, *, steps: int = 500, generator: torch.Generator | None = None,
         callback: Callback = None, restarts: int = 4, lr: float = 0.05, lam: float = 0.5, fidelity: float = 1.0,
         init: str = "random"):
    """Latent optimization (CSGM) with Adam, ``restarts`` starts per image, best data fit kept.

    ``init`` "encoder" starts the first restart from the prior's encoder (a VAE's posterior mean)
    applied to the operator's pseudo-inverse estimate, where both exist; the others start at
    z ~ N(0, I).
    """
    missing = [m for m in LATENT if not hasattr(prior, m)]
    if missing:
        raise RestoreError(f"latent optimization needs a prior with a generator (decode); this one lacks {', '.join(missing)}")
    if restarts < 1 or steps < 1:
        raise RestoreError(f"restarts and steps must be positive integers, got {restarts} and {steps}")
    if not (math.isfinite(fidelity) and fidelity > 0) or not (math.isfinite(lam) and lam >= 0) or not lr > 0:
        raise RestoreError(f"fidelity and lr must be positive and lam non-negative, got {fidelity}, {lr} and {lam}")
    if init not in ("random", "encoder"):
        raise RestoreError(f"init must be random or encoder, got {init!r}")
    B = check_measurement(y, operator, prior)[0]
    sigma = effective_sigma(y, operator)
    R = restarts
    # 1. Starting latents, (R * B, *latent_shape): restart r of image b at index r * B + b, drawn one
    #    restart at a time, so the first R starts of a run with more restarts are these same ones.
    z = torch.cat([torch.randn((B, *prior.latent_shape), generator=generator, device=y.device) for _ in range(R)])
    if init == "encoder":
        if not (hasattr(prior, "encode") and hasattr(operator, "A_pinv")):
            raise RestoreError("init=encoder needs a prior with an encoder (a VAE) and an operator with a pseudo-inverse")
        with torch.no_grad():
            z[:B] = prior.encode(operator.A_pinv(y).clamp(0, 1))
    z.requires_grad_(True)
    yy = y.repeat(R, *([1] * (y.dim() - 1)))  # (R * B, ...)
    opt = torch.optim.Adam([z], lr=lr)
    prior_weight = 2 * sigma**2 * lam / fidelity
    # A flow's inverse overflows far from its typical set; such a prior names a box for its latents.
    bound = getattr(prior, "latent_bound", None)
    for i in range(steps):
        # 2. One Adam step on every start at once; the starts are independent problems.
        residual = (operator.A(prior.decode(z)) - yy).flatten(1).square().sum(1)  # (R * B,)
        objective = residual + prior_weight * z.flatten(1).square().sum(1)
        opt.zero_grad(set_to_none=True)
        objective.sum().backward()
        opt.step()
        if bound is not None:
            with torch.no_grad():
                z.clamp_(-bound, bound)  # projected step: stay where the prior's generator is reliable
        report(callback, i)
    # 3. Per image, the start whose estimate fits y best (Bora et al.: "the one with the least measurement error");
    #    a start whose estimate is not finite never wins.
    with torch.no_grad():
        x = prior.decode(z)  # (R * B, C, H, W)
        fit = (operator.A(x) - yy).flatten(1).square().sum(1).view(R, B)
        fit = torch.where(torch.isfinite(fit) & torch.isfinite(x).flatten(1).all(1).view(R, B), fit, torch.inf)
        best = fit.argmin(0)  # (B,)
        return x.view(R, B, *x.shape[1:])[best, torch.arange(B, device=x.device)].clamp(0, 1)
