"""Degradation operators y = noise(A(x)); see :mod:`restore.operators.base` for the conventions."""

from __future__ import annotations

import torch

from ..errors import RestoreError
from .base import DEFAULT_RCOND, Composition, Denoising, LinearOperator, Operator, SVDOperator, compose
from .blur import Blur, ValidBlur
from .cs import CompressedSensing
from .downsample import Downsample
from .mask import Inpainting
from .noise import GaussianNoise, Noise, PoissonNoise, noise_from_spec
from .phase import PhaseRetrieval

__all__ = [
    "DEFAULT_RCOND", "Blur", "Composition", "CompressedSensing", "Denoising", "Downsample", "GaussianNoise",
    "Inpainting", "LinearOperator", "Noise", "Operator", "PhaseRetrieval", "PoissonNoise", "SVDOperator", "ValidBlur", "compose",
    "from_spec", "noise_from_spec",
]

_FIELDS = {
    "inpaint": {"type", "mask", "noise"},
    "deblur": {"type", "kernel", "made_by", "boundary", "noise"},
    "superres": {"type", "factor", "filter", "noise"},
    "denoise": {"type", "noise"},
    "cs": {"type", "m", "seed", "image_shape", "noise"},
    "composition": {"type", "outer", "inner", "noise"},
    "phase-retrieval": {"type", "oversampling", "noise"},
}
_REQUIRED = {
    "inpaint": {"mask"}, "deblur": {"kernel"}, "superres": {"factor"}, "denoise": set(),
    "cs": {"m", "image_shape"}, "composition": {"outer", "inner"}, "phase-retrieval": set(),
}


def from_spec(spec: dict, arrays: dict[str, torch.Tensor] | None = None) -> Operator:
    """Rebuild an operator from :meth:`Operator.spec`; {"array": name} entries come from ``arrays``."""
    if not isinstance(spec, dict):
        raise RestoreError(f"an operator spec must be a JSON object, got {type(spec).__name__}")
    arrays = arrays or {}
    kind = spec.get("type")
    if kind not in _FIELDS:
        raise RestoreError(f"unknown operator type {kind!r} (known: {', '.join(_FIELDS)})")
    unknown = sorted(set(spec) - _FIELDS[kind])
    if unknown:
        raise RestoreError(f"operator spec of type {kind!r} has unknown field(s): {', '.join(unknown)}")
    missing = sorted(_REQUIRED[kind] - set(spec))
    if missing:
        raise RestoreError(f"operator spec of type {kind!r} is missing field(s): {', '.join(missing)}")

    def array(field: str) -> torch.Tensor:
        ref = spec[field]
        name = ref.get("array") if isinstance(ref, dict) else None
        if name is None or name not in arrays:
            raise RestoreError(f"operator field {field!r} refers to array {name!r}, which the measurement file does not hold")
        return arrays[name]

    noise = noise_from_spec(spec.get("noise"))
    if kind == "inpaint":
        return Inpainting(array("mask"), noise)
    if kind == "deblur":
        boundary = spec.get("boundary", "circular")
        if boundary not in ("circular", "valid"):
            raise RestoreError(f"unknown blur boundary {boundary!r} (known: circular, valid)")
        made = ValidBlur if boundary == "valid" else Blur
        return made(array("kernel"), noise, description=spec.get("made_by"))
    if kind == "superres":
        return Downsample(spec["factor"], spec.get("filter", "box"), noise)
    if kind == "denoise":
        return Denoising(noise)
    if kind == "cs":
        return CompressedSensing(spec["m"], tuple(spec["image_shape"]), spec.get("seed", 0), noise)
    if kind == "phase-retrieval":
        return PhaseRetrieval(spec.get("oversampling", 2.0), noise)
    inner = from_spec(spec["inner"], arrays)
    outer = from_spec(dict(spec["outer"], noise=spec.get("noise")), arrays)
    return Composition(outer, inner)
