"""restore.data training sets: folders of images (recursive, resized, centre-cropped, split) and MNIST."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import restore.data
from conftest import UNDER_CI
from restore.data import file_list_hash, load_folder, load_mnist, training_data
from restore.errors import RestoreError

SHARED = Path(restore.data.__file__).resolve().parents[1].parent / "shared" / "data"
# Skipped where the shared data folder is absent, but never under CI, which has it (conftest.UNDER_CI).
needs_shared = pytest.mark.skipif(not SHARED.is_dir() and not UNDER_CI, reason=f"shared data folder {SHARED} is absent")


def _save(path: Path, pixels: np.ndarray) -> Path:
    """Write (H, W) or (H, W, 3) pixels with PIL, making the parent folders; the suffix picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def _gray_tree(root: Path, n: int = 20) -> dict[str, int]:
    """``n`` constant gray images, many sizes and aspect ratios, in nested folders: {relative path: value}."""
    folders = ["", "a", "a/b", "c"]
    suffixes = [".png", ".jpg", ".PNG", ".jpeg"]
    values = {}
    for i in range(n):
        rel = f"{folders[i % 4]}/img{i:02d}{suffixes[(i // 4) % 4]}".lstrip("/")
        h, w = 5 + (7 * i) % 13, 6 + 3 * i  # from 5x6 (upscaled) to 17x63 (downscaled)
        values[rel] = 10 * i + 5
        _save(root / rel, np.full((h, w), values[rel], np.uint8))
    # Files that are not images, and an empty folder, are ignored.
    (root / "a" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    return values


# ---------------------------------------------------------------------------------------------
# Folders: shapes, split, hash


def test_nested_gray_folder_shapes_and_split(tmp_path):
    values = _gray_tree(tmp_path)
    data = load_folder(tmp_path, size=8, val_fraction=0.25, seed=0)
    assert data["train"].shape == (15, 1, 8, 8) and data["val"].shape == (5, 1, 8, 8)
    assert data["train"].dtype == torch.uint8 and data["val"].dtype == torch.uint8

    # Each part is sorted; together they are every image file once (no notes.txt).
    train, val = data["files_train"], data["files_val"]
    assert train == sorted(train) and val == sorted(val)
    assert not set(train) & set(val) and sorted(train + val) == sorted(values)

    # Row k of each tensor is the file named at position k (JPEGs of a constant are within a few levels).
    for images, files in ((data["train"], train), (data["val"], val)):
        for image, rel in zip(images, files):
            assert (image.int() - values[rel]).abs().max() <= 3, rel

    again = load_folder(tmp_path, size=8, val_fraction=0.25, seed=0)
    assert again["files_val"] == val and torch.equal(again["train"], data["train"])
    other = load_folder(tmp_path, size=8, val_fraction=0.25, seed=1)
    assert len(other["files_val"]) == 5 and other["files_val"] != val


def test_split_keeps_at_least_one_validation_image(tmp_path):
    for i in range(3):
        _save(tmp_path / f"{i}.png", np.full((6, 6), i, np.uint8))
    # round(0.05 * 3) is 0, but a validation set needs an image; val_fraction=0 means none.
    assert len(load_folder(tmp_path, size=4)["files_val"]) == 1
    data = load_folder(tmp_path, size=4, val_fraction=0)
    assert data["train"].shape == (3, 1, 4, 4) and data["val"].shape == (0, 1, 4, 4)


def test_file_list_hash_tracks_names_and_sizes(tmp_path):
    folder = tmp_path / "images"
    for i in range(3):
        _save(folder / "sub" / f"{i}.png", np.full((6, 7), 50 * i, np.uint8))
    first = load_folder(folder, size=4)["file_list_hash"]
    listed = [(f"sub/{i}.png", (folder / "sub" / f"{i}.png").stat().st_size) for i in range(3)]
    assert first == file_list_hash(listed) == file_list_hash(listed[::-1])

    # The hash depends on relative paths and sizes, not on where the folder is.
    shutil.copytree(folder, tmp_path / "copy")
    assert load_folder(tmp_path / "copy", size=4)["file_list_hash"] == first

    _save(folder / "3.png", np.zeros((6, 7), np.uint8))
    added = load_folder(folder, size=4)["file_list_hash"]
    assert added != first

    # Same name, different content and byte size.
    _save(folder / "sub" / "0.png", np.random.default_rng(0).integers(0, 256, (6, 7), dtype=np.uint8))
    assert (folder / "sub" / "0.png").stat().st_size != listed[0][1]
    assert load_folder(folder, size=4)["file_list_hash"] not in (first, added)


# ---------------------------------------------------------------------------------------------
# Folders: pixels


@pytest.mark.parametrize("shape", [(30, 90), (90, 30)], ids=["wide", "tall"])
def test_centre_crop_keeps_the_middle(tmp_path, shape):
    pixels = np.zeros(shape, np.uint8)  # black outer thirds along the long side, white middle
    if shape[1] > shape[0]:
        pixels[:, 30:60] = 255
    else:
        pixels[30:60, :] = 255
    _save(tmp_path / "x.png", pixels)
    image = load_folder(tmp_path, size=16, val_fraction=0)["train"][0, 0]
    # Only the resampling kernel at the crop's edge reaches the black thirds.
    assert image.min() > 230 and image.float().mean() > 250


def test_mixed_gray_and_colour(tmp_path):
    _save(tmp_path / "gray.png", np.full((8, 8), 90, np.uint8))
    _save(tmp_path / "sub" / "colour.jpg", np.full((8, 8, 3), (200, 100, 50), np.uint8))
    with pytest.raises(RestoreError) as info:
        load_folder(tmp_path, size=8, val_fraction=0)
    message = str(info.value)
    assert "gray ('gray.png')" in message and "colour ('sub/colour.jpg')" in message
    assert "pass channels=1 or channels=3 (--channels) to convert all" in message and "\n" not in message

    rgb = load_folder(tmp_path, size=8, channels=3, val_fraction=0)
    assert rgb["files_train"] == ["gray.png", "sub/colour.jpg"] and rgb["train"].shape == (2, 3, 8, 8)
    assert (rgb["train"][0] == 90).all()
    expected = torch.tensor([200, 100, 50]).view(3, 1, 1)
    assert (rgb["train"][1].int() - expected).abs().max() <= 3

    gray = load_folder(tmp_path, size=8, channels=1, val_fraction=0)
    assert gray["train"].shape == (2, 1, 8, 8) and (gray["train"][0] == 90).all()
    # BT.601 luma of (200, 100, 50): 0.299 * 200 + 0.587 * 100 + 0.114 * 50 = 124.2.
    assert (gray["train"][1].int() - 124).abs().max() <= 3


def _palette_image():
    """A palette image whose one colour, (10, 200, 30), is marked fully transparent."""
    image = Image.new("P", (9, 6), 1)
    image.putpalette([0, 0, 0, 10, 200, 30])
    image.info["transparency"] = 1
    return image


@pytest.mark.parametrize(
    "make, expected",
    [
        (lambda: Image.new("RGBA", (9, 6), (10, 200, 30, 0)), (10, 200, 30)),
        (lambda: Image.new("LA", (9, 6), (70, 0)), (70,)),
        (_palette_image, (10, 200, 30)),
    ],
    ids=["RGBA", "LA", "P"],
)
def test_alpha_is_dropped_and_palette_becomes_colour(tmp_path, make, expected):
    make().save(tmp_path / "x.png")
    image = load_folder(tmp_path, size=5, val_fraction=0)["train"][0]
    # Fully transparent pixels keep their colour: alpha is dropped, not composited over a background.
    assert image.shape == (len(expected), 5, 5)
    assert torch.equal(image, torch.tensor(expected, dtype=torch.uint8).view(-1, 1, 1).expand(-1, 5, 5))


def test_16_bit_gray_png_scales_to_8_bit(tmp_path):
    values = np.random.default_rng(0).integers(0, 65536, (8, 8)).astype(np.uint16)
    values[0, :4] = (0, 128, 32768, 65535)
    _save(tmp_path / "deep.png", values)
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    # Same size, so no resampling: each pixel is round(v * 255 / 65535) = round(v / 257).
    image = load_folder(tmp_path, size=8, val_fraction=0)["train"][0, 0]
    assert image.tolist() == np.rint(values / 257).astype(np.uint8).tolist()
    assert image[0, :4].tolist() == [0, 0, 128, 255]


# ---------------------------------------------------------------------------------------------
# Folders: errors


def _corrupt(tmp_path):
    _save(tmp_path / "good.png", np.zeros((6, 6), np.uint8))
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return tmp_path, str(tmp_path / "sub" / "bad.png")


def _one_image(tmp_path):
    _save(tmp_path / "only.png", np.zeros((6, 6), np.uint8))
    return tmp_path, "has only 1 image ('only.png')"


def _file(tmp_path):
    path = _save(tmp_path / "x.png", np.zeros((6, 6), np.uint8))
    return path, f"'{path}': it is a file, expected a folder"


def _empty(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.txt").write_text("no images here")
    return tmp_path, f"no image files (.png, .jpg, .jpeg, .bmp, .tif, .tiff, .webp) in folder '{tmp_path}'"


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: (tmp / "missing", f"'{tmp / 'missing'}': no such folder"),
        _file,
        _empty,
        _corrupt,
        _one_image,
    ],
    ids=["missing", "file", "empty", "corrupt", "one-image"],
)
def test_folder_errors_are_one_line(tmp_path, make):
    root, expected = make(tmp_path)
    with pytest.raises(RestoreError) as info:
        load_folder(root, size=8)
    message = str(info.value)
    assert expected in message and "\n" not in message


