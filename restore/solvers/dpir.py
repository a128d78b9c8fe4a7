"""Plug-and-play image restoration with a diffusion prior's denoiser: the half-quadratic splitting of
DPIR, Zhang, Li, Zuo, Zhang, Van Gool & Timofte (2021), "Plug-and-Play Image Restoration with Deep
Denoiser Prior" (TPAMI), Section 4, with Tweedie's posterior mean as the denoiser.

The estimate minimises 1/(2 sigma_y^2) ||y - A x||^2 + R(x). Splitting x from an auxiliary z with the
penalty mu/2 ||x - z||^2 and alternating gives, for k = 1..K with a noise level sigma_k falling
geometrically from ``sigma_max`` (their 49/255) to sigma_y:

1. data step: x_k = argmin ||y - A x||^2 + rho_k ||x - z_{k-1}||^2,  rho_k = lam sigma_y^2 / sigma_k^2
   (their equation 11 with alpha_k = mu_k sigma_y^2 and lam their lambda = 0.23): closed form in the
   operator's spectral domain, V^T x = (s U^T y + rho V^T z) / (s^2 + rho), where it has an SVD, else
   conjugate gradients on (A^T A + rho I) x = A^T y + rho z, preconditioned where the operator offers an
   approximate inverse (a valid blur: the circulant (K^T K + rho I)^{-1});
2. prior step: z_k = D(x_k, sigma_k), the MMSE denoiser at noise level sigma_k. DPIR trains a DRUNet for
   it; any diffusion prior already is one: Tweedie's E[x_0 | x_t] at the timestep whose noise level is
   sigma_k (:func:`restore.solvers.tweedie.denoise`, at the nearest timestep: one network evaluation).

Eight iterations are their deblurring setting; their super-resolution uses more. ``views`` > 1 is their
periodical geometric self-ensemble (the ``x8`` option of their code): the k-th prior step
denoises the k-th of ``views`` mirrored and turned copies of x_k (cycling through them) and turns the result
back, so that the errors of a network that is not exactly equivariant average out over the iterations at no
extra cost. The estimate is
deterministic (one MAP-like answer, not a posterior sample), and it costs one network evaluation per
iteration. A noiseless measurement is treated as having the noise floor 0.255/255 (as DPIR's code does).
"""

from __future__ import annotations

import math

import torch

from .base import Callback, effective_sigma, hyperparameters, initial_image, report, requires
from .classical import SIGMA_FLOOR
from .diffusion import TWEEDIE, check_fidelity, check_prior
from .diffusion import noise_levels as diffusion_levels
from .tweedie import SYMMETRIES, check_views, denoise, from_view, to_view


def noise_levels(sigma_max: float, sigma_min: float, steps: int) -> list[float]:
    """DPIR's schedule: ``steps`` noise levels spaced geometrically from sigma_max down to sigma_min."""
    if steps == 1:
        return [sigma_min]
    ratio = math.log(sigma_min / sigma_max) / (steps - 1)
    return [sigma_max * math.exp(k * ratio) for k in range(steps)]


class _DataStep:
    """x = argmin ||y - A x||^2 + rho ||x - z||^2 for any rho: in closed form where the operator has an SVD
    (``prox_l2``), else by conjugate gradients from the current x."""

    def __init__(self, y: torch.Tensor, operator, cg_steps: int):
        self.operator, self.cg_steps = operator, cg_steps
        self.spectral = hasattr(operator, "prox_l2")
        if self.spectral:  # U^T y and s, or A^T y: the same at every step
            self.y = y.double()
            self.measured = operator.spectral(self.y)
        else:
            self.aty = operator.A_adjoint(y)

    def __call__(self, z: torch.Tensor, rho: float, x: torch.Tensor) -> torch.Tensor:
        op = self.operator
        if self.spectral:
            return op.prox_l2(z.double(), self.y, rho, measured=self.measured).to(z.dtype)
        from ..operators.base import conjugate_gradient, normal_preconditioner

        def apply(v):
            return op.A_adjoint(op.A(v)) + rho * v

        b = self.aty + rho * z
        return x + conjugate_gradient(apply, b - apply(x), max_iter=self.cg_steps, tol=1e-6,
                                      precondition=normal_preconditioner(op, x, rho))


@hyperparameters(steps="[1, 1000]", fidelity="(0, inf)", lam="(0, inf)", sigma_max="(0, inf)", cg_steps="[1, 10000]",
                 views="[1, 8]")
@requires("A_adjoint", noise=("gaussian",), prior=TWEEDIE)
def dpir(y, operator, prior, *, steps: int = 8, generator: torch.Generator | None = None, callback: Callback = None,
         fidelity: float = 1.0, lam: float = 0.23, sigma_max: float = 49 / 255, cg_steps: int = 50,
         init: str = "auto", views: int = 1):
    """DPIR's plug-and-play half-quadratic splitting (Zhang et al. 2021) with Tweedie's denoiser: ``steps``
    data and denoising steps, the denoiser's noise level falling geometrically from ``sigma_max`` (at most the
    prior's largest noise level) to sigma_y
    (divided by sqrt(``fidelity``)), the data weight lam sigma_y^2 / sigma_k^2. Starts from ``init``: "auto",
    y (or the biharmonic fill of missing pixels, or the pseudo-inverse), or the estimate of the classical
    solver of that name (e.g. "tv"). ``views`` 2, 4 or 8: the k-th prior step sees symmetry k mod ``views`` of
    :data:`restore.solvers.tweedie.SYMMETRIES` (DPIR's periodical self-ensemble; 8 needs a prior of any size
    or of square images). Deterministic: ``generator`` is not used."""
    check_views("dpir", views)
    check_prior(y, operator, prior)
    check_fidelity(fidelity)
    sigma_y = max(effective_sigma(y, operator), SIGMA_FLOOR) / math.sqrt(fidelity)
    data = _DataStep(y, operator, cg_steps)
    z = initial_image(y, operator, init).to(y.dtype)
    x = z
    top = float(diffusion_levels(prior)[1][-1]) / 2  # the prior's largest noise level, on [0, 1]
    for k, sigma in enumerate(noise_levels(max(min(sigma_max, top), sigma_y), sigma_y, steps)):
        x = data(z, lam * sigma_y**2 / sigma**2, x)  # 1. data step
        view = SYMMETRIES[k % views]  # 2. prior step: the MMSE denoiser at sigma_k, on this step's view of x
        z = from_view(denoise(prior, to_view(x, *view), sigma, nearest=True), *view).to(y.dtype)
        if getattr(prior, "clip_sample", False):  # a prior of images in [0, 1] (not the Gaussian reference)
            z = z.clamp(0, 1)
        report(callback, k, x=z)
    return z.clamp(0, 1)
