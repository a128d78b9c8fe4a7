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

#: Deblurring cannot be tiled that way (the package's regularised inverses are global filters of the whole
#: image), and the package's peak memory grows by about 700 bytes per pixel of the image it deblurs, one
#: channel at a time: 742 at 1024x1024 and 700 at 1536x1536 (``benchmarks/bm3d_memory.py``,
#: ``benchmarks/results/bm3d_memory.md``), about 8 GiB for a 4000x3000 photo. An image whose estimate exceeds
#: the memory available is refused before the package starts.
DEBLUR_BYTES_PER_PIXEL = 750


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


def _tile_count(y, operator, steps, hyperparameters) -> int:
    """Callbacks of one run: one per tile of each image when denoising (:func:`context_tiles`), one per
    image when deblurring, and one more for TV's first estimate of a valid blur."""
    H, W = y.shape[-2:]
    if operator.kernel.numel() > 1:
        return y.shape[0] + hasattr(operator, "grow")
    return y.shape[0] * len(context_tiles(H, W, TILE, MARGIN))


@progress(_tile_count)
@requires("kernel", "otf", noise=("gaussian",))
def bm3d(y, operator, prior=None, *, steps=None, generator=None, callback: Callback = None, profile: str = "np"):
    """BM3D denoising (CBM3D in the opponent colour space for RGB) or, for a blur, BM3D deblurring per channel.

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
        (top, left), (bottom, right), _ = periodic_margins(y.shape[-2:], operator)
        h, w = max(y.shape[-2] + top + bottom, MIN_SIZE), max(y.shape[-1] + left + right, MIN_SIZE)
        check_allocation(DEBLUR_BYTES_PER_PIXEL * h * w, f"BM3D deblurring of a {w}x{h} image (the package deblurs "
                         "it whole)", "deblur a crop of it, or choose another solver (--solver tv, or a learned prior)")
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

    def denoise(z):  # (h, w, C) -> (h, w, C)
        if z.shape[-1] == 3:
            return package.bm3d_rgb(z, sigma, profile=profile)
        return np.asarray(package.bm3d(z[..., 0], sigma, profile=profile)).reshape(z.shape)

    out, calls = [], int(deblur and valid)
    for image in y.detach().cpu().double().numpy():  # (C, H, W)
        z = image.transpose(1, 2, 0)  # (H, W, C)
        if deblur:
            channels = [package.bm3d_deblurring(z[..., c : c + 1], sigma, kernel, profile=profile) for c in range(z.shape[-1])]
            x = np.stack([np.asarray(c).reshape(z.shape[:2]) for c in channels], -1)
            report(callback, calls)
            calls += 1
        else:
            x = np.empty_like(z)
            for window, inner, core in context_tiles(*z.shape[:2], TILE, MARGIN):
                x[core] = denoise(z[window])[inner]
                report(callback, calls)
                calls += 1
        out.append(torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))))
    x_hat = torch.stack(out).to(y.dtype).to(y.device)
    x_hat = x_hat[..., (ph + 1) // 2 : (ph + 1) // 2 + H, (pw + 1) // 2 : (pw + 1) // 2 + W] if ph or pw else x_hat
    return (crop(x_hat) if deblur else x_hat).clamp(0, 1)
