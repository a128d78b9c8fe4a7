"""PixelCNN prior: gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with
PixelCNN Decoders") on gray 8-bit images, with a 256-way softmax per pixel (van den Oord,
Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks").

p(x) = prod_i p(x_i | x_<i) in raster order, so log p(x) is exact: the cross-entropy of the
per-pixel softmaxes. Two stacks keep the network causal without the blind spot of a single masked
convolution: a vertical stack sees every pixel of the rows above (its features are shifted down one
row before they reach the horizontal stack) and a horizontal stack sees the pixels to the left in
the current row (strictly left in the first layer, "mask A"; up to and including the pixel itself
after that, "mask B"). Each layer is gated, tanh(W_f * x) * sigmoid(W_g * x) (their eq. 2), with
the vertical stack feeding the horizontal one through a 1x1 convolution and residual connections
in the horizontal stack (their figure 2). Causality comes from explicit top/left padding, so the
output rows up to i depend only on input rows up to i: sampling row i runs the network on rows
0..i only.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RestoreError
from .base import Prior, load_weights, read_run
from .likelihood import quantize

FORMAT = "restore.pixelcnn"


class GatedLayer(nn.Module):
    """One gated layer of both stacks. ``first``: the horizontal convolution excludes the current pixel (mask A)."""

    def __init__(self, cin: int, channels: int, kernel: int, first: bool):
        super().__init__()
        self.k, self.first = kernel, first
        half = kernel // 2
        # Vertical: a (half + 1) x kernel window over the rows above and the current row.
        self.v_conv = nn.Conv2d(cin, 2 * channels, (half + 1, kernel))
        # Horizontal: 1 x (half + 1) over the pixels left of and at the current one (mask A: left only).
        self.h_conv = nn.Conv2d(cin, 2 * channels, (1, half + (0 if first else 1)))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.residual = not first

    @staticmethod
    def _gate(x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, 1)
        return torch.tanh(a) * torch.sigmoid(b)

    def forward(self, v: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = self.k // 2
        # 1. Vertical stack: pad top by half (and left/right), so output row i sees input rows i-half..i.
        v_pre = self.v_conv(F.pad(v, (half, half, half, 0)))
        # 2. Shift the vertical features down one row: at row i the horizontal stack gets rows < i only.
        v_down = F.pad(v_pre, (0, 0, 1, 0))[:, :, :-1]
        # 3. Horizontal stack: pad left, so column j sees columns j-half..j (mask B) or j-half..j-1 (mask A).
        if self.first:
            h_pre = self.h_conv(F.pad(h, (half, 0, 0, 0))[..., :-1]) if half else torch.zeros_like(v_pre)
        else:
            h_pre = self.h_conv(F.pad(h, (half, 0, 0, 0)))
        h_new = self.h_out(self._gate(h_pre + self.v_to_h(v_down)))
        return self._gate(v_pre), (h + h_new) if self.residual else h_new


class PixelCNN(nn.Module):
    """Gated PixelCNN for gray images: ``forward(x)`` -> logits (B, 256, H, W) of p(x_ij | x_<ij), x in [0, 1]."""

    def __init__(self, size: int = 28, layers: int = 8, channels: int = 64, kernel: int = 5):
        super().__init__()
        if kernel % 2 == 0 or kernel < 3:
            raise RestoreError(f"the PixelCNN kernel must be odd and at least 3, got {kernel}")
        self.size, self.layers_count, self.channels, self.kernel = size, layers, channels, kernel
        self.layers = nn.ModuleList([GatedLayer(1 if i == 0 else channels, channels, kernel, first=i == 0)
                                     for i in range(layers)])
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, 4 * channels, 1), nn.ReLU(),
                                  nn.Conv2d(4 * channels, 256, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = h = 2 * x - 1
        for layer in self.layers:
            v, h = layer(v, h)
        return self.head(h)


def pixelcnn_loss(net, x: torch.Tensor, generator: torch.Generator | None = None, step: int | None = None):
    """Mean bits/dim: the cross-entropy of the 256-way softmaxes against the 8-bit values, / ln 2."""
    return pixel_bits_per_dim(net, x).mean()


def pixel_bits_per_dim(net, images: torch.Tensor) -> torch.Tensor:
    """-log p(x) / (D ln 2) per image, exact (no dequantization: the model is discrete)."""
    x = quantize(images).to(images.device)
    target = (x * 255).round().long()[:, 0]  # (B, H, W) values 0..255
    nll = F.cross_entropy(net(x).float(), target, reduction="none")  # (B, H, W), nats
    return nll.flatten(1).sum(1) / (target[0].numel() * math.log(2))


class PixelCNNPrior(Prior):
    """A trained :class:`PixelCNN` as an image prior: exact ``log_prob`` of 8-bit images,
    ``bits_per_dim``, sequential ``sample`` and ``sample_conditional`` (observed pixels clamped)."""

    family = "pixelcnn"

    def __init__(self, net: PixelCNN):
        super().__init__()
        self.net = net

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (1, self.net.size, self.net.size)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log P(x) in nats per image for 8-bit images x (values k / 255)."""
        return -pixel_bits_per_dim(self.net, x) * (x[0].numel() * math.log(2))

    @torch.no_grad()
    def bits_per_dim(self, images: torch.Tensor, *, batch_size: int = 250, generator=None) -> torch.Tensor:
        device = next(self.parameters()).device
        return torch.cat([pixel_bits_per_dim(self.net, images[s : s + batch_size].to(device)).cpu()
                          for s in range(0, len(images), batch_size)])

    @torch.no_grad()
    def sample_conditional(self, x: torch.Tensor, known: torch.Tensor, *, generator: torch.Generator | None = None,
                           callback=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fill the pixels where ``known`` is False, in raster order, each drawn from p(x_ij | x_<ij)
        with the known pixels clamped. Returns (images, log-weights): the log-probability of the known
        pixels that come after a drawn one, which importance resampling uses (it is the same for every
        draw when all known pixels come first, the case where these draws are exact posterior samples)."""
        x = quantize(x).clone()
        known = known.expand_as(x)
        B, _, H, W = x.shape
        log_w = x.new_zeros(B)
        drawn_before = torch.zeros(B, dtype=torch.bool, device=x.device)
        for i in range(H):
            if bool(known[:, :, i].all()) and not bool(drawn_before.any()):
                continue  # a fully known row before any drawn pixel: nothing to draw, weight unchanged
            for j in range(W):
                logits = self.net(x[:, :, : i + 1])[:, :, i, j].float()  # (B, 256); rows > i never matter
                logp = logits.log_softmax(1)
                value = torch.multinomial(logp.exp(), 1, generator=generator)[:, 0]
                obs = known[:, 0, i, j]
                k_obs = (x[:, 0, i, j] * 255).round().long()
                log_w = log_w + torch.where(obs & drawn_before, logp.gather(1, k_obs[:, None])[:, 0], 0.0)
                x[:, 0, i, j] = torch.where(obs, x[:, 0, i, j], value.to(x.dtype) / 255)
                drawn_before = drawn_before | ~obs
            if callback is not None:
                callback({"i": i})
        return x, log_w

    def sample(self, n: int, *, generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
        """n samples, pixel by pixel in raster order (H * W network passes on growing row crops)."""
        device = next(self.parameters()).device
        x = torch.zeros((n, *self.image_shape), device=device)
        known = torch.zeros((1, *self.image_shape), dtype=torch.bool, device=device)
        return self.sample_conditional(x, known, generator=generator, callback=callback)[0]

    def info(self) -> dict:
        run = self.run_info or {}
        return {
            "family": self.family, "source": self.source, "model": self.model,
            "image_size": list(self.image_shape[1:]), "channels": 1,
            "layers": self.net.layers_count, "width": self.net.channels, "kernel": self.net.kernel,
            "parameters": sum(p.numel() for p in self.net.parameters()), "training_data": run.get("data"),
            "training_steps": run.get("steps_done", run.get("steps")), "file_list_hash": run.get("file_list_hash"),
            "offers": ["log_prob (exact)", "bits_per_dim", "sample (sequential)", "sample_conditional (inpainting)"],
        }

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "PixelCNNPrior":
        """A PixelCNN folder: run.json (the architecture) and pixelcnn.safetensors (EMA weights)."""
        folder = Path(folder)
        run = read_run(folder, FORMAT)
        net = PixelCNN(run["image_size"], run["layers"], run["width"], run["kernel"])
        load_weights(net, folder / "pixelcnn.safetensors", folder)
        prior = cls(net)
        prior.run_info = run
        return prior


def train_pixelcnn(*, data: str, out, size: int | None = None, channels: int | None = None, layers: int = 8,
                   width: int = 64, kernel: int = 5, steps: int = 10000, batch_size: int = 64, lr: float = 1e-3,
                   lr_decay: int = 0, ema_decay: float = 0.999, seed: int = 0, max_minutes: float | None = None,
                   checkpoint_every: int = 500, sample_every: int = 2000, val_every: int = 500, resume: bool = False,
                   device: str = "auto", precision: str = "auto", flip: bool = False, data_root=None) -> dict:
    """Train a gated PixelCNN with :func:`restore.training.train`; ``out`` receives pixelcnn.safetensors and run.json."""
    from .. import data as datasets
    from .. import io, training

    d = training.setup_distributed(device)
    ds = datasets.training_data(data, size=size, channels=channels, seed=seed, root=data_root)
    _, c, h, w = ds["train"].shape
    if c != 1 or h != w:
        raise RestoreError(f"the PixelCNN models square gray images (--channels 1); the data is {c}x{h}x{w}")
    torch.manual_seed(seed)
    net = PixelCNN(h, layers, width, kernel)
    config = {"family": "pixelcnn", "format": FORMAT, "data": ds.get("name", data),
              "file_list_hash": ds.get("file_list_hash"), "image_size": h, "channels": 1, "layers": layers,
              "width": width, "kernel": kernel, "parameters": sum(p.numel() for p in net.parameters())}

    def sample_fn(ema, generator):
        return PixelCNNPrior(ema).sample(16, generator=generator)

    def export_fn(ema, folder: Path):
        io.save_arrays(folder / "pixelcnn.safetensors", ema.state_dict())

    return training.train(
        model=net, loss_fn=pixelcnn_loss, data=ds, config=config,
        options=training.TrainOptions.pick(locals()),  # the arguments of those names
        sample_fn=sample_fn, export_fn=export_fn, dist_info=d,
    )
