"""Classical (non-learned) restoration: the bar every learned prior must beat.

Every solver has the call shape of the learned ones,
``solver(y, operator, prior=None, *, steps, generator, callback, **hyperparameters)``, and returns
the estimate x_hat of shape (B, C, H, W) in [0, 1]. ``prior`` is accepted and ignored: these
methods carry their own (implicit) prior. Each one declares, through :func:`requires`, which
operator capabilities it needs, so the command line can say what works with what.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import RestoreError
from ..operators import functional as Fn
from .base import Callback, context_tiles, effective_sigma, hyperparameters, progress, report, requires

#: Smallest noise level assumed when regularising, even for a noiseless measurement: float32
#: round-off and 8-bit quantisation (1/255/sqrt(12) ~ 1e-3) make exact inversion meaningless.
SIGMA_FLOOR = 1e-3


@hyperparameters(rcond="(0, 1)")
@requires("A_pinv")
def pinv(y, operator, prior=None, *, steps=None, generator=None, callback: Callback = None, rcond: float = 1e-3):
    """Plain pseudo-inverse A^+ y, singular values below rcond * max(s) cut (see the operator)."""
    return operator.A_pinv(y, rcond=rcond).clamp(0, 1)


@requires("factor")
def bicubic(y, operator, prior=None, *, steps=None, generator=None, callback: Callback = None):
    """Bicubic interpolation of the low-resolution measurement back to full size."""
    x = torch.nn.functional.interpolate(y, scale_factor=operator.factor, mode="bicubic", align_corners=False)
    return x.clamp(0, 1)


#: Biharmonic inpainting of an image of more than BIHARMONIC_TILE ** 2 pixels runs in tiles of that side,
#: each with BIHARMONIC_MARGIN pixels of context: one sparse factorisation of the whole image's missing
#: pixels ran out of memory at 4000x3000 with 80% missing (SuperLU: "Not enough memory to perform
#: factorization"). Scattered missing pixels are filled as the whole image fills them; a hole wider than the
#: context is filled from its own tile's window (tests/test_photos.py).
BIHARMONIC_TILE, BIHARMONIC_MARGIN = 512, 32


def _biharmonic_tiles(y, operator, steps, hyperparameters) -> int:
    """Callbacks of one run: one per tile (:func:`context_tiles`) of each image."""
    return y.shape[0] * len(context_tiles(*y.shape[-2:], BIHARMONIC_TILE, BIHARMONIC_MARGIN))


@progress(_biharmonic_tiles)
@requires("mask")
def biharmonic(y, operator, prior=None, *, steps=None, generator=None, callback: Callback = None):
    """Biharmonic inpainting (Damelin & Hoang 2018), as in scikit-image: missing pixels solve Delta^2 u = 0;
    a large image in overlapping tiles (``BIHARMONIC_TILE``)."""
    from skimage.restoration import inpaint_biharmonic

    missing = (operator.mask < 0.5).expand(y.shape[1:]).any(0).cpu().numpy()  # (H, W)
    pieces = context_tiles(*missing.shape, BIHARMONIC_TILE, BIHARMONIC_MARGIN)
    out, calls = [], 0
    for img in y.detach().cpu().double().numpy():  # (C, H, W)
        z = img.transpose(1, 2, 0)  # (H, W, C)
        filled = z.copy()
        for window, inner, core in pieces:
            if missing[window].any():
                filled[core] = inpaint_biharmonic(z[window], missing[window], channel_axis=-1)[inner]
            report(callback, calls)
            calls += 1
        out.append(torch.from_numpy(np.ascontiguousarray(filled.transpose(2, 0, 1))))
    return torch.stack(out).to(y.dtype).to(y.device).clamp(0, 1)


def periodic_margins(shape, operator):
    """((top, left), (bottom, right), crop): the margins of the periodic domain that :func:`circular_domain` and
    :func:`consistent_domain` build around a valid blur's measurement of frame ``shape`` (H, W), and the crop
    from an estimate on that domain back to x's (the frame grown by the kernel's radius). Above and left, the
    kernel's radius plus its size, so that the wrap-around of the periodic model falls in the margin; below and
    right more, to the next FFT length free of primes above 7 (:func:`functional.fast_size`): under a 15x15
    kernel a 4000x3000 photo's domain would otherwise be 4044x3044 (4044 = 2^2 x 3 x 337, 3044 = 2^2 x 761),
    whose FFTs (3 channels, forward and back) took 2.0 times as long as on 4050x3072; Wiener as a whole, which
    computes more than its FFTs, gained 1.0-1.3x under Levin's kernel 4 (``benchmarks/valid_blur_speed.py
    --parts wiener``). For a circular blur, no margins and no crop."""
    if not hasattr(operator, "grow"):  # not a valid blur: x has y's shape
        return (0, 0), (0, 0), lambda x: x
    (rh, rw), (mh, mw), (H, W) = operator.radius, operator.kernel.shape, shape
    top, left = rh + mh, rw + mw
    bottom, right = Fn.fast_size(H + 2 * top) - H - top, Fn.fast_size(W + 2 * left) - W - left
    return (top, left), (bottom, right), lambda x: x[..., mh : mh + H + 2 * rh, mw : mw + W + 2 * rw]


def circular_domain(y: torch.Tensor, operator):
    """(y', crop) for solvers that assume a circular blur: for a valid blur, y mirrored over the margins of
    :func:`periodic_margins`, and ``crop`` back to x's domain. For a circular blur, y itself and no crop."""
    (top, left), (bottom, right), crop = periodic_margins(y.shape[-2:], operator)
    if not bottom:
        return y, crop
    return Fn.reflect_pad(y, bottom, right)[..., bottom - top :, right - left :], crop


def consistent_domain(y: torch.Tensor, operator, estimate: torch.Tensor):
    """(y', crop) as :func:`circular_domain` gives them, but with y' beyond the frame made consistent with
    the periodic model: there y' is the circular blur of ``estimate`` (an estimate of x on its grown frame,
    from a solver of the valid model) mirrored over the whole domain; on the frame, y' is y.

    A mirrored measurement is not the blur of a mirrored scene unless the kernel is symmetric, and a solver
    whose regularised inverse is a global filter (BM3D deblurring) spreads that mismatch over the whole image:
    on 3 held-out photos and Levin's 8 kernels, BM3D's frame PSNR was 22.4 dB on the mirrored measurement (7.4
    at worst) and 29.2 dB on this one, from TV's estimate, whose own was 28.1 (``benchmarks/valid_blur_quality.py``,
    ``benchmarks/results/bm3d_boundary.md``). Extending the blurred image so that the periodic model holds
    is the idea of Liu & Jia (2008), "Reducing boundary artifacts in image deconvolution"; here the extension
    is the first estimate's blur. For a circular blur, y itself and no crop."""
    (top, left), (bottom, right), crop = periodic_margins(y.shape[-2:], operator)
    if not bottom:
        return y, crop
    (rh, rw), (H, W) = operator.radius, y.shape[-2:]
    # The estimate covers the radius beyond the frame already: mirror it over the rest of the domain.
    x = Fn.reflect_pad(estimate.to(y.dtype), bottom - rh, right - rw)[..., bottom - top :, right - left :]
    synthetic = operator.circular.convolve(x, tuple(x.shape[-2:]))
    synthetic[..., top : top + H, left : left + W] = y
    return synthetic, crop


@hyperparameters(balance="(0, inf)")
@requires("otf")
def wiener(y, operator, prior=None, *, steps=None, generator=None, callback: Callback = None, balance: float | None = None):
    """Wiener deconvolution for a circular blur, with a 1/|L(f)|^2 image spectrum (L the Laplacian).

    X(f) = conj(K) Y / (|K|^2 + beta |L|^2). The Wiener filter with signal spectrum c / |L(f)|^2
    and white noise sigma_y gives beta = N sigma_y^2 / c; c is fitted per image and channel by
    matching the measured power sum_f (|Y|^2 - N sigma_y^2) outside f = 0, so the default needs
    no tuning. Pass ``balance`` to fix beta instead. L(0) = 0 leaves the mean unregularised.
    """
    sigma = max(effective_sigma(y, operator), SIGMA_FLOOR)
    y, crop = circular_domain(y, operator)
    H, W = y.shape[-2:]
    N = H * W
    K = operator.otf(y)  # (H, W) complex
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    L2 = Fn.kernel_otf(lap, H, W).abs().square().to(y.device, y.dtype)  # (H, W)
    L2[0, 0] = 0.0  # exactly: the FFT leaves round-off there on sizes such as 321x481
    Y = torch.fft.fft2(y)
    if balance is None:
        K2 = K.abs().square()
        nonzero = L2 > 0
        signal = (Y.abs().square() - N * sigma**2)[..., nonzero].sum(-1).clamp_min(1e-12)  # (B, C)
        c = signal / (K2 / L2.clamp_min(1e-30))[nonzero].sum()
        beta = (N * sigma**2 / c)[..., None, None]  # (B, C, 1, 1)
    else:
        beta = torch.as_tensor(balance, dtype=y.dtype, device=y.device)
    X = K.conj() * Y / (K.abs().square() + beta * L2)
    return crop(torch.fft.ifft2(X).real.clamp(0, 1))


@requires("A_adjoint", "nonnegative")
def richardson_lucy(y, operator, prior=None, *, steps: int = 50, generator=None, callback: Callback = None):
    """Richardson (1972) - Lucy (1974): multiplicative EM for Poisson likelihoods, x <- x A^T(y / Ax) / A^T 1.

    Needs a non-negative operator; the iteration count is the regulariser (early stopping).
    Negative values of y (Gaussian noise) are clipped to 0.
    """
    y = y.clamp_min(0)
    norm = operator.A_adjoint(torch.ones_like(y))  # A^T 1
    # Pixels no measurement sees (A^T 1 = 0 up to FFT round-off) keep their start value.
    seen = norm > 1e-6 * norm.max()
    norm = torch.where(seen, norm, torch.ones_like(norm))
    x = torch.full_like(norm, float(y.mean().clamp_min(1e-3)))
    for k in range(steps):
        ratio = y / operator.A(x).clamp_min(1e-12)
        x = torch.where(seen, x * operator.A_adjoint(ratio).clamp_min(0) / norm, x)
        report(callback, k, x=x)
    return x.clamp(0, 1)


@hyperparameters(weight="(0, inf)")
@requires("A_adjoint", "A_pinv", "norm_squared")
def tv(y, operator, prior=None, *, steps: int = 100, generator=None, callback: Callback = None,
       weight: float | None = None, channels: str = "coupled"):
    """Total-variation regularised least squares: min_{x in [0,1]^n} 1/2 ||A x - y||^2 + lam TV(x).

    TV is the isotropic total variation. ``channels`` "coupled" (the default): of a colour image, the
    vectorial TV sum_ij sqrt(sum_c |grad x_c|^2_ij) of Blomgren & Chan (1998, "Color TV") and Bresson &
    Chan (2008), whose shrinkage acts on all channels' gradients at once, so that edges stay aligned
    across channels; "separate": each channel's own TV, as before. A gray image is the same either way.
    This is the MAP estimate under the Gaussian likelihood ||A x - y||^2 / (2 sigma_y^2) and the prior
    exp(-weight TV(x)), multiplied through by sigma_y^2: lam = weight * sigma_y^2. A noiseless y is
    treated as sigma_y = 0.01, so lam is tiny and the data are matched almost exactly. ``weight``
    defaults to 6 for photographs and 2 for images of at most 64x64 pixels (digits), each chosen on
    training images (benchmarks/results/tune), times sqrt(C) for C coupled channels: a gray image stored
    in C equal channels then has the data term C times and the coupled TV sqrt(C) times its gray values,
    so its estimate is the gray one (benchmarks/results/tv_colour.md).

    Where A observes some pixels of a circular convolution (denoising, inpainting, blur, circular or
    valid) or has an SVD (downsampling, compressed sensing), it runs ``steps`` iterations of ADMM with
    FFT-diagonal steps (:func:`_tv_admm`); for any other linear operator (a composition) 10 x ``steps``
    iterations of the primal-dual method of Chambolle & Pock (2011), which needs about that many more.
    """
    if channels not in ("coupled", "separate"):
        raise RestoreError(f"tv's channels must be coupled or separate, got {channels!r}")
    sigma = effective_sigma(y, operator)
    noiseless = sigma < 10 * SIGMA_FLOOR
    sigma_y = max(sigma, 10 * SIGMA_FLOOR)
    shape = operator.input_shape(tuple(y.shape))
    coupled = channels == "coupled" and len(shape) == 4 and shape[1] > 1
    if weight is None:  # by the size of the image x, not of y (smaller for super-resolution, a vector for CS)
        weight = (2.0 if shape[-2] * shape[-1] <= 64 * 64 else 6.0) * (math.sqrt(shape[1]) if coupled else 1.0)
    magnitude = _coupled_magnitude if coupled else _magnitude
    lam = weight * sigma_y**2
    structure = _masked_convolution(y, operator)
    if structure is None and hasattr(operator, "prox_l2"):  # an SVD, as DPIR's data step asks
        structure = _svd_domain(y, operator)
    if structure is not None:
        # ADMM's penalty, chosen on training images (benchmarks/results/tune/tv_photos.md): a smaller one
        # converges faster when the data term is a hard constraint (noiseless inpainting).
        rho = (0.1 if noiseless else 0.5) / math.sqrt(lam)
        return _tv_admm(y, structure, lam, steps, rho=rho, callback=callback, magnitude=magnitude)
    # Start from the pseudo-inverse: from A^T y (dark and blocky for downsampling) the iteration
    # needs hundreds of steps only to reach what A^+ y already is.
    x = operator.A_pinv(y).clamp(0, 1)
    # Divided by lam, the problem is min TV(x) + ||A x - y||^2 / (2 lam): the TV dual lives in the
    # unit ball, which keeps steps useful when lam is tiny (noiseless inpainting) instead of crawling.
    # K = [A; grad] with ||grad||^2 <= 8; tau = sig = 0.99 / ||K|| satisfy tau sig ||K||^2 < 1.
    L = math.sqrt(operator.norm_squared(x) + 8.0)
    tau = sig = 0.99 / L
    x_bar = x.clone()
    q = torch.zeros_like(y)  # dual of the data term
    p = torch.zeros_like(Fn.gradient(x))  # dual of the gradient, (B, C, 2, H, W)
    for k in range(10 * steps):
        # 1. Dual ascent: prox of the conjugate of ||u - y||^2 / (2 lam); projection onto |p_ij| <= 1.
        q = (q + sig * (operator.A(x_bar) - y)) / (1 + sig * lam)
        p = p + sig * Fn.gradient(x_bar)
        p = p / magnitude(p).clamp_min(1.0)
        # 2. Primal descent (grad^T = -div) and projection onto the box [0, 1].
        x_new = (x - tau * (operator.A_adjoint(q) - Fn.divergence(p))).clamp(0, 1)
        # 3. Over-relaxation.
        x_bar = 2 * x_new - x
        x = x_new
        if k % 10 == 9:
            report(callback, k // 10, x=x)
    return x


@hyperparameters(weight="(0, inf)")
@requires("A_adjoint", "norm_squared")
def lasso(y, operator, prior=None, *, steps: int = 500, generator=None, callback: Callback = None,
          weight: float = 0.1, basis: str = "wavelet"):
    """Lasso, min_x 1/2 ||A x - y||^2 + weight ||Psi x||_1, by FISTA (Beck & Teboulle 2009).

    Sparsity in ``basis`` "pixel" (Psi = I) or "wavelet" (Psi an orthonormal 2-D Haar transform,
    as many levels as the size halves evenly, at most 3): the classical reference of compressed
    sensing (Candes, Romberg & Tao 2006), and the baseline of Bora et al. (2017). The coefficients
    w = Psi x are optimised; the step is 1 / ||A||^2 (power iteration).
    """
    if basis not in ("pixel", "wavelet"):
        raise RestoreError(f"lasso's basis must be pixel or wavelet, got {basis!r}")
    x0 = operator.A_adjoint(y)
    levels = Fn.haar_levels(*x0.shape[-2:]) if basis == "wavelet" else 0
    to_coef, to_image = (lambda v: Fn.haar2d(v, levels)), (lambda w: Fn.ihaar2d(w, levels))
    # ||A||^2 exactly from the singular values where the operator has them; else by power
    # iteration, which approaches from below, so with a 2% margin to keep the step stable.
    if hasattr(operator, "singular_values"):
        step = 1.0 / float(operator.singular_values(x0).max()) ** 2
    else:
        step = 1.0 / (1.02 * operator.norm_squared(x0, iters=100))
    w = to_coef(torch.zeros_like(x0))
    v, t = w.clone(), 1.0
    for k in range(steps):
        # 1. Gradient step on the data term at the extrapolated point, then soft thresholding (prox of l1).
        grad = to_coef(operator.A_adjoint(operator.A(to_image(v)) - y))
        u = v - step * grad
        w_new = u.sign() * (u.abs() - step * weight).clamp_min(0)
        # 2. Nesterov extrapolation.
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        v = w_new + (t - 1) / t_new * (w_new - w)
        w, t = w_new, t_new
        report(callback, k)
    return to_image(w).clamp(0, 1)


def _masked_convolution(y: torch.Tensor, operator, margin: int = 8):
    """For an operator that observes some pixels of a circular convolution (denoising, inpainting, a
    circular or a valid blur): (K, data_step, start, crop) on a domain grown by ``margin`` pixels, where
    the periodic boundary of the FFT does no harm because nothing there is observed (no margin for a
    circular blur, whose model is periodic on x's own domain). K is the OTF (h, w // 2 + 1) for rfft2;
    ``data_step(r, t)`` is argmin_u ||M (u - y)||^2 + t ||u - r||^2 on the domain (M the observed
    values); ``start`` the first z, y with unobserved values filled by its mean; ``crop`` maps back to
    x's domain. None for any other operator."""
    kernel, mask = getattr(operator, "kernel", None), getattr(operator, "mask", None)
    if kernel is None and mask is None:
        return None
    blur = kernel is not None and kernel.numel() > 1
    if blur and not hasattr(operator, "grow"):
        margin = 0
    H, W = tuple(operator.input_shape(tuple(y.shape)))[-2:]
    top, left = getattr(operator, "radius", (0, 0))  # where the frame of y sits in x (a valid blur's is grown)
    # At least the margin on every side, more below and to the right up to fast FFT lengths (Fn.fast_size).
    h, w = (H, W) if margin == 0 else (Fn.fast_size(H + 2 * margin), Fn.fast_size(W + 2 * margin))
    rows = slice(margin + top, margin + top + y.shape[-2])
    cols = slice(margin + left, margin + left + y.shape[-1])
    observed = y.new_zeros((*y.shape[:2], h, w))
    observed[..., rows, cols] = 1.0 if mask is None else mask.to(y.dtype).expand(y.shape[1:])
    y_pad = y.new_zeros(observed.shape)
    y_pad[..., rows, cols] = y * observed[..., rows, cols]
    if blur:  # the kernel is real: rfft2's half-spectrum is the first w // 2 + 1 columns of its fft2
        K = Fn.kernel_otf(kernel.double().cpu(), h, w, half=True)
    else:
        K = torch.ones((h, w // 2 + 1), dtype=torch.complex128)

    def crop(z):
        return z[..., margin : margin + H, margin : margin + W]

    def data_step(r, t):  # argmin_u ||observed (u - y_pad)||^2 + t ||u - r||^2
        return r + observed * ((y_pad + t * r) / (1 + t) - r)

    fill = (y_pad.sum((-2, -1), keepdim=True) / observed.sum((-2, -1), keepdim=True).clamp_min(1))
    start = torch.where(observed > 0, y_pad, fill)
    return K, data_step, start, crop


def _svd_domain(y: torch.Tensor, operator, margin: int = 8):
    """The same structure as :func:`_masked_convolution` for an operator with an SVD that is no masked
    convolution (downsampling, compressed sensing): the unknown u = z observed through A on x's domain,
    which sits inside a domain grown by ``margin`` pixels, so that the periodic differences of the FFT
    steps meet no wrap-around on x; the data step is the SVD's closed-form ``prox_l2`` there. It starts
    from the pseudo-inverse, its borders repeated outward."""
    x0 = operator.A_pinv(y).clamp(0, 1)
    H, W = x0.shape[-2:]
    measured = operator.spectral(y)

    def crop(z):
        return z[..., margin : margin + H, margin : margin + W]

    def data_step(r, t):  # argmin_u ||A crop(u) - y||^2 + t ||u - r||^2: the prox inside, u = r outside
        u = r.clone()
        u[..., margin : margin + H, margin : margin + W] = operator.prox_l2(crop(r), y, t, measured=measured)
        return u

    h, w = Fn.fast_size(H + 2 * margin), Fn.fast_size(W + 2 * margin)  # the margin or more: fast FFT lengths
    start = torch.nn.functional.pad(x0, (margin, w - W - margin, margin, h - H - margin), mode="replicate")
    return torch.ones((h, w // 2 + 1), dtype=torch.complex128), data_step, start, crop


def _magnitude(g: torch.Tensor) -> torch.Tensor:
    """|g| of a field of 2-vectors (B, C, 2, H, W), as (B, C, 1, H, W): ``g.norm(dim=2)`` reduces over a
    strided axis of two and took 70% of TV's time on a photo; this is the same sum of two squares."""
    return torch.sqrt(g[:, :, :1].square() + g[:, :, 1:].square())


def _coupled_magnitude(g: torch.Tensor) -> torch.Tensor:
    """|g| of a field of 2-vectors per channel (B, C, 2, H, W) taken over all channels at once, as
    (B, 1, 1, H, W): the pointwise norm of the vectorial total variation."""
    return torch.sqrt(g.square().sum((1, 2), keepdim=True))


def _tv_admm(y, structure, lam: float, steps: int, rho: float, callback: Callback = None,
             magnitude=_magnitude) -> torch.Tensor:
    """TV-regularised least squares by ADMM with FFT-diagonal steps (Afonso, Bioucas-Dias & Figueiredo
    2010, SALSA; with unknown boundaries, Almeida & Figueiredo 2013): min 1/(2 lam) ||M H z - y||^2 + TV(z)
    over z in [0, 1], split as u = H z, v = D z (periodic differences), w = z, every split with weight rho.
    For an operator with an SVD, H = I and M H is A on x's part of the domain (:func:`_svd_domain`)."""
    K, data_step, z, crop = structure
    K = K.to(y.device, torch.complex128 if y.dtype == torch.float64 else torch.complex64)
    h, w = z.shape[-2:]
    fy = torch.fft.fftfreq(h, dtype=y.dtype, device=y.device)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=y.dtype, device=y.device)[None, :]
    Dy, Dx = torch.exp(2j * math.pi * fy) - 1, torch.exp(2j * math.pi * fx) - 1  # forward differences
    den = K.abs().square() + Dy.abs().square() + Dx.abs().square() + 1  # (h, w // 2 + 1), real
    Kc, Dyc, Dxc = K.conj(), Dy.conj(), Dx.conj()
    identity = bool((K == 1).all())  # no blur: H z is z

    def diff(z):  # periodic forward differences (B, C, 2, h, w)
        return torch.stack((torch.roll(z, -1, -2) - z, torch.roll(z, -1, -1) - z), 2)

    u, v, wb = torch.fft.irfft2(K * torch.fft.rfft2(z), s=(h, w)), diff(z), z.clone()
    du, dv, dw = torch.zeros_like(u), torch.zeros_like(v), torch.zeros_like(wb)
    for k in range(steps):
        # 1. z: the quadratic step, diagonal in the Fourier domain.
        a, b = torch.fft.rfft2(u - du), torch.fft.rfft2(v - dv)
        Z = (Kc * a + Dyc * b[:, :, 0] + Dxc * b[:, :, 1] + torch.fft.rfft2(wb - dw)) / den
        z = torch.fft.irfft2(Z, s=(h, w))
        Hz = z if identity else torch.fft.irfft2(K * Z, s=(h, w))
        Dz = diff(z)
        # 2. u: the prox of the data term ||. - y||^2 / (2 lam) with the split's weight rho.
        u = data_step(Hz + du, rho * lam)
        # 3. v: isotropic shrinkage of the gradient (prox of TV / rho; over all channels at once when coupled).
        s = Dz + dv
        v = s * (1 - 1 / (rho * magnitude(s).clamp_min(1e-12))).clamp_min(0)
        # 4. w: projection onto the box [0, 1].
        wb = (z + dw).clamp(0, 1)
        # 5. Scaled dual ascent.
        du, dv, dw = du + Hz - u, dv + Dz - v, dw + z - wb
        if callback is not None:
            report(callback, k, x=crop(wb))
    return crop(wb)


#: Classical solvers by name.
SOLVERS = {
    "pinv": pinv,
    "bicubic": bicubic,
    "biharmonic": biharmonic,
    "wiener": wiener,
    "richardson-lucy": richardson_lucy,
    "tv": tv,
    "lasso": lasso,
}
