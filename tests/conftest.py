import os

import pytest
import torch

from restore.data import default_data_root

#: CI (.ci/run) has the data: there a test that cannot find it fails instead of skipping.
UNDER_CI = bool(os.environ.get("RESTORE_CI"))


def missing_data(what: str, path) -> None:
    """A test needs data it cannot find: a failure under CI, a skip (with the reason) elsewhere."""
    if UNDER_CI:
        pytest.fail(f"{what} not found at {path} under CI (RESTORE_DATA or the shared data folder)")
    pytest.skip(f"{what} not found at {path} (set RESTORE_DATA)")


@pytest.fixture(scope="session")
def mnist_available():
    """The MNIST files where restore.data looks for them, or a skip (a failure under CI)."""
    raw = default_data_root() / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    if not raw.exists():
        missing_data("MNIST", raw)


@pytest.fixture(scope="session")
def ddpm_dir(tmp_path_factory):
    """A tiny randomly initialised diffusers DDPM folder (8x8 gray, T = 20), saved with save_pretrained."""
    from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel

    torch.manual_seed(0)
    unet = UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4,
    )
    scheduler = DDPMScheduler(num_train_timesteps=20)
    path = tmp_path_factory.mktemp("ddpm")
    DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(path)
    return path


@pytest.fixture
def one_thread():
    """Run torch on one thread: on a shared two-core machine, threads spin-waiting over tiny
    tensors make small tests many times slower. Modules opt in with pytestmark."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def held_out_crops(prior, *, channels: int, top: int, left: int, size: int, n: int = 3) -> torch.Tensor:
    """(n, C, size, size) crops in [0, 1] of the first n photos that the prior's training run held out for
    validation (its run.json names the data and the split's seed): never a training or a test image."""
    from restore.data import held_out_images
    from restore.errors import RestoreError

    try:
        images, _ = held_out_images(prior.run_info, channels=channels, n=n)
    except RestoreError as exc:
        missing_data(prior.run_info["data"], exc)
    return torch.cat([im.float()[None, :, top : top + size, left : left + size] / 255 for im in images])
