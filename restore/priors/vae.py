"""VAE prior: Kingma & Welling (2014), "Auto-Encoding Variational Bayes".

A convolutional encoder q(z | x) = N(mu(x), diag(sigma(x)^2)) and decoder p(x | z) over 8-bit pixel
values (a discretised logistic per pixel, :mod:`restore.priors.likelihood`), trained on the
evidence lower bound

    ELBO(x) = E_q[log p(x | z)] - KL(q(z | x) || N(0, I)) <= log p(x),

with the reparameterization z = mu + sigma * eps (their section 2.4) and the KL in closed form
(their appendix B). ``beta`` weights the KL (Higgins et al. 2017); ``kl_warmup`` ramps it from 0
over the first steps (Sonderby et al. 2016), a guard against posterior collapse. The test-set
likelihood is estimated by importance sampling with k posterior draws (the IWAE bound of Burda et
al. 2016), which tightens the ELBO as k grows. As a prior for restoration, the decoder mean
G(z) is a generator for the latent-optimization solver.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..errors import RestoreError
from .base import LatentPrior, load_weights, read_run
from .likelihood import bits_per_dim, discretized_logistic_log_prob, quantize

FORMAT = "restore.vae"


def _check_size(size: int) -> None:
    if size % 4:
        raise RestoreError(f"the VAE and GAN networks halve the image size twice: it must be a multiple of 4, got {size}")


class VAE(nn.Module):
    """Encoder: two stride-2 convolutions and an MLP to (mu, log sigma^2). Decoder: the mirror image,
    ending in a per-pixel logistic location (through a sigmoid, in [0, 1]) and log-scale."""

    def __init__(self, size: int = 28, channels: int = 1, latent_dim: int = 16, width: int = 32, hidden: int = 256):
        super().__init__()
        _check_size(size)
        self.size, self.channels, self.latent_dim = size, channels, latent_dim
        self.feat = (2 * width, size // 4, size // 4)  # (2w, H/4, W/4) after two halvings
        flat = math.prod(self.feat)
        act = nn.SiLU
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), act(), nn.Conv2d(width, 2 * width, 4, 2, 1), act(),
            nn.Flatten(), nn.Linear(flat, hidden), act(), nn.Linear(hidden, 2 * latent_dim),
        )
        self.decoder_mlp = nn.Sequential(nn.Linear(latent_dim, hidden), act(), nn.Linear(hidden, flat), act())
        self.decoder_conv = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), act(), nn.ConvTranspose2d(width, 2 * channels, 4, 2, 1),
        )
        with torch.no_grad():  # start the logistic scales at e^-3 (~0.05, 13 grey levels), not e^0 (the whole range)
            self.decoder_conv[-1].bias[channels:] = -3.0

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, log sigma^2) of q(z | x), each (B, latent_dim), for images x in [0, 1]."""
        mu, logvar = self.encoder(2 * x - 1).chunk(2, dim=1)
        return mu, logvar.clamp(-30, 20)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean in [0, 1], log-scale) of the discretised logistic p(x | z), each (B, C, H, W)."""
        h = self.decoder_conv(self.decoder_mlp(z).view(-1, *self.feat))
        raw, log_scale = h.chunk(2, dim=1)
        # The floor -7 (scale ~ 1e-3, a quarter bin) keeps the likelihood finite, as in PixelCNN++.
        return torch.sigmoid(raw), log_scale.clamp_min(-7.0)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None):
        """One reparameterized pass: (log p(x | z) per image, KL per image), both in nats."""
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator).to(mu.device)
        z = mu + (0.5 * logvar).exp() * eps  # reparameterization, eq. (10) of Kingma & Welling
        mean, log_scale = self.decode(z)
        # The likelihood in float32 also under bf16 autocast: bin masses of 1e-3 need the precision.
        log_px = discretized_logistic_log_prob(quantize(x).float(), mean.float(), log_scale.float()).flatten(1).sum(1)
        mu, logvar = mu.float(), logvar.float()
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)  # KL(q || N(0, I)), their appendix B
        return log_px, kl


def vae_loss(beta: float = 1.0, kl_warmup: int = 0):
    """Negative ELBO per pixel value (the KL weighted by beta, ramped up over ``kl_warmup`` steps),
    with reconstruction (bits/dim), KL (nats per image) and the plain -ELBO in bits/dim for the log."""

    def loss(net, x: torch.Tensor, generator: torch.Generator, step: int | None = None) -> dict:
        log_px, kl = net(x, generator)
        log_px, kl = log_px.float(), kl.float()
        weight = beta * (min(1.0, (step + 1) / kl_warmup) if kl_warmup and step is not None else 1.0)
        dims = x[0].numel()
        return {"loss": (kl * weight - log_px).mean() / dims,
                "recon_bpd": bits_per_dim(log_px, dims).mean(), "kl": kl.mean(),
                "bpd": bits_per_dim(log_px - kl, dims).mean()}

    return loss


def collapse_warning(record: dict, threshold: float = 0.5) -> str | None:
    """A warning when the KL of the model being trained (this step's batch) is near zero:
    q(z | x) = p(z), the decoder ignores z. (The validation KL is the EMA model's, which lags.)"""
    kl = record.get("kl")
    if kl is not None and kl < threshold:
        return (f"posterior collapse: the KL term is {kl:.3f} nats per image, so the decoder ignores z "
                "(lower --beta or use --kl-warmup)")
    return None


class VAEPrior(LatentPrior):
    """A trained :class:`VAE` as an image prior: ``decode(z)`` (the decoder mean), ``encode(x)``,
    sampling, the ELBO and an importance-sampled log-likelihood in bits/dim."""

    family = "vae"

    def __init__(self, vae: VAE):
        super().__init__()
        self.vae = vae

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.vae.channels, self.vae.size, self.vae.size)

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.vae.latent_dim,)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder mean G(z) in [0, 1], (B, C, H, W)."""
        return self.vae.decode(z)[0]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean E_q[z | x], (B, latent_dim): a starting point for latent optimization."""
        return self.vae.encode(x)[0]

    @torch.no_grad()
    def elbo_bits_per_dim(self, images: torch.Tensor, *, generator: torch.Generator | None = None,
                          batch_size: int = 500) -> torch.Tensor:
        """-ELBO in bits/dim per image (one posterior draw each), for 8-bit images (uint8 or [0, 1])."""
        out = []
        for start in range(0, len(images), batch_size):
            x = quantize(images[start : start + batch_size]).to(self.vae.encoder[0].weight.device)
            log_px, kl = self.vae(x, generator)
            out.append(bits_per_dim(log_px - kl, x[0].numel()).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def bits_per_dim(self, images: torch.Tensor, *, k: int = 100, generator: torch.Generator | None = None,
                     batch_size: int = 50) -> torch.Tensor:
        """-log p(x) in bits/dim per image, estimated with k importance samples from q(z | x):
        log p(x) >= log (1/k) sum_i p(x | z_i) p(z_i) / q(z_i | x) (Burda et al. 2016, eq. 8)."""
        out = []
        device = self.vae.encoder[0].weight.device
        for start in range(0, len(images), batch_size):
            x = quantize(images[start : start + batch_size]).to(device)  # (B, C, H, W)
            B = x.shape[0]
            mu, logvar = self.vae.encode(x)  # (B, d)
            std = (0.5 * logvar).exp()
            eps = torch.randn((k, *mu.shape), generator=generator).to(device)  # (k, B, d)
            z = mu + std * eps
            mean, log_scale = self.vae.decode(z.reshape(k * B, -1))
            log_px = discretized_logistic_log_prob(x.repeat(k, 1, 1, 1), mean, log_scale).flatten(1).sum(1).view(k, B)
            log_pz = -0.5 * (z.square() + math.log(2 * math.pi)).sum(-1)  # (k, B)
            log_qz = -0.5 * (eps.square() + math.log(2 * math.pi) + logvar).sum(-1)
            log_w = log_px + log_pz - log_qz
            out.append(bits_per_dim(torch.logsumexp(log_w, 0) - math.log(k), x[0].numel()).cpu())
        return torch.cat(out)

    def info(self) -> dict:
        run = self.run_info or {}
        return {
            "family": self.family, "source": self.source, "model": self.model, "image_size": list(self.image_shape[1:]),
            "channels": self.image_shape[0], "latent_dim": self.vae.latent_dim,
            "parameters": sum(p.numel() for p in self.vae.parameters()), "beta": run.get("beta"),
            "training_data": run.get("data"), "training_steps": run.get("steps_done", run.get("steps")),
            "file_list_hash": run.get("file_list_hash"),
            "offers": ["decode (latent)", "encode", "sample", "bits_per_dim (IWAE)", "elbo_bits_per_dim"],
        }

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "VAEPrior":
        """A VAE folder: run.json (the architecture) and vae.safetensors (the EMA weights)."""
        folder = Path(folder)
        run = read_run(folder, FORMAT)
        vae = VAE(run["image_size"], run["channels"], run["latent_dim"], run["width"], run["hidden"])
        load_weights(vae, folder / "vae.safetensors", folder)
        prior = cls(vae)
        prior.run_info = run
        return prior


def train_vae(*, data: str, out, size: int | None = None, channels: int | None = None, latent_dim: int = 16,
              width: int = 32, hidden: int = 256, beta: float = 1.0, kl_warmup: int = 0, steps: int = 10000,
              batch_size: int = 128, lr: float = 1e-3, lr_decay: int = 0, ema_decay: float = 0.999, seed: int = 0,
              max_minutes: float | None = None, checkpoint_every: int = 500, sample_every: int = 1000,
              val_every: int = 500, resume: bool = False, device: str = "auto", precision: str = "auto",
              flip: bool = False, data_root=None) -> dict:
    """Train a VAE with :func:`restore.training.train`; ``out`` receives vae.safetensors and run.json."""
    from .. import data as datasets
    from .. import io, training

    d = training.setup_distributed(device)
    ds = datasets.training_data(data, size=size, channels=channels, seed=seed, root=data_root)
    _, c, h, w = ds["train"].shape
    _check_size(h)
    torch.manual_seed(seed)  # the same initial weights on every rank
    vae = VAE(h, c, latent_dim, width, hidden)
    config = {"family": "vae", "format": FORMAT, "data": ds.get("name", data), "file_list_hash": ds.get("file_list_hash"),
              "image_size": h, "channels": c, "latent_dim": latent_dim, "width": width, "hidden": hidden, "beta": beta,
              "kl_warmup": kl_warmup, "parameters": sum(p.numel() for p in vae.parameters())}

    def sample_fn(ema, generator):
        return VAEPrior(ema).sample(64, generator=generator)

    def export_fn(ema, folder: Path):
        io.save_arrays(folder / "vae.safetensors", ema.state_dict())

    return training.train(
        model=vae, loss_fn=vae_loss(beta, kl_warmup), data=ds, config=config,
        options=training.TrainOptions.pick(locals()),  # the arguments of those names
        sample_fn=sample_fn, export_fn=export_fn, dist_info=d, warn_fn=collapse_warning,
    )
