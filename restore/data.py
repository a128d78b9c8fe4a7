"""Datasets: MNIST and Fashion-MNIST from the original IDX files, and folders of images for training."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import zlib
from pathlib import Path

import numpy as np
import torch

from .errors import RestoreError
from .io import IMAGE_EXTENSIONS, _one_line
from .runtime import to_device

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


# ---------------------------------------------------------------------------------------------
# Training data: a folder of images, or MNIST / Fashion-MNIST

# PIL modes by the kind of image they hold; alpha channels are dropped, so LA counts as gray.
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_COLOUR_MODES = {"RGB", "RGBA", "RGBa", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV"}

# Share of a folder's images held out for validation, by default.
VAL_FRACTION = 0.05

# More files than this get a progress bar while they are read.
_PROGRESS_MIN_FILES = 1000


def _check_training_options(size: int | None, channels: int | None, val_fraction: float) -> None:
    """Raise a RestoreError for a size, channel count or validation fraction we cannot use."""
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 4):
        raise RestoreError(f"image size must be an integer of at least 4, got {size!r}")
    if channels not in (None, 1, 3):
        raise RestoreError(f"channels must be 1 (gray), 3 (colour) or None (as stored), got {channels!r}")
    if not 0 <= val_fraction < 1:
        raise RestoreError(f"val_fraction must be at least 0 and below 1, got {val_fraction!r}")


def file_list_hash(paths: list[tuple[str, int]]) -> str:
    """SHA-256 (hex) of the sorted "relative/path<TAB>bytes" lines, one per file, joined by newlines."""
    text = "\n".join(f"{rel}\t{nbytes}" for rel, nbytes in sorted(paths))
    # surrogateescape keeps file names that are not valid UTF-8 hashable.
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()


def image_files(root: Path) -> list[tuple[str, int]]:
    """(relative POSIX path, size in bytes) of every image file under ``root``, sorted by path."""

    def unreadable(exc: OSError) -> None:
        raise RestoreError(f"cannot list folder '{exc.filename}': {_one_line(exc)}")

    found = []
    # os.walk does not follow symbolic links to folders, so a link loop cannot trap it.
    for folder, _, names in os.walk(root, onerror=unreadable):
        for name in names:
            path = Path(folder, name)
            if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
                found.append((path.relative_to(root).as_posix(), path.stat().st_size))
    return sorted(found)


def _stretch_levels(raw: np.ndarray) -> np.ndarray:
    """Integer samples with their own range [lowest, highest] mapped onto 0-255, rounded, as uint8. A flat
    image has no range to map: it becomes mid-gray (128), not black, which would teach a prior that flat
    areas are dark."""
    low = int(raw.min()) if raw.size else 0
    span = int(raw.max()) - low if raw.size else 0
    if span == 0:
        return np.full(raw.shape, 128, dtype=np.uint8)
    return (((raw.astype(np.int64) - low) * 255 + span // 2) // span).astype(np.uint8)


def stretch_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 images (N, C, H, W), each with its own range mapped onto 0-255 (:func:`_stretch_levels`): what a
    prior trained with ``restore train --stretch`` saw of 8-bit images."""
    return torch.stack([torch.from_numpy(_stretch_levels(im.numpy())) for im in images]) if len(images) else images


def _eight_bit_samples(samples: np.ndarray, c: int | None = None, stretch: bool = False):
    """16-bit integer samples (H, W, S) as an 8-bit PIL image. With ``stretch``: converted to c channels, to
    gray at 16 bits (:func:`_gray16`), then their range stretched onto 0-255. Without: the high byte of each
    sample, at the samples' own channels ("L" or "RGB"), which is what PIL gives for the 16-bit colour files it
    reads, so that the digests of runs trained before these files were read at 16 bits still match."""
    from PIL import Image

    if stretch:
        plane = _gray16(samples) if c == 1 or samples.shape[2] == 1 else samples
        return _to_channels(Image.fromarray(_stretch_levels(plane)), c)
    eight = (samples >> 8).astype(np.uint8)
    return Image.fromarray(eight[:, :, 0] if eight.shape[2] == 1 else eight)