def test_bad_options(tmp_path):
    _save(tmp_path / "a.png", np.zeros((6, 6), np.uint8))
    with pytest.raises(RestoreError, match="at least 4, got 3"):
        load_folder(tmp_path, size=3, val_fraction=0)
    with pytest.raises(RestoreError, match="channels must be 1"):
        load_folder(tmp_path, size=4, channels=2, val_fraction=0)
    with pytest.raises(RestoreError, match="val_fraction"):
        load_folder(tmp_path, size=4, val_fraction=1.0)


# ---------------------------------------------------------------------------------------------
# training_data


@needs_shared
def test_training_data_mnist():
    data = training_data("mnist", root=SHARED)
    assert data["train"].shape == (60000, 1, 28, 28) and data["val"].shape == (10000, 1, 28, 28)
    assert data["train"].dtype == torch.uint8 and data["name"] == "mnist"
    assert data["files_train"] is None and data["files_val"] is None and data["file_list_hash"] is None
    # val is the official test split, not a part of train.
    assert torch.equal(data["val"], load_mnist("test", root=SHARED)[0])

    big = training_data("mnist", size=32, channels=3, root=SHARED)
    assert big["train"].shape == (60000, 3, 32, 32) and big["val"].shape == (10000, 3, 32, 32)
    assert big["train"].dtype == torch.uint8
    assert torch.equal(big["train"][:, 0], big["train"][:, 2])
    # Resizing keeps the brightness (mean 33.3 of 255) and the digit in place.
    assert big["train"][:, 0].double().mean().item() == pytest.approx(33.3, abs=0.5)
    small = torch.nn.functional.interpolate(big["val"][:8, :1].float(), size=28, mode="area")
    assert (small - data["val"][:8].float()).abs().mean() < 10


