"""Sampling the reverse diffusion of any prior that offers Tweedie's estimate (a DDPM, the Gaussian reference).

The prior supplies ``eps_and_x0(x_t, t)`` in model space [-1, 1], ``alpha_bar`` (T,),
``image_shape`` and ``dtype``; ``clip_sample`` (if present and true) clips x0_hat to [-1, 1].
"""

from __future__ import annotations

import numbers

import torch

from ..errors import RestoreError


def strided_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` evenly spaced timesteps of 0..T-1, descending, starting at 0 ("leading" spacing, as diffusers)."""
    if not 1 <= steps <= num_timesteps:
        raise RestoreError(f"steps must be between 1 and {num_timesteps}, got {steps}")
    ratio = num_timesteps // steps
    return [i * ratio for i in reversed(range(steps))]


def trailing_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` evenly spaced timesteps, descending, starting at T - 1 ("trailing" spacing: Lin et al. 2024,
    "Common diffusion noise schedules and sample steps are flawed", Table 2; diffusers' ``timestep_spacing=
    "trailing"``), so that the first step starts where the forward process ends. Pass the list as a
    solver's ``steps`` to use it."""
    if not 1 <= steps <= num_timesteps:
        raise RestoreError(f"steps must be between 1 and {num_timesteps}, got {steps}")
    return [round(num_timesteps - k * num_timesteps / steps) - 1 for k in range(steps)]


def timesteps_of(num_timesteps: int, steps) -> list[int]:
    """A reverse schedule: ``steps`` is a count (:func:`strided_timesteps`, the default spacing) or the
    timesteps themselves, distinct and descending (e.g. :func:`trailing_timesteps`, or any list)."""
    if isinstance(steps, numbers.Integral):
        return strided_timesteps(num_timesteps, int(steps))
    ts = [int(t) for t in steps]
    if not ts or not all(0 <= t < num_timesteps for t in ts) or any(a <= b for a, b in zip(ts, ts[1:])):
        raise RestoreError(f"timesteps must be distinct, descending and within 0..{num_timesteps - 1}, got {ts}")
    return ts


def step_pairs(num_timesteps: int, steps) -> list[tuple[int, int]]:
    """(t, t_prev) pairs of the reverse process over ``steps`` (a count or the timesteps, see
    :func:`timesteps_of`), t_prev = -1 at the end (alpha_bar = 1 there)."""
    ts = timesteps_of(num_timesteps, steps)
    return [(t, ts[i + 1] if i + 1 < len(ts) else -1) for i, t in enumerate(ts)]


def ancestral_step(x_t: torch.Tensor, x0: torch.Tensor, a_t, a_prev, variance: str, generator) -> torch.Tensor:
    """x_{t_prev} ~ N(mu_tilde(x_t, x0), sigma_t^2 I): one step of Algorithm 2 of Ho et al. (2020).

    mu_tilde is the posterior mean of q(x_prev | x_t, x_0), their equation (7); sigma_t^2 is
    beta_tilde_t ("beta_tilde") or beta_t ("beta"). On a strided schedule alpha_t = alpha_bar_t /
    alpha_bar_prev takes the place of 1 - beta_t. No noise at the last step (a_prev = 1).
    """
    alpha_t = a_t / a_prev  # 1 - beta_t on the (possibly strided) sub-sequence
    beta_t = 1 - alpha_t
    # 1. Posterior mean of q(x_prev | x_t, x_0), equation (7) of Ho et al.
    mean = (a_prev.sqrt() * beta_t / (1 - a_t)) * x0 + (alpha_t.sqrt() * (1 - a_prev) / (1 - a_t)) * x_t
    if float(a_prev) >= 1:
        return mean
    # 2. sigma_t^2: beta_tilde_t = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta_t, or beta_t.
    var = ((1 - a_prev) / (1 - a_t) * beta_t).clamp_min(1e-20) if variance == "beta_tilde" else beta_t
    z = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
    return mean + var.sqrt() * z


def ddim_step(x_t: torch.Tensor, x0: torch.Tensor, a_t, a_prev, eta: float, generator) -> torch.Tensor:
    """x_{t_prev} from x_t and x0', equation (12) of Song, Meng & Ermon (2021, DDIM).

    eps is recomputed from x_t and x0' (so a clipped x0' stays consistent with it, as diffusers'
    ``use_clipped_model_output``). eta = 0 is deterministic DDIM; eta = 1 has the variance of the DDPM
    posterior q(x_prev | x_t, x_0) (beta_tilde on the strided schedule).
    """
    eps = (x_t - a_t.sqrt() * x0) / (1 - a_t).sqrt()
    sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).clamp_min(0).sqrt()
    x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
    if eta > 0 and float(a_prev) < 1:
        x = x + sigma * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x.to(x0.dtype)


@torch.no_grad()
def reverse_diffusion(prior, n: int, *, steps: int | None = None, method: str = "ancestral",
                      variance: str = "beta_tilde", eta: float = 0.0, generator: torch.Generator | None = None,
                      callback=None, clip: bool = True) -> torch.Tensor:
    """n samples as images (in [0, 1] if ``clip``): ancestral sampling (:func:`ancestral_step`,
    Algorithm 2 of Ho et al. 2020) or DDIM (:func:`ddim_step`, Song et al. 2021)."""
    if method not in ("ancestral", "ddim"):
        raise RestoreError(f"unknown sampling method {method!r} (known: ancestral, ddim)")
    if variance not in ("beta_tilde", "beta"):
        raise RestoreError(f"unknown variance {variance!r} (known: beta_tilde, beta)")
    clip_x0 = getattr(prior, "clip_sample", False)
    x = torch.randn((n, *prior.image_shape), generator=generator, device=prior.alpha_bar.device,
                    dtype=prior.dtype)  # x_T
    for i, (t, t_prev) in enumerate(step_pairs(prior.num_timesteps, steps or prior.num_timesteps)):
        a_t = prior.alpha_bar[t]
        a_prev = prior.alpha_bar[t_prev] if t_prev >= 0 else torch.ones_like(a_t)
        x0 = prior.eps_and_x0(x, t)[1]
        if clip_x0:
            x0 = x0.clamp(-1, 1)
        if method == "ancestral":
            x = ancestral_step(x, x0, a_t, a_prev, variance, generator)
        else:
            x = ddim_step(x, x0, a_t, a_prev, eta, generator)
        if callback is not None:
            callback({"i": i, "t": t, "x0_hat": (x0 + 1) / 2})
    x = (x + 1) / 2
    return x.clamp(0, 1) if clip else x
