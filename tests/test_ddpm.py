"""The DDPM adapter against diffusers itself, on a tiny randomly initialised UNet (offline)."""

import json

import pytest
import torch

from restore.errors import RestoreError
from restore.priors.ddpm import DDPMPrior


@pytest.mark.parametrize("steps", [20, 5])
def test_ancestral_sampling_matches_diffusers_pipeline(ddpm_dir, steps):
    from diffusers import DDPMPipeline

    pipe = DDPMPipeline.from_pretrained(ddpm_dir, use_safetensors=True)
    ref = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=steps, output_type="pt").images
    ours = DDPMPrior.from_pretrained(ddpm_dir).sample(2, steps=steps, generator=torch.Generator().manual_seed(3))
    ref = ref.permute(0, 3, 1, 2) if ref.shape[-1] == 1 else ref  # pipelines return (B, H, W, C) arrays
    # The same float32 operations on the same random draws: measured max difference 0.0; using
    # sigma_t^2 = beta_t instead of beta_tilde_t changes the result by 0.07, far above this bound.
    assert torch.allclose(ours, torch.as_tensor(ref), atol=1e-6)
    # A different seed gives a different image: the comparison is not vacuous.
    other = DDPMPrior.from_pretrained(ddpm_dir).sample(2, steps=steps, generator=torch.Generator().manual_seed(4))
    assert (other - ours).abs().max() > 1e-2


def test_tweedie_identities(ddpm_dir):
    prior = DDPMPrior.from_pretrained(ddpm_dir)
    x_t = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    t = 7
    a = prior.alpha_bar[t]
    eps, x0 = prior.eps_and_x0(x_t, t)
    # x_t = sqrt(a) x0 + sqrt(1 - a) eps holds by construction of Tweedie's estimate.
    assert torch.allclose(a.sqrt() * x0 + (1 - a).sqrt() * eps, x_t, atol=1e-5)
    assert torch.allclose(prior.x0_hat(x_t, t), (x0 + 1) / 2)
    assert torch.allclose(prior.score(x_t, t), -eps / (1 - a).sqrt())