def test_training_data_folder_and_errors(tmp_path, monkeypatch):
    for i in range(4):
        _save(tmp_path / "set" / f"{i}.png", np.full((10, 12), 60 * i, np.uint8))
    monkeypatch.chdir(tmp_path)
    data = training_data("set", size=6, val_fraction=0.25)
    # The name is the absolute path, so a record of the run says which folder it was.
    assert data["name"] == str((tmp_path / "set").resolve())
    assert data["train"].shape == (3, 1, 6, 6) and len(data["files_val"]) == 1
    assert len(data["file_list_hash"]) == 64

    # Without --size, the folder's own size: the shorter side all its images share (10 here).
    assert training_data("set", val_fraction=0.25)["train"].shape == (3, 1, 10, 10)
    _save(tmp_path / "set" / "big.png", np.full((20, 24), 9, np.uint8))
    with pytest.raises(RestoreError, match="have different sizes .* give --size S"):
        training_data("set")
    with pytest.raises(RestoreError, match="it is a file, expected a folder"):
        training_data(str(tmp_path / "set" / "0.png"), size=6)
    with pytest.raises(RestoreError) as info:
        training_data("nonexistent")
    assert str(info.value) == ("unknown dataset 'nonexistent': use mnist, fashion-mnist, train400, bsds400, set12, bsd68, "
                               "cbsd68 or a folder of images")


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_stretched_training_keeps_the_levels_of_a_16_bit_colour_png(tmp_path, channels):
    """PIL reads a 16-bit colour PNG at 8 bits: unscaled 12-bit colour data (0-4095) would keep 16 levels per
    channel, which --stretch could only spread apart. The 16-bit samples are stretched instead (after the
    conversion to gray where asked), so about 256 levels remain."""
    from restore.data import read_images
    from restore.io import write_png

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(100, 4000, (1, 3, 20, 24)) / 65535).float()
    (tmp_path / "f").mkdir()
    write_png(tmp_path / "f" / "dark.png", x, bits=16)
    (image,), _ = read_images(tmp_path / "f", channels=channels, stretch=True)
    assert image.shape[0] == (channels or 3)
    assert int(image.min()) == 0 and int(image.max()) == 255
    assert len(torch.unique(image)) > 150  # 16 without the 16-bit samples
    (plain,), _ = read_images(tmp_path / "f", channels=channels)
    assert int(plain.max()) <= 16  # without --stretch: 8 bits of the full 16-bit range, as before


