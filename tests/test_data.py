"""restore.data: MNIST and Fashion-MNIST from the shared IDX files, and the IDX reader's checks."""

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

import restore.data
from conftest import UNDER_CI
from restore.data import default_data_root, load_mnist, mnist_images
from restore.errors import RestoreError

SHARED = Path(restore.data.__file__).resolve().parents[1].parent / "shared" / "data"
# Skipped where the shared data folder is absent, but never under CI, which has it (conftest.UNDER_CI).
needs_shared = pytest.mark.skipif(not SHARED.is_dir() and not UNDER_CI, reason=f"shared data folder {SHARED} is absent")


def _write_idx(path, magic, array, *, dims=None):
    """A gzipped IDX file: big-endian magic and sizes, then uint8 data; ``dims`` may lie."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = array.shape if dims is None else dims
    header = b"".join(int(v).to_bytes(4, "big") for v in (magic, *dims))
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _fake_mnist(root, images, labels, *, image_magic=2051, label_magic=2049, image_dims=None):
    raw = root / "MNIST" / "raw"
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", image_magic, images, dims=image_dims)
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", label_magic, labels)


# ---------------------------------------------------------------------------------------------
# The real files


@needs_shared
def test_mnist_test_split():
    images, labels = load_mnist("test", root=SHARED)
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and labels.dtype == torch.int64
    assert torch.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_shared
def test_mnist_train_split():
    images, labels = load_mnist("train", root=SHARED)
    assert images.shape == (60000, 1, 28, 28) and labels.shape == (60000,)
    assert images.double().mean().item() == pytest.approx(33.318, abs=0.01)
    assert torch.bincount(labels).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@needs_shared
def test_fashion_mnist_test_split():
    images, labels = load_mnist("test", root=SHARED, dataset="fashion-mnist")
    assert images.shape == (10000, 1, 28, 28)
    assert torch.bincount(labels).tolist() == [1000] * 10


@needs_shared
def test_mnist_images_slice_and_cache_safety():
    images, labels = load_mnist("test", root=SHARED)
    x, y = mnist_images(5, start=3, root=SHARED)
    assert x.shape == (5, 1, 28, 28) and x.dtype == torch.float32
    assert torch.equal(x, images[3:8].float() / 255) and torch.equal(y, labels[3:8])
    assert x.min() == 0 and x.max() == 1
    # Editing what a call returned must not change what the next call returns.
    images.zero_()
    labels.zero_()
    again, again_labels = load_mnist("test", root=SHARED)
    assert again[3:8].float().div(255).equal(x) and again_labels[3:8].equal(y)
    with pytest.raises(RestoreError, match="10000 images"):
        mnist_images(10, start=9995, root=SHARED)


# ---------------------------------------------------------------------------------------------
# Our IDX reader on small files


def test_reads_small_idx_files(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28) % 256
    _fake_mnist(tmp_path, images, np.array([7, 0, 9]))
    x, y = load_mnist("test", root=tmp_path)
    assert torch.equal(x[:, 0], torch.from_numpy(images).to(torch.uint8))
    assert y.tolist() == [7, 0, 9]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image_magic": 2049}, "magic number is 2049, expected 2051"),
        ({"label_magic": 2051}, "magic number is 2051, expected 2049"),
        ({"image_dims": (4, 28, 28)}, "header says 4x28x28"),
    ],
    ids=["image-magic", "label-magic", "size"],
)
def test_corrupt_idx_raises(tmp_path, kwargs, message):
    _fake_mnist(tmp_path, np.zeros((3, 28, 28)), np.zeros(3), **kwargs)
    with pytest.raises(RestoreError, match=message) as info:
        load_mnist("test", root=tmp_path)
    assert str(tmp_path) in str(info.value)


def test_mismatched_counts_and_bad_gzip_raise(tmp_path):
    _fake_mnist(tmp_path, np.zeros((3, 28, 28)), np.zeros(2))
    with pytest.raises(RestoreError, match="3 images but .* 2 labels"):
        load_mnist("test", root=tmp_path)
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(RestoreError, match="not a valid gzip file"):
        load_mnist("test", root=tmp_path)


def test_failed_download_says_where_it_looked(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nno network")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    with pytest.raises(RestoreError, match="no network") as info:
        load_mnist("train", root=tmp_path, dataset="fashion-mnist")
    message = str(info.value)
    assert str(tmp_path / "FashionMNIST" / "raw") in message and "RESTORE_DATA" in message
    assert "\n" not in message


def test_bad_arguments():
    with pytest.raises(RestoreError, match="unknown dataset"):
        load_mnist(dataset="cifar10")
    with pytest.raises(RestoreError, match="unknown split"):
        load_mnist("validation")


def test_default_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("RESTORE_DATA", str(tmp_path))
    assert default_data_root() == tmp_path
    monkeypatch.delenv("RESTORE_DATA")
    expected = SHARED if SHARED.is_dir() else Path.home() / ".cache" / "restore" / "data"
    assert default_data_root() == expected
