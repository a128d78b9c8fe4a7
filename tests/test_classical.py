"""restore.solvers.classical on real MNIST digits: each method does what it claims.

Every quality test compares a solver with the trivial answer it must beat (the zero fill, the
pseudo-inverse, the noisy measurement itself), on the first 16 MNIST test digits with a fixed noise
seed. The comment next to each threshold gives the margin measured when the test was written; the
thresholds keep about half of it, so a method that degrades to the trivial answer fails.
"""

import gzip

import numpy as np
import pytest
import torch

from conftest import missing_data
from restore import operators as O
from restore.data import default_data_root
from restore.errors import RestoreError
from restore.solvers import CLASSICAL, check_compatible, missing_capabilities

MNIST_IMAGES = default_data_root() / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"  # RESTORE_DATA is honoured
N_DIGITS = 16


def read_mnist(n):
    """The first n MNIST test digits as floats (n, 1, 28, 28) in [0, 1]."""
    try:
        from restore.data import mnist_images
    except ImportError:
        # Stand-alone IDX reader: a 16-byte header (magic, count, rows, cols), then uint8 pixels.
        with gzip.open(MNIST_IMAGES, "rb") as f:
            pixels = np.frombuffer(f.read(16 + n * 28 * 28), dtype=np.uint8, offset=16)
        return torch.from_numpy(pixels.reshape(n, 1, 28, 28).astype(np.float32) / 255)
    return mnist_images(n)[0]


@pytest.fixture(scope="module")
def digits():
    if not MNIST_IMAGES.is_file():
        missing_data("the MNIST test images", MNIST_IMAGES)
    return read_mnist(N_DIGITS)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are tiny: on a busy 2-core machine, waiting for a second thread in every FFT
    costs 10-100x more than the work itself, so the iterative solvers run on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def psnr(x_hat, x):
    """Mean over the batch of the per-image PSNR in dB, for images in [0, 1]."""
    a = x_hat.detach().double().clamp(0, 1).numpy().reshape(len(x), -1)
    b = x.detach().double().numpy().reshape(len(x), -1)
    mse = ((a - b) ** 2).mean(axis=1)
    return float(np.mean(10 * np.log10(1 / mse)))


def measure(op, x, seed=0):
    return op(x, generator=torch.Generator().manual_seed(seed))


def solve(name, y, op, **kwargs):
    return CLASSICAL[name](y, op, **kwargs)


# ---------------------------------------------------------------------------------------------
# Quality: each method beats the trivial answer by a clear margin


def test_biharmonic_inpainting_beats_zero_fill(digits):
    op = O.Inpainting.random(digits.shape, 0.7, seed=0)
    y = measure(op, digits)
    zero_fill = psnr(solve("pinv", y, op), digits)
    # Observed: 18.63 dB against 11.86 dB, a margin of 6.8 dB.
    assert psnr(solve("biharmonic", y, op), digits) > zero_fill + 3.0


@pytest.mark.parametrize("name, over_y", [("wiener", 0.5), ("richardson-lucy", 2.5)])
def test_deconvolution_beats_pinv_and_the_blurred_image(digits, name, over_y):
    op = O.Blur.gaussian(2.0, noise=O.GaussianNoise(0.05))
    y = measure(op, digits)
    x_hat = solve(name, y, op)
    # Observed: pinv 3.67 dB (noise amplified by 1/|K|), y itself 14.27 dB;
    # wiener 15.33 dB (+11.7 over pinv, +1.06 over y), richardson-lucy 19.37 dB (+15.7, +5.1).
    assert psnr(x_hat, digits) > psnr(solve("pinv", y, op), digits) + 5.0
    assert psnr(x_hat, digits) > psnr(y, digits) + over_y


def test_tv_denoising_beats_noisy_input(digits):
    op = O.Denoising(O.GaussianNoise(0.2))
    y = measure(op, digits)
    # Observed: 20.98 dB against 16.77 dB (+4.2); converged by 100 steps.
    assert psnr(solve("tv", y, op, steps=100), digits) > psnr(y, digits) + 3.0


def test_tv_super_resolution_beats_pinv(digits):
    op = O.Downsample(4, "box", noise=O.GaussianNoise(0.05))
    y = measure(op, digits)
    # Observed at 400 steps: 14.53 dB against 13.95 dB (+0.58; +0.56 after 1000 steps).
    assert psnr(solve("tv", y, op, steps=400), digits) > psnr(solve("pinv", y, op), digits) + 0.25