def _decoded(path: Path):
    """(PIL image or None, 16-bit integer samples (H, W, 3) or (H, W, 1) or None, PIL mode) of a training image,
    its bytes read once (:func:`restore.io._decode`): samples for a 16-bit colour or gray + alpha PNG or TIFF,
    which PIL reads at 8 bits (a planar TIFF wrongly; a gray + alpha TIFF not at all). The kind (gray or colour)
    is PIL's wherever PIL read the file (a 16-bit gray + alpha PNG is "RGBA" to it, as older runs saw it), else
    the samples' (a TIFF, which PIL calls "RGB" when it opens it)."""
    from .io import _decode, _file_bytes

    deep, im = _decode(path, _file_bytes(path))
    samples = None if deep is None else np.rint(deep[0].astype(np.float64) * 65535).astype(np.int64)
    return im, samples, im.mode if im is not None else "RGB" if samples.shape[2] == 3 else "L"


def _gray16(samples: np.ndarray) -> np.ndarray:
    """(H, W, 3) integer samples to (H, W) gray with the ITU-R BT.601 luma weights and rounding of PIL's
    "L" conversion, at the samples' own depth; (H, W, 1) as it is."""
    if samples.shape[2] == 1:
        return samples[:, :, 0]
    r, g, b = (samples[:, :, k].astype(np.int64) for k in range(3))
    return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16


