"""restore.metrics: PSNR and SSIM, one value per image."""

import math

import numpy as np
import pytest
import torch

from restore.errors import RestoreError
from restore.metrics import psnr, ssim


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_psnr_matches_hand_computation():
    ref = torch.full((2, 1, 8, 8), 0.5)
    x = ref.clone()
    x[0] += 0.1  # MSE 0.01 -> 20 dB
    x[1, :, :4] -= 0.2  # half the pixels off by 0.2: MSE 0.02
    values = psnr(x, ref)
    assert values.dtype == np.float64 and values.shape == (2,)
    np.testing.assert_allclose(values, [10 * math.log10(1 / 0.01), 10 * math.log10(1 / 0.02)], rtol=1e-5)


def test_psnr_clips_estimate_and_keeps_inf_for_identical_images():
    ref = torch.ones(3, 3, 5, 5)
    x = ref.clone()
    x[1] = 2.0  # clipped to 1: identical to ref
    x[2] = 0.9  # MSE 0.01
    values = psnr(x, ref)
    assert values[0] == math.inf and values[1] == math.inf
    assert values[2] == pytest.approx(20.0, rel=1e-5)


@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_identical_is_one_and_decreases_with_noise(channels):
    ref = _rand(4, channels, 28, 28)
    noise = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    # Image k gets noise of standard deviation 0.05 * k.
    sigma = 0.05 * torch.arange(4).view(4, 1, 1, 1)
    values = ssim(ref + sigma * noise, ref)
    assert values.dtype == np.float64 and values.shape == (4,)
    assert values[0] == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(values) < 0)
    assert 0.8 < values[-1] < 0.95  # sigma 0.15 on a uniform image of variance 1/12


def test_ssim_of_rgb_is_mean_of_channels():
    ref = _rand(1, 3, 16, 16)
    x = (ref + 0.1 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
    per_channel = [ssim(x[:, c : c + 1], ref[:, c : c + 1])[0] for c in range(3)]
    assert ssim(x, ref)[0] == pytest.approx(np.mean(per_channel), rel=1e-10)


@pytest.mark.parametrize("size", [3, 4, 5, 6])
def test_ssim_small_images(size):
    ref = _rand(2, 1, size, size + 2)
    assert ssim(ref, ref) == pytest.approx([1.0, 1.0])
    assert np.all(ssim(1 - ref, ref) < 1)


def test_ssim_too_small_raises():
    with pytest.raises(RestoreError, match="3x3"):
        ssim(torch.zeros(1, 1, 2, 8), torch.zeros(1, 1, 2, 8))


@pytest.mark.parametrize("metric", [psnr, ssim])
def test_shape_mismatch_names_both_shapes(metric):
    with pytest.raises(RestoreError, match=r"\(2, 1, 8, 8\).*\(2, 1, 8, 9\)"):
        metric(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 9))
    with pytest.raises(RestoreError, match="B, C, H, W"):
        metric(torch.zeros(8, 8), torch.zeros(8, 8))


def test_ssim_uses_skimage_7x7_window_on_28x28():
    from skimage.metrics import structural_similarity

    ref = _rand(1, 1, 28, 28)
    x = (ref + 0.1 * torch.randn(ref.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    expected = structural_similarity(ref[0, 0].double().numpy(), x[0, 0].double().numpy(), data_range=1.0)
    assert ssim(x, ref)[0] == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_of_gaussians_has_its_closed_form():
    from restore.metrics import frechet_distance

    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(20000, 3, generator=g, dtype=torch.float64) * 2 + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    # N(0, I) vs N((1, 0, 0), 4 I): |mu|^2 + tr(I + 4I - 2 * 2I) = 1 + 3 = 4, up to sampling error (~2%).
    assert frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_kernel_distance_is_unbiased_near_zero_and_grows_with_a_shift():
    from restore.metrics import kernel_distance

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(500, 8, generator=g), torch.randn(500, 8, generator=g)
    same, std = kernel_distance(a, b, subsets=20, subset_size=200, generator=g)
    shifted, _ = kernel_distance(a, b + 1.0, subsets=20, subset_size=200, generator=g)
    # Same distribution: the unbiased estimate centres on 0 (it can be negative).
    assert abs(same) < 3 * std + 1e-3 and shifted > 10 * abs(same) + 0.05


def test_standard_error_is_the_sample_deviation_over_root_n_for_tensors_arrays_and_lists():
    from restore.metrics import standard_error

    values = [1.0, 2.0, 4.0, 7.0]  # mean 3.5, squared deviations 6.25 + 2.25 + 0.25 + 12.25 = 21
    expected = math.sqrt(21 / 3) / 2  # sample variance with n - 1, over sqrt(4)
    assert standard_error(values) == pytest.approx(expected, rel=1e-12)
    assert standard_error(np.asarray(values)) == pytest.approx(expected, rel=1e-12)
    assert standard_error(torch.tensor(values, dtype=torch.float32)) == pytest.approx(expected, rel=1e-6)
    assert math.isnan(standard_error([3.0]))


def test_coverage_of_an_exact_posterior_sampler_is_its_level_for_any_number_of_samples():
    """The Gaussian prior's closed-form posterior: the truth drawn from the prior is a posterior draw given y,
    so k exact posterior samples must cover it 95% of the time, whatever k; the naive +-2 std did not."""
    from restore.metrics import coverage
    from restore.operators import GaussianNoise, Inpainting
    from restore.priors import load_prior

    prior = load_prior("gaussian")
    g = torch.Generator().manual_seed(0)
    x = prior.sample(24, generator=g, clip=False).double()  # a draw of the prior itself, not clipped
    op = Inpainting.random(prior.image_shape, 0.5, seed=0, noise=GaussianNoise(0.1))
    y = op(x.float(), generator=g)
    mean, cov = prior.posterior(y, op)
    L = torch.linalg.cholesky(cov + 1e-9 * torch.eye(cov.shape[0], dtype=cov.dtype))
    for k in (2, 4, 16):
        z = torch.randn(24, k, cov.shape[0], generator=g, dtype=torch.float64)
        samples = mean.double().reshape(24, 1, -1) + z @ L.T
        samples = samples.reshape(24, k, *prior.image_shape)
        assert abs(coverage(samples, x) - 0.95) < 0.015, k
        naive = float(((samples.mean(1) - x).abs() <= 2 * samples.std(1)).double().mean())
        if k == 4:
            assert abs(naive - 0.83) < 0.02  # what the bench reported before: an exact sampler looked narrow
    # A sampler half as wide as the posterior is caught.
    z = torch.randn(24, 4, cov.shape[0], generator=g, dtype=torch.float64)
    narrow = (mean.double().reshape(24, 1, -1) + 0.5 * z @ L.T).reshape(24, 4, *prior.image_shape)
    assert coverage(narrow, x) < 0.85
