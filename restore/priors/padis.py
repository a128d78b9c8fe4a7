"""The patch-partition score of PaDIS: a diffusion prior of small patches used on a whole image through a
random partition of the image into non-overlapping patches, redrawn at every network call.

Hu, Song, Xu, Shen & Fessler (2024), "Learning Image Priors through Patch-based Diffusion Models for Solving
Inverse Problems" (NeurIPS), Section 3. They model the whole image's density as the product of the densities
of the P x P patches of one partition of the padded image, so its score (and, equivalently, the network's
epsilon or x_0 prediction) is the patches' own, each computed on its patch alone. The partition is shifted by
a random (i, j) in [0, P)^2 at each step, so no patch border stays in one place and the borders' errors
average out over the steps of a sampler or of a plug-and-play loop.

Two differences from their paper, both because our photo priors are trained on random crops of whole
photographs, a translation-invariant patch distribution: there are no positional channels (a patch's
content does not depend on where it lies), and the image is padded by mirroring instead of with zeros (the
network never saw a zero border, while a mirrored one continues the photograph).

The alternative for a fully convolutional network is to run it on the whole image (DDPMPrior's default);
the benchmark compares the two (benchmarks/results/ddpm_photo/padis.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Patches run through the network in batches of this many, so memory stays bounded on any image size.
BATCH = 64


def mirror_pad(x: torch.Tensor, pads: tuple[int, int, int, int]) -> torch.Tensor:
    """x mirrored outwards by (left, right, top, bottom) pixels; repeated edges where the image is too small
    to mirror that far. The same rule pads a whole image to the UNet's multiple (DDPMPrior._network)."""
    H, W = x.shape[-2:]
    left, right, top, bottom = pads
    if max(left, right) < W and max(top, bottom) < H:
        return F.pad(x, pads, mode="reflect")
    return F.pad(x, pads, mode="replicate")


def partitioned(fn, x: torch.Tensor, t: torch.Tensor, size: int, shift: tuple[int, int]) -> torch.Tensor:
    """fn on the ``size`` x ``size`` patches of the partition of x (N, C, H, W) whose grid lines lie at
    ``shift`` + multiples of ``size``, reassembled into x's shape.

    ``fn(patches, t)`` maps (n, C, size, size) patches and their timesteps (n,) to a tensor of that shape;
    ``t`` holds one timestep per image of x. The image is mirrored outwards to whole patches and the
    result cropped back. Differentiable in x.
    """
    N, C, H, W = x.shape
    top, left = (-int(s) % size for s in shift)  # mirrored rows and columns before the first grid line
    padded = mirror_pad(x, (left, -(W + left) % size, top, -(H + top) % size))
    Hp, Wp = padded.shape[-2:]
    nh, nw = Hp // size, Wp // size
    patches = (padded.reshape(N, C, nh, size, nw, size).permute(0, 2, 4, 1, 3, 5)
               .reshape(N * nh * nw, C, size, size))
    times = t.repeat_interleave(nh * nw)
    out = torch.cat([fn(patches[k : k + BATCH], times[k : k + BATCH]) for k in range(0, len(patches), BATCH)])
    out = out.reshape(N, nh, nw, C, size, size).permute(0, 3, 1, 4, 2, 5).reshape(N, C, Hp, Wp)
    return out[..., top : top + H, left : left + W]
