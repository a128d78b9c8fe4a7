"""The standard benchmark degradations, shared by the benchmark scripts and tests.

The five MNIST tasks of our issues: 14x14 centre box inpainting, 70% random-pixel inpainting,
Gaussian blur (sigma 2) with sigma_y = 0.05, 4x super-resolution with sigma_y = 0.05, and
denoising at sigma_y = 0.2.
"""

from __future__ import annotations

from . import operators as O

#: name -> (command-line task, one-line description)
STANDARD = {
    "inpaint-box": ("inpaint", "centre box, half the image side (14x14 on MNIST), noiseless"),
    "inpaint-random": ("inpaint", "70% of pixels missing at random, noiseless"),
    "deblur": ("deblur", "Gaussian blur sigma 2 (13x13, circular), sigma_y 0.05"),
    "superres": ("superres", "4x box downsampling, sigma_y 0.05"),
    "denoise": ("denoise", "sigma_y 0.2"),
}


def standard_operator(name: str, image_shape, seed: int = 0) -> O.Operator:
    """The operator of standard task ``name`` for images of shape (C, H, W)."""
    if name == "inpaint-box":
        return O.make_operator("inpaint", image_shape)  # a centred square of half the shorter side
    if name == "inpaint-random":
        return O.make_operator("inpaint", image_shape, random=0.7, seed=seed)
    if name == "deblur":
        return O.make_operator("deblur", kernel=O.Blur.gaussian(2.0), noise=O.GaussianNoise(0.05))
    if name == "superres":
        return O.make_operator("superres", factor=4, filter="box", noise=O.GaussianNoise(0.05))
    if name == "denoise":
        return O.make_operator("denoise", noise=O.GaussianNoise(0.2))
    raise KeyError(f"unknown standard task {name!r} (known: {', '.join(STANDARD)})")
