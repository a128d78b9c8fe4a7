"""Diffusion solvers against the Gaussian prior, whose posterior is known in closed form.

Two priors on 4x4 gray images (16 pixels):
- ISOTROPIC: identity covariance in model space (Sigma = I / 4), where the spectral components of
  every operator are independent and the PiGDM approximation p(x0 | x_t) = N(x0_hat, (1 - alpha_bar) I)
  is exact;
- CORRELATED: a rank-3 PCA-style covariance plus a diagonal, where every method is approximate.

Monte Carlo: each check draws N posterior samples of 2 measured images; tolerances are stated in
units of the Monte Carlo standard error, sqrt(var / N), or as measured ratios with their margin.
"""

from __future__ import annotations

import math

import pytest
import torch

from restore import operators as O
from restore.errors import RestoreError
from restore.priors.gaussian import GaussianPrior
from restore.priors.sampling import reverse_diffusion
from restore.solvers import DIFFUSION, PRIOR_SOLVERS, missing_capabilities

SHAPE = (1, 4, 4)
D = 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread avoids spin-waiting on a shared two-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _isotropic() -> GaussianPrior:
    g = torch.Generator().manual_seed(0)
    mean = 0.25 + 0.5 * torch.rand(D, generator=g)
    return GaussianPrior(mean, torch.zeros(D, 1), torch.full((D,), 0.25), SHAPE)


def _correlated() -> GaussianPrior:
    g = torch.Generator().manual_seed(1)
    mean = 0.3 + 0.4 * torch.rand(D, generator=g)
    # Three smooth directions (as PCA would find on images) and a small per-pixel variance.
    yy, xx = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    W = torch.stack([torch.cos(0.8 * xx + 0.3 * yy), torch.sin(0.6 * yy), torch.cos(0.5 * (xx - yy))], -1)
    return GaussianPrior(mean, 0.15 * W.reshape(D, 3), torch.full((D,), 0.004), SHAPE)


def _operator(name: str, sigma: float):
    noise = O.GaussianNoise(sigma)
    return {
        "inpaint": lambda: O.Inpainting.random(SHAPE, 0.5, seed=3, noise=noise),
        "deblur": lambda: O.Blur.gaussian(0.7, 3, noise=noise),
        "superres": lambda: O.Downsample(2, noise=noise),
        "denoise": lambda: O.Denoising(noise),
    }[name]()


def _measure(prior, op, seed=5):
    x = prior.sample(2, generator=torch.Generator().manual_seed(seed), clip=False)
    return op(x, generator=torch.Generator().manual_seed(seed + 1))


def _samples(solver, y, op, prior, n, steps, seed=7, **kwargs):
    """(2, n, C, H, W): n posterior samples for each of the 2 measurements, drawn in one batch."""
    out = solver(y.repeat_interleave(n, 0), op, prior, steps=steps, generator=torch.Generator().manual_seed(seed),
                 **kwargs)
    return out.reshape(2, n, *SHAPE)


# ---------------------------------------------------------------------------------------------
# Exact in the limit


def test_reverse_diffusion_with_the_exact_score_samples_the_prior():
    prior = _correlated()
    n = 4000
    x = reverse_diffusion(prior, n, steps=1000, generator=torch.Generator().manual_seed(0), clip=False)
    x = x.reshape(n, D).double()
    sd = prior.covariance().diagonal().sqrt()
    # Mean: within 4 standard errors on all 16 pixels (|z| > 4 has probability 1e-3 over 16 pixels).
    assert ((x.mean(0) - prior.mean).abs() / (sd / math.sqrt(n))).max() < 4
    # Variances within 8% (the standard error of a variance estimate is sqrt(2 / n) = 2.2%); a factor
    # of 2 in any term of the step (beta_tilde or beta, the mean's coefficients) moves them by more.
    assert ((x.var(0) / sd**2) - 1).abs().max() < 0.08
    # Correlations: the covariance matrix matches to 0.1 of the largest variance (measured 0.02).
    assert (torch.cov(x.T) - prior.covariance()).abs().max() < 0.1 * sd.max() ** 2


