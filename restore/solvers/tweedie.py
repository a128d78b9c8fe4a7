"""One-step denoising with a diffusion prior: Tweedie's formula at the measurement's own noise level.

A noisy image y = x + sigma_y n is, in model space (x' = 2 x - 1, noise 2 sigma_y), a scaled
diffusion state: x_t = sqrt(alpha_bar_t) (2 y - 1) with (1 - alpha_bar_t) / alpha_bar_t =
(2 sigma_y)^2 has exactly the law of the forward process at that t. Tweedie's formula (Robbins
1956; Efron 2011) then gives the posterior mean E[x | y] under the prior, the MMSE estimate, in
one network evaluation: x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps_theta(x_t, t)) / sqrt(alpha_bar_t),
as in Kadkhodaie & Simoncelli (2021) and Song et al. (2021, "Score-based generative modeling through
SDEs"). Continuous noise levels fall between timesteps: the estimate interpolates the two nearest
ones linearly in sigma. The samplers (DDNM, DPS, ...) draw posterior samples instead; their mean over
many samples tends to this estimate, and a single sample is further from x in squared error (by the
posterior variance).
"""

from __future__ import annotations

import math

import torch

from ..errors import RestoreError
from .base import Callback, effective_sigma, hyperparameters, report, requires
from .diffusion import TWEEDIE, check_fidelity, check_prior, noise_levels, to_image, to_model


#: The order in which ``views`` takes the eight symmetries of the square: (quarter turns, mirrored).
#: The first two are the image and its mirror, the first four add the half turn; all eight need a prior of
#: any size or of square images.
SYMMETRIES = [(0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True)]


def check_views(solver: str, views: int) -> None:
    """Refuse a view count other than 1, 2, 4 or 8 (the first that many of :data:`SYMMETRIES`)."""
    if views not in (1, 2, 4, 8):
        raise RestoreError(f"{solver}: views must be 1, 2, 4 or 8, got {views}")


def to_view(x: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    """x turned by ``turns`` quarter turns, then mirrored left to right if ``mirror``: one of SYMMETRIES."""
    x = torch.rot90(x, turns, (-2, -1))
    return x.flip(-1) if mirror else x


def from_view(x: torch.Tensor, turns: int, mirror: bool) -> torch.Tensor:
    """The inverse of :func:`to_view`."""
    x = x.flip(-1) if mirror else x
    return torch.rot90(x, -turns, (-2, -1))


@hyperparameters(fidelity="(0, inf)", views="[1, 8]")
@requires("identity", noise=("gaussian",), prior=TWEEDIE)
def tweedie(y, operator, prior, *, steps=None, generator=None, callback: Callback = None, fidelity: float = 1.0,
            views: int = 1):
    """The posterior mean E[x | y] of a denoising problem in one network evaluation (Tweedie's formula).

    Needs the identity operator (denoising) and Gaussian noise; ``fidelity`` scales the assumed noise
    level to sigma_y / sqrt(fidelity), as for the other diffusion solvers. ``steps`` is not used.
    ``views`` 2, 4 or 8 average the estimates of that many mirrored and turned copies of y, each turned
    back (:data:`SYMMETRIES`): the geometric self-ensemble of Timofte, Rothe & Van Gool (2016, "Seven ways
    to improve example-based single image super resolution"). A prior of photographs is unchanged by
    these symmetries, so its exact posterior mean commutes with them; the average keeps that property
    and cancels part of the network's error, for ``views`` times the evaluations.
    """
    if not getattr(operator, "identity", False):
        raise RestoreError("the tweedie solver denoises (the identity operator); for blur use dpir, ddnm or dps")
    check_views("tweedie", views)
    check_fidelity(fidelity)
    check_prior(y, operator, prior)
    sigma = effective_sigma(y, operator) / math.sqrt(fidelity)
    if sigma <= 0:
        return y.clamp(0, 1)
    x0 = sum(from_view(denoise(prior, to_view(y, *sym), sigma), *sym) for sym in SYMMETRIES[:views]) / views
    report(callback, 0, x0_hat=x0)
    return x0.clamp(0, 1).to(y.dtype)


def denoise(prior, x: torch.Tensor, sigma: float, *, nearest: bool = False) -> torch.Tensor:
    """E[x0 | x0 + sigma n = x] under the prior for an image ``x`` in [0, 1] and noise level ``sigma`` (on
    [0, 1]), as an image in [0, 1] (float64, not clipped): Tweedie's estimate at the timestep whose noise
    level is sigma, interpolated linearly in sigma between the two nearest timesteps (two network
    evaluations), or with ``nearest`` at the nearer of them alone (one)."""
    sigma = 2 * sigma  # in model space
    a_bar, levels = noise_levels(prior)  # sigma_t of each timestep, increasing, (T,)
    if sigma > float(levels[-1]):
        raise RestoreError(f"sigma {sigma / 2:.3g} is beyond the prior's largest noise level {float(levels[-1]) / 2:.3g}")
    # The two timesteps around sigma, and the weight of the upper one.
    hi = int(torch.searchsorted(levels, torch.tensor(sigma, dtype=torch.float64)).clamp(0, len(levels) - 1))
    lo = max(hi - 1, 0)
    w = 0.0 if hi == lo else float((sigma - levels[lo]) / (levels[hi] - levels[lo]))
    if nearest:
        lo = hi = hi if w >= 0.5 else lo
        w = 0.0
    estimates = []
    for t in sorted({lo, hi}):
        a = float(a_bar[t])
        # The state at timestep t that x is a sample of, up to the small mismatch in noise level.
        x_t = (math.sqrt(a) * to_model(x.double())).to(prior.dtype)
        with torch.no_grad():
            estimates.append(prior.eps_and_x0(x_t, t)[1].double())
    x0 = estimates[0] if len(estimates) == 1 else (1 - w) * estimates[0] + w * estimates[1]
    return to_image(x0)
