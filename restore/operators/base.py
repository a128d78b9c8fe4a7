"""Degradation operators y = noise(A(x)) on images of shape (B, C, H, W) in [0, 1].

Three levels of structure, each adding what solvers can use:

- :class:`Operator`: any differentiable A (DPS needs only this).
- :class:`LinearOperator`: adds ``A_adjoint`` and ``A_pinv`` (conjugate gradients by default).
- :class:`SVDOperator`: A = U diag(s) V^T in closed form, which DDRM/DDNM-style solvers use, and
  which gives the exact pseudo-inverse with a singular-value cutoff.

The spectral domain of an :class:`SVDOperator` has the shape of x: ``V_adjoint(x)`` and
``U_adjoint(y)`` both return tensors shaped like x (complex for Fourier-diagonal operators), and
``singular_values(x)`` returns s shaped (C, H, W), zero on the null space of A. Parameters are
buffers fixed in ``__init__``; calling the operator never changes them.
"""

from __future__ import annotations

import torch

from ..errors import RestoreError
from .noise import GaussianNoise, Noise

#: Default relative cutoff of the pseudo-inverse: singular values below rcond * max(s) count as 0.
DEFAULT_RCOND = 1e-3


class Operator(torch.nn.Module):
    """y = noise(A(x)). Subclasses implement :meth:`A`; ``forward`` adds the noise."""

    #: Short name used in specs and messages.
    name = "operator"

    def __init__(self, noise: Noise | None = None):
        super().__init__()
        self.noise = noise if noise is not None else GaussianNoise(0.0)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """The noiseless forward map."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw a measurement y = noise(A(x)); randomness only from ``generator``."""
        return self.noise(self.A(x), generator=generator)

    @property
    def sigma_y(self) -> float | None:
        """Standard deviation of Gaussian measurement noise, or None for non-Gaussian noise."""
        return self.noise.sigma if self.noise.kind == "gaussian" else None

    def measurement_shape(self, x_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of y for an input of shape x_shape (here by applying A to one zero image; subclasses
        with a closed form override it)."""
        return (x_shape[0],) + tuple(self.A(torch.zeros(1, *x_shape[1:])).shape[1:])

    def check_input(self, x_shape: tuple[int, ...]) -> None:
        """Raise :class:`RestoreError` if this operator cannot act on images of shape x_shape."""

    def input_shape(self, y_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of x for a measurement of shape y_shape: y's own here; operators that resize override it."""
        return tuple(y_shape)

    def field_of_view(self, x: torch.Tensor) -> torch.Tensor:
        """The part of an estimate x that the measurement covers (all of it, but for a valid blur,
        whose x extends beyond the frame)."""
        return x

    def spec(self) -> dict:
        """JSON-able description; tensors appear as {"array": name} and come from :meth:`arrays`."""
        raise NotImplementedError

    def arrays(self) -> dict[str, torch.Tensor]:
        """Tensors that :meth:`spec` refers to by name (a mask, a kernel)."""
        return {}


class LinearOperator(Operator):
    """A linear A with its adjoint; the pseudo-inverse defaults to conjugate gradients.

    An operator whose matrix has no negative entry (masks, blurs, box downsampling) says so with
    ``nonnegative = True``; Richardson-Lucy asks for it. The others leave it unset.
    """

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def A_pinv(self, y: torch.Tensor, *, rcond: float = DEFAULT_RCOND, max_iter: int = 200) -> torch.Tensor:
        """Least-squares solution of minimum norm, by CG on the regularised normal equations.

        Solves (A^T A + eps I) x = A^T y with eps = rcond^2 * ||A||^2, a soft singular-value
        cutoff at about rcond * ||A||, the iterative counterpart of the SVD cutoff.
        """
        b = self.A_adjoint(y)
        eps = rcond**2 * self.norm_squared(b)
        return conjugate_gradient(lambda v: self.A_adjoint(self.A(v)) + eps * v, b, max_iter=max_iter,
                                  precondition=normal_preconditioner(self, b, eps))

    def norm_squared(self, like: torch.Tensor, iters: int = 30) -> float:
        """||A||^2 (largest eigenvalue of A^T A) by power iteration on an input shaped like ``like``."""
        g = torch.Generator(device=like.device).manual_seed(0)
        v = torch.randn(like[:1].shape, generator=g, device=like.device, dtype=like.dtype)
        lam = 0.0
        for _ in range(iters):
            v = v / v.norm()
            w = self.A_adjoint(self.A(v))
            lam = float((v * w).sum())
            v = w
        return lam


class SVDOperator(LinearOperator):
    """A linear operator with a closed-form SVD A = U diag(s) V^T.

    Subclasses implement ``V``, ``V_adjoint``, ``U``, ``U_adjoint`` and ``singular_values``; ``A``,
    ``A_adjoint`` and ``A_pinv`` follow here once for all of them.
    """

    def V(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def V_adjoint(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def U(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def U_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def singular_values(self, x: torch.Tensor) -> torch.Tensor:
        """s shaped (C, H, W) like the spectral domain of x, on x's device; zero where A has no gain."""
        raise NotImplementedError

    def spectral(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(U^T y, s): a measurement in the spectral domain (complex for a blur, through the DFT) and the
        singular value of each of its components (real, shaped alike)."""
        z = self.U_adjoint(y)
        return z, self.singular_values(z.real if z.is_complex() else z)

    def prox_l2(self, x: torch.Tensor, y: torch.Tensor, rho: float, *, measured=None) -> torch.Tensor:
        """argmin_v ||A v - y||^2 + rho ||v - x||^2, in closed form: V^T v = (s U^T y + rho V^T x) / (s^2 + rho).
        ``measured`` is ``spectral(y)`` when the caller has it (an iterative solver computes it once)."""
        z, s = measured if measured is not None else self.spectral(y)
        return self.V((s * z + rho * self.V_adjoint(x)) / (s.square() + rho))

    def A(self, x):
        return self.U(self.singular_values(x) * self.V_adjoint(x))

    def A_adjoint(self, y):
        z, s = self.spectral(y)
        return self.V(s * z)

    def A_pinv(self, y, *, rcond: float = DEFAULT_RCOND, max_iter: int = 200):
        """V diag(1/s) U^T y, where singular values below rcond * max(s) count as zero."""
        z, s = self.spectral(y)
        return self.V(pinv_reciprocal(s, rcond) * z)


def pinv_reciprocal(s: torch.Tensor, rcond: float) -> torch.Tensor:
    """1/s where s > rcond * max(s), else 0: the pseudo-inverse's singular values."""
    keep = s > rcond * s.max()
    return torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))


class IdentityBasisOperator(SVDOperator):
    """An SVD operator that is diagonal in pixel space: U = V = I, so A x = s * x."""

    nonnegative = True  # s is a 0/1 mask or all ones
    diagonal = True  # A^T A is the diagonal s^2 in pixel space (solvers use this for closed-form steps)

    def V(self, z):
        return z

    def V_adjoint(self, x):
        return x

    def U(self, z):
        return z

    def U_adjoint(self, y):
        return y


class Denoising(IdentityBasisOperator):
    """A = I: the measurement is the image plus noise."""

    name = "denoise"
    identity = True  # A = I (the Tweedie solver needs it)

    @property
    def kernel(self) -> torch.Tensor:
        """The identity as a blur: a 1x1 kernel, so solvers written for blurs (Wiener, BM3D) denoise."""
        return torch.ones(1, 1)

    def otf(self, x: torch.Tensor) -> torch.Tensor:
        """Transfer function of the identity: all ones, (H, W) complex."""
        return torch.ones(x.shape[-2:], device=x.device,
                          dtype=torch.complex128 if x.dtype == torch.float64 else torch.complex64)

    def singular_values(self, x):
        return torch.ones(x.shape[1:], device=x.device, dtype=x.dtype)

    def measurement_shape(self, x_shape):
        return tuple(x_shape)

    def spec(self):
        return {"type": "denoise", "noise": self.noise.spec()}


class Composition(LinearOperator):
    """A = A_outer(A_inner(x)), e.g. blur then downsample; noise is the outer operator's.

    No closed-form SVD: the pseudo-inverse runs conjugate gradients, and solvers that need an SVD
    refuse it.
    """

    name = "composition"

    def __init__(self, outer: LinearOperator, inner: LinearOperator):
        if inner.sigma_y != 0.0:
            raise RestoreError("only the last operator of a composition may add noise")
        super().__init__(noise=outer.noise)
        self.outer, self.inner = outer, inner
        if getattr(outer, "nonnegative", False) and getattr(inner, "nonnegative", False):
            self.nonnegative = True  # a product of non-negative matrices

    def A(self, x):
        return self.outer.A(self.inner.A(x))

    def A_adjoint(self, y):
        return self.inner.A_adjoint(self.outer.A_adjoint(y))

    def measurement_shape(self, x_shape):
        return self.outer.measurement_shape(self.inner.measurement_shape(x_shape))

    def input_shape(self, y_shape):
        return self.inner.input_shape(self.outer.input_shape(y_shape))

    def check_input(self, x_shape):
        self.inner.check_input(x_shape)
        self.outer.check_input(self.inner.measurement_shape(x_shape))

    def spec(self):
        outer = self.outer.spec()
        outer.pop("noise", None)
        return {
            "type": "composition",
            "outer": _prefixed(outer, "outer."),
            "inner": _prefixed(self.inner.spec(), "inner."),
            "noise": self.noise.spec(),
        }

    def arrays(self):
        out = {f"outer.{k}": v for k, v in self.outer.arrays().items()}
        out.update({f"inner.{k}": v for k, v in self.inner.arrays().items()})
        return out


def _prefixed(spec: dict, prefix: str) -> dict:
    """Point {"array": name} references of a nested spec at prefixed names."""
    out = {}
    for key, value in spec.items():
        if isinstance(value, dict) and set(value) == {"array"}:
            value = {"array": prefix + value["array"]}
        elif isinstance(value, dict):
            value = _prefixed(value, prefix)
        out[key] = value
    return out


def compose(*operators: LinearOperator) -> LinearOperator:
    """compose(A1, A2, ...) applies A1 first; identity (denoising) factors drop out."""
    ops = [op for op in operators if not isinstance(op, Denoising)] or [operators[-1]]
    result = ops[0]
    for op in ops[1:]:
        result = Composition(op, result)
    return result


def normal_preconditioner(operator, like: torch.Tensor, rho: float):
    """The operator's approximation of v -> (A^T A + rho I)^{-1} v for images shaped like ``like``
    (``normal_preconditioner``, a valid blur's), or None where it has none or rho is not positive."""
    make = getattr(operator, "normal_preconditioner", None)
    return make(like, rho) if make is not None and rho > 0 else None


def conjugate_gradient(apply, b: torch.Tensor, *, max_iter: int = 200, tol: float = 1e-6,
                       precondition=None) -> torch.Tensor:
    """Solve apply(x) = b for symmetric positive (semi-)definite ``apply``, batched over dim 0, until the
    residual's norm is ``tol`` times b's. ``precondition``: v -> M^{-1} v for a symmetric positive definite M
    close to apply's matrix (preconditioned CG, Hestenes & Stiefel 1952; Saad 2003, Algorithm 9.1)."""
    dims = tuple(range(1, b.dim()))
    x = torch.zeros_like(b)
    r = b.clone()
    z = r if precondition is None else precondition(r)
    p = z.clone()
    rz = (r * z).sum(dims, keepdim=True)
    b_norm = (b * b).sum(dims, keepdim=True).clamp_min(1e-30)
    for _ in range(max_iter):
        Ap = apply(p)
        alpha = rz / (p * Ap).sum(dims, keepdim=True).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * Ap
        if bool(((r * r).sum(dims, keepdim=True) <= tol**2 * b_norm).all()):
            break
        z = r if precondition is None else precondition(r)
        rz_new = (r * z).sum(dims, keepdim=True)
        # An item whose residual is already exactly 0 (b = 0) keeps p = 0 instead of 0 / 0 = NaN.
        p = z + (rz_new / torch.where(rz > 0, rz, torch.ones_like(rz))) * p
        rz = rz_new
    return x
