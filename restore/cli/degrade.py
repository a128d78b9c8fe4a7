"""``restore degrade``: simulate a measurement of a clean image."""

from __future__ import annotations

from typing import Literal, Optional

import typer
from typing_extensions import Annotated

from .app import TASKS, app
from .common import (Boundary, Box, Factor, Filter, Kernel, Mask, Noise, Poisson, Random, Seed, _noise,
    _operator, _refuse_overwrite)


@app.command()
def degrade(
    image: Annotated[str, typer.Argument(help="Clean image (PNG, JPEG, 8- or 16-bit, gray or colour).")],
    output: Annotated[str, typer.Option("-o", "--output", help="Measurement preview .png; .json and float data go beside it.")],
    task: Annotated[Literal[TASKS], typer.Option(help="What the measurement does.")] = "inpaint",
    box: Box = None,
    random: Random = None,
    mask: Mask = None,
    kernel: Kernel = None,
    boundary: Boundary = None,
    factor: Factor = None,
    filter: Filter = None,
    noise: Noise = None,
    poisson: Poisson = None,
    measurements: Annotated[Optional[int], typer.Option(min=1, help="Number m of Gaussian measurements (cs; default n/4).")] = None,
    seed: Seed = 0,
    float_format: Annotated[Literal["safetensors", "npy"], typer.Option(help="Float data file.")] = "safetensors",
):
    """Simulate a measurement y = noise(A(x)) of a clean image, at full precision."""
    import torch

    from .. import io, measurement
    from ..operators import functional as Fn

    paths = measurement.paths_for(output, float_format)
    for p in paths.values():
        io.output_path_check(p)
    _refuse_overwrite(paths.values(), [image, mask, kernel])
    x, alpha = io.read_image(image)
    crop = None
    k = factor if factor is not None else 4
    if task == "superres" and k >= 1 and (x.shape[-2] % k or x.shape[-1] % k) and x.shape[-2] >= k and x.shape[-1] >= k:
        # The literature's protocol ("modcrop"): crop the image to a multiple of the factor, top-left kept.
        H, W = x.shape[-2:]
        x = Fn.modcrop(x, k)
        crop = {"modcrop": k, "from": [H, W], "to": list(x.shape[-2:])}
    if task == "denoise" and noise is None and poisson is None:
        noise = 0.1
    op = _operator(task, x.shape[1:], box=box, random=random, mask=mask, kernel=kernel, factor=factor, filter=filter,
                   alpha=alpha if task == "inpaint" else None,  # transparent pixels are missing, as everywhere
                   noise=_noise(noise, poisson), seed=seed, measurements=measurements, for_degrade=True,
                   boundary="circular" if task == "deblur" and boundary is None else boundary)
    y = op(x, generator=torch.Generator().manual_seed(seed))
    measurement.save(output, y, op, task=task, image_shape=x.shape[1:], seed=seed, source=image, float_format=float_format,
                     crop=crop, bits=io.bit_depth(image))
    cropped = f"; the image was cropped from {crop['from'][1]}x{crop['from'][0]} to {crop['to'][1]}x{crop['to'][0]}, " \
              f"a multiple of the factor" if crop else ""
    typer.echo(f"wrote {paths['png']} (preview), {paths['json']} (spec) and {paths['data']} (float measurement){cropped}")
