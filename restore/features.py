"""Feature networks for sample-quality distances on data other than MNIST.

Frechet and kernel distances compare feature statistics, so they need a network whose features mean
something on the data. MNIST has the shipped classifier. For any other data :func:`feature_net` trains
a small convolutional autoencoder on the data's training images (mean squared reconstruction error)
and uses its 128-d bottleneck: an unsupervised stand-in for the Inception network of Heusel et al.
(2017), which would need downloaded weights and natural-image statistics. Distances on it are only
comparable with distances on the same network, so the network is cached under a key made of the data
description and the training options, and every report names it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from torch import nn

FORMAT = "restore-feature-autoencoder"
VERSION = 1


def cache_root() -> Path:
    """$RESTORE_CACHE, else ~/.cache/restore: where trained feature networks are kept."""
    env = os.environ.get("RESTORE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "restore"


class FeatureAutoencoder(nn.Module):
    """Encoder: three convolutions (two of stride 2), 4x4 average pooling, a linear map to ``dim``;
    the decoder mirrors it and is resized to the image size at the end, so any size works."""

    def __init__(self, channels: int, size: int, dim: int = 128):
        super().__init__()
        self.channels, self.size, self.dim = channels, size, dim
        self.encoder = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.SiLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(dim, 64 * 16), nn.SiLU(), nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.SiLU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(16, channels, 3, padding=1),
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, dim) bottleneck codes of images in [0, 1]."""
        return self.encoder(2 * x - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.decoder(self.features(x))
        out = nn.functional.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return (out + 1) / 2


def train_autoencoder(train: torch.Tensor, *, steps: int = 1000, batch_size: int = 128, lr: float = 1e-3,
                      seed: int = 0) -> tuple[FeatureAutoencoder, dict]:
    """Fit a FeatureAutoencoder to uint8 (N, C, H, W) images; returns it (eval mode) and a record."""
    from tqdm.auto import tqdm

    _, c, h, _ = train.shape
    torch.manual_seed(seed)
    net = FeatureAutoencoder(c, h)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    loss = torch.tensor(float("nan"))
    for _ in tqdm(range(steps), desc="feature autoencoder", unit="step", leave=False):
        x = train[torch.randint(len(train), (min(batch_size, len(train)),), generator=g)].float() / 255
        loss = nn.functional.mse_loss(net(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    record = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "train_images": len(train),
              "final_mse": round(float(loss.detach()), 6), "seconds": round(time.perf_counter() - t0, 1)}
    return net.eval().requires_grad_(False), record


def feature_net(train: torch.Tensor, description: dict, *, steps: int = 1000, seed: int = 0,
                folder: str | os.PathLike | None = None) -> tuple[FeatureAutoencoder, dict]:
    """The autoencoder for this data, from the cache or trained now (and cached).

    ``description`` names the data (name, file-list hash, image shape); with the training options it
    makes the cache key, so different data or options never share a network.
    """
    from . import io
    from .priors.base import load_weights

    _, c, h, _ = train.shape
    key_text = json.dumps({**description, "shape": list(train.shape[1:]), "steps": steps, "seed": seed,
                           "version": VERSION}, sort_keys=True)
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    folder = Path(folder) if folder is not None else cache_root() / "features" / key
    info_path = folder / "features.json"
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("format") == FORMAT and info.get("key") == key:
            net = FeatureAutoencoder(c, h, info["dim"])
            load_weights(net, folder / "autoencoder.safetensors", folder)
            return net.eval().requires_grad_(False), {**info, "cached": True}
    net, record = train_autoencoder(train, steps=steps, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    io.save_arrays(folder / "autoencoder.safetensors", net.state_dict())
    info = {"format": FORMAT, "version": VERSION, "key": key, "dim": net.dim, "data": description, **record}
    # features.json last: a folder without it is retrained rather than half-read.
    io.write_json(info_path, info)
    return net, {**info, "cached": False}
