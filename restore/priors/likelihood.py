"""Likelihoods over 8-bit pixel values, so that every family's bound is in the same bits/dim.

The pixel values k / 255, k = 0..255, are the observed data. A discretised logistic (Salimans et
al. 2017, PixelCNN++, eq. 2; Kingma et al. 2016, IAF) puts on value k the logistic mass of the bin
[k - 1/2, k + 1/2] / 255, with the two end bins extended to -inf and +inf, so the 256 masses sum
to one and log p(x) is a true discrete log-likelihood (no dequantization term).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

HALF_BIN = 0.5 / 255


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
    """log P(x) per pixel, x in {0, 1/255, ..., 1}, under a logistic(mean, exp(log_scale)) discretised
    to 256 bins; all three tensors broadcast together."""
    centered = x - mean
    inv_s = torch.exp(-log_scale)
    plus = inv_s * (centered + HALF_BIN)  # upper bin edge, standardised
    minus = inv_s * (centered - HALF_BIN)  # lower bin edge
    # 1. The end bins: log sigma(plus) for k = 0, log(1 - sigma(minus)) for k = 255.
    log_cdf_plus = plus - F.softplus(plus)
    log_sf_minus = -F.softplus(minus)
    # 2. Inner bins: log(sigma(plus) - sigma(minus)); where that difference underflows, the density
    #    at the bin centre times the bin width (1/255) is accurate instead.
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centered
    log_pdf_mid = mid - log_scale - 2 * F.softplus(mid)
    inner = torch.where(delta > 1e-5, torch.log(delta.clamp_min(1e-12)), log_pdf_mid - math.log(255))
    return torch.where(x < HALF_BIN, log_cdf_plus, torch.where(x > 1 - HALF_BIN, log_sf_minus, inner))


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Images (uint8, or floats in [0, 1]) as floats on the 256-level grid k / 255."""
    if x.dtype == torch.uint8:
        return x.float() / 255
    return (x.clamp(0, 1) * 255).round() / 255


def bits_per_dim(log_likelihood_nats: torch.Tensor, dims: int) -> torch.Tensor:
    """-log p(x) in nats per image -> bits per pixel value."""
    return -log_likelihood_nats / (dims * math.log(2))