def test_ddim_is_deterministic_given_the_start(ddpm_dir):
    prior = DDPMPrior.from_pretrained(ddpm_dir)
    a = prior.sample(2, steps=5, method="ddim", generator=torch.Generator().manual_seed(1))
    b = prior.sample(2, steps=5, method="ddim", generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (2, 1, 8, 8) and 0 <= a.min() and a.max() <= 1


def test_refuses_pickles_and_non_ddpm_folders(ddpm_dir, tmp_path):
    with pytest.raises(RestoreError, match="not a diffusers DDPM folder"):
        DDPMPrior.from_pretrained(tmp_path)
    (tmp_path / "unet").mkdir()
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "unet" / "config.json").write_text((ddpm_dir / "unet" / "config.json").read_text())
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps({"num_train_timesteps": 20}))
    (tmp_path / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(RestoreError, match="pickled"):
        DDPMPrior.from_pretrained(tmp_path)


# ---------------------------------------------------------------------------------------------
# The variational bound in bits/dim


class _Oracle(torch.nn.Module):
    """The exact epsilon-predictor for data that is one fixed image x_star (in [-1, 1]).

    Then E[x_0 | x_t] = x_star at every t, so every posterior mean of the model equals that of
    q(x_{t-1} | x_t, x_0) and the bound's terms are known in closed form.
    """

    def __init__(self, x_star, alpha_bar):
        super().__init__()
        from types import SimpleNamespace

        self.x_star, self.alpha_bar = x_star, alpha_bar
        self.config = SimpleNamespace(sample_size=x_star.shape[-1], in_channels=x_star.shape[1])
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the module a dtype

    @property
    def dtype(self):
        return torch.float32

    def forward(self, x_t, t):
        from types import SimpleNamespace

        a = self.alpha_bar[t[0]]
        return SimpleNamespace(sample=(x_t - a.sqrt() * self.x_star) / (1 - a).sqrt())


def _closed_form_bpd(x_star, betas, variance):
    """L_T + L_0 (+ the variance-mismatch KLs for variance='beta'), in bits/dim, computed directly."""
    import math

    b = betas.double()
    a_bar = torch.cumprod(1 - b, 0)
    a_prev = torch.cat([torch.ones(1, dtype=torch.float64), a_bar[:-1]])
    post = b * (1 - a_prev) / (1 - a_bar)
    x = x_star.double()
    dims = x.numel()
    # KL(N(sqrt(a_T) x, 1 - a_T) || N(0, 1)) per pixel.
    l_t = 0.5 * (-(1 - a_bar[-1]).log() - 1 + (1 - a_bar[-1]) + a_bar[-1] * x.square())
    # L_0: decoder N(x, beta_tilde_2) on the pixel's bin: mass within +-1/255, one-sided at -1 and 1.
    std = post[1].sqrt()
    z = torch.tensor(1 / 255, dtype=torch.float64) / std
    inner = torch.erf(z / math.sqrt(2))
    edge = 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    l_0 = -torch.where(x.abs() > 0.999, edge, inner).log()
    total = l_t.sum() + l_0.sum()
    if variance == "beta":
        ratio = post[1:] / b[1:]  # beta_tilde_t / beta_t for t >= 2
        total += dims * (0.5 * (-ratio.log() + ratio - 1)).sum()
    return float(total / (dims * math.log(2)))


@pytest.mark.parametrize("variance", ["beta_tilde", "beta"])
def test_bits_per_dim_matches_the_closed_form_for_an_exact_model(variance):
    from restore.priors.ddpm import make_scheduler

    betas = make_scheduler("linear", 100).betas
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 1, 4, 4), generator=g).float() / 255
    image[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # both open edge bins
    x_star = image * 2 - 1
    prior = DDPMPrior(_Oracle(x_star, torch.cumprod(1 - betas, 0)), betas)
    got = prior.bits_per_dim(image, variance=variance, generator=g)
    expected = _closed_form_bpd(x_star, betas, variance)
    # Only float rounding separates the two (measured 3e-8 relative); a wrong bin width, a missing
    # edge bin or a KL with the variances swapped moves the value by more than 1e-2.
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # Another image is far less likely under a model of x_star alone.
    other = prior.bits_per_dim(1 - image, variance=variance, generator=g)
    assert other.item() > got.item() + 10


def test_bits_per_dim_of_a_random_network_is_a_positive_bound(ddpm_dir):
    prior = DDPMPrior.from_pretrained(ddpm_dir)
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    bpd = prior.bits_per_dim(images, generator=torch.Generator().manual_seed(1))
    # A bound on -log2 P of a discrete 8-bit image is at least 0; the same seed gives the same value.
    assert bpd.shape == (3,) and (bpd > 0).all() and torch.isfinite(bpd).all()
    again = prior.bits_per_dim(images, generator=torch.Generator().manual_seed(1))
    assert torch.equal(bpd, again)


def test_discretised_decoder_sums_to_one():
    import math

    from restore.priors.ddpm import _discretised_gaussian_log_likelihood

    levels = torch.arange(256, dtype=torch.float64) / 127.5 - 1
    for mean, var in [(0.3, 1e-4), (-0.99, 0.5), (5.0, 1.0), (0.0, 1e-8)]:
        log_p = _discretised_gaussian_log_likelihood(levels, torch.tensor(mean, dtype=torch.float64),
                                                     torch.tensor(math.log(var), dtype=torch.float64))
        assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-9)


def test_ddim_matches_diffusers_ddim_pipeline(ddpm_dir):
    from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(ddpm_dir, subfolder="unet")
    scheduler = DDIMScheduler.from_pretrained(ddpm_dir, subfolder="scheduler")
    pipe = DDIMPipeline(unet=unet, scheduler=scheduler)
    # Ours recomputes epsilon from the clipped x0_hat, which diffusers does with use_clipped_model_output.
    ref = pipe(batch_size=2, generator=torch.Generator().manual_seed(3), num_inference_steps=5, eta=0.0,
               use_clipped_model_output=True, output_type="np").images
    ours = DDPMPrior.from_pretrained(ddpm_dir).sample(2, steps=5, method="ddim", generator=torch.Generator().manual_seed(3))
    ref = torch.from_numpy(ref).permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)
    # Measured max difference 0.0. Keeping the unclipped epsilon instead moves the result by 0.046,
    # and 4 steps instead of 5 by 0.012: both far above this bound.
    assert (ours - ref).abs().max() < 1e-6
