"""Datasets: MNIST and Fashion-MNIST, read from the original IDX files without a download where possible."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from .errors import RestoreError

# Folder names and file prefixes of the torchvision layout: <root>/MNIST/raw/t10k-images-idx3-ubyte.gz.
_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_PREFIXES = {"test": "t10k", "train": "train"}

# IDX magic numbers: 0x08 (uint8 data) in the third byte, the number of dimensions in the fourth.
_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049

# (dataset, split, root) -> (images uint8 (N, 1, 28, 28), labels int64 (N,)), shared by all calls.
_CACHE: dict[tuple[str, str, str], tuple[torch.Tensor, torch.Tensor]] = {}


def default_data_root() -> Path:
    """$RESTORE_DATA, else the project's shared/data folder if present, else ~/.cache/restore/data."""
    env = os.environ.get("RESTORE_DATA")
    if env:
        return Path(env).expanduser()
    shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if shared.is_dir():
        return shared
    return Path.home() / ".cache" / "restore" / "data"


def _read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array of a gzipped IDX file, after checking its magic number and its size."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise RestoreError(f"cannot read '{path}': not a valid gzip file ({reason})") from None

    # Header: big-endian uint32 magic, then one uint32 size per dimension (count, rows, cols).
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise RestoreError(f"cannot read '{path}': file too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise RestoreError(f"cannot read '{path}': IDX magic number is {found}, expected {magic}")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise RestoreError(
            f"cannot read '{path}': header says {'x'.join(map(str, dims))} values, "
            f"so {expected} bytes, but the file has {len(data)}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _read_raw(folder: Path, prefix: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels from the gzipped IDX pair in ``folder``, checked against each other."""
    images_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    images = _read_idx(images_path, _IMAGES_MAGIC)
    labels = _read_idx(labels_path, _LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        size = f"{images.shape[1]}x{images.shape[2]}"
        raise RestoreError(f"cannot read '{images_path}': images are {size}, expected 28x28")
    if len(images) != len(labels):
        counts = f"{len(images)} images but '{labels_path}' has {len(labels)} labels"
        raise RestoreError(f"'{images_path}' has {counts}")
    if labels.size and labels.max() > 9:
        raise RestoreError(f"cannot read '{labels_path}': label {labels.max()} outside 0-9")
    # Copies: frombuffer views are read-only, and torch wants writable memory.
    images_t = torch.from_numpy(images.copy()).unsqueeze(1)  # (N, 1, 28, 28)
    return images_t, torch.from_numpy(labels.astype(np.int64))


def _download(dataset: str, split: str, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels through torchvision, which downloads the files into ``root`` if it can."""
    from torchvision import datasets

    cls = datasets.MNIST if dataset == "mnist" else datasets.FashionMNIST
    folder = root / _FOLDERS[dataset] / "raw"
    try:
        loaded = cls(str(root), train=split == "train", download=True)
    # Downloads fail in many ways (URLError, HTTPError, RuntimeError, PermissionError, ...).
    except Exception as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        prefix = _PREFIXES[split]
        raise RestoreError(
            f"{dataset} {split} split not found in '{folder}' and the download failed ({reason}); "
            f"put {prefix}-images-idx3-ubyte.gz and {prefix}-labels-idx1-ubyte.gz there, "
            "or set RESTORE_DATA to a folder that has them"
        ) from None
    return loaded.data.to(torch.uint8).unsqueeze(1), loaded.targets.to(torch.int64)  # (N, 1, 28, 28), (N,)


def _load_cached(
    split: str, root: str | os.PathLike | None, dataset: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached tensors themselves; callers must not modify them."""
    if dataset not in _FOLDERS:
        raise RestoreError(f"unknown dataset {dataset!r}: choose one of {', '.join(_FOLDERS)}")
    if split not in _PREFIXES:
        raise RestoreError(f"unknown split {split!r}: choose 'test' or 'train'")
    root = Path(root).expanduser() if root is not None else default_data_root()
    key = (dataset, split, str(root.resolve()))
    if key not in _CACHE:
        folder = root / _FOLDERS[dataset] / "raw"
        prefix = _PREFIXES[split]
        # Our own reader needs only read access (shared/data is read-only); torchvision writes.
        names = (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz")
        if all((folder / name).is_file() for name in names):
            _CACHE[key] = _read_raw(folder, prefix)
        else:
            _CACHE[key] = _download(dataset, split, root)
    return _CACHE[key]


def load_mnist(
    split: str = "test", *, root: str | os.PathLike | None = None, dataset: str = "mnist"
) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST or Fashion-MNIST ("fashion-mnist"): uint8 images (N, 1, 28, 28) and int64 labels (N,)."""
    images, labels = _load_cached(split, root, dataset)
    # Clones, so a caller editing its copy in place cannot corrupt the cache.
    return images.clone(), labels.clone()


def mnist_images(
    n: int,
    *,
    split: str = "test",
    start: int = 0,
    root: str | os.PathLike | None = None,
    dataset: str = "mnist",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images start .. start + n - 1 as floats (n, 1, 28, 28) in [0, 1], and their labels."""
    images, labels = _load_cached(split, root, dataset)
    if n < 1 or start < 0 or start + n > len(images):
        raise RestoreError(
            f"cannot take {n} images from index {start}: the {dataset} {split} split has {len(images)} images"
        )
    return images[start : start + n].float() / 255, labels[start : start + n].clone()
