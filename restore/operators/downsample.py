"""Downsampling for super-resolution: A x = D_h x D_w^T per channel, a separable linear map."""

from __future__ import annotations

import torch

from ..errors import RestoreError
from . import functional as Fn
from .base import SVDOperator
from .noise import Noise


class Downsample(SVDOperator):
    """Downsampling by an integer ``factor`` with a 'box' (k x k average) or 'bicubic' filter.

    Both filters are separable, A = D_h (x) D_w (a Kronecker product of 1-D matrices), so the SVD
    of A is the Kronecker product of the 1-D SVDs: V^T x = Vh_h x Vh_w^T, s_ij = s_h[i] s_w[j],
    and U_adjoint puts the (H/k, W/k) coefficients of U_h^T y U_w into the top-left corner of an
    (H, W) array. The bicubic filter is Keys' kernel (a = -0.5) stretched by the factor
    (anti-aliased, like MATLAB's imresize) with mirrored borders.
    """

    name = "superres"

    def __init__(self, factor: int, kind: str = "box", noise: Noise | None = None):
        super().__init__(noise)
        if int(factor) != factor or factor < 1:
            raise RestoreError(f"the downsampling factor must be a positive integer, got {factor}")
        if kind not in ("box", "bicubic"):
            raise RestoreError(f"unknown downsampling filter {kind!r} (known: box, bicubic)")
        self.factor, self.kind = int(factor), kind
        if kind == "box":
            self.nonnegative = True  # averages; Keys' bicubic kernel has negative lobes

    def check_input(self, x_shape):
        H, W = x_shape[-2:]
        if H % self.factor or W % self.factor:
            raise RestoreError(f"the factor {self.factor} does not divide the image size {W}x{H}")

    def _matrices(self, x: torch.Tensor, svd: bool):
        """1-D matrices (or their SVD factors) for x's height and width, on x's device and dtype."""
        self.check_input(x.shape)
        H, W = x.shape[-2:]
        get = Fn.resample_svd if svd else Fn.resample_matrix
        def cast(t): return t.to(device=x.device, dtype=x.dtype)
        if svd:
            return [tuple(cast(t) for t in get(n, self.factor, self.kind)) for n in (H, W)]
        return [cast(get(n, self.factor, self.kind)) for n in (H, W)]

    def A(self, x):
        Dh, Dw = self._matrices(x, svd=False)
        return Dh @ x @ Dw.T  # (B, C, H/k, W/k)

    def A_adjoint(self, y):
        x_like = y.new_zeros(y.shape[:-2] + (y.shape[-2] * self.factor, y.shape[-1] * self.factor))
        Dh, Dw = self._matrices(x_like, svd=False)
        return Dh.T @ y @ Dw  # (B, C, H, W)

    def V_adjoint(self, x):
        (_, _, Vh_h), (_, _, Vh_w) = self._matrices(x, svd=True)
        return Vh_h @ x @ Vh_w.T

    def V(self, z):
        (_, _, Vh_h), (_, _, Vh_w) = self._matrices(z, svd=True)
        return Vh_h.T @ z @ Vh_w

    def U_adjoint(self, y):
        h, w = y.shape[-2:]
        z = y.new_zeros(y.shape[:-2] + (h * self.factor, w * self.factor))
        (U_h, _, _), (U_w, _, _) = self._matrices(z, svd=True)
        z[..., :h, :w] = U_h.T @ y @ U_w
        return z

    def U(self, z):
        h, w = z.shape[-2] // self.factor, z.shape[-1] // self.factor
        (U_h, _, _), (U_w, _, _) = self._matrices(z, svd=True)
        return U_h @ z[..., :h, :w] @ U_w.T

    def singular_values(self, x):
        (_, s_h, _), (_, s_w, _) = self._matrices(x, svd=True)
        H, W = x.shape[-2:]
        s = torch.zeros(H, W, device=x.device, dtype=x.dtype)
        s[: s_h.numel(), : s_w.numel()] = torch.outer(s_h, s_w)
        return s.expand(x.shape[1:])

    def input_shape(self, y_shape):
        return tuple(y_shape[:-2]) + (y_shape[-2] * self.factor, y_shape[-1] * self.factor)

    def measurement_shape(self, x_shape):
        return tuple(x_shape[:-2]) + (x_shape[-2] // self.factor, x_shape[-1] // self.factor)

    def spec(self):
        return {"type": "superres", "factor": self.factor, "filter": self.kind, "noise": self.noise.spec()}

    def extra_repr(self):
        return f"factor={self.factor}, kind={self.kind!r}"
