"""SVD-based diffusion solvers without backpropagation: DDRM and DDNM / DDNM+.

Both work in the spectral domain of the operator, A = U diag(s) V^T: components with s = 0 are
the null space, where only the prior speaks; the others carry the measurement
y_bar = diag(1/s) U^T y' with noise sigma_y' / s. Components with s below rcond * max(s) count as
null. Complex spectral coefficients (blur, through the DFT) need no special case: the noise is
drawn in pixel space and taken to the spectral domain by V^T, so it has the right symmetry.
"""

from __future__ import annotations

import math

import torch

from ..errors import RestoreError
from .base import Callback, effective_sigma, hyperparameters, report, requires
from .diffusion import (TWEEDIE, alpha_bars, check_fidelity, check_prior, clip, model_measurement, noise_like,
                        schedule, to_image)

SVD_CAPABILITIES = ("V", "V_adjoint", "U_adjoint", "singular_values")


def _spectral_measurement(y, operator, shape, sigma_y: float, rcond: float):
    """(y_bar, keep, nu): spectral measurement, observed components, their noise sigma_y' / s."""
    z, s = operator.spectral(model_measurement(y, operator, shape))
    s = s.to(torch.float64)  # (C, H, W)
    keep = s > rcond * s.max()
    s_safe = torch.where(keep, s, torch.ones_like(s))
    y_bar = torch.where(keep, z / s_safe, torch.zeros_like(z))
    nu = torch.where(keep, 2 * sigma_y / s_safe, torch.full_like(s, math.inf))  # model space: sigma_y' = 2 sigma_y
    return y_bar, keep, nu


@hyperparameters(fidelity="(0, inf)", eta="[0, 1]", eta_b="[0, 1]", rcond="(0, 1)")
@requires(*SVD_CAPABILITIES, noise=("gaussian",), prior=TWEEDIE)
def ddrm(y, operator, prior, *, steps: int = 20, generator: torch.Generator | None = None,
         callback: Callback = None, fidelity: float = 1.0, eta: float = 1.0, eta_b: float = 1.0,
         rcond: float = 1e-3):
    """Denoising Diffusion Restoration Models, Kawar et al. (2022), equations (7) and (8).

    In the variance-exploding variable x_bar = V^T x_t / sqrt(alpha_bar_t), noise sigma_t^2 =
    (1 - alpha_bar_t) / alpha_bar_t, each step t -> t' sets every spectral component to
    - null space (s = 0): x0 + sqrt(1 - eta^2) sigma_t' (x_t - x0) / sigma_t + eta sigma_t' z;
    - sigma_t' < nu = sigma_y / s: x0 + sqrt(1 - eta^2) sigma_t' (y_bar - x0) / nu + eta sigma_t' z;
    - sigma_t' >= nu: (1 - eta_b) x0 + eta_b y_bar + sqrt(sigma_t'^2 - eta_b^2 nu^2) z.
    With sigma_y = 0 and eta_b = 1 the result satisfies A x = y exactly.

    eta defaults to 1 (Kawar et al. use 0.85). On 20 held-out MNIST test digits (images 1000-1019)
    with the shipped DDPM, eta = 1 against 0.85 at 20 / 50 / 100 steps (``benchmarks/tune_solvers.py``):
    70% random inpainting +1.6 / +1.3 / +1.2 dB, super-resolution +0.9 / +0.5 / +0.2, box inpainting
    +0.6 / +1.1 / -0.2, deblurring +0.2 / +0.6 / +1.8 (at 100 steps with fidelity 2), and denoising
    -1.2 / -1.7 / -2.7: there every component is observed, and with eta = 1 those below the
    measurement's noise level take nothing from y at a step. For denoising, DDNM is the better solver.
    """
    shape = check_prior(y, operator, prior)
    check_fidelity(fidelity)
    sigma_y = effective_sigma(y, operator) / math.sqrt(fidelity)
    y_bar, keep, nu = _spectral_measurement(y, operator, shape, sigma_y, rcond)
    nu_safe = torch.where(torch.isfinite(nu) & (nu > 0), nu, torch.ones_like(nu))
    x = noise_like(shape, generator, y.device)  # x_T
    for i, (t, t_prev) in enumerate(schedule(prior, steps)):
        a, a_prev = alpha_bars(prior, t, t_prev, x)
        sigma_t, sigma_prev = ((1 - a) / a).sqrt(), ((1 - a_prev) / a_prev).sqrt()
        with torch.no_grad():
            x0 = clip(prior, prior.eps_and_x0(x, t)[1])
        xb_t = operator.V_adjoint(x.double() / a.sqrt())
        xb_0 = operator.V_adjoint(x0.double())
        z = operator.V_adjoint(noise_like(shape, generator, y.device, torch.float64))
        # 1. Null space: DDIM-like update from the prior alone (equation 7).
        null = xb_0 + math.sqrt(1 - eta**2) * sigma_prev * (xb_t - xb_0) / sigma_t + eta * sigma_prev * z
        # 2. Observed, noise level below the measurement's: move towards y_bar (equation 8, first case).
        low = xb_0 + math.sqrt(1 - eta**2) * sigma_prev * (y_bar - xb_0) / nu_safe + eta * sigma_prev * z
        # 3. Observed, noise level above it: mix in y_bar, add the noise it lacks (second case).
        high = (1 - eta_b) * xb_0 + eta_b * y_bar + (sigma_prev**2 - eta_b**2 * nu**2).clamp_min(0).sqrt() * z
        xb = torch.where(~keep, null, torch.where(sigma_prev < nu, low, high))
        x = (a_prev.sqrt() * operator.V(xb)).to(prior.dtype)
        report(callback, i, t=t, x0_hat=to_image(x0))
    return to_image(x)


