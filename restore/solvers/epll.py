"""EPLL: restoration with a patch prior by half-quadratic splitting, Zoran & Weiss (2011), "From learning
models of natural image patches to whole image restoration" (ICCV), Section 3 and their code's schedules.

The estimate maximises  -1/(2 sigma_y^2) ||A x - y||^2 + EPLL(x),  EPLL(x) = sum_i log p(P_i x) over all
overlapping patches. Half-quadratic splitting gives each patch an auxiliary z_i and the penalty
beta/2 ||P_i x - z_i||^2, and alternates, while beta grows along a schedule:

1. z-step: z_i = the approximate MAP of the clean patch given P_i x under noise of variance 1/beta: the
   Wiener filter of the mixture component with the highest posterior probability;
2. x-step: x = argmin lambda/2 ||A x - y||^2 + beta/2 sum_i ||P_i x - z_i||^2 with the paper's lambda = p^2 /
   sigma_y^2: per pixel, the z_i of the patches that cover it averaged (z_bar) and weighted by their count.

The paper's code weights every pixel in the x-step as if p^2 patches covered it, also within p - 1 of a
border, where fewer do (``weights="paper"``, the default). The splitting of the objective as written
gives those pixels the weight of the patches that cover them (``weights="exact"``): a corner pixel, one
patch, then stays close to its measurement. The two differ only in that band, but there by enough to
matter: on 4 held-out BSDS photos at sigma 25, 29.82 dB against 29.48 for the whole image, 29.73 for both
7 pixels in from the border (``benchmarks/results/tune/epll_border.md``). Padding by reflection instead,
so that p^2 patches cover every pixel, gave 29.82 too.
"""

from __future__ import annotations

import torch

from .base import Callback, effective_sigma, hyperparameters, initial_image, progress, report, requires

#: The paper's schedules: denoising beta = [1, 4, 8, 16, 32] / sigma^2 (64 and 128 added for high noise,
#: as its demo advises), everything else its deblurring schedule 50 * [1, 2, ..., 64].
DENOISE_BETAS = (1, 4, 8, 16, 32)
HIGH_NOISE = 40 / 255
OTHER_BETAS = tuple(50 * 2**k for k in range(7))

#: Noise floor for a noiseless measurement (as the classical solvers): 8-bit rounding alone is ~1e-3.
SIGMA_FLOOR = 1e-3


def schedule(operator, sigma_y: float, steps: int | None = None) -> list[float]:
    """The paper's beta schedule for this operator and noise; with ``steps``, that many values spaced
    geometrically between its first and last."""
    if getattr(operator, "name", None) == "denoise" and sigma_y > 0:
        betas = [b / sigma_y**2 for b in DENOISE_BETAS + ((64, 128) if sigma_y >= HIGH_NOISE else ())]
    else:
        betas = list(map(float, OTHER_BETAS))
    if steps is not None and steps != len(betas):
        first, last = torch.tensor(betas[0]).log(), torch.tensor(betas[-1]).log()
        betas = [float(v) for v in torch.linspace(first, last, steps).exp()] if steps > 1 else [betas[-1]]
    return betas


def _x_step(operator, Aty: torch.Tensor, z_bar: torch.Tensor, w: torch.Tensor, s2: float, beta: float,
            x: torch.Tensor, cg_steps: int) -> torch.Tensor:
    """argmin 1/(2 s2) ||A x - y||^2 + beta/2 sum_j w_j (x_j - z_bar_j)^2, w the patch coverage over p^2 (the
    sum over patches of beta/(2 p^2) ||P_i x - z_i||^2, up to a constant): per pixel for an operator
    diagonal in pixel space (denoising, inpainting), else by conjugate gradients from the current x.
    ``Aty`` is A^T y / s2, the same at every step."""
    b = Aty + beta * w * z_bar
    if getattr(operator, "diagonal", False):
        s = operator.singular_values(x)
        return b / (s.square() / s2 + beta * w)

    def apply(v):
        return operator.A_adjoint(operator.A(v)) / s2 + beta * w * v

    from ..operators.base import conjugate_gradient, normal_preconditioner

    # (A^T A + s2 beta w)^{-1} s2 with w replaced by its interior value 1, where the operator can approximate it.
    inverse = normal_preconditioner(operator, x, s2 * beta)
    precondition = None if inverse is None else (lambda v: s2 * inverse(v))
    return x + conjugate_gradient(apply, b - apply(x), max_iter=cg_steps, tol=1e-5, precondition=precondition)


@hyperparameters(steps="[1, 1000]", iterations="[1, 100]", cg_steps="[1, 10000]")
@requires("A_adjoint", noise=("gaussian",), prior=("patch_average", "coverage"))
@progress(lambda y, operator, steps, hyper: len(schedule(operator, effective_sigma(y, operator), steps))
          * hyper.get("iterations", 1))
def epll(y, operator, prior, *, steps: int | None = None, generator=None, callback: Callback = None,
         betas: list[float] | None = None, iterations: int = 1, rule: str = "map", cg_steps: int = 50,
         weights: str = "paper", init: str = "auto"):
    """Half-quadratic splitting of Zoran & Weiss (2011) with their beta schedule (``steps`` values spaced
    geometrically between its ends, or ``betas`` given), ``iterations`` z- and x-steps per beta; ``rule``
    "map" is the paper's z-step, "mean" uses each patch's posterior mean instead; ``weights`` "paper"
    weights border pixels in the x-step as the paper's code does, "exact" as the objective does (see the
    module's docstring); ``init`` "auto" or a classical solver's name starts from that solver's estimate
    (:func:`initial_image`). Deterministic."""
    if rule not in ("map", "mean") or weights not in ("paper", "exact"):
        from ..errors import RestoreError

        raise RestoreError(f"epll: rule must be map or mean and weights paper or exact, got {rule!r}, {weights!r}")
    sigma_y = effective_sigma(y, operator)
    s2 = max(sigma_y, SIGMA_FLOOR) ** 2
    betas = list(betas) if betas is not None else schedule(operator, sigma_y, steps)
    x = initial_image(y, operator, init)
    # (H, W): 1 everywhere (the paper's), or the covering patches over p^2 (the objective's)
    w = x.new_ones(x.shape[-2:]) if weights == "paper" else prior.coverage(x.shape[-2], x.shape[-1], x)
    Aty = operator.A_adjoint(y) / s2
    k = 0
    for beta in betas:
        for _ in range(iterations):
            z_bar = prior.patch_average(x, beta**-0.5, rule)  # 1. z-step, averaged over the patches
            x = _x_step(operator, Aty, z_bar, w, s2, beta, x, cg_steps)  # 2. x-step
            report(callback, k, x=x)
            k += 1
    return x.clamp(0, 1)
