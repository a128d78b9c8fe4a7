"""GAN prior: a DCGAN generator G(z), z ~ N(0, I), trained adversarially.

Goodfellow et al. (2014), "Generative Adversarial Nets": the minimax game
min_G max_D E[log D(x)] + E[log(1 - D(G(z)))], where G is trained with the non-saturating loss
-log D(G(z)) (their section 3) instead of log(1 - D(G(z))), whose gradient vanishes while D
rejects the samples easily. Radford et al. (2016), DCGAN: strided (transposed) convolutions,
batch norm, ReLU in G and LeakyReLU(0.2) in D, tanh output, Adam(lr 2e-4, beta1 0.5).
Gulrajani et al. (2017), WGAN-GP: a critic without batch norm trained on
E[D(G(z))] - E[D(x)] + lambda E[(||grad D(x_hat)|| - 1)^2] at random interpolates x_hat,
n_critic = 5 critic steps per generator step, Adam(1e-4, betas (0, 0.9)) (their Algorithm 1).

A GAN has no density; as a prior it offers ``decode(z)`` = G(z) in [0, 1] for latent optimization
(Bora et al. 2017) and sampling with truncation (Brock et al. 2019).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RestoreError
from ..runtime import to_device
from .base import LatentPrior, load_weights, read_run
from .vae import _check_size

FORMAT = "restore.gan"
LOSSES = ("ns", "wgan-gp")


def _refine(ch: int, depth: int) -> list[nn.Module]:
    """``depth`` 3x3 stride-1 convolutions with batch norm and ReLU at one resolution."""
    return [m for _ in range(depth) for m in (nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU())]


class Generator(nn.Module):
    """DCGAN generator: z -> (2w, H/4, W/4) -> (w, H/2, W/2) -> (C, H, W) in [-1, 1]; ``depth`` > 0 adds
    that many 3x3 convolutions (batch norm, ReLU) at H/4 and at H/2, after each upsampling. ``fc`` > 0
    inserts a fully connected layer of that many units (batch norm, ReLU) between z and the projection
    to (2w, H/4, W/4): the MNIST generator of InfoGAN (Chen et al. 2016, appendix C.1) with fc = 1024."""

    def __init__(self, size: int = 28, channels: int = 1, latent_dim: int = 100, width: int = 64, depth: int = 0,
                 fc: int = 0):
        super().__init__()
        _check_size(size)
        self.size, self.channels, self.latent_dim = size, channels, latent_dim
        self.feat = (2 * width, size // 4, size // 4)
        flat = math.prod(self.feat)
        first = [nn.Linear(latent_dim, fc, bias=False), nn.BatchNorm1d(fc), nn.ReLU()] if fc else []
        self.project = nn.Sequential(*first, nn.Linear(fc or latent_dim, flat, bias=False), nn.BatchNorm1d(flat),
                                     nn.ReLU())
        self.net = nn.Sequential(
            *_refine(2 * width, depth),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
            *_refine(width, depth),
            nn.ConvTranspose2d(width, channels, 4, 2, 1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.project(z).view(-1, *self.feat))


class MinibatchStd(nn.Module):
    """Karras et al. (2018), "Progressive Growing of GANs", section 3: the standard deviation of every
    feature over a group of images, averaged to one number per group and appended as a constant
    feature map. A generator that collapses to few modes gives batches of low spread, which the
    discriminator can then see and reject."""

    def __init__(self, group: int = 4):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = math.gcd(b, self.group)  # groups of g images; the batch size need not divide evenly by 4
        std = x.float().view(g, -1, c, h, w).var(dim=0, unbiased=False).add(1e-8).sqrt()  # (B/g, C, H, W)
        stat = std.mean(dim=(1, 2, 3)).to(x.dtype).repeat(g).view(b, 1, 1, 1)  # image i is in group i % (B/g)
        return torch.cat([x, stat.expand(b, 1, h, w)], dim=1)


class Discriminator(nn.Module):
    """DCGAN discriminator (batch norm on the second convolution) or, with ``norm=False``, the
    WGAN-GP critic (no batch norm: the gradient penalty is per sample). ``spectral`` replaces the
    batch norm by spectral normalisation of every layer (Miyato et al. 2018): each weight is divided
    by its largest singular value (one power iteration per step), which bounds the discriminator's
    Lipschitz constant so that it cannot outrun the generator. ``minibatch_std`` appends the
    :class:`MinibatchStd` feature map before the final linear layer. ``pack`` > 1 is PacGAN (Lin et
    al. 2018): the discriminator judges packs of ``pack`` images stacked along the channels, all real
    or all generated, which penalises a generator whose samples lack diversity (their section 3);
    it returns one logit per pack. ``fc`` > 0 inserts a fully connected layer of that many units
    (batch norm when ``norm``, LeakyReLU) before the logit, as InfoGAN's MNIST discriminator (fc = 1024)."""

    def __init__(self, size: int = 28, channels: int = 1, width: int = 64, norm: bool = True,
                 minibatch_std: bool = False, pack: int = 1, spectral: bool = False, fc: int = 0):
        super().__init__()
        _check_size(size)
        if pack < 1:
            raise RestoreError(f"the discriminator's pack must be 1 or more, got {pack}")
        self.pack = pack
        norm = norm and not spectral
        extra = 1 if minibatch_std else 0
        sn = nn.utils.parametrizations.spectral_norm if spectral else (lambda layer: layer)
        self.net = nn.Sequential(
            sn(nn.Conv2d(channels * pack, width, 4, 2, 1)), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(width, 2 * width, 4, 2, 1, bias=not norm)),
            nn.BatchNorm2d(2 * width) if norm else nn.Identity(),
            nn.LeakyReLU(0.2), MinibatchStd() if minibatch_std else nn.Identity(), nn.Flatten(),
        )
        flat = (2 * width + extra) * (size // 4) ** 2
        if fc:
            self.net.extend([sn(nn.Linear(flat, fc, bias=not norm)), nn.BatchNorm1d(fc) if norm else nn.Identity(),
                             nn.LeakyReLU(0.2)])
        self.net.append(sn(nn.Linear(fc or flat, 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One logit (or critic value) per image, (B,), for x in [-1, 1]; per pack, (B / pack,), with packing."""
        b, c, h, w = x.shape
        if b % self.pack:
            raise RestoreError(f"a batch of {b} images cannot be split into packs of {self.pack}")
        return self.net(x.reshape(b // self.pack, self.pack * c, h, w)).squeeze(1)


class GAN(nn.Module):
    """Generator and discriminator in one module, called as ``gan("generate", z)`` or
    ``gan("discriminate", x)`` so that DistributedDataParallel sees every forward pass."""

    def __init__(self, generator: Generator, discriminator: Discriminator):
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator

    def forward(self, kind: str, inputs: torch.Tensor) -> torch.Tensor:
        return self.generator(inputs) if kind == "generate" else self.discriminator(inputs)


def _latent(x: torch.Tensor, latent_dim: int, generator: torch.Generator) -> torch.Tensor:
    return to_device(torch.randn((x.shape[0], latent_dim), generator=generator), x.device)  # no wait on a GPU


def gradient_penalty(net, real: torch.Tensor, fake: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """E[(||grad_x D(x_hat)|| - 1)^2] at x_hat = e x + (1 - e) G(z), e ~ U[0, 1] per image
    (Gulrajani et al. 2017, Algorithm 1, lines 6-7)."""
    e = to_device(torch.rand((real.shape[0], 1, 1, 1), generator=generator), real.device)
    x_hat = (e * real + (1 - e) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(net("discriminate", x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


def gan_phases(loss: str = "ns", latent_dim: int = 100, n_critic: int | None = None, gp_weight: float = 10.0):
    """The two training phases (discriminator, then generator) of :func:`restore.training.train`."""
    from ..training import Phase

    if loss not in LOSSES:
        raise RestoreError(f"unknown GAN loss {loss!r} (known: {', '.join(LOSSES)})")
    wgan = loss == "wgan-gp"

    def d_loss(net, x, g, step=None):
        real = 2 * x - 1  # [0, 1] -> the networks' [-1, 1]
        with torch.no_grad():
            fake = net("generate", _latent(x, latent_dim, g))
        d_real, d_fake = net("discriminate", real).float(), net("discriminate", fake).float()
        if wgan:
            distance = d_real.mean() - d_fake.mean()  # the critic's estimate of the Wasserstein-1 distance
            gp = gradient_penalty(net, real, fake, g)
            return {"loss": -distance + gp_weight * gp, "w_distance": distance, "gp": gp}
        # -log D(x) - log(1 - D(G(z))) with D = sigmoid(logit): binary cross-entropy on logits.
        return {"loss": F.softplus(-d_real).mean() + F.softplus(d_fake).mean(),
                "d_real": torch.sigmoid(d_real).mean(), "d_fake": torch.sigmoid(d_fake).mean()}

    def g_loss(net, x, g, step=None):
        score = net("discriminate", net("generate", _latent(x, latent_dim, g))).float()
        # Non-saturating: -log D(G(z)) = softplus(-logit). WGAN: -D(G(z)).
        return {"loss": -score.mean() if wgan else F.softplus(-score).mean()}

    betas = (0.0, 0.9) if wgan else (0.5, 0.999)
    repeats = n_critic if n_critic is not None else (5 if wgan else 1)
    return [Phase("d", d_loss, "discriminator", repeats, betas), Phase("g", g_loss, "generator", 1, betas)]


class GANPrior(LatentPrior):
    """A trained DCGAN generator as an image prior: ``decode(z)`` = G(z) in [0, 1] and sampling."""

    family = "gan"

    def __init__(self, generator: Generator):
        super().__init__()
        self.generator = generator

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.generator.channels, self.generator.size, self.generator.size)

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.generator.latent_dim,)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """G(z) as an image in [0, 1], (B, C, H, W) (batch norm in eval mode: its running statistics)."""
        return (self.generator(z) + 1) / 2

    def info(self) -> dict:
        run = self.run_info or {}
        return {
            "family": self.family, "source": self.source, "model": self.model, "image_size": list(self.image_shape[1:]),
            "channels": self.image_shape[0], "latent_dim": self.generator.latent_dim, "loss": run.get("loss"),
            "parameters": sum(p.numel() for p in self.generator.parameters()),
            "training_data": run.get("data"), "training_steps": run.get("steps_done", run.get("steps")),
            "file_list_hash": run.get("file_list_hash"), "offers": ["decode (latent)", "sample (truncation)"],
        }

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "GANPrior":
        """A GAN folder: run.json (the architecture) and generator.safetensors (EMA weights)."""
        folder = Path(folder)
        run = read_run(folder, FORMAT)
        generator = Generator(run["image_size"], run["channels"], run["latent_dim"], run["width"], run.get("depth", 0),
                              run.get("fc", 0))
        load_weights(generator, folder / "generator.safetensors", folder)
        prior = cls(generator)
        prior.run_info = run
        return prior


def train_gan(*, data: str, out, size: int | None = None, channels: int | None = None, latent_dim: int = 100,
              width: int = 64, depth: int = 0, fc: int = 0, minibatch_std: bool = False, pack: int = 1,
              spectral: bool = False, loss: str = "ns",
              n_critic: int | None = None, gp_weight: float = 10.0,
              steps: int = 10000, batch_size: int = 64, lr: float | None = None, lr_decay: int = 0, ema_decay: float = 0.999, seed: int = 0,
              max_minutes: float | None = None, checkpoint_every: int = 500, sample_every: int = 1000,
              resume: bool = False, device: str = "auto", precision: str = "auto", flip: bool = False,
              data_root=None) -> dict:
    """Train a GAN with :func:`restore.training.train`; ``out`` receives generator.safetensors and run.json.
    ``lr`` defaults to each paper's: 2e-4 (DCGAN) or 1e-4 (WGAN-GP)."""
    from .. import data as datasets
    from .. import io, training

    phases = gan_phases(loss, latent_dim, n_critic, gp_weight)  # checks the loss name first
    lr = lr if lr is not None else (1e-4 if loss == "wgan-gp" else 2e-4)
    d = training.setup_distributed(device)
    ds = datasets.training_data(data, size=size, channels=channels, seed=seed, root=data_root)
    _, c, h, w = ds["train"].shape
    _check_size(h)
    torch.manual_seed(seed)  # the same initial weights on every rank
    if depth < 0 or fc < 0:
        raise RestoreError(f"--depth and --fc must be 0 or more, got {depth} and {fc}")
    if pack < 1 or (batch_size // d.world_size) % pack:
        raise RestoreError(f"--pack must be a positive divisor of the batch each process sees "
                           f"({batch_size // d.world_size} images), got {pack}")
    gan = GAN(Generator(h, c, latent_dim, width, depth, fc),
              Discriminator(h, c, width, norm=loss == "ns", minibatch_std=minibatch_std, pack=pack, spectral=spectral,
                            fc=fc))
    config = {"family": "gan", "format": FORMAT, "data": ds.get("name", data), "file_list_hash": ds.get("file_list_hash"),
              "image_size": h, "channels": c, "latent_dim": latent_dim, "width": width, "depth": depth,
              "fc": fc, "minibatch_std": minibatch_std, "pack": pack, "spectral_norm": spectral, "loss": loss,
              "n_critic": phases[0].repeats, "gp_weight": gp_weight if loss == "wgan-gp" else None,
              "betas": list(phases[0].betas), "parameters": sum(p.numel() for p in gan.generator.parameters())}

    def sample_fn(ema, generator):
        return GANPrior(ema.generator).sample(64, generator=generator)

    def export_fn(ema, folder: Path):
        io.save_arrays(folder / "generator.safetensors", ema.generator.state_dict())

    return training.train(
        model=gan, phases=phases, data={"train": ds["train"]}, config=config,
        options=training.TrainOptions.pick(locals()),  # the arguments of those names
        sample_fn=sample_fn, export_fn=export_fn, dist_info=d,
    )