def test_a_planar_16_bit_colour_tiff_trains_as_the_picture_it_holds(tmp_path):
    """PIL reads a 16-bit RGB TIFF stored one plane per channel as a wrong picture, and a 16-bit gray + alpha
    TIFF not at all; training reads both through tifffile, at 8 bits as PIL gives contiguous colour ones.
    A file listed and then gone is one line, not a traceback."""
    import tifffile

    from restore.data import read_images

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 65536, (12, 10, 3)).astype(np.uint16)
    (tmp_path / "f").mkdir()
    tifffile.imwrite(tmp_path / "f" / "planar.tif", pixels.transpose(2, 0, 1), photometric="rgb", planarconfig="separate")
    (image,), _ = read_images(tmp_path / "f")
    expected = pixels >> 8  # the high byte, as PIL reads the contiguous ones (so digests of older runs match)
    assert np.array_equal(image.numpy(), expected.transpose(2, 0, 1))
    ds = load_folder(tmp_path / "f", size=10, val_fraction=0.0)  # centre-cropped to 10x10, nothing to resize
    assert np.array_equal(ds["train"][0].numpy(), expected[1:11].transpose(2, 0, 1))
    tifffile.imwrite(tmp_path / "f" / "planar.tif", pixels[:, :, :2], photometric="minisblack", extrasamples=["unassalpha"])
    (gray,), _ = read_images(tmp_path / "f")
    assert np.array_equal(gray[0].numpy(), expected[:, :, 0])
    assert training_data(str(tmp_path / "f"), val_fraction=0.0)["train"].shape == (1, 1, 10, 10)  # its own size
    with pytest.raises(RestoreError, match="cannot read image .*gone.tif"):
        read_images(tmp_path / "f", files=["gone.tif"])


@pytest.mark.parametrize("alpha", [False, True])
def test_without_stretch_16_bit_colour_pngs_train_as_pil_read_them(tmp_path, monkeypatch, alpha):
    """Reading 16-bit colour and gray + alpha PNGs through their 16-bit samples must not change, without
    --stretch, what older runs trained on and took digests of: PIL's reading (the high byte; a gray + alpha PNG
    as colour; resized before the conversion to gray), for every channel choice, resized or not."""
    import restore.data as data
    from restore.data import read_images
    from restore.io import write_png

    g = torch.Generator().manual_seed(0)
    (tmp_path / "f").mkdir()
    for i in range(2):
        x = torch.rand(1, 1 if alpha else 3, 30, 34, generator=g)
        write_png(tmp_path / "f" / f"{i}.png", x, alpha=torch.rand(1, 1, 30, 34, generator=g) if alpha else None, bits=16)

    def everything():
        return [load_folder(tmp_path / "f", size=s, channels=c, val_fraction=0.0)["train"] for s in (20, 30)
                for c in (None, 1, 3)] + [torch.stack(read_images(tmp_path / "f", channels=c)[0]) for c in (None, 1, 3)]

    ours = everything()
    from restore.io import _open_image

    def pil_only(path):  # PIL's reading alone
        im = _open_image(path)
        return im, None, im.mode

    monkeypatch.setattr(data, "_decoded", pil_only)
    for a, b in zip(ours, everything()):
        assert torch.equal(a, b)
    assert ours[0].shape[1] == 3  # a gray + alpha PNG is colour to PIL
