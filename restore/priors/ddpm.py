"""DDPM prior: a diffusers UNet2DModel with its noise schedule, seen from the [0, 1] image convention.

Ho et al. (2020), "Denoising Diffusion Probabilistic Models". The forward process is
x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps in the model's own [-1, 1] space, where
alpha_bar_t = prod_{s <= t} (1 - beta_s). The diffusion variable x_t stays in that space (it is
not an image); everything that is an image (x0_hat, samples) is returned in [0, 1].

Sampling follows Algorithm 2 of Ho et al.: x_{t-1} = mu_tilde(x_t, x0_hat) + sigma_t z, with the
posterior mean mu_tilde of their equation (7) and sigma_t^2 = beta_tilde_t (the default,
``variance="beta_tilde"``) or beta_t. With fewer steps than the schedule has, step t -> t' uses
alpha_t = alpha_bar_t / alpha_bar_t' in place of 1 - beta_t, i.e. the same posterior
q(x_t' | x_t, x_0) on the sub-sequence; DDIM (Song, Meng & Ermon 2021) is the eta = 0 variant.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import RestoreError


class DDPMPrior(torch.nn.Module):
    """A UNet2DModel predicting epsilon, x_0 ("sample") or v, with the schedule alpha_bar."""

    family = "ddpm"

    def __init__(self, unet, betas: torch.Tensor, *, prediction_type: str = "epsilon", clip_sample: bool = True):
        super().__init__()
        if prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise RestoreError(f"unknown DDPM prediction type {prediction_type!r} (known: epsilon, sample, v_prediction)")
        self.unet = unet
        self.prediction_type = prediction_type
        # Clip x0_hat to the data range [-1, 1] while sampling, as diffusers' DDPMScheduler does by default.
        self.clip_sample = clip_sample
        betas = torch.as_tensor(betas, dtype=torch.float32)
        self.register_buffer("betas", betas)  # (T,)
        self.register_buffer("alpha_bar", torch.cumprod(1.0 - betas, dim=0))  # (T,)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "DDPMPrior":
        """Load a diffusers DDPM folder (model_index.json, unet/, scheduler/), safetensors weights only."""
        from diffusers import DDPMScheduler, UNet2DModel

        path = Path(path)
        if not (path / "unet" / "config.json").exists() or not (path / "scheduler" / "scheduler_config.json").exists():
            raise RestoreError(f"'{path}' is not a diffusers DDPM folder (it needs unet/config.json and scheduler/scheduler_config.json)")
        if not list((path / "unet").glob("*.safetensors")):
            raise RestoreError(f"'{path / 'unet'}' holds no .safetensors weights (pickled .bin checkpoints are refused)")
        unet = UNet2DModel.from_pretrained(path, subfolder="unet", use_safetensors=True)
        scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
        return cls.from_diffusers(unet, scheduler)

    @classmethod
    def from_diffusers(cls, unet, scheduler) -> "DDPMPrior":
        """Wrap a UNet2DModel and a DDPMScheduler (or any scheduler with betas and the same config keys)."""
        cfg = scheduler.config
        return cls(unet, scheduler.betas, prediction_type=cfg.get("prediction_type", "epsilon"),
                   clip_sample=cfg.get("clip_sample", True) and cfg.get("clip_sample_range", 1.0) == 1.0)

    @property
    def num_timesteps(self) -> int:
        return self.betas.numel()

    def model_output(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The network's raw output at timestep t (epsilon, x_0 or v, per ``prediction_type``)."""
        t = torch.as_tensor(t, device=x_t.device).expand(x_t.shape[0])
        return self.unet(x_t, t).sample

    def eps_and_x0(self, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_hat, x0_hat) in model space [-1, 1], from any prediction type."""
        a = self.alpha_bar[t]
        out = self.model_output(x_t, t)
        if self.prediction_type == "epsilon":
            eps = out
            x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()  # Tweedie: E[x_0 | x_t]
        elif self.prediction_type == "sample":
            x0 = out
            eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        else:  # v = sqrt(a) eps - sqrt(1 - a) x_0 (Salimans & Ho 2022)
            x0 = a.sqrt() * x_t - (1 - a).sqrt() * out
            eps = a.sqrt() * out + (1 - a).sqrt() * x_t
        return eps, x0

    def x0_hat(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        """Tweedie's estimate E[x_0 | x_t] as an image in [0, 1] (not clipped)."""
        return (self.eps_and_x0(x_t, t)[1] + 1) / 2

    def score(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        """grad log p_t(x_t) = -eps_hat / sqrt(1 - alpha_bar_t), in model space."""
        return -self.eps_and_x0(x_t, t)[0] / (1 - self.alpha_bar[t]).sqrt()

    def timesteps(self, steps: int) -> list[int]:
        """``steps`` evenly spaced timesteps, descending, starting at 0 ("leading" spacing, as diffusers)."""
        if not 1 <= steps <= self.num_timesteps:
            raise RestoreError(f"steps must be between 1 and {self.num_timesteps}, got {steps}")
        ratio = self.num_timesteps // steps
        return [i * ratio for i in reversed(range(steps))]

    @torch.no_grad()
    def sample(self, n: int, *, steps: int | None = None, method: str = "ancestral", variance: str = "beta_tilde",
               eta: float = 0.0, generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
        """n samples in [0, 1]: ancestral sampling (Algorithm 2 of Ho et al.) or DDIM (eta = 0 is deterministic)."""
        if method not in ("ancestral", "ddim"):
            raise RestoreError(f"unknown sampling method {method!r} (known: ancestral, ddim)")
        if variance not in ("beta_tilde", "beta"):
            raise RestoreError(f"unknown variance {variance!r} (known: beta_tilde, beta)")
        cfg = self.unet.config
        size = cfg.sample_size if isinstance(cfg.sample_size, (tuple, list)) else (cfg.sample_size, cfg.sample_size)
        device = self.betas.device
        dtype = self.unet.dtype
        x = torch.randn((n, cfg.in_channels, *size), generator=generator, device=device, dtype=dtype)  # x_T
        ts = self.timesteps(steps or self.num_timesteps)
        for i, t in enumerate(ts):
            t_prev = ts[i + 1] if i + 1 < len(ts) else -1
            a_t = self.alpha_bar[t]
            a_prev = self.alpha_bar[t_prev] if t_prev >= 0 else torch.ones_like(a_t)
            eps, x0 = self.eps_and_x0(x, t)
            if self.clip_sample:
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
                # DDIM, equation (12) of Song et al. (2021); eps recomputed from the clipped x0.
                eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()
                sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
                x = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).sqrt() * eps
                if eta > 0 and t_prev >= 0:
                    x = x + sigma * torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
            if callback is not None:
                callback(i, x)
        return ((x + 1) / 2).clamp(0, 1)
