"""BM3D: block matching and 3-D collaborative filtering, the classical bar on photographs.

Dabov, Foi, Katkovnik & Egiazarian (2007), "Image denoising by sparse 3-D transform-domain
collaborative filtering" (gray BM3D), and "Color image denoising via sparse 3D collaborative
filtering with grouping constraint in luminance-chrominance space" (CBM3D, the same year);
Dabov et al. (2008), "Image restoration by sparse 3D transform-domain collaborative filtering"
(BM3D deblurring: a regularised inverse, then BM3D on its coloured noise, twice). This wraps the
authors' own implementation, the `bm3d` package of Tampere University (Mäkinen, Azzari & Foi
2020), whose licence allows non-commercial use only: it is an optional dependency
(``pip install 'restore-imaging[bm3d]'``).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import RestoreError
from ..operators import functional as Fn
from ..runtime import check_allocation
from .base import Callback, context_tiles, effective_sigma, progress, report, requires
from .classical import SIGMA_FLOOR, circular_domain, consistent_domain, periodic_margins, tv

#: The package's parameter sets (``bm3d.BM3DProfile`` and its subclasses, by the names it accepts).
PROFILES = ("np", "refilter", "vn", "vn_old", "high", "deb")

#: Smallest side the package is given; smaller images are mirrored up to it.
MIN_SIZE = 32

#: Denoising of an image of more pixels than TILE ** 2 runs in TILE x TILE tiles, each given MARGIN more
#: pixels of context on every side (cropped away after): the package holds several float64 copies of its
#: whole input and more (12 GB at 4000x3000 RGB, where a tile of 1,024 + 2 x 48 pixels takes about 1 GB).
#: A pixel's estimate depends on blocks within the search window (39 x 39) around it, in two passes, so 48
#: pixels of context leave it almost as the whole image gives it (tests/test_photos.py).
TILE, MARGIN = 1024, 48

#: Deblurring runs its regularised inverses (global filters) on the whole image and its BM3D filtering in the
#: same tiles (:func:`_deblur`). Peak memory (``benchmarks/bm3d_memory.py``, ``benchmarks/results/bm3d_memory.md``)
#: is about GLOBAL bytes per pixel of the image plus WINDOW bytes per pixel of the largest window the package
#: filters: gray 728 per pixel at 1024x1024 (one tile), 256 at 2048x2048, 164 at 3072x3072 and 168 at
#: 4000x3000 (1.87 GiB); colour (the opponent space) 1,124 at 1024x1024, 453 at 2048x2048 and 356 at 4000x3000
#: (3.98 GiB, above the 3.4 that GLOBAL 200 predicted; 300 covers it). Whole, a 4000x3000 photo took about 8 GiB
#: gray and 13 colour. An image whose estimate exceeds the memory available is refused before the package starts.
DEBLUR_GLOBAL_BYTES, DEBLUR_WINDOW_BYTES = {1: 110, 3: 300}, {1: 650, 3: 1000}


def _package():
    # bm4d 4.2 (which bm3d calls) uses np.trapz, which NumPy 2.4 removed in favour of np.trapezoid, the
    # same function; without it, coloured-noise filtering (BM3D deblurring) fails with AttributeError.
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    try:
        import bm3d as package
    except ImportError:
        raise RestoreError("the bm3d solver needs the bm3d package (non-commercial licence): "
                           "pip install 'restore-imaging[bm3d]'") from None
    return package


#: CBM3D's opponent colour transform (rows orthogonal: white noise stays white and uncorrelated) and its inverse.
OPPONENT = np.array([[1 / 3, 1 / 3, 1 / 3], [1 / 2, 0, -1 / 2], [1 / 4, -1 / 2, 1 / 4]])
OPPONENT_INVERSE = np.linalg.inv(OPPONENT)


def _to_opponent(z, sigma: float):
    """(H, W, 3) RGB -> its opponent channels, each stretched to [0, 1] as the package's ``rgb_to`` does, the
    affine map back, and the noise std of each channel. A constant channel (both chrominances of a gray
    image, noiseless or tinted) keeps a span of 1, where the package's own transform divides by zero."""
    o = z @ OPPONENT.T
    low, span = o.min((0, 1)), np.ptp(o, (0, 1))
    span = np.where(span > 0, span, 1.0)
    return (o - low) / span, (low, span), sigma * np.sqrt((OPPONENT**2).sum(1)) / span