@pytest.mark.parametrize("task", ["inpaint", "superres", "deblur", "denoise"])
def test_pigdm_is_exact_for_an_isotropic_prior(task):
    prior, op = _isotropic(), _operator(task, 0.1)
    y = _measure(prior, op)
    mean, cov = prior.posterior(y, op)
    var = cov.diagonal().reshape(SHAPE)
    n = 2000
    x = _samples(DIFFUSION["pigdm"], y, op, prior, n, steps=500)
    z = (x.mean(1) - mean).abs() / (var / n).sqrt()
    # Mean within 4.5 standard errors on 32 pixel values (measured at most 2.4); a factor 2 in r_t^2
    # or sigma_y moves some pixels by 10 or more.
    assert z.max() < 4.5
    # Variance within 12% of the posterior's (standard error 3%; measured 0.92 to 1.04).
    ratio = x.var(1) / var
    assert (ratio - 1).abs().max() < 0.12


@pytest.mark.parametrize("task", ["inpaint", "superres"])
def test_noiseless_ddrm_with_ddim_is_exact_for_an_isotropic_prior(task):
    """Without noise, observed spectral components are y exactly; with an isotropic prior the null
    space is independent of them, and DDRM's eta = 0 update there is DDIM, exact as steps grow."""
    prior, op = _isotropic(), _operator(task, 0.0)
    y = _measure(prior, op)
    mean, cov = prior.posterior(y, op)
    var = cov.diagonal().reshape(SHAPE).clamp_min(0)
    n = 2000
    x = _samples(DIFFUSION["ddrm"], y, op, prior, n, steps=500, eta=0.0)
    free = var > 1e-6  # pixels the measurement leaves uncertain
    z = (x.mean(1) - mean).abs() / (var.clamp_min(1e-12) / n).sqrt()
    assert z[:, free].max() < 4.5
    ratio = x.var(1)[:, free] / var[free]
    assert (ratio - 1).abs().max() < 0.12
    # The determined part: every sample reproduces y (float round-off only).
    assert (op.A(x.reshape(-1, *SHAPE)) - y.repeat_interleave(n, 0)).abs().max() < 1e-4


# ---------------------------------------------------------------------------------------------
# Every solver: the shared contract


class SolverContract:
    """What every diffusion solver must do. Subclasses name the solver, the tasks it serves, its
    steps and the measured error ratio bound on the correlated prior."""

    name: str
    tasks: tuple[str, ...]
    steps: int = 30
    kwargs: dict = {}
    #: error to the exact posterior mean / error of the prior mean must stay below this.
    bound: float
    sigma: float = 0.05

    @property
    def solver(self):
        return DIFFUSION[self.name]

    def test_same_seed_same_output(self):
        prior, op = _correlated(), _operator(self.tasks[0], self.sigma)
        y = _measure(prior, op)
        a = self.solver(y, op, prior, steps=5, generator=torch.Generator().manual_seed(0), **self.kwargs)
        b = self.solver(y, op, prior, steps=5, generator=torch.Generator().manual_seed(0), **self.kwargs)
        c = self.solver(y, op, prior, steps=5, generator=torch.Generator().manual_seed(1), **self.kwargs)
        assert a.shape == (2, *SHAPE) and torch.isfinite(a).all()
        assert torch.equal(a, b) and not torch.equal(a, c)

    def test_posterior_mean_beats_the_prior_mean(self):
        prior = _correlated()
        for task in self.tasks:
            op = _operator(task, self.sigma)
            y = _measure(prior, op)
            mean, _ = prior.posterior(y, op)
            x = _samples(self.solver, y, op, prior, 256, self.steps, **self.kwargs)
            err = (x.mean(1) - mean).square().mean().sqrt()
            prior_err = (prior.mean.float().reshape(SHAPE) - mean).square().mean().sqrt()
            assert err < self.bound * prior_err, (task, float(err / prior_err))

    def test_refuses_a_measurement_of_the_wrong_size(self):
        prior, op = _correlated(), _operator(self.tasks[0], self.sigma)
        y = torch.zeros(2, 1, 8, 8)
        with pytest.raises(RestoreError):
            self.solver(y, op, prior, steps=2)


class TestDDRM(SolverContract):
    name, tasks, steps, bound = "ddrm", ("inpaint", "superres", "deblur", "denoise"), 20, 0.6


class TestDDNM(SolverContract):
    name, tasks, steps, bound = "ddnm", ("inpaint", "superres", "denoise"), 30, 0.6

    def test_noiseless_output_satisfies_the_measurement(self):
        prior = _correlated()
        for task in ("inpaint", "superres"):
            op = _operator(task, 0.0)
            y = _measure(prior, op)
            x = self.solver(y, op, prior, steps=10, generator=torch.Generator().manual_seed(0))
            # float32 round-off of V, V^T and A only (measured 1e-7).
            assert (op.A(x) - y).abs().max() < 1e-5


