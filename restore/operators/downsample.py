"""Downsampling for super-resolution: A x = D_h x D_w^T per channel, a separable linear map."""

from __future__ import annotations

import torch

from ..errors import RestoreError
from . import functional as Fn
from .base import DEFAULT_RCOND, SVDOperator, pinv_reciprocal
from .noise import Noise


class Downsample(SVDOperator):
    """Downsampling by an integer ``factor`` with a 'box' (k x k average) or 'bicubic' filter.

    Both filters are separable, A = D_h (x) D_w (a Kronecker product of 1-D matrices), so the SVD
    of A is the Kronecker product of the 1-D SVDs: V^T x = Vh_h x Vh_w^T, s_ij = s_h[i] s_w[j],
    and U_adjoint puts the (H/k, W/k) coefficients of U_h^T y U_w into the top-left corner of an
    (H, W) array. The bicubic filter is Keys' kernel (a = -0.5) stretched by the factor
    (anti-aliased, like MATLAB's imresize) with mirrored borders.

    A, its adjoint, the pseudo-inverse and the data step ``prox_l2`` never touch the (n, n) right singular
    vectors: A and A^T apply the banded 1-D filters tap by tap, and the other two go through
    A A^T = (D_h D_h^T) (x) (D_w D_w^T), whose eigenvectors are the small (n/k, n/k) left factors; so do U,
    U^T and the singular values. Only the solvers that work in the spectral domain (DDRM, DDNM, PiGDM) apply V,
    which for a side of 4000 pixels is a dense 4000x4000 matrix (built, once per size, in about 3 s). That is why
    this class overrides the base class's A, A^T, pseudo-inverse and ``prox_l2``, which go through V; the tests
    check each against the base class's formula.
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

    def _right(self, x: torch.Tensor):
        """Vh_h, Vh_w: the right singular vectors of D_h and D_w (dense (n, n)) for x's height and width, on x's
        device and dtype."""
        self.check_input(x.shape)
        return [Fn.resample_svd(n, self.factor, self.kind)[2].to(device=x.device, dtype=x.dtype) for n in x.shape[-2:]]

    def _left(self, H: int, W: int, like: torch.Tensor):
        """(U_h, s_h), (U_w, s_w): the left singular vectors and singular values of D_h and D_w."""
        factors = (Fn.resample_left_svd(n, self.factor, self.kind) for n in (H, W))
        return [(U.to(device=like.device, dtype=like.dtype), s.to(device=like.device, dtype=like.dtype))
                for U, s in factors]

    def A(self, x):
        self.check_input(x.shape)
        rows = Fn.resample_apply(x, self.factor, self.kind, -2)
        return Fn.resample_apply(rows, self.factor, self.kind, -1)  # (B, C, H/k, W/k)

    def A_adjoint(self, y):
        H, W = y.shape[-2] * self.factor, y.shape[-1] * self.factor
        x = Fn.resample_adjoint(y, W, self.factor, self.kind, -1)
        return Fn.resample_adjoint(x, H, self.factor, self.kind, -2)  # (B, C, H, W)

    def _gram_solve(self, r: torch.Tensor, H: int, W: int, scale) -> torch.Tensor:
        """U scale(s) U^T r for a measurement-sized r, with U = U_h (x) U_w and s = s_h s_w^T."""
        (U_h, s_h), (U_w, s_w) = self._left(H, W, r)
        return U_h @ (scale(torch.outer(s_h, s_w)) * (U_h.T @ r @ U_w)) @ U_w.T

    def prox_l2(self, x, y, rho, *, measured=None):
        """argmin_v ||A v - y||^2 + rho ||v - x||^2 as v = x + A^T (A A^T + rho I)^{-1} (y - A x) (the
        push-through identity): the SVD's closed form, through the small left factors. ``measured`` is not
        needed here."""
        H, W = x.shape[-2:]
        r = self._gram_solve(y - self.A(x), H, W, lambda s: 1.0 / (s.square() + rho))
        return x + self.A_adjoint(r)

    def A_pinv(self, y, *, rcond: float = DEFAULT_RCOND, max_iter: int = 200):
        """V diag(1/s) U^T y = A^T U diag(1/s^2) U^T y, where singular values below rcond * max(s) count as zero."""
        H, W = self.input_shape(tuple(y.shape))[-2:]
        return self.A_adjoint(self._gram_solve(y, H, W, lambda s: pinv_reciprocal(s, rcond).square()))

    def V_adjoint(self, x):
        Vh_h, Vh_w = self._right(x)
        return Vh_h @ x @ Vh_w.T

    def V(self, z):
        Vh_h, Vh_w = self._right(z)
        return Vh_h.T @ z @ Vh_w

    def U_adjoint(self, y):
        h, w = y.shape[-2:]
        z = y.new_zeros(y.shape[:-2] + (h * self.factor, w * self.factor))
        (U_h, _), (U_w, _) = self._left(*z.shape[-2:], z)
        z[..., :h, :w] = U_h.T @ y @ U_w
        return z

    def U(self, z):
        h, w = z.shape[-2] // self.factor, z.shape[-1] // self.factor
        (U_h, _), (U_w, _) = self._left(*z.shape[-2:], z)
        return U_h @ z[..., :h, :w] @ U_w.T

    def singular_values(self, x):
        self.check_input(x.shape)
        (_, s_h), (_, s_w) = self._left(*x.shape[-2:], x)
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
