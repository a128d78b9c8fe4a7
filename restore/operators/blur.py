"""Blur: convolution with a kernel, A x = k (*) x. :class:`Blur` is circular (diagonal in the Fourier
domain, a closed-form SVD); :class:`ValidBlur` is what a camera records, no wrap-around at the borders."""

from __future__ import annotations

import torch

from ..errors import RestoreError
from . import functional as Fn
from .base import DEFAULT_RCOND, LinearOperator, SVDOperator
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
    nonnegative = True  # the kernel is checked to be non-negative

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
        return self.transfer(*x.shape[-2:], like=x)

    def transfer(self, height: int, width: int, *, like: torch.Tensor, half: bool = False) -> torch.Tensor:
        """The transfer function on a (height, width) grid, complex in ``like``'s precision and on its device;
        with ``half`` rfft2's half-spectrum (height, width // 2 + 1). Computed once per grid (cached)."""
        dtype = torch.complex128 if like.dtype == torch.float64 else torch.complex64
        return Fn.transfer(self.kernel, height, width, half=half, dtype=dtype, device=like.device)

    def convolve(self, x: torch.Tensor, grid: tuple[int, int], *, adjoint: bool = False) -> torch.Tensor:
        """x (..., h, w) zero-padded at its end to ``grid`` and convolved circularly there (correlated, the
        adjoint, with ``adjoint``), by real FFTs: (..., *grid)."""
        K = self.transfer(*grid, like=x, half=True)
        X = torch.fft.rfft2(x if x.dtype in (torch.float32, torch.float64) else x.float(), s=grid)
        return torch.fft.irfft2((K.conj() if adjoint else K) * X, s=grid).to(x.dtype)

    def A(self, x):
        self.check_input(x.shape)
        return self.convolve(x, tuple(x.shape[-2:]))

    def A_adjoint(self, y):
        self.check_input(y.shape)
        return self.convolve(y, tuple(y.shape[-2:]), adjoint=True)

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


