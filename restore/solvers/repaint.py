"""RePaint: inpainting with an unconditional DDPM, Lugmayr et al. (2022), Algorithm 1 with resampling."""

from __future__ import annotations

import torch

from .base import Callback, hyperparameters, progress, report, requires
from ..errors import RestoreError
from ..priors.sampling import ancestral_step
from .diffusion import TWEEDIE, alpha_bars, check_prior, clip, noise_like, schedule, to_image, to_model


def jump_schedule(steps: int, jump_length: int, resamplings: int) -> list[int]:
    """Levels visited, from ``steps`` (pure noise) down to 0 (the clean image).

    Level l >= 1 is the l-th smallest timestep of the strided schedule, level 0 the clean image.
    At every ``jump_length``-th level below ``steps - jump_length`` (0 included), the walk goes back
    up ``jump_length`` levels, ``resamplings - 1`` times (the paper's j and r, as in their schedule:
    the noisiest j levels are visited once, every other level about r times).
    """
    jumps = {level: resamplings - 1 for level in range(0, steps - jump_length, jump_length)}
    level, path = steps, [steps]
    while level > 0:
        level -= 1
        path.append(level)
        if jumps.get(level, 0) > 0:
            jumps[level] -= 1
            for _ in range(jump_length):
                level += 1
                path.append(level)
    return path


@hyperparameters(fidelity="(0, inf)", jump_length="[1, inf)", resamplings="[1, inf)")
@requires("mask", noise=("gaussian",), prior=TWEEDIE)
@progress(lambda y, operator, steps, hyper: len(jump_schedule(steps if isinstance(steps, int) else len(steps),
                                                             hyper["jump_length"], hyper["resamplings"])) - 1)
def repaint(y, operator, prior, *, steps: int = 50, generator: torch.Generator | None = None,
            callback: Callback = None, fidelity: float = 1.0, jump_length: int = 10, resamplings: int = 10):
    """Each reverse step t -> t' combines the known pixels, noised to level t' from y
    (sqrt(alpha_bar_t') y' + sqrt(1 - alpha_bar_t') z), with the unknown ones from an ancestral step
    of the prior (Algorithm 2 of Ho et al.); going back up a level re-noises with q(x_t | x_t').
    The number of network evaluations is about ``steps * resamplings``. Noisy y is used as if it
    were clean (the paper's setting is noiseless); ``fidelity`` is not used by this method and must be 1.
    """
    shape = check_prior(y, operator, prior)
    if fidelity != 1.0:
        raise RestoreError("RePaint replaces the known pixels outright: it has no fidelity to set (leave it at 1)")
    mask = operator.mask.to(y.device, prior.dtype)  # (1 or C, H, W): 1 = known
    y_model = to_model(y)
    pairs = schedule(prior, steps)  # pairs[i] = (t, t_prev), t descending
    level_t = [-1] + [t for t, _ in reversed(pairs)]  # level l -> its timestep; level 0 -> clean (-1)
    x = noise_like(shape, generator, y.device)  # x at level ``steps``
    path = jump_schedule(len(pairs), jump_length, resamplings)
    for i, (here, there) in enumerate(zip(path[:-1], path[1:])):
        t, t_next = level_t[here], level_t[there]
        if there < here:
            # 1. Reverse step t -> t_next: known pixels from y, unknown ones from the prior (lines 4-8).
            a, a_prev = alpha_bars(prior, t, t_next, x)
            with torch.no_grad():
                x0 = clip(prior, prior.eps_and_x0(x, t)[1])
            unknown = ancestral_step(x, x0, a, a_prev, "beta_tilde", generator)
            known = a_prev.sqrt() * y_model + (1 - a_prev).sqrt() * noise_like(shape, generator, y.device)
            x = (mask * known + (1 - mask) * unknown).to(prior.dtype)
        else:
            # 2. Jump back up: x_next ~ q(x_next | x_t) = N(sqrt(a_next / a_t) x_t, (1 - a_next / a_t) I) (line 10).
            a_next, a = alpha_bars(prior, t_next, t, x)
            ratio = a_next / a
            x = (ratio.sqrt() * x + (1 - ratio).sqrt() * noise_like(shape, generator, y.device)).to(prior.dtype)
        report(callback, i, t=t)
    return to_image(x)
