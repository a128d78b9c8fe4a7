"""Compressed sensing: y = Phi x with a random Gaussian matrix (the experiment of Bora et al. 2017)."""

from __future__ import annotations

import torch

from ..errors import RestoreError
from .base import SVDOperator
from .noise import Noise

#: Largest image (C*H*W) whose n x n SVD factor we are willing to hold in memory (2 GiB in float64).
MAX_SVD_SIZE = 16384


class CompressedSensing(SVDOperator):
    """y = Phi x, Phi an (m, n) matrix of i.i.d. N(0, 1/m) entries drawn from ``seed``; n = C*H*W.

    As in CSGM (Bora et al. 2017, "Compressed Sensing using Generative Models"), the whole
    flattened image is measured at once; y has shape (B, m). The SVD Phi = U diag(s) V^T is
    computed once in float64 (full V, n x n, so images are limited to n <= 16384).
    """

    name = "cs"

    def __init__(self, m: int, image_shape, seed: int = 0, noise: Noise | None = None):
        super().__init__(noise)
        C, H, W = image_shape[-3:]
        n = C * H * W
        if not 1 <= m:
            raise RestoreError(f"the number of measurements must be at least 1, got {m}")
        if n > MAX_SVD_SIZE:
            raise RestoreError(f"compressed sensing supports images of at most {MAX_SVD_SIZE} values (C*H*W), got {n}")
        from ..runtime import check_allocation

        # The matrix and its full SVD in float64 (U is m x m), before any of it is allocated.
        check_allocation(8 * 3 * (m * n + m * m + n * n), f"compressed sensing with {m} measurements of {n} values",
                         "pass fewer --measurements")
        self.m, self.seed, self.image_shape = int(m), int(seed), (C, H, W)
        g = torch.Generator().manual_seed(seed)
        phi = (torch.randn(m, n, generator=g, dtype=torch.float64) / m**0.5).float()
        # The SVD of the stored float32 matrix, kept in float64: A (through phi) and U diag(s) V^T
        # then agree to float64 precision, so a float64 pseudo-inverse is exact.
        U, s, Vh = torch.linalg.svd(phi.double(), full_matrices=True)
        r = min(m, n)
        s_full = torch.zeros(n, dtype=torch.float64)
        s_full[:r] = s
        self.register_buffer("phi", phi)  # (m, n)
        self.register_buffer("U_mat", U[:, :r].contiguous())  # (m, r)
        self.register_buffer("Vh_mat", Vh.contiguous())  # (n, n)
        self.register_buffer("s", s_full)  # (n,)

    def check_input(self, x_shape):
        if tuple(x_shape[-3:]) != self.image_shape:
            raise RestoreError(f"this compressed-sensing matrix was made for images of shape {self.image_shape}, got {tuple(x_shape[-3:])}")

    def _flat(self, x):
        self.check_input(x.shape)
        return x.reshape(x.shape[0], -1)  # (B, n)

    def A(self, x):
        return self._flat(x) @ self.phi.to(x.dtype).T  # (B, m)

    def A_adjoint(self, y):
        return (y @ self.phi.to(y.dtype)).reshape(y.shape[0], *self.image_shape)

    def V_adjoint(self, x):
        return (self._flat(x) @ self.Vh_mat.to(x.dtype).T).reshape(x.shape)

    def V(self, z):
        return (z.reshape(z.shape[0], -1) @ self.Vh_mat.to(z.dtype)).reshape(z.shape[0], *self.image_shape)

    def U_adjoint(self, y):
        r = self.U_mat.shape[1]
        z = y.new_zeros(y.shape[0], self.s.numel())
        z[:, :r] = y @ self.U_mat.to(y.dtype)
        return z.reshape(y.shape[0], *self.image_shape)

    def U(self, z):
        r = self.U_mat.shape[1]
        return z.reshape(z.shape[0], -1)[:, :r] @ self.U_mat.to(z.dtype).T

    def singular_values(self, x):
        return self.s.to(device=x.device, dtype=x.dtype).reshape(self.image_shape)

    def measurement_shape(self, x_shape):
        return (x_shape[0], self.m)

    def input_shape(self, y_shape):
        return (y_shape[0], *self.image_shape)

    def spec(self):
        return {"type": "cs", "m": self.m, "seed": self.seed, "image_shape": list(self.image_shape), "noise": self.noise.spec()}

    def extra_repr(self):
        return f"m={self.m}, image_shape={self.image_shape}, seed={self.seed}"