def _from_opponent(o, affine):
    low, span = affine
    return (o * span + low) @ OPPONENT_INVERSE.T


def _denoise_rgb(package, z, sigma: float, profile: str):
    """CBM3D: BM3D in the opponent space, blocks matched on the luminance (the package groups on the first
    channel) and the chrominances filtered in the same groups."""
    o, affine, sigmas = _to_opponent(z, sigma)
    if np.ptp(o[..., 0]) == 0:  # a flat luminance (a tile of one colour) has no groups: the package fails on it
        return _from_opponent(np.stack([o[..., c] if np.ptp(o[..., c]) == 0 else
                                        np.asarray(package.bm3d(o[..., c], sigmas[c], profile)).reshape(o.shape[:2])
                                        for c in range(3)], -1), affine)
    return _from_opponent(np.asarray(package.bm3d(o, list(sigmas), profile)).reshape(o.shape), affine)


def _colourful(z) -> bool:
    """Whether an (H, W, C) image is deblurred in the opponent space: RGB with a varying luminance (its groups
    are matched there) and a varying colour; a tinted gray image (both chrominances constant) is deblurred
    channel by channel."""
    if z.shape[-1] != 3:
        return False
    flat = np.ptp(z @ OPPONENT.T, (0, 1)) == 0
    return not (flat[0] or flat[1:].all())


def _window_psd(psd: np.ndarray, h: int, w: int) -> np.ndarray:
    """The PSD (the package's convention: variance times the pixel count) of stationary noise of PSD ``psd``
    (H, W) as seen on an h x w window of it: the noise's kernel (the inverse transform of sqrt(psd), the
    kernel the package derives from a PSD) centred, cut to h x w and transformed back. White noise keeps its
    variance; coloured noise keeps its spectrum but for kernel taps beyond the window, which carry almost
    none of its energy on a window of BM3D's TILE + 2 MARGIN pixels."""
    H, W = psd.shape
    if (h, w) == (H, W):
        return psd
    kernel = np.fft.fftshift(np.real(np.fft.ifft2(np.sqrt(psd / (H * W)))))
    top, left = H // 2 - h // 2, W // 2 - w // 2
    kernel = np.fft.ifftshift(kernel[top : top + h, left : left + w])
    return np.abs(np.fft.fft2(kernel)) ** 2 * (h * w)


