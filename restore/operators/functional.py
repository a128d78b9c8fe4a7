"""Pure functions behind the operators: kernels, resampling matrices, FFT helpers. No state."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch


def gaussian_kernel(sigma: float, size: int | None = None) -> torch.Tensor:
    """Normalised isotropic Gaussian kernel, (size, size); size defaults to 2*ceil(3 sigma)+1."""
    if size is None:
        size = 2 * math.ceil(3 * sigma) + 1
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    k = torch.outer(g, g)
    return (k / k.sum()).float()


def motion_kernel(size: int = 61, intensity: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Random camera-shake kernel, (size, size), normalised to sum 1.

    A particle moves with inertia under random acceleration and occasional abrupt turns, as in
    the trajectory model of Boracchi & Foi (2012), "Modeling the performance of image restoration
    from motion blur"; DPS (Chung et al. 2023) benchmarks with kernels of this kind at size 61 and
    intensity 0.5. ``intensity`` in [0, 1] scales the randomness: 0 gives a straight streak, 1 an
    erratic, curling path. The path is scaled to span the kernel and splatted bilinearly.
    """
    rng = np.random.default_rng(seed)
    n = 4 * size
    # Acceleration noise and the chance of a sudden jerk both grow with intensity.
    jitter = 0.3 * intensity
    jerk_prob = 0.02 * intensity
    v = np.exp(1j * rng.uniform(0, 2 * np.pi))
    pos = np.zeros(n, dtype=np.complex128)
    for t in range(1, n):
        if rng.uniform() < jerk_prob:
            v = v * np.exp(1j * rng.uniform(np.pi / 2, 3 * np.pi / 2))
        # Random acceleration, plus a weak pull towards the start that keeps the path compact.
        acc = jitter * (rng.normal() + 1j * rng.normal()) - 0.1 * intensity * pos[t - 1] / n
        v = v + acc
        v = v / max(abs(v), 1e-12)
        pos[t] = pos[t - 1] + v
    # Scale the path into [0, size-1] on its longest side, centred.
    xs, ys = pos.real, pos.imag
    extent = max(xs.max() - xs.min(), ys.max() - ys.min(), 1e-12)
    scale = (size - 1) / extent
    xs = (xs - (xs.max() + xs.min()) / 2) * scale + (size - 1) / 2
    ys = (ys - (ys.max() + ys.min()) / 2) * scale + (size - 1) / 2
    # Bilinear splatting: each sample spreads its unit weight over the four nearest pixels.
    k = np.zeros((size, size))
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = np.clip(x0 + dx, 0, size - 1), np.clip(y0 + dy, 0, size - 1)
        np.add.at(k, (yi, xi), w)
    k = torch.from_numpy(k / k.sum()).float()
    return k