class ValidBlur(LinearOperator):
    """Blur as a camera records it: y = (k * x)_valid, no assumption about the scene beyond the frame.

    A real blurred photograph is not periodic: each recorded pixel mixes scene points up to the
    kernel's radius (rh, rw) = (kh // 2, kw // 2) beyond the frame. So the unknown x covers the
    frame grown by that radius on every side, (H + 2 rh, W + 2 rw), and A is the circular
    convolution on that grown domain cropped to the frame; the cropped rows and columns never
    wrap, so A is exactly the 'valid' convolution. The grown band is unobserved: the solver fills
    it from its prior, and :meth:`field_of_view` crops the estimate back to the frame. This is
    the boundary model of Bertero & Boccacci (2005), "A simple method for the reduction of boundary
    effects in the Richardson-Lucy approach to image deconvolution".
    """

    name = "deblur"
    nonnegative = True  # the kernel is checked to be non-negative

    def __init__(self, kernel: torch.Tensor, noise: Noise | None = None, *, description: dict | None = None):
        super().__init__(noise)
        # The circular blur on the grown domain, which A crops; it checks and normalises the kernel.
        self.circular = Blur(kernel, description=description)
        self.description = self.circular.description
        self.radius = (self.kernel.shape[0] // 2, self.kernel.shape[1] // 2)

    @property
    def kernel(self) -> torch.Tensor:
        return self.circular.kernel

    @classmethod
    def of(cls, blur: Blur) -> "ValidBlur":
        """The valid-boundary version of a circular :class:`Blur` (same kernel and noise)."""
        return cls(blur.kernel, blur.noise, description=blur.description)

    def check_input(self, x_shape):
        H, W = x_shape[-2:]
        rh, rw = self.radius
        if H <= 2 * rh or W <= 2 * rw:
            kh, kw = self.kernel.shape
            raise RestoreError(f"the blur kernel is {kw}x{kh}: a valid blur leaves nothing of a {W - 2 * rw}x"
                               f"{H - 2 * rh} frame; use a smaller kernel")

    def otf(self, x: torch.Tensor) -> torch.Tensor:
        """Transfer function (H, W) of the circular convolution on x's (grown) domain."""
        self.check_input(x.shape)
        return self.circular.otf(x)

    def field_of_view(self, x: torch.Tensor) -> torch.Tensor:
        """The part of x (B, C, H + 2 rh, W + 2 rw) that the measurement's frame covers, (B, C, H, W)."""
        rh, rw = self.radius
        return x[..., rh : x.shape[-2] - rh, rw : x.shape[-1] - rw]

    def extend(self, y: torch.Tensor) -> torch.Tensor:
        """y (B, C, H, W) continued to x's frame by repeating its edge pixels: a starting image for iterative
        solvers (zeros there, as ``grow`` gives, make a dark frame that a prior cannot undo in a few steps)."""
        rh, rw = self.radius
        return torch.nn.functional.pad(y, (rw, rw, rh, rh), mode="replicate")

    def grow(self, y: torch.Tensor) -> torch.Tensor:
        """y (B, C, H, W) padded with zeros by the radius on every side: the adjoint of the crop."""
        rh, rw = self.radius
        return torch.nn.functional.pad(y, (rw, rw, rh, rh))

    def grid(self, x_shape) -> tuple[int, int]:
        """The FFT grid for x's (grown) domain (H, W): at least as large, with fast lengths. The frame's pixels
        reach no farther than the grown domain, so the circular convolution on any grid at least that large,
        of x padded with zeros, is exact on the frame; the grown domain's own lengths can be slow (a 4000x3000
        photo's grows to 4026x3026 under a 27x27 kernel, and 61 divides 4026)."""
        return Fn.fast_size(x_shape[-2]), Fn.fast_size(x_shape[-1])

    def A(self, x):
        self.check_input(x.shape)
        H, W = x.shape[-2:]
        rh, rw = self.radius
        return self.circular.convolve(x, self.grid(x.shape))[..., rh : H - rh, rw : W - rw]

    def A_adjoint(self, y):
        H, W = self.input_shape(tuple(y.shape))[-2:]
        h, w = grid = self.grid((H, W))
        rh, rw = self.radius
        # y placed in the frame of the grid's zeros, correlated with the kernel, cut to x's domain.
        placed = torch.nn.functional.pad(y, (rw, w - W + rw, rh, h - H + rh))
        return self.circular.convolve(placed, grid, adjoint=True)[..., :H, :W]

    def A_pinv(self, y: torch.Tensor, *, rcond: float = DEFAULT_RCOND, max_iter: int = 200) -> torch.Tensor:
        """Preconditioned conjugate gradients on the regularised normal equations (the base class's), in float64
        whatever y's precision: with eps = rcond^2 ||A||^2 their condition number reaches 1 / rcond^2 = 1e6, at
        which float32's rounding moved the converged answer by 2% of its norm."""
        return super().A_pinv(y.double(), rcond=rcond, max_iter=max_iter).to(y.dtype)

    def normal_preconditioner(self, like: torch.Tensor, rho: float):
        """v -> (K^T K + rho I)^{-1} v with K the circular convolution on :meth:`grid`, v zero-padded to it and
        the result cut back: a symmetric positive definite approximation of (A^T A + rho I)^{-1}, exact but
        for the pixels within the kernel's reach of the frame's edge (A^T A = K^T C^T C K, C the crop to the
        frame). Conjugate gradients on the normal equations need about half the steps with it, or fewer the
        smaller rho is (benchmarks/results/valid_blur_speed.md); rho > 0."""
        H, W = like.shape[-2:]
        grid = self.grid((H, W))
        gain = self.circular.transfer(*grid, like=like, half=True).abs().square() + rho  # (h, w // 2 + 1), real

        def apply(v: torch.Tensor) -> torch.Tensor:
            V = torch.fft.rfft2(v, s=grid)
            return torch.fft.irfft2(V / gain, s=grid)[..., :H, :W]

        return apply

    def measurement_shape(self, x_shape):
        rh, rw = self.radius
        return tuple(x_shape[:-2]) + (x_shape[-2] - 2 * rh, x_shape[-1] - 2 * rw)

    def input_shape(self, y_shape):
        """Shape of x for a measurement of shape y_shape: the frame grown by the kernel radius."""
        rh, rw = self.radius
        return tuple(y_shape[:-2]) + (y_shape[-2] + 2 * rh, y_shape[-1] + 2 * rw)

    def spec(self):
        return {"type": "deblur", "boundary": "valid", "kernel": {"array": "kernel"}, "made_by": self.description,
                "noise": self.noise.spec()}

    def arrays(self):
        return {"kernel": self.kernel}
