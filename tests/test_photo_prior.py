"""Diffusion priors of photographs: a patch-trained UNet on whole images of any size, gray priors on colour
photos channel by channel, and the rule that picks the shipped prior for an input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import restore.priors as priors
from restore.operators import Blur, Denoising, GaussianNoise, Inpainting, ValidBlur
from restore.priors import load_prior, shipped_for
from restore.solvers import DIFFUSION

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def patch_prior(tmp_path_factory):
    """A DDPM trained for 2 steps on 16x16 patches of three small gray photos (T = 20)."""
    from restore.priors.ddpm import train_ddpm

    root = tmp_path_factory.mktemp("patch")
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 24), (33, 48), (24, 24)]):
        (root / "photos").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(root / "photos" / f"{i}.png")
    train_ddpm(data=str(root / "photos"), out=root / "run", patch=16, width=8, steps=2, batch_size=4, timesteps=20,
               sample_every=100, checkpoint_every=2, val_every=2, precision="fp32")
    return root / "run"


def test_a_patch_trained_prior_restores_images_of_any_size(patch_prior):
    prior = load_prior(str(patch_prior))
    assert prior.any_size and prior.image_shape == (1, 16, 16)
    x = torch.rand(1, 1, 37, 53, generator=torch.Generator().manual_seed(0))  # odd sizes, not multiples of 8
    for op in (Denoising(GaussianNoise(0.1)), Inpainting.random((1, 37, 53), 0.5, seed=0),
               ValidBlur(torch.ones(3, 5), GaussianNoise(0.01))):
        y = op(x, generator=torch.Generator().manual_seed(1))
        for name in ("dps", "ddnm", "dpir") if not isinstance(op, ValidBlur) else ("dps", "dpir"):
            out = DIFFUSION[name](y, op, prior, steps=3, generator=torch.Generator().manual_seed(2))
            assert out.shape == op.input_shape(y.shape) and torch.isfinite(out).all(), (name, op.name)


def test_the_mnist_prior_keeps_its_fixed_size():
    prior = load_prior("ddpm")
    assert not prior.any_size
    from restore.errors import RestoreError

    op = Blur.gaussian(1.0, noise=GaussianNoise(0.05))
    with pytest.raises(RestoreError, match="28x28 images"):
        DIFFUSION["ddnm"](torch.zeros(1, 1, 30, 30), op, prior, steps=2)


def test_a_gray_prior_runs_on_colour_channel_by_channel(patch_prior):
    prior = load_prior(str(patch_prior))
    x_t = torch.randn(2, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    per_channel = torch.cat([prior.eps_and_x0(x_t[:, c : c + 1], 7)[1] for c in range(3)], 1)
    colour = prior.channelwise(3)
    assert colour.image_shape == (3, 16, 16) and prior.image_shape == (1, 16, 16)
    # load_prior fits any prior to the images' channels, a model folder as well as a family name.
    assert load_prior(str(patch_prior), image_shape=(3, 24, 40)).image_shape == (3, 16, 16)
    assert load_prior(str(patch_prior), image_shape=(1, 24, 40)).image_shape == (1, 16, 16)
    assert torch.allclose(colour.eps_and_x0(x_t, 7)[1], per_channel, atol=1e-5)


def test_the_shipped_prior_is_chosen_by_the_input(tmp_path, monkeypatch):
    for name in ("ddpm-mnist", "ddpm-photo-gray"):
        (tmp_path / name).mkdir()
    monkeypatch.setattr(priors, "WEIGHTS", tmp_path)
    assert shipped_for("ddpm", (1, 28, 28)) == ("ddpm-mnist", 1)
    assert shipped_for("ddpm", (1, 321, 481)) == ("ddpm-photo-gray", 1)
    assert shipped_for("ddpm", (3, 321, 481)) == ("ddpm-photo-gray", 3)  # no colour prior shipped: per channel
    assert shipped_for("ddpm", None) == ("ddpm-mnist", 1)
    (tmp_path / "ddpm-photo-rgb").mkdir()
    assert shipped_for("ddpm", (3, 321, 481)) == ("ddpm-photo-rgb", 1)
    (tmp_path / "ddpm-photo-gray").rmdir()
    (tmp_path / "ddpm-photo-rgb").rmdir()
    # Without photo priors a photo gets the MNIST prior, whose size check then explains what fits.
    assert shipped_for("ddpm", (1, 321, 481)) == ("ddpm-mnist", 1)


def test_a_photo_prior_defaults_to_fast_solvers_in_the_cli(patch_prior, tmp_path, capsys, monkeypatch):
    import json
    import sys

    from restore import io
    from restore.cli import main

    io.write_png(tmp_path / "g.png", torch.rand(1, 1, 37, 45, generator=torch.Generator().manual_seed(0)))
    for task, args, solver in (("denoise", ["--noise", "0.1"], "tweedie"), ("inpaint", ["--random", "0.5"], "dpir"),
                               ("deblur", ["--kernel", "gaussian:1.0", "--noise", "0.01"], "dpir"),
                               ("superres", ["--factor", "2"], "dpir")):
        monkeypatch.setattr(sys, "argv", ["restore", task, str(tmp_path / "g.png"), *args, "--prior", str(patch_prior),
                                          "-o", str(tmp_path / f"{task}.png"), "--json"])
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None)
        result = json.loads(capsys.readouterr().out)
        assert result["solver"] == solver
        size = (74, 90) if task == "superres" else (37, 45)  # the input's size (deblur pads), or twice it
        assert io.read_image(tmp_path / f"{task}.png")[0].shape == (1, 1, *size)
        if task != "denoise":  # the held-out choices (restore.cli.common.DEFAULT_PHOTO_SOLVER)
            assert result["hyperparameters"]["views"] == 8
        if task == "superres":
            assert result["steps"] == 20 and result["hyperparameters"]["sigma_max"] == 0.3  # 24, cut to T = 20


def test_the_self_ensemble_commutes_with_mirrors_and_turns(patch_prior):
    """Eight views make Tweedie's estimate equivariant, as the exact posterior mean of a prior that the
    symmetries leave unchanged is; one view of this (untrained) network is not, so the test can fail."""
    from restore.errors import RestoreError

    prior = load_prior(str(patch_prior))
    op = Denoising(GaussianNoise(0.1))
    y = torch.rand(1, 1, 24, 40, generator=torch.Generator().manual_seed(0))
    for move in (lambda v: v.flip(-1), lambda v: torch.rot90(v, 1, (-2, -1)), lambda v: v.flip(-2)):
        eight = DIFFUSION["tweedie"](y, op, prior, views=8)
        assert torch.allclose(DIFFUSION["tweedie"](move(y), op, prior, views=8), move(eight), atol=1e-5)
        one = DIFFUSION["tweedie"](y, op, prior)
        assert not torch.allclose(DIFFUSION["tweedie"](move(y), op, prior), move(one), atol=1e-3)
    with pytest.raises(RestoreError, match="views must be 1, 2, 4 or 8"):
        DIFFUSION["tweedie"](y, op, prior, views=3)


def test_bf16_autocast_gives_what_fp32_gives(patch_prior):
    prior = load_prior(str(patch_prior))
    x_t = torch.randn(1, 1, 40, 48, generator=torch.Generator().manual_seed(0))
    full = prior.eps_and_x0(x_t, 5)[1]
    half = prior.with_autocast(torch.bfloat16).eps_and_x0(x_t, 5)[1]
    assert half.dtype == full.dtype and prior.autocast_dtype is None
    assert (half - full).abs().max() < 0.05 * full.abs().max()  # bfloat16 keeps 8 bits of mantissa


def test_tiles_cover_the_image_and_blend_to_the_untiled_result_of_a_pointwise_map():
    from restore.priors.tiles import starts, tiled

    assert starts(100, 40, 10) == [0, 30, 60] and starts(40, 40, 10) == [0] and starts(30, 40, 10) == [0]
    x = torch.randn(2, 3, 70, 95, generator=torch.Generator().manual_seed(0), requires_grad=True)
    fn = lambda v: torch.sin(3 * v) + v * v  # pointwise: every window gives the same values
    out = tiled(fn, x, 32, 8)
    assert torch.allclose(out, fn(x), atol=1e-6)
    (grad,) = torch.autograd.grad(out.sum(), x)  # through checkpointed windows
    assert torch.allclose(grad, 3 * torch.cos(3 * x) + 2 * x, atol=1e-5)
    # A map that sees its window's own statistics (as GroupNorm does) differs: the test can fail.
    assert not torch.allclose(tiled(lambda v: v - v.mean(), x, 32, 8), x - x.mean(), atol=1e-3)


def test_a_patch_partition_reassembles_the_image_and_each_patch_sees_only_itself():
    from restore.priors.padis import partitioned

    x = torch.randn(2, 3, 37, 50, generator=torch.Generator().manual_seed(0), requires_grad=True)
    t = torch.tensor([4, 9])
    seen = []

    def fn(v, times):
        seen.append((tuple(v.shape[-2:]), times.tolist()))
        return torch.sin(3 * v) + v * v  # pointwise: the partition must not matter

    for shift in [(0, 0), (5, 11), (15, 1)]:
        seen.clear()
        out = partitioned(fn, x, t, 16, shift)
        assert torch.allclose(out, torch.sin(3 * x) + x * x, atol=1e-6)
        assert {s for s, _ in seen} == {(16, 16)}
        rows, cols = -(-(37 + -shift[0] % 16) // 16), -(-(50 + -shift[1] % 16) // 16)
        assert sum(len(ts) for _, ts in seen) == 2 * rows * cols  # every patch of both images once...
        assert [ti for _, ts in seen for ti in ts] == [4] * rows * cols + [9] * rows * cols  # ...at its t
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert torch.allclose(grad, 3 * torch.cos(3 * x) + 2 * x, atol=1e-5)
    # A map that sees its patch (the patch mean): inside one patch of the partition every pixel gets that
    # patch's mean, and patches across a grid line differ, so the test can fail.
    out = partitioned(lambda v, times: v.mean((-2, -1), keepdim=True).expand_as(v), x.detach(), t, 16, (5, 11))
    inner = x.detach()[..., 5:21, 11:27]  # the patch from row 5 and column 11: wholly inside the image
    assert torch.allclose(out[..., 5:21, 11:27], inner.mean((-2, -1), keepdim=True).expand_as(inner), atol=1e-6)
    assert not torch.allclose(out[..., 4, 11], out[..., 5, 11])


def test_a_prior_used_on_patches_repeats_with_its_seed_and_moves_the_partition(patch_prior, monkeypatch):
    from restore.errors import RestoreError

    prior = load_prior(str(patch_prior))
    x_t = torch.randn(1, 1, 40, 56, generator=torch.Generator().manual_seed(0))
    whole = prior.eps_and_x0(x_t, 7)[1]
    first, again = prior.with_patches(16, seed=3), prior.with_patches(16, seed=3)
    assert prior.patches is None and first.patches == 16
    seen = []
    forward = prior.unet.forward
    monkeypatch.setattr(prior.unet, "forward", lambda x, t: seen.append(tuple(x.shape)) or forward(x, t))
    a1, a2 = first.eps_and_x0(x_t, 7)[1], first.eps_and_x0(x_t, 7)[1]
    assert all(s[-2:] == (16, 16) for s in seen)
    assert torch.equal(a1, again.eps_and_x0(x_t, 7)[1])  # the same seed: the same partitions
    assert not torch.equal(a1, a2)  # the next call: another partition
    assert a1.shape == whole.shape and not torch.equal(a1, whole)
    with pytest.raises(RestoreError, match="at least 8"):
        prior.with_patches(4)
    with pytest.raises(RestoreError, match="trained on patches"):
        load_prior("ddpm").with_patches(16)


def test_a_large_image_runs_in_windows_no_larger_than_the_tile(patch_prior, monkeypatch):
    prior = load_prior(str(patch_prior))
    prior.tile, prior.tile_overlap = 32, 8
    seen = []
    forward = prior.unet.forward
    monkeypatch.setattr(prior.unet, "forward", lambda x, t: seen.append(x.shape[-2:]) or forward(x, t))
    x_t = torch.randn(1, 1, 70, 90, generator=torch.Generator().manual_seed(0))
    tiled = prior.eps_and_x0(x_t, 7)[1]
    assert len(seen) == 3 * 4 and max(max(s) for s in seen) <= 32
    prior.tile = None
    whole = prior.eps_and_x0(x_t, 7)[1]
    assert seen[-1] == (72, 96) and tiled.shape == whole.shape


def test_the_shipped_photo_prior_tiled_agrees_with_untiled_and_shows_no_seams():
    """Tweedie denoising of a photo crop in 96-pixel windows against the whole crop at once. Measured on
    six 481x321 held-out photos with 256-pixel windows: 50.7 dB between the two, PSNR to the truth +0.007
    dB for the tiled one (benchmarks/results/ddpm_photo/tiles.md)."""
    from restore.data import image_files, natural_folder

    folder = natural_folder("bsds400")
    image = Image.open(folder / image_files(folder)[0][0]).convert("L")
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)[None, None, :160, :200]
    op = Denoising(GaussianNoise(25 / 255))
    y = op(x, generator=torch.Generator().manual_seed(0))
    prior = load_prior("ddpm-photo-gray")
    whole = DIFFUSION["tweedie"](y, op, prior)
    prior.tile, prior.tile_overlap = 96, 32
    tiled = DIFFUSION["tweedie"](y, op, prior)
    diff = (tiled - whole).abs()
    assert 10 * torch.log10(1 / diff.square().mean()) > 40
    # Seams: the window edges (columns 64 and 96 and rows 64, 96) differ no more than elsewhere
    # (measured: 0.85x and 1.09x the mean; 1.05x and 1.50x with no overlap).
    assert diff[..., 60:100, :].mean() < 1.3 * diff.mean() and diff[..., :, 60:100].mean() < 1.3 * diff.mean()


def test_a_colour_run_can_start_from_a_gray_prior(patch_prior):
    from restore.priors.ddpm import _init_unet, make_scheduler

    gray = load_prior(str(patch_prior))
    colour, steps = _init_unet(str(patch_prior), (3, 16, 16), make_scheduler("linear", 20).betas)
    assert steps == 2  # the gray run's, recorded as init_steps
    assert colour.config.in_channels == 3 and colour.config.out_channels == 3
    # At the start it is the gray network on the channel mean, its output copied to every channel.
    x_t = torch.randn(1, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([5])
    with torch.no_grad():
        out = colour(x_t, t).sample
        ref = gray.unet(x_t.mean(1, keepdim=True), t).sample
    assert torch.allclose(out, ref.expand_as(out), atol=1e-5)
    with pytest.raises(Exception, match="models"):
        _init_unet("ddpm-mnist", (3, 16, 16), make_scheduler("linear", 1000).betas)


def test_the_shipped_colour_prior_is_used_for_colour_photos_and_beats_the_gray_one_on_them():
    """`--prior ddpm` on a colour photo takes ddpm-photo-rgb, which denoises held-out colour photos (crops
    of the colour run's validation images, never a test image) better than the gray prior channel by
    channel: the point of a colour prior."""
    from conftest import held_out_crops

    colour = load_prior("ddpm", image_shape=(3, 96, 96))
    assert colour.image_shape[0] == 3 and colour.channel_groups == 1 and colour.run_info["data"] == "bsds400"
    gray = load_prior("ddpm-photo-gray", image_shape=(3, 96, 96))
    assert gray.channel_groups == 3
    x = held_out_crops(colour, channels=3, top=100, left=150, size=96)
    op = Denoising(GaussianNoise(25 / 255))
    y = op(x, generator=torch.Generator().manual_seed(0))
    psnr = {name: float((-10 * torch.log10((DIFFUSION["tweedie"](y, op, p) - x).square().mean((1, 2, 3)))).mean())
            for name, p in (("colour", colour), ("gray", gray))}
    assert psnr["colour"] > psnr["gray"] + 0.3, psnr


def test_a_resumed_run_keeps_the_record_of_the_prior_it_started_from(patch_prior, tmp_path):
    import json

    from restore.priors.ddpm import train_ddpm

    photos = patch_prior.parent / "photos"
    common = dict(data=str(photos), out=tmp_path / "run", patch=16, batch_size=4, timesteps=20, sample_every=100,
                  checkpoint_every=1, val_every=100, precision="fp32")
    train_ddpm(**common, steps=1, init=str(patch_prior))
    train_ddpm(**common, steps=2, resume=True, width=8)  # the original run's width (the gray prior's)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["init"] == str(patch_prior) and run["init_steps"] == 2 and run["steps_done"] == 2
    assert load_prior(str(tmp_path / "run")).info()["training_steps"] == 4


def test_a_continuation_holds_out_what_the_model_it_continues_held_out(patch_prior, tmp_path):
    """--init under another --seed keeps the init model's train/validation split (so it never trains on what that
    model was validated on, and its curve measures the same images); --resume keeps the run's own; a new run
    splits by its seed."""
    import json

    from restore.data import VAL_FRACTION, held_out_images, split_indices
    from restore.priors.ddpm import train_ddpm

    base = json.loads((patch_prior / "run.json").read_text())
    assert base["split_seed"] == base["seed"] == 0
    # A seed whose split of the three photos holds out another one than seed 0's.
    seed = next(s for s in range(1, 50) if list(split_indices(3, VAL_FRACTION, s)[1]) != list(split_indices(3, VAL_FRACTION, 0)[1]))
    common = dict(data=str(patch_prior.parent / "photos"), patch=16, batch_size=4, timesteps=20, sample_every=100,
                  checkpoint_every=1, val_every=100, precision="fp32", seed=seed)
    train_ddpm(**common, out=tmp_path / "continued", steps=1, init=str(patch_prior))
    train_ddpm(**common, out=tmp_path / "continued", steps=2, resume=True, width=8)
    train_ddpm(**common, out=tmp_path / "new", steps=1, width=8)
    runs = {name: json.loads((tmp_path / name / "run.json").read_text()) for name in ("continued", "new")}
    assert runs["continued"]["split_seed"] == 0 and runs["continued"]["seed"] == seed
    assert runs["new"]["split_seed"] == seed
    held_out = {name: held_out_images(run)[1] for name, run in [("base", base), *runs.items()]}
    assert held_out["continued"] == held_out["base"] != held_out["new"]
    digests = {name: (folder / "train_digests.txt").read_text()
               for name, folder in [("base", patch_prior), ("continued", tmp_path / "continued"), ("new", tmp_path / "new")]}
    assert digests["continued"] == digests["base"] != digests["new"]
    # A run.json from elsewhere that names no seed (or a non-integer one) has no known split: one line, not a KeyError.
    from restore.errors import RestoreError

    for unseeded in ({k: v for k, v in base.items() if k not in ("seed", "split_seed")}, {**base, "split_seed": "0"},
                     {**base, "split_seed": True}):
        with pytest.raises(RestoreError, match="names no seed"):
            held_out_images(unseeded)


def test_dpirs_periodic_self_ensemble_denoises_one_view_per_step(patch_prior, monkeypatch):
    """views=8: the k-th prior step denoises symmetry k mod 8 of its input and turns the result back. The first
    step is the image itself, so the second step's input is the same with and without views, up to the mirror;
    a quarter turn swaps the sides of a 24x40 image."""
    import importlib

    from restore.errors import RestoreError

    prior = load_prior(str(patch_prior))
    op = Inpainting.random((1, 24, 40), 0.5, seed=0)
    y = op(torch.rand(1, 1, 24, 40, generator=torch.Generator().manual_seed(0)))
    dpir_module = importlib.import_module("restore.solvers.dpir")  # the module, not the function of its name
    seen = []
    denoise = dpir_module.denoise
    monkeypatch.setattr(dpir_module, "denoise", lambda p, x, sigma, **kw: seen.append(x) or denoise(p, x, sigma, **kw))
    one = DIFFUSION["dpir"](y, op, prior, steps=8)
    plain, seen[:] = list(seen), []
    eight = DIFFUSION["dpir"](y, op, prior, steps=8, views=8)
    assert [tuple(x.shape[-2:]) for x in seen] == [(24, 40)] * 4 + [(40, 24)] * 4
    assert torch.allclose(seen[0], plain[0]) and torch.allclose(seen[1], plain[1].flip(-1))
    assert eight.shape == one.shape and not torch.allclose(eight, one, atol=1e-3)
    with pytest.raises(RestoreError, match="views must be 1, 2, 4 or 8"):
        DIFFUSION["dpir"](y, op, prior, views=3)


def test_a_large_hole_gives_dpir_a_lower_first_noise_level_in_the_cli(patch_prior, tmp_path, capsys, monkeypatch):
    """A 20x20 box (pixels 10 from every observed one) gets restore.cli.common.LARGE_HOLE_DPIR with the default
    solver; random missing pixels, a --param of the same name, or another start do not."""
    import json
    import sys

    from restore import io
    from restore.cli import common, main, restoration

    io.write_png(tmp_path / "g.png", torch.rand(1, 1, 37, 45, generator=torch.Generator().manual_seed(0)))

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["restore", "inpaint", str(tmp_path / "g.png"), *args, "--prior",
                                          str(patch_prior), "-o", str(tmp_path / "out.png"), "--json", "--force"])
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None)
        result = json.loads(capsys.readouterr().out)
        return {**result["hyperparameters"], "steps": result["steps"]}

    # The tiny prior has T = 20 timesteps, which would cut both step counts to 20: smaller ones tell them apart.
    monkeypatch.setitem(common.DEFAULT_PHOTO_SOLVER, "inpaint", ("dpir", 6, {"views": 8}))
    monkeypatch.setattr(restoration, "LARGE_HOLE_DPIR_STEPS", 3)
    default = 49 / 255  # restore.solvers.dpir's own
    assert run("--box", "10,8,20,20")["sigma_max"] == 0.05 and run("--box", "10,8,20,20")["steps"] == 3
    assert run("--random", "0.5")["sigma_max"] == default and run("--random", "0.5")["steps"] == 6
    assert run("--box", "10,8,20,20", "--steps", "4")["steps"] == 4
    assert run("--box", "10,8,20,20", "--param", "sigma_max=0.1")["sigma_max"] == 0.1
    assert run("--box", "10,8,20,20", "--param", "init=biharmonic")["sigma_max"] == default
    assert run("--box", "10,8,4,4")["sigma_max"] == default  # a small hole: no pixel farther than 8 from the observed


def test_a_prior_trained_with_stretch_sees_dark_images_at_full_range(tmp_path, monkeypatch, capsys):
    """--stretch trains on each image's range of values mapped onto [0, 1]: unscaled 12-bit data (0-4095 in a
    16-bit file) would otherwise become 17 levels of a nearly black image. run.json records it, the held-out
    images are read the same way, and restoring with the prior stretches each measurement without being asked."""
    import json
    import sys

    from restore import io
    from restore.cli import main
    from restore.data import held_out_images
    from restore.errors import RestoreError
    from restore.io import write_png
    from restore.priors.ddpm import train_ddpm

    rng = np.random.default_rng(0)
    (tmp_path / "raw").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(100, 4000, (24, 32)).astype(np.uint16)).save(tmp_path / "raw" / f"{i}.png")
    common = dict(data=str(tmp_path / "raw"), width=8, steps=1, batch_size=4, timesteps=20, sample_every=100,
                  checkpoint_every=1, val_every=100, precision="fp32")
    with pytest.raises(RestoreError, match="--patch"):
        train_ddpm(**common, out=tmp_path / "whole", size=16, stretch=True)
    train_ddpm(**common, out=tmp_path / "run", patch=16, stretch=True)
    train_ddpm(**{**common, "steps": 2}, out=tmp_path / "run", patch=16, resume=True)  # keeps its stretch
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["stretch"] is True and run["steps_done"] == 2
    from restore.data import patch_training_data

    trained_on = patch_training_data(str(tmp_path / "raw"), patch=16, stretch=True)["train"].images
    assert all(int(im.min()) == 0 and int(im.max()) == 255 for im in trained_on)
    held_out, _ = held_out_images(run)
    assert int(held_out[0].min()) == 0 and int(held_out[0].max()) == 255  # its own range, onto all 256 levels
    plain, _ = held_out_images({k: v for k, v in run.items() if k != "stretch"})
    assert int(plain[0].max()) <= 16  # what training without --stretch would see

    write_png(tmp_path / "dark.png", torch.rand(1, 1, 20, 28, generator=torch.Generator().manual_seed(0)) / 16, bits=16)
    monkeypatch.setattr(sys, "argv", ["restore", "denoise", str(tmp_path / "dark.png"), "--noise", "0.002", "--prior",
                                      str(tmp_path / "run"), "-o", str(tmp_path / "out.png"), "--json"])
    records = {}
    for extra in ([], ["--no-stretch"]):
        monkeypatch.setattr(sys, "argv", [*sys.argv[:-3], "-o", str(tmp_path / f"out{len(extra)}.png"), "--json", *extra])
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None)
        out = capsys.readouterr()
        records[bool(extra)] = json.loads(out.out)
        assert ("stretching this one too" in out.err) != bool(extra)
    assert records[False]["stretch"]["scale"] < 1 / 16 and "stretch" not in records[True]
    assert records[False]["operator"]["noise"]["sigma"] == 0.002  # the measurement's, not the stretched one
    y, _ = io.read_image(tmp_path / "dark.png")
    assert io.read_image(tmp_path / "out0.png")[0].max() <= y.max() + 1e-4  # mapped back to the measurement's range

    # The benchmarks restore with such a prior as the CLI does: each measurement stretched by its own range
    # (a denoised estimate then stays within it) and the cells keyed on it, so unstretched ones are not reused.
    from restore import operators as O
    from restore import photo_bench
    from restore.bench import run_prior
    from restore.priors import load_prior
    from restore.stretch import stretch, unstretch
    from restore.solvers import PRIOR_SOLVERS

    dark = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1)) / 16 + torch.tensor([0.0, 0.5]).view(2, 1, 1, 1)
    _, solve, settings = photo_bench.method("tweedie", str(tmp_path / "run"), shape=(1, 16, 16))
    assert settings["stretch"] is True
    op = O.make_operator("denoise", noise=O.GaussianNoise(0.002))
    prior = load_prior(str(tmp_path / "run"))
    for item in dark.split(1):
        y = op(item, generator=torch.Generator().manual_seed(2))
        y1, op1, record = stretch(y, op)
        expected = unstretch(PRIOR_SOLVERS["tweedie"](y1, op1, prior).detach(), record)
        assert torch.allclose(solve(y, op), expected, atol=1e-6)
        assert y.min() - 1e-6 <= expected.min() and expected.max() <= y.max() + 1e-6
        assert (PRIOR_SOLVERS["tweedie"](y, op, prior) - y).abs().max() > (expected - y).abs().max()  # unstretched
    _, pictures = run_prior("denoise", prior, "tweedie", None, dark, None, None, 1, 8)
    from restore.bench import measure

    op, y = measure("denoise", dark)  # the bench's measurement: sigma_y 0.2 on both images, one batch
    for i, item in enumerate(y.split(1)):
        y1, op1, record = stretch(item, op)
        expected = unstretch(PRIOR_SOLVERS["tweedie"](y1, op1, prior).detach(), record)
        assert torch.allclose(pictures["x"][i : i + 1], expected, atol=1e-6)
