"""Sampling the reverse diffusion of any prior that offers Tweedie's estimate (a DDPM, the Gaussian reference).

The prior supplies ``eps_and_x0(x_t, t)`` in model space [-1, 1], ``alpha_bar`` (T,),
``image_shape`` and ``dtype``; ``clip_sample`` (if present and true) clips x0_hat to [-1, 1].
"""

from __future__ import annotations

import torch

from ..errors import RestoreError


def strided_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """``steps`` evenly spaced timesteps of 0..T-1, descending, starting at 0 ("leading" spacing, as diffusers)."""
    if not 1 <= steps <= num_timesteps:
        raise RestoreError(f"steps must be between 1 and {num_timesteps}, got {steps}")
    ratio = num_timesteps // steps
    return [i * ratio for i in reversed(range(steps))]


@torch.no_grad()
def reverse_diffusion(prior, n: int, *, steps: int | None = None, method: str = "ancestral",
                      variance: str = "beta_tilde", eta: float = 0.0, generator: torch.Generator | None = None,
                      callback=None, clip: bool = True) -> torch.Tensor:
    """n samples as images (in [0, 1] if ``clip``): ancestral sampling or DDIM.

    Ancestral: Algorithm 2 of Ho et al. (2020), x_{t-1} = mu_tilde(x_t, x0_hat) + sigma_t z with the
    posterior mean of their equation (7) and sigma_t^2 = beta_tilde_t (``variance="beta_tilde"``) or
    beta_t. With fewer steps than the schedule has, step t -> t' uses alpha_t = alpha_bar_t / alpha_bar_t'
    in place of 1 - beta_t: the same posterior q(x_t' | x_t, x_0) on the sub-sequence.
    DDIM: equation (12) of Song, Meng & Ermon (2021), eta = 0 deterministic.
    """
    if method not in ("ancestral", "ddim"):
        raise RestoreError(f"unknown sampling method {method!r} (known: ancestral, ddim)")
    if variance not in ("beta_tilde", "beta"):
        raise RestoreError(f"unknown variance {variance!r} (known: beta_tilde, beta)")
    device = prior.alpha_bar.device
    dtype = prior.dtype
    clip_x0 = getattr(prior, "clip_sample", False)
    x = torch.randn((n, *prior.image_shape), generator=generator, device=device, dtype=dtype)  # x_T
    ts = strided_timesteps(prior.num_timesteps, steps or prior.num_timesteps)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        a_t = prior.alpha_bar[t]
        a_prev = prior.alpha_bar[t_prev] if t_prev >= 0 else torch.ones_like(a_t)
        eps, x0 = prior.eps_and_x0(x, t)
        if clip_x0:
            x0 = x0.clamp(-1, 1)
        if method == "ancestral":
            alpha_t = a_t / a_prev  # 1 - beta_t on the (possibly strided) sub-sequence
            beta_t = 1 - alpha_t
            # 1. Posterior mean of q(x_prev | x_t, x_0), equation (7) of Ho et al.
            mean = (a_prev.sqrt() * beta_t / (1 - a_t)) * x0 + (alpha_t.sqrt() * (1 - a_prev) / (1 - a_t)) * x
            # 2. sigma_t^2: beta_tilde_t = (1 - alpha_bar_prev) / (1 - alpha_bar_t) beta_t, or beta_t.
            var = ((1 - a_prev) / (1 - a_t) * beta_t).clamp_min(1e-20) if variance == "beta_tilde" else beta_t
            if t_prev >= 0:  # Algorithm 2: no noise at the last step
                z = torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
                x = mean + var.sqrt() * z
            else:
                x = mean
        else:
            # 3. DDIM; eps recomputed from the clipped x0, as diffusers' use_clipped_model_output.
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
            sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp_min(0).sqrt() * eps
            if eta > 0 and t_prev >= 0:
                x = x + sigma * torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
        if callback is not None:
            callback(i, x)
    x = (x + 1) / 2
    return x.clamp(0, 1) if clip else x
