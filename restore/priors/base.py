"""What a diffusion prior offers, written once: Tweedie's estimate as an image, the score, the step schedule.

A subclass supplies ``eps_and_x0(x_t, t)`` in model space [-1, 1] and the buffer ``alpha_bar`` (T,);
this class derives the rest in the conventions of :mod:`restore.priors.ddpm`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import RestoreError
from .sampling import strided_timesteps


#: What a prior can offer, each the attributes that provide it: Tweedie's estimate (the diffusion solvers), a
#: decoder of latents (latent optimization), an exact density and score (MAP, Langevin), raster-order
#: conditionals (PixelCNN inpainting), a patch average (EPLL), and exact draws.
OFFERS = {
    "tweedie": ("eps_and_x0", "alpha_bar", "num_timesteps"),
    "decode": ("decode", "latent_shape"),
    "density": ("log_prob",),
    "score": ("image_score",),
    "conditionals": ("sample_conditional",),
    "patches": ("patch_average", "coverage"),
    "exact_samples": ("exact_samples",),
}


class Prior(torch.nn.Module):
    """What every prior is: a ``family`` name, the images it models (``image_shape`` (C, H, W)), where it came
    from (``source``: what --prior named, set by :func:`restore.priors.load_prior`; ``run_info``: its training
    run's run.json, if the folder has one), ``info()`` and ``sample(n, ...)``, and what it ``offers``: the
    keys of :data:`OFFERS` whose attributes it has. Solvers, ``restore sample`` and ``evaluate`` ask ``offers``
    rather than the family's name."""

    family = "prior"

    def __init__(self):
        super().__init__()
        self.source: str | None = None
        # What load_prior resolved ``source`` to: the shipped model a family name chose for the image
        # (ddpm-photo-rgb for ``ddpm`` on a colour photo), else the name, folder or hub id as given.
        self.model: str | None = None
        self.run_info: dict | None = None

    @property
    def offers(self) -> frozenset:
        return frozenset(k for k, attrs in OFFERS.items() if all(hasattr(self, a) for a in attrs))


class DiffusionPrior(Prior):
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


class LatentPrior(Prior):
    """Base class of priors that decode a latent z ~ N(0, I) into an image (VAE decoder, GAN generator).

    A subclass sets ``latent_shape`` and ``image_shape`` and supplies ``decode(z)`` -> images in
    [0, 1], differentiable in z: what the latent-optimization solver (:mod:`restore.solvers.latent`) uses.
    """

    def latent(self, n: int, *, generator: torch.Generator | None = None, truncation: float | None = None,
               device=None) -> torch.Tensor:
        """n draws of z ~ N(0, I); with ``truncation`` tau, entries with |z| > tau are redrawn
        (the truncation trick of Brock et al. 2019: fewer, more typical samples)."""
        device = device if device is not None else next(self.parameters()).device
        z = torch.randn((n, *self.latent_shape), generator=generator, device=device)
        if truncation is not None:
            if not truncation > 0:
                raise ValueError(f"truncation must be positive, got {truncation}")
            for _ in range(1000):  # P(|z| > tau) < 1 for every tau > 0; this ends almost surely
                out = z.abs() > truncation
                if not out.any():
                    break
                z[out] = torch.randn((int(out.sum()),), generator=generator, device=device)
        return z

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, truncation: float | None = None,
               temperature: float = 1.0, batch_size: int = 500, callback=None) -> torch.Tensor:
        """n images decoded from (optionally truncated) latent draws scaled by ``temperature`` (z ~ N(0, T^2 I):
        Glow's temperature; 0.7 gives cleaner, less varied flow samples), in [0, 1]."""
        z = self.latent(n, generator=generator, truncation=truncation) * temperature
        out = []
        for i, start in enumerate(range(0, n, batch_size)):
            out.append(self.decode(z[start : start + batch_size]))
            if callback is not None:
                callback({"i": i})
        return torch.cat(out)


def read_run(folder: Path, fmt: str) -> dict:
    """A model folder's run.json (architecture and training record), checked to be of format ``fmt``."""
    run = json.loads((folder / "run.json").read_text())
    if run.get("format") != fmt:
        raise RestoreError(f"'{folder / 'run.json'}' is not a {fmt} model description")
    return run


def load_weights(module: torch.nn.Module, path: Path, folder: Path) -> None:
    """Load safetensors weights into ``module``, with one-line errors for a missing or mismatched file."""
    from .. import io

    if not path.is_file():
        if (folder / "checkpoint").is_dir():
            raise RestoreError(f"'{folder}' is a training run with no exported model yet; it exports when training "
                               "finishes or stops at its --max-minutes budget (continue it with --resume)")
        raise RestoreError(f"'{folder}' has no {path.name}")
    try:
        module.load_state_dict(io.load_arrays(path))
    except RuntimeError:
        raise RestoreError(f"'{path}' does not match the architecture its run.json describes") from None
