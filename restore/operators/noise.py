"""Noise models: the ``noise`` in y = noise(A(x))."""

from __future__ import annotations

import math

import torch

from ..errors import RestoreError


def _check_number(name: str, value: float, *, positive: bool = False, low: float = 0.0, high: float = math.inf) -> float:
    """A finite, non-negative (or strictly positive) float within [low, high], or a one-line error."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise RestoreError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        need = "a positive" if positive else "a non-negative"
        raise RestoreError(f"{name} must be {need} finite number, got {value}")
    if not low <= value <= high:
        raise RestoreError(f"{name} must lie in [{low:g}, {high:g}] (images are in [0, 1]), got {value:g}")
    return value


class Noise(torch.nn.Module):
    """Base class: ``forward(y, generator=None)`` draws a noisy measurement around y."""

    kind = "none"

    def forward(self, y: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> dict:
        raise NotImplementedError


class GaussianNoise(Noise):
    """Additive white Gaussian noise of standard deviation ``sigma`` (sigma_y); 0 means noiseless."""

    kind = "gaussian"

    def __init__(self, sigma: float = 0.0):
        super().__init__()
        # Above 1000 times the image range the noise leaves nothing to restore (and 1e308 overflows).
        self.sigma = _check_number("noise sigma", sigma, high=1e3)

    def forward(self, y, *, generator=None):
        if self.sigma == 0:
            return y
        return y + self.sigma * torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)

    def spec(self):
        return {"type": "gaussian", "sigma": self.sigma}

    def extra_repr(self):
        return f"sigma={self.sigma}"


class PoissonNoise(Noise):
    """Shot noise: y = Poisson(gain * A(x)) / gain, so ``gain`` photons are counted at intensity 1.

    The variance at intensity v is v / gain; a larger gain means less noise.
    """

    kind = "poisson"

    def __init__(self, gain: float = 100.0):
        super().__init__()
        # gain * intensity is a Poisson rate: float32 holds it up to 1e12 exactly enough; below 1e-6 a
        # single photon is a value of a million.
        self.gain = _check_number("Poisson gain", gain, positive=True, low=1e-6, high=1e12)

    def forward(self, y, *, generator=None):
        rate = (y.clamp_min(0) * self.gain).to(torch.float64 if y.dtype == torch.float64 else torch.float32)
        return (torch.poisson(rate, generator=generator) / self.gain).to(y.dtype)

    def spec(self):
        return {"type": "poisson", "gain": self.gain}

    def extra_repr(self):
        return f"gain={self.gain}"


def estimate_sigma(y: torch.Tensor) -> float:
    """Gaussian noise level of an image (B, C, H, W), by the median absolute deviation of its finest
    diagonal Haar wavelet coefficients: sigma = median(|HH|) / 0.6745 (Donoho & Johnstone 1994)."""
    H, W = y.shape[-2:]
    if H < 2 or W < 2:
        raise RestoreError(f"cannot estimate noise on a {W}x{H} image: pass --noise SIGMA")
    t = y[..., : H // 2 * 2, : W // 2 * 2].double()
    # Orthonormal 2-D Haar detail: the image content cancels, white noise keeps its variance.
    hh = (t[..., 0::2, 0::2] - t[..., 0::2, 1::2] - t[..., 1::2, 0::2] + t[..., 1::2, 1::2]) / 2
    return float(hh.abs().median() / 0.6745)


def noise_from_spec(spec: dict | None) -> Noise:
    """Rebuild a noise model from its :meth:`Noise.spec` dictionary."""
    if spec is None:
        return GaussianNoise(0.0)
    kind = spec.get("type")
    if kind == "gaussian":
        _only_keys(spec, {"type", "sigma"}, "noise")
        return GaussianNoise(spec.get("sigma", 0.0))
    if kind == "poisson":
        _only_keys(spec, {"type", "gain"}, "noise")
        if "gain" not in spec:
            raise RestoreError("noise spec of type 'poisson' is missing the field 'gain'")
        return PoissonNoise(spec["gain"])
    raise RestoreError(f"unknown noise type {kind!r} (known: gaussian, poisson)")


def _only_keys(spec: dict, allowed: set, what: str) -> None:
    """Refuse unknown fields instead of silently dropping them."""
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise RestoreError(f"{what} spec has unknown field(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