def test_tv_inpainting_beats_zero_fill(digits):
    op = O.Inpainting.random(digits.shape, 0.7, seed=0)
    y = measure(op, digits)
    # Observed at 200 steps: 15.16 dB against 11.86 dB (+3.3; converged, 15.17 dB at 1000).
    assert psnr(solve("tv", y, op, steps=200), digits) > psnr(solve("pinv", y, op), digits) + 2.0


def test_tv_compressed_sensing_beats_pinv(digits):
    op = O.CompressedSensing(300, digits.shape[1:], seed=0, noise=O.GaussianNoise(0.01))
    y = measure(op, digits)
    # Observed at 400 steps: 40.58 dB against 13.44 dB (+27): 300 measurements of a 784-pixel
    # digit leave a 484-dimensional null space that the minimum-norm solution fills with zeros.
    assert psnr(solve("tv", y, op, steps=400), digits) > psnr(solve("pinv", y, op), digits) + 13.0


def test_bicubic_is_close_to_pinv_for_box_downsampling(digits):
    op = O.Downsample(4, "box", noise=O.GaussianNoise(0.05))
    y = measure(op, digits)
    x_hat = solve("bicubic", y, op)
    assert x_hat.shape == digits.shape
    # Observed: 14.49 dB against 13.95 dB (the pinv of a box filter is pixel replication).
    assert abs(psnr(x_hat, digits) - psnr(solve("pinv", y, op), digits)) < 1.0


# ---------------------------------------------------------------------------------------------
# Contract: shape, range, determinism, callbacks

CONTRACT_CASES = [
    ("pinv", lambda s: O.compose(O.Blur.gaussian(1.0), O.Downsample(2, noise=O.GaussianNoise(0.05))), {}),
    ("pinv", lambda s: O.CompressedSensing(200, s[1:], noise=O.GaussianNoise(0.05)), {}),
    ("bicubic", lambda s: O.Downsample(2, "bicubic", noise=O.GaussianNoise(0.1)), {}),
    ("biharmonic", lambda s: O.Inpainting.centre_box(s, 14, noise=O.GaussianNoise(0.1)), {}),
    ("wiener", lambda s: O.Blur.motion(9, 0.5, seed=0, noise=O.GaussianNoise(0.1)), {}),
    ("wiener", lambda s: O.Blur.gaussian(1.0, noise=O.PoissonNoise(50.0)), {}),
    ("richardson-lucy", lambda s: O.Blur.gaussian(2.0, noise=O.PoissonNoise(50.0)), {"steps": 20}),
    ("tv", lambda s: O.Denoising(O.GaussianNoise(0.3)), {"steps": 30}),
    ("tv", lambda s: O.Downsample(4, noise=O.GaussianNoise(0.1)), {"steps": 30}),
    ("lasso", lambda s: O.CompressedSensing(200, s[1:], noise=O.GaussianNoise(0.1)), {"steps": 30}),
    ("lasso", lambda s: O.Blur.gaussian(1.0, noise=O.GaussianNoise(0.05)), {"steps": 30, "basis": "pixel"}),
]
CONTRACT_IDS = ["pinv-composition", "pinv-cs", "bicubic", "biharmonic", "wiener-motion", "wiener-poisson",
                "richardson-lucy", "tv-denoise", "tv-superres", "lasso-cs", "lasso-pixel-blur"]


@pytest.mark.parametrize("name, make, kwargs", CONTRACT_CASES, ids=CONTRACT_IDS)
def test_output_in_range_with_image_shape_and_deterministic(digits, name, make, kwargs):
    x = digits[:4]
    op = make(x.shape)
    y = measure(op, x)
    first = solve(name, y, op, **kwargs)
    assert first.shape == x.shape and first.dtype == x.dtype
    assert torch.isfinite(first).all() and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, solve(name, y, op, **kwargs))
    assert torch.equal(y, measure(op, x)), "the solver must not change its measurement in place"


@pytest.mark.parametrize("name", ["richardson-lucy", "tv"])
def test_iterative_solvers_report_every_step(digits, name):
    x = digits[:2]
    op = O.Blur.gaussian(1.0, noise=O.GaussianNoise(0.05))
    y = measure(op, x)
    seen = []
    final = solve(name, y, op, steps=7, callback=lambda info: seen.append((info["i"], info["x"].shape)))
    assert seen == [(k, x.shape) for k in range(7)]
    assert final.shape == x.shape


# ---------------------------------------------------------------------------------------------
# Compatibility


def _usable(message):
    """The solver names listed after 'solvers that can:' in a compatibility error."""
    return {name.strip() for name in message.split("solvers that can:")[1].split(",")}