@hyperparameters(fidelity="(0, inf)", eta="[0, 1]", rcond="(0, 1)")
@requires(*SVD_CAPABILITIES, noise=("gaussian",), prior=TWEEDIE)
def ddnm(y, operator, prior, *, steps: int = 50, generator: torch.Generator | None = None,
         callback: Callback = None, fidelity: float = 1.0, eta: float = 1.0, rcond: float = 1e-3):
    """Denoising Diffusion Null-space Model, Wang et al. (2023): DDNM, and DDNM+ for noisy y.

    Each step replaces the range-space part of x0_hat by the measurement's,
    x0 <- x0 + lambda_t A^+ (y - A x0) (their equation 13), then takes a DDIM step with
    eta. With noise, DDNM+ (their Section 3.3) shrinks the correction per spectral component to
    lambda = min(1, sigma_noise / (sqrt(alpha_bar_t') nu)) and removes the noise the correction
    brings from the step's own noise: the added variance stays eta^2 (1 - alpha_bar_t').
    With sigma_y = 0, lambda = 1 and A x = y holds exactly at the end.

    eta defaults to 1 (DDRM's 0.85 before): on 20 held-out MNIST test digits (images 1000-1019) with
    the shipped DDPM at 50 steps, eta = 1 gave +1.9 dB on deblurring, +3.1 on denoising (DDNM+ has
    more step noise to trade for the measurement's), +0.4 on box inpainting and +0.1 on
    super-resolution, and -0.4 dB on random inpainting (``benchmarks/tune_solvers.py``).
    """
    shape = check_prior(y, operator, prior)
    check_fidelity(fidelity)
    sigma_y = effective_sigma(y, operator) / math.sqrt(fidelity)
    if sigma_y > 0 and eta == 0:
        raise RestoreError("DDNM+ takes the measurement noise out of the step's fresh noise, so a noisy "
                           "measurement needs eta > 0 (with eta = 0 it would ignore y)")
    y_bar, keep, nu = _spectral_measurement(y, operator, shape, sigma_y, rcond)
    x = noise_like(shape, generator, y.device)  # x_T
    for i, (t, t_prev) in enumerate(schedule(prior, steps)):
        a, a_prev = alpha_bars(prior, t, t_prev, x)
        with torch.no_grad():
            eps, x0 = prior.eps_and_x0(x, t)
        x0 = clip(prior, x0)
        step_noise = eta * (1 - a_prev).sqrt()  # std of the fresh noise of the step
        correction_noise = a_prev.sqrt() * nu  # std the correction's noise reaches x_t' with
        lam = torch.where(step_noise >= correction_noise, torch.ones_like(nu), step_noise / correction_noise)
        # 1. Range-null decomposition: the range-space part of x0 follows y (equation 13, DDNM+ scaled).
        xb_0 = operator.V_adjoint(x0.double())
        x0c = operator.V(torch.where(keep, xb_0 + lam * (y_bar - xb_0), xb_0))
        # 2. DDIM step with the original eps; fresh noise reduced where the correction brought some.
        z = operator.V_adjoint(noise_like(shape, generator, y.device, torch.float64))
        noise_std = torch.where(keep, (step_noise**2 - (lam * correction_noise) ** 2).clamp_min(0).sqrt(),
                                step_noise * torch.ones_like(nu))
        x = (a_prev.sqrt() * x0c + (1 - a_prev).sqrt() * math.sqrt(1 - eta**2) * eps.double()
             + operator.V(noise_std * z)).to(prior.dtype)
        report(callback, i, t=t, x0_hat=to_image(x0c))
    return to_image(x)
