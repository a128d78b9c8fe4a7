"""Solvers on densities: Langevin on a Gaussian density against its closed-form posterior, MAP, PixelCNN inpainting."""

from __future__ import annotations

import pytest
import torch

from restore import operators as O
from restore.errors import RestoreError
from restore.priors.pixelcnn import PixelCNN, PixelCNNPrior
from restore.solvers import PRIOR_SOLVERS, solvers_for
from restore.solvers import langevin, map_estimate, pixelcnn_inpaint


pytestmark = pytest.mark.usefixtures("one_thread")


class GaussianDensity(torch.nn.Module):
    """N(mu, Sigma) on 1x2x2 images, well inside [0, 1]: an exact score and log-density."""

    image_shape = (1, 2, 2)

    def __init__(self):
        super().__init__()
        self.mu = torch.tensor([0.5, 0.45, 0.55, 0.5])
        L = torch.tensor([[0.06, 0, 0, 0], [0.03, 0.05, 0, 0], [0.0, 0.02, 0.06, 0], [0.01, 0.0, 0.03, 0.05]])
        self.cov = L @ L.T
        self.precision = torch.linalg.inv(self.cov)

    def image_score(self, x):
        return (-(x.flatten(1) - self.mu) @ self.precision).view_as(x)

    def log_prob(self, x):
        d = x.flatten(1) - self.mu
        return -0.5 * ((d @ self.precision) * d).sum(1)


def _posterior(prior, A, y, sigma):
    """Closed form: Sigma_post = (Sigma^-1 + A^T A / s^2)^-1, mu_post = Sigma_post (Sigma^-1 mu + A^T y / s^2)."""
    cov = torch.linalg.inv(prior.precision + A.T @ A / sigma**2)
    return cov @ (prior.precision @ prior.mu + A.T @ y / sigma**2), cov


class LinearFlow(GaussianDensity):
    """The same Gaussian as a "flow": x = mu + L eps with eps ~ N(0, I), so latent Langevin applies."""

    latent_shape = (4,)

    def __init__(self, overflow_above: float | None = None):
        super().__init__()
        self.L = torch.linalg.cholesky(self.cov)
        self.overflow_above = overflow_above

    def decode(self, eps):
        x = (self.mu + eps @ self.L.T).view(-1, *self.image_shape)
        if self.overflow_above is not None:  # an exploding inverse: NaN images beyond a plane
            x = torch.where((eps[:, :1] > self.overflow_above).view(-1, 1, 1, 1), torch.nan, x)
        return x


@pytest.mark.parametrize("space", ["pixel", "latent"])
def test_langevin_reproduces_the_gaussian_posterior(space):
    prior = GaussianDensity() if space == "pixel" else LinearFlow()
    mask = torch.tensor([[[[True, False], [True, True]]]])
    op = O.Inpainting(mask, noise=O.GaussianNoise(0.05))
    x = torch.tensor([0.55, 0.5, 0.5, 0.45]).view(1, 1, 2, 2)
    y = op(x, generator=torch.Generator().manual_seed(0))
    mean, cov = _posterior(prior, torch.diag(mask.flatten().float()), y.flatten(), 0.05)
    chains = 4000
    if space == "pixel":
        # Constant step 2e-5 (anneal 1): the discretisation bias of unadjusted Langevin is about
        # delta * curvature / 2 of the variance: 1.2% here (posterior precision eigenvalues 319-1180),
        # and 1500 steps are ~10 relaxation times of the slowest direction (1 / (delta * 319) = 157 steps).
        settings = {"steps": 1500, "step_size": 2e-5, "anneal": 1.0}
    else:
        # Annealed from sigma 0.5 over 1200 steps, then 800 steps at sigma_y with the preconditioner
        # frozen: Langevin with a constant diagonal preconditioner, exact up to the step's bias. With
        # the preconditioner adapting throughout, the variances came out 21-32% too large.
        settings = {"steps": 2000, "step_size": 0.01, "hold": 0.4}
    samples = langevin(y.repeat(chains, 1, 1, 1), op, prior, space=space, **settings,
                       generator=torch.Generator().manual_seed(1)).flatten(1)
    se = (cov.diagonal() / chains).sqrt()
    assert ((samples.mean(0) - mean).abs() < 5 * se).all(), (samples.mean(0), mean, se)
    # Sample variances within 10% (their own sampling error is ~2% for 4000 chains); a factor 2 in
    # the data term or the noise scale moves some of them by far more.
    ratio = samples.var(0) / cov.diagonal()
    assert ((ratio > 0.9) & (ratio < 1.1)).all(), ratio


