"""What a diffusion prior offers, written once: Tweedie's estimate as an image, the score, the step schedule.

A subclass supplies ``eps_and_x0(x_t, t)`` in model space [-1, 1] and the buffer ``alpha_bar`` (T,);
this class derives the rest in the conventions of :mod:`restore.priors.ddpm`.
"""

from __future__ import annotations

import torch

from .sampling import strided_timesteps


class DiffusionPrior(torch.nn.Module):
    """Base class of priors with a noise schedule and a denoiser (DDPM, Gaussian)."""

    @property
    def num_timesteps(self) -> int:
        return self.alpha_bar.numel()

    def x0_hat(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        """Tweedie's estimate E[x_0 | x_t] as an image in [0, 1] (not clipped)."""
        return (self.eps_and_x0(x_t, t)[1] + 1) / 2

    def score(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        """grad log p_t(x_t) = -eps_hat / sqrt(1 - alpha_bar_t), in model space."""
        return -self.eps_and_x0(x_t, t)[0] / (1 - self.alpha_bar[t]).sqrt()

    def timesteps(self, steps: int) -> list[int]:
        """``steps`` evenly spaced timesteps, descending, starting at 0 ("leading" spacing, as diffusers)."""
        return strided_timesteps(self.num_timesteps, steps)