class TestDDRMNoiseless:
    def test_noiseless_output_satisfies_the_measurement(self):
        prior = _correlated()
        for task in ("inpaint", "superres", "deblur"):
            op = _operator(task, 0.0)
            y = _measure(prior, op)
            x = DIFFUSION["ddrm"](y, op, prior, steps=10, generator=torch.Generator().manual_seed(0))
            assert (op.A(x) - y).abs().max() < 1e-4


class TestPiGDM(SolverContract):
    name, tasks, steps, bound = "pigdm", ("inpaint", "superres", "deblur", "denoise"), 50, 0.5


class TestDPS(SolverContract):
    name, tasks, steps, bound = "dps", ("inpaint", "superres", "deblur"), 100, 0.6


class TestDiffPIR(SolverContract):
    name, tasks, steps, bound = "diffpir", ("inpaint", "superres", "deblur", "denoise"), 50, 0.6


class TestRePaint(SolverContract):
    name, tasks, steps, bound = "repaint", ("inpaint",), 20, 0.6
    kwargs = {"jump_length": 5, "resamplings": 3}


class TestAnnealedLangevin(SolverContract):
    """Annealed Langevin (Jalal et al. 2021) uses the same Tweedie estimate, as a score at each level
    (error ratios measured 0.04 denoise to 0.48 inpaint)."""

    name, tasks, steps, bound = "annealed-langevin", ("inpaint", "superres", "deblur", "denoise"), 30, 0.6

    @property
    def solver(self):
        return PRIOR_SOLVERS[self.name]


# ---------------------------------------------------------------------------------------------
# What cannot work is refused


def test_capabilities_name_what_each_solver_needs():
    blur = O.Blur.gaussian(1.0, 3)
    chain = O.compose(O.Blur.gaussian(1.0, 3), O.Downsample(2))
    assert missing_capabilities(DIFFUSION["repaint"], blur) == ["mask"]
    for name in ("ddrm", "ddnm", "pigdm", "diffpir"):
        assert missing_capabilities(DIFFUSION[name], chain), name  # no closed-form SVD
    assert missing_capabilities(DIFFUSION["dps"], chain) == []  # DPS needs only A
    poisson = O.Denoising(O.PoissonNoise(50.0))
    assert missing_capabilities(DIFFUSION["ddrm"], poisson) == ["poisson noise"]
    assert missing_capabilities(DIFFUSION["dps"], poisson) == []


# ---------------------------------------------------------------------------------------------
# The shipped Gaussian prior is a real baseline


def test_shipped_gaussian_prior_beats_the_best_classical_method_on_box_inpainting(mnist_available):
    """16 MNIST test digits, the centre 14x14 box missing: the learned Gaussian (PCA of the training
    split) with PiGDM, mean of 4 samples, against biharmonic inpainting (the best classical method,
    README). Measured 15.31 dB against 13.45 dB."""
    from restore import metrics
    from restore.data import mnist_images
    from restore.priors import load_prior
    from restore.solvers import CLASSICAL

    x, _ = mnist_images(16)
    op = O.Inpainting.centre_box((1, 28, 28), 14)
    y = op(x)
    prior = load_prior("gaussian")
    classical = metrics.psnr(CLASSICAL["biharmonic"](y, op, None), x).mean()
    xs = DIFFUSION["pigdm"](y.repeat_interleave(4, 0), op, prior, steps=20, generator=torch.Generator().manual_seed(1))
    learned = metrics.psnr(xs.reshape(16, 4, 1, 28, 28).mean(1).clamp(0, 1), x).mean()
    assert learned > classical + 1.0, (learned, classical)


# ---------------------------------------------------------------------------------------------
# A nonlinear operator: DPS on Fourier phase retrieval


