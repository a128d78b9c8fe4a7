"""Blur: circular convolution with a kernel, A x = k (*) x, diagonal in the Fourier domain."""

from __future__ import annotations

import torch

from ..errors import RestoreError
from . import functional as Fn
from .base import SVDOperator
from .noise import Noise


class Blur(SVDOperator):
    """Convolution with ``kernel`` (kh, kw) under a circular (periodic) boundary.

    The periodic boundary makes A a circulant matrix, diagonalised by the unitary 2-D DFT F:
    A = F^H diag(K) F with K the kernel's transfer function. Its exact SVD is then
    V^T = F, s = |K| and U = F^H diag(K / |K|): the spectral coefficients are complex and the
    singular values real. The kernel is normalised to sum 1 and applied to every channel; its
    centre pixel (kh // 2, kw // 2) is the origin. Circular boundaries wrap content from one edge
    to the opposite one, which is harmless for MNIST's black borders and visible on photos.
    """

    name = "deblur"

    def __init__(self, kernel: torch.Tensor, noise: Noise | None = None, *, description: dict | None = None):
        super().__init__(noise)
        kernel = torch.as_tensor(kernel, dtype=torch.float32)
        if kernel.dim() != 2 or min(kernel.shape) < 1:
            raise RestoreError(f"a blur kernel must be a 2-D array, got shape {tuple(kernel.shape)}")
        if not torch.isfinite(kernel).all() or (kernel < 0).any() or kernel.sum() <= 0:
            raise RestoreError("a blur kernel must be finite and non-negative with a positive sum")
        self.register_buffer("kernel", kernel / kernel.sum())
        # How the kernel was made (gaussian sigma, motion seed): kept for specs and messages.
        self.description = description or {"kind": "custom"}

    @classmethod
    def gaussian(cls, sigma: float, size: int | None = None, noise: Noise | None = None) -> "Blur":
        """Isotropic Gaussian blur of standard deviation ``sigma`` pixels."""
        if not sigma > 0:
            raise RestoreError(f"the blur sigma must be positive, got {sigma}")
        return cls(Fn.gaussian_kernel(sigma, size), noise, description={"kind": "gaussian", "sigma": sigma})

    @classmethod
    def motion(cls, size: int = 61, intensity: float = 0.5, seed: int = 0, noise: Noise | None = None) -> "Blur":
        """Random camera-shake blur (see :func:`functional.motion_kernel`)."""
        if size < 3 or not 0.0 <= intensity <= 1.0:
            raise RestoreError(f"motion blur needs size >= 3 and intensity in [0, 1], got {size}, {intensity}")
        kernel = Fn.motion_kernel(size, intensity, seed)
        return cls(kernel, noise, description={"kind": "motion", "size": size, "intensity": intensity, "seed": seed})

    def check_input(self, x_shape):
        H, W = x_shape[-2:]
        kh, kw = self.kernel.shape
        if kh > H or kw > W:
            raise RestoreError(f"the blur kernel is {kw}x{kh}, larger than the {W}x{H} image")

    def otf(self, x: torch.Tensor) -> torch.Tensor:
        """Transfer function K (H, W), complex, for images shaped like x."""
        self.check_input(x.shape)
        return Fn.kernel_otf(self.kernel.to(torch.float64), *x.shape[-2:]).to(
            torch.complex128 if x.dtype == torch.float64 else torch.complex64
        ).to(x.device)

    def A(self, x):
        return torch.fft.ifft2(self.otf(x) * torch.fft.fft2(x)).real.to(x.dtype)

    def A_adjoint(self, y):
        return torch.fft.ifft2(self.otf(y).conj() * torch.fft.fft2(y)).real.to(y.dtype)

    def V_adjoint(self, x):
        return torch.fft.fft2(x, norm="ortho")

    def V(self, z):
        return torch.fft.ifft2(z, norm="ortho").real

    def _phase(self, x: torch.Tensor) -> torch.Tensor:
        """K / |K|, the unit-modulus factor that U carries (H, W), complex."""
        K = self.otf(x)
        return K / K.abs().clamp_min(1e-30)

    def U_adjoint(self, y):
        return self._phase(y).conj() * torch.fft.fft2(y, norm="ortho")

    def U(self, z):
        return torch.fft.ifft2(self._phase(z.real) * z, norm="ortho").real

    def singular_values(self, x):
        s = self.otf(x).abs().to(x.dtype)
        return s.expand(x.shape[1:])

    def measurement_shape(self, x_shape):
        return tuple(x_shape)

    def spec(self):
        return {"type": "deblur", "kernel": {"array": "kernel"}, "made_by": self.description, "noise": self.noise.spec()}

    def arrays(self):
        return {"kernel": self.kernel}