def test_latent_langevin_steps_back_from_an_overflowing_decoder():
    # A sixth of the prior mass decodes to NaN: chains that step there start again from their last
    # finite point, and chains that start there walk out along the prior's gradient.
    prior = LinearFlow(overflow_above=1.0)
    op = O.Denoising(O.GaussianNoise(0.05))
    y = torch.full((64, 1, 2, 2), 0.5)
    out = langevin(y, op, prior, steps=100, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all() and out.shape == y.shape
    with pytest.raises(RestoreError, match="space latent needs a prior that decodes"):
        langevin(y, op, GaussianDensity(), steps=1, space="latent")
    with pytest.raises(RestoreError, match="space must be auto, latent or pixel"):
        langevin(y, op, prior, steps=1, space="z")


def test_map_in_pixel_space_is_the_posterior_mode_of_a_gaussian():
    prior = GaussianDensity()
    op = O.Denoising(O.GaussianNoise(0.05))
    y = torch.tensor([0.6, 0.4, 0.5, 0.55]).view(1, 1, 2, 2)
    mean, _ = _posterior(prior, torch.eye(4), y.flatten(), 0.05)
    x = map_estimate(y, op, prior, space="pixel", steps=2000, lr=0.01)
    # For a Gaussian the mode is the mean; Adam at lr 0.01 settles within ~1e-3 of it.
    assert (x.flatten() - mean).abs().max() < 3e-3, (x.flatten(), mean)
    with pytest.raises(RestoreError, match="space must be"):
        map_estimate(y, op, prior, space="both", steps=1)


def test_pixelcnn_inpainting_keeps_observed_pixels_and_refuses_what_it_cannot_do():
    torch.manual_seed(0)
    prior = PixelCNNPrior(PixelCNN(6, layers=3, channels=8, kernel=3)).eval()
    assert solvers_for(prior) == ["conditional"] and PRIOR_SOLVERS["conditional"].__wrapped__ is pixelcnn_inpaint
    x = (torch.rand(2, 1, 6, 6, generator=torch.Generator().manual_seed(1)) * 255).round() / 255
    op = O.Inpainting.centre_box((1, 6, 6), 2)
    y = op(x)
    out = pixelcnn_inpaint(y, op, prior, particles=3, generator=torch.Generator().manual_seed(0))
    observed = op.mask.expand_as(x).bool()
    assert torch.equal(out[observed], x[observed]) and out.shape == x.shape
    with pytest.raises(RestoreError, match="needs a noiseless measurement"):
        noisy = O.Inpainting.centre_box((1, 6, 6), 2, noise=O.GaussianNoise(0.1))
        pixelcnn_inpaint(noisy(x, generator=torch.Generator().manual_seed(0)), noisy, prior)


def test_pixel_space_solvers_run_on_an_operator_with_no_adjoint():
    """Phase retrieval has only A: the pixel-space MAP and Langevin start from mid-gray instead of calling
    an adjoint the operator lacks (they declare no operator needs)."""
    from restore.operators import GaussianNoise, PhaseRetrieval
    from restore.priors import load_prior

    prior = load_prior("flow")
    x = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    op = PhaseRetrieval(2.0, GaussianNoise(0.05))
    y = op(x, generator=torch.Generator().manual_seed(1))
    for name, kwargs in (("map", {"space": "pixel"}), ("langevin", {"space": "pixel"})):
        out = PRIOR_SOLVERS[name](y, op, prior, steps=2, generator=torch.Generator().manual_seed(0), **kwargs)
        assert out.shape == x.shape and torch.isfinite(out).all(), name