def kernel_otf(kernel: torch.Tensor, height: int, width: int, half: bool = False) -> torch.Tensor:
    """Transfer function of circular convolution with ``kernel`` on an (height, width) grid.

    The kernel's centre pixel (kh // 2, kw // 2) is moved to the origin, so a symmetric kernel
    causes no shift. Returns the complex (height, width) array K with A x = ifft2(K * fft2(x)); with
    ``half`` its first width // 2 + 1 columns, for A x = irfft2(K * rfft2(x)).
    """
    kh, kw = kernel.shape[-2:]
    # Tap (i, j) lands at ((i - kh // 2) mod height, (j - kw // 2) mod width); taps that meet on a grid
    # smaller than the kernel add up, as circular convolution on that grid does.
    rows = ((torch.arange(kh, device=kernel.device) - kh // 2) % height)[:, None].expand(kh, kw)
    cols = ((torch.arange(kw, device=kernel.device) - kw // 2) % width)[None, :].expand(kh, kw)
    padded = torch.zeros(height, width, dtype=kernel.dtype, device=kernel.device)
    padded.index_put_((rows, cols), kernel, accumulate=True)
    return torch.fft.rfft2(padded) if half else torch.fft.fft2(padded)


def fast_size(n: int) -> int:
    """The smallest m >= n with no prime factor above 7: an FFT length that pocketfft and cuFFT take fast.
    A length with a large prime factor is slow: a real FFT and its inverse of 3 x 4026 x 3026 (2 x 3 x 11 x 61
    by 2 x 17 x 89) took 1.8 times as long as of 3 x 4032 x 3072 here (medians of 7, torch 2.14, 2 threads)."""
    m = max(int(n), 1)
    while True:
        rest = m
        for p in (2, 3, 5, 7):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1


def transfer(kernel: torch.Tensor, height: int, width: int, *, half: bool, dtype: torch.dtype,
             device) -> torch.Tensor:
    """:func:`kernel_otf` as ``dtype`` (complex) on ``device``, computed in float64; with ``half`` only its first
    width // 2 + 1 columns, the half-spectrum that rfft2 and irfft2 use (the kernel is real). Cached per
    kernel, grid and kind: a blur applies it at every step of a solver, and on a 4000x3000 photo computing it
    took as long as the convolution itself."""
    k = kernel.detach().to("cpu", torch.float64).contiguous()
    return _transfer(tuple(k.shape), k.numpy().tobytes(), height, width, half, dtype, str(device))


@lru_cache(maxsize=8)
def _transfer(shape, data: bytes, height: int, width: int, half: bool, dtype: torch.dtype, device: str):
    kernel = torch.frombuffer(bytearray(data), dtype=torch.float64).reshape(shape)
    return kernel_otf(kernel, height, width, half).to(device=device, dtype=dtype)


def reflect_pad(x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """x (..., H, W) mirrored by ph rows and pw columns on each side, half-sample symmetric (the edge
    pixel repeated, as MATLAB's padarray 'symmetric'); pads wider than the image mirror again."""
    rows = torch.from_numpy(_reflect(np.arange(-ph, x.shape[-2] + ph), x.shape[-2])).to(x.device)
    cols = torch.from_numpy(_reflect(np.arange(-pw, x.shape[-1] + pw), x.shape[-1])).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def modcrop(x: torch.Tensor, factor: int) -> torch.Tensor:
    """x (..., H, W) cropped to the largest multiple of ``factor`` in each side, top-left kept: the
    super-resolution literature's "modcrop" (MATLAB's img(1:H - mod(H, k), 1:W - mod(W, k)))."""
    H, W = x.shape[-2:]
    return x[..., : H - H % factor, : W - W % factor]


def _cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel (a = -0.5, as MATLAB's and PyTorch's bicubic)."""
    t = np.abs(t)
    return np.where(
        t <= 1,
        (a + 2) * t**3 - (a + 3) * t**2 + 1,
        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0),
    )


def _reflect(i: np.ndarray, n: int) -> np.ndarray:
    """Fold indices into [0, n) by half-sample symmetric reflection (the image is mirrored at its edges)."""
    period = 2 * n
    i = np.mod(i, period)
    return np.where(i < n, i, period - 1 - i)


@lru_cache(maxsize=16)
def resample_kernel(factor: int, kind: str) -> tuple[int, tuple[float, ...]]:
    """(offset, weights): output sample i of a 1-D downsampling is sum_j weights[j] x[factor i + offset + j],
    the image mirrored at its borders (half-sample symmetric) where an index falls outside it.

    Output sample i sits at input coordinate (i + 0.5) * factor - 0.5 (pixel centres, the
    align_corners=False convention). 'box' averages the factor samples around it; 'bicubic' stretches Keys'
    kernel by the factor (anti-aliased downscaling, as MATLAB's imresize), normalised to sum 1. The same
    weights serve every output sample: the integer factor keeps each one's centre at the same phase."""
    if kind == "box":
        return 0, (1.0 / factor,) * factor
    if kind != "bicubic":
        raise ValueError(f"unknown resampling kind {kind!r}")
    centre = (factor - 1) / 2  # output 0's centre; output i's is factor i + centre
    support = 2 * factor
    taps = np.arange(math.floor(centre - support), math.ceil(centre + support) + 1)
    w = _cubic((taps - centre) / factor)
    w = w / w.sum()
    nonzero = np.flatnonzero(w)  # Keys' kernel vanishes at the ends of its support
    taps, w = taps[nonzero[0] : nonzero[-1] + 1], w[nonzero[0] : nonzero[-1] + 1]
    return int(taps[0]), tuple(float(v) for v in w)


@lru_cache(maxsize=64)
def _resample_index(n: int, factor: int, kind: str) -> torch.Tensor:
    """Indices of x read by :func:`resample_apply`, in order: factor (m - 1) + T of them, mirrored into [0, n)."""
    offset, w = resample_kernel(factor, kind)
    return torch.from_numpy(_reflect(np.arange(offset, factor * (n // factor - 1) + offset + len(w)), n))


@lru_cache(maxsize=64)
def resample_matrix(n: int, factor: int, kind: str) -> torch.Tensor:
    """1-D downsampling matrix (n // factor, n) in float64, for ``kind`` 'box' or 'bicubic': the explicit
    form of :func:`resample_kernel` (where mirrored taps land on the same sample, their weights add)."""
    offset, w = resample_kernel(factor, kind)
    m = n // factor
    mat = np.zeros((m, n))
    for i in range(m):
        np.add.at(mat[i], _reflect(factor * i + offset + np.arange(len(w)), n), w)
    return torch.from_numpy(mat)


def _every(x: torch.Tensor, dim: int, start: int, count: int, step: int) -> torch.Tensor:
    """The view x[start :: step] of ``count`` samples along ``dim``."""
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, start + step * (count - 1) + 1, step)
    return x[tuple(index)]


def _margins(n: int, factor: int, kind: str) -> tuple[int, int] | None:
    """(left, right): how many samples the taps read beyond each end of a line of n, or None where that is more
    than n (a line shorter than the filter, mirrored more than once)."""
    offset, w = resample_kernel(factor, kind)
    left, right = max(0, -offset), max(0, factor * (n // factor - 1) + offset + len(w) - n)
    return (left, right) if left <= n and right <= n else None


def resample_apply(x: torch.Tensor, factor: int, kind: str, dim: int) -> torch.Tensor:
    """D x along ``dim`` (n -> n // factor) for D = :func:`resample_matrix`, without forming D: the line
    mirrored at its ends (flipped copies of its first and last samples), then one strided multiply-add per tap.
    A dense D costs n^2 / factor multiply-adds per line, this about 4 n (bicubic: 4 factor taps for each of
    n / factor outputs) or n (box); at 4000x3000 (4x bicubic, float64 RGB) A took 0.21 s against 1.01 s for
    the dense product (benchmarks/results/superres_data_step.md). No scattered writes: on a GPU the result and
    its gradient are as deterministic as the dense product's."""
    offset, w = resample_kernel(factor, kind)
    n = x.shape[dim]
    m = n // factor
    if m == 0:  # fewer samples than the factor: no output
        return x.narrow(dim, 0, 0) * 0
    length = factor * (m - 1) + len(w)
    margins = _margins(n, factor, kind)
    if margins is None:  # a line shorter than the filter: gather the mirrored indices
        padded = x.index_select(dim, _resample_index(n, factor, kind).to(x.device))
    else:
        left, right = margins
        parts = ([x.narrow(dim, 0, left).flip(dim)] if left else []) + [x] + \
            ([x.narrow(dim, n - right, right).flip(dim)] if right else [])
        padded = torch.cat(parts, dim).narrow(dim, offset + left, length)
    out = _every(padded, dim, 0, m, factor) * w[0]
    for j in range(1, len(w)):
        out.add_(_every(padded, dim, j, m, factor), alpha=w[j])
    return out


def resample_adjoint(y: torch.Tensor, n: int, factor: int, kind: str, dim: int) -> torch.Tensor:
    """D^T y along ``dim`` (n // factor -> n): each tap's weighted samples added back where
    :func:`resample_apply` read them, then the mirrored margins folded back onto the line."""
    offset, w = resample_kernel(factor, kind)
    m = y.shape[dim]
    size = list(y.shape)
    if m == 0:
        size[dim] = n
        return y.new_zeros(size)
    margins = _margins(n, factor, kind)
    left, right = margins or (0, 0)
    size[dim] = left + n + right if margins else factor * (m - 1) + len(w)
    buffer = y.new_zeros(size)
    region = buffer.narrow(dim, offset + left, factor * (m - 1) + len(w)) if margins else buffer
    for j in range(len(w)):
        _every(region, dim, j, m, factor).add_(y, alpha=w[j])
    if margins is None:  # a line shorter than the filter: scatter back to the mirrored indices
        size[dim] = n
        return y.new_zeros(size).index_add(dim, _resample_index(n, factor, kind).to(y.device), buffer)
    out = buffer.narrow(dim, left, n).clone()
    if left:
        out.narrow(dim, 0, left).add_(buffer.narrow(dim, 0, left).flip(dim))
    if right:
        out.narrow(dim, n - right, right).add_(buffer.narrow(dim, left + n, right).flip(dim))
    return out


class _ResampleSVD:
    """The SVD of one 1-D downsampling matrix D (m, n), float64: U (m, m) and s (m,) from the eigendecomposition
    of D D^T, computed at once (for n = 4000 an eigendecomposition of the 1000x1000 D D^T, instead of an SVD of D
    that took 3 s), and Vh (n, n) built on them the first time it is asked for. One object holds all three, so
    U and V always belong to the same decomposition (eigh's signs are its own)."""

    def __init__(self, n: int, factor: int, kind: str):
        self.D = resample_matrix(n, factor, kind)
        eigenvalues, self.U = torch.linalg.eigh(self.D @ self.D.T)
        # D D^T is well conditioned (its eigenvalues lie in [0.12, 0.25] for 4x bicubic and are all 1 / factor
        # for box), so the square roots lose nothing.
        self.s = eigenvalues.clamp_min(0).sqrt()
        self._Vh = None

    @property
    def Vh(self) -> torch.Tensor:
        """The first m rows are S^-1 U^T D, the other n - m an orthonormal basis of D's null space (from a full
        SVD, whose null space is the same whatever basis it picks for the row space; for box filters every
        singular value is equal and any basis is one)."""
        if self._Vh is None:
            null = torch.linalg.svd(self.D, full_matrices=True).Vh[self.D.shape[0] :]
            self._Vh = torch.cat([(self.U.T @ self.D) / self.s[:, None], null])
        return self._Vh


@lru_cache(maxsize=64)
def _resample_factors(n: int, factor: int, kind: str) -> _ResampleSVD:
    return _ResampleSVD(n, factor, kind)


def resample_left_svd(n: int, factor: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(U, s) of :func:`resample_matrix`, U (m, m) and s (m,), in float64, without the (n, n) right factor."""
    svd = _resample_factors(n, factor, kind)
    return svd.U, svd.s


def resample_svd(n: int, factor: int, kind: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD (U, s, Vh) of :func:`resample_matrix` with U (m, m), s (m,), Vh (n, n), in float64; U and s are
    :func:`resample_left_svd`'s."""
    svd = _resample_factors(n, factor, kind)
    return svd.U, svd.s, svd.Vh


def gradient(x: torch.Tensor) -> torch.Tensor:
    """Forward differences with Neumann boundary: (B, C, H, W) -> (B, C, 2, H, W)."""
    dx = torch.zeros_like(x)
    dy = torch.zeros_like(x)
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    return torch.stack((dx, dy), dim=2)


def divergence(p: torch.Tensor) -> torch.Tensor:
    """Negative adjoint of :func:`gradient`: (B, C, 2, H, W) -> (B, C, H, W)."""
    px, py = p[:, :, 0], p[:, :, 1]
    div = torch.zeros_like(px)
    div[..., :, 0] = px[..., :, 0]
    div[..., :, 1:-1] = px[..., :, 1:-1] - px[..., :, :-2]
    div[..., :, -1] = -px[..., :, -2]
    div[..., 0, :] += py[..., 0, :]
    div[..., 1:-1, :] += py[..., 1:-1, :] - py[..., :-2, :]
    div[..., -1, :] += -py[..., -2, :]
    return div


def haar_levels(h: int, w: int, most: int = 3) -> int:
    """How many times an h x w image can be halved (both sides even), up to ``most``."""
    levels = 0
    while levels < most and h % 2 == 0 and w % 2 == 0 and h > 1 and w > 1:
        h, w, levels = h // 2, w // 2, levels + 1
    return levels


def haar2d(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Orthonormal 2-D Haar wavelet transform of (..., H, W), ``levels`` times on the coarse band;
    coefficients in place: the coarse band top-left, details (horizontal, vertical, diagonal) around it."""
    c = x.clone()
    h, w = x.shape[-2:]
    for _ in range(levels):
        band = c[..., :h, :w]
        a, b = band[..., 0::2, 0::2], band[..., 0::2, 1::2]  # (..., h/2, w/2) each
        d, e = band[..., 1::2, 0::2], band[..., 1::2, 1::2]
        low = (a + b + d + e) / 2
        horiz, vert, diag = (a - b + d - e) / 2, (a + b - d - e) / 2, (a - b - d + e) / 2
        top = torch.cat([low, horiz], -1)
        bottom = torch.cat([vert, diag], -1)
        c[..., :h, :w] = torch.cat([top, bottom], -2)
        h, w = h // 2, w // 2
    return c


def ihaar2d(c: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse (= transpose) of :func:`haar2d`."""
    x = c.clone()
    H, W = c.shape[-2:]
    for level in reversed(range(levels)):
        h, w = H >> level, W >> level
        hh, hw = h // 2, w // 2
        low, horiz = x[..., :hh, :hw], x[..., :hh, hw:w]
        vert, diag = x[..., hh:h, :hw], x[..., hh:h, hw:w]
        band = torch.empty_like(x[..., :h, :w])
        band[..., 0::2, 0::2] = (low + horiz + vert + diag) / 2
        band[..., 0::2, 1::2] = (low - horiz + vert - diag) / 2
        band[..., 1::2, 0::2] = (low + horiz - vert - diag) / 2
        band[..., 1::2, 1::2] = (low - horiz - vert + diag) / 2
        x[..., :h, :w] = band
    return x
