"""restore.io: image round trips, PIL modes, bad inputs, atomic writes, array files."""

import numpy as np
import pytest
import torch
from PIL import Image

from restore.errors import RestoreError
from restore.io import (
    atomic_write,
    bit_depth,
    load_arrays,
    output_path_check,
    read_image,
    read_images,
    save_arrays,
    write_grid,
    write_json,
    write_png,
)


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _file_mode(path):
    with Image.open(path) as im:
        return im.mode


def _on_grid(x, levels):
    """x snapped to the values an integer file of ``levels`` steps can hold exactly."""
    return torch.round(x * levels) / levels


# ---------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip_8bit(tmp_path, channels):
    x = _on_grid(_rand(1, channels, 9, 13), 255)
    write_png(tmp_path / "x.png", x)
    y, alpha = read_image(tmp_path / "x.png")
    assert y.dtype == torch.float32 and y.shape == (1, channels, 9, 13)
    assert alpha is None
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)
    assert _file_mode(tmp_path / "x.png") == ("L" if channels == 1 else "RGB")


@pytest.mark.parametrize("channels, with_alpha", [(1, False), (1, True), (3, False), (3, True)])
def test_png_round_trip_16bit_is_exact(tmp_path, channels, with_alpha):
    """16-bit PNGs keep their 65,536 levels both ways, gray or colour, with or without alpha: PIL alone
    reads a 16-bit colour or gray + alpha PNG at 8 bits and writes 16 bits only for plain gray."""
    x = _on_grid(_rand(1, channels, 8, 11), 65535)
    alpha = _on_grid(_rand(1, 1, 8, 11, seed=1), 65535) if with_alpha else None
    write_png(tmp_path / "x.png", x, alpha=alpha, bits=16)
    assert bit_depth(tmp_path / "x.png") == 16  # 16 bits really stored
    y, a = read_image(tmp_path / "x.png")
    # Exact to one level of 1/65535, far below the 8-bit step of 1/255.
    assert (y - x).abs().max() <= 0.5 / 65535
    assert torch.equal(torch.round(y * 65535), torch.round(x * 65535))
    if with_alpha:
        assert torch.equal(torch.round(a * 65535), torch.round(alpha * 65535))
    else:
        assert a is None
    with Image.open(tmp_path / "x.png") as im:  # a valid PNG that another decoder reads as the same picture
        im.load()
        assert im.size == (11, 8)
        if channels == 1 and not with_alpha:
            assert np.array_equal(np.asarray(im), torch.round(x[0, 0] * 65535).numpy().astype(np.uint16))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_16bit_colour_png_is_turned_upright_as_8bit_files_are(tmp_path, orientation):
    """A 16-bit colour PNG goes through its own decoder; its EXIF orientation must turn it as PIL turns
    the same picture stored in 8 bits, and a tRNS colour key must still mark transparent pixels."""
    import struct
    import zlib

    from restore.io import _png16_bytes

    pixels = (_on_grid(_rand(5, 7, 3), 255).numpy() * 255).astype(np.uint16)  # (H, W, 3), 8-bit values
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "p8.png", exif=exif)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    key = pixels[2, 3] * 257
    png = _png16_bytes(pixels * 257)  # the same picture on 16 bits: v * 257 is v / 255 of 65535
    at = png.index(b"IDAT") - 4  # before the image data, as PNG writers put them
    extra = chunk(b"eXIf", exif.tobytes()) + chunk(b"tRNS", struct.pack(">HHH", *key.tolist()))
    (tmp_path / "p16.png").write_bytes(png[:at] + extra + png[at:])
    y8, _ = read_image(tmp_path / "p8.png")
    y16, alpha = read_image(tmp_path / "p16.png")
    torch.testing.assert_close(y16, y8, atol=1e-6, rtol=0)
    transparent = (y16[0] * 65535).round().permute(1, 2, 0).eq(torch.from_numpy(key.astype(np.float32))).all(-1)
    assert alpha is not None and torch.equal(alpha[0, 0] == 0, transparent) and transparent.sum() >= 1


