"""restore.stretch: a measurement's range mapped onto [0, 1] is the same problem with a smaller noise level."""

import pytest
import torch

from restore import operators as O
from restore.errors import RestoreError
from restore.stretch import MARGIN, observed_range, stretch, unstretch


def _dark(shape=(1, 1, 24, 20), seed=0):
    """An image spanning [0.02, 0.02 + 1/16]: unscaled 12-bit data in a 16-bit file."""
    return 0.02 + torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) / 16


@pytest.mark.parametrize("task,options", [
    ("deblur", {"kernel": torch.ones(3, 5, dtype=torch.float64) / 15, "boundary": "valid"}),
    ("superres", {"factor": 2}),
    ("inpaint", {"random": 0.5}),
    ("denoise", {}),
])
def test_the_stretched_measurement_is_the_stretched_image_measured_with_scaled_noise(task, options):
    """y' = (y - A(low)) / scale + A(m) must equal A x' + n / scale with x' = m + (x - low) / scale, for the
    noise n actually drawn; the stretched operator's sigma is sigma / scale; the map back inverts x -> x'."""
    op = O.make_operator(task, (1, 24, 20), noise=O.GaussianNoise(0.003), **options)
    x = _dark(op.input_shape((1, 1, 24, 20)) if task == "deblur" else (1, 1, 24, 20))
    clean = op.A(x)
    y = op(x, generator=torch.Generator().manual_seed(1))
    y1, op1, record = stretch(y, op)
    low, high = observed_range(y, op)
    margin = 0.0 if task == "denoise" else MARGIN
    assert record == pytest.approx({"low": low, "scale": (high - low) / (1 - 2 * margin), "margin": margin})
    x1 = margin + (x - low) / record["scale"]
    assert torch.allclose(y1, op1.A(x1) + (y - clean) / record["scale"], atol=1e-9)
    assert op1.spec()["noise"]["sigma"] == pytest.approx(0.003 / record["scale"])
    if hasattr(op, "mask"):
        assert torch.equal(op1.mask, op.mask)
    assert torch.allclose(unstretch(x1, record), x.clamp(0, 1), atol=1e-9)
    # The observed values of y' span exactly [m, 1 - m].
    values = y1[op.mask.expand_as(y1) > 0] if hasattr(op, "mask") else y1
    assert float(values.min()) == pytest.approx(margin) and float(values.max()) == pytest.approx(1 - margin)


def test_what_cannot_be_stretched_is_refused_in_one_line():
    x = _dark()
    with pytest.raises(RestoreError, match="Poisson"):
        op = O.make_operator("denoise", (1, 24, 20), noise=O.PoissonNoise(100))
        stretch(op(x, generator=torch.Generator().manual_seed(0)), op, why="--stretch")
    op = O.make_operator("denoise", (1, 24, 20))
    with pytest.raises(RestoreError, match="span at least"):
        stretch(torch.full((1, 1, 24, 20), 0.3), op, why="--stretch")
    with pytest.raises(RestoreError, match="batch of 2"):
        stretch(_dark((2, 1, 24, 20)), op)
    cs = O.make_operator("cs", (1, 8, 8), measurements=16)
    with pytest.raises(RestoreError, match="images"):
        stretch(cs.A(_dark((1, 1, 8, 8)).float()), cs, why="--stretch")


def test_a_stretch_trained_priors_training_images_are_recognised_by_their_stretched_pixels(tmp_path):
    """restore train --stretch digests each training image after stretching it; the overlap check of the
    benchmarks must stretch the images it compares the same way, or it never finds a training image."""
    from types import SimpleNamespace

    from restore.data import DIGESTS_FILE, image_digests, overlap_warning, stretch_images

    images = torch.randint(10, 60, (2, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    trained = stretch_images(images)
    assert all(int(im.min()) == 0 and int(im.max()) == 255 for im in trained)
    (tmp_path / DIGESTS_FILE).write_text("".join(d + "\n" for d in image_digests(trained)))
    prior = SimpleNamespace(run_info={"data": str(tmp_path), "stretch": True}, folder=tmp_path, image_shape=(1, 8, 8))
    assert "2 of the 2 bench images" in overlap_warning(prior, images, "bench images", stretched=True)
    assert overlap_warning(prior, images, "bench images") is None


def test_a_flat_training_image_stretches_to_mid_gray_not_black(tmp_path):
    """A flat image has no range to stretch; training with --stretch makes it mid-gray (it was black, which
    teaches a prior that flat areas are dark), from 8-bit and from 16-bit files alike."""
    import numpy as np
    from PIL import Image

    from restore.data import read_images, stretch_images

    flat = stretch_images(torch.full((1, 1, 6, 6), 37, dtype=torch.uint8))
    assert torch.equal(flat, torch.full_like(flat, 128))
    Image.fromarray(np.full((20, 20), 900, dtype=np.uint16)).save(tmp_path / "flat16.png")
    Image.fromarray(np.full((20, 20), 200, dtype=np.uint8)).save(tmp_path / "flat8.png")
    images, _ = read_images(tmp_path, channels=1, stretch=True)
    assert all(torch.equal(im, torch.full_like(im, 128)) for im in images) and len(images) == 2


def test_evaluate_and_bench_see_a_stretch_trained_priors_images_as_it_did(tmp_path):
    """For a prior trained with --stretch on dark 16-bit images, restore evaluate and restore bench read the
    folder stretched from its 16 bits (about 160 levels in 256 pixels, not 17), key their caches on it, and bench each measurement
    stretched."""
    import numpy as np
    from PIL import Image

    from restore.bench import bench_images, plan
    from restore.evaluate import evaluate_prior
    from restore.priors import load_prior
    from restore.priors.ddpm import train_ddpm

    rng = np.random.default_rng(0)
    (tmp_path / "raw").mkdir()
    for i in range(40):
        Image.fromarray(rng.integers(100, 4000, (16, 16)).astype(np.uint16)).save(tmp_path / "raw" / f"{i:02d}.png")
    train_ddpm(data=str(tmp_path / "raw"), out=tmp_path / "run", patch=16, width=8, steps=1, batch_size=4, timesteps=20,
               sample_every=100, checkpoint_every=1, val_every=100, precision="fp32", stretch=True)
    prior = load_prior(str(tmp_path / "run"))
    x, _ = bench_images(str(tmp_path / "raw"), 4, shape=(1, 16, 16), stretch=True)
    assert all(float(im.min()) == 0 and float(im.max()) == 1 and len(torch.unique(im)) > 100 for im in x)
    assert float(bench_images(str(tmp_path / "raw"), 4, shape=(1, 16, 16))[0].max()) <= 16 / 255 + 1e-6  # as it is
    cells = plan(["denoise"], {"p": prior}, ["tweedie"], x, None, None, steps=[2], samples=1, batch=4,
                 data=str(tmp_path / "raw"))
    learned = [c for c in cells if c.method.startswith("p + ")]
    assert learned and all(c.settings.get("stretch") is True for c in learned)
    report = evaluate_prior(prior, data=str(tmp_path / "raw"), samples=4, nll_images=2, feature_steps=2,
                            features_folder=tmp_path / "features")
    assert report["feature_net"]["data"]["stretch"] is True and "warning" not in report
