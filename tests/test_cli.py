"""The ``restore`` command line, through its console entry point, on an MNIST digit and a photo.

Most commands run ``restore.cli.main`` in-process (sys.argv set, SystemExit caught, output from
capsys), which is fast; a few run the installed ``restore`` executable in a subprocess: the
``--help`` timing, the lazy imports, and one end-to-end exit-code check.

The rule for bad input: exit code 2, one line on stderr starting with "error:", no traceback,
and no output file left behind (not even the .json/.safetensors beside a preview).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import restore.io
from conftest import missing_data
from restore.cli import TASKS, main
from restore.data import default_data_root, mnist_images
from restore.errors import RestoreError
from restore.io import load_arrays, read_image, write_png
from restore.metrics import psnr

MNIST_FILE = default_data_root() / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
SUBPROCESS_ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run torch on one thread: on a shared two-core machine, several threads spin-waiting over
    these tiny images make each matrix product about a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``restore ARGS...`` through the console entry point; returns exit code, stdout, stderr."""

    def run(*args) -> Result:
        monkeypatch.setattr(sys, "argv", ["restore", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def _ok(result: Result) -> Result:
    assert result.code == 0, f"exit code {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    return result


def _listing(folder: Path) -> set[str]:
    """Every file and folder under ``folder``, hidden ones (temporary files) included."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _assert_user_error(result: Result) -> str:
    """Exit code 2 and exactly one non-empty stderr line starting with "error:"; returns it."""
    assert "Traceback" not in result.out + result.err, result.err
    assert result.code == 2, f"exit code {result.code}\nstdout: {result.out}\nstderr: {result.err}"
    lines = result.err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {lines}"
    assert lines[0].startswith("error:") and lines[0][len("error:"):].strip(), lines[0]
    return lines[0]


def _psnr(path, clean: torch.Tensor) -> float:
    return float(psnr(read_image(path)[0], clean)[0])


def _mode(path) -> str:
    with Image.open(path) as im:
        return im.mode


# ---------------------------------------------------------------------------------------------
# Images: an MNIST test digit (28x28 gray) and scikit-image's astronaut (64x64 RGB)


def _astronaut() -> torch.Tensor:
    """(1, 3, 64, 64) in [0, 1]: every 8th pixel of the 512x512 photo."""
    from skimage.data import astronaut

    return torch.from_numpy(astronaut()[::8, ::8].copy()).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder with photo.png (64x64 RGB) and small.png (28x28 gray, from the photo)."""
    folder = tmp_path_factory.mktemp("images")
    photo = _astronaut()
    write_png(folder / "photo.png", photo)
    gray = photo.mean(1, keepdim=True)
    write_png(folder / "small.png", gray[..., 8:36, 20:48])  # (1, 1, 28, 28)
    return folder


@pytest.fixture(scope="module")
def digit_png(images) -> Path:
    if not MNIST_FILE.is_file():
        missing_data("the MNIST test images", MNIST_FILE)
    x, _ = mnist_images(1)
    path = images / "digit.png"
    write_png(path, x)
    return path


@pytest.fixture
def photo_png(images) -> Path:
    return images / "photo.png"


@pytest.fixture
def clean_png(request, images):
    """The image named by the test's ``image`` parameter: "digit" or "photo"."""
    return request.getfixturevalue("digit_png") if request.param == "digit" else images / "photo.png"


# ---------------------------------------------------------------------------------------------
# Lazy imports and the real executable


def _executable() -> str:
    found = shutil.which("restore", path=str(Path(sys.executable).parent)) or shutil.which("restore")
    assert found, "the `restore` console script is not installed (pip install -e .)"
    return found


def test_help_answers_fast():
    t0 = time.perf_counter()
    done = subprocess.run([_executable(), "--help"], capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=60)
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr
    for command in ("degrade", *TASKS, "priors"):
        assert command in done.stdout
    assert seconds < 3.0, f"`restore --help` took {seconds:.2f} s"


def test_importing_cli_does_not_import_torch():
    code = "import sys, restore.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=SUBPROCESS_ENV, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_console_script_end_to_end(tmp_path, images):
    """The installed executable: degrade and restore exit 0, a bad input exits 2 with one line."""
    exe = _executable()

    def run(*args):
        return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, cwd=tmp_path,
                              env=SUBPROCESS_ENV, timeout=120)

    clean = images / "small.png"
    done = run("degrade", clean, "--task", "denoise", "--noise", "0.1", "-o", "y.png")
    assert done.returncode == 0, done.stderr
    done = run("denoise", "y.json", "-o", "out.png", "--steps", "50", "--reference", clean, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["psnr"] > _psnr(tmp_path / "y.png", read_image(clean)[0])

    before = _listing(tmp_path)
    done = run("deblur", "missing.png", "-o", "out2.png")
    _assert_user_error(Result(done.returncode, done.stdout, done.stderr))
    assert _listing(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# Degrade, then restore from the spec: every task, on the digit and on the photo

ROUND_TRIPS = [("digit", task) for task in TASKS] + [("photo", task) for task in TASKS if task != "cs"]
# Random pixels for inpainting, so that the zero-filled measurement is a fair baseline.
DEGRADE_OPTIONS = {"inpaint": ["--random", "0.5"]}
# tv with 50 steps beats the measurement for denoising and CS; super-resolution keeps tv's
# default steps (50 are not enough to beat nearest-neighbour upsampling).
RESTORE_OPTIONS = {"denoise": ["--steps", "50"], "cs": ["--steps", "50"]}


def _baseline(task: str, preview: torch.Tensor, factor: int = 4) -> torch.Tensor:
    """What the measurement alone shows, at the clean image's size."""
    if task == "superres":  # nearest-neighbour upsampling
        return preview.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
    return preview  # zero-filled (inpaint), blurry (deblur), noisy (denoise), pseudo-inverse (cs)


@pytest.mark.parametrize(("clean_png", "task"), ROUND_TRIPS, indirect=["clean_png"],
                         ids=[f"{image}-{task}" for image, task in ROUND_TRIPS])
def test_degrade_then_restore(cli, tmp_path, clean_png, task):
    clean = read_image(clean_png)[0]
    C, H, W = clean.shape[1:]
    _ok(cli("degrade", clean_png, "--task", task, "--noise", "0.05", *DEGRADE_OPTIONS.get(task, []),
            "-o", tmp_path / "y.png"))
    assert _listing(tmp_path) == {"y.png", "y.json", "y.safetensors"}
    spec = json.loads((tmp_path / "y.json").read_text())
    assert spec["task"] == task and spec["image_shape"] == [C, H, W]
    assert spec["operator"]["noise"] == {"type": "gaussian", "sigma": 0.05}
    assert _mode(tmp_path / "y.png") == {1: "L", 3: "RGB"}[C] + ("A" if task == "inpaint" else "")

    result = _ok(cli(task, tmp_path / "y.json", "-o", tmp_path / "out.png", "--reference", clean_png, "--json",
                     *RESTORE_OPTIONS.get(task, [])))
    report = json.loads(result.out)
    out, alpha = read_image(tmp_path / "out.png")
    assert out.shape == clean.shape and alpha is None
    assert {"psnr", "ssim"} <= set(report) and 0 < report["ssim"] <= 1
    # The reported PSNR is of the float estimate; the 8-bit file is within quantisation of it.
    assert abs(report["psnr"] - _psnr(tmp_path / "out.png", clean)) < 0.2
    baseline = float(psnr(_baseline(task, read_image(tmp_path / "y.png")[0]), clean)[0])
    assert report["psnr"] > baseline, f"restored {report['psnr']:.2f} dB, measurement {baseline:.2f} dB"


def test_npy_float_format(cli, tmp_path, photo_png):
    _ok(cli("degrade", photo_png, "--task", "inpaint", "--random", "0.5", "--float-format", "npy",
            "-o", tmp_path / "y.png"))
    assert _listing(tmp_path) == {"y.png", "y.json", "y.npy", "y.mask.npy"}
    assert json.loads((tmp_path / "y.json").read_text())["arrays"] == {"y": "y.npy", "mask": "y.mask.npy"}
    _ok(cli("inpaint", tmp_path / "y.json", "-o", tmp_path / "a.png"))
    # The same measurement through safetensors restores to the same image.
    (tmp_path / "st").mkdir()
    _ok(cli("degrade", photo_png, "--task", "inpaint", "--random", "0.5", "-o", tmp_path / "st" / "y.png"))
    _ok(cli("inpaint", tmp_path / "st" / "y.json", "-o", tmp_path / "b.png"))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


# ---------------------------------------------------------------------------------------------
# Inpainting with the mask in the alpha channel


@pytest.mark.parametrize("clean_png", ["digit", "photo"], indirect=True)
def test_inpaint_transparent_pixels(cli, tmp_path, clean_png):
    clean = read_image(clean_png)[0]
    alpha = torch.ones(1, 1, *clean.shape[-2:])
    alpha[..., 8:18, 6:20] = 0  # the hole
    write_png(tmp_path / "holes.png", clean, alpha=alpha)  # LA for the digit, RGBA for the photo
    _ok(cli("inpaint", tmp_path / "holes.png", "-o", tmp_path / "out.png"))
    assert _mode(tmp_path / "out.png") in ("L", "RGB")
    out, out_alpha = read_image(tmp_path / "out.png")
    assert out_alpha is None and out.shape == clean.shape
    seen = alpha.bool().expand_as(clean)
    torch.testing.assert_close(out[seen], clean[seen], atol=1 / 255, rtol=0)  # observed pixels kept
    assert float(psnr(out, clean)[0]) > float(psnr(clean * alpha, clean)[0])


def test_transparency_outside_inpainting_is_noted(cli, tmp_path, digit_png):
    """Only inpainting reads transparent pixels as missing; denoising an image with a hole says so on stderr."""
    clean = read_image(digit_png)[0]
    alpha = torch.ones(1, 1, *clean.shape[-2:])
    write_png(tmp_path / "opaque.png", clean, alpha=alpha)
    alpha[..., 8:18, 6:20] = 0
    write_png(tmp_path / "holes.png", clean, alpha=alpha)
    note = "transparency marks missing pixels only for restore inpaint"
    assert note in _ok(cli("denoise", tmp_path / "holes.png", "--noise", "0.05", "-o", tmp_path / "a.png")).err
    assert note not in _ok(cli("denoise", tmp_path / "opaque.png", "--noise", "0.05", "-o", tmp_path / "b.png")).err


@pytest.mark.parametrize("clean_png", ["digit", "photo"], indirect=True)
def test_inpaint_preview_round_trip(cli, tmp_path, clean_png):
    """A degrade preview carries the mask as alpha; inpainting it with no options restores it."""
    clean = read_image(clean_png)[0]
    _ok(cli("degrade", clean_png, "--task", "inpaint", "--random", "0.5", "-o", tmp_path / "y.png"))
    preview, alpha = read_image(tmp_path / "y.png")
    mask = load_arrays(tmp_path / "y.safetensors")["mask"]
    assert alpha is not None
    torch.testing.assert_close(alpha[0], mask, atol=0, rtol=0)
    _ok(cli("inpaint", tmp_path / "y.png", "-o", tmp_path / "out.png"))
    out, out_alpha = read_image(tmp_path / "out.png")
    assert out_alpha is None and out.shape == clean.shape
    assert float(psnr(out, clean)[0]) > float(psnr(preview, clean)[0]) + 3


# ---------------------------------------------------------------------------------------------
# Plain images with operator options


def test_deblur_gaussian_kernel_option(cli, tmp_path, digit_png):
    _ok(cli("degrade", digit_png, "--task", "deblur", "--kernel", "gaussian:2", "--noise", "0.01",
            "-o", tmp_path / "blurry.png"))
    result = _ok(cli("deblur", tmp_path / "blurry.png", "--kernel", "gaussian:2", "--noise", "0.01",
                     "-o", tmp_path / "out.png", "--reference", digit_png, "--json"))
    assert json.loads(result.out)["psnr"] > _psnr(tmp_path / "blurry.png", read_image(digit_png)[0]) + 2


@pytest.mark.parametrize("kernel", ["motion:9:0.5", "k.png"])
def test_deblur_motion_and_file_kernels(cli, tmp_path, photo_png, kernel):
    if kernel == "k.png":
        k = torch.zeros(1, 1, 7, 7)
        k[..., 3, :] = 1  # a horizontal streak
        k[..., 2:5, 3] = 0.5
        write_png(tmp_path / "k.png", k)
        kernel = str(tmp_path / "k.png")
    _ok(cli("degrade", photo_png, "--task", "deblur", "--kernel", kernel, "--noise", "0.01",
            "-o", tmp_path / "blurry.png"))
    result = _ok(cli("deblur", tmp_path / "blurry.png", "--kernel", kernel, "--noise", "0.01",
                     "-o", tmp_path / "out.png", "--reference", photo_png, "--json"))
    assert json.loads(result.out)["psnr"] > _psnr(tmp_path / "blurry.png", read_image(photo_png)[0]) + 1


def test_superres_factor_option(cli, tmp_path, photo_png):
    small = _astronaut()[..., ::2, ::2]  # (1, 3, 32, 32)
    write_png(tmp_path / "small.png", small)
    _ok(cli("superres", tmp_path / "small.png", "--factor", "2", "--steps", "50", "-o", tmp_path / "out.png"))
    out, _ = read_image(tmp_path / "out.png")
    assert out.shape == (1, 3, 64, 64)


def test_denoise_estimates_sigma(cli, tmp_path, photo_png):
    _ok(cli("degrade", photo_png, "--task", "denoise", "--noise", "0.05", "-o", tmp_path / "noisy.png"))
    result = _ok(cli("denoise", tmp_path / "noisy.png", "--steps", "50", "-o", tmp_path / "out.png"))
    found = re.search(r"estimated noise sigma_y = ([0-9.]+)", result.err)
    assert found, result.err
    assert 0.03 < float(found.group(1)) < 0.07
    clean = read_image(photo_png)[0]
    assert _psnr(tmp_path / "out.png", clean) > _psnr(tmp_path / "noisy.png", clean)


def test_inpaint_mask_option(cli, tmp_path, photo_png):
    clean = read_image(photo_png)[0]
    mask = torch.ones(1, 1, 64, 64)
    mask[..., 30:44, 10:30] = 0  # black = missing
    write_png(tmp_path / "m.png", mask)
    write_png(tmp_path / "img.png", clean * mask)
    _ok(cli("inpaint", tmp_path / "img.png", "--mask", tmp_path / "m.png", "-o", tmp_path / "out.png"))
    out, _ = read_image(tmp_path / "out.png")
    assert float(psnr(out, clean)[0]) > _psnr(tmp_path / "img.png", clean) + 3


def test_spec_option_uses_float_data(cli, tmp_path, digit_png):
    """`restore T preview.png --spec y.json` restores from the float data, not from the 8-bit preview."""
    _ok(cli("degrade", digit_png, "--task", "deblur", "--noise", "0.05", "-o", tmp_path / "y.png"))
    _ok(cli("deblur", tmp_path / "y.png", "--spec", tmp_path / "y.json", "-o", tmp_path / "a.png"))
    _ok(cli("deblur", tmp_path / "y.json", "-o", tmp_path / "b.png"))
    _ok(cli("deblur", tmp_path / "y.png", "-o", tmp_path / "c.png"))  # the preview alone, for contrast
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert not torch.equal(read_image(tmp_path / "a.png")[0], read_image(tmp_path / "c.png")[0])


# ---------------------------------------------------------------------------------------------
# Priors and solvers


@pytest.fixture(scope="module")
def digit_specs(digit_png, tmp_path_factory) -> dict[str, Path]:
    """task -> spec of the digit degraded with sigma_y = 0.05, written once by the library itself."""
    from restore import measurement
    from restore import operators as O

    folder = tmp_path_factory.mktemp("specs")
    x = read_image(digit_png)[0]
    shape = x.shape[1:]
    noise = O.GaussianNoise(0.05)
    ops = {"inpaint": O.Inpainting.random(shape, 0.5, noise=noise), "deblur": O.Blur.gaussian(2.0, noise=noise),
           "superres": O.Downsample(4, noise=noise), "denoise": O.Denoising(noise),
           "cs": O.CompressedSensing(196, shape, noise=noise)}
    specs = {}
    for task, op in ops.items():
        y = op(x, generator=torch.Generator().manual_seed(0))
        measurement.save(folder / f"{task}.png", y, op, task=task, image_shape=x.shape[1:], seed=0)
        specs[task] = folder / f"{task}.json"
    return specs


def test_family_without_shipped_weights_is_refused(cli, tmp_path, digit_specs, monkeypatch):
    from restore import priors

    monkeypatch.setattr(priors, "SHIPPED", {k: v for k, v in priors.SHIPPED.items() if k != "flow"})
    before = _listing(tmp_path)
    line = _assert_user_error(cli("inpaint", digit_specs["inpaint"], "--prior", "flow", "-o", tmp_path / "out.png"))
    assert "no flow prior ships with this installation yet" in line
    assert _listing(tmp_path) == before


def test_family_without_a_shipped_model_names_the_training_command(cli, tmp_path, digit_specs, monkeypatch):
    from restore import priors

    monkeypatch.setattr(priors, "SHIPPED", {k: v for k, v in priors.SHIPPED.items() if k != "gan"})
    line = _assert_user_error(cli("inpaint", digit_specs["inpaint"], "--prior", "gan", "-o", tmp_path / "out.png"))
    assert "no gan prior ships with this installation yet" in line and "restore train gan" in line


def test_priors_command(cli):
    result = _ok(cli("priors"))
    lines = result.out.splitlines()
    families = [line for line in lines[:-1] if not line.startswith(" ")]
    assert [line.split()[0] for line in families[:3]] == ["classical", "ddpm", "gaussian"]
    assert "[default: ddpm-mnist" in families[1] and "[default: gaussian-mnist]" in families[2]
    assert {line.split()[0] for line in families} == {"classical", "ddpm", "gaussian", "vae", "gan", "flow", "pixelcnn",
                                                      "gmm"}
    # The shipped DDPMs and patch mixtures by the images they model, and the rule that picks one.
    variants = [line.split()[0] for line in lines if line.startswith(" ")]
    assert variants == ["ddpm-mnist:", "ddpm-photo-gray:", "ddpm-photo-rgb:", "gmm-photo-gray:", "gmm-photo-rgb:"]
    assert "picks its shipped prior by the input" in lines[-1]


# ---------------------------------------------------------------------------------------------
# restore sample and restore info, on a tiny random DDPM folder (8x8, T = 20)


def test_sample_writes_a_grid_reproducibly(cli, tmp_path, ddpm_dir):
    result = _ok(cli("sample", "--prior", ddpm_dir, "-n", "6", "--nrow", "3", "-o", tmp_path / "a.png", "--json"))
    info = json.loads(result.out)
    assert info["n"] == 6 and info["steps"] == 20 and info["method"] == "ancestral" and info["nfe"] == 20
    assert info["model"] == str(ddpm_dir)  # a folder names itself; a family name, its shipped model
    grid = read_image(tmp_path / "a.png")[0]
    # 3 x 2 tiles of 8x8 with 2-pixel padding: (2 + 3 * 10) wide, (2 + 2 * 10) high.
    assert grid.shape == (1, 1, 22, 32)
    _ok(cli("sample", "--prior", ddpm_dir, "-n", "6", "--nrow", "3", "-o", tmp_path / "b.png"))
    assert torch.equal(grid, read_image(tmp_path / "b.png")[0])
    _ok(cli("sample", "--prior", ddpm_dir, "-n", "6", "--nrow", "3", "-o", tmp_path / "c.png", "--seed", "1"))
    assert not torch.equal(grid, read_image(tmp_path / "c.png")[0])
    result = _ok(cli("sample", "--prior", ddpm_dir, "-n", "2", "--method", "ddim", "--steps", "5",
                     "-o", tmp_path / "d.png", "--json"))
    assert json.loads(result.out)["steps"] == 5


def test_info_names_family_size_and_data(cli, ddpm_dir):
    result = _ok(cli("info", "--prior", ddpm_dir))
    fields = dict(line.split(":", 1) for line in result.out.splitlines())
    assert fields["family"].strip() == "ddpm" and fields["image_size"].strip() == "8x8"
    assert fields["channels"].strip() == "1" and "pigdm" in fields["solvers"] and "repaint" in fields["solvers"]
    data = json.loads(_ok(cli("info", "--prior", ddpm_dir, "--json")).out)
    assert data["timesteps"] == 20 and set(data["solvers"]) == {"ddrm", "ddnm", "pigdm", "dps", "diffpir", "repaint", "dpir", "tweedie",
                                                                 "annealed-langevin"}


def _pickle_file(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"\x80\x04cbuiltins\nexec\n.")
    return path


def _other_run(tmp_path):
    folder = tmp_path / "other-run"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"family": "autoregressive-transformer"}))
    return folder