@pytest.mark.parametrize("layout", ["contig", "separate", "zlib"])
@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_16bit_colour_tiff_is_read_at_16_bits_and_turned_upright(tmp_path, layout, orientation):
    """PIL reads a 16-bit RGB TIFF at 8 bits, and a planar one (one plane per channel) as a wrong picture;
    tifffile reads it exactly, and its Orientation tag turns it as PIL turns the same picture in 8 bits."""
    import tifffile

    pixels = (_on_grid(_rand(5, 7, 3), 255).numpy() * 255).astype(np.uint16) * 257  # 8-bit values on 16 bits
    tag = [(274, "H", 1, orientation, True)]
    stored = pixels.transpose(2, 0, 1) if layout == "separate" else pixels  # (3, H, W) planes or (H, W, 3)
    tifffile.imwrite(tmp_path / "c16.tif", stored, photometric="rgb", extratags=tag,
                     planarconfig="separate" if layout == "separate" else "contig",
                     compression="zlib" if layout == "zlib" else None)
    tifffile.imwrite(tmp_path / "c8.tif", (pixels // 257).astype(np.uint8), photometric="rgb", extratags=tag)
    y16, alpha = read_image(tmp_path / "c16.tif")
    y8, _ = read_image(tmp_path / "c8.tif")  # PIL's reading, EXIF orientation applied
    assert alpha is None and bit_depth(tmp_path / "c16.tif") == 16 and bit_depth(tmp_path / "c8.tif") == 8
    torch.testing.assert_close(y16, y8, atol=1e-6, rtol=0)
    fine = (_rand(4, 6, 3, seed=2).numpy() * 65535).round().astype(np.uint16)  # all 16 bits used
    tifffile.imwrite(tmp_path / "fine.tif", fine, photometric="rgb")
    y, _ = read_image(tmp_path / "fine.tif")
    assert torch.equal((y[0] * 65535).round().permute(1, 2, 0), torch.from_numpy(fine.astype(np.float32)))


@pytest.mark.parametrize("extra", ["unassalpha", "assocalpha"])
def test_16bit_tiffs_with_alpha(tmp_path, extra):
    """RGBA (premultiplied or not) and gray + alpha (which PIL cannot open) TIFFs of 16-bit samples."""
    import tifffile

    colour, a = _rand(6, 5, 3).numpy(), 0.2 + 0.8 * _rand(6, 5, 1, seed=1).numpy()
    stored = colour * a if extra == "assocalpha" else colour  # associated alpha: colour stored premultiplied
    tifffile.imwrite(tmp_path / "rgba.tif", (np.concatenate([stored, a], 2) * 65535).round().astype(np.uint16),
                     photometric="rgb", extrasamples=[extra])
    y, alpha = read_image(tmp_path / "rgba.tif")
    assert y.shape == (1, 3, 6, 5) and alpha.shape == (1, 1, 6, 5)
    torch.testing.assert_close(alpha[0, 0], torch.from_numpy(a[:, :, 0]).float(), atol=1 / 65535, rtol=0)
    torch.testing.assert_close(y[0].permute(1, 2, 0), torch.from_numpy(colour).float(), atol=1e-4, rtol=0)
    tifffile.imwrite(tmp_path / "la.tif", (np.concatenate([colour[:, :, :1], a], 2) * 65535).round().astype(np.uint16),
                     photometric="minisblack", extrasamples=[extra])
    y, alpha = read_image(tmp_path / "la.tif")
    assert y.shape == (1, 1, 6, 5) and alpha.shape == (1, 1, 6, 5) and bit_depth(tmp_path / "la.tif") == 16


def test_a_16bit_tiff_that_needs_imagecodecs_is_read_at_8_bits_with_a_note(tmp_path, monkeypatch):
    """LZW (among others) needs the imagecodecs package, which restore does not require: PIL's 8 bits then,
    with a RestoreWarning that says so (and bit_depth says 8), or one error line where PIL cannot read the
    file either (gray + alpha). The command line prints a RestoreWarning as one line."""
    import subprocess
    import sys

    import tifffile

    import restore.io
    from restore.errors import RestoreWarning

    pixels = (_rand(4, 6, 3).numpy() * 65535).round().astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", pixels, photometric="rgb")
    tifffile.imwrite(tmp_path / "la.tif", pixels[:, :, :2], photometric="minisblack", extrasamples=["unassalpha"])
    monkeypatch.setattr(restore.io, "_decodable", lambda tifffile, page: "its 16-bit samples are LZW-compressed, "
                        "which needs the imagecodecs package (pip install imagecodecs)")
    with pytest.warns(RestoreWarning, match=r"'.*c.tif' is read at 8 bits: .*LZW.*pip install imagecodecs\)$"):
        y, _ = read_image(tmp_path / "c.tif")
    assert torch.equal((y[0] * 255).round().permute(1, 2, 0), torch.from_numpy((pixels >> 8).astype(np.float32)))
    assert bit_depth(tmp_path / "c.tif") == 8  # as it is read
    with pytest.raises(RestoreError, match=r"cannot read image .*la.tif': its 16-bit samples are LZW-compressed"):
        read_image(tmp_path / "la.tif")
    monkeypatch.undo()
    script = ("import warnings\n"
              "from restore.cli.app import _notes_as_one_line\n"
              "from restore.errors import RestoreWarning\n"
              "_notes_as_one_line()\n"
              "warnings.warn('read at 8 bits', RestoreWarning)\n"
              "warnings.warn('other', UserWarning)\n")
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True).stderr.splitlines()
    assert err[0] == "note: read at 8 bits" and "UserWarning: other" in err[1]


def test_bit_depth_of_image_files(tmp_path):
    gray = (_rand(6, 5).numpy() * 65535).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "g16.tif")
    Image.fromarray(gray).save(tmp_path / "g16.png")
    Image.fromarray((gray // 257).astype(np.uint8)).save(tmp_path / "g8.png")
    Image.fromarray((gray // 257).astype(np.uint8)).convert("RGB").save(tmp_path / "c8.jpg")
    Image.fromarray((gray // 257).astype(np.uint8)).convert("P").convert("1").save(tmp_path / "bilevel.png")
    (tmp_path / "header.png").write_bytes((tmp_path / "g16.png").read_bytes()[:20])  # cut inside IHDR
    (tmp_path / "folder.png").mkdir()
    Image.fromarray(gray.astype(np.int32), mode="I").save(tmp_path / "i32.tif")  # 16-bit values in PIL's "I"
    names = ("g16.tif", "g16.png", "g8.png", "c8.jpg", "bilevel.png", "header.png", "folder.png", "missing.png",
             "i32.tif")
    depths = {name: bit_depth(tmp_path / name) for name in names}
    # Files that cannot be read are 8 here; read_image refuses them with the reason.
    assert depths == {"g16.tif": 16, "g16.png": 16, "g8.png": 8, "c8.jpg": 8, "bilevel.png": 8, "header.png": 8,
                      "folder.png": 8, "missing.png": 8, "i32.tif": 16}


def test_write_png_clips_and_rounds(tmp_path):
    x = torch.tensor([-0.5, 0.0, 0.5 / 255 + 1e-4, 0.703, 1.0, 3.0]).view(1, 1, 1, 6)
    write_png(tmp_path / "x.png", x)
    with Image.open(tmp_path / "x.png") as im:
        assert np.asarray(im).tolist() == [[0, 0, 1, 179, 255, 255]]


@pytest.mark.parametrize("channels, mode", [(3, "RGBA"), (1, "LA")])
def test_png_round_trip_with_alpha(tmp_path, channels, mode):
    x = _on_grid(_rand(1, channels, 6, 7), 255)
    a = _on_grid(_rand(1, 1, 6, 7, seed=1), 255)
    write_png(tmp_path / "x.png", x, alpha=a)
    assert _file_mode(tmp_path / "x.png") == mode
    y, alpha = read_image(tmp_path / "x.png")
    assert y.shape == (1, channels, 6, 7) and alpha.shape == (1, 1, 6, 7)
    torch.testing.assert_close(y, x, atol=1e-6, rtol=0)
    torch.testing.assert_close(alpha, a, atol=1e-6, rtol=0)


def test_read_mode_conversions(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, 1] = (0, 0, 255)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    gray, _ = read_image(tmp_path / "c.png", mode="L")
    assert gray.shape == (1, 1, 2, 2)
    # BT.601 luminance: red weighs 0.299, blue 0.114.
    torch.testing.assert_close(gray[0, 0], torch.tensor([[0.299, 0.0], [0.0, 0.114]]), atol=1e-6, rtol=0)

    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tmp_path / "g.png")
    colour, _ = read_image(tmp_path / "g.png", mode="RGB")
    assert colour.shape == (1, 3, 1, 2)
    assert torch.equal(colour, torch.tensor([0.0, 1.0]).view(1, 1, 1, 2).expand(1, 3, 1, 2))
    with pytest.raises(RestoreError, match="mode"):
        read_image(tmp_path / "g.png", mode="CMYK")


def test_read_palette_png(tmp_path):
    # A 2-colour palette image: index 0 red, index 1 green.
    im = Image.new("P", (3, 2))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putdata([0, 1, 0, 1, 1, 0])
    im.save(tmp_path / "p.png")
    y, alpha = read_image(tmp_path / "p.png")
    assert alpha is None and y.shape == (1, 3, 2, 3)
    assert y[0, :, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert y[0, :, 0, 1].tolist() == [0.0, 1.0, 0.0]

    # With index 1 transparent, the file has an alpha channel.
    im.save(tmp_path / "pt.png", transparency=1)
    y, alpha = read_image(tmp_path / "pt.png")
    assert alpha is not None
    assert alpha[0, 0].tolist() == [[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]]


def test_read_bilevel_and_16bit_int_modes(tmp_path):
    Image.fromarray(np.array([[True, False]])).save(tmp_path / "b.png")
    y, _ = read_image(tmp_path / "b.png")
    assert y.flatten().tolist() == [1.0, 0.0]

    Image.fromarray(np.array([[0, 65535, 32768]], np.int32)).save(tmp_path / "i.tif")
    y, _ = read_image(tmp_path / "i.tif")
    torch.testing.assert_close(y.flatten(), torch.tensor([0.0, 1.0, 32768 / 65535]), atol=1e-7, rtol=0)


def test_read_jpeg(tmp_path):
    # A smooth image survives JPEG compression to within a few levels.
    ramp = np.tile(np.linspace(0, 255, 32), (24, 1))
    rgb = np.stack([ramp, ramp[::-1, ::-1], np.full_like(ramp, 128)], axis=2).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=95)
    y, alpha = read_image(tmp_path / "x.jpg")
    assert alpha is None and y.shape == (1, 3, 24, 32)
    expected = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    assert (y - expected).abs().mean() < 0.01


def test_read_images_folder(tmp_path):
    for name, value in [("b.png", 0.5), ("a.png", 0.25), ("c.jpg", 1.0)]:
        Image.fromarray(np.full((4, 5), round(value * 255), np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub.png").mkdir()  # a folder with an image-like name is skipped
    images, paths = read_images(tmp_path)
    assert [p.name for p in paths] == ["a.png", "b.png", "c.jpg"]
    assert images.shape == (3, 1, 4, 5)
    assert images[:, 0, 0, 0].tolist() == pytest.approx([64 / 255, 128 / 255, 1.0], abs=1e-6)

    single, paths = read_images(tmp_path / "b.png")
    assert single.shape == (1, 1, 4, 5) and [p.name for p in paths] == ["b.png"]


def test_read_images_folder_with_mixed_sizes_names_the_odd_file(tmp_path):
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "b.png")
    with pytest.raises(RestoreError, match="b.png"):
        read_images(tmp_path)


def test_read_images_errors(tmp_path):
    with pytest.raises(RestoreError, match="no image files"):
        read_images(tmp_path)
    with pytest.raises(RestoreError, match="no such file or folder"):
        read_images(tmp_path / "missing")


# ---------------------------------------------------------------------------------------------
# Bad inputs: one RestoreError naming the path, never a PIL traceback


def _truncated_png(path):
    write_png(path, _rand(1, 3, 32, 32))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.mkdir(), "folder"),
        (lambda p: p.write_text("hello, not a picture"), "not a recognised image"),
        (_truncated_png, "corrupt or truncated"),
    ],
    ids=["missing", "directory", "text-file", "truncated"],
)
def test_read_image_bad_input(tmp_path, make, reason):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(RestoreError, match=reason) as info:
        read_image(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


# ---------------------------------------------------------------------------------------------
# Writing


def test_write_png_into_missing_folder_raises_and_writes_nothing(tmp_path):
    target = tmp_path / "nope" / "x.png"
    with pytest.raises(RestoreError, match="output folder .*nope.* does not exist"):
        write_png(target, _rand(1, 1, 4, 4))
    assert not (tmp_path / "nope").exists()
    assert list(tmp_path.iterdir()) == []


def test_output_path_check(tmp_path):
    assert output_path_check(tmp_path / "x.png") == tmp_path / "x.png"
    with pytest.raises(RestoreError, match="is a folder"):
        output_path_check(tmp_path)
    with pytest.raises(RestoreError, match="does not exist"):
        output_path_check(tmp_path / "a" / "x.png")


def test_write_png_rejects_bad_shapes_and_nan(tmp_path):
    with pytest.raises(RestoreError, match="shape"):
        write_png(tmp_path / "x.png", _rand(2, 3, 4, 4))
    with pytest.raises(RestoreError, match="bits"):
        write_png(tmp_path / "x.png", _rand(1, 3, 4, 4), bits=12)
    with pytest.raises(RestoreError, match="alpha"):
        write_png(tmp_path / "x.png", _rand(1, 3, 4, 4), alpha=_rand(1, 1, 4, 5))
    with pytest.raises(RestoreError, match="NaN"):
        write_png(tmp_path / "x.png", torch.full((1, 1, 2, 2), float("nan")))
    assert list(tmp_path.iterdir()) == []


def test_write_png_replaces_existing_file(tmp_path):
    target = tmp_path / "x.png"
    write_png(target, torch.zeros(1, 1, 2, 2))
    write_png(target, torch.ones(1, 1, 3, 3))
    assert read_image(target)[0].shape == (1, 1, 3, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]


def test_atomic_write_removes_temp_file_and_keeps_old_content_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(target) as tmp:
            assert tmp.parent == tmp_path and tmp != target
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    assert target.read_text() == "old"

    with atomic_write(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_write_json(tmp_path):
    write_json(tmp_path / "o.json", {"sigma": 0.1, "steps": [1, 2]})
    text = (tmp_path / "o.json").read_text()
    assert text == '{\n  "sigma": 0.1,\n  "steps": [\n    1,\n    2\n  ]\n}\n'
    with pytest.raises(RestoreError, match="does not exist"):
        write_json(tmp_path / "missing" / "o.json", {})


@pytest.mark.parametrize("channels", [1, 3])
def test_write_grid(tmp_path, channels):
    images = torch.stack([torch.full((channels, 4, 5), k / 4) for k in range(5)])
    write_grid(tmp_path / "g.png", images, padding=1)
    grid, _ = read_image(tmp_path / "g.png")
    # 5 images -> 3 per row, 2 rows; each tile is 4x5 plus 1 pixel of padding around it.
    assert grid.shape == (1, channels, 2 * 5 + 1, 3 * 6 + 1)
    assert grid[0, :, 1, 1].tolist() == [0.0] * channels
    assert grid[0, :, 6, 1 + 6].tolist() == pytest.approx([1.0] * channels)  # image 4: row 1, column 1
    write_grid(tmp_path / "row.png", images, nrow=5, padding=0)
    assert read_image(tmp_path / "row.png")[0].shape == (1, channels, 4, 25)


# ---------------------------------------------------------------------------------------------
# Arrays


def test_safetensors_round_trip(tmp_path):
    x = _rand(2, 3, 4, 5)
    arrays = {"x": x, "y": x[:, :1].transpose(2, 3), "labels": torch.arange(4)}  # views of x too
    save_arrays(tmp_path / "a.safetensors", arrays)
    loaded = load_arrays(tmp_path / "a.safetensors")
    assert loaded.keys() == arrays.keys()
    for name, value in arrays.items():
        assert torch.equal(loaded[name], value) and loaded[name].dtype == value.dtype


def test_npy_round_trip(tmp_path):
    x = _rand(3, 1, 6, 6).double()
    save_arrays(tmp_path / "a.npy", {"whatever": x})
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]  # no ".npy.npy", no temp file left
    loaded = load_arrays(tmp_path / "a.npy")
    assert list(loaded) == ["array"]
    assert torch.equal(loaded["array"], x)
    with pytest.raises(RestoreError, match="exactly one"):
        save_arrays(tmp_path / "b.npy", {"a": x, "b": x})
    assert not (tmp_path / "b.npy").exists()


def test_load_arrays_refuses_pickles(tmp_path):
    path = tmp_path / "evil.npy"
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(RestoreError, match="evil.npy"):
        load_arrays(path)


@pytest.mark.parametrize("name", ["junk.npy", "junk.safetensors"])
def test_load_arrays_bad_files(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x80\x04garbage that is no array file")
    with pytest.raises(RestoreError, match=name):
        load_arrays(path)
    with pytest.raises(RestoreError, match="does not exist"):
        load_arrays(tmp_path / f"missing-{name}")
    with pytest.raises(RestoreError, match="unsupported array file"):
        load_arrays(tmp_path / "a.pt")
