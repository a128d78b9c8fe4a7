"""DPIR (plug-and-play half-quadratic splitting) with a diffusion prior's Tweedie denoiser."""

from __future__ import annotations

import math

import pytest
import torch

from restore.data import levin_kernel
from restore.operators import Blur, Denoising, Downsample, GaussianNoise, Inpainting, ValidBlur
from restore.priors import load_prior
from restore.solvers import CLASSICAL, DIFFUSION
from restore.solvers.dpir import _DataStep, noise_levels

from conftest import held_out_crops

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_noise_levels_fall_geometrically_from_sigma_max_to_sigma_y():
    levels = noise_levels(49 / 255, 2.55 / 255, 8)
    assert len(levels) == 8 and math.isclose(levels[0], 49 / 255) and math.isclose(levels[-1], 2.55 / 255)
    ratios = [b / a for a, b in zip(levels, levels[1:])]
    assert max(ratios) - min(ratios) < 1e-12 and ratios[0] < 1
    assert noise_levels(0.2, 0.01, 1) == [0.01]


class _NoSVD:
    """An operator seen without its SVD, so that the data step takes conjugate gradients."""

    def __init__(self, op):
        self.op = op

    def A(self, x):
        return self.op.A(x)

    def A_adjoint(self, y):
        return self.op.A_adjoint(y)


@pytest.mark.parametrize("make", [lambda: Blur(levin_kernel(2), GaussianNoise(0.01)),
                                  lambda: Downsample(2, "bicubic", GaussianNoise(0.01)),
                                  lambda: Inpainting.random((1, 24, 32), 0.6, seed=0)])
def test_the_spectral_data_step_solves_the_normal_equations(make):
    op = make()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 24, 32, generator=g, dtype=torch.float64)
    y = op(x, generator=g)
    z = torch.rand(1, 1, 24, 32, generator=g, dtype=torch.float64)
    rho = 0.3
    spectral = _DataStep(y, op, cg_steps=500)
    assert spectral.spectral
    out = spectral(z, rho, z)
    # (A^T A + rho I) x = A^T y + rho z, checked directly and against conjugate gradients.
    residual = op.A_adjoint(op.A(out)) + rho * out - op.A_adjoint(y) - rho * z
    assert residual.abs().max() < 1e-8
    cg = _DataStep(y, _NoSVD(op), cg_steps=500)
    assert not cg.spectral
    assert (cg(z, rho, z) - out).abs().max() < 1e-6


def test_one_step_of_denoising_is_tweedies_posterior_mean():
    prior = load_prior("gaussian")
    a = float(prior.alpha_bar[100])
    op = Denoising(GaussianNoise(math.sqrt((1 - a) / a) / 2))  # a timestep's own noise level: no interpolation
    x = prior.sample(2, generator=torch.Generator().manual_seed(0))
    y = op(x, generator=torch.Generator().manual_seed(1))
    one = DIFFUSION["dpir"](y, op, prior, steps=1)
    assert torch.allclose(one, DIFFUSION["tweedie"](y, op, prior), atol=1e-6)


def test_a_warm_start_begins_from_the_classical_estimate(monkeypatch):
    """init="tv" starts the splitting from TV's estimate: its first data step is taken from that z."""
    from restore.errors import RestoreError

    prior = load_prior("gaussian")
    op = Inpainting.random((1, 28, 28), 0.5, seed=0)
    x = prior.sample(1, generator=torch.Generator().manual_seed(0)).clamp(0, 1)
    y = op(x)
    starts = []
    step = _DataStep.__call__
    monkeypatch.setattr(_DataStep, "__call__", lambda self, z, rho, x: starts.append(z) or step(self, z, rho, x))
    warm = DIFFUSION["dpir"](y, op, prior, steps=2, init="tv")
    assert torch.allclose(starts[0], CLASSICAL["tv"](y, op, None).clamp(0, 1))
    auto = DIFFUSION["dpir"](y, op, prior, steps=2)
    assert torch.allclose(starts[2], CLASSICAL["biharmonic"](y, op, None), atol=1e-6)
    assert not torch.allclose(warm, auto)
    with pytest.raises(RestoreError, match="init must be auto or a classical solver"):
        DIFFUSION["dpir"](y, op, prior, steps=2, init="dps")


