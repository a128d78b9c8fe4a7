"""The MAP estimate argmax log p(x) - ||A(x) - y||^2 / (2 sigma_y^2) with an explicit density (a flow): in
the flow's latent space by default (latent optimization with lam = 1/2: pixel-space MAP on a flow drifts
to smooth, over-likely images), or in pixel space with Adam.
"""

from __future__ import annotations

import torch

from ..errors import RestoreError
from .base import Callback, check_measurement, effective_sigma, hyperparameters, report, requires
from .diffusion import check_fidelity
from .langevin import _pixel_start
from .latent import csgm


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
