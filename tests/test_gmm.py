"""The Gaussian-mixture patch prior (EPLL, Zoran & Weiss 2011): an exact density that integrates to one, its
score, EM that recovers a known mixture, the patch posterior and Tweedie's estimate in closed form, and the
EPLL solver against the exact minimiser of its objective on a one-component mixture."""

from __future__ import annotations


import numpy as np
import pytest
import torch
from PIL import Image

from restore.priors import gmm as G
from restore.solvers import PRIOR_SOLVERS

pytestmark = pytest.mark.usefixtures("one_thread")


def random_mixture(K: int, patch: int, channels: int = 1, seed: int = 0, scale: float = 0.3, spread: float = 0.3):
    """A mixture in coordinates (float64): weights, means (``spread`` apart), SPD covariances."""
    g = torch.Generator().manual_seed(seed)
    n = channels * patch * patch - 1
    logw = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    mu = spread * torch.randn(K, n, generator=g, dtype=torch.float64)
    A = scale * torch.randn(K, n, n, generator=g, dtype=torch.float64)
    cov = A @ A.transpose(1, 2) / n + 0.02 * torch.eye(n, dtype=torch.float64)
    return logw, mu, cov


def draw(logw, mu, cov, N: int, seed: int = 1) -> torch.Tensor:
    """N exact draws of coordinates c from the mixture."""
    g = torch.Generator().manual_seed(seed)
    k = torch.multinomial(logw.exp(), N, replacement=True, generator=g)
    L = torch.linalg.cholesky(cov)
    return mu[k] + torch.einsum("kij,kj->ki", L[k], torch.randn(N, mu.shape[1], generator=g, dtype=torch.float64))


def test_the_helmert_basis_is_orthonormal_and_removes_the_dc():
    B = G.helmert_basis(64)
    assert torch.allclose(B.T @ B, torch.eye(63, dtype=torch.float64), atol=1e-12)
    assert float((torch.ones(64, dtype=torch.float64) @ B).abs().max()) < 1e-12


def test_one_component_is_the_gaussian_closed_form_and_the_density_integrates_to_one():
    from torch.distributions import MultivariateNormal

    logw, mu, cov = random_mixture(1, 2)
    prior = G.to_pixels(logw, mu, cov, 2, 1)
    c = draw(logw, mu, cov, 200)
    v = c @ G.helmert_basis(4).T + 0.4  # any DC: it is not modelled
    ref = MultivariateNormal(mu[0], cov[0]).log_prob(c)
    assert torch.allclose(prior.patch_log_prob(v).double(), ref, atol=1e-4)
    # Three components on 2x2 patches: n = 3 coordinates; a Riemann sum over a grid covering the mass.
    logw, mu, cov = random_mixture(3, 2, seed=2)
    prior = G.to_pixels(logw, mu, cov, 2, 1)
    axis = torch.linspace(-2.5, 2.5, 101, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis, axis)  # (101^3, 3)
    density = prior.patch_log_prob(grid @ G.helmert_basis(4).T).double().exp()
    assert abs(float(density.sum()) * float(axis[1] - axis[0]) ** 3 - 1) < 5e-3


def test_the_score_is_the_gradient_of_the_log_density():
    logw, mu, cov = random_mixture(4, 3)
    prior = G.to_pixels(logw, mu, cov, 3, 1)
    v = (draw(logw, mu, cov, 64) @ G.helmert_basis(9).T + 0.5).float().requires_grad_(True)
    (grad,) = torch.autograd.grad(prior.patch_log_prob(v).sum(), v)
    score = prior.patch_score(v.detach())
    assert torch.allclose(score, grad, atol=1e-3 * float(grad.abs().max()))


def test_em_recovers_a_known_mixture_and_never_lowers_the_likelihood():
    logw, mu, cov = random_mixture(3, 2, seed=3, spread=1.0)
    c = draw(logw, mu, cov, 30_000).float()
    lw, m, cv = G.init_mixture(c, 3, torch.Generator().manual_seed(0))
    history = []
    for _ in range(40):
        lw, m, cv, ll = G.em_step(c, lw, m, cv)
        history.append(ll)
    assert all(b >= a - 1e-4 for a, b in zip(history, history[1:]))
    order = [int((m - mu[j]).norm(dim=1).argmin()) for j in range(3)]  # match components by their means
    assert sorted(order) == [0, 1, 2]
    assert torch.allclose(lw.exp()[order], logw.exp(), atol=0.02)
    assert torch.allclose(m[order], mu, atol=0.05)
    assert float((cv[order] - cov).abs().max()) < 0.03
    truth = float(torch.logsumexp(torch.stack([logw[j] + torch.distributions.MultivariateNormal(mu[j], cov[j]).log_prob(c.double())
                                               for j in range(3)], 1), 1).mean())
    assert abs(history[-1] - truth) < 0.01


