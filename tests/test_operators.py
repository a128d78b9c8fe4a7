"""restore.operators: properties every operator must have, checked over one registry.

Each property runs on every operator of :func:`registry` (gray and RGB, batch 2, float64 so the
tolerances can be tight); the SVD properties run on the :class:`SVDOperator` members of the same
registry, and the dense-matrix comparisons on the registry of a small 8x8 gray image.
"""

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from restore import operators as O
from restore.errors import RestoreError
from restore.operators import functional as Fn
from restore.operators.base import conjugate_gradient

GRAY = (2, 1, 16, 16)
RGB = (2, 3, 16, 16)
SMALL = (1, 1, 8, 8)  # small enough for an explicit (m, n) matrix

# A kernel that is neither symmetric nor odd-sized: a wrong centre or a flip changes A.
CUSTOM_KERNEL = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0], [0.0, 0.0, 4.0]])


def registry(shape):
    """Every operator, as pytest params (shape, operator) with ids like 'blur-motion-16x16x3'."""
    B, C, H, W = shape
    n = C * H * W
    mask = torch.rand(C, H, W, generator=torch.Generator().manual_seed(3)) > 0.3  # per-channel mask
    operators = {
        "inpaint-box": O.Inpainting.box(shape, 3, 2, 5, 4),
        "inpaint-centre": O.Inpainting.centre_box(shape, H // 2),
        "inpaint-random": O.Inpainting.random(shape, 0.5, seed=0, noise=O.PoissonNoise(50.0)),
        "inpaint-mask": O.Inpainting(mask),
        "blur-gaussian": O.Blur.gaussian(1.0, noise=O.GaussianNoise(0.05)),
        "blur-motion": O.Blur.motion(7, 0.5, seed=1),
        "blur-custom": O.Blur(CUSTOM_KERNEL),
        "blur-valid-custom": O.ValidBlur(CUSTOM_KERNEL, noise=O.GaussianNoise(0.05)),
        "blur-valid-motion": O.ValidBlur(O.functional.motion_kernel(5, 0.5, seed=2)),
        "superres-box-2": O.Downsample(2, "box"),
        "superres-box-4": O.Downsample(4, "box", noise=O.GaussianNoise(0.05)),
        "superres-bicubic-2": O.Downsample(2, "bicubic"),
        "superres-bicubic-4": O.Downsample(4, "bicubic"),
        "cs-under": O.CompressedSensing(n // 4, shape[1:], seed=0),
        "cs-over": O.CompressedSensing(n + n // 2, shape[1:], seed=1, noise=O.GaussianNoise(0.01)),
        "denoise": O.Denoising(O.GaussianNoise(0.2)),
        "composition": O.compose(O.Blur.gaussian(1.0), O.Downsample(2, noise=O.GaussianNoise(0.05))),
    }
    tag = f"{H}x{W}x{C}"
    return [pytest.param(shape, op, id=f"{name}-{tag}") for name, op in operators.items()]


def svd_only(params):
    return [p for p in params if isinstance(p.values[1], O.SVDOperator)]


OPERATORS = registry(GRAY) + registry(RGB)
SVD_OPERATORS = svd_only(OPERATORS)
SMALL_OPERATORS = registry(SMALL)
SMALL_SVD_OPERATORS = svd_only(SMALL_OPERATORS)


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def dot(a, b):
    """Real inner product per batch item: (B, ...) x (B, ...) -> (B,)."""
    return (a * b).flatten(1).sum(1)


def norms(a):
    return a.flatten(1).norm(dim=1)  # (B,)


def dense_matrix(op, shape):
    """The explicit (m, n) matrix of A, column j = A applied to the j-th standard basis image."""
    n = math.prod(shape[1:])
    basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape[1:])  # (n, C, H, W)
    return op.A(basis).reshape(n, -1).T


def operator_norm(op, x):
    """||A||: the largest singular value, from the SVD where there is one."""
    if isinstance(op, O.SVDOperator):
        return float(op.singular_values(x).max())
    return op.norm_squared(x, iters=100) ** 0.5


# ---------------------------------------------------------------------------------------------
# Linear-operator properties, every operator


@pytest.mark.parametrize("shape, op", OPERATORS)
def test_adjointness(shape, op):
    x = randn(*shape, seed=1)
    y = randn(*op.measurement_shape(shape), seed=2)
    lhs, rhs = dot(op.A(x), y), dot(x, op.A_adjoint(y))
    assert torch.all((lhs - rhs).abs() <= 1e-10 * norms(op.A(x)) * norms(y))


@pytest.mark.parametrize("shape, op", OPERATORS)
def test_measurement_shape(shape, op):
    op.check_input(shape)
    assert tuple(op.measurement_shape(shape)) == tuple(op.A(randn(*shape)).shape)
    y = op(randn(*shape), generator=torch.Generator().manual_seed(0))  # with noise
    assert tuple(y.shape) == tuple(op.measurement_shape(shape))


@pytest.mark.parametrize("shape, op", OPERATORS)
def test_nonnegative_operators_have_no_negative_entry(shape, op):
    # Richardson-Lucy needs it: with a negative entry (bicubic's lobes, a Gaussian matrix) it returned NaN.
    dense = dense_matrix(op, (1, *shape[1:])) if math.prod(shape[1:]) <= 768 else None
    if getattr(op, "nonnegative", False):
        probe = torch.zeros((1, *shape[1:]), dtype=torch.float64)
        probe[..., shape[-2] // 2, shape[-1] // 2] = 1.0  # one column of A
        assert op.A(probe).min() > -1e-9
        if dense is not None:
            assert dense.min() > -1e-9
    elif dense is not None:
        assert dense.min() < -1e-9, "has no negative entry: declare nonnegative = True"


@pytest.mark.parametrize("shape, op", OPERATORS)
def test_input_shape_inverts_measurement_shape(shape, op):
    # What a prior of images of any size needs: the size of x from the measurement alone.
    assert tuple(op.input_shape(op.measurement_shape(shape))) == tuple(shape)


@pytest.mark.parametrize("shape, op", OPERATORS)
def test_linearity(shape, op):
    x1, x2 = randn(*shape, seed=1), randn(*shape, seed=2)
    torch.testing.assert_close(op.A(2.5 * x1 - 0.7 * x2), 2.5 * op.A(x1) - 0.7 * op.A(x2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, op", OPERATORS)
def test_pinv_reproduces_measurement_up_to_cutoff(shape, op):
    # With A = U diag(s) V^T, A A^+ A x - A x = -U (s 1[s <= rcond max s] V^T x): only coefficients
    # whose singular value is cut survive, each scaled by at most rcond * max(s), so the residual
    # is at most rcond * ||A|| * ||x||. The soft (Tikhonov) cutoff of the CG pseudo-inverse, with
    # eps = rcond^2 ||A||^2, leaves s eps / (s^2 + eps) <= sqrt(eps) / 2 per coefficient: the same bound.
    rcond = 1e-3
    x = randn(*shape, seed=1)
    y = op.A(x)
    residual = norms(op.A(op.A_pinv(y, rcond=rcond)) - y)
    bound = rcond * operator_norm(op, x) * norms(x)
    assert torch.all(residual <= bound), (residual, bound)
    # On a random x the bound is small next to the measurement itself.
    assert torch.all(residual <= 1e-2 * norms(y))


@pytest.mark.parametrize("shape, op", OPERATORS)
def test_pinv_of_zero_is_zero_in_a_batch(shape, op):
    # A blank measurement next to a normal one: each item is solved on its own (no 0/0 in CG). Alone, an
    # item's answer may differ by the rounding of a batched FFT, which conjugate gradients, stopped at a
    # residual of 1e-6 on an ill-conditioned system, can amplify: up to about 1e-5 of its norm, not more.
    y = randn(*op.measurement_shape(shape), seed=1)
    y[0] = 0
    x = op.A_pinv(y)
    assert torch.isfinite(x).all() and torch.all(x[0] == 0)
    alone = op.A_pinv(y[1:])
    assert torch.all(norms(x[1:] - alone) <= 1e-5 * norms(alone))


@pytest.mark.parametrize("shape, op", SVD_OPERATORS)
def test_pinv_exact_without_cutoff(shape, op):
    x = randn(*shape, seed=1)
    s = op.singular_values(x)
    # All singular values on the range are well above 0, so rcond = 0 inverts exactly there.
    assert s[s > 0].min() > 1e-6 * s.max()
    y = op.A(x)
    assert torch.all(norms(op.A(op.A_pinv(y, rcond=0.0)) - y) <= 1e-8 * norms(y))


@pytest.mark.parametrize("shape, op", SVD_OPERATORS)
def test_pinv_lies_in_row_space(shape, op):
    # The minimum-norm solution has no component on the null space: V(1[s > 0] V^T x) = x.
    x_hat = op.A_pinv(randn(*op.measurement_shape(shape), seed=1), rcond=1e-3)
    s = op.singular_values(x_hat)
    projected = op.V((s > 0) * op.V_adjoint(x_hat))
    torch.testing.assert_close(projected, x_hat, rtol=0, atol=1e-12 * float(x_hat.abs().max()))


# ---------------------------------------------------------------------------------------------
# SVD properties, every SVDOperator


@pytest.mark.parametrize("shape, op", SVD_OPERATORS)
def test_svd_reconstructs_A_and_adjoint(shape, op):
    x = randn(*shape, seed=1)
    y = randn(*op.measurement_shape(shape), seed=2)
    s = op.singular_values(x)
    assert s.shape == shape[1:] and s.dtype == x.dtype and torch.all(s >= 0)
    torch.testing.assert_close(op.U(s * op.V_adjoint(x)), op.A(x), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(op.V(s * op.U_adjoint(y)), op.A_adjoint(y), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape, op", SVD_OPERATORS)
def test_svd_factors_are_orthogonal(shape, op):
    x = randn(*shape, seed=1)
    z = op.V_adjoint(x)
    assert z.shape == x.shape
    # V is square: V V^T = I, and ||V^T x|| = ||x|| (Parseval for the unitary DFT of Blur).
    torch.testing.assert_close(op.V(z), x, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(norms(z.abs()), norms(x), rtol=1e-12, atol=0)
    if not z.is_complex():
        # Real V: V^T V = I on any real z too.
        w = randn(*shape, seed=2)
        torch.testing.assert_close(op.V_adjoint(op.V(w)), w, rtol=1e-10, atol=1e-12)
    # U^T U = I on the support s > 0 (z = V^T x is a valid spectral vector, Hermitian for Blur).
    support = op.singular_values(x) > 0
    torch.testing.assert_close(op.U_adjoint(op.U(z)) * support, z * support, rtol=1e-10, atol=1e-12)


def test_resampling_by_taps_matches_the_dense_matrix_for_every_line_length():
    # Lines longer than the filter are mirrored by flipped copies of their ends, shorter ones (mirrored more
    # than once) through gathered indices; both must equal D x and D^T y, and their gradients the other one.
    shorter = 0
    for kind in ("box", "bicubic"):
        for factor in (2, 3, 4):
            for n in range(factor, 41):
                shorter += Fn._margins(n, factor, kind) is None
                D = Fn.resample_matrix(n, factor, kind)
                x = randn(1, 2, n, 3, seed=n).requires_grad_(True)
                y = randn(1, 2, 3, n // factor, seed=n + 1).requires_grad_(True)
                Ax, ATy = Fn.resample_apply(x, factor, kind, -2), Fn.resample_adjoint(y, n, factor, kind, -1)
                torch.testing.assert_close(Ax, torch.einsum("mn,bcnw->bcmw", D, x), rtol=1e-12, atol=1e-12)
                torch.testing.assert_close(ATy, y @ D, rtol=1e-12, atol=1e-12)
                u, v = randn(*Ax.shape, seed=2), randn(*ATy.shape, seed=3)
                gx, gy = torch.autograd.grad((Ax * u).sum() + (ATy * v).sum(), (x, y))
                torch.testing.assert_close(gx, torch.einsum("mn,bcmw->bcnw", D, u), rtol=1e-12, atol=1e-12)
                torch.testing.assert_close(gy, v @ D.T, rtol=1e-12, atol=1e-12)
    assert shorter > 0  # the gathered path ran too


@pytest.mark.parametrize("rho", [1e-3, 0.5])
@pytest.mark.parametrize("shape, op", SVD_OPERATORS)
def test_prox_l2_solves_its_normal_equations(shape, op, rho):
    # v = argmin ||A v - y||^2 + rho ||v - x||^2  <=>  A^T (A v - y) + rho (v - x) = 0.
    x = randn(*shape, seed=1)
    y = randn(*op.measurement_shape(shape), seed=2)
    v = op.prox_l2(x, y, rho)
    residual = op.A_adjoint(op.A(v) - y) + rho * (v - x)
    assert float(residual.abs().max()) < 1e-10 * (1 + float(op.A_adjoint(y).abs().max()))
    # The precomputed spectral measurement gives the same answer.
    torch.testing.assert_close(op.prox_l2(x, y, rho, measured=op.spectral(y)), v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["box", "bicubic"])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_downsample_banded_path_matches_its_dense_matrices_and_svd(kind, factor):
    # A and A^T apply the 1-D matrices by their nonzeros, prox_l2 and A_pinv go through the small left
    # factors: each must equal the dense product or the SVD's closed form of the base class.
    op = O.Downsample(factor, kind)
    H, W = 12 * factor, 9 * factor
    x = randn(2, 3, H, W, seed=1)
    y = randn(2, 3, H // factor, W // factor, seed=2)
    Dh, Dw = (Fn.resample_matrix(n, factor, kind) for n in (H, W))
    torch.testing.assert_close(op.A(x), Dh @ x @ Dw.T, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op.A_adjoint(y), Dh.T @ y @ Dw, rtol=1e-12, atol=1e-12)
    for rho in (1e-4, 0.3):
        expected = O.SVDOperator.prox_l2(op, x, y, rho)
        torch.testing.assert_close(op.prox_l2(x, y, rho), expected, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(op.A_pinv(y), O.SVDOperator.A_pinv(op, y), rtol=1e-9, atol=1e-9)
    # float32 on the same path (the solvers' dtype outside the data step).
    torch.testing.assert_close(op.A(x.float()), (Dh @ x @ Dw.T).float(), rtol=1e-5, atol=1e-5)
    # A line shorter than the factor has no output sample, and its adjoint is zero.
    assert Fn.resample_apply(x[..., : factor - 1, :], factor, kind, -2).shape == (2, 3, 0, W)
    assert not Fn.resample_adjoint(y[..., :0, :], factor - 1, factor, kind, -2).any()
    # Autograd through A (DPS differentiates it): the gradient of <A x, y> is A^T y.
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((op.A(xg) * y).sum(), xg)
    torch.testing.assert_close(grad, Dh.T @ y @ Dw, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, op", SMALL_SVD_OPERATORS)
def test_singular_values_match_dense_matrix(shape, op):
    M = dense_matrix(op, shape)
    expected = torch.linalg.svdvals(M)  # min(m, n) values, descending, zeros included
    s = op.singular_values(torch.zeros(shape, dtype=torch.float64)).flatten().sort(descending=True).values
    torch.testing.assert_close(s[: expected.numel()], expected, rtol=0, atol=1e-12 * float(expected[0]))
    assert torch.all(s[expected.numel() :] == 0)


@pytest.mark.parametrize("rcond", [1e-4, 2e-3])
@pytest.mark.parametrize("shape, op", SMALL_SVD_OPERATORS)
def test_svd_pinv_matches_dense_pinv(shape, op, rcond):
    M = dense_matrix(op, shape)
    sv = torch.linalg.svdvals(M)
    # No singular value near the cutoff, where the two could round to different sides of it (the
    # Gaussian blur has singular values 2e-4, 8.9e-4 and 4e-3 times the largest: 2e-3 cuts two).
    assert not torch.any((sv > rcond / 1.5 * sv[0]) & (sv < 1.5 * rcond * sv[0]))
    y = randn(*op.measurement_shape(shape), seed=1)
    expected = (torch.linalg.pinv(M, rtol=rcond) @ y.reshape(-1)).reshape(shape)
    # Both sides are float64 SVDs with a condition number below 1 / rcond <= 1e4 on what is kept,
    # so they agree to about 1e4 * 1e-16 (observed <= 2e-13); 1e-10 leaves room for a few more
    # rounding steps and still catches any wrong factor.
    torch.testing.assert_close(op.A_pinv(y, rcond=rcond), expected, rtol=0, atol=1e-10 * float(expected.abs().max()))


def test_composition_pinv_is_dense_minimum_norm_solution():
    op = O.compose(O.Blur.gaussian(1.0), O.Downsample(2))
    assert not isinstance(op, O.SVDOperator)
    M = dense_matrix(op, SMALL)  # (16, 64): a wide matrix with a 48-dimensional null space
    y = randn(*op.measurement_shape(SMALL), seed=1)
    expected = (torch.linalg.pinv(M) @ y.reshape(-1)).reshape(SMALL)
    # rcond = 1e-6 makes the Tikhonov shift eps = 1e-12 ||A||^2 negligible next to the smallest kept
    # singular value (about 0.04 ||A||); CG on a rank-16 system converges in about 16 steps to
    # near machine precision (observed 2e-11), far below the 1e-8 tolerance.
    torch.testing.assert_close(op.A_pinv(y, rcond=1e-6), expected, rtol=0, atol=1e-8 * float(expected.abs().max()))


# ---------------------------------------------------------------------------------------------
# Specs


@pytest.mark.parametrize("shape, op", OPERATORS)
def test_spec_round_trip(shape, op):
    spec = json.loads(json.dumps(op.spec()))  # specs are written to JSON files
    rebuilt = O.from_spec(spec, op.arrays())
    assert type(rebuilt) is type(op)
    assert rebuilt.noise.spec() == op.noise.spec()
    x = randn(*shape, seed=1)
    # A Blur kernel is renormalised on rebuilding, which may move it by a float32 rounding step.
    torch.testing.assert_close(rebuilt.A(x), op.A(x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape, op", OPERATORS)
def test_spec_with_unknown_field_or_type_is_refused(shape, op):
    spec = json.loads(json.dumps(op.spec()))
    with pytest.raises(RestoreError, match="unknown field"):
        O.from_spec(dict(spec, colour="red"), op.arrays())
    with pytest.raises(RestoreError, match="unknown operator type"):
        O.from_spec(dict(spec, type="sharpen"), op.arrays())


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "inpaint"},
        {"type": "deblur", "made_by": {"kind": "custom"}},
        {"type": "superres", "filter": "box"},
        {"type": "cs", "m": 10},
        {"type": "cs", "image_shape": [1, 8, 8]},
        {"type": "composition", "outer": {"type": "superres", "factor": 2}},
    ],
    ids=["inpaint", "deblur", "superres", "cs-shape", "cs-m", "composition"],
)
def test_spec_with_missing_field_is_refused(spec):
    with pytest.raises(RestoreError, match="missing field"):
        O.from_spec(spec)


def test_spec_errors_are_restore_errors():
    with pytest.raises(RestoreError, match="unknown operator type"):
        O.from_spec({"factor": 2})  # no type at all
    with pytest.raises(RestoreError, match="JSON object"):
        O.from_spec(["superres"])
    with pytest.raises(RestoreError, match="does not hold"):
        O.from_spec({"type": "inpaint", "mask": {"array": "mask"}}, {})
    with pytest.raises(RestoreError, match="unknown field"):
        O.from_spec({"type": "composition", "outer": {"type": "denoise", "zoom": 2}, "inner": {"type": "denoise"}})
    with pytest.raises(RestoreError, match="unknown noise type"):
        O.from_spec({"type": "denoise", "noise": {"type": "speckle"}})
    with pytest.raises(RestoreError, match="unknown field"):
        O.from_spec({"type": "denoise", "noise": {"type": "gaussian", "sigma": 0.1, "mean": 0}})


# ---------------------------------------------------------------------------------------------
# Noise


def test_gaussian_noise_statistics_and_seeding():
    sigma = 0.3
    noise = O.GaussianNoise(sigma)
    clean = torch.full((1, 1, 1000, 1000), 0.5, dtype=torch.float64)  # 1e6 samples
    y = noise(clean, generator=torch.Generator().manual_seed(0))
    # The sample std of 1e6 normals is within about 3 * sigma / sqrt(2e6) = 0.2% of sigma.
    assert abs(float((y - clean).std()) - sigma) < 0.02 * sigma
    assert abs(float((y - clean).mean())) < 5 * sigma / 1000
    assert torch.equal(y, noise(clean, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(y, noise(clean, generator=torch.Generator().manual_seed(1)))
    assert torch.equal(O.GaussianNoise(0.0)(clean), clean)


def test_poisson_noise_mean_and_variance():
    gain, v = 20.0, 0.4
    clean = torch.full((1, 1, 1000, 1000), v, dtype=torch.float64)
    y = O.PoissonNoise(gain)(clean, generator=torch.Generator().manual_seed(0))
    assert y.dtype == torch.float64
    assert abs(float(y.mean()) - v) < 0.01 * v
    assert abs(float(y.var()) - v / gain) < 0.02 * v / gain  # Var = v / gain
    # Counts: y * gain is an integer.
    assert torch.equal(y * gain, (y * gain).round())
    assert torch.equal(y, O.PoissonNoise(gain)(clean, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize(
    "make",
    [lambda: O.GaussianNoise(-0.1), lambda: O.GaussianNoise(float("nan")), lambda: O.GaussianNoise(float("inf")),
     lambda: O.GaussianNoise("loud"), lambda: O.PoissonNoise(0.0), lambda: O.PoissonNoise(-5.0)],
    ids=["negative-sigma", "nan-sigma", "inf-sigma", "text-sigma", "zero-gain", "negative-gain"],
)
def test_bad_noise_parameters_are_refused(make):
    with pytest.raises(RestoreError):
        make()


@pytest.mark.parametrize("noise", [O.GaussianNoise(0.5), O.PoissonNoise(10.0)], ids=["gaussian", "poisson"])
def test_inpainting_noise_is_zero_on_missing_pixels(noise):
    op = O.Inpainting.random(RGB, 0.5, seed=0, noise=noise)
    x = torch.rand(RGB, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y = op(x, generator=torch.Generator().manual_seed(2))
    missing = (op.mask == 0).expand(RGB)
    assert torch.all(y[missing] == 0)
    assert torch.any(y[~missing] != x[~missing])  # the observed pixels do get noise


def test_measurement_is_seeded():
    op = O.Blur.gaussian(1.0, noise=O.GaussianNoise(0.1))
    x = torch.rand(GRAY, dtype=torch.float64)
    y1 = op(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(y1, op(x, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(y1, op(x, generator=torch.Generator().manual_seed(6)))


# ---------------------------------------------------------------------------------------------
# Constructor and input errors


@pytest.mark.parametrize(
    "make",
    [
        lambda: O.Inpainting.box(GRAY, 10, 2, 8, 4),  # x + w > W
        lambda: O.Inpainting.box(GRAY, -1, 2, 4, 4),
        lambda: O.Inpainting.box(GRAY, 2, 2, 0, 4),
        lambda: O.Inpainting.centre_box(GRAY, 20),
        lambda: O.Inpainting.random(GRAY, 1.5),
        lambda: O.Inpainting.random(GRAY, -0.1),
        lambda: O.Inpainting(torch.ones(2, 2, 3, 4, 4)),
        lambda: O.Blur(torch.ones(3)),
        lambda: O.Blur(-torch.ones(3, 3)),
        lambda: O.Blur.gaussian(0.0),
        lambda: O.Blur.motion(size=2),
        lambda: O.Blur.motion(intensity=1.5),
        lambda: O.Downsample(2.5),
        lambda: O.Downsample(0),
        lambda: O.Downsample(2, "lanczos"),
        lambda: O.CompressedSensing(0, (1, 8, 8)),
        lambda: O.CompressedSensing(10, (1, 200, 200)),
        lambda: O.Composition(O.Downsample(2), O.Blur.gaussian(1.0, noise=O.GaussianNoise(0.1))),
    ],
    ids=["box-right", "box-negative", "box-empty", "centre-box-too-big", "missing-1.5", "missing-negative",
         "mask-5d", "kernel-1d", "kernel-negative", "gaussian-sigma-0", "motion-size-2", "motion-intensity",
         "factor-2.5", "factor-0", "filter-unknown", "cs-m-0", "cs-too-big", "composition-inner-noise"],
)
def test_bad_constructor_arguments_are_refused(make):
    with pytest.raises(RestoreError):
        make()


@pytest.mark.parametrize(
    "op, shape",
    [
        (O.Inpainting(torch.ones(16, 16)), (1, 1, 16, 12)),
        (O.Inpainting(torch.ones(2, 16, 16)), (1, 3, 16, 16)),
        (O.Blur.gaussian(3.0), (1, 1, 16, 16)),  # 19x19 kernel
        (O.Blur(torch.ones(5, 3)), (1, 1, 4, 8)),
        (O.Downsample(4), (1, 1, 16, 18)),
        (O.Downsample(3, "bicubic"), (1, 1, 16, 15)),
        (O.CompressedSensing(10, (1, 8, 8)), (1, 1, 8, 9)),
        (O.compose(O.Downsample(2), O.Downsample(4)), (1, 1, 20, 20)),  # 4 divides 20 but not 10
    ],
    ids=["mask-size", "mask-channels", "kernel-too-big", "kernel-too-tall", "factor-4-of-18", "factor-3-of-16",
         "cs-shape", "composition-inner-output"],
)
def test_check_input_refuses_incompatible_images(op, shape):
    with pytest.raises(RestoreError):
        op.check_input(shape)


def test_error_messages_are_one_line():
    for make in (lambda: O.Inpainting.random(GRAY, 1.5), lambda: O.Downsample(2.5),
                 lambda: O.Blur.gaussian(3.0).check_input(GRAY), lambda: O.from_spec({"type": "x"})):
        with pytest.raises(RestoreError) as info:
            make()
        assert "\n" not in str(info.value) and str(info.value)


# ---------------------------------------------------------------------------------------------
# Kernels


def test_gaussian_kernel_is_normalised_and_symmetric():
    for sigma, size in ((1.0, None), (2.0, None), (1.5, 8)):
        k = Fn.gaussian_kernel(sigma, size)
        if size is None:
            assert k.shape == (2 * math.ceil(3 * sigma) + 1,) * 2
        assert abs(float(k.double().sum()) - 1) < 1e-6
        torch.testing.assert_close(k, k.T, rtol=0, atol=0)
        torch.testing.assert_close(k, k.flip(0), rtol=0, atol=1e-9)
        torch.testing.assert_close(k, k.flip(1), rtol=0, atol=1e-9)
    # Its standard deviation is sigma (kernel wide enough that truncation is negligible).
    k = Fn.gaussian_kernel(2.0, 31).double()
    r = torch.arange(31, dtype=torch.float64) - 15
    assert abs(float((k.sum(0) * r**2).sum()) ** 0.5 - 2.0) < 1e-3


@pytest.mark.parametrize("size", [9, 61])
def test_motion_kernel(size):
    k = Fn.motion_kernel(size, 0.5, seed=0)
    assert k.shape == (size, size)
    assert abs(float(k.double().sum()) - 1) < 1e-6 and torch.all(k >= 0)
    assert int((k > 0).sum()) >= 5  # a path, not a point
    assert torch.equal(k, Fn.motion_kernel(size, 0.5, seed=0))
    assert not torch.equal(k, Fn.motion_kernel(size, 0.5, seed=1))
    # The path is scaled to span the kernel on its longest side.
    rows, cols = (k.sum(1) > 0).nonzero(), (k.sum(0) > 0).nonzero()
    assert max(int(rows.max() - rows.min()), int(cols.max() - cols.min())) >= size - 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_motion_kernel_with_intensity_zero_is_a_straight_line(seed):
    k = Fn.motion_kernel(61, 0.0, seed=seed)
    coords = (k > 0).nonzero().double()  # (N, 2) pixel coordinates of the streak
    eig = torch.linalg.eigvalsh(torch.cov(coords.T))  # ascending
    # Observed ratios 1.1e-3 to 1.4e-3: a one-pixel-wide bilinear splat along a 60-pixel line.
    assert eig[0] < 0.01 * eig[1]
    # A random path (intensity 0.5) is not a line: the same statistic is above 5% (observed 6-18%).
    coords = (Fn.motion_kernel(61, 0.5, seed=seed) > 0).nonzero().double()
    eig = torch.linalg.eigvalsh(torch.cov(coords.T))
    assert eig[0] > 0.05 * eig[1]


# ---------------------------------------------------------------------------------------------
# Each operator against an independent implementation


@pytest.mark.parametrize("kernel", [CUSTOM_KERNEL, Fn.motion_kernel(7, 0.5, 1), Fn.gaussian_kernel(1.0)],
                         ids=["custom", "motion", "gaussian"])
def test_blur_is_circular_convolution(kernel):
    x = randn(*RGB, seed=1)
    kernel = kernel.double() / kernel.double().sum()
    kh, kw = kernel.shape
    # y[i, j] = sum_ab k[a, b] x[i - (a - kh // 2), j - (b - kw // 2)]; roll(x, s)[i] = x[i - s].
    expected = sum(
        kernel[a, b] * torch.roll(x, shifts=(a - kh // 2, b - kw // 2), dims=(-2, -1))
        for a in range(kh) for b in range(kw)
    )
    torch.testing.assert_close(O.Blur(kernel).A(x), expected, rtol=1e-6, atol=1e-7)  # kernel stored in float32


def test_blur_of_a_point_is_the_kernel():
    x = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    x[0, 0, 8, 8] = 1
    y = O.Blur(CUSTOM_KERNEL).A(x)
    kernel = CUSTOM_KERNEL.double() / CUSTOM_KERNEL.sum()
    torch.testing.assert_close(y[0, 0, 8 - 2 : 8 + 2, 8 - 1 : 8 + 2], kernel, rtol=1e-6, atol=1e-7)
    assert abs(float(y.sum()) - 1) < 1e-6


@pytest.mark.parametrize("factor", [2, 4])
def test_box_downsample_is_average_pooling(factor):
    x = randn(*RGB, seed=1)
    torch.testing.assert_close(O.Downsample(factor, "box").A(x), F.avg_pool2d(x, factor), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("factor", [2, 4])
def test_bicubic_downsample(factor):
    op = O.Downsample(factor, "bicubic")
    # Rows sum to 1: a constant image stays that constant.
    c = torch.full((1, 3, 32, 32), 0.37, dtype=torch.float64)
    torch.testing.assert_close(op.A(c), torch.full((1, 3, 32 // factor, 32 // factor), 0.37, dtype=torch.float64))
    # Away from the borders (where we mirror and PyTorch renormalises), it is PyTorch's
    # anti-aliased bicubic resize.
    x = randn(1, 3, 32, 32, seed=1)
    expected = F.interpolate(x, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False)
    torch.testing.assert_close(op.A(x)[..., 2:-2, 2:-2], expected[..., 2:-2, 2:-2], rtol=1e-10, atol=1e-10)


def test_compressed_sensing_is_the_seeded_gaussian_matrix():
    op = O.CompressedSensing(50, (1, 8, 8), seed=4)
    x = randn(3, 1, 8, 8, seed=1)
    torch.testing.assert_close(op.A(x), x.reshape(3, 64) @ op.phi.double().T)
    assert torch.equal(op.phi, O.CompressedSensing(50, (1, 8, 8), seed=4).phi)
    assert not torch.equal(op.phi, O.CompressedSensing(50, (1, 8, 8), seed=5).phi)
    # Entries N(0, 1/m): columns have norm about 1.
    assert abs(float(op.phi.double().pow(2).sum(0).mean()) - 1) < 0.1


def test_gradient_and_divergence_are_negative_adjoints():
    x = randn(2, 3, 9, 7, seed=1)
    p = randn(2, 3, 2, 9, 7, seed=2)
    assert torch.allclose(dot(Fn.gradient(x), p), -dot(x, Fn.divergence(p)), rtol=1e-12, atol=1e-12)


def test_conjugate_gradient_solves_a_batch():
    A = randn(12, 12, seed=1)
    A = A @ A.T + torch.eye(12, dtype=torch.float64)
    b = randn(3, 12, seed=2)
    b[1] = 0
    x = conjugate_gradient(lambda v: v @ A, b, tol=1e-12)
    torch.testing.assert_close(x, torch.linalg.solve(A, b.T).T)


# ---------------------------------------------------------------------------------------------
# Precision


@pytest.mark.parametrize("shape, op", OPERATORS)
def test_float32(shape, op):
    x64 = randn(*shape, seed=1)
    y64 = op.A(x64)
    op32 = copy.deepcopy(op).to(torch.float32)
    x32 = x64.float()
    y32 = op32.A(x32)
    assert y32.dtype == torch.float32 and op32.A_adjoint(y32).dtype == torch.float32
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(op32.A_adjoint(y32).double(), op.A_adjoint(y64), rtol=1e-4, atol=1e-5)
    # The pseudo-inverse amplifies float32 rounding by up to 1 / rcond = 1e3 (observed up to 1.2e-5).
    p64 = op.A_pinv(y64)
    p32 = op32.A_pinv(y32)
    assert p32.dtype == torch.float32
    assert torch.all(norms(p32.double() - p64) <= 1e-3 * norms(p64))
    if isinstance(op, O.SVDOperator):
        assert op32.singular_values(x32).dtype == torch.float32


def test_one_factory_builds_the_operators_of_options_standard_tasks_and_specs():
    """make_operator is where the CLI's options, the standard tasks and specs become operators: each task's
    operator is the class and measurement its parameters describe."""
    from restore.tasks import standard_operator

    shape = (1, 12, 10)
    x = randn(1, *shape, seed=3)
    assert torch.equal(O.make_operator("inpaint", shape).mask, O.Inpainting.centre_box(shape, 5).mask)
    assert torch.equal(O.make_operator("inpaint", shape, box=(1, 2, 3, 4)).mask, O.Inpainting.box(shape, 1, 2, 3, 4).mask)
    assert torch.equal(O.make_operator("inpaint", shape, random=0.5, seed=7).mask,
                       O.Inpainting.random(shape, 0.5, 7).mask)
    valid = O.make_operator("deblur", kernel=torch.ones(3, 3), boundary="valid", noise=O.GaussianNoise(0.1))
    assert type(valid) is O.ValidBlur and valid.noise.spec() == O.GaussianNoise(0.1).spec()
    assert type(O.make_operator("superres", factor=2, filter="bicubic")) is O.Downsample
    assert O.make_operator("cs", shape, seed=1).A(x).shape[-1] == 30  # n / 4 measurements by default
    # The standard benchmark tasks are the factory's operators.
    assert torch.equal(standard_operator("inpaint-random", shape, 2).mask, O.Inpainting.random(shape, 0.7, 2).mask)
    big = randn(1, 1, 16, 16, seed=4)  # the standard blur's kernel is 13x13
    torch.testing.assert_close(standard_operator("deblur", (1, 16, 16)).A(big), O.Blur.gaussian(2.0).A(big))
    with pytest.raises(RestoreError, match="unknown task 'sharpen'"):
        O.make_operator("sharpen", shape)
    with pytest.raises(RestoreError, match="unknown blur boundary"):
        O.make_operator("deblur", kernel=torch.ones(3, 3), boundary="reflect")
