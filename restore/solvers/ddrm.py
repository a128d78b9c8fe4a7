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

from .base import Callback, effective_sigma, hyperparameters, report, requires
from .diffusion import (SVD_CAPABILITIES, TWEEDIE, alpha_bars, check_fidelity, check_prior, clip, model_measurement, noise_like,
                        schedule, to_image)

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
