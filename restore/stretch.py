"""Restoring an image that fills only part of [0, 1] (a dark image, unscaled 12-bit data in a 16-bit file):
map the measurement's observed range onto [0, 1], restore, and map the estimate back.

A learned prior of full-range photographs misreads such an image: its denoiser sees mostly noise. With
x' = m + (x - low) / scale and scale = (high - low) / (1 - 2 m), a linear measurement y = A x + n becomes

    y' = (y - A(low)) / scale + A(m) = A x' + n / scale,

the same operator with the Gaussian noise level divided by scale, so any solver restores x' and the
estimate maps back as x = low + scale (x' - m). The margin m is 0 for denoising and :data:`MARGIN`
otherwise: blur, downsampling and holes make y's range narrower than x's, and x' must be free to leave it.
``restore TASK --stretch`` uses this, and a prior trained with ``restore train ddpm --patch P --stretch``
(its run.json says ``"stretch": true``) has every measurement stretched, in the CLI and in the benchmarks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import RestoreError

if TYPE_CHECKING:
    import torch

#: Share of [0, 1] left free below and above a stretched measurement's range when A is not the identity.
MARGIN = 0.1
#: The smallest range of values that can be stretched (about 6 levels of a 16-bit file).
MIN_RANGE = 1e-4


def observed_range(y: torch.Tensor, operator) -> tuple[float, float]:
    """The smallest and largest measured value of one measurement (an inpainting's observed pixels only)."""
    values = y[operator.mask.expand_as(y) > 0] if hasattr(operator, "mask") else y
    return float(values.min()), float(values.max())


def trained_stretched(prior) -> bool:
    """Whether ``prior`` was trained on images with their range stretched (``restore train --stretch``)."""
    return bool((getattr(prior, "run_info", None) or {}).get("stretch"))


def stretch(y: torch.Tensor, operator, *, why: str = "stretching") -> tuple[torch.Tensor, object, dict]:
    """(y', operator', record): the measurement ``y`` (one item) with its observed range mapped onto
    [m, 1 - m], the operator with its Gaussian noise level divided by the scale, and the map as a JSON-ready
    record {low, scale, margin} for :func:`unstretch`. ``why`` names what asked for it, in the errors:
    a non-linear operator, Poisson noise (which depends on the intensity scale), compressed sensing (y
    holds projections, not pixel values) and a range under :data:`MIN_RANGE` are refused."""
    import torch

    from .operators import LinearOperator, from_spec

    if y.shape[0] != 1:
        raise RestoreError(f"{why} maps one measurement's range; got a batch of {y.shape[0]}")
    spec = operator.spec()
    noise = spec.get("noise")
    if not isinstance(operator, LinearOperator) or y.dim() != 4:
        raise RestoreError(f"{why} maps an image's values, so it needs a linear operator on images, not {operator.name}")
    if noise is not None and noise.get("type") != "gaussian":
        raise RestoreError(f"{why} needs Gaussian noise (or none): Poisson noise depends on the intensity scale")
    low, high = observed_range(y, operator)
    if high - low < MIN_RANGE:
        raise RestoreError(f"{why} needs a measurement whose values span at least {MIN_RANGE:g}; they span "
                           f"[{low:.6g}, {high:.6g}]")
    margin = 0.0 if getattr(operator, "identity", False) else MARGIN
    scale = (high - low) / (1 - 2 * margin)
    if noise is not None:
        spec["noise"] = {**noise, "sigma": noise["sigma"] / scale}
    stretched = from_spec(spec, operator.arrays())
    shape = operator.input_shape(tuple(y.shape))
    level = operator.A(torch.full(shape, low, dtype=y.dtype)), operator.A(torch.full(shape, margin, dtype=y.dtype))
    return (y - level[0]) / scale + level[1], stretched, {"low": low, "scale": scale, "margin": margin}


def unstretch(x: torch.Tensor, record: dict) -> torch.Tensor:
    """An estimate (or samples) of the stretched problem back in the measurement's range, low + scale (x' - m),
    clipped to [0, 1]."""
    return (record["low"] + record["scale"] * (x - record["margin"])).clamp(0, 1)

