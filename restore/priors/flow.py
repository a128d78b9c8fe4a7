"""Normalizing-flow prior: multi-scale Glow (Kingma & Dhariwal 2018) with RealNVP's multi-scale
architecture (Dinh, Sohl-Dickstein & Bengio 2017).

An invertible f maps an image x to latents; log p(x) = log N(f(x)) + log |det df/dx| exactly
(change of variables). Each of L levels squeezes (C, H, W) -> (4C, H/2, W/2), applies K steps of
flow (actnorm, an invertible 1x1 convolution, an affine coupling layer; Glow's section 3), and
then, except at the last level, splits off half the channels as latents whose Gaussian prior is
predicted from the other half (Glow's learned split prior). 8-bit data k are dequantized,
x = (k + u) / 256 - 1/2 with u ~ U[0, 1), so that -log p(k) <= E_u[-log p(x)] + D log 256
(Theis et al. 2016; the "-D log 256" term of Glow's objective) is a bound in bits/dim comparable
with the other families.

As a prior the flow offers its exact ``log_prob`` and score (``image_score``), and ``decode(eps)``: the inverse
applied to standardised latents eps ~ N(0, I) (every latent z = mu + sigma eps, with mu, sigma of
its prior), so latent optimization treats it like a GAN. Sampling takes a temperature T (eps ~
N(0, T^2 I); Glow's figure 8).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RestoreError
from .base import LatentPrior, load_weights, read_run
from .likelihood import quantize

FORMAT = "restore.flow"
COUPLINGS = ("affine", "additive")


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2): each 2x2 patch becomes 4 channels (RealNVP's squeeze)."""
    B, C, H, W = x.shape
    x = x.view(B, C, H // 2, 2, W // 2, 2)
    return x.permute(0, 1, 3, 5, 2, 4).reshape(B, 4 * C, H // 2, W // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze`."""
    B, C, H, W = x.shape
    x = x.view(B, C // 4, 2, 2, H, W)
    return x.permute(0, 1, 4, 2, 5, 3).reshape(B, C // 4, 2 * H, 2 * W)


class ActNorm(nn.Module):
    """y = (x + b) * exp(s) per channel, initialised from the first batch to zero mean, unit variance (Glow 3.1)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.initialized and self.training:
            with torch.no_grad():  # data-dependent initialisation
                self.bias.copy_(-x.mean((0, 2, 3), keepdim=True))
                self.log_scale.copy_(-torch.log(x.std((0, 2, 3), keepdim=True) + 1e-6))
                self.initialized.fill_(1)
        logdet = self.log_scale.sum() * x.shape[2] * x.shape[3]
        return (x + self.bias) * self.log_scale.exp(), logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * (-self.log_scale).exp() - self.bias


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution with W = P L (U + diag(sign(s) exp(log|s|))), the LU form of Glow 3.2:
    log|det W| = sum log|s| costs O(C), not O(C^3)."""

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(channels, channels, generator=generator))  # a random rotation
        P, L, U = torch.linalg.lu(q)
        s = torch.diagonal(U)
        self.register_buffer("P", P)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(channels, channels), -1))
        self.L = nn.Parameter(L)
        self.U = nn.Parameter(torch.triu(U, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.P.shape[0], device=self.P.device)
        L = self.L * self.lower_mask + eye
        U = self.U * self.lower_mask.T + torch.diag(self.sign_s * self.log_s.exp())
        return self.P @ L @ U

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        W = self.weight()
        logdet = self.log_s.sum() * x.shape[2] * x.shape[3]
        return F.conv2d(x, W[:, :, None, None]), logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv2d(y, torch.linalg.inv(self.weight())[:, :, None, None])


class ZeroConv(nn.Module):
    """A 3x3 convolution initialised at zero with a learned output scale (Glow's "Conv2DZeros"):
    each coupling starts as the identity."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.log_gain = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * (3 * self.log_gain).exp()


class Coupling(nn.Module):
    """Affine coupling (Glow 3.3; RealNVP eq. 6): x = [x_a, x_b], y_b = (x_b + t(x_a)) * s(x_a) with
    s = sigmoid(h + 2) (Glow's code; near 1 at the start), y_a = x_a; or additive, y_b = x_b + t(x_a)
    (NICE, Dinh et al. 2015), volume preserving."""

    def __init__(self, channels: int, hidden: int, kind: str = "affine"):
        super().__init__()
        if kind not in COUPLINGS:
            raise RestoreError(f"unknown coupling {kind!r} (known: {', '.join(COUPLINGS)})")
        self.kind = kind
        half = channels // 2
        out = (channels - half) * (2 if kind == "affine" else 1)
        self.net = nn.Sequential(nn.Conv2d(half, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, hidden, 1),
                                 nn.ReLU(), ZeroConv(hidden, out))
        self.half = half

    def _shift_scale(self, x_a: torch.Tensor):
        h = self.net(x_a)
        if self.kind == "additive":
            return h, None
        t, raw = h[:, 0::2], h[:, 1::2]
        return t, torch.sigmoid(raw + 2.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_a, x_b = x[:, : self.half], x[:, self.half :]
        t, s = self._shift_scale(x_a)
        if s is None:
            return torch.cat([x_a, x_b + t], 1), x.new_zeros(x.shape[0])
        return torch.cat([x_a, (x_b + t) * s], 1), s.log().flatten(1).sum(1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y_a, y_b = y[:, : self.half], y[:, self.half :]
        t, s = self._shift_scale(y_a)
        return torch.cat([y_a, (y_b / s if s is not None else y_b) - t], 1)


class FlowStep(nn.Module):
    """actnorm -> invertible 1x1 convolution -> coupling (one step of Glow's figure 2a)."""

    def __init__(self, channels: int, hidden: int, coupling: str, generator=None):
        super().__init__()
        self.layers = nn.ModuleList([ActNorm(channels), InvConv1x1(channels, generator), Coupling(channels, hidden, coupling)])

    def forward(self, x):
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y):
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


def _gaussian_log_prob(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    return (-0.5 * ((z - mean) * (-log_std).exp()).square() - log_std - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


class Glow(nn.Module):
    """Multi-scale Glow on (C, H, W) images with H, W divisible by 2^levels. ``forward(x)`` returns
    (standardised latents eps (B, D), log p(x)) for x in [-1/2, 1/2]; ``inverse(eps)`` returns x."""

    def __init__(self, size: int = 28, channels: int = 1, levels: int = 2, depth: int = 8, hidden: int = 128,
                 coupling: str = "affine", seed: int = 0):
        super().__init__()
        if size % (2**levels):
            raise RestoreError(f"a {levels}-level flow needs an image size divisible by {2 ** levels}, got {size}")
        self.size, self.channels, self.levels, self.depth = size, channels, levels, depth
        g = torch.Generator().manual_seed(seed)
        self.steps = nn.ModuleList()
        self.priors = nn.ModuleList()  # split priors: mean and log-std of the split-off half, from the kept half
        c = channels
        self.shapes = []  # shape of each level's latent (the split-off part, or all at the last level)
        h = size
        for level in range(levels):
            c, h = 4 * c, h // 2
            self.steps.append(nn.ModuleList([FlowStep(c, hidden, coupling, g) for _ in range(depth)]))
            if level < levels - 1:
                keep = c // 2
                self.priors.append(ZeroConv(keep, 2 * (c - keep)))
                self.shapes.append((c - keep, h, h))
                c = keep
            else:
                self.shapes.append((c, h, h))
        self.dims = channels * size * size

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logdet = x.new_zeros(x.shape[0])
        log_p = x.new_zeros(x.shape[0])
        eps = []
        h = x
        for level, steps in enumerate(self.steps):
            h = squeeze(h)
            for step in steps:
                h, ld = step(h)
                logdet = logdet + ld
            if level < self.levels - 1:
                keep = h.shape[1] // 2
                h, z = h[:, :keep], h[:, keep:]
                mean, log_std = self.priors[level](h).chunk(2, 1)
            else:
                z, mean, log_std = h, torch.zeros_like(h), torch.zeros_like(h)
            log_p = log_p + _gaussian_log_prob(z, mean, log_std)
            eps.append(((z - mean) * (-log_std).exp()).flatten(1))
        return torch.cat(eps, 1), log_p + logdet

    def inverse(self, eps: torch.Tensor) -> torch.Tensor:
        sizes = [math.prod(s) for s in self.shapes]
        parts = list(eps.split(sizes, 1))
        h = None
        for level in reversed(range(self.levels)):
            e = parts[level].view(-1, *self.shapes[level])
            if level == self.levels - 1:
                h = e
            else:
                mean, log_std = self.priors[level](h).chunk(2, 1)
                h = torch.cat([h, mean + log_std.exp() * e], 1)
            for step in reversed(self.steps[level]):
                h = step.inverse(h)
            h = unsqueeze(h)
        return h


def dequantize(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """8-bit images (uint8, or [0, 1] floats on the k/255 grid) -> x = (k + u) / 256 - 1/2, u ~ U[0, 1)."""
    k = (quantize(images) * 255).round()
    u = torch.rand(k.shape, generator=generator).to(k.device)
    return (k + u) / 256 - 0.5


def flow_loss(net, x: torch.Tensor, generator: torch.Generator, step: int | None = None) -> torch.Tensor:
    """Mean bits/dim of the batch under the dequantization bound (see :func:`flow_bits_per_dim`)."""
    return flow_bits_per_dim(net, x, generator).mean()


def flow_bits_per_dim(net, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per image, E_u[-log p((k + u) / 256 - 1/2)] / (D ln 2) + 8: one draw of u, and the -D log 256
    term (8 bits per dimension) that turns a density on [0, 1)^D into a bound on P(k)."""
    _, log_p = net(dequantize(images, generator).to(images.device))
    return -log_p.float() / (images[0].numel() * math.log(2)) + 8


class FlowPrior(LatentPrior):
    """A trained :class:`Glow` as an image prior: exact ``log_prob``, ``image_score``, ``bits_per_dim``,
    and ``decode(eps)`` from standardised latents for latent optimization."""

    family = "flow"

    def __init__(self, glow: Glow):
        super().__init__()
        self.glow = glow

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.glow.channels, self.glow.size, self.glow.size)

    @property
    def latent_shape(self) -> tuple[int]:
        return (self.glow.dims,)

    #: Latent optimization keeps each entry of eps within +-4: beyond the typical set of N(0, I) the
    #: inverse's divisions by coupling scales can overflow (MNIST Glow: NaN estimates after 500 steps).
    latent_bound = 4.0

    def decode(self, eps: torch.Tensor) -> torch.Tensor:
        """The image f^{-1}(eps) in [0, 1] (clamped: a flow can step slightly outside)."""
        return (self.glow.inverse(eps) + 0.5).clamp(0, 1)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of images x in [0, 1] as densities on [0, 1]^D (per image, (B,)); differentiable."""
        return self.glow(x - 0.5)[1]

    def image_score(self, x: torch.Tensor) -> torch.Tensor:
        """grad_x log p(x), exact, for images x in [0, 1] (a diffusion prior's ``score`` is of x_t instead)."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_prob(x).sum(), x)
        return grad

    @torch.no_grad()
    def bits_per_dim(self, images: torch.Tensor, *, generator: torch.Generator | None = None,
                     batch_size: int = 250) -> torch.Tensor:
        """Per image, -log p(k) <= E_u[-log p((k + u) / 256)] + D log 256, in bits/dim (one u per image)."""
        out = []
        device = next(self.parameters()).device
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size]
            out.append(flow_bits_per_dim(self.glow, x.to(device), generator).cpu())
        return torch.cat(out)

    def info(self) -> dict:
        run = self.run_info or {}
        return {
            "family": self.family, "source": self.source, "model": self.model, "image_size": list(self.image_shape[1:]),
            "channels": self.image_shape[0], "levels": self.glow.levels, "depth": self.glow.depth,
            "coupling": run.get("coupling"), "parameters": sum(p.numel() for p in self.glow.parameters()),
            "training_data": run.get("data"), "training_steps": run.get("steps_done", run.get("steps")),
            "file_list_hash": run.get("file_list_hash"),
            "offers": ["log_prob (exact)", "image_score", "decode (latent)", "sample (temperature)", "bits_per_dim"],
        }

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "FlowPrior":
        """A flow folder: run.json (the architecture) and flow.safetensors (EMA weights)."""
        folder = Path(folder)
        run = read_run(folder, FORMAT)
        glow = Glow(run["image_size"], run["channels"], run["levels"], run["depth"], run["hidden"], run["coupling"])
        load_weights(glow, folder / "flow.safetensors", folder)
        prior = cls(glow)
        prior.run_info = run
        return prior


def train_flow(*, data: str, out, size: int | None = None, channels: int | None = None, levels: int = 2,
               depth: int = 8, hidden: int = 128, coupling: str = "affine", steps: int = 10000, batch_size: int = 64,
               lr: float = 5e-4, warmup: int = 500, grad_clip: float = 50.0, lr_decay: int = 0, ema_decay: float = 0.999, seed: int = 0,
               max_minutes: float | None = None,
               checkpoint_every: int = 500, sample_every: int = 1000, val_every: int = 500, resume: bool = False,
               device: str = "auto", precision: str = "auto", flip: bool = False, data_root=None) -> dict:
    """Train a Glow with :func:`restore.training.train`; ``out`` receives flow.safetensors and run.json.

    Adam at 5e-4 after a 500-step linear warm-up, gradients clipped to norm 50: at 1e-3 with neither,
    a 433k-parameter MNIST Glow reached 1.9 bits/dim and then diverged to NaN near step 1,900.
    """
    from .. import data as datasets
    from .. import io, training

    d = training.setup_distributed(device)
    ds = datasets.training_data(data, size=size, channels=channels, seed=seed, root=data_root)
    _, c, h, w = ds["train"].shape
    torch.manual_seed(seed)
    glow = Glow(h, c, levels, depth, hidden, coupling, seed).to(d.device)
    # 1. Actnorm's data-dependent initialisation on one batch, before the optimiser and the EMA copy.
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed)
        glow.train()(dequantize(ds["train"][torch.randperm(len(ds["train"]), generator=g)[:256]], g).to(d.device))
    config = {"family": "flow", "format": FORMAT, "data": ds.get("name", data), "file_list_hash": ds.get("file_list_hash"),
              "image_size": h, "channels": c, "levels": levels, "depth": depth, "hidden": hidden, "coupling": coupling,
              "parameters": sum(p.numel() for p in glow.parameters())}

    def sample_fn(ema, generator):
        return FlowPrior(ema).sample(64, generator=generator, temperature=0.7)

    def export_fn(ema, folder: Path):
        io.save_arrays(folder / "flow.safetensors", ema.state_dict())

    return training.train(
        model=glow, loss_fn=flow_loss, data=ds, config=config,
        options=training.TrainOptions.pick(locals()),  # the arguments of those names
        sample_fn=sample_fn, export_fn=export_fn, grad_clip=grad_clip, warmup=warmup, dist_info=d,
    )
