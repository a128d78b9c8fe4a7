"""Image quality metrics, one value per image of a batch (skimage.metrics, data_range 1)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .errors import RestoreError


def _per_image(x: torch.Tensor, ref: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Both batches as float64 numpy (B, H, W, C), x clipped to [0, 1]; shapes checked."""
    if x.shape != ref.shape:
        raise RestoreError(f"cannot compare images of shape {tuple(x.shape)} and {tuple(ref.shape)}")
    if x.ndim != 4:
        raise RestoreError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
    # Only the estimate is clipped: the reference is the ground truth as given.
    x = x.detach().to("cpu", torch.float64).clamp(0, 1)
    ref = ref.detach().to("cpu", torch.float64)
    return x.permute(0, 2, 3, 1).numpy(), ref.permute(0, 2, 3, 1).numpy()  # (B, H, W, C)


def standard_error(values) -> float:
    """Standard error of the mean of per-item values (a tensor, array or list): the sample standard
    deviation (with n - 1) over sqrt(n); nan for fewer than two values."""
    if isinstance(values, torch.Tensor):
        values = values.detach().to("cpu", torch.float64).numpy()
    v = np.asarray(values, dtype=np.float64).ravel()
    return float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else math.nan


#: How ``coverage`` is computed, recorded with every benchmark cell that reports it.
COVERAGE_RULE = "student-t predictive interval, 95%"


def coverage(samples: torch.Tensor, ref: torch.Tensor, level: float = 0.95) -> float:
    """The share of pixels of ``ref`` (B, C, H, W) inside the ``level`` predictive interval that the
    ``samples`` (B, k, C, H, W) give: mean +- t_{k-1} s sqrt(1 + 1/k), with s the samples' standard
    deviation and t_{k-1} the (1 + level) / 2 quantile of Student's t with k - 1 degrees of freedom.

    If the samples and the truth are k + 1 independent draws from one Gaussian (a sampler of the exact
    posterior), (ref - mean) / (s sqrt(1 + 1/k)) follows Student's t with k - 1 degrees of freedom, so
    the expected coverage is exactly ``level`` for any k >= 2. The naive mean +- 2 s would read 83% for
    that exact sampler with k = 4 samples (and 93% with k = 32), mistaking the small sample for a
    narrow posterior. Pixels every sample and the truth agree on (s = 0) count as covered."""
    from scipy.stats import t as student_t

    k = samples.shape[1]
    if k < 2:
        raise RestoreError("coverage needs at least two samples per image")
    if samples.shape[:1] + samples.shape[2:] != ref.shape:
        raise RestoreError(f"samples of shape {tuple(samples.shape)} do not match images of shape {tuple(ref.shape)}")
    samples, ref = samples.detach().double(), ref.detach().to(samples.device, torch.float64)
    half = float(student_t.ppf((1 + level) / 2, k - 1)) * math.sqrt(1 + 1 / k) * samples.std(1)
    return float(((samples.mean(1) - ref).abs() <= half).double().mean())


def psnr(x: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    """Peak signal-to-noise ratio in dB of each image of x against ref; inf where they are equal."""
    from skimage.metrics import peak_signal_noise_ratio

    x, ref = _per_image(x, ref)
    # Identical images have zero error: 10 log10(1 / 0) is inf, which is the right answer.
    with np.errstate(divide="ignore"):
        values = [peak_signal_noise_ratio(r, e, data_range=1.0) for e, r in zip(x, ref)]
    return np.asarray(values, dtype=np.float64).reshape(len(x))


def ssim(x: torch.Tensor, ref: torch.Tensor) -> np.ndarray:
    """Structural similarity (Wang et al., 2004) of each image of x against ref, 7x7 uniform window."""
    from skimage.metrics import structural_similarity

    x, ref = _per_image(x, ref)
    height, width, channels = x.shape[1:]
    side = min(height, width)
    # The window must be odd and fit the image; a 1-pixel window has no sample variance.
    win_size = 7 if side >= 7 else side - (1 - side % 2)
    if win_size < 3:
        raise RestoreError(f"SSIM needs images of at least 3x3 pixels, got {height}x{width}")
    # Gray images go to skimage as (B, H, W); colour as (B, H, W, C) with channel_axis.
    channel_axis = -1 if channels > 1 else None
    if channels == 1:
        x, ref = x[..., 0], ref[..., 0]
    values = [
        structural_similarity(r, e, data_range=1.0, win_size=win_size, channel_axis=channel_axis)
        for e, r in zip(x, ref)
    ]
    return np.asarray(values, dtype=np.float64).reshape(len(x))


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to two feature sets (N, d) and (M, d):
    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) (Heusel et al. 2017, FID, on given features).

    The matrix square root is taken as sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2))), symmetric and real."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    lam, Q = torch.linalg.eigh(cov_a)
    root_a = (Q * lam.clamp_min(0).sqrt()) @ Q.T
    middle = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * middle)


def kernel_distance(a: torch.Tensor, b: torch.Tensor, *, subsets: int = 10, subset_size: int = 1000,
                    generator: torch.Generator | None = None) -> tuple[float, float]:
    """KID (Binkowski et al. 2018): the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3, averaged
    over random subsets; returns (mean, standard deviation over subsets). Unbiased at small sizes, unlike FID."""
    a, b = a.double(), b.double()
    d = a.shape[1]
    m = min(subset_size, len(a), len(b))
    values = []
    for _ in range(subsets):
        x = a[torch.randperm(len(a), generator=generator)[:m]]
        y = b[torch.randperm(len(b), generator=generator)[:m]]
        kxx, kyy, kxy = ((x @ x.T) / d + 1) ** 3, ((y @ y.T) / d + 1) ** 3, ((x @ y.T) / d + 1) ** 3
        # Unbiased: the diagonals of k(x, x) and k(y, y) are left out.
        values.append(float((kxx.sum() - kxx.trace()) / (m * (m - 1)) + (kyy.sum() - kyy.trace()) / (m * (m - 1))
                            - 2 * kxy.mean()))
    t = torch.tensor(values)
    return float(t.mean()), float(t.std()) if len(values) > 1 else 0.0