def test_wiener_refuses_inpainting():
    op = O.Inpainting.random((1, 1, 28, 28), 0.5)
    with pytest.raises(RestoreError) as info:
        check_compatible("wiener", CLASSICAL["wiener"], op, CLASSICAL)
    message = str(info.value)
    assert "\n" not in message and "otf" in message
    usable = _usable(message)
    assert {"biharmonic", "tv", "pinv"} <= usable and "wiener" not in usable


def test_biharmonic_refuses_blur():
    op = O.Blur.gaussian(2.0)
    with pytest.raises(RestoreError) as info:
        check_compatible("biharmonic", CLASSICAL["biharmonic"], op, CLASSICAL)
    usable = _usable(str(info.value))
    assert {"wiener", "richardson-lucy", "tv"} <= usable and "biharmonic" not in usable


def test_compatible_pairs_pass():
    check_compatible("wiener", CLASSICAL["wiener"], O.Blur.gaussian(2.0), CLASSICAL)
    check_compatible("bicubic", CLASSICAL["bicubic"], O.Downsample(4), CLASSICAL)
    assert missing_capabilities(CLASSICAL["bicubic"], O.Blur.gaussian(2.0)) == ["factor"]


@pytest.mark.parametrize(
    "op",
    [
        O.Inpainting.random((1, 1, 28, 28), 0.7),
        O.Blur.gaussian(2.0, noise=O.PoissonNoise(30.0)),
        O.Downsample(4, "bicubic"),
        O.CompressedSensing(100, (1, 28, 28)),
        O.Denoising(O.GaussianNoise(0.2)),
        O.compose(O.Blur.gaussian(1.0), O.Downsample(2)),
    ],
    ids=["inpaint", "deblur-poisson", "superres", "cs", "denoise", "composition"],
)
def test_tv_handles_every_operator(op):
    assert missing_capabilities(CLASSICAL["tv"], op) == []
    check_compatible("tv", CLASSICAL["tv"], op, CLASSICAL)


# ---------------------------------------------------------------------------------------------
# Lasso and its Haar basis


def test_haar_transform_is_orthonormal_and_inverted():
    from restore.operators.functional import haar2d, haar_levels, ihaar2d

    assert haar_levels(28, 28) == 2 and haar_levels(32, 32) == 3 and haar_levels(7, 7) == 0
    x = torch.randn(3, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c = haar2d(x, 2)
    assert torch.allclose(ihaar2d(c, 2), x, atol=1e-12)
    assert torch.allclose(c.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), atol=1e-12)  # Parseval
    # A constant image has one nonzero coefficient per 7x7 coarse pixel and no details.
    flat = haar2d(torch.ones(1, 1, 28, 28, dtype=torch.float64), 2)
    assert torch.allclose(flat[..., :7, :7], torch.full((7, 7), 4.0, dtype=torch.float64))
    assert flat[..., 7:, :].abs().max() < 1e-12 and flat[..., :7, 7:].abs().max() < 1e-12


@pytest.mark.parametrize("basis", ["pixel", "wavelet"])
def test_lasso_recovers_a_sparse_image_from_few_measurements(basis):
    from restore.operators.functional import ihaar2d

    g = torch.Generator().manual_seed(0)
    coef = torch.zeros(2, 1, 28, 28)
    # 10 nonzero values per image: bright pixels, or (wavelet) 4x4 blocks from the 7x7 coarse band.
    side = 28 if basis == "pixel" else 7
    idx = torch.stack([torch.randperm(side * side, generator=g)[:10] for _ in range(2)])
    rows, cols = idx // side, idx % side
    coef[torch.arange(2)[:, None], 0, rows, cols] = torch.rand(2, 10, generator=g) + 0.5
    x = coef if basis == "pixel" else ihaar2d(coef, 2)  # a coarse coefficient c is a 4x4 block of value c / 4
    x = x / x.amax((1, 2, 3), keepdim=True)
    op = O.CompressedSensing(100, (1, 28, 28), seed=0)
    y = op.A(x)
    err = lambda v: float((v - x).square().mean())  # noqa: E731
    lasso = CLASSICAL["lasso"](y, op, steps=1000, weight=1e-3, basis=basis)
    pinv = CLASSICAL["pinv"](y, op)
    other = CLASSICAL["lasso"](y, op, steps=1000, weight=1e-3, basis="wavelet" if basis == "pixel" else "pixel")
    # 100 measurements of a 10-sparse image: l1 recovery in the right basis is near exact
    # (measured MSE 3e-8 pixel, 1e-5 wavelet), while the minimum-norm solution (6e-3, 7e-2) and
    # the lasso in the other basis (6e-3, 9e-2) are not. A 100x margin.
    assert err(lasso) < err(pinv) / 100 and err(lasso) < err(other) / 100, (err(lasso), err(pinv), err(other))


