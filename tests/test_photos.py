"""Photographs: the valid (camera) blur boundary, kernels from files and the Levin set, real photo sizes."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from restore import io
from restore.cli import main
from restore.data import levin_kernel, natural_folder
from restore.errors import RestoreError
from restore.operators import Blur, GaussianNoise, ValidBlur
from restore.solvers import CLASSICAL

pytestmark = pytest.mark.usefixtures("one_thread")


def _photo(name: str = "bsds400", index: int = 0) -> torch.Tensor:
    """(1, C, H, W) in [0, 1]: a training photograph (481x321 or 321x481 for bsds400)."""
    folder = natural_folder(name)
    return io.read_image(sorted(p for p in folder.iterdir() if p.suffix in (".jpg", ".png"))[index])[0]


@pytest.fixture
def cli(capsys, monkeypatch):
    def run(*args):
        monkeypatch.setattr(sys, "argv", ["restore", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize("kernel_shape, size", [((5, 7), (20, 17)), ((27, 27), (61, 67)), ((3, 3), (16, 16))])
def test_valid_blur_is_the_valid_convolution(kernel_shape, size):
    k = torch.rand(*kernel_shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    op = ValidBlur(k)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # conv2d correlates: flip the kernel to convolve; 'valid' output (H - kh + 1, W - kw + 1).
    weight = op.kernel.double().flip(0, 1)[None, None].repeat(3, 1, 1, 1)
    ref = torch.nn.functional.conv2d(x, weight, groups=3)
    assert torch.allclose(op.A(x), ref, atol=1e-12)
    # A^T is the transposed convolution, on x's domain, though the FFTs run on a larger grid where x's lengths
    # have a prime factor above 7 (17, 61 and 67 here).
    y = torch.randn(ref.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert torch.allclose(op.A_adjoint(y), torch.nn.functional.conv_transpose2d(y, weight, groups=3), atol=1e-12)
    assert op.input_shape(ref.shape) == x.shape
    assert op.field_of_view(x).shape == (2, 3, size[0] - kernel_shape[0] + 1, size[1] - kernel_shape[1] + 1)
    assert all(g >= n for g, n in zip(op.grid(x.shape), size)) and (op.grid(x.shape) != size) == (size != (16, 16))


def test_fast_size_is_the_next_length_without_a_prime_above_7():
    from restore.operators.functional import fast_size

    def smooth(m):
        for p in (2, 3, 5, 7):
            while m % p == 0:
                m //= p
        return m == 1

    assert [fast_size(n) for n in (1, 11, 61, 4026, 3026)] == [1, 12, 63, 4032, 3072]
    assert all(smooth(fast_size(n)) and not any(smooth(m) for m in range(n, fast_size(n))) for n in range(1, 300))


def test_transfer_is_the_kernel_otf_computed_once():
    from restore.operators.functional import kernel_otf, transfer

    k = levin_kernel(3)
    full = transfer(k, 40, 31, half=False, dtype=torch.complex128, device="cpu")
    half = transfer(k, 40, 31, half=True, dtype=torch.complex64, device="cpu")
    assert torch.allclose(full, kernel_otf(k.double(), 40, 31), atol=1e-12)
    assert half.shape == (40, 16) and torch.allclose(half, full[:, :16].to(torch.complex64), atol=1e-6)
    assert transfer(k, 40, 31, half=True, dtype=torch.complex64, device="cpu") is half  # cached
    assert transfer(k * 2, 40, 31, half=True, dtype=torch.complex64, device="cpu") is not half  # by value


def test_preconditioned_cg_solves_a_valid_blurs_normal_equations_in_fewer_steps():
    from restore.operators.base import conjugate_gradient, normal_preconditioner

    op = ValidBlur(levin_kernel(4))  # 27x27
    x = _photo()[:, :1].double()  # (1, 1, 321, 481): the frame grown by 13
    y = op.A(x) + 0.01 * torch.randn(op.measurement_shape(tuple(x.shape)), generator=torch.Generator().manual_seed(0),
                                     dtype=torch.float64)
    rho = 1e-3
    P = normal_preconditioner(op, x, rho)
    u, v = torch.randn(2, *x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    # Symmetric and positive definite, as preconditioned CG needs.
    assert torch.allclose((u * P(v)).sum(), (P(u) * v).sum(), rtol=1e-10) and float((u * P(u)).sum()) > 0
    steps = {"plain": 0, "pre": 0}

    def counted(name):
        def apply(w):
            steps[name] += 1
            return op.A_adjoint(op.A(w)) + rho * w
        return apply

    b = op.A_adjoint(y)
    plain = conjugate_gradient(counted("plain"), b, tol=1e-6)
    pre = conjugate_gradient(counted("pre"), b, tol=1e-6, precondition=P)
    # Both reach the tolerance on the normal equations' residual itself, not a preconditioned one.
    for found in (plain, pre):
        residual = op.A_adjoint(op.A(found)) + rho * found - b
        assert float(residual.norm() / b.norm()) <= 1e-6
    assert steps["pre"] * 1.8 <= steps["plain"], steps  # 59 against 111


def test_levin_kernels_are_normalised_and_sized():
    sizes = [tuple(levin_kernel(i).shape) for i in range(1, 9)]
    assert all(13 <= h <= 27 and 13 <= w <= 27 for h, w in sizes) and len(set(sizes)) > 1
    assert abs(float(levin_kernel(3).sum()) - 1) < 1e-6
    with pytest.raises(RestoreError, match="1 to 8"):
        levin_kernel(9)


def _band_and_interior(x_hat, truth, band=16):
    """PSNR (dB) of the ``band``-pixel border band and of the interior."""
    m = torch.zeros_like(truth, dtype=torch.bool)
    m[..., :band, :] = m[..., -band:, :] = m[..., :, :band] = m[..., :, -band:] = True
    err = (x_hat - truth).square()
    return float(-10 * torch.log10(err[m].mean())), float(-10 * torch.log10(err[~m].mean()))


@pytest.mark.parametrize("solver", ["wiener", "richardson-lucy"])
def test_valid_boundary_restores_the_border_band_of_a_real_photo(solver):
    # A 481x321 RGB photo blurred as a camera does (valid, no wrap-around) by Levin kernel 3 (15x15).
    x = _photo()
    valid = ValidBlur(levin_kernel(3), GaussianNoise(0.01))
    y = valid(x.double(), generator=torch.Generator().manual_seed(0)).float()
    truth = valid.field_of_view(x)
    band, interior = _band_and_interior(valid.field_of_view(CLASSICAL[solver](y, valid, None)).clamp(0, 1), truth)
    circular = Blur(levin_kernel(3), GaussianNoise(0.01))
    band_circular, _ = _band_and_interior(CLASSICAL[solver](y, circular, None).clamp(0, 1), truth)
    # Measured: the band is 1.0 (wiener) and 0.1 dB (richardson-lucy) below the interior with the
    # valid model; assuming a circular blur puts it 3.5 and 10.5 dB lower still.
    assert interior - band < 1.5, (band, interior)
    assert band > band_circular + 2.0, (band, band_circular)


def test_cli_deblurs_a_real_photo_without_wrap_around(cli, tmp_path):
    x = _photo()
    valid = ValidBlur(levin_kernel(3), GaussianNoise(0.01))
    y = valid(x.double(), generator=torch.Generator().manual_seed(0)).float().clamp(0, 1)
    io.write_png(tmp_path / "blurred.png", y)
    io.write_png(tmp_path / "clean.png", valid.field_of_view(x))
    code, out, err = cli("deblur", tmp_path / "blurred.png", "--kernel", "levin:3", "--noise", "0.01",
                         "--solver", "wiener", "-o", tmp_path / "out.png", "--reference", tmp_path / "clean.png", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["operator"]["boundary"] == "valid" and result["psnr"] > 27
    restored = io.read_image(tmp_path / "out.png")[0]
    assert restored.shape == y.shape  # the frame, not the grown domain
    circular = cli("deblur", tmp_path / "blurred.png", "--kernel", "levin:3", "--noise", "0.01", "--solver", "wiener",
                   "--boundary", "circular", "-o", tmp_path / "c.png", "--reference", tmp_path / "clean.png", "--json")
    assert json.loads(circular[1])["psnr"] < result["psnr"] - 0.5  # measured 28.12 against 29.01 dB


def test_kernel_files_npy_and_16_bit_png_keep_their_precision(cli, tmp_path):
    k = levin_kernel(2).double()
    np.save(tmp_path / "k.npy", k.numpy())
    Image.fromarray(np.round(k.numpy() / k.max().item() * 65535).astype(np.uint16)).save(tmp_path / "k16.png")
    for name in ("k.npy", "k16.png"):
        loaded = io.read_kernel(tmp_path / name)
        assert loaded.shape == k.shape
        assert torch.allclose(loaded / loaded.sum(), k / k.sum(), atol=1e-5), name
    # The shipped 16-bit PNG equals the .npy kernel to 16-bit precision.
    shipped = io.read_kernel(natural_folder("set12").parents[1] / "kernels" / "levin5.png")
    assert torch.allclose(shipped / shipped.sum(), levin_kernel(5).double(), atol=2e-5)
    clean = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    io.write_png(tmp_path / "clean.png", clean)
    code, _, err = cli("degrade", tmp_path / "clean.png", "--task", "deblur", "--kernel", tmp_path / "k16.png",
                       "-o", tmp_path / "y.png")
    assert code == 0, err
    spec = json.loads((tmp_path / "y.json").read_text())
    assert spec["operator"]["made_by"]["kind"] == "file"


@pytest.mark.parametrize("kernel, message", [("levin:0", "1 to 8"), ("levin:x", "levin:N"), ("levin", "levin:N")])
def test_bad_levin_kernels_get_one_line(cli, tmp_path, kernel, message):
    io.write_png(tmp_path / "a.png", torch.rand(1, 1, 40, 40))
    code, _, err = cli("deblur", tmp_path / "a.png", "--kernel", kernel, "-o", tmp_path / "o.png")
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "o.png").exists()


def test_degrade_with_a_valid_boundary_round_trips_through_its_spec(cli, tmp_path):
    clean = _photo("set12", 0)[..., :96, :80]  # cameraman, cropped
    io.write_png(tmp_path / "clean.png", clean)
    code, _, err = cli("degrade", tmp_path / "clean.png", "--task", "deblur", "--kernel", "levin:1", "--boundary",
                       "valid", "--noise", "0.01", "-o", tmp_path / "y.png")
    assert code == 0, err
    y, _ = io.read_image(tmp_path / "y.png")
    r = levin_kernel(1).shape[0] // 2, levin_kernel(1).shape[1] // 2
    assert y.shape[-2:] == (96 - 2 * r[0], 80 - 2 * r[1])
    code, out, err = cli("deblur", tmp_path / "y.json", "-o", tmp_path / "out.png", "--reference",
                         tmp_path / "clean.png", "--json")
    assert code == 0, err
    assert io.read_image(tmp_path / "out.png")[0].shape[-2:] == y.shape[-2:]
    assert json.loads(out)["psnr"] > 20


def _folder_of_noisy_photos(root, n=3):
    """n noisy 60x50 crops of BSD68 photos in root/in, their clean versions in root/ref, and a broken file."""
    (root / "in").mkdir()
    (root / "ref").mkdir()
    for i in range(n):
        x = _photo("bsd68", i)[..., :60, :50]
        io.write_png(root / "ref" / f"p{i}.png", x)
        noise = 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(i))
        io.write_png(root / "in" / f"p{i}.png", (x + noise).clamp(0, 1))
    (root / "in" / "broken.png").write_bytes(b"not an image")


def test_a_folder_restores_in_one_command_skipping_a_bad_file(cli, tmp_path):
    _folder_of_noisy_photos(tmp_path)
    inputs = {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()}
    code, out, err = cli("denoise", tmp_path / "in", "-o", tmp_path / "out", "--noise", "0.1", "--solver", "bm3d",
                         "--reference", tmp_path / "ref")
    assert code == 2 and "restored 3 of 4 images" in out
    assert err.count("skipped") == 1 and "broken.png" in err and err.strip().endswith("(see " + str(tmp_path / "out" / "results.jsonl") + ")")
    records = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["file"] for r in records) == ["broken.png", "p0.png", "p1.png", "p2.png"]
    assert all(r["psnr"] > 24 for r in records if "error" not in r)  # noisy input: 20 dB
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "p0.json", "p0.png", "p1.json", "p1.png", "p2.json", "p2.png", "results.jsonl"]
    assert {p.name: p.read_bytes() for p in (tmp_path / "in").iterdir()} == inputs
    # A rerun skips what is done; --force redoes it.
    code, out, _ = cli("denoise", tmp_path / "in", "-o", tmp_path / "out", "--noise", "0.1", "--solver", "bm3d")
    assert "restored 0 of 4 images, 3 already done" in out
    (tmp_path / "in" / "broken.png").unlink()
    code, out, _ = cli("denoise", tmp_path / "in", "-o", tmp_path / "out", "--noise", "0.1", "--solver", "wiener",
                       "--force", "--json")
    assert code == 0 and json.loads(out)["restored"] == 3


@pytest.mark.parametrize("args, message", [
    (["-o", "{tmp}/out.png"], "-o must be a folder"),
    (["-o", "{tmp}/in/sub"], "inside the input folder"),
    (["-o", "{tmp}/no/such/out"], "does not exist"),
    (["-o", "{tmp}/out", "--reference", "{tmp}/ref/p0.png"], "--reference must be a folder"),
])
def test_bad_folder_requests_are_one_line_errors(cli, tmp_path, args, message):
    _folder_of_noisy_photos(tmp_path, n=1)
    code, _, err = cli("denoise", tmp_path / "in", "--noise", "0.1", *[a.format(tmp=tmp_path) for a in args])
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_superres_crops_to_a_multiple_of_the_factor_and_says_so(cli, tmp_path):
    x = _photo()  # 481x321 (or 321x481): neither side a multiple of 4
    io.write_png(tmp_path / "clean.png", x)
    code, out, err = cli("degrade", tmp_path / "clean.png", "--task", "superres", "--factor", "4", "--filter",
                         "bicubic", "-o", tmp_path / "y.png")
    assert code == 0, err
    H, W = x.shape[-2:]
    assert f"cropped from {W}x{H} to {W - W % 4}x{H - H % 4}" in out
    spec = json.loads((tmp_path / "y.json").read_text())
    assert spec["crop"] == {"modcrop": 4, "from": [H, W], "to": [H - H % 4, W - W % 4]}
    assert spec["image_shape"] == [3, H - H % 4, W - W % 4]
    # The uncropped clean image is a valid reference: it is cropped the same way, and the result says so.
    code, out, err = cli("superres", tmp_path / "y.json", "--solver", "bicubic", "-o", tmp_path / "o.png",
                         "--reference", tmp_path / "clean.png", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["reference_crop"]["to"] == [H - H % 4, W - W % 4] and result["psnr"] > 24


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height pixels, with almost no data (a decompression bomb's shape)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10))
                     + chunk(b"IEND", b""))


def test_awkward_photo_files_are_handled_or_refused_in_one_line(cli, tmp_path):
    photo = Image.fromarray((io.read_image(sorted(natural_folder("cbsd68").iterdir())[0])[0][0].permute(1, 2, 0)
                             .numpy() * 255).round().astype(np.uint8))
    photo.convert("CMYK").save(tmp_path / "cmyk.jpg")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    photo.save(tmp_path / "rotated.jpg", exif=exif)
    Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257).save(tmp_path / "gray16.png")
    Image.new("L", (1, 1), 128).save(tmp_path / "one.png")
    _png_header_only(tmp_path / "huge.png", 30000, 30000)
    W, H = photo.size
    for name, size, mode in (("cmyk.jpg", (W, H), "RGB"), ("rotated.jpg", (H, W), "RGB"), ("gray16.png", (W, H), "I;16"),
                             ("one.png", (1, 1), "L")):
        code, _, err = cli("denoise", tmp_path / name, "--noise", "0.05", "--solver", "wiener", "-o", tmp_path / "o.png")
        assert code == 0, (name, err)
        with Image.open(tmp_path / "o.png") as out:
            # EXIF orientation applied, CMYK as RGB, 16 bits kept (PIL names 16-bit gray I;16, or I before 10)
            assert out.size == size and (out.mode == mode or mode == "I;16" and out.mode == "I"), name
    for args in (["deblur", tmp_path / "one.png", "--kernel", "levin:3"], ["denoise", tmp_path / "huge.png"]):
        code, _, err = cli(*args, "-o", tmp_path / "bad.png")
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert not (tmp_path / "bad.png").exists()


def test_a_16_bit_photo_is_restored_in_16_bits(cli, tmp_path):
    """A 12-bit camera's levels (0-4095) stored in a 16-bit colour PNG: 8 bits would leave 16 levels
    per channel; the restored PNG keeps 16 bits unless --bits 8 is asked for, and the JSON says which."""
    from restore.io import bit_depth, write_png

    x = _photo("bsds400", 1)[..., :48, :64] * (4095 / 65535)  # (1, 3, 48, 64): a dark 12-bit photo
    write_png(tmp_path / "raw12.png", x, bits=16)
    for bits, levels in (("auto", 16), ("8", 8)):
        out = tmp_path / f"out{bits}.png"
        code, stdout, err = cli("denoise", tmp_path / "raw12.png", "--noise", "0.001", "--solver", "wiener",
                                "--bits", bits, "-o", out, "--json")
        assert code == 0, err
        assert json.loads(stdout)["bits"] == levels and bit_depth(out) == levels
        y, _ = io.read_image(out)
        assert len(torch.unique(y)) > 400 if levels == 16 else len(torch.unique(y)) <= 17
    # An 8-bit photo gives 8 bits, or 16 when asked; an 8-bit source's spec leaves bits out (8, the default).
    write_png(tmp_path / "eight.png", x * (65535 / 4095))
    for bits, levels in (("auto", 8), ("16", 16)):
        code, stdout, err = cli("denoise", tmp_path / "eight.png", "--noise", "0.01", "--solver", "wiener",
                                "--bits", bits, "-o", tmp_path / f"eight{bits}.png", "--json")
        assert code == 0 and json.loads(stdout)["bits"] == levels == bit_depth(tmp_path / f"eight{bits}.png"), err
    code, _, err = cli("degrade", tmp_path / "eight.png", "--task", "denoise", "-o", tmp_path / "y8.png")
    assert code == 0 and "bits" not in json.loads((tmp_path / "y8.json").read_text()), err
    # Through a measurement spec: degrade records the source's depth, its preview and the restoration keep it.
    code, _, err = cli("degrade", tmp_path / "raw12.png", "--task", "denoise", "--noise", "0.001", "-o", tmp_path / "y.png")
    assert code == 0, err
    assert json.loads((tmp_path / "y.json").read_text())["bits"] == 16 and bit_depth(tmp_path / "y.png") == 16
    code, stdout, err = cli("denoise", tmp_path / "y.json", "--solver", "wiener", "-o", tmp_path / "from_spec.png", "--json")
    assert code == 0 and json.loads(stdout)["bits"] == 16 and bit_depth(tmp_path / "from_spec.png") == 16, err
    spec = json.loads((tmp_path / "y.json").read_text())
    for bad in (12, "16", True):
        (tmp_path / "y.json").write_text(json.dumps({**spec, "bits": bad}))
        code, _, err = cli("denoise", tmp_path / "y.json", "--solver", "wiener", "-o", tmp_path / "bad.png")
        assert code == 2 and "'bits' must be 8 or 16" in err and not (tmp_path / "bad.png").exists(), (bad, err)


def test_stretch_lets_a_photo_prior_restore_a_dark_12_bit_photo(cli, tmp_path):
    """A 12-bit photo in a 16-bit file spans [0, 1/16]: the photo prior misreads it (this 128x96 crop: 53.3 dB
    as it is, 57.7 with --stretch, on the file's [0, 1] scale). --stretch maps the observed range
    onto [0, 1] with the noise level and back; the command says so when it is not asked for, and refuses
    Poisson noise, whose level depends on the intensity scale."""
    from restore.io import write_png

    x = _photo("bsds400", 3).mean(1, keepdim=True)[..., :96, :128] * (4095 / 65535)
    sigma = 0.05 * 4095 / 65535
    y = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    write_png(tmp_path / "clean.png", x, bits=16)
    write_png(tmp_path / "noisy.png", y.clamp(0, 1), bits=16)
    results = {}
    for extra in ([], ["--stretch"]):
        out = tmp_path / f"out{len(extra)}.png"
        code, stdout, err = cli("denoise", tmp_path / "noisy.png", "--noise", str(sigma), "--prior", "ddpm-photo-gray",
                                "--reference", tmp_path / "clean.png", "-o", out, "--json", *extra)
        assert code == 0, err
        results[bool(extra)] = json.loads(stdout)
        assert ("--stretch" in err) != bool(extra)  # the hint, only where it is not taken
        low, high = float(y.clamp(0, 1).min()), float(y.max())
        assert io.read_image(out)[0].max() <= high + 1e-4  # written back in the input's range
    assert results[True]["stretch"]["scale"] == pytest.approx(high - low, abs=1e-4)
    assert results[True]["psnr"] > results[False]["psnr"] + 2
    code, _, err = cli("denoise", tmp_path / "noisy.png", "--poisson", "100", "--stretch", "-o", tmp_path / "p.png")
    assert code == 2 and "Gaussian noise" in err and not (tmp_path / "p.png").exists()
    # A blur narrows the range of y against that of x: stretched, the estimate must still be free to leave it
    # (a margin of restore.stretch.MARGIN on each side). TV, this crop: 54.4 dB as it is, 56.7 stretched.
    code, _, err = cli("degrade", tmp_path / "clean.png", "--task", "deblur", "--kernel", "gaussian:1.5", "--noise",
                       "0.0005", "-o", tmp_path / "blurred.png")
    assert code == 0, err
    for extra in ([], ["--stretch"]):
        code, stdout, err = cli("deblur", tmp_path / "blurred.json", "--solver", "tv", "--reference", tmp_path / "clean.png",
                                "-o", tmp_path / f"deblurred{len(extra)}.png", "--json", *extra)
        assert code == 0, err
        results[f"deblur{len(extra)}"] = json.loads(stdout)
    stretch = results["deblur1"]["stretch"]
    y_max = stretch["low"] + stretch["scale"] * (1 - 2 * stretch["margin"])
    assert stretch["margin"] > 0 and io.read_image(tmp_path / "deblurred1.png")[0].max() > y_max + 1e-3
    assert results["deblur1"]["psnr"] > results["deblur0"]["psnr"]


def test_bm3d_denoises_a_large_image_in_tiles_as_it_denoises_it_whole(monkeypatch):
    """Above TILE x TILE pixels BM3D denoises in tiles with MARGIN pixels of context (bounded memory: a
    4000x3000 photo whole took 12 GB). With tiles of 64 on a 128x128 training photo, the tiled estimate is
    within 0.05 dB of the whole one and differs from it by under 2/255 on average (measured on 200x200,
    tiles of 80: 0.009 dB, 1.6/255), with one progress call per tile."""
    import importlib

    from restore import metrics
    from restore.operators import Denoising

    module = importlib.import_module("restore.solvers.bm3d")
    x = _photo("bsds400", 1)[..., :128, :128].mean(1, keepdim=True)
    op = Denoising(GaussianNoise(25 / 255))
    y = op(x, generator=torch.Generator().manual_seed(0))
    whole = CLASSICAL["bm3d"](y, op)
    monkeypatch.setattr(module, "TILE", 64)
    calls = []
    tiled = CLASSICAL["bm3d"](y, op, callback=lambda info: calls.append(info["i"]))
    assert calls == [0, 1, 2, 3] and module._tile_count(y, op, None, {}) == 4
    assert abs(float(metrics.psnr(tiled, x)[0]) - float(metrics.psnr(whole, x)[0])) < 0.05
    assert float((tiled - whole).abs().mean()) < 2 / 255


def test_bm3d_deblurs_a_large_image_in_tiles_as_it_deblurs_it_whole(monkeypatch):
    """BM3D deblurring's regularised inverses are global filters, but its BM3D filtering of their coloured noise
    (the package's memory) runs in TILE x TILE tiles with MARGIN pixels of context, each given the noise's PSD on
    its window. With tiles of 64 on a 128x128 crop of a training photo (Levin kernel 4, sigma 2.55/255,
    circular) the tiled estimate is within 0.1 dB of the whole one (measured: 24.58 against 24.62 dB) and differs
    from it by under 2/255 on average (1.3/255); progress calls back once per tile and stage. One tile gives what
    the package's own bm3d_deblurring gives."""
    import importlib

    from restore import metrics

    module = importlib.import_module("restore.solvers.bm3d")
    x = _photo("bsds400", 1)[..., :128, :128].mean(1, keepdim=True)
    op = Blur(levin_kernel(4), GaussianNoise(2.55 / 255))
    y = op(x, generator=torch.Generator().manual_seed(0))
    whole = CLASSICAL["bm3d"](y, op)
    kernel = np.pad(levin_kernel(4).double().numpy(), ((0, 1 - levin_kernel(4).shape[0] % 2), (0, 1 - levin_kernel(4).shape[1] % 2)))
    package = module._package().bm3d_deblurring(y[0, 0].double().numpy()[..., None], 2.55 / 255, kernel, profile="np")
    assert np.abs(whole[0, 0].numpy() - np.asarray(package).reshape(128, 128).clip(0, 1)).max() < 1e-6
    monkeypatch.setattr(module, "TILE", 64)
    calls = []
    tiled = CLASSICAL["bm3d"](y, op, callback=lambda info: calls.append(info["i"]))
    assert calls == list(range(8)) and module._tile_count(y, op, None, {}) == 8
    assert abs(float(metrics.psnr(tiled, x)[0]) - float(metrics.psnr(whole, x)[0])) < 0.1
    assert float((tiled - whole).abs().mean()) < 2 / 255
    # A constant image (a blank frame) is the blur of itself: it stays that constant.
    blank = torch.full((1, 1, 40, 40), 0.7)
    assert torch.allclose(CLASSICAL["bm3d"](blank, op), blank, atol=1e-6)


def test_a_window_of_white_noise_keeps_its_variance_and_of_coloured_noise_its_spectrum():
    """The PSD a tile's BM3D is given (the package's convention: variance times the pixel count): white noise
    keeps sigma^2 h w on any window; noise coloured by a small kernel keeps that kernel's spectrum, sampled on
    the window's frequencies."""
    import importlib

    module = importlib.import_module("restore.solvers.bm3d")
    white = np.full((96, 80), 0.02**2 * 96 * 80)
    assert np.allclose(module._window_psd(white, 40, 50), 0.02**2 * 40 * 50)
    taps = np.zeros((96, 80))
    taps[:3, :3] = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    taps = np.roll(taps / 16, (-1, -1), (0, 1))  # centred at the origin
    coloured = np.abs(np.fft.fft2(taps)) ** 2 * 0.02**2 * 96 * 80
    small = np.zeros((40, 50))
    small[:3, :3] = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    small = np.roll(small / 16, (-1, -1), (0, 1))
    assert np.allclose(module._window_psd(coloured, 40, 50), np.abs(np.fft.fft2(small)) ** 2 * 0.02**2 * 40 * 50)
    assert module._window_psd(coloured, 96, 80) is coloured


def test_bm3d_deblurring_refuses_an_image_larger_than_the_memory_available(monkeypatch):
    """BM3D deblurring of an image of one tile takes about 760 bytes per pixel (1,300 in colour; more tiles, fewer
    per pixel; benchmarks/results/bm3d_memory*.md): past the memory available the solver refuses in one line
    before it starts, instead of being killed; within it, it deblurs."""
    from restore import runtime
    from restore.solvers.bm3d import DEBLUR_GLOBAL_BYTES, DEBLUR_WINDOW_BYTES

    need = {c: (DEBLUR_GLOBAL_BYTES[c] + DEBLUR_WINDOW_BYTES[c]) * 64 * 64 for c in (1, 3)}  # one tile: the window is the image
    assert 728 * 64 * 64 <= need[1] < need[3] and need[3] >= 1124 * 64 * 64  # the growths measured at 1024x1024
    x = _photo("bsds400", 1)[..., :64, :64].mean(1, keepdim=True)
    op = Blur(levin_kernel(1), GaussianNoise(0.01))
    y = op(x, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(runtime, "available_memory", lambda: need[1] - 1)
    with pytest.raises(RestoreError, match=r"BM3D deblurring of a 64x64 image needs about .* GiB") as error:
        CLASSICAL["bm3d"](y, op)
    assert "\n" not in str(error.value)
    monkeypatch.setattr(runtime, "available_memory", lambda: need[1])
    assert CLASSICAL["bm3d"](y, op).shape == x.shape
    x = _photo("bsds400", 1)[..., :64, :64]  # colour, deblurred in the opponent space: more bytes per pixel
    y = op(x, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(runtime, "available_memory", lambda: need[3] - 1)
    with pytest.raises(RestoreError, match=r"BM3D deblurring of a 64x64 image"):
        CLASSICAL["bm3d"](y, op)
    monkeypatch.setattr(runtime, "available_memory", lambda: need[3])
    assert CLASSICAL["bm3d"](y, op).shape == x.shape


def test_bm3d_deblurs_a_valid_blur_on_margins_consistent_with_its_periodic_model(monkeypatch):
    """The package's deblurring assumes a circular blur. On the measurement of a camera (valid) blur mirrored
    beyond its frame, an asymmetric kernel's mismatch spread over the whole image (7.2 dB on this crop of a
    training photo, Levin kernel 4); with margins synthesised as the blur of TV's estimate
    (``classical.consistent_domain``) BM3D gives 21.1 dB, TV's own estimate 21.1. Progress: TV, then each stage."""
    import importlib

    from restore import metrics
    from restore.solvers import classical

    module = importlib.import_module("restore.solvers.bm3d")
    x = _photo("bsds400", 1)[..., :96, :112].mean(1, keepdim=True)
    op = ValidBlur(levin_kernel(4), GaussianNoise(0.01))
    y = op(x, generator=torch.Generator().manual_seed(0))

    def frame_psnr(estimate):
        return float(metrics.psnr(op.field_of_view(estimate), op.field_of_view(x))[0])

    calls = []
    consistent = frame_psnr(CLASSICAL["bm3d"](y, op, callback=lambda info: calls.append(info["i"])))
    assert calls == [0, 1, 2] and module._tile_count(y, op, None, {}) == 3
    tv = frame_psnr(CLASSICAL["tv"](y, op))
    monkeypatch.setattr(module, "consistent_domain", lambda y, operator, estimate: classical.circular_domain(y, operator))
    mirrored = frame_psnr(CLASSICAL["bm3d"](y, op))
    assert consistent > mirrored + 10 and consistent > tv - 0.5, (consistent, mirrored, tv)


def test_bm3d_deblurs_colour_in_the_opponent_space(monkeypatch):
    """BM3D deblurring of an RGB photo runs in CBM3D's opponent space (blocks matched on the luminance, the
    chrominances filtered in its groups): on a 96x96 crop of a training photo, Levin kernel 4, sigma 2.55/255,
    circular, 28.9 dB against 26.6 with R, G and B deblurred one by one (the package's multichannel
    deblurring fails: it hands every channel's pilot to each channel)."""
    import importlib

    from restore import metrics

    module = importlib.import_module("restore.solvers.bm3d")
    x = _photo("bsds400", 1)[..., :96, :96]
    op = Blur(levin_kernel(4), GaussianNoise(2.55 / 255))
    y = op(x, generator=torch.Generator().manual_seed(0))
    opponent = float(metrics.psnr(CLASSICAL["bm3d"](y, op), x)[0])
    monkeypatch.setattr(module, "_colourful", lambda z: False)
    per_channel = float(metrics.psnr(CLASSICAL["bm3d"](y, op), x)[0])
    assert opponent > per_channel + 1.0, (opponent, per_channel)


def test_bm3d_denoises_a_photo_with_a_tile_of_one_colour(monkeypatch):
    """CBM3D matches blocks on the luminance; where it is flat (a photo of one colour, or a tile of a clipped sky
    or a letterbox band) the package failed with a ValueError. Such a tile is now denoised channel by channel in
    the opponent space (a constant channel kept), and an image of one colour comes back as it is."""
    import importlib

    from restore.operators import Denoising

    module = importlib.import_module("restore.solvers.bm3d")
    op = Denoising(GaussianNoise(10 / 255))
    tinted = torch.tensor([0.7, 0.3, 0.5]).view(1, 3, 1, 1).expand(1, 3, 40, 40).contiguous()
    assert torch.allclose(CLASSICAL["bm3d"](tinted, op), tinted, atol=1e-6)
    photo = _photo("bsds400", 1)[..., :96, :256]
    y = op(photo, generator=torch.Generator().manual_seed(0))
    y[..., :, :128] = tinted[..., :1, :1]  # one colour, noiseless: the first tile's whole window (64 + 48 wide)
    monkeypatch.setattr(module, "TILE", 64)
    x_hat = CLASSICAL["bm3d"](y, op)
    assert x_hat.shape == y.shape and torch.allclose(x_hat[..., :64], y[..., :64], atol=1e-6)


def test_bm3d_denoises_an_image_of_two_or_four_channels_channel_by_channel():
    """BM3D's colour path (CBM3D) is for RGB; an image of any other channel count (a gray image with a second
    band, four spectral bands) is denoised one channel at a time, each as that channel alone to float rounding (it
    failed on reshaping one channel's estimate to the image's shape)."""
    from restore.operators import Denoising

    photo = _photo("bsds400", 1)[..., :64, :64]
    op = Denoising(GaussianNoise(20 / 255))
    for x in (photo[:, :2], torch.cat([photo, photo.mean(1, keepdim=True)], 1)):
        y = op(x, generator=torch.Generator().manual_seed(0))
        x_hat = CLASSICAL["bm3d"](y, op)
        assert x_hat.shape == x.shape
        for c in range(x.shape[1]):
            assert torch.allclose(x_hat[:, c : c + 1], CLASSICAL["bm3d"](y[:, c : c + 1], op), atol=1e-6)


def test_every_classical_solver_runs_on_a_481x321_colour_photo():
    """Each classical solver on the operators it can use, on a whole 481x321 RGB training photo (odd sizes):
    an estimate of the photo's shape (the frame, for a valid blur), finite and in [0, 1]. Iterative solvers
    run 3 steps. Left out for time: the conjugate gradients of the pseudo-inverse and Lasso's power
    iteration on the valid blur (23 and 10 s here) and BM3D (25 s), which runs on a 161x121 crop instead."""
    from restore.operators import Denoising, Downsample, Inpainting
    from restore.operators import functional as Fn
    from restore.solvers import missing_capabilities

    photo = _photo("bsds400", 0)
    if photo.shape[-2] > photo.shape[-1]:
        photo = photo.transpose(-2, -1)
    assert tuple(photo.shape) == (1, 3, 321, 481)
    cases = {"denoise": (Denoising(GaussianNoise(0.1)), photo),
             "deblur-valid": (ValidBlur(levin_kernel(3), GaussianNoise(0.01)), photo),
             "superres": (Downsample(4, "bicubic"), Fn.modcrop(photo, 4)),
             "inpaint": (Inpainting.random(tuple(photo.shape[1:]), 0.8, seed=0), photo),
             "denoise-crop": (Denoising(GaussianNoise(0.1)), photo[..., 100:221, 200:361])}
    slow = {("deblur-valid", "pinv"), ("deblur-valid", "lasso"), ("denoise", "bm3d"), ("deblur-valid", "bm3d")}
    ran = []
    for task, (op, x) in cases.items():
        y = op(x, generator=torch.Generator().manual_seed(0))
        for name, solver in CLASSICAL.items():
            if missing_capabilities(solver, op) or (task, name) in slow or (task == "denoise-crop") != (name == "bm3d"):
                continue
            steps = {"steps": 3} if name in ("richardson-lucy", "tv", "lasso") else {}
            x_hat = op.field_of_view(solver(y, op, None, **steps))
            assert x_hat.shape == op.field_of_view(x).shape and torch.isfinite(x_hat).all(), (task, name)
            assert x_hat.min() >= 0 and x_hat.max() <= 1, (task, name)
            ran.append((task, name))
    assert len(ran) == 18 and {name for _, name in ran} == set(CLASSICAL), ran


def test_biharmonic_inpaints_a_large_image_in_tiles_as_it_inpaints_it_whole(monkeypatch):
    """Above BIHARMONIC_TILE^2 pixels biharmonic inpainting solves overlapping tiles (one sparse factorisation
    of a 4000x3000 photo's missing pixels ran out of memory). With tiles of 64 and 32 pixels of context on a
    160x160 training photo, 80% missing, the tiled result is the whole one within 1e-4 on average (measured
    3e-6; without context 4e-3, 0.1 dB worse), with one progress call per tile."""
    from restore.operators import Inpainting
    from restore.solvers import classical

    x = _photo("bsds400", 1)[..., :160, :160]
    op = Inpainting.random(tuple(x.shape[1:]), 0.8, seed=0)
    y = op(x)
    whole = CLASSICAL["biharmonic"](y, op)
    monkeypatch.setattr(classical, "BIHARMONIC_TILE", 64)
    calls = []
    tiled = CLASSICAL["biharmonic"](y, op, callback=lambda info: calls.append(info["i"]))
    assert calls == list(range(9)) and classical._biharmonic_tiles(y, op, None, {}) == 9
    assert float((tiled - whole).abs().mean()) < 1e-4
    monkeypatch.setattr(classical, "BIHARMONIC_MARGIN", 0)
    assert float((CLASSICAL["biharmonic"](y, op) - whole).abs().mean()) > 1e-3  # the context matters


def test_a_note_on_how_an_image_was_read_comes_only_with_a_result(cli, tmp_path, monkeypatch):
    """A 16-bit TIFF that needs imagecodecs is read at 8 bits with a note; the note is printed with the other
    notes, once every check has passed, so a command that fails prints its one error line only."""
    import tifffile

    import restore.io

    pixels = (np.random.default_rng(0).random((24, 20, 3)) * 65535).round().astype(np.uint16)
    tifffile.imwrite(tmp_path / "c.tif", pixels, photometric="rgb")
    io.write_png(tmp_path / "small.png", torch.zeros(1, 3, 5, 5))
    monkeypatch.setattr(restore.io, "_decodable", lambda tifffile, page: "its 16-bit samples are LZW-compressed, "
                        "which needs the imagecodecs package (pip install imagecodecs)")
    code, _, err = cli("denoise", tmp_path / "c.tif", "--noise", "0.01", "--solver", "wiener", "-o", tmp_path / "o.png")
    assert code == 0 and "c.tif' is read at 8 bits: its 16-bit samples are LZW-compressed" in err, err
    code, _, err = cli("denoise", tmp_path / "c.tif", "--noise", "0.01", "--solver", "wiener", "--reference",
                       tmp_path / "small.png", "-o", tmp_path / "o2.png")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "read at 8 bits" not in err, err


def test_the_record_and_line_name_the_model_a_family_name_resolved_to(cli, tmp_path):
    """`--prior ddpm` means a different shipped model for a digit, a gray photo and a colour photo: the result
    JSON's "model" and the printed line name the one that ran, so a result can be reproduced with
    `--prior <model>`; "prior" keeps what was asked for; a gray model run on R, G and B says so too.
    `restore info` and `restore sample` name the model of the family's default."""
    from restore.io import write_png

    photo = _photo("bsds400", 0)[..., :48, :64]
    write_png(tmp_path / "colour.png", photo)
    write_png(tmp_path / "gray.png", photo.mean(1, keepdim=True))
    write_png(tmp_path / "digit.png", photo.mean(1, keepdim=True)[..., :28, :28])
    for name, model in (("colour", "ddpm-photo-rgb"), ("gray", "ddpm-photo-gray"), ("digit", "ddpm-mnist")):
        out = tmp_path / f"{name}-out.png"
        code, stdout, err = cli("denoise", tmp_path / f"{name}.png", "--noise", "0.1", "--prior", "ddpm", "-o", out)
        assert code == 0, err
        record = json.loads(out.with_suffix(".json").read_text())
        assert (record["prior"], record["model"]) == ("ddpm", model), record
        assert f"({model} / " in stdout, stdout
    code, stdout, err = cli("denoise", tmp_path / "colour.png", "--noise", "0.1", "--prior", "ddpm-photo-gray",
                            "-o", tmp_path / "channelwise.png", "--json")
    assert code == 0, err
    record = json.loads(stdout)
    assert record["model"] == "ddpm-photo-gray" and record["channelwise"] is True
    code, stdout, _ = cli("info", "--prior", "ddpm", "--json")
    assert code == 0 and json.loads(stdout)["model"] == "ddpm-mnist"
    code, stdout, err = cli("sample", "--prior", "ddpm", "-n", "1", "--method", "ddim", "--steps", "2",
                            "-o", tmp_path / "sample.png", "--json")
    assert code == 0 and json.loads(stdout)["model"] == "ddpm-mnist", err


def test_a_gray_photo_stored_as_rgb_is_restored_as_gray_and_written_as_rgb(cli, tmp_path):
    """A gray photo saved as RGB (three equal channels) has one noise field, not three independent ones as a
    colour solver or prior assumes: CBM3D's opponent transform divided by its zero chrominances (NaN, "cannot
    write"), and `--prior ddpm` chose the colour prior, which tinted it and scored 28.4-28.5 dB on a 64x64
    crop against 31.2 as gray. It is restored as gray, so exactly as the gray file is, and written as RGB."""
    gray = _photo("train400", 0)[..., :48, :64]
    noisy = (gray + 0.06 * torch.randn(gray.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    io.write_png(tmp_path / "gray.png", noisy)
    io.write_png(tmp_path / "rgb.png", noisy.expand(-1, 3, -1, -1))
    io.write_png(tmp_path / "clean.png", gray)
    for args in (("--prior", "ddpm"), ("--solver", "bm3d")):
        records = {}
        for name in ("gray", "rgb"):
            out = tmp_path / f"{name}-{args[1]}.png"
            code, stdout, err = cli("denoise", tmp_path / f"{name}.png", *args, "-o", out,
                                    "--reference", tmp_path / "clean.png", "--json")
            assert code == 0, err
            records[name] = json.loads(stdout)
            written = io.read_image(out)[0]
            assert written.shape[1] == (3 if name == "rgb" else 1)
            assert io.gray_stored_as_rgb(written) == (name == "rgb")
        assert "gray image stored as RGB" in err and records["rgb"]["gray_stored_as_rgb"] is True
        assert records["rgb"]["psnr"] == pytest.approx(records["gray"]["psnr"], abs=1e-6), records
        assert records["rgb"].get("model") == records["gray"].get("model")
    assert records["rgb"]["psnr"] > 22