@pytest.mark.parametrize(
    "args, expected",
    [
        (lambda d, t: ["-n", "0"], "Invalid value for '-n'"),
        (lambda d, t: ["--steps", "21"], "--steps must be between 1 and 20"),
        (lambda d, t: ["--method", "euler"], "'euler' is not one of 'ancestral', 'ddim', 'exact'"),
        (lambda d, t: ["--method", "exact"], "--method exact is for the gaussian and gmm priors"),
        (lambda d, t: ["--variance", "large"], "'large' is not one of 'beta_tilde', 'beta'"),
        (lambda d, t: ["--eta", "-1"], "--eta must be a non-negative number"),
        (lambda d, t: ["-o", t / "missing" / "x.png"], "does not exist"),
        (lambda d, t: ["-o", t / "x.jpg"], "must be a .png file"),
        (lambda d, t: ["--prior", _pickle_file(t)], "pickled checkpoint"),
        (lambda d, t: ["--prior", _other_run(t)], "unknown family 'autoregressive-transformer'"),
        (lambda d, t: ["--prior", "restore-tests/no-such-model"], "cannot fetch prior"),
        (lambda d, t: ["--prior", t / "nothing"], "does not exist (no such file or folder)"),
        (lambda d, t: ["--prior", "pixelcnn"], "no pixelcnn prior ships"),
    ],
    ids=["n0", "steps", "method", "exact-ddpm", "variance", "eta", "out-folder", "out-suffix", "pickle", "other-family", "hub", "missing-path",
         "unshipped"],
)
def test_sample_bad_input(cli, tmp_path, ddpm_dir, monkeypatch, args, expected):
    from restore import priors

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(priors, "SHIPPED", {k: v for k, v in priors.SHIPPED.items() if k != "pixelcnn"})
    extra = args(ddpm_dir, tmp_path)
    base = ["sample", "--prior", ddpm_dir, "-o", tmp_path / "x.png"]
    before = _listing(tmp_path)
    line = _assert_user_error(cli(*base, *extra))
    assert expected in line
    assert _listing(tmp_path) == before