def test_patch_posteriors_are_the_wiener_filter_and_the_mixture_mean():
    logw, mu, cov = random_mixture(1, 2, seed=4)
    prior = G.to_pixels(logw, mu, cov, 2, 1)
    B = G.helmert_basis(4)
    v = draw(logw, mu, cov, 50) @ B.T + 0.3
    s = 0.2
    wiener = mu[0] + (cov[0] @ torch.linalg.solve(cov[0] + s**2 * torch.eye(3, dtype=torch.float64),
                                                  (v @ B - mu[0]).T)).T
    expected = wiener @ B.T + v.mean(1, keepdim=True)  # the DC passes through
    for rule in ("map", "mean"):
        assert torch.allclose(prior.denoise_patches(v, s, rule).double(), expected, atol=1e-4)
    # Two components: the mean rule is the responsibility-weighted average of the two Wiener filters.
    logw, mu, cov = random_mixture(2, 2, seed=5)
    prior = G.to_pixels(logw, mu, cov, 2, 1)
    v = draw(logw, mu, cov, 50) @ B.T
    c = v @ B
    eye = torch.eye(3, dtype=torch.float64)
    logr = torch.stack([logw[k] + torch.distributions.MultivariateNormal(mu[k], cov[k] + s**2 * eye).log_prob(c)
                        for k in range(2)], 1)
    r = logr.softmax(1)
    est = sum(r[:, k : k + 1] * (mu[k] + (cov[k] @ torch.linalg.solve(cov[k] + s**2 * eye, (c - mu[k]).T)).T)
              for k in range(2))
    assert torch.allclose(prior.denoise_patches(v, s, "mean").double(), est @ B.T, atol=1e-4)


def test_tweedie_on_a_one_patch_image_is_the_exact_posterior_mean():
    """An image the size of one patch: x0_hat(x_t) in the DDPM convention is the closed-form posterior mean
    of the image given the noisy one, (x_t / sqrt(alpha_bar) + 1) / 2 with noise std sqrt((1 - a) / a) / 2."""
    logw, mu, cov = random_mixture(1, 3, seed=6)
    prior = G.to_pixels(logw, mu, cov, 3, 1)
    x_t = torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    t = 300
    a = prior.alpha_bar[t].double()
    noisy = (x_t.double() / a.sqrt() + 1) / 2
    s = float(((1 - a) / a).sqrt() / 2)
    B = G.helmert_basis(9)
    v = noisy.reshape(2, 9)
    c = v @ B
    post = mu[0] + (cov[0] @ torch.linalg.solve(cov[0] + s**2 * torch.eye(8, dtype=torch.float64), (c - mu[0]).T)).T
    x0 = (post @ B.T + v.mean(1, keepdim=True)).reshape(2, 1, 3, 3)
    eps, x0_model = prior.eps_and_x0(x_t, t)
    assert torch.allclose(((x0_model + 1) / 2).double(), x0, atol=1e-4)
    assert torch.allclose(eps.double(), (x_t.double() - a.sqrt() * (2 * x0 - 1)) / (1 - a).sqrt(), atol=1e-3)


