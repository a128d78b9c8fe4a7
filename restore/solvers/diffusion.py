"""What the diffusion solvers share: the step schedule, the model-space measurement, checks.

The steps themselves (DDIM, ancestral) live in :mod:`restore.priors.sampling`, shared with sampling.

A diffusion prior (DDPM or the Gaussian reference) works in model space x' = 2 x - 1, with
x_t = sqrt(alpha_bar_t) x0' + sqrt(1 - alpha_bar_t) eps. The operators act on images x in [0, 1].
For a linear A, y = A x + n is the same measurement as y' = 2 y - A(1) = A x' + 2 n of x', so
the SVD solvers work entirely in model space with sigma_y' = 2 sigma_y.

``fidelity`` is the one knob every diffusion solver shares for the balance of data and prior: the
solver behaves as if the noise were sigma_y / sqrt(fidelity) (so the data term's weight
1 / sigma_y^2 is multiplied by ``fidelity``); DPS multiplies its step size by it. 1 is each
paper's own setting.
"""

from __future__ import annotations

import math

import torch

from ..errors import RestoreError
from ..priors.sampling import step_pairs
from .base import check_measurement

#: What a diffusion solver needs from its prior: Tweedie's estimate and the noise schedule.
TWEEDIE = ("eps_and_x0", "alpha_bar", "num_timesteps", "image_shape")

#: What the SVD-based solvers call on an operator (restore.operators.base.SVDOperator).
SVD_CAPABILITIES = ("V", "V_adjoint", "U_adjoint", "singular_values", "spectral", "prox_l2")


def to_model(x: torch.Tensor) -> torch.Tensor:
    return 2 * x - 1


def to_image(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) / 2


def check_prior(y: torch.Tensor, operator, prior) -> tuple[int, ...]:
    """The shape (B, C, H, W) of the images to restore, after checking that the prior models it."""
    missing = [m for m in TWEEDIE if not hasattr(prior, m)]
    if missing:
        raise RestoreError(f"this solver needs a diffusion prior (one with {', '.join(TWEEDIE)}); "
                           f"the given prior lacks {', '.join(missing)}")
    return check_measurement(y, operator, prior)


def check_fidelity(fidelity: float) -> None:
    if not (math.isfinite(fidelity) and fidelity > 0):
        raise RestoreError(f"fidelity must be a positive number, got {fidelity}")


def schedule(prior, steps) -> list[tuple[int, int]]:
    """(t, t_prev) pairs of the reverse process, t_prev = -1 at the end (alpha_bar = 1). ``steps`` is a
    count (evenly spaced from 0, the default) or the descending timesteps themselves, as k-diffusion's
    samplers take their sigmas: e.g. ``steps=trailing_timesteps(T, 20)`` (:mod:`restore.priors.sampling`)."""
    return step_pairs(prior.num_timesteps, steps)


def alpha_bars(prior, t: int, t_prev: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha_bar_t and alpha_bar_{t_prev} (1 at t_prev = -1) as float64 scalars on like's device."""
    a = prior.alpha_bar.to(like.device, torch.float64)
    return a[t], (a[t_prev] if t_prev >= 0 else torch.ones((), dtype=torch.float64, device=like.device))


def noise_levels(prior) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha_bar_t and the noise level sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) of each timestep (model
    space, increasing), float64 on the CPU whatever the prior's device: for scalar lookups (searchsorted
    against a float mixes devices on CUDA)."""
    a = prior.alpha_bar.detach().to("cpu", torch.float64)
    return a, ((1 - a) / a).sqrt()


def model_measurement(y: torch.Tensor, operator, image_shape) -> torch.Tensor:
    """y' = 2 y - A(1): the measurement of the model-space image x' = 2 x - 1 (linear A);
    ``image_shape`` is (B, C, H, W) of x."""
    ones = torch.ones((1, *image_shape[1:]), dtype=y.dtype, device=y.device)
    return 2 * y - operator.A(ones)


def clip(prior, x0: torch.Tensor) -> torch.Tensor:
    """x0_hat clipped to the data range [-1, 1] if the prior asks for it (DDPMs trained on images do;
    the Gaussian reference does not, so that its Tweedie estimate stays exact)."""
    return x0.clamp(-1, 1) if getattr(prior, "clip_sample", False) else x0


def noise_like(shape, generator, device, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)
