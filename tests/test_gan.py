"""The GAN prior: the WGAN-GP penalty, the two-phase training loop and its resume, truncation."""

from __future__ import annotations

import pytest
import torch

from restore import training
from restore.errors import RestoreError
from restore.priors.gan import GAN, Discriminator, GANPrior, Generator, MinibatchStd, gan_phases, gradient_penalty, train_gan


pytestmark = pytest.mark.usefixtures("one_thread")


def _data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 8, 8, generator=g) * 255).round().to(torch.uint8)


def _image_folder(tmp_path, n=12):
    """``_data(n)`` written as PNG files, for train_gan's folder datasets."""
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(_data(n)):
        Image.fromarray(img[0].numpy()).save(folder / f"{i}.png")
    return str(folder)


def test_gradient_penalty_of_a_linear_critic():
    # D(x) = <w, x> has gradient w everywhere, so the penalty is (||w|| - 1)^2 at every interpolate.
    w = torch.randn(64, generator=torch.Generator().manual_seed(0))
    net = lambda kind, x: x.flatten(1) @ w  # noqa: E731
    real, fake = torch.rand(5, 1, 8, 8), torch.rand(5, 1, 8, 8)
    gp = gradient_penalty(net, real, fake, torch.Generator().manual_seed(1))
    assert float(gp) == pytest.approx(float((w.norm() - 1) ** 2), rel=1e-5)


@pytest.mark.parametrize("spectral", [False, True])
def test_wgan_gp_critic_steps_lower_the_critic_loss(spectral):
    torch.manual_seed(0)
    gan = GAN(Generator(8, 1, latent_dim=4, width=4), Discriminator(8, 1, width=4, norm=False, spectral=spectral))
    critic = gan_phases("wgan-gp", latent_dim=4)[0]
    assert critic.repeats == 5 and critic.betas == (0.0, 0.9)
    opt = torch.optim.Adam(gan.discriminator.parameters(), lr=1e-3, betas=critic.betas)
    x = _data(16).float() / 255

    def loss():
        return critic.loss_fn(gan, x, torch.Generator().manual_seed(0))["loss"]

    before = float(loss().detach())
    for _ in range(20):
        opt.zero_grad()
        loss().backward()
        opt.step()
    # Critic steps must lower the critic loss (-W estimate + 10 x penalty): measured 8.9 -> 7.2
    # here, 6.5 -> 3.4 with spectral normalisation; steps of the wrong sign raise it.
    after = float(loss().detach())
    assert after < before - 0.5, (before, after)


def _run(out, steps, resume=False):
    torch.manual_seed(0)
    gan = GAN(Generator(8, 1, latent_dim=4, width=4), Discriminator(8, 1, width=4))
    return training.train(model=gan, phases=gan_phases("ns", latent_dim=4), data={"train": _data()},
                          config={"family": "gan"},
                          options=training.TrainOptions(out=out, steps=steps, batch_size=8, lr=2e-4, ema_decay=0.5,
                                                        checkpoint_every=3, resume=resume))


def test_two_phase_training_resumes_exactly(tmp_path):
    _run(tmp_path / "straight", 6)
    _run(tmp_path / "split", 3)
    _run(tmp_path / "split", 6, resume=True)
    a, meta = training.load_checkpoint(tmp_path / "straight" / "checkpoint")
    b, _ = training.load_checkpoint(tmp_path / "split" / "checkpoint")
    # Both optimisers' states are saved and restored: the split run ends bit-identical.
    assert any(k.startswith("optim_g.") for k in a) and len(meta["more_param_groups"]) == 1
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = (tmp_path / "split" / "log.jsonl").read_text()
    assert '"d_loss"' in log and '"g_loss"' in log and '"d_d_real"' in log


