"""Degradation operators y = noise(A(x)); see :mod:`restore.operators.base` for the conventions."""

from __future__ import annotations

from .base import DEFAULT_RCOND, Composition, Denoising, LinearOperator, Operator, SVDOperator, compose
from .blur import Blur, ValidBlur
from .cs import CompressedSensing
from .downsample import Downsample
from .factory import from_spec, make_operator
from .mask import Inpainting
from .noise import GaussianNoise, Noise, PoissonNoise, noise_from_spec
from .phase import PhaseRetrieval

__all__ = [
    "DEFAULT_RCOND", "Blur", "Composition", "CompressedSensing", "Denoising", "Downsample", "GaussianNoise",
    "Inpainting", "LinearOperator", "Noise", "Operator", "PhaseRetrieval", "PoissonNoise", "SVDOperator", "ValidBlur", "compose",
    "from_spec", "make_operator", "noise_from_spec",
]
