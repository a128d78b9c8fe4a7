"""Fourier phase retrieval: y = |F(pad(x))|, the nonlinear problem of the DPS paper (Chung et al. 2023, Sec. 4)."""

from __future__ import annotations

import torch

from ..errors import RestoreError
from .base import Operator
from .noise import Noise


class PhaseRetrieval(Operator):
    """The magnitudes of the 2-D DFT of x zero-padded by ``oversampling`` (2: to twice its size).

    The phase is lost, so the problem is nonlinear and ambiguous up to shifts and a point reflection
    of x. There is no adjoint or pseudo-inverse; only solvers that differentiate A (DPS) apply.
    The DFT is orthonormal, so the magnitudes are on the scale of the pixels.
    """

    name = "phase-retrieval"

    def __init__(self, oversampling: float = 2.0, noise: Noise | None = None):
        super().__init__(noise)
        if not oversampling >= 1:
            raise RestoreError(f"the oversampling must be at least 1, got {oversampling}")
        self.oversampling = float(oversampling)

    def _padded_size(self, h: int, w: int) -> tuple[int, int]:
        return round(h * self.oversampling), round(w * self.oversampling)

    def A(self, x):
        H, W = self._padded_size(*x.shape[-2:])
        return torch.fft.fft2(x, s=(H, W), norm="ortho").abs()  # (B, C, H', W'): zero-padding by s

    def input_shape(self, y_shape):
        raise RestoreError("the image size of a phase-retrieval measurement is not determined by it: give a prior "
                           "of fixed-size images")

    def measurement_shape(self, x_shape):
        return (*x_shape[:-2], *self._padded_size(*x_shape[-2:]))

    def spec(self):
        return {"type": "phase-retrieval", "oversampling": self.oversampling, "noise": self.noise.spec()}

    def extra_repr(self):
        return f"oversampling={self.oversampling}"