def test_a_large_hole_starts_from_tv_and_scattered_missing_pixels_from_the_biharmonic_fill():
    from restore.solvers.base import LARGE_HOLE, has_large_hole, initial_image

    scattered = Inpainting.random((3, 321, 481), 0.8, seed=0)  # the benchmark's 80% random
    assert not has_large_hole(scattered.mask)
    box = Inpainting.box((3, 64, 80), 20, 16, 2 * LARGE_HOLE + 1, 2 * LARGE_HOLE + 1)  # its centre: LARGE_HOLE + 1 away
    narrow = Inpainting.box((3, 64, 80), 20, 16, 2 * LARGE_HOLE - 1, 40)  # none farther than LARGE_HOLE
    assert has_large_hole(box.mask) and not has_large_hole(narrow.mask)
    x = torch.rand(1, 3, 64, 80, generator=torch.Generator().manual_seed(0))
    y = box(x)
    assert torch.allclose(initial_image(y, box), CLASSICAL["tv"](y, box, None).clamp(0, 1))
    assert torch.allclose(initial_image(y, box, "biharmonic"), CLASSICAL["biharmonic"](y, box, None))
    y = narrow(x)
    assert torch.allclose(initial_image(y, narrow), CLASSICAL["biharmonic"](y, narrow, None))


def test_dpir_with_the_photo_prior_beats_the_classical_deblurring_and_super_resolution():
    """On crops of photos the prior's training held out: deblurring a Levin kernel at sigma 2.55 / 255, BM3D's
    deblurring and TV are at least 0.5 dB behind; 2x super-resolution gains 1 dB over the pseudo-inverse."""
    from restore.metrics import psnr

    prior = load_prior("ddpm-photo-gray")
    x = held_out_crops(prior, channels=1, top=40, left=40, size=96, n=2)
    deblur = Blur(levin_kernel(3), GaussianNoise(2.55 / 255))
    y = deblur(x, generator=torch.Generator().manual_seed(0))
    ours = psnr(DIFFUSION["dpir"](y, deblur, prior), x).mean()
    for name in ("bm3d", "tv"):
        assert ours > psnr(CLASSICAL[name](y, deblur, None).clamp(0, 1), x).mean() + 0.5, name
    sr = Downsample(2, "bicubic")
    y = sr(x)
    assert psnr(DIFFUSION["dpir"](y, sr, prior), x).mean() > psnr(sr.A_pinv(y).clamp(0, 1), x).mean() + 1.0


def test_dpir_runs_on_a_valid_blur_without_an_svd_and_on_colour():
    prior = load_prior("ddpm-photo-gray", image_shape=(3, 40, 56))
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(0))
    op = ValidBlur(torch.ones(3, 5) / 15, GaussianNoise(0.01))
    y = op(x, generator=torch.Generator().manual_seed(1))
    out = DIFFUSION["dpir"](y, op, prior, steps=2, cg_steps=5)
    assert out.shape == x.shape and torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_on_a_real_blur_without_wrap_around_dpir_beats_tv_in_the_frame():
    """The CLI's model of a blurred photo (ValidBlur: the frame is a valid convolution of a larger scene),
    on held-out crops: DPIR (conjugate-gradient data step, edge-extended start) against TV in the frame."""
    from restore.metrics import psnr

    prior = load_prior("ddpm-photo-gray")
    x = held_out_crops(prior, channels=1, top=30, left=30, size=112, n=2)
    op = ValidBlur(levin_kernel(3), GaussianNoise(0.01))
    y = op(x, generator=torch.Generator().manual_seed(0))
    frame = op.field_of_view(x)
    ours = psnr(op.field_of_view(DIFFUSION["dpir"](y, op, prior)), frame).mean()
    tv = psnr(op.field_of_view(CLASSICAL["tv"](y, op, None)).clamp(0, 1), frame).mean()
    assert ours > tv + 0.5, (ours, tv)