def test_truncation_bounds_every_latent_entry():
    prior = GANPrior(Generator(8, 1, latent_dim=16, width=4)).eval()
    z = prior.latent(200, generator=torch.Generator().manual_seed(0), truncation=0.5)
    assert z.shape == (200, 16) and float(z.abs().max()) <= 0.5
    x = prior.sample(3, generator=torch.Generator().manual_seed(0), truncation=1.0)
    assert x.shape == (3, 1, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1


def test_minibatch_std_sees_the_spread_of_each_group():
    layer = MinibatchStd(group=4)
    x = torch.randn(8, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    x[1::2] = 5.0  # images 1, 3, 5, 7 (group 1 of two groups taken as i % 2) are identical
    out = layer(x)
    assert out.shape == (8, 4, 2, 2) and torch.equal(out[:, :3], x)
    # Group 1 has no spread: only the 1e-8 under the square root is left. Group 0's value is the
    # mean over features of the population std over its 4 images, recomputed here directly.
    assert torch.allclose(out[1::2, 3], torch.full((4, 2, 2), 1e-4))
    expected = x[0::2].std(dim=0, unbiased=False).mean()
    assert torch.allclose(out[0::2, 3], expected.expand(4, 2, 2), atol=1e-6)
    # A batch of 6 is split into groups of gcd(6, 4) = 2 images.
    assert MinibatchStd(4)(torch.randn(6, 1, 2, 2)).shape == (6, 2, 2, 2)


def test_a_deeper_generator_with_minibatch_std_trains_exports_and_reloads(tmp_path):
    folder = _image_folder(tmp_path)
    with pytest.raises(RestoreError, match="pack"):
        train_gan(data=folder, out=tmp_path / "bad", size=8, latent_dim=4, width=4, pack=3, steps=2, batch_size=4)
    summary = train_gan(data=folder, out=tmp_path / "gan", size=8, latent_dim=4, width=4, depth=1,
                        minibatch_std=True, pack=2, steps=2, batch_size=4, checkpoint_every=2, sample_every=2)
    assert summary["step"] == 2 and summary["finished"]
    prior = GANPrior.from_pretrained(tmp_path / "gan")
    assert prior.run_info["depth"] == 1 and prior.run_info["minibatch_std"] is True and prior.run_info["pack"] == 2
    # One 3x3 convolution (with batch norm) at each of the two resolutions.
    assert sum(isinstance(m, torch.nn.Conv2d) for m in prior.generator.net) == 2
    assert prior.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)


def test_infogan_fully_connected_layers_train_export_and_reload(tmp_path):
    folder = _image_folder(tmp_path)
    with pytest.raises(RestoreError, match="--fc"):
        train_gan(data=folder, out=tmp_path / "bad", size=8, latent_dim=4, width=4, fc=-1, steps=2, batch_size=4)
    train_gan(data=folder, out=tmp_path / "gan", size=8, latent_dim=4, width=4, fc=16, steps=2, batch_size=4,
              checkpoint_every=2, sample_every=2)
    prior = GANPrior.from_pretrained(tmp_path / "gan")
    assert prior.run_info["fc"] == 16
    # z (4) -> 16 units -> (8, 2, 2) in the generator; (8, 2, 2) -> 16 units -> 1 logit in the discriminator.
    assert [m.weight.shape for m in prior.generator.project if isinstance(m, torch.nn.Linear)] == [(16, 4), (32, 16)]
    d = Discriminator(8, 1, width=4, fc=16)
    assert [m.weight.shape for m in d.net if isinstance(m, torch.nn.Linear)] == [(16, 32), (1, 16)]
    assert d.eval()(torch.zeros(3, 1, 8, 8)).shape == (3,)
    assert prior.sample(2, generator=torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)


def test_a_packed_discriminator_judges_packs_of_images():
    torch.manual_seed(0)
    d = Discriminator(8, 1, width=4, pack=2).eval()
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    logits = d(x)
    assert logits.shape == (3,)
    # Pack i is images 2i and 2i + 1 stacked as channels: swapping the two images of pack 0 changes
    # its logit (the channels are not symmetric) and leaves the other packs' alone.
    swapped = x[[1, 0, 2, 3, 4, 5]]
    assert not torch.allclose(d(swapped)[0], logits[0]) and torch.allclose(d(swapped)[1:], logits[1:])
    with pytest.raises(RestoreError, match="packs of 2"):
        d(x[:5])


def test_spectral_norm_bounds_every_discriminator_layer_and_a_run_resumes(tmp_path):
    d = Discriminator(8, 1, width=4, spectral=True).train()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in d.modules())
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for _ in range(30):  # one power iteration per forward pass in training mode
        d(x)
    layers = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 3
    for layer in layers:
        # The largest singular value of the weight as the layer uses it (reshaped to a matrix, as Miyato
        # et al. do for convolutions), against the unnormalised one it was divided by.
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        raw = torch.linalg.matrix_norm(layer.parametrizations.weight.original.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1) < 1e-3 and abs(float(raw) - 1) > 0.05
    folder = _image_folder(tmp_path)
    kwargs = dict(data=folder, out=tmp_path / "gan", size=8, latent_dim=4, width=4, spectral=True, batch_size=4,
                  checkpoint_every=1, sample_every=2)
    train_gan(**kwargs, steps=2)
    summary = train_gan(**kwargs, steps=3, resume=True)  # the checkpoint holds the power-iteration vectors too
    assert summary["step"] == 3 and summary["finished"]
    assert GANPrior.from_pretrained(tmp_path / "gan").run_info["spectral_norm"] is True