def test_phase_retrieval_operator():
    x = torch.rand(3, 1, 5, 7, generator=torch.Generator().manual_seed(0))
    op = O.PhaseRetrieval(2.0)
    y = op.A(x)
    assert y.shape == (3, 1, 10, 14) == op.measurement_shape(x.shape)
    # Orthonormal DFT of the zero-padded image: Parseval, ||y|| = ||x||.
    assert torch.allclose(y.square().sum((1, 2, 3)), x.square().sum((1, 2, 3)), rtol=1e-5)
    # The phase is lost: a point reflection of x has the same magnitudes (up to a shift of the padding).
    flipped = torch.nn.functional.pad(x.flip(-1, -2), (0, 7, 0, 5)).roll((1, 1), (-2, -1))
    assert torch.allclose(torch.fft.fft2(flipped, norm="ortho").abs(), y, atol=1e-5)
    again = O.from_spec(O.PhaseRetrieval(3.0, O.GaussianNoise(0.1)).spec())
    assert again.oversampling == 3.0 and again.sigma_y == 0.1


def test_dps_fits_a_phase_retrieval_measurement():
    prior = _correlated()
    op = O.PhaseRetrieval(2.0, O.GaussianNoise(0.01))
    x_true = prior.sample(2, generator=torch.Generator().manual_seed(5), clip=False)
    y = op(x_true, generator=torch.Generator().manual_seed(6))
    # zeta = 0.4: the DPS paper's step for phase retrieval (1.0 overshoots on this small problem).
    x = DIFFUSION["dps"](y, op, prior, steps=200, zeta=0.4, generator=torch.Generator().manual_seed(7))
    fit = (op.A(x) - y).flatten(1).norm(dim=1)
    prior_mean = prior.mean.float().reshape(1, *SHAPE)
    prior_fit = (op.A(prior_mean) - y).flatten(1).norm(dim=1)
    # Measured on 8 images: residual 0.15 on average against the prior mean's 0.66. (The distance to
    # the true image is no fair test: x and its point reflection have the same magnitudes.)
    # The SVD solvers cannot run at all.
    assert (fit < 0.5 * prior_fit).all(), (fit, prior_fit)
    assert missing_capabilities(DIFFUSION["pigdm"], op) and not missing_capabilities(DIFFUSION["dps"], op)


# ---------------------------------------------------------------------------------------------
# Tweedie: the posterior mean of denoising in one evaluation


def test_tweedie_is_the_exact_posterior_mean_on_a_gaussian_prior():
    prior = _correlated()
    a = prior.alpha_bar.double()
    t = 200
    sigma_y = float(((1 - a[t]) / a[t]).sqrt()) / 2  # exactly timestep t's noise level, in [0, 1] units
    op = _operator("denoise", sigma_y)
    y = _measure(prior, op)
    mean, _ = prior.posterior(y, op)
    x = DIFFUSION["tweedie"](y, op, prior)
    assert (x - mean.clamp(0, 1)).abs().max() < 1e-4
    # Between two timesteps the two estimates are interpolated: close, not exact.
    op = _operator("denoise", sigma_y * 1.003)
    y = _measure(prior, op)
    mean, _ = prior.posterior(y, op)
    prior_err = (prior.mean.float().reshape(SHAPE) - mean).square().mean().sqrt()
    assert (DIFFUSION["tweedie"](y, op, prior) - mean.clamp(0, 1)).square().mean().sqrt() < 0.02 * prior_err


def test_tweedie_refuses_what_is_not_denoising():
    prior = _correlated()
    op = _operator("deblur", 0.05)
    with pytest.raises(RestoreError, match="denoises"):
        DIFFUSION["tweedie"](_measure(prior, op), op, prior)
    assert missing_capabilities(DIFFUSION["tweedie"], _operator("inpaint", 0.05)) == ["identity"]
    assert missing_capabilities(DIFFUSION["tweedie"], _operator("denoise", 0.05)) == []


def test_every_diffusion_solver_reports_each_step_as_a_dict():
    """The callback gets {"i", ...} once per step, i counting from 0; the samplers add their timestep and
    denoised estimate (an image of the batch's shape), DPIR its estimate."""
    prior = _correlated()
    op = _operator("inpaint", 0.05)
    y = _measure(prior, op)
    for name, fn in DIFFUSION.items():
        if missing_capabilities(fn, op) or name == "tweedie":
            continue
        seen = []
        fn(y, op, prior, steps=4, generator=torch.Generator().manual_seed(0), callback=seen.append)
        steps = [info["i"] for info in seen]
        assert steps == list(range(len(seen))) and len(seen) >= 4, (name, steps)
        if name == "dpir":
            assert seen[-1]["x"].shape == (2, *SHAPE)
        elif name != "repaint":
            assert seen[0]["t"] > seen[-1]["t"] and seen[-1]["x0_hat"].shape == (2, *SHAPE), name
    seen = []
    DIFFUSION["tweedie"](y, O.Denoising(O.GaussianNoise(0.05)), prior, callback=seen.append)
    assert [info["i"] for info in seen] == [0] and seen[0]["x0_hat"].shape == (2, *SHAPE)