def _deblur(package, z, sigmas, kernel, profile: str, grouped: bool, callback: Callback = None, first: int = 0):
    """BM3D deblurring of an (H, W, C) image whose channels have noise std ``sigmas`` (C,), as the package's
    ``bm3d_deblurring`` runs it on one channel: the two stages of Dabov et al. (2008), a Tikhonov regularised
    inverse filtered by BM3D's hard thresholding, then a regularised Wiener inverse whose pilot is that estimate,
    filtered by BM3D's Wiener stage, each on its coloured noise. ``grouped``: the C = 3 channels are CBM3D's
    opponent channels (Dabov et al. 2007, "Color image denoising via sparse 3D collaborative filtering with
    grouping constraint in luminance-chrominance space"): blocks are matched on the luminance and the
    chrominances filtered in the same groups; else each channel alone.

    The inverses are global filters of the whole image (cheap: a few arrays of its size); the BM3D filtering,
    which holds several float64 copies of its input and more, runs in TILE x TILE tiles with MARGIN pixels of
    context (:func:`context_tiles`), each given its window of the noisy estimate, of the pilot and the noise's PSD
    on that window (:func:`_window_psd`). An image of at most TILE ** 2 pixels is one tile, the whole image, and
    gives exactly what the package gives. One ``callback`` per tile and stage, counted from ``first``."""
    H, W, C = z.shape
    eps = getattr(package, "EPS", np.finfo(np.float64).eps)
    flat = np.ptp(z, (0, 1)) == 0
    psd = np.asarray(sigmas, np.float64) ** 2 * H * W  # per channel; the package's PSDs are variances times H W
    kh, kw = kernel.shape
    otf = np.zeros((H, W))
    otf[:kh, :kw] = kernel
    otf = np.fft.fft2(np.roll(otf, (-(kh // 2), -(kw // 2)), (0, 1)))[..., None]
    spectrum = np.fft.fft2(z, axes=(0, 1))
    power = np.abs(otf) ** 2
    tiles = context_tiles(H, W, TILE, MARGIN)
    calls = [first]

    def filtered(weights, stage):
        """BM3D on the inverse filtered by ``weights`` (H, W, C), tile by tile: hard thresholding (``stage`` None)
        or Wiener filtering with the pilot ``stage``."""
        estimate = np.real(np.fft.ifft2(spectrum * weights, axes=(0, 1)))
        noise = psd * np.abs(weights) ** 2
        out = np.zeros((H, W, C))
        window_psds = {}  # (channel, h, w): windows of one size see the same stationary noise
        for window, inner, core in tiles:
            h, w = estimate[window].shape[:2]
            matches = (True, False) if stage is None else (False, True)
            for c in range(C):
                if flat[c]:  # a constant channel (a chrominance: 0 after stretching) is the blur of that constant
                    out[core + (c,)] = z[0, 0, c]
                    continue
                pilot = package.BM3DStages.HARD_THRESHOLDING if stage is None else stage[window][..., c]
                if (c, h, w) not in window_psds:
                    window_psds[c, h, w] = _window_psd(noise[..., c], h, w)
                x = package.bm3d(estimate[window][..., c], window_psds[c, h, w], profile, stage_arg=pilot,
                                 blockmatches=matches if grouped else (False, False))
                if grouped and c == 0:  # the luminance's estimate and its groups, reused for the chrominances
                    x, matches = x
                out[core + (c,)] = np.asarray(x).reshape(h, w)[inner]
            report(callback, calls[0])
            calls[0] += 1
        return out

    basic = filtered(np.conj(otf) / (power + 4e-4 * psd + eps), None)  # the package's 4e-4 and 5e-3
    pilot = np.abs(np.fft.fft2(basic, axes=(0, 1))) ** 2
    return filtered(np.conj(otf) * pilot / (pilot * power + 5e-3 * psd + eps), basic)


def _deblur_rgb(package, z, sigma: float, kernel, profile: str, callback: Callback = None, first: int = 0):
    """BM3D deblurring of an RGB image (H, W, 3) in CBM3D's opponent colour space (:func:`_deblur`, grouped).

    The blur (one kernel for all channels, summing to 1) commutes with the per-pixel colour transform and its
    per-channel affine normalisation, and white noise of std ``sigma`` in R, G and B stays white and
    uncorrelated across the transform's orthogonal rows, with a std per channel. (The package's own
    multichannel deblurring hands every channel's pilot to each channel and fails.)
    """
    opp, affine, sigmas = _to_opponent(z, sigma)
    return _from_opponent(_deblur(package, opp, sigmas, kernel, profile, True, callback, first), affine)


def _deblur_size(shape, operator) -> tuple[int, int]:
    """(h, w) of the image the package deblurs: the measurement's periodic domain, at least MIN_SIZE."""
    (top, left), (bottom, right), _ = periodic_margins(shape, operator)
    return max(shape[0] + top + bottom, MIN_SIZE), max(shape[1] + left + right, MIN_SIZE)


def _tile_count(y, operator, steps, hyperparameters) -> int:
    """Callbacks of one run: one per tile of each image when denoising (:func:`context_tiles`), one per tile
    of each image and stage when deblurring (tiles of its periodic domain), and one more for TV's first
    estimate of a valid blur."""
    H, W = y.shape[-2:]
    if operator.kernel.numel() > 1:  # two stages, each tile by tile, on the periodic domain of the blur
        tiles = context_tiles(*_deblur_size((H, W), operator), TILE, MARGIN)
        return y.shape[0] * 2 * len(tiles) + hasattr(operator, "grow")
    return y.shape[0] * len(context_tiles(H, W, TILE, MARGIN))


@progress(_tile_count)
@requires("kernel", "otf", noise=("gaussian",))
def bm3d(y, operator, prior=None, *, steps=None, generator=None, callback: Callback = None, profile: str = "np"):
    """BM3D denoising or, for a blur, BM3D deblurring; both in CBM3D's opponent colour space for RGB.

    Works on denoising (the identity, a 1x1 kernel) and on circular or valid blurs. The package assumes a
    circular blur, so a valid one is deblurred on a larger periodic domain whose margins beyond the frame are
    the blur of TV's estimate of the scene (:func:`classical.consistent_domain`; mirroring the measurement
    instead cost BM3D 6.8 dB on the frames of held-out photos).
    ``profile`` is the package's parameter set (:data:`PROFILES`; "np" as published).
    """
    if profile not in PROFILES:
        raise RestoreError(f"bm3d's profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    package = _package()
    sigma = max(effective_sigma(y, operator), SIGMA_FLOOR)
    kernel = operator.kernel.detach().cpu().double().numpy()
    deblur, valid = kernel.size > 1, hasattr(operator, "grow")
    if deblur:
        # The package centres a kernel at round((k - 1) / 2); one zero row or column makes an even size
        # odd, so that the centre stays at k // 2 as our operators have it.
        kh, kw = kernel.shape
        kernel = np.pad(kernel, ((0, 1 - kh % 2), (0, 1 - kw % 2)))
        h, w = _deblur_size(y.shape[-2:], operator)
        colour = 3 if y.shape[1] == 3 else 1
        window = max((min(rows.stop, h) - rows.start) * (min(cols.stop, w) - cols.start)  # the largest, in pixels
                     for (rows, cols), _, _ in context_tiles(h, w, TILE, MARGIN))
        check_allocation(DEBLUR_GLOBAL_BYTES[colour] * h * w + DEBLUR_WINDOW_BYTES[colour] * window,
                         f"BM3D deblurring of a {w}x{h} image", "deblur a crop of it, or choose another solver "
                         "(--solver tv, or a learned prior)")
        if valid:  # margins consistent with the periodic model, from TV's estimate
            y, crop = consistent_domain(y, operator, tv(y, operator))
            report(callback, 0)
        else:
            y, crop = circular_domain(y, operator)
    # The package fails on images near its block size (8 or 12; an 8x8 image crashes it): mirror small
    # ones up to MIN_SIZE and crop back.
    H, W = y.shape[-2:]
    ph, pw = max(0, MIN_SIZE - H), max(0, MIN_SIZE - W)
    y = Fn.reflect_pad(y, (ph + 1) // 2, (pw + 1) // 2)[..., : max(H, MIN_SIZE), : max(W, MIN_SIZE)] if ph or pw else y

    def denoise(z):  # (h, w, C) -> (h, w, C): CBM3D for RGB, else BM3D channel by channel
        if z.shape[-1] == 3:
            return _denoise_rgb(package, z, sigma, profile)
        return np.stack([np.asarray(package.bm3d(z[..., c], sigma, profile=profile)).reshape(z.shape[:2])
                         for c in range(z.shape[-1])], -1)

    out, calls = [], int(deblur and valid)
    for image in y.detach().cpu().double().numpy():  # (C, H, W)
        z = image.transpose(1, 2, 0)  # (H, W, C)
        channels = z.shape[-1]
        if channels > 1 and (z == z[..., :1]).all():  # a gray photo stored as RGB: its noise is one field, as gray
            z = z[..., :1]
        if deblur:
            x = (_deblur_rgb(package, z, sigma, kernel, profile, callback, calls) if _colourful(z)
                 else _deblur(package, z, [sigma] * z.shape[-1], kernel, profile, False, callback, calls))
            calls += 2 * len(context_tiles(*z.shape[:2], TILE, MARGIN))
        else:
            x = np.empty_like(z)
            for window, inner, core in context_tiles(*z.shape[:2], TILE, MARGIN):
                x[core] = denoise(z[window])[inner]
                report(callback, calls)
                calls += 1
        out.append(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).expand(channels, -1, -1))
    x_hat = torch.stack(out).to(y.dtype).to(y.device)
    x_hat = x_hat[..., (ph + 1) // 2 : (ph + 1) // 2 + H, (pw + 1) // 2 : (pw + 1) // 2 + W] if ph or pw else x_hat
    return (crop(x_hat) if deblur else x_hat).clamp(0, 1)