def test_patch_average_is_the_identity_without_noise_and_bands_do_not_change_it(monkeypatch):
    logw, mu, cov = random_mixture(3, 4, seed=7)
    prior = G.to_pixels(logw, mu, cov, 4, 1)
    x = torch.rand(2, 1, 23, 17, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(prior.patch_average(x, 0.0), x, atol=1e-5)
    whole = prior.patch_average(x, 0.1, "mean")
    x_grad = x.clone().requires_grad_(True)
    (g_whole,) = torch.autograd.grad(prior.patch_average(x_grad, 0.1, "mean").square().sum(), x_grad)
    monkeypatch.setattr(G, "BAND", 30)  # two patch rows per band: 10 bands
    assert torch.allclose(prior.patch_average(x, 0.1, "mean"), whole, atol=1e-5)
    (g_bands,) = torch.autograd.grad(prior.patch_average(x_grad, 0.1, "mean").square().sum(), x_grad)
    assert torch.allclose(g_bands, g_whole, atol=1e-4)
    counts = torch.nn.functional.fold(torch.ones(1, 16, 20 * 14), (23, 17), 4)[0, 0]
    assert torch.equal(G.patch_counts(23, 17, 4, x), counts)


def epll_minimiser(prior, y: torch.Tensor, sigma: float) -> torch.Tensor:
    """For a one-component mixture, the exact minimiser of 1/(2 sigma^2) ||x - y||^2 - EPLL(x) / p^2 (a
    quadratic): (I / sigma^2 + H / p^2) x = y / sigma^2 + g / p^2, H = sum_i P_i^T B S^-1 B^T P_i, g likewise."""
    _, _, h, w = y.shape
    p = prior.patch
    D = h * w
    cols = torch.nn.functional.unfold(torch.eye(D, dtype=torch.float64).reshape(D, 1, h, w), p)  # (D, p^2, L)
    P = cols.permute(2, 1, 0)  # (L, p^2, D): the patch extraction matrices
    B = G.helmert_basis(p * p)
    S_inv = torch.linalg.inv(B.T @ prior.covs[0].double() @ B)
    mu_c = prior.mu[0].double()
    BP = B.T @ P  # (L, n, D)
    H = torch.einsum("lnd,nm,lme->de", BP, S_inv, BP)
    g = torch.einsum("lnd,nm,m->d", BP, S_inv, mu_c)
    A = torch.eye(D, dtype=torch.float64) / sigma**2 + H / p**2
    x = torch.linalg.solve(A, y.double().reshape(D) / sigma**2 + g / p**2)
    return x.reshape(1, 1, h, w)


def test_epll_converges_to_the_minimiser_of_its_objective_on_a_gaussian_patch_prior():
    from restore.operators import Denoising, GaussianNoise

    logw, mu, cov = random_mixture(1, 3, seed=8, scale=0.2)
    prior = G.to_pixels(logw, mu, cov, 3, 1)
    x = torch.rand(1, 1, 9, 11, generator=torch.Generator().manual_seed(1))
    sigma = 0.2
    op = Denoising(GaussianNoise(sigma))
    y = op(x, generator=torch.Generator().manual_seed(2))
    exact = epll_minimiser(prior, y, sigma)
    betas = [float(b) for b in torch.logspace(0, 4, 20) / sigma**2]  # beta up to 1e4 / sigma^2, 50 rounds each
    x_hat = PRIOR_SOLVERS["epll"](y, op, prior, betas=betas, iterations=50, weights="exact")
    inside = exact.clamp(0, 1) == exact  # the solver clips to [0, 1]
    err = (x_hat.double() - exact)[inside].abs().max()
    assert err < 3e-3, float(err)  # a missing factor (lambda without p^2, a weight of beta) is off by > 0.05


@pytest.fixture(scope="module")
def tiny_gmm(tmp_path_factory):
    """A 6-component mixture of 8x8 patches fitted by EM (4 iterations) to three small smooth gray photos."""
    root = tmp_path_factory.mktemp("gmm")
    rng = np.random.default_rng(0)
    (root / "photos").mkdir()
    for i in range(3):
        yy, xx = np.mgrid[0:64, 0:80]
        img = 128 + 60 * np.sin(xx / (5 + 3 * i) + rng.uniform(0, 6)) * np.cos(yy / (7 + i)) + rng.normal(0, 2, xx.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / "photos" / f"{i}.png")
    G.train_gmm(data=str(root / "photos"), out=root / "run", components=6, patches=20_000, iterations=4,
                log=lambda *_: None)
    return root


def smooth_image(h: int, w: int, seed: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return (0.5 + 0.23 * torch.sin(xx / 6 + seed) * torch.cos(yy / 8))[None, None]


def test_a_fitted_mixture_restores_every_operator_better_than_its_measurement(tiny_gmm):
    from restore import operators as O
    from restore.operators import GaussianNoise
    from restore.priors import load_prior

    prior = load_prior(str(tiny_gmm / "run"))
    assert prior.family == "gmm" and 1 <= prior.run_info["iterations_done"] <= 4
    x = smooth_image(40, 44, 0)
    g = torch.Generator().manual_seed(0)
    mask = (torch.rand(1, 40, 44, generator=g) > 0.5).float()
    cases = {"denoise": O.Denoising(GaussianNoise(0.1)), "inpaint": O.Inpainting(mask),
             "blur": O.Blur.gaussian(1.5, 9, GaussianNoise(0.01)), "valid blur": O.ValidBlur(O.Blur.gaussian(1.5, 9).kernel, GaussianNoise(0.01)),
             "superres": O.Downsample(2, "bicubic", GaussianNoise(0.01))}
    for name, op in cases.items():
        truth = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect") if name == "valid blur" else x
        y = op(truth, generator=torch.Generator().manual_seed(1))
        x_hat = PRIOR_SOLVERS["epll"](y, op, prior)
        assert x_hat.shape == truth.shape and torch.isfinite(x_hat).all()
        err = (op.field_of_view(x_hat) - op.field_of_view(truth)).square().mean()
        start = op.A_pinv(y) if name in ("superres", "inpaint") else op.grow(y) if name == "valid blur" else y
        baseline = (op.field_of_view(truth) - op.field_of_view(start)).square().mean()
        assert err < 0.5 * baseline, (name, float(err), float(baseline))


def test_epll_can_start_from_a_classical_estimate(tiny_gmm, monkeypatch):
    """init="tv": EPLL's first z-step sees TV's estimate instead of the biharmonic fill."""
    from restore import operators as O
    from restore.priors import load_prior
    from restore.solvers import CLASSICAL

    prior = load_prior(str(tiny_gmm / "run"))
    op = O.Inpainting.box((1, 40, 44), 12, 10, 16, 16)
    y = op(smooth_image(40, 44, 1))
    seen = []
    average = prior.patch_average
    monkeypatch.setattr(prior, "patch_average", lambda x, *a: seen.append(x.clone()) or average(x, *a))
    warm = PRIOR_SOLVERS["epll"](y, op, prior, steps=2, init="tv")
    assert torch.allclose(seen[0], CLASSICAL["tv"](y, op, None).clamp(0, 1))
    assert not torch.allclose(warm, PRIOR_SOLVERS["epll"](y, op, prior, steps=2))


def test_diffusion_solvers_run_on_the_mixture_through_tweedie(tiny_gmm):
    from restore.operators import Denoising, GaussianNoise
    from restore.priors import load_prior

    prior = load_prior(str(tiny_gmm / "run"))
    x = smooth_image(24, 20, 1)
    op = Denoising(GaussianNoise(0.1))
    y = op(x, generator=torch.Generator().manual_seed(0))
    noisy = float((y - x).square().mean())
    for name, steps in (("tweedie", None), ("ddnm", 5)):
        x_hat = PRIOR_SOLVERS[name](y, op, prior, steps=steps, generator=torch.Generator().manual_seed(0))
        assert float((x_hat - x).square().mean()) < 0.5 * noisy, name


def test_training_resumes_and_the_cli_restores_with_epll(tiny_gmm, tmp_path, capsys, monkeypatch):
    import json
    import sys

    from restore import io
    from restore.cli import main

    def cli(*args):
        monkeypatch.setattr(sys, "argv", ["restore", *map(str, args)])
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr()
        return capsys.readouterr().out

    photos, run = tiny_gmm / "photos", tmp_path / "run"
    cli("train", "gmm", "--data", photos, "--out", run, "--components", 3, "--patch-count", 5000, "--steps", 2)
    assert json.loads((run / "run.json").read_text())["iterations_done"] == 2
    cli("train", "gmm", "--data", photos, "--out", run, "--components", 3, "--patch-count", 5000, "--steps", 4, "--resume")
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    with pytest.raises(SystemExit) as failed:  # other options than the run's: refused in one line
        monkeypatch.setattr(sys, "argv", ["restore", "train", "gmm", "--data", str(photos), "--out", str(run),
                                          "--components", "4", "--patch-count", "5000", "--steps", "6", "--resume"])
        main()
    assert failed.value.code == 2 and "components" in capsys.readouterr().err
    # Resuming gives the run that never stopped (EM may stop early once the likelihood stops rising).
    straight = tmp_path / "straight"
    cli("train", "gmm", "--data", photos, "--out", straight, "--components", 3, "--patch-count", 5000, "--steps", 4)
    log_straight = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [r["iteration"] for r in log_straight] and len(log) > 2
    assert [r["train_log_likelihood"] for r in log] == [r["train_log_likelihood"] for r in log_straight]
    assert io.load_arrays(run / "gmm.safetensors")["covs"].allclose(io.load_arrays(straight / "gmm.safetensors")["covs"])
    io.write_png(tmp_path / "g.png", smooth_image(30, 34, 2))
    out = cli("denoise", tmp_path / "g.png", "--noise", "0.1", "--prior", run, "-o", tmp_path / "d.png",
              "--reference", tmp_path / "g.png", "--json")
    result = json.loads(out)
    assert result["solver"] == "epll" and result["prior_family"] == "gmm" and result["psnr"] > 24
    out = cli("inpaint", tmp_path / "g.png", "--random", "0.5", "--prior", run, "-o", tmp_path / "i.png", "--steps", 3,
              "--json")
    assert json.loads(out)["steps"] == 3


def test_exact_samples_have_the_mixture_moments():
    logw, mu, cov = random_mixture(3, 2, seed=9)
    prior = G.to_pixels(logw, mu, cov, 2, 1)
    x = prior.sample(40_000, generator=torch.Generator().manual_seed(0), clip=False)
    assert x.shape == (40_000, 1, 2, 2) and torch.allclose(x.mean((1, 2, 3)), torch.full((40_000,), 0.5), atol=1e-5)
    c = x.reshape(40_000, 4).double() @ G.helmert_basis(4)
    w = logw.exp()
    mean = w @ mu
    second = sum(w[k] * (cov[k] + torch.outer(mu[k], mu[k])) for k in range(3))
    assert torch.allclose(c.mean(0), mean, atol=0.02)
    assert torch.allclose(torch.cov(c.T), second - torch.outer(mean, mean), atol=0.02)


def test_the_shipped_gray_mixture_denoises_held_out_photos_better_than_tv_and_wiener():
    """`--prior gmm` on a gray photo is gmm-photo-gray, and EPLL with it beats the classical denoisers on crops
    of the training run's held-out images (never a test image)."""
    from conftest import held_out_crops

    from restore.operators import Denoising, GaussianNoise
    from restore.priors import load_prior
    from restore.solvers import CLASSICAL

    prior = load_prior("gmm", image_shape=(1, 64, 64))
    assert prior.family == "gmm" and prior.run_info["data"] == "train400" and prior.components == 200
    x = held_out_crops(prior, channels=1, top=40, left=40, size=64)
    op = Denoising(GaussianNoise(25 / 255))
    y = op(x, generator=torch.Generator().manual_seed(0))

    def psnr(x_hat):
        return float((-10 * torch.log10((x_hat - x).square().mean((1, 2, 3)))).mean())

    ours = psnr(PRIOR_SOLVERS["epll"](y, op, prior))
    for name in ("tv", "wiener"):
        assert ours > psnr(CLASSICAL[name](y, op, None)) + 0.5, name


def test_gmm_picks_the_colour_mixture_for_colour_images_and_the_gray_one_otherwise():
    from restore.priors import load_prior

    colour = load_prior("gmm", image_shape=(3, 50, 60))
    assert colour.image_shape[0] == 3 and colour.channels == 3 and colour.channel_groups == 1
    assert colour.run_info["data"] == "bsds400"
    gray_on_colour = load_prior("gmm-photo-gray", image_shape=(3, 50, 60))
    assert gray_on_colour.channels == 1 and gray_on_colour.channel_groups == 3
    x = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(gray_on_colour.patch_average(x, 0.0), x, atol=1e-5)
    assert torch.allclose(colour.patch_average(x, 0.0), x, atol=1e-5)


def test_the_papers_border_weights_denoise_the_border_band_better_and_leave_the_inside_alone():
    """EPLL's x-step weights every pixel as if p^2 patches covered it (the paper's code): within p - 1 of a
    border, where fewer patches do, that denoises better than the objective's own weights (which leave a
    corner pixel close to its measurement); away from the border the two agree."""
    from conftest import held_out_crops

    from restore.operators import Denoising, GaussianNoise
    from restore.priors import load_prior

    prior = load_prior("gmm-photo-gray", image_shape=(1, 48, 48))
    x = held_out_crops(prior, channels=1, top=40, left=40, size=48)
    op = Denoising(GaussianNoise(25 / 255))
    y = op(x, generator=torch.Generator().manual_seed(0))
    band = torch.ones_like(x, dtype=torch.bool)
    band[..., 7:-7, 7:-7] = False
    err = {w: (PRIOR_SOLVERS["epll"](y, op, prior, weights=w) - x).square() for w in ("paper", "exact")}
    assert err["paper"][band].mean() < 0.8 * err["exact"][band].mean()
    inside = [float(e[..., 9:-9, 9:-9].mean()) for e in err.values()]
    assert abs(inside[0] - inside[1]) < 0.03 * inside[1]