def _eight_bit(im, path: Path, stretch: bool = False):
    """The image as 8-bit PIL mode "L" (gray) or "RGB" (colour), alpha dropped, 16 bits scaled; with
    ``stretch``, 16-bit data has its own range mapped onto 0-255 instead (:func:`_stretch_levels`), so that
    unscaled 12-bit data keeps 256 levels rather than 17."""
    from PIL import Image

    mode = im.mode
    if mode.startswith("I"):
        # 16-bit data (I;16*, or "I" as PNG readers give it): v * 255 / 65535, rounded, in integers.
        raw = np.asarray(im).astype(np.int64)
        if raw.size and (raw.min() < 0 or raw.max() > 65535):
            raise RestoreError(f"cannot read image '{path}': pixel values outside the 16-bit range")
        return Image.fromarray(_stretch_levels(raw) if stretch else ((raw * 255 + 32767) // 65535).astype(np.uint8))
    if mode in ("1", "LA", "La"):
        return im.convert("LA").convert("L") if mode == "La" else im.convert("L")
    if mode in ("P", "PA", "RGBa"):
        # Through RGBA, so a palette's transparency and premultiplied alpha are resolved first.
        return im.convert("RGBA").convert("RGB")
    return im if mode in ("L", "RGB") else im.convert("RGB")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of a sorted list of n files: a seeded shuffle, round(val_fraction * n) of them
    (at least 1 when val_fraction > 0) for validation; each part in sorted order."""
    n_val = min(max(round(val_fraction * n), 1), n - 1) if val_fraction > 0 else 0
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _kind(mode: str, path: Path, rel: str, channels: int | None, kinds: dict[str, str], root: Path) -> str:
    """"gray" or "colour" for a decoded image of PIL mode ``mode``; records the first file of each kind in
    ``kinds`` and refuses a folder that mixes them when ``channels`` does not say what to convert to."""
    if mode in _GRAY_MODES:
        kind = "gray"
    elif mode in _COLOUR_MODES:
        kind = "colour"
    else:
        raise RestoreError(f"cannot read image '{path}': unsupported image mode '{mode}'")
    kinds.setdefault(kind, rel)
    if channels is None and len(kinds) == 2:
        raise RestoreError(
            f"folder '{root}' mixes gray ('{kinds['gray']}') and colour ('{kinds['colour']}') "
            "images; pass channels=1 or channels=3 (--channels) to convert all"
        )
    return kind


def _to_channels(picture, c: int):
    """An 8-bit PIL image ("L" or "RGB") converted to c channels (ITU-R BT.601 luma for gray)."""
    if c == 1 and picture.mode == "RGB":
        return picture.convert("L")
    if c == 3 and picture.mode == "L":
        return picture.convert("RGB")
    return picture


def _own_size(root: Path, files) -> int:
    """The folder's own image size, read from the file headers: the side of square images that all have
    it, or the shorter side shared by all; images of several sizes need --size (or --patch)."""
    from PIL import Image

    sizes = set()
    for rel, _ in files:
        try:
            with Image.open(root / rel) as im:
                sizes.add(min(im.size))
        except OSError:  # a 16-bit gray + alpha TIFF, which PIL cannot open; for other files reading it later gives the error
            try:
                _, deep, _ = _decoded(root / rel)
            except RestoreError:
                continue
            if deep is None:
                continue
            sizes.add(min(deep.shape[:2]))
        if len(sizes) > 1:
            raise RestoreError(f"the images in '{root}' have different sizes (shorter sides {min(sizes)} and "
                               f"{max(sizes)} at least): give --size S to resize each (shorter side S, centre crop), "
                               "or train on crops of whole images with --patch P (ddpm)")
    if not sizes:
        raise RestoreError(f"no readable image in folder '{root}'")
    return sizes.pop()


def _square(im, size: int):
    """Resize the shorter side to ``size`` and crop the centre: a ``size`` x ``size`` PIL image."""
    from PIL import Image

    w, h = im.size
    side = min(w, h)
    if side == size:
        left, top = (w - side) // 2, (h - side) // 2
        return im.crop((left, top, left + side, top + side))
    # Resampling only the centred square of the source is the same as resizing, then cropping.
    box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
    resample = Image.Resampling.BICUBIC if side < size else Image.Resampling.LANCZOS
    # reducing_gap: shrink big photos by whole factors first; much faster, visually the same.
    return im.resize((size, size), resample, box=box, reducing_gap=3.0)


def load_folder(
    root: str | os.PathLike,
    *,
    size: int | None,
    channels: int | None = None,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    stretch: bool = False,
) -> dict:
    """Every image under ``root``, recursively, as uint8 (N, C, size, size) tensors split into train and val.

    Each image is resized so its shorter side is ``size`` and centre-cropped. ``channels`` None keeps the
    stored kind (all files must agree); 1 or 3 converts every image. The validation files are
    round(val_fraction * N) of the sorted file list shuffled with ``seed`` (at least 1 when N >= 2).
    ``stretch`` maps each image's range onto 0-255 as a prior trained with ``--stretch`` saw it: 16-bit
    samples before they are cut to 8 bits, and the resized image's range again.
    """
    from tqdm.auto import tqdm

    _check_training_options(size, channels, val_fraction)
    root = Path(root).expanduser()
    if not root.exists():
        raise RestoreError(f"cannot read images from folder '{root}': no such folder")
    if not root.is_dir():
        raise RestoreError(f"cannot read images from folder '{root}': it is a file, expected a folder")
    files = image_files(root)
    if size is None and files:
        size = _own_size(root, files)
    n = len(files)
    if n == 0:
        extensions = ", ".join(IMAGE_EXTENSIONS)
        raise RestoreError(f"no image files ({extensions}) in folder '{root}' or its subfolders")
    if n < 2 and val_fraction > 0:
        raise RestoreError(
            f"folder '{root}' has only 1 image ('{files[0][0]}'); a train/validation split needs at least 2 "
            "(or pass val_fraction=0)"
        )

    _check_dataset_memory(n, 3 if channels is None else channels, size)
    # 1. The split: a seeded shuffle of the sorted list; each part is kept in sorted order.
    train_index, val_index = split_indices(n, val_fraction, seed)
    n_val = len(val_index)
    # slot[i] = (is_val, row): where file i of the sorted list goes, so nothing is copied afterwards.
    slot = {int(i): (False, row) for row, i in enumerate(train_index)}
    slot.update({int(i): (True, row) for row, i in enumerate(val_index)})

    # 2. Read in sorted order; the channel count is fixed by ``channels`` or by the first image.
    parts: dict[bool, np.ndarray] = {}
    kinds: dict[str, str] = {}  # "gray" / "colour" -> the first file of that kind
    show = None if n > _PROGRESS_MIN_FILES else True  # None: a bar only on a terminal
    with tqdm(files, desc="reading images", unit="image", disable=show) as bar:
        for i, (rel, _) in enumerate(bar):
            path = root / rel
            im, deep, mode = _decoded(path)  # deep: a 16-bit colour or gray + alpha file's samples
            kind = _kind(mode, path, rel, channels, kinds, root)
            c = channels or (1 if kind == "gray" else 3)
            if deep is not None and stretch:  # to gray at 16 bits, stretched, then resized
                picture = _square(_eight_bit_samples(deep, c, stretch=True), size)
            else:  # resized, then converted: the order of PIL's reading, which older runs' digests were taken of
                picture = _to_channels(_square(_eight_bit_samples(deep) if deep is not None
                                               else _eight_bit(im, path, stretch), size), c)
            if not parts:
                parts[False] = np.empty((n - n_val, c, size, size), np.uint8)
                parts[True] = np.empty((n_val, c, size, size), np.uint8)
            pixels = _stretch_levels(np.asarray(picture)) if stretch else np.asarray(picture)
            is_val, row = slot[i]
            # (size, size) or (size, size, 3) -> (C, size, size)
            parts[is_val][row] = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)

    return {
        "train": torch.from_numpy(parts[False]),
        "val": torch.from_numpy(parts[True]),
        "files_train": [files[i][0] for i in train_index],
        "files_val": [files[i][0] for i in val_index],
        "file_list_hash": file_list_hash(files),
    }


def _check_dataset_memory(n: int, channels: int, size: int) -> None:
    """Refuse a --size whose resized dataset (uint8) and one training batch's float copies do not fit."""
    from .runtime import check_allocation

    check_allocation(n * channels * size * size + 256 * channels * size * size * 4 * 8,
                     f"{n} training images at {size}x{size}", "pass a smaller --size (or train on crops with --patch)")


def _resize_uint8(images: torch.Tensor, size: int, batch: int = 4096) -> torch.Tensor:
    """Bilinear, antialiased resize of uint8 (N, C, H, W) images to (N, C, size, size), in batches."""
    _check_dataset_memory(len(images), images.shape[1], size)
    batch = max(1, min(batch, (1 << 28) // (images.shape[1] * size * size)))  # float copies of at most 1 GiB
    out = torch.empty((*images.shape[:2], size, size), dtype=torch.uint8)
    # Batches bound the float32 copy: 60000 images at 256x256 would need 16 GB at once.
    for start in range(0, len(images), batch):
        x = images[start : start + batch].float()
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        out[start : start + batch] = x.round_().clamp_(0, 255).to(torch.uint8)
    return out


def training_data(
    data: str,
    *,
    size: int | None = None,
    channels: int | None = None,
    val_fraction: float = VAL_FRACTION,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    stretch: bool = False,
) -> dict:
    """Train and validation images (uint8, (N, C, H, W)) from "mnist", "fashion-mnist" or a folder;
    ``stretch``: each with its range mapped onto 0-255 (see load_folder).

    For the two MNIST datasets, val is the official test split (``val_fraction`` and ``seed`` are unused)
    and ``root`` is where the IDX files are; for a folder, see load_folder. Keys: train, val,
    files_train, files_val, file_list_hash (None for MNIST) and name.
    """
    _check_training_options(size, channels, val_fraction)
    if data in _FOLDERS:
        train = load_mnist("train", root=root, dataset=data)[0]  # (60000, 1, 28, 28)
        val = load_mnist("test", root=root, dataset=data)[0]  # (10000, 1, 28, 28)
        if size is not None and size != 28:
            train, val = _resize_uint8(train, size), _resize_uint8(val, size)
        if channels == 3:
            train, val = train.repeat(1, 3, 1, 1), val.repeat(1, 3, 1, 1)
        if stretch:
            train, val = stretch_images(train), stretch_images(val)
        return {
            "train": train,
            "val": val,
            "files_train": None,
            "files_val": None,
            "file_list_hash": None,
            "name": data,
        }

    folder = Path(resolve_data(data, root)).expanduser()
    if not folder.exists():
        raise RestoreError(f"unknown dataset {data!r}: use mnist, fashion-mnist, {', '.join(NATURAL_SETS)} "
                           "or a folder of images")
    result = load_folder(folder, size=size, channels=channels, val_fraction=val_fraction, seed=seed, stretch=stretch)
    return {**result, "name": str(folder.resolve())}


# Training-set membership. A digest names an image by its pixels (after the resize and channel conversion
# that training applied), so a file copied or renamed between the training and the evaluation folder
# is still recognised; one that was re-encoded lossily is not.
DIGESTS_FILE = "train_digests.txt"


def image_digests(images: torch.Tensor) -> list[str]:
    """One 16-hex-digit SHA-256 prefix per uint8 (N, C, H, W) image, over its shape and pixel bytes."""
    if images.dtype != torch.uint8:
        raise ValueError(f"digests are taken of uint8 images, got {images.dtype}")
    shape = "x".join(map(str, images.shape[1:])).encode()
    pixels = images.contiguous().numpy()
    return [hashlib.sha256(shape + b"\0" + image.tobytes()).hexdigest()[:16] for image in pixels]


def write_training_digests(folder: Path, ds: dict) -> None:
    """For folder data, ``folder``/train_digests.txt lists the training images' digests (sorted); MNIST and
    Fashion-MNIST need none, since their training split can be reread."""
    from .io import atomic_write

    if ds.get("files_train") is None:
        return
    train = ds["train"]
    # Patch training keeps whole images of several sizes: one digest per image, at its own size.
    digests = [d for im in train.images for d in image_digests(im[None])] if isinstance(train, PatchSet) \
        else image_digests(train)
    with atomic_write(Path(folder) / DIGESTS_FILE) as tmp:
        tmp.write_text("".join(d + "\n" for d in sorted(set(digests))))


def training_digests(run: dict | None, folder: Path | None, shape, root=None) -> set[str] | None:
    """Digests of the images a prior was trained on, at its image shape ``shape`` (C, H, W): reread for
    MNIST and Fashion-MNIST, read from the model folder's train_digests.txt for folder data; None when
    neither is known (a hub model, or a run from before the digests were written)."""
    data = (run or {}).get("data")
    if data in _FOLDERS:
        c, size, _ = shape
        return set(_split_digests(data, c, size, str(root) if root is not None else None))
    path = Path(folder) / DIGESTS_FILE if folder is not None else None
    if path is not None and path.is_file():
        return set(path.read_text().split())
    return None


@functools.lru_cache(maxsize=8)
def _split_digests(data: str, c: int, size: int, root: str | None) -> frozenset[str]:
    """Digests of a named dataset's training split at one shape, computed once per process (a bench
    checks every prior trained on MNIST against the same 60,000 images)."""
    train = training_data(data, size=size, channels=c if c == 3 else None, root=root)["train"]
    return frozenset(image_digests(train))


def overlap_warning(prior, images: torch.Tensor, what: str, root=None, stretched: bool = False) -> str | None:
    """A one-line warning when some of ``images`` (uint8) are in the prior's training set, or when that
    cannot be checked; None when none of them are. ``stretched``: the prior was trained on each image's
    range mapped onto 0-255 (``restore train --stretch``), so its digests are of images stretched so."""
    known = training_digests(getattr(prior, "run_info", None), getattr(prior, "folder", None),
                             tuple(prior.image_shape), root)
    if known is None:
        return (f"cannot check whether the {what} overlap the prior's training images (its folder records no "
                f"training digests); figures on training images would flatter it")
    if stretched:
        images = stretch_images(images)
    shared = sum(d in known for d in image_digests(images))
    if not shared:
        return None
    return (f"{shared} of the {len(images)} {what} are in the prior's training set: figures on them flatter it; "
            "evaluate on images it was not trained on")


# ---------------------------------------------------------------------------------------------
# Photographs: the named sets of shared/data/natural, and random patches of whole images

# Name -> folder under <data root>/natural (see that folder's README): the literature's training and test sets.
NATURAL_SETS = {
    "train400": "train/gray400",  # DnCNN's 400 gray 180x180 training images
    "bsds400": "train/bsds400",  # BSDS500 train + test, 400 RGB JPEGs ("CBSD400")
    "set12": "test/Set12",
    "bsd68": "test/BSD68",
    "cbsd68": "test/CBSD68",
}
LEVIN_KERNELS = "kernels"  # levin1..8.npy under <data root>/natural


def natural_folder(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of a named photograph set (``NATURAL_SETS``) under the data root."""
    if name not in NATURAL_SETS:
        raise RestoreError(f"unknown photo set {name!r}: choose one of {', '.join(NATURAL_SETS)}")
    root = Path(root).expanduser() if root is not None else default_data_root()
    folder = root / "natural" / NATURAL_SETS[name]
    if not folder.is_dir():
        raise RestoreError(f"the {name} photos are not in '{folder}': put the natural-image sets under "
                           f"'{root / 'natural'}' or set RESTORE_DATA to the folder that holds natural/")
    return folder


def levin_kernel(index: int, root: str | os.PathLike | None = None) -> torch.Tensor:
    """Camera-shake kernel ``index`` (1-8) of Levin, Weiss, Durand & Freeman (2009), float32 summing to 1."""
    from .io import load_arrays

    if not 1 <= index <= 8:
        raise RestoreError(f"levin:{index}: the Levin et al. kernels are numbered 1 to 8")
    root = Path(root).expanduser() if root is not None else default_data_root()
    path = root / "natural" / LEVIN_KERNELS / f"levin{index}.npy"
    if not path.is_file():
        raise RestoreError(f"the Levin kernels are not in '{path.parent}': set RESTORE_DATA to the folder that "
                           "holds natural/kernels, or give the kernel as a file")
    kernel = next(iter(load_arrays(path).values())).squeeze().float()
    return kernel / kernel.sum()


def resolve_data(data: str, root: str | os.PathLike | None = None) -> str:
    """A --data value as a dataset name (mnist, fashion-mnist) or a folder path: named photo sets become
    their folders, anything else is taken as a path."""
    if data in NATURAL_SETS:
        return str(natural_folder(data, root))
    return data


def run_split_seed(run: dict) -> int | None:
    """The seed of the train/validation split a training run made, from its run.json (``run``): its
    ``split_seed``, or its ``seed`` in runs from before the split had its own; None if it names neither."""
    seed = run.get("split_seed", run.get("seed"))
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None


def held_out_images(run: dict, *, channels: int | None = None, n: int | None = None,
                    root: str | os.PathLike | None = None) -> tuple[list[torch.Tensor], list[str]]:
    """The images a training run held out for validation, as :func:`read_images` gives them (uint8
    (C, H, W), and their relative paths): its run.json (``run``) names the data and the seed of the split
    that training made (:func:`run_split_seed`; :func:`split_indices` with ``VAL_FRACTION``, as
    ``patch_training_data`` splits).
    The first ``n`` of them, or all. Never a training image, nor a test one."""
    folder = Path(resolve_data(run["data"], root))
    files = [rel for rel, _ in image_files(folder)]
    seed = run_split_seed(run)
    if seed is None:
        raise RestoreError(f"the run of {run['data']!r} names no seed of its train/validation split")
    _, val = split_indices(len(files), VAL_FRACTION, seed)
    return read_images(folder, channels=channels, files=[files[i] for i in val[:n]], stretch=run.get("stretch", False))


def read_images(folder: str | os.PathLike, *, channels: int | None = None, files: list[str] | None = None,
                stretch: bool = False) -> tuple[list[torch.Tensor], list[str]]:
    """Every image under ``folder`` (recursively, sorted by path; or the relative paths ``files`` of
    :func:`image_files`) at its own size, as uint8 (C, H, W) tensors, and their relative paths.
    ``channels`` 1 or 3 converts; None keeps the stored kind (all must agree)."""
    from tqdm.auto import tqdm

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise RestoreError(f"cannot read images from folder '{folder}': no such folder")
    if files is None:
        files = [rel for rel, _ in image_files(folder)]
    if not files:
        raise RestoreError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in folder '{folder}' or its subfolders")
    images, kinds = [], {}
    show = None if len(files) > _PROGRESS_MIN_FILES else True
    for rel in tqdm(files, desc="reading images", unit="image", disable=show):
        path = folder / rel
        im, deep, mode = _decoded(path)  # deep: a 16-bit colour or gray + alpha file's samples
        kind = _kind(mode, path, rel, channels, kinds, folder)
        c = channels or (1 if kind == "gray" else 3)
        picture = _to_channels(_eight_bit_samples(deep, c, stretch) if deep is not None else _eight_bit(im, path, stretch), c)
        pixels = np.asarray(picture)
        if stretch:  # the range of what is trained on, after any colour-to-gray conversion (as restoring sees it)
            pixels = _stretch_levels(pixels)
        # (H, W) or (H, W, 3) -> (C, H, W)
        images.append(torch.from_numpy(np.array(pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1))))
    return images, files


def dihedral(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Apply element k (0..7) of the dihedral group of the square to each image of (B, C, P, P):
    k % 4 quarter turns, then a left-right mirror when k >= 4. Which images take which element is worked
    out on the CPU, so images on an accelerator are turned there without waiting for it (a test of a mask
    on the device would wait, eight times a batch)."""
    out = torch.empty_like(x)
    k = k.cpu()
    for j in range(8):
        sel = (k == j).nonzero().squeeze(1)  # (m,) indices of the images that take element j
        if len(sel):
            sel = to_device(sel, x.device)
            y = torch.rot90(x[sel], j % 4, dims=(-2, -1))
            out[sel] = y.flip(-1) if j >= 4 else y
    return out


class PatchSet:
    """Random ``patch`` x ``patch`` crops of whole images of any sizes, for training on photographs.

    An image is chosen with probability proportional to its number of patch positions (so every
    position of every image is equally likely), then a position uniformly. With ``augment``, each
    patch gets one of the 8 flips and quarter turns of the square, as DnCNN trains (Zhang et al. 2017).
    """

    def __init__(self, images: list[torch.Tensor], patch: int, augment: bool = True):
        if patch < 4:
            raise RestoreError(f"the patch size must be at least 4, got {patch}")
        small = [i for i, im in enumerate(images) if min(im.shape[-2:]) < patch]
        if small:
            h, w = images[small[0]].shape[-2:]
            raise RestoreError(f"--patch {patch} is larger than {len(small)} of the images (the first is {w}x{h}); "
                               "choose a smaller patch")
        self.images, self.patch, self.augment = images, patch, augment
        self.channels = images[0].shape[0]
        positions = torch.tensor([(im.shape[-2] - patch + 1) * (im.shape[-1] - patch + 1) for im in images],
                                 dtype=torch.float64)
        self.weights = positions / positions.sum()
        self.heights = torch.tensor([im.shape[-2] for im in images])
        self.widths = torch.tensor([im.shape[-1] for im in images])
        self._stores: dict[torch.device, tuple[torch.Tensor, ...]] = {}  # the images on a device, for gathered()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(N images, C, patch, patch): what a batch of patches looks like, N being the image count."""
        return (len(self.images), self.channels, self.patch, self.patch)

    def _draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(image index, top, left) of n random patches, each (n,) int64, drawn on the CPU from ``generator``."""
        idx = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        u = torch.rand(n, 2, generator=generator, dtype=torch.float64)
        top = (u[:, 0] * (self.heights[idx] - self.patch + 1)).long()  # u < 1: a position of the image
        left = (u[:, 1] * (self.widths[idx] - self.patch + 1)).long()
        return idx, top, left

    def crops(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """n random uint8 patches (n, C, P, P), without augmentation."""
        idx, top, left = self._draw(n, generator)
        out = torch.empty((n, self.channels, self.patch, self.patch), dtype=torch.uint8)
        for j, (i, a, b) in enumerate(zip(idx.tolist(), top.tolist(), left.tolist())):
            out[j] = self.images[i][:, a : a + self.patch, b : b + self.patch]
        return out

    def batch(self, n: int, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
        """n random patches as floats in [0, 1], (n, C, P, P) on ``device``, flipped and turned when ``augment``.
        The same draws from ``generator`` give the same batch on any device. On the CPU the patches are cut
        one by one and then turned (:func:`dihedral`); elsewhere the images live on the device and one
        gather there cuts and turns the whole batch (:meth:`gathered`): on a CPU core, cutting 256 colour
        64x64 patches took 12 ms and turning them 18 ms, while an H200 took 67 ms for a whole training step."""
        device = torch.device(device)
        if device.type != "cpu":
            return self.gathered(n, generator, device).float() / 255
        x = self.crops(n, generator).float() / 255
        if self.augment:
            x = dihedral(x, torch.randint(8, (n,), generator=generator))
        return x

    def gathered(self, n: int, generator: torch.Generator, device: torch.device | str) -> torch.Tensor:
        """The uint8 patches of :meth:`batch` (the same draws, cut and turned alike) by one gather on ``device``
        from a copy of the images there, made at the first call: the host draws 4n integers and sends them."""
        device = torch.device(device)
        idx, top, left = self._draw(n, generator)
        k = torch.randint(8, (n,), generator=generator) if self.augment else torch.zeros(n, dtype=torch.long)
        if device not in self._stores:
            self._stores[device] = self._store(device)
        flat, offsets, heights, widths, rows, cols = self._stores[device]
        i, top, left, k = to_device(torch.stack([idx, top, left, k]), device)  # one copy, not waited for
        w = widths[i].view(n, 1, 1, 1)
        plane = (heights[i] * widths[i]).view(n, 1, 1, 1)
        base = (offsets[i] + top * widths[i] + left).view(n, 1, 1, 1)
        channel = torch.arange(self.channels, device=device).view(1, -1, 1, 1)
        # pixel (r, s) of turned patch j is pixel (rows[k_j, r, s], cols[k_j, r, s]) of the patch before turning
        return flat[base + channel * plane + rows[k].unsqueeze(1) * w + cols[k].unsqueeze(1)]

    def _store(self, device: torch.device) -> tuple[torch.Tensor, ...]:
        """The images flattened into one uint8 tensor on ``device``, each one's offset, height and width, and
        where each pixel of a patch turned by element k of :func:`dihedral` comes from (rows, cols: (8, P, P))."""
        p = self.patch
        grid = torch.arange(p * p).view(1, 1, p, p).expand(8, 1, p, p).contiguous()
        source = dihedral(grid, torch.arange(8))[:, 0]  # the flat position in the unturned patch of each pixel
        sizes = torch.tensor([im.numel() for im in self.images])
        offsets = torch.cumsum(sizes, 0) - sizes
        flat = torch.cat([im.reshape(-1) for im in self.images])
        return tuple(t.to(device) for t in (flat, offsets, self.heights, self.widths, source // p, source % p))


def patch_training_data(data: str, *, patch: int, channels: int | None = None, val_fraction: float = VAL_FRACTION,
                        val_patches: int = 512, augment: bool = True, seed: int = 0,
                        root: str | os.PathLike | None = None, stretch: bool = False) -> dict:
    """Training data of random patches from a folder of photographs (or a named set: train400, bsds400).

    Whole images are split into train and validation files as :func:`load_folder` splits them; "train" is
    a :class:`PatchSet` (with the 8 flips and turns when ``augment``) and "val" a fixed uint8 tensor of
    ``val_patches`` patches of the validation images. ``stretch`` maps each image's range of values onto
    0-255 (:func:`_eight_bit`).
    """
    _check_training_options(None, channels, val_fraction)
    if data in _FOLDERS:
        raise RestoreError(f"--patch trains on folders of photographs; {data} images are trained whole (drop --patch)")
    folder = Path(resolve_data(data, root)).expanduser()
    if not folder.exists():
        raise RestoreError(f"unknown dataset {data!r}: use mnist, fashion-mnist, {', '.join(NATURAL_SETS)} or a folder")
    listing = image_files(folder)  # (relative path, bytes), for the reading and for the file-list hash
    images, files = read_images(folder, channels=channels, files=[rel for rel, _ in listing], stretch=stretch)
    n = len(images)
    if n < 2 and val_fraction > 0:
        raise RestoreError(f"folder '{folder}' has only 1 image; a train/validation split needs at least 2")
    train_index, val_index = split_indices(n, val_fraction, seed)
    train = PatchSet([images[i] for i in train_index], patch, augment)
    val = val_set = None
    if len(val_index):
        val_set = PatchSet([images[i] for i in val_index], patch)
        val = val_set.crops(val_patches, torch.Generator().manual_seed(seed))
    return {
        "train": train, "val": val, "val_set": val_set, "name": data if data in NATURAL_SETS else str(folder.resolve()),
        "files_train": [files[i] for i in train_index], "files_val": [files[i] for i in val_index],
        "file_list_hash": file_list_hash(listing), "patch": patch,
    }
