"""Inpainting: A x = m * x with a binary mask m (1 = observed, 0 = missing)."""

from __future__ import annotations

import torch

from ..errors import RestoreError
from .base import IdentityBasisOperator
from .noise import Noise


class Inpainting(IdentityBasisOperator):
    """Pixel masking. y keeps the image's shape and is 0 where pixels are missing.

    The SVD is trivial: U = V = I and s = m. Noise is drawn on observed pixels only, so a
    measurement never carries values where nothing was observed.
    """

    name = "inpaint"

    def __init__(self, mask: torch.Tensor, noise: Noise | None = None):
        super().__init__(noise)
        mask = torch.as_tensor(mask, dtype=torch.float32)
        if mask.dim() == 2:
            mask = mask[None]
        if mask.dim() == 4 and mask.shape[0] == 1:
            mask = mask[0]
        if mask.dim() != 3:
            raise RestoreError(f"a mask must be (H, W) or (C, H, W), got shape {tuple(mask.shape)}")
        self.register_buffer("mask", (mask > 0.5).float())  # (1 or C, H, W)

    @classmethod
    def box(cls, image_shape, x: int, y: int, w: int, h: int, noise: Noise | None = None) -> "Inpainting":
        """Missing rectangle with top-left corner (x, y), width w and height h, in pixels."""
        H, W = image_shape[-2:]
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > W or y + h > H:
            raise RestoreError(f"box x={x}, y={y}, w={w}, h={h} does not fit inside the {W}x{H} image")
        mask = torch.ones(1, H, W)
        mask[:, y : y + h, x : x + w] = 0
        return cls(mask, noise)

    @classmethod
    def centre_box(cls, image_shape, size: int, noise: Noise | None = None) -> "Inpainting":
        """A size x size missing square in the middle of the image."""
        H, W = image_shape[-2:]
        return cls.box(image_shape, (W - size) // 2, (H - size) // 2, size, size, noise)

    @classmethod
    def random(cls, image_shape, missing: float, seed: int = 0, noise: Noise | None = None) -> "Inpainting":
        """Each pixel (all channels together) is missing with probability ``missing``, seeded."""
        if not 0.0 <= missing < 1.0:
            raise RestoreError(f"the missing fraction must be in [0, 1), got {missing}")
        H, W = image_shape[-2:]
        g = torch.Generator().manual_seed(seed)
        mask = (torch.rand(1, H, W, generator=g) >= missing).float()
        return cls(mask, noise)

    def check_input(self, x_shape):
        C, H, W = x_shape[-3:]
        mc, mh, mw = self.mask.shape
        if (mh, mw) != (H, W):
            raise RestoreError(f"the mask is {mw}x{mh} but the image is {W}x{H}")
        if mc not in (1, C):
            raise RestoreError(f"the mask has {mc} channels but the image has {C}")

    def forward(self, x, *, generator=None):
        return self.mask * self.noise(self.A(x), generator=generator)

    def singular_values(self, x):
        return self.mask.to(x.dtype).expand(x.shape[1:])

    def A(self, x):
        return self.mask * x

    def A_adjoint(self, y):
        return self.mask * y

    def measurement_shape(self, x_shape):
        return tuple(x_shape)

    def spec(self):
        return {"type": "inpaint", "mask": {"array": "mask"}, "noise": self.noise.spec()}

    def arrays(self):
        return {"mask": self.mask}