def test_a_solver_takes_its_schedule_as_a_list_of_timesteps():
    from restore.priors.sampling import strided_timesteps, trailing_timesteps

    assert strided_timesteps(1000, 4) == [750, 500, 250, 0]
    assert trailing_timesteps(1000, 4) == [999, 749, 499, 249]
    assert trailing_timesteps(10, 3) == [9, 6, 2]
    prior = _correlated()
    T = prior.num_timesteps
    op = _operator("deblur", 0.05)
    y = _measure(prior, op)
    for name in ("ddnm", "dps", "diffpir"):
        fn = DIFFUSION[name]
        counted = fn(y, op, prior, steps=5, generator=torch.Generator().manual_seed(0))
        listed = fn(y, op, prior, steps=strided_timesteps(T, 5), generator=torch.Generator().manual_seed(0))
        assert torch.equal(counted, listed), name
    seen = []
    DIFFUSION["ddnm"](y, op, prior, steps=trailing_timesteps(T, 5), callback=seen.append)
    assert [info["t"] for info in seen] == trailing_timesteps(T, 5)
    for bad in ([3, 5], [T, 2], [], [4, 4]):
        with pytest.raises(RestoreError, match="descending"):
            DIFFUSION["ddnm"](y, op, prior, steps=bad)


def test_dps_default_step_grows_with_the_image_as_its_gradient_shrinks_per_pixel():
    """zeta defaults to sqrt(T / steps * H W) / 28 for H x W images: sqrt(T / steps) on 28x28 digits, where
    it was tuned; the gradient of the residual's norm spreads over the pixels, so without sqrt(H W) a 180x180
    photo got a step 6.4 times too short (20.85 dB against about 25.6 on held-out 4x super-resolution). The
    benchmarks key their cells on the rule where it changes the step."""
    import math

    from restore.bench import solver_settings

    prior = _correlated()
    op = _operator("deblur", 0.05)
    y = _measure(prior, op)
    default = DIFFUSION["dps"](y, op, prior, steps=5, generator=torch.Generator().manual_seed(0))
    zeta = math.sqrt(prior.num_timesteps / 5) * (math.sqrt(D) / 28)
    explicit = DIFFUSION["dps"](y, op, prior, steps=5, zeta=zeta, generator=torch.Generator().manual_seed(0))
    assert torch.equal(default, explicit)
    assert not torch.equal(default, DIFFUSION["dps"](y, op, prior, steps=5, zeta=math.sqrt(prior.num_timesteps / 5),
                                                     generator=torch.Generator().manual_seed(0)))
    assert solver_settings(DIFFUSION["dps"], 100, values=180 * 180)["zeta_rule"] == "sqrt(T / steps * H * W) / 28"
    assert "zeta_rule" not in solver_settings(DIFFUSION["dps"], 100, {"zeta": 2.0}, values=180 * 180)
    # On 28x28 digits the rule gives exactly the old value, so their cached cells stay valid.
    assert "zeta_rule" not in solver_settings(DIFFUSION["dps"], 100, values=784)
    assert math.sqrt(1000 / 100) * (math.sqrt(784) / 28) == math.sqrt(1000 / 100)
    # Colour counts pixels, not values: a 3 x 4 x 4 prior takes the step of a 4 x 4 gray one.
    g = torch.Generator().manual_seed(2)
    colour = GaussianPrior(0.5 + 0.1 * torch.rand(48, generator=g), 0.1 * torch.randn(48, 3, generator=g),
                           torch.full((48,), 0.004), (3, 4, 4))
    op = O.Denoising(O.GaussianNoise(0.1))
    y = _measure(colour, op)
    run = [DIFFUSION["dps"](y, op, colour, steps=5, generator=torch.Generator().manual_seed(0), **kw)
           for kw in ({}, {"zeta": math.sqrt(colour.num_timesteps / 5) * 4 / 28},
                      {"zeta": math.sqrt(colour.num_timesteps / 5) * math.sqrt(48) / 28})]
    assert torch.equal(run[0], run[1]) and not torch.equal(run[0], run[2])