def test_train_bad_data_folders(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    line = _assert_user_error(cli("train", "ddpm", "--data", tmp_path / "empty", "--out", tmp_path / "r", "--size", "8"))
    assert "no image files" in line
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(mixed / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mixed / "b.png")
    line = _assert_user_error(cli("train", "ddpm", "--data", mixed, "--out", tmp_path / "r", "--size", "8"))
    assert "mixes gray" in line and "--channels" in line
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (tmp_path / "broken" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    line = _assert_user_error(cli("train", "ddpm", "--data", tmp_path / "broken", "--out", tmp_path / "r", "--size", "8"))
    assert "cannot read image" in line
    assert not (tmp_path / "r").exists()


def test_incompatible_solver_names_working_ones(cli, tmp_path, digit_specs):
    line = _assert_user_error(cli("inpaint", digit_specs["inpaint"], "--solver", "wiener", "-o", tmp_path / "out.png"))
    usable = line.split("solvers that can:")[1]
    assert "biharmonic" in usable and "tv" in usable and "wiener" not in usable
    assert _listing(tmp_path) == set()


@pytest.mark.parametrize("task", TASKS)
def test_tv_solver_on_every_task(cli, tmp_path, digit_specs, digit_png, task):
    result = _ok(cli(task, digit_specs[task], "--solver", "tv", "--steps", "20", "-o", tmp_path / "out.png",
                     "--reference", digit_png, "--json"))
    assert json.loads(result.out)["solver"] == "tv"
    assert read_image(tmp_path / "out.png")[0].shape == (1, 1, 28, 28)


@pytest.mark.parametrize(("clean_png", "task", "degrade_options", "restore_options"),
                         [("digit", "cs", [], ["--steps", "50"]), ("photo", "inpaint", ["--random", "0.5"], [])],
                         indirect=["clean_png"], ids=["digit-cs", "photo-inpaint"])
def test_deterministic(cli, tmp_path, clean_png, task, degrade_options, restore_options):
    """Seeded randomness (matrix, mask, noise): the same commands give byte-identical files."""
    files = []
    for run in ("1", "2"):
        folder = tmp_path / run
        folder.mkdir()
        _ok(cli("degrade", clean_png, "--task", task, "--noise", "0.05", *degrade_options, "-o", folder / "y.png"))
        _ok(cli(task, folder / "y.json", *restore_options, "-o", folder / "out.png"))
        files.append({name: (folder / name).read_bytes() for name in ("y.png", "y.safetensors", "out.png")})
    assert files[0] == files[1]


# ---------------------------------------------------------------------------------------------
# Bad input: exit code 2, one "error:" line, no traceback, no file written


class _CreatesFileWhenUnpickled:
    """Unpickling this object creates a file: proof that a .npy was (wrongly) unpickled."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _spec_variant(name: str, **changes) -> str:
    """A copy of y.json (in the current folder) with some fields changed or (value None) removed."""
    spec = json.loads(Path("y.json").read_text())
    for key, value in changes.items():
        if value is None:
            del spec[key]
        else:
            spec[key] = value
    Path(name).write_text(json.dumps(spec))
    return name


def _pickle_spec() -> str:
    array = np.array([_CreatesFileWhenUnpickled(Path.cwd() / "unpickled")], dtype=object)
    np.save("evil.npy", array, allow_pickle=True)
    return _spec_variant("evil.json", arrays={"y": "evil.npy", "mask": "y.safetensors"})


def _write_image(name: str, shape, alpha=None) -> str:
    write_png(name, torch.rand(shape, generator=torch.Generator().manual_seed(0)), alpha=alpha)
    return name


def _write_bytes(name: str, data: bytes) -> str:
    Path(name).write_bytes(data)
    return name


def _folder(name: str) -> str:
    os.mkdir(name)
    return name


def _spec_without_array_file() -> str:
    os.remove("y.safetensors")
    return "y.json"


def _float_npy(name: str) -> str:
    np.save(name, np.zeros((1, 1, 28, 28), np.float32))
    return name


# Each case: a function run in a folder holding x.png (28x28 gray) and an inpainting measurement
# y.png, y.json, y.safetensors of it; it writes what it needs and returns the command line.
BAD_INPUTS = {
    "missing-input": lambda: ["inpaint", "missing.png", "--box", "1,1,4,4", "-o", "out.png"],
    "missing-input-degrade": lambda: ["degrade", "missing.png", "-o", "z.png"],
    "missing-spec": lambda: ["inpaint", "missing.json", "-o", "out.png"],
    "directory-input": lambda: ["deblur", _folder("folder"), "-o", "out.png"],
    "directory-input-degrade": lambda: ["degrade", _folder("folder"), "-o", "z.png"],
    "text-named-png": lambda: ["deblur", _write_bytes("text.png", b"not an image\n"), "-o", "out.png"],
    "binary-not-image": lambda: ["denoise", _write_bytes("noise.bin", bytes(range(256)) * 4), "--noise", "0.1",
                                 "-o", "out.png"],
    # A PNG signature followed by garbage: a truncated, corrupt file.
    "corrupt-png-degrade": lambda: ["degrade", _write_bytes("noise.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256))),
                                    "-o", "z.png"],
    "mask-wrong-size": lambda: ["inpaint", "x.png", "--mask", _write_image("m.png", (1, 1, 10, 10)), "-o", "out.png"],
    "kernel-larger-than-image": lambda: ["deblur", "x.png", "--kernel", _write_image("k.png", (1, 1, 40, 40)),
                                         "-o", "out.png"],
    "negative-sigma": lambda: ["deblur", "x.png", "--noise", "-0.1", "-o", "out.png"],
    "negative-sigma-degrade": lambda: ["degrade", "x.png", "--task", "deblur", "--noise", "-0.1", "-o", "z.png"],
    "nan-sigma": lambda: ["denoise", "x.png", "--noise", "nan", "-o", "out.png"],
    "factor-larger-than-image": lambda: ["degrade", "x.png", "--task", "superres", "--factor", "40", "-o", "z.png"],
    "factor-zero": lambda: ["superres", "x.png", "--factor", "0", "-o", "out.png"],
    "spec-unknown-field": lambda: ["inpaint", _spec_variant("s.json", colour="blue"), "-o", "out.png"],
    "spec-missing-field": lambda: ["inpaint", _spec_variant("s.json", operator=None), "-o", "out.png"],
    "spec-not-json": lambda: ["inpaint", _write_bytes("s.json", b"{task: inpaint"), "-o", "out.png"],
    "spec-array-file-missing": lambda: ["inpaint", _spec_without_array_file(), "-o", "out.png"],
    "spec-bad-image-shape": lambda: ["inpaint", _spec_variant("s.json", image_shape="28x28"), "-o", "out.png"],
    "spec-bad-array-name": lambda: ["inpaint", _spec_variant("s.json", arrays={"y": 1, "mask": 2}), "-o", "out.png"],
    "spec-bad-operator-value": lambda: ["superres", _spec_variant(
        "s.json", task="superres", operator={"type": "superres", "factor": "two"}), "-o", "out.png"],
    "spec-bad-noise": lambda: ["inpaint", _spec_variant(
        "s.json", operator={"type": "inpaint", "mask": {"array": "mask"}, "noise": [0.1]}), "-o", "out.png"],
    "spec-of-another-task": lambda: ["deblur", "y.json", "-o", "out.png"],
    "spec-twice": lambda: ["inpaint", "y.json", "--spec", "y.json", "-o", "out.png"],
    "spec-with-operator-option": lambda: ["inpaint", "y.json", "--box", "1,1,4,4", "-o", "out.png"],
    "pickled-npy-measurement": lambda: ["inpaint", _pickle_spec(), "-o", "out.png"],
    "output-missing-folder": lambda: ["inpaint", "y.json", "-o", "nofolder/out.png"],
    "output-missing-folder-degrade": lambda: ["degrade", "x.png", "-o", "nofolder/z.png"],
    "output-not-png": lambda: ["inpaint", "y.json", "-o", "out.jpg"],
    "output-not-png-degrade": lambda: ["degrade", "x.png", "-o", "z.jpg"],
    "output-is-folder": lambda: ["inpaint", "y.json", "-o", _folder("out.png")],
    "unknown-task-degrade": lambda: ["degrade", "x.png", "--task", "colourise", "-o", "z.png"],
    "unknown-float-format": lambda: ["degrade", "x.png", "--float-format", "hdf5", "-o", "z.png"],
    "box-out-of-range": lambda: ["inpaint", "x.png", "--box", "20,20,20,20", "-o", "out.png"],
    "box-not-four-numbers": lambda: ["inpaint", "x.png", "--box", "1,2,3", "-o", "out.png"],
    "box-covers-everything": lambda: ["inpaint", "x.png", "--box", "0,0,28,28", "-o", "out.png"],
    "random-above-one": lambda: ["inpaint", "x.png", "--random", "1.5", "-o", "out.png"],
    "no-alpha-no-mask": lambda: ["inpaint", "x.png", "-o", "out.png"],
    "all-transparent": lambda: ["inpaint", _write_image("clear.png", (1, 1, 28, 28), alpha=torch.zeros(1, 1, 28, 28)),
                                "-o", "out.png"],
    "noise-and-poisson": lambda: ["denoise", "x.png", "--noise", "0.1", "--poisson", "10", "-o", "out.png"],
    "float-npy-without-spec": lambda: ["denoise", _float_npy("y.npy"), "-o", "out.png"],
    "kernel-bad-text": lambda: ["deblur", "x.png", "--kernel", "gaussian:two", "-o", "out.png"],
    "kernel-negative-size": lambda: ["deblur", "x.png", "--kernel", "gaussian:2:-3", "-o", "out.png"],
    "kernel-infinite-sigma": lambda: ["deblur", "x.png", "--kernel", "gaussian:inf", "-o", "out.png"],
    "measurements-zero": lambda: ["degrade", "x.png", "--task", "cs", "--measurements", "0", "-o", "z.png"],
    "measurements-for-inpaint": lambda: ["degrade", "x.png", "--measurements", "10", "-o", "z.png"],
    "filter-for-deblur": lambda: ["degrade", "x.png", "--task", "deblur", "--filter", "bicubic", "-o", "z.png"],
    "seed-too-large": lambda: ["degrade", "x.png", "--seed", str(2**70), "-o", "z.png"],
    "steps-for-non-iterative-solver": lambda: ["inpaint", "y.json", "--steps", "5", "-o", "out.png"],
    "steps-zero": lambda: ["inpaint", "y.json", "--solver", "tv", "--steps", "0", "-o", "out.png"],
    "unknown-solver": lambda: ["inpaint", "y.json", "--solver", "magic", "-o", "out.png"],
    "unknown-device": lambda: ["inpaint", "y.json", "--device", "tpu", "-o", "out.png"],
    "reference-wrong-size": lambda: ["denoise", "x.png", "--reference", _write_image("big.png", (1, 3, 64, 64)),
                                     "-o", "out.png"],
    "cs-from-plain-image": lambda: ["cs", "x.png", "-o", "out.png"],
}

# Messages that must tell the user what to do.
BAD_INPUT_HINTS = {
    "no-alpha-no-mask": "--mask",
    "float-npy-without-spec": "--spec",
    "spec-of-another-task": "restore inpaint",
    "unknown-task-degrade": "'inpaint', 'deblur', 'superres', 'denoise', 'cs'",
    "pickled-npy-measurement": "evil.npy",
}


@pytest.fixture(scope="module")
def bad_input_folder(images, tmp_path_factory) -> Path:
    """x.png and an inpainting measurement y.* of it, copied into each bad-input test's folder."""
    folder = tmp_path_factory.mktemp("bad")
    shutil.copy(images / "small.png", folder / "x.png")
    from restore import measurement
    from restore.operators import Inpainting

    x = read_image(folder / "x.png")[0]
    op = Inpainting.box(x.shape[1:], 8, 8, 10, 10)
    measurement.save(folder / "y.png", op(x), op, task="inpaint", image_shape=x.shape[1:])
    return folder


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input(cli, tmp_path, monkeypatch, bad_input_folder, case):
    shutil.copytree(bad_input_folder, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    args = BAD_INPUTS[case]()
    before = _listing(tmp_path)
    line = _assert_user_error(cli(*args))
    assert _listing(tmp_path) == before, "a failed command left files behind"
    if case in BAD_INPUT_HINTS:
        assert BAD_INPUT_HINTS[case] in line


@pytest.mark.parametrize("args", [
    ["inpaint", "x.png", "--no-such-option", "-o", "out.png"],
    ["inpaint"],  # missing argument
    ["degrade", "x.png"],  # missing -o
    ["deblur", "x.png", "--steps", "many", "-o", "out.png"],
], ids=["unknown-option", "missing-argument", "missing-output", "not-an-integer"])
def test_usage_errors(cli, tmp_path, monkeypatch, bad_input_folder, args):
    """Typer's own usage errors: one line naming the problem and the --help to read, exit code 2, no
    file; with --json, the error as JSON on stdout too."""
    shutil.copytree(bad_input_folder, tmp_path, dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    before = _listing(tmp_path)
    line = _assert_user_error(cli(*args))
    assert f"(see 'restore {args[0]} --help')" in line
    assert _listing(tmp_path) == before
    result = cli(*args, "--json")
    assert json.loads(result.out) == {"error": result.err.strip()[len("error: "):], "code": 2}


def test_json_errors_are_json_on_stdout(cli, tmp_path):
    result = cli("denoise", tmp_path / "missing.png", "--json", "-o", tmp_path / "o.png")
    assert result.code == 2 and json.loads(result.out)["error"].startswith("cannot read image")


def test_failed_write_leaves_no_partial_measurement(cli, tmp_path, monkeypatch, images):
    """If the last file of a measurement cannot be written, the ones written before are removed."""

    def fail(path, obj):
        raise RestoreError(f"cannot write '{path}': disk full")

    monkeypatch.setattr(restore.io, "write_json", fail)
    for float_format in ("safetensors", "npy"):
        line = _assert_user_error(cli("degrade", images / "small.png", "--float-format", float_format,
                                      "-o", tmp_path / "y.png"))
        assert "disk full" in line
        assert _listing(tmp_path) == set()


# ---------------------------------------------------------------------------------------------
# Restoring with a learned prior


@pytest.fixture
def holes8(tmp_path):
    """An 8x8 gray image whose middle 4x4 is transparent (missing), for the tiny DDPM."""
    rgba = np.zeros((8, 8, 2), np.uint8)
    rgba[..., 0] = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    rgba[..., 1] = 255
    rgba[2:6, 2:6, 1] = 0
    path = tmp_path / "holes8.png"
    Image.fromarray(rgba, "LA").save(path)
    return path


def test_learned_prior_writes_estimate_samples_std_and_record(cli, tmp_path, ddpm_dir, holes8):
    out = tmp_path / "out.png"
    result = _ok(cli("inpaint", holes8, "--prior", ddpm_dir, "--solver", "ddnm", "--steps", "5", "--samples", "3",
                     "--param", "eta=0.5", "-o", out, "--json"))
    record = json.loads(result.out)
    assert record == json.loads((tmp_path / "out.json").read_text())
    assert record["solver"] == "ddnm" and record["steps"] == 5 and record["nfe"] == 5 and record["samples"] == 3
    assert record["hyperparameters"] == {"fidelity": 1.0, "eta": 0.5, "rcond": 1e-3}
    assert read_image(out)[0].shape == (1, 1, 8, 8)
    assert read_image(tmp_path / "out.std.png")[0].shape == (1, 1, 8, 8)
    assert read_image(tmp_path / "out.samples.png")[0].shape[1] == 1
    # Observed pixels are kept (noiseless DDNM satisfies A x = y); the std map is 0 there.
    y, alpha = read_image(holes8)
    observed = alpha[0, 0] > 0.5
    assert (read_image(out)[0][0, 0][observed] - y[0, 0][observed]).abs().max() <= 1 / 255
    assert read_image(tmp_path / "out.std.png")[0][0, 0][observed].max() <= 1 / 255
    # Same seed, same output.
    _ok(cli("inpaint", holes8, "--prior", ddpm_dir, "--solver", "ddnm", "--steps", "5", "--samples", "3",
            "--param", "eta=0.5", "-o", tmp_path / "again.png"))
    assert torch.equal(read_image(out)[0], read_image(tmp_path / "again.png")[0])


def test_an_earlier_runs_samples_beside_the_output_are_named_and_left_alone(cli, tmp_path, ddpm_dir, holes8):
    # A 3-sample run writes out.samples.png and out.std.png; a later run to the same -o that draws one sample
    # (or uses a classical solver) writes neither, so it says that the two files describe the earlier run.
    out = tmp_path / "out.png"
    _ok(cli("inpaint", holes8, "--prior", ddpm_dir, "--solver", "ddnm", "--steps", "3", "--samples", "3", "-o", out))
    side = {name: (tmp_path / name).read_bytes() for name in ("out.samples.png", "out.std.png")}
    for again in (("--prior", ddpm_dir, "--solver", "ddnm", "--steps", "3"), ("--solver", "biharmonic")):
        result = _ok(cli("inpaint", holes8, *again, "-o", out))
        assert "'" + str(tmp_path / "out.samples.png") + "' and '" + str(tmp_path / "out.std.png") in result.err
        assert "from an earlier run" in result.err
        assert {name: (tmp_path / name).read_bytes() for name in side} == side
        assert "sample_grid" not in json.loads((tmp_path / "out.json").read_text())
    # A run that writes its own samples says nothing of the kind.
    result = _ok(cli("inpaint", holes8, "--prior", ddpm_dir, "--solver", "ddnm", "--steps", "3", "--samples", "2", "-o", out))
    assert "earlier run" not in result.err


def test_the_default_solver_and_steps_fit_a_prior_with_few_timesteps(cli, tmp_path, ddpm_dir, holes8):
    # inpaint defaults to DPS at 100 steps; this DDPM has T = 20, so the default is cut to 20, while
    # an explicit --steps 50 is refused and an explicit solver takes its own default (PiGDM: 50, cut too).
    record = json.loads(_ok(cli("inpaint", holes8, "--prior", ddpm_dir, "-o", tmp_path / "a.png", "--json")).out)
    assert record["solver"] == "dps" and record["steps"] == 20 and record["nfe"] == 20
    assert cli("inpaint", holes8, "--prior", ddpm_dir, "--steps", "50", "-o", tmp_path / "b.png").code == 2
    record = json.loads(_ok(cli("inpaint", holes8, "--prior", ddpm_dir, "--solver", "pigdm", "-o", tmp_path / "c.png",
                                "--json")).out)
    assert record["solver"] == "pigdm" and record["steps"] == 20


def test_the_default_solver_brings_its_per_task_settings_and_a_param_overrides_them(cli, tmp_path, ddpm_dir, holes8):
    # deblur defaults to DPS with fidelity 2 (chosen on held-out images); --param wins, and a solver
    # named with --solver, even DPS, takes its own defaults.
    blur = ("deblur", holes8, "--prior", ddpm_dir, "--kernel", "gaussian:1:3", "--noise", "0.05", "--steps", "3",
            "--json")
    record = json.loads(_ok(cli(*blur, "-o", tmp_path / "a.png")).out)
    assert record["solver"] == "dps" and record["hyperparameters"]["fidelity"] == 2.0
    record = json.loads(_ok(cli(*blur, "--param", "fidelity=0.5", "-o", tmp_path / "b.png")).out)
    assert record["hyperparameters"]["fidelity"] == 0.5
    record = json.loads(_ok(cli(*blur, "--solver", "dps", "-o", tmp_path / "c.png")).out)
    assert record["hyperparameters"]["fidelity"] == 1.0


@pytest.mark.parametrize("solver", ["ddrm", "pigdm", "dps", "diffpir", "repaint"])
def test_every_diffusion_solver_runs_from_the_command_line(cli, tmp_path, ddpm_dir, holes8, solver):
    result = _ok(cli("inpaint", holes8, "--prior", ddpm_dir, "--solver", solver, "--steps", "4", "-o",
                     tmp_path / "out.png", "--json"))
    assert json.loads(result.out)["nfe"] >= 4


def test_shipped_gaussian_prior_restores_a_digit(cli, tmp_path, digit_png, digit_specs):
    learned = json.loads(_ok(cli("inpaint", digit_specs["inpaint"], "--prior", "gaussian", "--steps", "20",
                                 "--samples", "4", "-o", tmp_path / "g.png", "--reference", digit_png, "--json")).out)
    assert learned["prior_family"] == "gaussian" and learned["solver"] == "dps" and learned["nfe"] == 20
    # Measured 21.0 dB for the mean of 4 DPS samples, 19.7 with PiGDM (the measurement alone, y, is at 9.1 dB).
    assert learned["psnr"] > 17 and learned["psnr_one_sample"] < learned["psnr"]


def test_size_mismatch_names_both_and_resize_fits(cli, tmp_path, ddpm_dir, digit_png):
    before = _listing(tmp_path)
    line = _assert_user_error(cli("denoise", digit_png, "--noise", "0.1", "--prior", ddpm_dir, "-o", tmp_path / "o.png"))
    assert "the image is 1x28x28" in line and "models 1x8x8 images" in line and "--resize" in line
    assert _listing(tmp_path) == before
    _ok(cli("denoise", digit_png, "--noise", "0.1", "--prior", ddpm_dir, "--resize", "--solver", "ddrm",
            "--steps", "3", "-o", tmp_path / "o.png"))
    assert read_image(tmp_path / "o.png")[0].shape == (1, 1, 8, 8)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["deblur", "--kernel", "gaussian:1", "--solver", "repaint"], "solvers that can: ddrm, ddnm, pigdm, dps, diffpir"),
        (["deblur", "--kernel", "gaussian:1:3", "--poisson", "50", "--solver", "ddrm"], "poisson noise"),
        (["denoise", "--noise", "0.1", "--param", "zeta=1"], "expected KEY=VALUE with KEY one of fidelity, eta, rcond (ddnm"),
        (["denoise", "--noise", "0.1", "--param", "eta=abc"], "eta takes a float"),
        (["denoise", "--noise", "0.1", "--samples", "0"], "Invalid value for '--samples'"),
        (["denoise", "--noise", "0.1", "--estimate", "median"], "'median' is not one of 'mean', 'sample'"),
        (["denoise", "--noise", "0.1", "--steps", "21"], "--steps must be between 1 and 20"),
        (["denoise", "--noise", "0.1", "--solver", "tv"], "unknown solver 'tv' for a learned prior"),
    ],
    ids=["repaint-blur", "poisson", "param-key", "param-value", "samples", "estimate", "steps", "classical-solver"],
)
def test_learned_prior_bad_input(cli, tmp_path, ddpm_dir, args, expected):
    img = tmp_path / "img.png"
    write_png(img, torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    task, *rest = args
    before = _listing(tmp_path)
    line = _assert_user_error(cli(task, img, "--prior", ddpm_dir, *rest, "-o", tmp_path / "o.png"))
    assert expected in line
    assert _listing(tmp_path) == before


def test_the_record_never_overwrites_the_input_spec(cli, tmp_path, digit_specs):
    spec = tmp_path / "y.json"
    shutil.copy(digit_specs["inpaint"], spec)
    text = spec.read_text()
    line = _assert_user_error(cli("inpaint", spec, "--prior", "gaussian", "-o", tmp_path / "y.png"))
    assert "would overwrite the input" in line and spec.read_text() == text


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_it_is_a_warning_not_a_refusal(cli, tmp_path, digit_specs, monkeypatch, native):
    from restore import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda: native)
    result = _ok(cli("inpaint", digit_specs["inpaint"], "--prior", "ddpm", "--solver", "ddnm", "--steps", "2",
                     "--precision", "bf16", "--device", "cpu", "-o", tmp_path / "o.png"))
    assert ("warning: --precision bf16 on a CPU without bfloat16 instructions" in result.err) == (not native)
    assert (tmp_path / "o.png").exists()


def test_classical_restore_writes_its_record_over_a_learned_runs(cli, tmp_path, ddpm_dir, holes8, digit_specs):
    """A classical restoration writes its JSON record beside the estimate, as a learned one does: a record an
    earlier run left at that name never describes the new estimate. The record's name is an output too, so
    it may not be an input (a spec named like the -o)."""
    out = tmp_path / "out.png"
    _ok(cli("inpaint", holes8, "--prior", ddpm_dir, "--solver", "ddnm", "--steps", "3", "-o", out))
    assert json.loads((tmp_path / "out.json").read_text())["solver"] == "ddnm"
    result = _ok(cli("inpaint", holes8, "-o", out, "--json"))
    record = json.loads((tmp_path / "out.json").read_text())
    assert record == json.loads(result.out)
    assert record["prior"] == "classical" and record["solver"] == "biharmonic" and record["output"] == str(out)
    spec = tmp_path / "s.json"
    shutil.copy(digit_specs["denoise"], spec)  # its preview stays where it was; only the record collides
    before = _listing(tmp_path)
    line = _assert_user_error(cli("denoise", spec, "--solver", "tv", "-o", tmp_path / "s.png"))
    assert "s.json" in line, line
    assert _listing(tmp_path) == before


def test_param_sets_a_classical_solvers_hyperparameters(cli, tmp_path, digit_specs):
    """--param reaches the classical solvers too (TV's weight, Lasso's basis), typed by their keyword defaults,
    recorded in the JSON report; a bad key or value is one line and exit 2, with nothing written."""
    import json

    def run(*extra):
        out = tmp_path / f"{len(list(tmp_path.iterdir()))}.png"
        result = _ok(cli("denoise", digit_specs["denoise"], "--solver", "tv", "--steps", "20", "-o", out, "--json", *extra))
        return read_image(out)[0], json.loads(result.out)

    default, report = run()
    assert report["hyperparameters"] == {"weight": None, "channels": "coupled"}
    heavy, report = run("--param", "weight=8")  # the default is 2 at this size

    def variation(x):
        return float(x.diff(dim=-1).abs().sum() + x.diff(dim=-2).abs().sum())

    assert report["hyperparameters"] == {"weight": 8.0, "channels": "coupled"} and variation(heavy) < 0.9 * variation(default)
    result = _ok(cli("cs", digit_specs["cs"], "--solver", "lasso", "--steps", "5", "--param", "basis=pixel",
                     "-o", tmp_path / "cs.png", "--json"))
    assert json.loads(result.out)["hyperparameters"] == {"weight": 0.1, "basis": "pixel"}
    before = _listing(tmp_path)
    line = _assert_user_error(cli("denoise", digit_specs["denoise"], "--solver", "pinv", "--param", "x=1", "-o", tmp_path / "bad.png"))
    assert "pinv has" not in line and "rcond" in line  # pinv's one hyperparameter is named
    line = _assert_user_error(cli("denoise", digit_specs["denoise"], "--solver", "richardson-lucy", "--param", "x=1",
                                  "-o", tmp_path / "bad.png"))
    assert "richardson-lucy has no hyperparameters to set" in line
    for bad, message in (("weight=-1", "weight"), ("basis=fourier", "basis must be pixel or wavelet"), ("eta=1", "KEY one of")):
        solver = "lasso" if bad.startswith("basis") else "tv"
        line = _assert_user_error(cli("cs" if solver == "lasso" else "denoise", digit_specs["cs" if solver == "lasso" else "denoise"],
                                      "--solver", solver, "--param", bad, "-o", tmp_path / "bad.png"))
        assert message in line, line
    assert _listing(tmp_path) == before


def test_a_valid_blur_with_a_fixed_size_prior_names_the_boundary(cli, tmp_path, digit_png):
    """A 28x28 digit under --boundary valid has a 40x40 unknown (the 13x13 kernel's radius around it), which a
    28x28 prior cannot model: the error says so and names --boundary circular, with or without --resize."""
    for extra in ((), ("--resize",)):
        line = _assert_user_error(cli("deblur", digit_png, "--prior", "ddpm", "--boundary", "valid", *extra,
                                      "-o", tmp_path / "o.png"))
        assert "1x28x28 frame grown by the kernel's radius (1x40x40)" in line and "--boundary circular" in line, line
    assert not (tmp_path / "o.png").exists()


def test_output_may_not_replace_a_file_of_the_measurement(cli, digit_specs):
    """-o naming the preview that a spec names beside it is refused: it belongs to the measurement (and is what
    `--spec` checks an image against). An output is a PNG, so the arrays are safe from it anyway."""
    spec = digit_specs["deblur"]
    target = spec.parent / "deblur.png"
    before = target.read_bytes()
    line = _assert_user_error(cli("deblur", spec, "-o", target))
    assert "would overwrite the input" in line and target.read_bytes() == before
    line = _assert_user_error(cli("deblur", target, "--spec", spec, "-o", target))
    assert "would overwrite the input" in line and target.read_bytes() == before


def test_learned_options_need_a_learned_prior(cli, tmp_path, digit_specs):
    line = _assert_user_error(cli("inpaint", digit_specs["inpaint"], "--samples", "2", "-o", tmp_path / "o.png"))
    assert "--samples, --resize and --precision are for learned priors" in line
    line = _assert_user_error(cli("inpaint", digit_specs["inpaint"], "--precision", "bf16", "-o", tmp_path / "o.png"))
    assert "--precision are for learned priors" in line
    line = _assert_user_error(cli("inpaint", digit_specs["inpaint"], "--prior", "vae", "--precision", "bf16",
                                  "-o", tmp_path / "o.png"))
    assert "--precision bf16 is for DDPM priors" in line
    line = _assert_user_error(cli("inpaint", digit_specs["inpaint"], "--prior", "gaussian", "--resize",
                                  "-o", tmp_path / "o.png"))
    assert "--resize works on plain images" in line


def test_sample_from_the_gaussian_prior_is_exact_by_default(cli, tmp_path):
    result = json.loads(_ok(cli("sample", "--prior", "gaussian", "-n", "4", "-o", tmp_path / "g.png", "--json")).out)
    assert result["method"] == "exact" and result["nfe"] == 0
    assert read_image(tmp_path / "g.png")[0].shape == (1, 1, 2 + 2 * 30, 2 + 2 * 30)


def _noise_images(folder: Path, n: int) -> Path:
    """A folder of n random 8x8 gray PNGs."""
    folder.mkdir()
    g = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((g.random((8, 8)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def test_train_gaussian_on_a_folder_then_use_it(cli, tmp_path):
    folder = _noise_images(tmp_path / "imgs", 12)
    out = tmp_path / "g"
    result = _ok(cli("train", "gaussian", "--data", folder, "--size", "8", "--rank", "4", "--out", out))
    assert "Gaussian prior of rank 4 fitted to 11 images" in result.out  # one image held out for validation
    info = json.loads(_ok(cli("info", "--prior", out, "--json")).out)
    assert info["family"] == "gaussian" and info["rank"] == 4 and info["image_size"] == [8, 8]
    assert len(info["file_list_hash"]) == 64
    line = _assert_user_error(cli("train", "gaussian", "--data", folder, "--size", "8", "--out", out))
    assert "not empty: it holds a model" in line
    _ok(cli("sample", "--prior", out, "-n", "4", "-o", tmp_path / "s.png"))


def test_evaluate_and_bench_on_a_folder_warn_about_training_images(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("RESTORE_CACHE", str(tmp_path / "cache"))
    folder = _noise_images(tmp_path / "imgs", 40)  # seed 0 holds out 2 images for validation
    clean, leaky = tmp_path / "g0", tmp_path / "g1"
    _ok(cli("train", "gaussian", "--data", folder, "--size", "8", "--rank", "4", "--out", clean))
    _ok(cli("train", "gaussian", "--data", folder, "--size", "8", "--rank", "4", "--seed", "1", "--out", leaky))
    assert len((clean / "train_digests.txt").read_text().split()) == 38
    args = ("--data", folder, "--samples", "30", "--nll-images", "2", "--feature-steps", "5", "--json")
    result = _ok(cli("evaluate", "--prior", clean, *args))
    report = json.loads(result.out)
    assert "warning" not in report and "warning" not in result.err and report["test_images"] == 2
    assert "autoencoder trained on 38" in report["features"] and report["feature_net"]["cached"] is False
    assert report["floor_images"] == 30 and "confident_fraction" not in report
    # The seed-1 prior was trained on another split: at least one of the 2 test images is among its 38.
    result = _ok(cli("evaluate", "--prior", leaky, *args))
    report = json.loads(result.out)
    assert report["feature_net"]["cached"] is True
    assert re.search(r"warning: [12] of the 2 test images are in the prior's training set", result.err)
    bench = _ok(cli("bench", "--data", folder, "--priors", clean, "--tasks", "denoise", "--solvers", "dps", "-n", "4",
                    "--steps", "2", "--samples", "1", "--out", tmp_path / "b"))
    # The first 4 sorted files: the seed-0 split trained on all but 2 of the 40.
    assert re.search(r"warning: .*g0: [234] of the 4 bench images are in the prior's training set", bench.err)
    assert "are in the prior's training set" in (tmp_path / "b" / "results.md").read_text()


def test_train_ddpm_from_an_existing_model(cli, tmp_path, ddpm_dir):
    folder = _noise_images(tmp_path / "imgs", 6)
    out = tmp_path / "run"
    _ok(cli("train", "ddpm", "--data", folder, "--size", "8", "--timesteps", "20", "--init", ddpm_dir, "--steps", "1",
            "--batch-size", "2", "--lr", "1e-9", "--out", out))
    assert json.loads((out / "run.json").read_text())["init"] == str(ddpm_dir)
    from restore.priors import load_prior

    before, after = load_prior(str(ddpm_dir)), load_prior(str(out))
    x = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    # One step at a learning rate of 1e-9: the trained model is still the one it started from.
    assert (before.x0_hat(x, 3) - after.x0_hat(x, 3)).abs().max() < 1e-4
    line = _assert_user_error(cli("train", "ddpm", "--data", folder, "--size", "16", "--timesteps", "20", "--init",
                                  ddpm_dir, "--out", tmp_path / "r2"))
    assert "models 1x8x8 images, but the data is 1x16x16" in line
    line = _assert_user_error(cli("train", "ddpm", "--data", folder, "--size", "8", "--init", ddpm_dir,
                                  "--out", tmp_path / "r3"))
    assert "another noise schedule" in line


def test_shipped_ddpm_prior_loads_samples_and_describes_itself(cli, tmp_path):
    info = json.loads(_ok(cli("info", "--prior", "ddpm", "--json")).out)
    assert info["family"] == "ddpm" and info["image_size"] == [28, 28] and info["channels"] == 1
    assert info["training_data"] == "mnist" and info["training_steps"] > 0 and info["timesteps"] == 1000
    result = json.loads(_ok(cli("sample", "--prior", "ddpm", "-n", "2", "--method", "ddim", "--steps", "3",
                                "-o", tmp_path / "s.png", "--json")).out)
    assert result["nfe"] == 3 and read_image(tmp_path / "s.png")[0].shape == (1, 1, 32, 62)


def test_train_data_root_is_used_and_a_failed_download_is_one_line(cli, tmp_path, monkeypatch, mnist_available):
    root = tmp_path / "data"
    (root / "MNIST" / "raw").mkdir(parents=True)
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(default_data_root() / "MNIST" / "raw" / name, root / "MNIST" / "raw" / name)
    result = _ok(cli("train", "gaussian", "--data", "mnist", "--data-root", root, "--rank", "8", "--out", tmp_path / "g"))
    assert "fitted to 60000 images" in result.out

    import torchvision.datasets
    from urllib.error import URLError

    def offline(*args, **kwargs):
        raise URLError("Name or service not known")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    line = _assert_user_error(cli("train", "gaussian", "--data", "fashion-mnist", "--data-root", root,
                                  "--out", tmp_path / "f"))
    assert f"not found in '{root / 'FashionMNIST' / 'raw'}' and the download failed" in line
    assert not (tmp_path / "f").exists()


# ---------------------------------------------------------------------------------------------
# VAE and GAN priors: train a tiny one on a folder, then sample, describe and restore with it


@pytest.mark.parametrize("family, extra", [("vae", ["--latent-dim", "3", "--kl-warmup", "2"]),
                                           ("gan", ["--latent-dim", "4", "--batch-size", "4"])])
def test_train_a_latent_prior_then_sample_describe_and_restore(cli, tmp_path, holes8, family, extra):
    folder = _noise_images(tmp_path / "imgs", 10)
    out = tmp_path / family
    _ok(cli("train", family, "--data", folder, "--size", "8", "--width", "4", "--steps", "3", "--out", out, *extra))
    info = json.loads(_ok(cli("info", "--prior", out, "--json")).out)
    assert info["family"] == family and info["solvers"] == ["csgm"] and info["training_steps"] == 3
    sample = json.loads(_ok(cli("sample", "--prior", out, "-n", "4", "--truncation", "1.5", "-o", tmp_path / "s.png",
                                "--json")).out)
    assert sample["truncation"] == 1.5 and read_image(tmp_path / "s.png")[0].shape[1] == 1
    line = _assert_user_error(cli("sample", "--prior", out, "--method", "ddim", "-o", tmp_path / "t.png"))
    assert "has its own sampler" in line
    record = json.loads(_ok(cli("inpaint", holes8, "--prior", out, "--steps", "5", "--samples", "2",
                                "--param", "restarts=2", "-o", tmp_path / "r.png", "--json")).out)
    assert record["solver"] == "csgm" and record["prior_family"] == family
    assert record["hyperparameters"]["restarts"] == 2 and record["nfe"] == 6  # 5 steps + the final decode
    assert read_image(tmp_path / "r.png")[0].shape == (1, 1, 8, 8)
    line = _assert_user_error(cli("inpaint", holes8, "--prior", out, "--solver", "ddnm", "-o", tmp_path / "x.png"))
    assert "cannot use the " + family + " prior; solvers that can: csgm" in line
    # --resume of a finished run at a new total continues it (both families share the training loop).
    _ok(cli("train", family, "--data", folder, "--size", "8", "--width", "4", "--steps", "4", "--out", out, "--resume",
            *extra))
    assert json.loads((out / "run.json").read_text())["steps_done"] == 4


def test_compressed_sensing_with_learned_priors(cli, tmp_path, digit_png, digit_specs):
    # The measurement is a vector (B, m), not an image: several samples must stack it along B.
    diffusion = json.loads(_ok(cli("cs", digit_specs["cs"], "--prior", "gaussian", "--steps", "10", "--samples", "2",
                                   "-o", tmp_path / "g.png", "--reference", digit_png, "--json")).out)
    latent = json.loads(_ok(cli("cs", digit_specs["cs"], "--prior", "vae", "--steps", "100", "-o", tmp_path / "v.png",
                                "--reference", digit_png, "--json")).out)
    classical = json.loads(_ok(cli("cs", digit_specs["cs"], "--solver", "lasso", "-o", tmp_path / "l.png",
                                   "--reference", digit_png, "--json")).out)
    assert diffusion["solver"] == "pigdm" and latent["solver"] == "csgm" and latent["prior_family"] == "vae"
    # 196 noisy measurements of a digit: measured 26.9 dB with the shipped VAE (100 Adam steps),
    # 15.5 dB for Lasso. The VAE must beat Lasso by more than half that gap.
    assert latent["psnr"] > classical["psnr"] + 6, (latent["psnr"], classical["psnr"])


def test_train_a_flow_then_sample_and_restore_with_its_density(cli, tmp_path, holes8):
    folder = _noise_images(tmp_path / "imgs", 10)
    out = tmp_path / "flow"
    _ok(cli("train", "flow", "--data", folder, "--size", "8", "--width", "4", "--depth", "1", "--steps", "2",
            "--batch-size", "4", "--out", out))
    info = json.loads(_ok(cli("info", "--prior", out, "--json")).out)
    assert info["family"] == "flow" and info["solvers"] == ["csgm", "map", "langevin"]
    sample = json.loads(_ok(cli("sample", "--prior", out, "-n", "3", "--temperature", "0.7", "-o", tmp_path / "s.png",
                                "--json")).out)
    assert sample["temperature"] == 0.7
    record = json.loads(_ok(cli("inpaint", holes8, "--prior", out, "--solver", "langevin", "--steps", "3",
                                "--samples", "2", "-o", tmp_path / "r.png", "--json")).out)
    assert record["solver"] == "langevin" and read_image(tmp_path / "r.std.png")[0].shape == (1, 1, 8, 8)
    _ok(cli("inpaint", holes8, "--prior", out, "--solver", "map", "--steps", "3", "--param", "space=pixel",
            "-o", tmp_path / "m.png"))
    line = _assert_user_error(cli("sample", "--prior", "gaussian", "--temperature", "0.5", "-o", tmp_path / "t.png"))
    assert "--temperature is for flow priors" in line


def test_train_a_pixelcnn_then_sample_and_inpaint_by_conditional_sampling(cli, tmp_path, holes8):
    folder = _noise_images(tmp_path / "imgs", 10)
    out = tmp_path / "pixelcnn"
    _ok(cli("train", "pixelcnn", "--data", folder, "--size", "8", "--width", "4", "--layers", "2", "--kernel", "3",
            "--steps", "2", "--batch-size", "4", "--out", out))
    assert json.loads(_ok(cli("info", "--prior", out, "--json")).out)["solvers"] == ["conditional"]
    sample = json.loads(_ok(cli("sample", "--prior", out, "-n", "2", "-o", tmp_path / "s.png", "--json")).out)
    assert sample["method"] == "sequential" and sample["nfe"] == 64
    record = json.loads(_ok(cli("inpaint", holes8, "--prior", out, "--samples", "2", "--param", "particles=2",
                                "-o", tmp_path / "r.png", "--json")).out)
    assert record["solver"] == "conditional"
    y, alpha = read_image(holes8)
    observed = alpha[0, 0] > 0.5
    assert (read_image(tmp_path / "r.png")[0][0, 0][observed] - y[0, 0][observed]).abs().max() <= 1 / 255
    line = _assert_user_error(cli("inpaint", holes8, "--prior", out, "--steps", "5", "-o", tmp_path / "x.png"))
    assert "--steps is not used by the conditional solver" in line
    line = _assert_user_error(cli("deblur", holes8, "--prior", out, "--kernel", "gaussian:1:3", "-o", tmp_path / "x.png"))
    assert "cannot handle the deblur operator (it needs mask)" in line


def test_evaluate_reports_bits_per_dim_and_distances_with_their_floor(cli, mnist_available):
    report = json.loads(_ok(cli("evaluate", "--prior", "gaussian", "--samples", "200", "--nll-images", "20",
                                "--json")).out)
    assert report["family"] == "gaussian" and report["samples"] == 200 and report["nll_images"] == 20
    # Gaussian samples are blurry blobs, far from digits: their FID must exceed the floor of real
    # training images against the test set several times over (measured: FID 921 vs 81, KID 512 vs 21).
    assert report["fid"] > 5 * report["fid_floor"] and report["kid"] > report["kid_floor"]
    assert 5 < report["bits_per_dim"] < 7  # the shipped Gaussian's bound, 5.94 on validation data
    assert "warning" not in report and report["features"].startswith("MNIST classifier")
    line = _assert_user_error(cli("evaluate", "--prior", "gaussian", "--data", "cifar"))
    assert "unknown dataset 'cifar'" in line


def test_bench_command_quick_classical_only(cli, tmp_path, mnist_available):
    result = _ok(cli("bench", "--quick", "--priors", "", "--tasks", "denoise", "--out", tmp_path / "b"))
    assert "| denoise | tv |" in result.out and (tmp_path / "b" / "report.html").is_file()
    line = _assert_user_error(cli("bench", "--steps", "ten", "--out", tmp_path / "c"))
    assert "--steps must be comma-separated integers" in line


# ---------------------------------------------------------------------------------------------
# No command writes over a file it reads or a model it was not asked to replace (issue 25, 1-4)


@pytest.mark.parametrize("case", ["degrade-image", "degrade-mask", "classical-input", "classical-reference",
                                  "prior-mask", "prior-reference", "prior-companion", "hard-link"])
def test_no_command_overwrites_its_inputs(cli, tmp_path, images, case):
    photo = tmp_path / "in.png"
    shutil.copy(images / "small.png", photo)
    mask = tmp_path / "mask.png"
    write_png(mask, (torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float())
    ref = tmp_path / "ref.png"
    shutil.copy(photo, ref)
    link = tmp_path / "link.png"
    os.link(photo, link)
    args = {
        "degrade-image": ("degrade", photo, "--task", "denoise", "-o", photo),
        "degrade-mask": ("degrade", photo, "--mask", mask, "-o", mask),
        "classical-input": ("denoise", photo, "--noise", "0.1", "-o", photo),
        "classical-reference": ("denoise", photo, "--noise", "0.1", "--reference", ref, "-o", ref),
        "prior-mask": ("inpaint", photo, "--mask", mask, "--prior", "gaussian", "-o", mask),
        "prior-reference": ("denoise", photo, "--noise", "0.1", "--prior", "gaussian", "--reference", ref, "-o", ref),
        # the record out.json beside out.png would replace the input in.json
        "prior-companion": ("denoise", photo, "--noise", "0.1", "--prior", "gaussian", "-o", tmp_path / "mask.json"),
        "hard-link": ("denoise", photo, "--noise", "0.1", "-o", link),
    }[case]
    if case == "prior-companion":
        (tmp_path / "mask.json").write_text("{}")
        args = ("denoise", tmp_path / "mask.json", "--prior", "gaussian", "-o", tmp_path / "mask.png")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    line = _assert_user_error(cli(*args))
    assert "would overwrite the input" in line
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_training_refuses_a_folder_that_holds_a_model_unless_overwrite(cli, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(Path(restore.__file__).parent / "weights" / "gaussian-mnist", model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    line = _assert_user_error(cli("train", "gaussian", "--data", "mnist", "--out", model))
    assert "not empty" in line and "--overwrite" in line
    line = _assert_user_error(cli("train", "vae", "--data", "mnist", "--out", model, "--steps", "1"))
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    # Someone's own files are never removed, even with --overwrite.
    (model / "notes.txt").write_text("mine")
    line = _assert_user_error(cli("train", "gaussian", "--data", "mnist", "--out", model, "--overwrite"))
    assert "notes.txt" in line and (model / "notes.txt").read_text() == "mine"


def test_a_fresh_run_never_appends_to_the_log_of_a_run_killed_before_its_checkpoint(cli, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{}")
    (run / "log.jsonl").write_text('{"step": 7, "loss": 1.0}\n')
    line = _assert_user_error(cli("train", "gaussian", "--data", "mnist", "--out", run))
    assert "not empty" in line
    _ok(cli("train", "gaussian", "--data", "mnist", "--out", run, "--overwrite", "--rank", "4"))
    assert not (run / "log.jsonl").exists() and json.loads((run / "run.json").read_text())["rank"] == 4


# ---------------------------------------------------------------------------------------------
# Hostile input: one line and exit code 2, never a traceback or a silently wrong result (issue 25)


def _edited_spec(spec: Path, folder: Path, name: str, y=None, arrays=None) -> Path:
    """A copy of ``spec`` in ``folder`` under ``name`` with its y replaced, or its array names changed."""
    from safetensors.torch import load_file, save_file

    meta = json.loads(spec.read_text())
    data = load_file(str(spec.parent / meta["arrays"]["y"]))
    if y is not None:
        data["y"] = y(data["y"])
    save_file(data, str(folder / f"{name}.safetensors"))
    meta["arrays"] = arrays or {k: f"{name}.safetensors" for k in meta["arrays"]}
    out = folder / f"{name}.json"
    out.write_text(json.dumps(meta))
    return out


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_measurement_stored_at_half_precision_restores(cli, tmp_path, digit_specs, dtype):
    """A spec's y in float16 or bfloat16 (a way to store it) is computed in float32: FFT blurs and
    Richardson-Lucy had no half-precision kernels and raised a traceback."""
    edited = _edited_spec(digit_specs["deblur"], tmp_path, "half", y=lambda y: y.to(dtype))
    for solver in ("richardson-lucy", "wiener"):
        result = cli("deblur", edited, "--solver", solver, "-o", tmp_path / f"{solver}.png")
        assert result.code == 0 and (tmp_path / f"{solver}.png").exists(), result.err


def test_measurement_specs_that_lie(cli, tmp_path, digit_specs):
    spec = digit_specs["inpaint"]
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    assert "nested too deeply" in _assert_user_error(cli("inpaint", deep, "-o", tmp_path / "o.png"))
    cases = {
        "infinite": (lambda y: y.index_fill(-1, torch.tensor([0]), float("inf")), "NaN or infinite"),
        "nan": (lambda y: y * float("nan"), "NaN or infinite"),
        "int64": (lambda y: (y * 255).to(torch.int64), "int64 values"),
        "complex": (lambda y: y.to(torch.complex64), "complex64 values"),
    }
    for name, (edit, expected) in cases.items():
        edited = _edited_spec(spec, tmp_path, name, y=edit)
        assert expected in _assert_user_error(cli("inpaint", edited, "-o", tmp_path / "o.png")), name
    outside = tmp_path / "inner"
    outside.mkdir()
    escaping = _edited_spec(spec, outside, "esc", arrays={"y": "../esc.safetensors", "mask": "/etc/passwd"})
    shutil.copy(outside / "esc.safetensors", tmp_path / "esc.safetensors")
    assert "spec's own folder" in _assert_user_error(cli("inpaint", escaping, "-o", tmp_path / "o.png"))
    assert not (tmp_path / "o.png").exists()


def test_an_image_beside_another_spec_is_refused(cli, tmp_path, digit_specs, images):
    line = _assert_user_error(cli("inpaint", images / "small.png", "--spec", digit_specs["inpaint"], "-o", tmp_path / "o.png"))
    assert "is not the preview of" in line
    preview = digit_specs["inpaint"].with_suffix(".png")
    if preview.exists():  # the preview itself goes with its spec
        _ok(cli("inpaint", preview, "--spec", digit_specs["inpaint"], "-o", tmp_path / "o.png"))


@pytest.mark.parametrize("args, expected", [
    (("denoise", "--noise", "1e308"), "noise sigma must lie in"),
    (("degrade", "--task", "denoise", "--poisson", "1e300"), "Poisson gain must lie in"),
    (("degrade", "--task", "cs", "--measurements", "1000000000"), "pass fewer --measurements"),
    (("deblur", "--kernel", "gaussian:1:100000"), "larger than the 28x28 image"),
    (("deblur", "--kernel", "motion:1000000"), "larger than the 28x28 image"),
    (("superres", "--factor", "100000"), "use a smaller --factor"),
    (("inpaint", "--random", "0.5", "--prior", "ddpm", "--solver", "repaint", "--param", "jump_length=0"),
     "jump_length must lie in [1, inf)"),
    (("inpaint", "--random", "0.5", "--prior", "ddpm", "--solver", "diffpir", "--param", "zeta=-1"), "zeta must lie in"),
    (("inpaint", "--random", "0.5", "--prior", "ddpm", "--solver", "ddrm", "--param", "eta=-1"), "eta must lie in"),
    (("inpaint", "--random", "0.5", "--prior", "ddpm", "--solver", "pigdm", "--param", "eta=100"), "eta must lie in"),
    (("inpaint", "--random", "0.5", "--prior", "ddpm", "--samples", "100000000000"), "pass fewer --samples"),
], ids=["noise", "poisson", "cs", "gaussian-kernel", "motion-kernel", "factor", "jump", "zeta", "eta-ddrm",
        "eta-pigdm", "samples"])
def test_sizes_and_ranges_are_checked_before_any_work(cli, tmp_path, images, args, expected):
    task, *rest = args
    before = _listing(tmp_path)
    line = _assert_user_error(cli(task, images / "small.png", *rest, "-o", tmp_path / "o.png"))
    assert expected in line
    assert _listing(tmp_path) == before


def test_training_options_that_cannot_work(cli, tmp_path):
    for args, expected in ((("--max-minutes", "-1"), "--max-minutes must be a positive"),
                           (("--max-minutes", "nan"), "--max-minutes must be a positive"),
                           (("--size", "100000"), "pass a smaller --size")):
        line = _assert_user_error(cli("train", "ddpm", "--data", "mnist", "--out", tmp_path / "r", *args))
        assert expected in line and not (tmp_path / "r" / "run.json").exists()


def test_a_damaged_checkpoint_is_named_not_a_traceback(cli, tmp_path):
    run = tmp_path / "run"
    args = ("train", "ddpm", "--data", "mnist", "--out", run, "--width", "8", "--batch-size", "4", "--timesteps", "20")
    _ok(cli(*args, "--steps", "2", "--checkpoint-every", "2"))
    assert (run / "samples" / "step-2.png").exists()  # a run shorter than --sample-every still draws a grid
    index = run / "checkpoint" / "checkpoint.json"
    meta = json.loads(index.read_text())
    tensors = run / "checkpoint" / meta["tensors"]
    good = tensors.read_bytes()
    tensors.write_bytes(good[:1000])  # truncated
    assert "is damaged" in _assert_user_error(cli(*args, "--steps", "4", "--resume"))
    tensors.unlink()
    assert "is missing" in _assert_user_error(cli(*args, "--steps", "4", "--resume"))
    tensors.write_bytes(good)
    index.write_text(json.dumps({**meta, "step": "x"}))
    assert "step must be a non-negative integer" in _assert_user_error(cli(*args, "--steps", "4", "--resume"))
    index.write_text(json.dumps(meta))
    _ok(cli(*args, "--steps", "4", "--resume"))


def test_model_folders_whose_settings_and_weights_disagree(cli, tmp_path, ddpm_dir):
    from safetensors.torch import load_file, save_file

    edited = tmp_path / "config"
    shutil.copytree(ddpm_dir, edited)
    config = json.loads((edited / "unet" / "config.json").read_text())
    (edited / "unet" / "config.json").write_text(json.dumps({**config, "block_out_channels": [16, 16]}))
    assert "does not match its weights" in _assert_user_error(cli("sample", "--prior", edited, "-o", tmp_path / "s.png"))
    missing = tmp_path / "missing"
    shutil.copytree(ddpm_dir, missing)
    (weights,) = (missing / "unet").glob("*.safetensors")
    tensors = load_file(str(weights))
    tensors.pop("conv_in.bias")
    save_file(tensors, str(weights))
    line = _assert_user_error(cli("sample", "--prior", missing, "-o", tmp_path / "s.png"))
    assert "conv_in.bias" in line and "missing" in line
    vae = tmp_path / "vae"
    shutil.copytree(Path(restore.__file__).parent / "weights" / "vae-mnist", vae)
    run = json.loads((vae / "run.json").read_text())
    (vae / "run.json").write_text(json.dumps({**run, "latent_dim": -5}))
    assert "cannot build the model" in _assert_user_error(cli("sample", "--prior", vae, "-o", tmp_path / "s.png"))
    assert not (tmp_path / "s.png").exists()


def test_a_full_disk_leaves_no_output_and_one_line(cli, tmp_path, images, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(restore.io.json, "dumps", lambda *a, **k: "{}")  # the record is written last...
    monkeypatch.setattr(Path, "write_text", full)  # ...and the disk fills up while it is
    before = _listing(tmp_path)
    line = _assert_user_error(cli("denoise", images / "small.png", "--noise", "0.1", "--prior", "gaussian",
                                  "--samples", "2", "-o", tmp_path / "o.png"))
    assert "No space left on device" in line
    assert _listing(tmp_path) == before  # neither o.png nor the grid, std map or hidden temporary files
    line = _assert_user_error(cli("degrade", images / "small.png", "--task", "denoise", "-o", tmp_path / "y.png"))
    assert "No space left on device" in line and _listing(tmp_path) == before


def test_masks_follow_one_rule_transparent_is_missing(cli, tmp_path, images):
    clean = read_image(images / "small.png")[0]
    rgba = np.zeros((28, 28, 4), np.uint8)
    rgba[..., :3] = (clean[0, 0].numpy() * 255).astype(np.uint8)[..., None]
    rgba[..., 3] = 255
    rgba[2:6, 2:6, 3] = 0  # a transparent hole in the image
    Image.fromarray(rgba).save(tmp_path / "holes.png")
    mask = np.full((28, 28, 4), 255, np.uint8)
    mask[20:24, 20:24, 3] = 0  # a transparent hole in the mask: missing
    Image.fromarray(mask).save(tmp_path / "mask.png")
    _ok(cli("degrade", tmp_path / "holes.png", "--mask", tmp_path / "mask.png", "-o", tmp_path / "y.png"))
    from restore import measurement

    _, op, _ = measurement.load(tmp_path / "y.json")
    missing = op.mask[0] == 0
    assert missing[2:6, 2:6].all() and missing[20:24, 20:24].all() and int(missing.sum()) == 32
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(tmp_path / "white.png")
    line = _assert_user_error(cli("inpaint", images / "small.png", "--mask", tmp_path / "white.png", "-o", tmp_path / "o.png"))
    assert "nothing to inpaint" in line


def test_resize_keeps_the_holes_of_a_transparent_image(cli, tmp_path):
    rgba = np.zeros((60, 90, 4), np.uint8)
    rgba[..., :3] = np.random.default_rng(0).integers(0, 256, (60, 90, 3))
    rgba[..., 3] = 255
    rgba[20:30, 30:50, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "holes.png")
    result = json.loads(_ok(cli("inpaint", tmp_path / "holes.png", "--prior", "gaussian", "--resize", "--json",
                                "-o", tmp_path / "o.png")).out)
    assert result["image_shape"] == [1, 28, 28] and read_image(tmp_path / "o.png")[0].shape == (1, 1, 28, 28)


def test_messages_say_how_to_fix_the_input(cli, tmp_path, images, monkeypatch):
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")  # 144 megapixels in a few kilobytes
    Image.fromarray(np.zeros((8, 8), np.float32)).save(tmp_path / "float.tiff")
    Image.fromarray(np.zeros((1, 1), np.uint8)).save(tmp_path / "pixel.png")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "model.pt").write_bytes(b"\x80\x04")
    small = images / "small.png"
    cases = [
        (("denoise", tmp_path / "bomb.png", "--noise", "0.1"), "at most 89478485 pixels"),
        (("denoise", tmp_path / "float.tiff", "--noise", "0.1"), "save it as an 8- or 16-bit"),
        (("denoise", tmp_path / "pixel.png"), "pass --noise SIGMA"),
        (("deblur", tmp_path / "pixel.png"), "give a smaller SIZE"),
        (("denoise", tmp_path / "loop1", "--noise", "0.1"), "a loop of symbolic links"),
        (("denoise", small, "--noise", "0.1", "--prior", tmp_path / "pickled"), "pickled checkpoints (model.pt)"),
        (("denoise", small, "--noise", "0.1", "--prior", ""), "give a family name"),
    ]
    for args, expected in cases:
        line = _assert_user_error(cli(*args, "-o", tmp_path / "o.png"))
        assert expected in line, (args, line)
    import restore.priors

    def never(*args, **kwargs):
        raise AssertionError("the prior was loaded before the input was checked")

    monkeypatch.setattr(restore.priors, "load_prior", never)  # a missing input fails before the prior loads
    line = _assert_user_error(cli("denoise", tmp_path / "missing.png", "--prior", "ddpm", "-o", tmp_path / "o.png"))
    assert "does not exist" in line


def test_weights_holding_nan_are_refused_at_load(cli, tmp_path, ddpm_dir):
    from safetensors.torch import load_file, save_file

    diverged = tmp_path / "diverged"
    shutil.copytree(ddpm_dir, diverged)
    (weights,) = (diverged / "unet").glob("*.safetensors")
    tensors = load_file(str(weights))
    tensors["conv_out.bias"] = tensors["conv_out.bias"] * float("nan")
    save_file(tensors, str(weights))
    line = _assert_user_error(cli("sample", "--prior", diverged, "-o", tmp_path / "s.png"))
    assert "NaN or infinite" in line and "conv_out.bias" in line


def test_total_variation_on_an_image_one_pixel_wide(cli, tmp_path):
    for h, w in ((1, 20), (20, 1), (1, 1)):
        write_png(tmp_path / "thin.png", torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(0)))
        _ok(cli("denoise", tmp_path / "thin.png", "--noise", "0.1", "--solver", "tv", "-o", tmp_path / "o.png"))
        assert read_image(tmp_path / "o.png")[0].shape == (1, 1, h, w)


def test_threads_option_and_its_record(cli, tmp_path, images, monkeypatch):
    result = json.loads(_ok(cli("--threads", "1", "denoise", images / "small.png", "--noise", "0.1", "--json",
                                "-o", tmp_path / "o.png")).out)
    assert result["threads"] == 1 == torch.get_num_threads()
    monkeypatch.setenv("RESTORE_THREADS", "0")
    assert "Invalid value for '--threads'" in _assert_user_error(
        cli("denoise", images / "small.png", "--noise", "0.1", "-o", tmp_path / "o.png"))


def test_resize_reads_a_box_in_the_input_pixels_and_says_the_output_size(cli, tmp_path):
    from restore.cli import _load_measurement

    write_png(tmp_path / "wide.png", torch.rand(1, 1, 56, 112, generator=torch.Generator().manual_seed(0)))
    options = dict(box="56,28,28,14", random=None, mask=None, noise=None, poisson=None, seed=0)
    _, op, shape, _, _, _, _ = _load_measurement("inpaint", str(tmp_path / "wide.png"), None, options, target=(1, 28, 28))
    missing = (op.mask[0] == 0).nonzero()
    # x 56..84 of 112 -> 14..21 of 28; y 28..42 of 56 -> 14..21 of 28
    assert shape == (1, 28, 28) and missing[:, 0].min() == 14 and missing[:, 0].max() == 20
    assert missing[:, 1].min() == 14 and missing[:, 1].max() == 20
    line = _ok(cli("inpaint", tmp_path / "wide.png", "--box", "56,28,28,14", "--prior", "gaussian", "--resize",
                   "-o", tmp_path / "o.png")).out
    assert "28x28, resized from 112x56" in line
    assert json.loads((tmp_path / "o.json").read_text())["resized_from"] == [1, 56, 112]


def test_sigterm_while_writing_leaves_no_partial_output(cli, tmp_path, images, monkeypatch):
    """SIGTERM unwinds like Ctrl-C: the arrays already written and the temporary files are removed."""
    import signal

    save = restore.io.save_arrays

    def save_then_terminated(path, arrays):
        save(path, arrays)
        os.kill(os.getpid(), signal.SIGTERM)  # the handler restore installs raises here

    monkeypatch.setattr(restore.io, "save_arrays", save_then_terminated)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        before = _listing(tmp_path)
        result = cli("degrade", images / "small.png", "--task", "denoise", "-o", tmp_path / "y.png")
        assert result.code == 128 + signal.SIGTERM and "Traceback" not in result.err
        assert _listing(tmp_path) == before
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_spec_restores_only_under_its_own_task(cli, tmp_path, digit_specs):
    line = _assert_user_error(cli("denoise", digit_specs["deblur"], "-o", tmp_path / "o.png"))
    assert "describes a deblur measurement: run `restore deblur`" in line


def test_evaluate_draws_a_ddpm_of_fewer_than_50_timesteps_with_all_of_them(ddpm_dir):
    """draw_samples' 50 DDIM steps are capped at the prior's timesteps (a T = 20 model was refused)."""
    from restore.evaluate import draw_samples
    from restore.priors import load_prior

    prior = load_prior(str(ddpm_dir))
    assert prior.num_timesteps == 20
    x = draw_samples(prior, 3, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1
