"""Training on photographs: named photo sets, random patches of whole images, the patch-trained UNet."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from restore.data import (NATURAL_SETS, PatchSet, dihedral, natural_folder,
                          patch_training_data, read_images)
from restore.errors import RestoreError

pytestmark = pytest.mark.usefixtures("one_thread")


def _photos(root: Path, sizes=((40, 24), (17, 33), (64, 64))) -> Path:
    """Gray PNGs of the given (H, W) whose pixel value encodes its row and column (mod 256)."""
    root.mkdir(parents=True, exist_ok=True)
    for i, (h, w) in enumerate(sizes):
        rows, cols = np.mgrid[:h, :w]
        Image.fromarray(((rows * 16 + cols + 50 * i) % 256).astype(np.uint8)).save(root / f"im{i}.png")
    return root


def test_every_named_set_is_where_the_readme_says():
    for name in NATURAL_SETS:
        folder = natural_folder(name)
        assert folder.is_dir() and any(folder.iterdir()), name
    with pytest.raises(RestoreError, match="unknown photo set"):
        natural_folder("bsd100")


def test_read_images_keeps_each_size_and_converts_channels(tmp_path):
    images, files = read_images(_photos(tmp_path))
    assert files == ["im0.png", "im1.png", "im2.png"]
    assert [tuple(im.shape) for im in images] == [(1, 40, 24), (1, 17, 33), (1, 64, 64)]
    rgb, _ = read_images(tmp_path, channels=3)
    assert rgb[1].shape == (3, 17, 33) and torch.equal(rgb[1][0], rgb[1][2])


def test_patches_are_crops_of_the_images(tmp_path):
    images, _ = read_images(_photos(tmp_path))
    patches = PatchSet(images, 16, augment=False).crops(200, torch.Generator().manual_seed(0))
    assert patches.shape == (200, 1, 16, 16) and patches.dtype == torch.uint8
    # Every patch appears somewhere in one of the images (an exhaustive search over positions).
    for p in patches[:20]:
        found = any(torch.equal(im[:, i : i + 16, j : j + 16], p)
                    for im in images for i in range(im.shape[1] - 15) for j in range(im.shape[2] - 15))
        assert found


def test_images_are_drawn_in_proportion_to_their_patch_positions(tmp_path):
    # Constant images 0 and 200 with 1 and 9 positions of an 8x8 patch: 10% and 90% of draws.
    images = [torch.zeros(1, 8, 8, dtype=torch.uint8), torch.full((1, 10, 10), 200, dtype=torch.uint8)]
    patches = PatchSet(images, 8, augment=False).crops(4000, torch.Generator().manual_seed(1))
    share = (patches[:, 0, 0, 0] == 0).float().mean().item()
    assert abs(share - 0.1) < 0.02


def test_dihedral_gives_the_eight_symmetries_of_the_square():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(8, 1, 1, 1)
    out = dihedral(x, torch.arange(8))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8
    assert torch.equal(out[0], x[0]) and torch.equal(out[1], torch.rot90(x[0], 1, (-2, -1)))
    assert torch.equal(out[4], x[0].flip(-1))


def test_patch_larger_than_an_image_is_refused(tmp_path):
    images, _ = read_images(_photos(tmp_path))
    with pytest.raises(RestoreError, match="larger than 1 of the images.*33x17"):
        PatchSet(images, 24)


def test_patch_training_data_splits_whole_images(tmp_path):
    _photos(tmp_path, sizes=[(32, 32)] * 10)
    ds = patch_training_data(str(tmp_path), patch=16, val_fraction=0.2, val_patches=12)
    assert len(ds["train"]) == 8 and ds["val"].shape == (12, 1, 16, 16)
    assert not set(ds["files_train"]) & set(ds["files_val"])
    with pytest.raises(RestoreError, match="whole"):
        patch_training_data("mnist", patch=16)


def test_patch_unet_runs_on_images_larger_than_its_patches():
    from restore.priors.ddpm import make_patch_unet

    torch.manual_seed(0)
    unet = make_patch_unet(16, 3, width=8).eval()
    with torch.no_grad():
        out = unet(torch.randn(1, 3, 40, 56), torch.tensor([10])).sample
    assert out.shape == (1, 3, 40, 56) and torch.isfinite(out).all()
    with pytest.raises(RestoreError, match="divisible by 8"):
        make_patch_unet(20, 1)


def test_train_ddpm_on_patches_writes_a_pipeline_folder(tmp_path):
    from diffusers import DDPMPipeline

    from restore.priors.ddpm import train_ddpm

    data = _photos(tmp_path / "photos", sizes=[(40, 24), (33, 48), (24, 24)])
    summary = train_ddpm(data=str(data), out=tmp_path / "run", patch=16, width=8, steps=2, batch_size=4,
                         timesteps=20, sample_every=100, checkpoint_every=2, val_every=2, precision="fp32")
    assert summary["finished"]
    pipe = DDPMPipeline.from_pretrained(tmp_path / "run")
    assert pipe.unet.config.sample_size == 16
    digests = (tmp_path / "run" / "train_digests.txt").read_text().split()
    assert len(digests) == 2  # one per training image (the third is the validation image)


def test_training_creates_the_parent_folders_of_out(tmp_path):
    from restore.priors.ddpm import train_ddpm

    data = _photos(tmp_path / "photos", sizes=[(24, 24)] * 3)
    out = tmp_path / "runs" / "deeper" / "run"
    train_ddpm(data=str(data), out=out, patch=16, width=8, steps=1, batch_size=2, timesteps=10, sample_every=100,
               checkpoint_every=1, val_every=1, precision="fp32")
    assert (out / "unet").is_dir()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RestoreError, match="cannot create the run folder"):
        train_ddpm(data=str(data), out=tmp_path / "file" / "run", patch=16, width=8, steps=1, batch_size=2,
                   timesteps=10, precision="fp32")