def test_tv_weight_follows_the_size_of_x_not_of_y():
    # A 256x256 photo downsampled 4x gives a 64x64 y: it is a photograph (weight 6), not a digit (weight 2).
    op = O.Downsample(4, "box", noise=O.GaussianNoise(0.05))
    y = op(torch.rand(1, 1, 256, 256, generator=torch.Generator().manual_seed(0)))
    default = CLASSICAL["tv"](y, op, None, steps=3)
    assert torch.allclose(default, CLASSICAL["tv"](y, op, None, steps=3, weight=6.0))
    assert not torch.allclose(default, CLASSICAL["tv"](y, op, None, steps=3, weight=2.0))


def test_tv_admm_through_the_svd_minimises_its_objective(digits, monkeypatch):
    """Super-resolution's TV runs ADMM with the SVD's closed-form prox. On x's own periodic domain (no
    margin) it minimises 1/2 ||A x - y||^2 + lam TV_periodic(x): 100 steps reach a lower value of that than
    3,000 Chambolle-Pock iterations (which minimise the Neumann TV instead), and as low as 1,000 steps.
    Measured: 3.823 against 3.872 and 3.822; with the prox at half its weight, 3.917."""
    from restore.solvers import classical

    op = O.Downsample(4, "box", noise=O.GaussianNoise(0.05))
    y = measure(op, digits)
    lam = 2.0 * 0.05**2  # weight 2 for digits, times sigma_y^2

    def objective(x):
        d = torch.stack((torch.roll(x, -1, -2) - x, torch.roll(x, -1, -1) - x), 2)
        return float(0.5 * (op.A(x) - y).square().sum() + lam * d.norm(dim=2).sum())

    grown = classical._svd_domain
    monkeypatch.setattr(classical, "_svd_domain", lambda y, operator: grown(y, operator, margin=0))
    admm, admm_long = CLASSICAL["tv"](y, op, None), CLASSICAL["tv"](y, op, None, steps=1000)
    monkeypatch.setattr(classical, "_svd_domain", lambda y, operator: None)  # the Chambolle-Pock path
    chambolle_pock = CLASSICAL["tv"](y, op, None, steps=300)
    assert objective(admm) < 0.995 * objective(chambolle_pock), (objective(admm), objective(chambolle_pock))
    assert objective(admm) < 1.001 * objective(admm_long), (objective(admm), objective(admm_long))


def test_tv_couples_colour_channels_and_keeps_a_gray_image_stored_as_rgb_gray():
    """TV's default on colour is the vectorial (channel-coupled) TV with weight 6 sqrt(3): a gray image in three
    equal channels is restored as its gray version (within 0.01 dB; ADMM's penalty follows lam, so the
    iterates differ slightly), and on a colour crop of a training photo with sigma 25 noise the coupled
    TV beats each channel's own (measured 25.88 against 25.23 dB on this crop). Bad values are one line.
    Also the Chambolle-Pock path (a composition) runs coupled."""
    from restore import io, metrics
    from restore.data import natural_folder

    files = sorted(p for p in natural_folder("bsds400").iterdir() if p.suffix in (".jpg", ".png"))
    x = io.read_image(files[1])[0][..., :96, :96]
    gray = x.mean(1, keepdim=True)
    op = O.Denoising(O.GaussianNoise(25 / 255))
    y = op(gray, generator=torch.Generator().manual_seed(0))
    alone, stored = CLASSICAL["tv"](y, op, None), CLASSICAL["tv"](y.expand(-1, 3, -1, -1), op, None)
    assert abs(float(metrics.psnr(stored[:, :1], gray)[0]) - float(metrics.psnr(alone, gray)[0])) < 0.01
    assert torch.equal(stored[:, 0], stored[:, 2])
    y = op(x, generator=torch.Generator().manual_seed(0))
    coupled = float(metrics.psnr(CLASSICAL["tv"](y, op, None), x)[0])
    separate = float(metrics.psnr(CLASSICAL["tv"](y, op, None, channels="separate"), x)[0])
    assert coupled > separate + 0.3, (coupled, separate)
    with pytest.raises(RestoreError, match="coupled or separate"):
        CLASSICAL["tv"](y, op, None, channels="vector")
    composed = O.compose(O.Blur.gaussian(1.0), O.Downsample(2, noise=O.GaussianNoise(0.05)))
    small = x[..., :32, :32]
    estimate = CLASSICAL["tv"](composed(small, generator=torch.Generator().manual_seed(0)), composed, None, steps=5)
    assert estimate.shape == small.shape and torch.isfinite(estimate).all()
