"""The ``restore`` command line: degrade an image, restore it, compare with the truth.

Heavy libraries (torch, scikit-image) are imported inside the commands so that ``restore --help``
answers at once. Every user error is a :class:`RestoreError`: one line on stderr, exit code 2,
and no output file is left behind (outputs are checked first and written atomically).
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from .errors import RestoreError

app = typer.Typer(
    help="Image restoration with generative priors: degrade an image, then recover it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

TASKS = ("inpaint", "deblur", "superres", "denoise", "cs")


@app.callback()
def _root(threads: Annotated[Optional[int], typer.Option(
        "--threads", envvar="RESTORE_THREADS",
        help="CPU threads for torch (default: all cores, waiting passively, so a busy machine does not "
             "slow them down; see README).")] = None):
    """Image restoration with generative priors: degrade an image, then recover it."""
    import os

    if threads is not None:
        if threads < 1:
            raise RestoreError(f"--threads must be a positive integer, got {threads}")
        os.environ["OMP_NUM_THREADS"] = str(threads)  # read when torch is first imported
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)


def _threads() -> int:
    import torch

    return torch.get_num_threads()

#: Per-task default classical solver, chosen from benchmarks/classical.py (see README).
DEFAULT_SOLVER = {"inpaint": "biharmonic", "deblur": "richardson-lucy", "superres": "tv", "denoise": "tv", "cs": "tv"}

#: Per task, the diffusion solver, step count and hyperparameters used with a learned prior when
#: --solver is not given: the most accurate cell at <= 100 steps of the 100-image table with the
#: shipped DDPM (benchmarks/results/bench-diffusion/summary.md; README), over box and random
#: inpainting for inpaint. DPS's fidelity 2 on deblurring was chosen on held-out images
#: (benchmarks/solvers.py, TUNED). cs was not benchmarked; it keeps PiGDM, the most accurate against
#: the Gaussian reference's closed-form posterior (tests/test_diffusion_solvers.py).
DEFAULT_PRIOR_SOLVER = {"inpaint": ("dps", 100, {}), "deblur": ("dps", 100, {"fidelity": 2.0}),
                        "superres": ("dps", 100, {}), "denoise": ("ddnm", 20, {}), "cs": ("pigdm", 50, {})}

#: The same for a prior of photographs (any size), where one network evaluation of a 481x321 gray photo
#: takes about 1-3 s on a 2-core CPU: DPIR's plug-and-play splitting with the prior's Tweedie denoiser (8
#: evaluations, 24 for inpainting), and Tweedie's one-step posterior mean for denoising. Chosen on held-out
#: training photos (benchmarks/results/tune/photo.md): DPIR beat DDNM at 20 steps by 4.4 dB on 80% random
#: inpainting, DDRM and DiffPIR at 50 steps by 2.5 dB on Levin-kernel deblurring, and BM3D by 1.8 dB there.
DEFAULT_PHOTO_SOLVER = {"inpaint": ("dpir", 24, {}), "deblur": ("dpir", 8, {}), "superres": ("dpir", 8, {}),
                        "denoise": ("tweedie", None, {}), "cs": ("pigdm", 50, {})}

#: A Gaussian mixture of patches restores with its own algorithm, EPLL's half-quadratic splitting, and
#: the paper's schedule of beta for every task (restore.solvers.epll).
DEFAULT_PATCH_SOLVER = {task: ("epll", None, {}) for task in DEFAULT_PHOTO_SOLVER}

# Options shared by several commands.
Box = Annotated[Optional[str], typer.Option(help="Missing rectangle X,Y,W,H in pixels (inpainting).")]
Random = Annotated[Optional[float], typer.Option(help="Fraction of pixels missing at random, seeded (inpainting).")]
Mask = Annotated[Optional[str], typer.Option(help="Mask image: white = observed, black = missing (inpainting).")]
Kernel = Annotated[
    Optional[str],
    typer.Option(help="Blur kernel: gaussian:SIGMA[:SIZE], motion[:SIZE[:INTENSITY]], levin:N (the 8 camera-shake "
                      "kernels of Levin et al. 2009) or a kernel file (.npy, .safetensors, 8- or 16-bit .png)."),
]
Boundary = Annotated[
    Optional[str],
    typer.Option(help="Blur boundary: valid (a camera's blur: the scene beyond the frame is unknown, nothing wraps "
                      "around) or circular (periodic, as synthetic benchmarks blur). Default: valid for a photo, "
                      "circular for a prior of fixed-size images (the MNIST priors) and for `restore degrade`."),
]
Factor = Annotated[Optional[int], typer.Option(help="Downsampling factor (super-resolution).")]
Filter = Annotated[Optional[str], typer.Option(help="Downsampling filter: box (default) or bicubic.")]
Noise = Annotated[Optional[float], typer.Option(help="Standard deviation sigma_y of Gaussian noise on [0, 1] intensities.")]
Poisson = Annotated[Optional[float], typer.Option(help="Poisson noise with this gain (photons at intensity 1) instead of Gaussian.")]
Seed = Annotated[int, typer.Option(help="Seed of every random choice (mask, kernel, noise, solver).")]


def _parse_box(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise RestoreError(f"--box must be X,Y,W,H (four integers), got {text!r}") from None
    return x, y, w, h


def _noise(sigma: Optional[float], gain: Optional[float]):
    from .operators import GaussianNoise, PoissonNoise

    if sigma is not None and gain is not None:
        raise RestoreError("give either --noise (Gaussian) or --poisson (shot noise), not both")
    return PoissonNoise(gain) if gain is not None else GaussianNoise(sigma or 0.0)


def _kernel(text: str, seed: int, frame=None):
    """Build a Blur from the --kernel option text; a built kernel larger than ``frame`` (H, W) is refused
    before it is allocated."""
    from . import io
    from .operators import Blur

    name, *args = text.split(":")
    usage = f"--kernel {text!r}: expected gaussian:SIGMA[:SIZE], motion[:SIZE[:INTENSITY]], levin:N or a kernel file"
    # Parse first, then build: the operators' own RestoreErrors (a ValueError) keep their message.
    if name == "gaussian":
        try:
            if not 1 <= len(args) <= 2:
                raise ValueError
            sigma, size = float(args[0]), int(args[1]) if len(args) > 1 else None
        except ValueError:
            raise RestoreError(usage) from None
        if not math.isfinite(sigma) or (size is not None and size < 1):
            raise RestoreError(f"--kernel {text!r}: SIGMA must be a finite number and SIZE a positive integer")
        _check_kernel_size(text, size if size is not None else 2 * math.ceil(3 * abs(sigma)) + 1, frame)
        return Blur.gaussian(sigma, size)
    if name == "motion":
        try:
            if len(args) > 2:
                raise ValueError
            size = int(args[0]) if args else 61
            intensity = float(args[1]) if len(args) > 1 else 0.5
        except ValueError:
            raise RestoreError(usage) from None
        _check_kernel_size(text, size, frame)
        return Blur.motion(size, intensity, seed)
    if name == "levin":
        from .data import levin_kernel

        if len(args) != 1 or not args[0].isdigit():
            raise RestoreError(usage)
        return Blur(levin_kernel(int(args[0])), description={"kind": "levin", "index": int(args[0])})
    if not text:
        raise RestoreError(usage)
    path = Path(text)
    return Blur(io.read_kernel(path), description={"kind": "file", "path": str(path)})


def _check_kernel_size(text: str, size: int, frame) -> None:
    if frame is not None and size > max(frame):
        H, W = frame
        raise RestoreError(f"--kernel {text!r} makes a {size}x{size} kernel, larger than the {W}x{H} image: "
                           "give a smaller SIZE (or SIGMA)")


def _operator(task: str, image_shape, *, box=None, random=None, mask=None, alpha=None, kernel=None, factor=None,
              filter=None, noise=None, seed=0, measurements=None, for_degrade=False, boundary=None):
    """The operator described by command-line options, for clean images of shape image_shape (C, H, W);
    with a valid blur (``boundary`` "valid"), image_shape is the frame's, which the unknown x outgrows."""
    from . import io, operators as O

    chosen = [o for o in (box, random, mask) if o is not None]
    if task != "inpaint" and chosen:
        raise RestoreError(f"--box, --random and --mask are for inpainting, not {task}")
    if task != "deblur" and kernel is not None:
        raise RestoreError(f"--kernel is for deblurring, not {task}")
    if task != "deblur" and boundary is not None:
        raise RestoreError(f"--boundary is for deblurring, not {task}")
    if boundary not in (None, "circular", "valid"):
        raise RestoreError(f"--boundary must be valid or circular, got {boundary!r}")
    if task != "superres" and (factor is not None or filter is not None):
        raise RestoreError(f"--factor and --filter are for super-resolution, not {task}")
    if task != "cs" and measurements is not None:
        raise RestoreError(f"--measurements is for compressed sensing, not {task}")
    if task == "inpaint":
        if len(chosen) > 1:
            raise RestoreError("give only one of --box, --random and --mask")
        if box is not None:
            op = O.Inpainting.box(image_shape, *_parse_box(box))
        elif random is not None:
            op = O.Inpainting.random(image_shape, random, seed)
        elif mask is not None:
            pixels, mask_alpha = io.read_image(mask, mode="L")
            if tuple(pixels.shape[-2:]) != tuple(image_shape[-2:]):
                h, w = pixels.shape[-2:]
                raise RestoreError(f"the mask '{mask}' is {w}x{h} but the image is {image_shape[-1]}x{image_shape[-2]}")
            observed = pixels[0] > 0.5  # white = observed, black = missing
            if mask_alpha is not None:
                observed &= mask_alpha[0] > 0.5  # and transparent = missing, as in the image itself
            op = O.Inpainting(observed)
        elif alpha is not None:
            op = O.Inpainting(alpha[0] > 0.5)  # transparent = missing
        elif for_degrade:
            op = O.Inpainting.centre_box(image_shape, min(image_shape[-2:]) // 2)
        else:
            raise RestoreError(
                "this image has no alpha channel and no mask was given: erase the missing region to "
                "transparency in an image editor, or pass --mask m.png, --box X,Y,W,H or --random FRACTION"
            )
        if alpha is not None and chosen:
            # One rule: a transparent pixel of the image is missing, whatever option adds more holes.
            op = O.Inpainting(op.mask.bool() & (alpha[0] > 0.5))
        if not for_degrade and bool(op.mask.all()):
            raise RestoreError("nothing to inpaint: no pixel is missing (a mask is white where observed and black "
                               "or transparent where missing; an image's transparent pixels are missing)")
    elif task == "deblur":
        op = _kernel("gaussian:2" if kernel is None else kernel, seed, frame=tuple(image_shape[-2:]))
        op.check_input((1, *image_shape[-3:]))  # a kernel larger than the frame is refused either way
        if boundary == "valid":
            op = O.ValidBlur.of(op)
    elif task == "superres":
        op = O.Downsample(4 if factor is None else factor, filter or "box")
    elif task == "denoise":
        op = O.Denoising()
    else:
        n = 1
        for d in image_shape[-3:]:
            n *= d
        op = O.CompressedSensing(n // 4 if measurements is None else measurements, image_shape, seed)
    op.noise = noise
    if not (boundary == "valid" and not for_degrade):  # a valid blur's x is the frame grown by the kernel
        op.check_input((1, *image_shape[-3:]))
    _check_observed(op)
    return op


#: Facts about the last reference read, for the result JSON (the modcrop applied to it).
_NOTES: dict = {}


def _read_reference(reference: Optional[str], shape, op=None):
    """The clean reference image (1, C, H, W), or None; it must have the restored image's shape: that of x,
    or for a valid blur that of the frame (a reference shaped like x is cropped to the frame)."""
    _NOTES.clear()
    if reference is None:
        return None
    import torch

    from . import io
    from .operators import functional as Fn

    truth, _ = io.read_image(reference)
    k = getattr(op, "factor", 1)
    H, W = truth.shape[-2:]
    if k > 1 and tuple(shape[-2:]) == (H - H % k, W - W % k) and (H % k or W % k):
        truth = Fn.modcrop(truth, k)  # super-resolution's modcrop, as `restore degrade` crops
        _NOTES["reference_crop"] = {"modcrop": k, "from": [H, W], "to": list(truth.shape[-2:])}
    frame = tuple(op.field_of_view(torch.empty(1, *shape)).shape[1:]) if op is not None else tuple(shape)
    if tuple(truth.shape[1:]) == tuple(shape):
        return op.field_of_view(truth) if op is not None else truth
    if tuple(truth.shape[1:]) != frame:
        raise RestoreError(f"the reference is {tuple(truth.shape[1:])} (C, H, W) but the restored image will be {frame}")
    return truth


def _check_observed(op) -> None:
    """Refuse an inpainting mask with no observed pixel: there is nothing to restore from."""
    if hasattr(op, "mask") and not bool(op.mask.any()):
        raise RestoreError("the mask marks every pixel as missing: at least one pixel must be observed")


def _check_seed(seed: int) -> None:
    """Refuse a seed that torch or numpy would reject with a traceback."""
    if not 0 <= seed < 2**63:
        raise RestoreError(f"--seed must be an integer from 0 to 2**63 - 1, got {seed}")


def _output_check(path: str) -> Path:
    from . import io

    out = io.output_path_check(path)
    if out.suffix.lower() != ".png":
        raise RestoreError(f"the output must be a .png file, got '{out}'")
    return out


def _refuse_overwrite(outputs, inputs) -> None:
    """No command writes over a file it reads: each output is compared with each input file (an image,
    spec, mask, kernel or reference), as resolved paths and, where both exist, as the same file on disk
    (hard and symbolic links too)."""
    import os

    existing = [Path(i) for i in inputs if i is not None and Path(i).is_file()]
    for o in map(Path, outputs):
        for i in existing:
            same = os.path.samefile(o, i) if o.exists() else o.resolve() == i.resolve()
            if same:
                raise RestoreError(f"'{o}' would overwrite the input '{i}': choose another -o")


def _input_files(input, spec=None, reference=None, op_options=None) -> list:
    """The files a restoring command reads (an option naming a kernel such as levin:3 is no file)."""
    options = op_options or {}
    return [input, spec, reference, options.get("mask"), options.get("kernel")]


@app.command()
def degrade(
    image: Annotated[str, typer.Argument(help="Clean image (PNG, JPEG, 8- or 16-bit, gray or colour).")],
    output: Annotated[str, typer.Option("-o", "--output", help="Measurement preview .png; .json and float data go beside it.")],
    task: Annotated[str, typer.Option(help="inpaint, deblur, superres, denoise or cs.")] = "inpaint",
    box: Box = None,
    random: Random = None,
    mask: Mask = None,
    kernel: Kernel = None,
    boundary: Boundary = None,
    factor: Factor = None,
    filter: Filter = None,
    noise: Noise = None,
    poisson: Poisson = None,
    measurements: Annotated[Optional[int], typer.Option(help="Number m of Gaussian measurements (cs; default n/4).")] = None,
    seed: Seed = 0,
    float_format: Annotated[str, typer.Option(help="Float data file: safetensors or npy.")] = "safetensors",
):
    """Simulate a measurement y = noise(A(x)) of a clean image, at full precision."""
    import torch

    from . import io, measurement
    from .operators import functional as Fn

    if task not in TASKS:
        raise RestoreError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    _check_seed(seed)
    paths = measurement.paths_for(output, float_format)
    for p in paths.values():
        io.output_path_check(p)
    _refuse_overwrite(paths.values(), [image, mask, kernel])
    x, alpha = io.read_image(image)
    crop = None
    k = factor if factor is not None else 4
    if task == "superres" and k >= 1 and (x.shape[-2] % k or x.shape[-1] % k) and x.shape[-2] >= k and x.shape[-1] >= k:
        # The literature's protocol ("modcrop"): crop the image to a multiple of the factor, top-left kept.
        H, W = x.shape[-2:]
        x = Fn.modcrop(x, k)
        crop = {"modcrop": k, "from": [H, W], "to": list(x.shape[-2:])}
    if task == "denoise" and noise is None and poisson is None:
        noise = 0.1
    op = _operator(task, x.shape[1:], box=box, random=random, mask=mask, kernel=kernel, factor=factor, filter=filter,
                   alpha=alpha if task == "inpaint" else None,  # transparent pixels are missing, as everywhere
                   noise=_noise(noise, poisson), seed=seed, measurements=measurements, for_degrade=True,
                   boundary="circular" if task == "deblur" and boundary is None else boundary)
    y = op(x, generator=torch.Generator().manual_seed(seed))
    measurement.save(output, y, op, task=task, image_shape=x.shape[1:], seed=seed, source=image, float_format=float_format,
                     crop=crop)
    cropped = f"; the image was cropped from {crop['from'][1]}x{crop['from'][0]} to {crop['to'][1]}x{crop['to'][0]}, " \
              f"a multiple of the factor" if crop else ""
    typer.echo(f"wrote {paths['png']} (preview), {paths['json']} (spec) and {paths['data']} (float measurement){cropped}")


def _fit_to(y, alpha, target, task: str, factor: Optional[int]):
    """A plain damaged image (and its alpha) resized and converted to what a prior of images
    ``target`` (C, H, W) needs: bilinear (antialiased) for pixels, nearest for the alpha mask."""
    import torch

    C, H, W = target
    if task == "superres":
        k = 4 if factor is None else factor
        if H % k or W % k:
            raise RestoreError(f"--resize: the prior's {W}x{H} images are not divisible by the factor {k}")
        H, W = H // k, W // k
    if y.shape[1] == 3 and C == 1:
        y = (y * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif y.shape[1] == 1 and C == 3:
        y = y.repeat(1, 3, 1, 1)
    y = torch.nn.functional.interpolate(y, size=(H, W), mode="bilinear", antialias=True, align_corners=False)
    if alpha is not None:  # (1, 1, h, w) as io.read_image returns it
        alpha = torch.nn.functional.interpolate(alpha.float().reshape(1, 1, *alpha.shape[-2:]), size=(H, W),
                                                mode="nearest").reshape(*alpha.shape[:-2], H, W)
    return y.clamp(0, 1), alpha


def _load_measurement(task: str, input: str, spec: Optional[str], op_options: dict, target=None):
    """(y, operator, image_shape, source, notes) from a spec or from a plain image plus options.

    ``notes`` are messages for stderr, printed once every check has passed, so that a failing
    command prints its one error line only. ``target`` (C, H, W): resize a plain image to it.
    """
    from . import io, measurement

    path = Path(input)
    if path.suffix.lower() == ".json" or spec is not None:
        if any(v is not None for k, v in op_options.items() if k != "seed"):
            raise RestoreError("operator options cannot be combined with a measurement spec: the spec fixes the operator")
        if path.suffix.lower() == ".json" and spec is not None:
            raise RestoreError("give the measurement spec once: as the input or with --spec, not both")
        spec_path = path if path.suffix.lower() == ".json" else Path(spec)
        if target is not None:
            raise RestoreError("--resize works on plain images, not on a measurement spec (its operator fixes the size)")
        if not path.exists():
            raise RestoreError(f"input '{path}' does not exist")
        y, op, meta = measurement.load(spec_path)
        if meta["task"] not in TASKS:
            raise RestoreError(f"'{spec_path}' has an unknown task {meta['task']!r} (known: {', '.join(TASKS)})")
        if meta["task"] != task:
            raise RestoreError(f"'{spec_path}' describes a {meta['task']} measurement: run `restore {meta['task']}`")
        preview = meta.get("preview")
        if spec is not None and isinstance(preview, str) and (spec_path.parent / preview).resolve() != path.resolve():
            # `restore TASK y.png --spec y.json` reads y.json; another image would be silently ignored.
            raise RestoreError(f"'{path}' is not the preview of '{spec_path}' (that is '{spec_path.parent / preview}'): "
                               f"the spec holds the measurement, so pass it alone: restore {task} {spec_path}")
        _check_observed(op)
        return y, op, tuple(meta["image_shape"]), f"{spec_path} ({Path(spec_path).parent / meta['arrays']['y']})", []
    if path.suffix.lower() in (".npy", ".safetensors"):
        raise RestoreError(f"a float measurement '{path}' needs the JSON spec written beside it: pass --spec")
    if task == "cs":
        raise RestoreError("compressed-sensing measurements are vectors: pass the .json spec written by `restore degrade`")
    if path.is_dir():
        raise RestoreError(f"'{path}' is a directory: give one image file")
    y, alpha = io.read_image(path)
    if target is not None:
        h0, w0 = y.shape[-2:]
        y, alpha = _fit_to(y, alpha, target, task, op_options.get("factor"))
        h1, w1 = y.shape[-2:]
        if op_options.get("box") is not None:  # a box is given in the input's pixels: scale it with the image
            bx, by, bw, bh = _parse_box(op_options["box"])
            x0, y0 = round(bx * w1 / w0), round(by * h1 / h0)
            x1, y1 = max(x0 + 1, round((bx + bw) * w1 / w0)), max(y0 + 1, round((by + bh) * h1 / h0))
            op_options["box"] = f"{x0},{y0},{x1 - x0},{y1 - y0}"
    C, h, w = y.shape[1:]
    from .runtime import check_allocation

    if task == "superres":
        k = 4 if op_options["factor"] is None else op_options["factor"]
        shape = (C, h * k, w * k)
        # A solver holds a few dozen float copies of the restored image.
        check_allocation(C * h * k * w * k * 4 * 32, f"the {w * k}x{h * k} restored image (x{k})",
                         "use a smaller --factor, or a smaller input")
    else:
        shape = (C, h, w)
        check_allocation(C * h * w * 4 * 32, f"restoring a {w}x{h} image", "crop or tile the image first")
    noise_opts = (op_options.pop("noise"), op_options.pop("poisson"))
    notes = []
    if task == "denoise" and noise_opts == (None, None):
        from .operators.noise import estimate_sigma

        sigma = estimate_sigma(y)
        notes.append(f"estimated noise sigma_y = {sigma:.4f} (pass --noise to set it)")
        noise_opts = (sigma, None)
    op = _operator(task, shape, alpha=alpha, noise=_noise(*noise_opts), **op_options)
    shape = tuple(op.input_shape(tuple(y.shape))[1:])  # a valid blur's x is the frame grown by the kernel
    if task == "inpaint":
        y = op.mask * y
    return y, op, shape, str(path), notes


def _default_boundary(task: str, input: str, spec, op_options: dict, any_size: bool = True) -> None:
    """Fill in --boundary for a plain blurred image: valid (a camera's blur), but circular for a prior of
    fixed-size images, which cannot model the scene beyond the frame. A spec fixes its own boundary."""
    if task == "deblur" and op_options.get("boundary") is None and spec is None and not input.lower().endswith(".json"):
        op_options["boundary"] = "valid" if any_size else "circular"


#: Priors loaded by this process, so that a folder of images loads its prior once.
_PRIORS: dict = {}


def _load_prior_once(prior: str, dev, shape):
    """load_prior, remembered per (prior, device, shipped choice for the image shape, channels)."""
    from .priors import SHIPPED, load_prior, shipped_for

    key = (prior, str(dev), shipped_for(prior, shape) if prior in SHIPPED else None, shape and shape[0])
    if key not in _PRIORS:
        _PRIORS[key] = load_prior(prior, device=dev, image_shape=shape)
    return _PRIORS[key]


def _peek_shape(task: str, input: str, spec, op_options: dict):
    """(C, H, W) of the image to restore, read cheaply (a spec's JSON, an image's header) to choose the
    shipped prior; None when it cannot be read (the full read later gives the error)."""
    import json

    try:
        path = Path(spec) if spec is not None else Path(input)
        if path.suffix.lower() == ".json":
            shape = json.loads(path.read_text()).get("image_shape")
            return tuple(shape) if isinstance(shape, list) and len(shape) == 3 else None
        from PIL import Image

        from .data import _GRAY_MODES

        with Image.open(path) as im:
            w, h = im.size
            channels = 1 if im.mode in _GRAY_MODES else 3
    except (OSError, ValueError, AttributeError):
        return None
    k = (op_options.get("factor") or 4) if task == "superres" else 1
    return (channels, h * k, w * k)


def _run(task: str, input: str, output: str, spec, prior: str, solver: Optional[str], steps: Optional[int],
         reference: Optional[str], json_out: bool, device: str, seed: int, op_options: dict,
         learned: Optional[dict] = None):
    import torch

    from . import io, metrics
    from .solvers import CLASSICAL, check_compatible

    learned = dict(learned or {})
    force = learned.pop("force", False)
    if _COLLECTED is None:  # a new command, not the next image of a folder: load priors afresh
        _PRIORS.clear()
    if Path(input).is_dir():
        _run_folder(task, input, output, spec, prior, solver, steps, reference, json_out, device, seed, op_options,
                    learned, force)
        return
    out = _output_check(output)
    _check_seed(seed)
    if prior != "classical":
        _restore_with_prior(task, input, out, spec, prior, solver, steps, reference, json_out, device, seed,
                            op_options, **learned)
        return
    _refuse_overwrite([out], _input_files(input, spec, reference, op_options))
    if learned.get("samples", 1) != 1 or learned.get("params") or learned.get("resize") \
            or learned.get("precision", "fp32") != "fp32":
        raise RestoreError("--samples, --param, --resize and --precision are for learned priors (--prior ddpm, gaussian or a model)")
    _default_boundary(task, input, spec, op_options)
    y, op, shape, source, notes = _load_measurement(task, input, spec, op_options)
    name = solver or DEFAULT_SOLVER[task]
    if name not in CLASSICAL:
        raise RestoreError(f"unknown solver {name!r} for prior {prior!r}; known: {', '.join(CLASSICAL)}")
    fn = CLASSICAL[name]
    check_compatible(name, fn, op, CLASSICAL)
    truth = _read_reference(reference, shape, op)
    dev = _device(device)
    op = op.to(dev)
    y = y.to(dev)
    kwargs = {"generator": torch.Generator(device=dev).manual_seed(seed)}
    if steps is not None:
        # Iterative solvers have an integer default for steps; the others accept steps=None and ignore it.
        if not isinstance(_default_steps(fn), int):
            raise RestoreError(f"--steps is for iterative solvers (tv, richardson-lucy), not {name}")
        if steps < 1:
            raise RestoreError(f"--steps must be a positive integer, got {steps}")
        kwargs["steps"] = steps
    for note in notes:
        typer.echo(note, err=True)
    bar = _progress(fn, steps)
    t0 = time.perf_counter()
    x_hat = op.field_of_view(fn(y, op, None, callback=bar.update_to if bar else None, **kwargs))
    seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    io.write_png(out, x_hat.cpu())
    result = {"input": source, "output": str(out), "task": task, "prior": prior, "solver": name, "operator": op.spec(),
              "seconds": round(seconds, 3), "threads": _threads(), "image_shape": list(shape), "seed": seed}
    if truth is not None:
        result["psnr"] = float(metrics.psnr(x_hat.cpu(), truth)[0])
        result["ssim"] = float(metrics.ssim(x_hat.cpu(), truth)[0])
        result.update(_NOTES)
    _report(result, json_out, f"wrote {out} ({prior} / {name}, {seconds:.2f} s)")


#: While a folder is restored, each image's result is collected here instead of printed.
_COLLECTED: list | None = None


def _matching(folder: Path, rel: str, what: str) -> str:
    """The file of ``folder`` that goes with image ``rel``: the same relative path, any image extension."""
    from .io import IMAGE_EXTENSIONS

    stem = Path(rel).with_suffix("")
    for ext in IMAGE_EXTENSIONS:
        for candidate in (folder / stem.with_suffix(ext), folder / stem.with_suffix(ext.upper())):
            if candidate.is_file():
                return str(candidate)
    raise RestoreError(f"no {what} for '{rel}' in '{folder}' (expected '{stem}' with an image extension)")


def _run_folder(task, input, output, spec, prior, solver, steps, reference, json_out, device, seed, op_options,
                learned, force) -> None:
    """Restore every image under the folder ``input`` into the folder ``output`` (same relative paths, .png).

    A file that fails is reported and skipped; the rest still run, and the exit code is 2 if any failed.
    Images whose output exists are skipped unless ``force``. A mask or reference folder gives each image
    the file of the same relative name. Under torchrun, rank r takes every world-size-th file.
    """
    import json
    import os

    from tqdm.auto import tqdm

    from .data import image_files

    global _COLLECTED
    src, dst = Path(input), Path(output)
    if spec is not None:
        raise RestoreError("--spec describes one measurement; it cannot go with a folder of images")
    if dst.suffix.lower() in (".png", ".jpg", ".jpeg") or (dst.exists() and not dst.is_dir()):
        raise RestoreError(f"the input '{src}' is a folder, so -o must be a folder too, got '{dst}'")
    if not dst.resolve().parent.is_dir():
        raise RestoreError(f"cannot create the output folder '{dst}': '{dst.parent}' does not exist")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise RestoreError(f"the output folder '{dst}' is inside the input folder '{src}': choose another -o")
    folders = {"mask": op_options.get("mask"), "reference": reference}
    for what, folder in folders.items():
        if folder is not None and not Path(folder).is_dir():
            raise RestoreError(f"with a folder of images, --{what} must be a folder of {what}s named like the "
                               f"images, got '{folder}'")
    files = [rel for rel, _ in image_files(src)]
    if not files:
        raise RestoreError(f"no images in folder '{src}'")
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    mine = files[rank::world]
    dst.mkdir(exist_ok=True)
    log = dst / "results.jsonl"
    counts = {"restored": 0, "skipped": 0, "failed": 0}
    psnrs = []
    for rel in tqdm(mine, desc=f"{task} {src.name or src}", unit="image", disable=None):
        out = (dst / rel).with_suffix(".png")
        if out.exists() and not force:
            counts["skipped"] += 1
            continue
        record = {"file": rel}
        _COLLECTED = []
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            options = dict(op_options)
            if folders["mask"] is not None:
                options["mask"] = _matching(Path(folders["mask"]), rel, "mask")
            ref = _matching(Path(reference), rel, "reference") if reference is not None else None
            _run(task, str(src / rel), str(out), None, prior, solver, steps, ref, False, device, seed, options,
                 learned)
            record.update(_COLLECTED[0])
            counts["restored"] += 1
            if "psnr" in record:
                psnrs.append(record["psnr"])
        except RestoreError as exc:
            record["error"] = str(exc)
            counts["failed"] += 1
            tqdm.write(f"skipped {src / rel}: {exc}", file=sys.stderr)
        finally:
            _COLLECTED = None
        with open(log, "a") as f:  # one short line per append: ranks can share the file
            f.write(json.dumps(record) + "\n")
    summary = {"input": str(src), "output": str(dst), "images": len(mine), **counts, "results": str(log)}
    if psnrs:
        summary.update(mean_psnr=float(sum(psnrs) / len(psnrs)))
    line = (f"{dst}: restored {counts['restored']} of {len(mine)} images"
            + (f", {counts['skipped']} already done (--force redoes them)" if counts["skipped"] else "")
            + (f", mean PSNR {summary['mean_psnr']:.2f} dB" if psnrs else "") + f"; per image: {log}")
    typer.echo(json.dumps(summary) if json_out else line)
    if counts["failed"]:
        raise RestoreError(f"{counts['failed']} of {len(mine)} images failed (see {log})")


def _report(result: dict, json_out: bool, line: str) -> None:
    """Print the result as JSON, or as one line (with PSNR and SSIM when a reference was given)."""
    if _COLLECTED is not None:
        _COLLECTED.append(result)
        return
    if json_out:
        import json

        typer.echo(json.dumps(result))
        return
    if "psnr" in result:
        line += f"  PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.4f}"
    typer.echo(line)


def _parse_params(params: list[str], fn) -> dict:
    """--param KEY=VALUE options, typed by the solver's own keyword defaults."""
    import inspect

    signature = inspect.signature(fn).parameters
    defaults = {k: p.default for k, p in signature.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in ("steps", "generator", "callback")}
    out = {}
    for text in params:
        key, sep, value = text.partition("=")
        if not sep or key not in defaults:
            raise RestoreError(f"--param {text!r}: expected KEY=VALUE with KEY one of {', '.join(defaults)} "
                               f"({fn.__name__}'s hyperparameters)")
        # A default of None (chosen by the solver, e.g. from the step count) takes its annotated type.
        kind = type(defaults[key]) if defaults[key] is not None else (
            int if str(signature[key].annotation).startswith("int") else float)
        try:
            out[key] = kind(value)
        except ValueError:
            raise RestoreError(f"--param {text!r}: {key} takes a {kind.__name__}") from None
        if isinstance(out[key], float) and not math.isfinite(out[key]):
            raise RestoreError(f"--param {text!r}: {key} must be finite")
    from .solvers.base import check_hyperparameters

    check_hyperparameters(fn, out)
    return {**defaults, **out}


def _restore_with_prior(task, input, out, spec, prior, solver, steps, reference, json_out, device, seed, op_options,
                        *, samples: int = 1, estimate: str = "mean", params=(), resize: bool = False,
                        precision: str = "fp32"):
    """Restore with a learned prior and a diffusion solver: estimate, sample grid, std map and a JSON record."""
    import torch

    from . import io, metrics
    from .solvers import PRIOR_SOLVERS, check_compatible, solvers_for
    from .solvers.counting import CountingPrior

    if samples < 1:
        raise RestoreError(f"--samples must be a positive integer, got {samples}")
    if estimate not in ("mean", "sample"):
        raise RestoreError(f"--estimate must be mean or sample, got {estimate!r}")
    if precision not in ("fp32", "bf16"):
        raise RestoreError(f"--precision must be fp32 or bf16, got {precision!r}")
    stem = out.with_suffix("")
    paths = {"samples": Path(f"{stem}.samples.png"), "std": Path(f"{stem}.std.png"), "json": Path(f"{stem}.json")}
    for p in (out, *paths.values()):
        io.output_path_check(p)
    _refuse_overwrite([out, *paths.values()], _input_files(input, spec, reference, op_options))
    # Before the prior loads (seconds): a mistyped name, broken link or link loop fails at once.
    io._check_input_file(Path(input), "measurement spec" if input.lower().endswith(".json") else "image")
    dev = _device(device)
    model = _load_prior_once(prior, dev, _peek_shape(task, input, spec, op_options))
    if precision == "bf16":
        if not hasattr(model, "with_autocast"):
            raise RestoreError(f"--precision bf16 is for DDPM priors; the {model.family} prior runs in float32")
        model = model.with_autocast(torch.bfloat16)
    usable = {n: PRIOR_SOLVERS[n] for n in solvers_for(model)}
    # The per-task default where the prior can use it (a diffusion prior), else its first solver (csgm).
    any_size = getattr(model, "any_size", False)
    defaults = (DEFAULT_PATCH_SOLVER if "epll" in usable else DEFAULT_PHOTO_SOLVER if any_size
                else DEFAULT_PRIOR_SOLVER)
    default_name, default_steps, default_params = defaults[task]
    name = solver or (default_name if default_name in usable else next(iter(usable), "none"))
    if name not in PRIOR_SOLVERS:
        raise RestoreError(f"unknown solver {name!r} for a learned prior; known: {', '.join(PRIOR_SOLVERS)}")
    if name not in usable:
        raise RestoreError(f"solver {name!r} cannot use the {model.family} prior; solvers that can: {', '.join(usable) or 'none'}")
    fn = usable[name]
    # The default solver comes with its per-task hyperparameters; a --param of the same name wins.
    chosen = solver is None and name == default_name
    hyper = _parse_params([*(f"{k}={v}" for k, v in default_params.items() if chosen), *params], fn)
    if resize and any_size:
        raise RestoreError(f"--resize is for priors of fixed-size images; {prior!r} restores images of any size")
    _default_boundary(task, input, spec, op_options, any_size=any_size)
    y, op, shape, source, notes = _load_measurement(task, input, spec, op_options,
                                                    target=model.image_shape if resize else None)
    check_compatible(name, fn, op, usable)
    if getattr(model, "channel_groups", 1) > 1:  # fitted by load_prior: a gray photo prior on a colour photo
        notes.append(f"the prior {prior!r} models gray images: restoring R, G and B each as a gray image")
    if not any_size and tuple(shape) != tuple(model.image_shape):
        have, want = "x".join(map(str, shape)), "x".join(map(str, model.image_shape))
        hint = " (pass --resize to fit a plain image to the prior)" if spec is None and not input.endswith(".json") else ""
        raise RestoreError(f"the image is {have} (CxHxW) but the prior {prior!r} models {want} images{hint}")
    truth = _read_reference(reference, shape, op)
    most = getattr(model, "num_timesteps", None)  # a diffusion prior cannot take more steps than it has timesteps
    if steps is None:
        steps = default_steps if chosen else _default_steps(fn)
        if steps is not None and most is not None:
            steps = min(steps, most)  # a default step count fits a model trained with fewer timesteps
    elif _default_steps(fn) is None and "steps" not in getattr(fn, "ranges", {}):  # not EPLL's schedule length
        raise RestoreError(f"--steps is not used by the {name} solver")
    if steps is not None and (steps < 1 or (most is not None and steps > most)):
        raise RestoreError(f"--steps must be between 1 and {most} for this prior, got {steps}" if most
                           else f"--steps must be a positive integer, got {steps}")
    for note in notes:
        typer.echo(note, err=True)
    from tqdm.auto import tqdm

    # Progress: what the solver declares (RePaint's jumps, EPLL's betas, a PixelCNN's rows), else the steps.
    total = (fn.progress_total(y, op, steps, hyper) if hasattr(fn, "progress_total")
             else steps if steps is not None else 1)
    from .runtime import check_allocation

    values = math.prod(shape)
    check_allocation(samples * values * 4 * 3, f"{samples} samples of a {'x'.join(map(str, shape))} image",
                     "pass fewer --samples")
    # Samples are drawn in batches of at most 2**18 values (334 digits, one photo), which bounds the
    # network's activations; one generator runs through the batches, so the draw is reproducible.
    per_batch = max(1, min(samples, (1 << 18) // values))
    batches = math.ceil(samples / per_batch)
    bar = tqdm(total=total * batches, desc=f"{name} ({samples} sample{'s' * (samples > 1)})", unit="step",
               disable=None, leave=False)
    counted = CountingPrior(model)
    op, y = op.to(dev), y.to(dev)
    generator = torch.Generator(device=dev).manual_seed(seed)
    t0 = time.perf_counter()
    parts = []
    for start in range(0, samples, per_batch):
        n = min(per_batch, samples - start)
        parts.append(fn(y.repeat(n, *[1] * (y.dim() - 1)), op, counted, steps=steps, generator=generator,
                        callback=lambda info: bar.update(1), **hyper).detach())
    x = op.field_of_view(torch.cat(parts)).cpu()  # (samples, C, H, W): the frame only, for a valid blur
    seconds = time.perf_counter() - t0
    bar.close()
    x_hat = (x.mean(0, keepdim=True) if estimate == "mean" else x[:1]).clamp(0, 1)
    result = {"input": source, "output": str(out), "task": task, "prior": prior, "prior_family": model.family,
              "solver": name, "steps": steps, "hyperparameters": hyper, "samples": samples, "estimate": estimate,
              "operator": op.spec(), "seconds": round(seconds, 3), "threads": _threads(), "nfe": counted.calls,
              "image_shape": list(shape),
              "seed": seed, "device": str(dev), "resize": resize, "precision": precision}
    if getattr(model, "channel_groups", 1) > 1:
        result["channelwise"] = True  # a gray prior applied to each colour channel
    if samples > 1:
        std = x.std(0, keepdim=True)
        result.update(sample_grid=str(paths["samples"]), std_map=str(paths["std"]), std_map_scale=4.0,
                      mean_std=float(std.mean()))
    if truth is not None:
        result["psnr"] = float(metrics.psnr(x_hat, truth)[0])
        result["ssim"] = float(metrics.ssim(x_hat, truth)[0])
        result.update(_NOTES)
        if samples > 1:
            result["psnr_one_sample"] = float(metrics.psnr(x[:1].clamp(0, 1), truth)[0])
    size_note = ""
    if resize:  # say that the output is the prior's size, not the input's
        before = _peek_shape(task, input, None, {"factor": op_options.get("factor")})
        size_note = f"{shape[2]}x{shape[1]}, resized from {before[2]}x{before[1]}; " if before else ""
        result["resized_from"] = list(before) if before else None
    with io.together():  # the estimate, grid, std map and record land together or not at all
        io.write_png(out, x_hat)
        if samples > 1:
            io.write_grid(paths["samples"], x.clamp(0, 1))
            io.write_png(paths["std"], (4 * std.mean(1, keepdim=True)).clamp(0, 1))  # white = std 0.25 or more
        io.write_json(paths["json"], result)
    plural = "s" * (samples > 1)
    stepped = f"{steps} steps, " if steps is not None else ""
    _report(result, json_out, f"wrote {out} ({size_note}{prior} / {name}, {stepped}{samples} sample{plural}, {seconds:.2f} s)")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise RestoreError(f"--device must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise RestoreError("--device cuda was asked for, but no CUDA GPU is available")
    return torch.device(name)


def _default_steps(fn):
    """The default of a solver's ``steps`` argument: an int for iterative solvers, else None."""
    import inspect

    parameter = inspect.signature(fn).parameters.get("steps")
    return parameter.default if parameter is not None else None


def _progress(fn, steps):
    """A progress bar over an iterative solver's steps (on a terminal only), or None."""
    from tqdm.auto import tqdm

    total = steps or _default_steps(fn)
    if not isinstance(total, int):
        return None
    bar = tqdm(total=total, desc=fn.__name__, unit="step", disable=None, leave=False)
    bar.update_to = lambda info: bar.update(info["i"] + 1 - bar.n)
    return bar


# The restore commands share their options; each task adds its operator options.
Input = Annotated[str, typer.Argument(help="Damaged image (PNG/JPEG), a folder of them, or a measurement spec .json from `restore degrade`.")]
Output = Annotated[str, typer.Option("-o", "--output", help="Restored image (.png), or a folder for a folder of images.")]
Spec = Annotated[Optional[str], typer.Option(help="Measurement spec .json (full-precision y and exact operator).")]
Prior = Annotated[str, typer.Option(help="classical (no learned prior), a family (ddpm, gaussian, ...: its shipped default), a model folder or a hub id.")]
Samples = Annotated[int, typer.Option(help="Posterior samples to draw (learned priors); beside -o: a grid and a std map.")]
Estimate = Annotated[str, typer.Option(help="What -o holds: mean (of the samples) or sample (the first one).")]
Param = Annotated[Optional[list[str]], typer.Option("--param", help="Solver hyperparameter KEY=VALUE (repeatable), e.g. fidelity=2.")]
Resize = Annotated[bool, typer.Option("--resize", help="Fit a plain image's size and channels to the prior's.")]
Precision = Annotated[str, typer.Option(help="Learned priors: fp32, or bf16 to run the network under bfloat16 autocast "
                                             "(about 2x faster on CPUs with AVX-512 BF16, slower on others).")]
Solver = Annotated[Optional[str], typer.Option(help="Solver; default per task (see README).")]
Steps = Annotated[Optional[int], typer.Option(help="Iterations of an iterative solver, or diffusion steps.")]
Reference = Annotated[Optional[str], typer.Option(help="Clean image: print PSNR and SSIM against it.")]
Json = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result.")]
Force = Annotated[bool, typer.Option("--force", help="Folders: restore images whose output already exists, too.")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]


@app.command()
def inpaint(input: Input, output: Output = "restored.png", box: Box = None, random: Random = None, mask: Mask = None,
            noise: Noise = None, poisson: Poisson = None, spec: Spec = None, prior: Prior = "classical",
            solver: Solver = None, steps: Steps = None, reference: Reference = None, json: Json = False,
            device: Device = "auto", seed: Seed = 0,
        samples: Samples = 1, estimate: Estimate = "mean", param: Param = None, resize: Resize = False, force: Force = False,
        precision: Precision = "fp32"):
    """Fill in missing pixels. Without --box/--random/--mask, transparent pixels are the missing ones."""
    _run("inpaint", input, output, spec, prior, solver, steps, reference, json, device, seed,
         dict(box=box, random=random, mask=mask, noise=noise, poisson=poisson, seed=seed),
         dict(samples=samples, estimate=estimate, params=param or (), resize=resize, force=force,
              precision=precision))


@app.command()
def deblur(input: Input, output: Output = "restored.png", kernel: Kernel = None, boundary: Boundary = None,
           noise: Noise = None, poisson: Poisson = None, spec: Spec = None, prior: Prior = "classical",
           solver: Solver = None, steps: Steps = None, reference: Reference = None, json: Json = False,
           device: Device = "auto", seed: Seed = 0,
        samples: Samples = 1, estimate: Estimate = "mean", param: Param = None, resize: Resize = False, force: Force = False,
        precision: Precision = "fp32"):
    """Remove blur by a known kernel (default gaussian:2), with no wrap-around at the borders of a photo."""
    _run("deblur", input, output, spec, prior, solver, steps, reference, json, device, seed,
         dict(kernel=kernel, boundary=boundary, noise=noise, poisson=poisson, seed=seed),
         dict(samples=samples, estimate=estimate, params=param or (), resize=resize, force=force,
              precision=precision))


@app.command()
def superres(input: Input, output: Output = "restored.png", factor: Factor = None, filter: Filter = None,
             noise: Noise = None, poisson: Poisson = None, spec: Spec = None, prior: Prior = "classical",
             solver: Solver = None, steps: Steps = None, reference: Reference = None, json: Json = False,
             device: Device = "auto", seed: Seed = 0,
        samples: Samples = 1, estimate: Estimate = "mean", param: Param = None, resize: Resize = False, force: Force = False,
        precision: Precision = "fp32"):
    """Upsample a low-resolution image by --factor (default 4)."""
    _run("superres", input, output, spec, prior, solver, steps, reference, json, device, seed,
         dict(factor=factor, filter=filter, noise=noise, poisson=poisson, seed=seed),
         dict(samples=samples, estimate=estimate, params=param or (), resize=resize, force=force,
              precision=precision))


@app.command()
def denoise(input: Input, output: Output = "restored.png", noise: Noise = None, poisson: Poisson = None,
            spec: Spec = None, prior: Prior = "classical", solver: Solver = None, steps: Steps = None,
            reference: Reference = None, json: Json = False, device: Device = "auto", seed: Seed = 0,
        samples: Samples = 1, estimate: Estimate = "mean", param: Param = None, resize: Resize = False, force: Force = False,
        precision: Precision = "fp32"):
    """Remove noise; without --noise, sigma_y is estimated from the image."""
    _run("denoise", input, output, spec, prior, solver, steps, reference, json, device, seed,
         dict(noise=noise, poisson=poisson, seed=seed),
         dict(samples=samples, estimate=estimate, params=param or (), resize=resize, force=force,
              precision=precision))


@app.command()
def cs(input: Input, output: Output = "restored.png", spec: Spec = None, prior: Prior = "classical",
       solver: Solver = None, steps: Steps = None, reference: Reference = None, json: Json = False,
       device: Device = "auto", seed: Seed = 0,
        samples: Samples = 1, estimate: Estimate = "mean", param: Param = None, resize: Resize = False, precision: Precision = "fp32"):
    """Recover an image from compressed-sensing measurements (the .json written by `restore degrade --task cs`)."""
    _run("cs", input, output, spec, prior, solver, steps, reference, json, device, seed, dict(seed=seed),
         dict(samples=samples, estimate=estimate, params=param or (), resize=resize, precision=precision))


@app.command()
def train(
    family: Annotated[str, typer.Argument(help="Prior family to train: ddpm, gaussian, gmm, vae, gan, flow or pixelcnn.")],
    data: Annotated[str, typer.Option(help="mnist, fashion-mnist, a photo set (train400, bsds400, set12, bsd68, cbsd68) or a folder of images (searched recursively).")],
    out: Annotated[str, typer.Option(help="Run folder: checkpoints, log.jsonl, sample grids and the exported model.")],
    size: Annotated[Optional[int], typer.Option(help="Image size (default: the data's own: 28 for MNIST, the shared shorter side of a folder's images; images of several sizes need --size or --patch).")] = None,
    channels: Annotated[Optional[int], typer.Option(help="1 or 3 to convert every image (default: as stored).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Base channel count of the network (default: 32; gan, pixelcnn 64; flow 128).")] = None,
    schedule: Annotated[str, typer.Option(help="Beta schedule: linear or cosine.")] = "linear",
    timesteps: Annotated[int, typer.Option(help="Diffusion timesteps T of the schedule.")] = 1000,
    steps: Annotated[Optional[int], typer.Option(help="Optimiser steps in total (a resumed run continues to this; default 10000); gmm: EM iterations (default 30).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step, over all processes (default: 128; gan, flow, pixelcnn 64).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (default: ddpm 2e-4; vae, pixelcnn 1e-3; flow 5e-4 after a 500-step warm-up; gan 2e-4, wgan-gp 1e-4).")] = None,
    ema: Annotated[float, typer.Option(help="EMA decay of the exported weights.")] = 0.999,
    max_minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget; checkpoints and stops when spent.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 500,
    sample_every: Annotated[int, typer.Option(help="Steps between sample grids.")] = 1000,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the checkpoint in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the training run or model in --out (a non-empty --out is refused without it).")] = False,
    device: Device = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), fp32 or bf16 (autocast).")] = "auto",
    flip: Annotated[bool, typer.Option("--flip", help="Mirror training images left-right at random (not for digits).")] = False,
    rank: Annotated[int, typer.Option(help="gaussian: number of principal directions kept (the rest is diagonal).")] = 64,
    init: Annotated[Optional[str], typer.Option(help="ddpm: start from this model (a --prior value) instead of random weights.")] = None,
    patch: Annotated[Optional[int], typer.Option(help="ddpm: train on random PATCH x PATCH crops of whole photographs (flipped and turned), with a fully convolutional UNet that runs on any image size; gmm: the patch size (default 8).")] = None,
    components: Annotated[int, typer.Option(help="gmm: Gaussian components of the mixture.")] = 200,
    patch_count: Annotated[int, typer.Option(help="gmm: random patches (flipped and turned) that EM fits.")] = 400_000,
    latent_dim: Annotated[Optional[int], typer.Option(help="vae, gan: dimension of the latent z (default: vae 16, gan 100).")] = None,
    beta: Annotated[float, typer.Option(help="vae: weight of the KL term (1 is the ELBO).")] = 1.0,
    kl_warmup: Annotated[int, typer.Option(help="vae: steps over which the KL weight ramps up from 0 (0: none).")] = 0,
    loss: Annotated[str, typer.Option(help="gan: ns (non-saturating, DCGAN) or wgan-gp.")] = "ns",
    n_critic: Annotated[Optional[int], typer.Option(help="gan: discriminator steps per generator step (default: ns 1, wgan-gp 5).")] = None,
    levels: Annotated[int, typer.Option(help="flow: multi-scale levels (squeeze, steps, split).")] = 2,
    depth: Annotated[Optional[int], typer.Option(help="flow: steps of flow per level (default 8); gan: 3x3 convolutions added at each resolution of the generator (default 0).")] = None,
    fc: Annotated[int, typer.Option(help="gan: units of a fully connected layer added to generator and discriminator (InfoGAN's MNIST networks: 1024; default 0, none).")] = 0,
    minibatch_std: Annotated[bool, typer.Option("--minibatch-std", help="gan: give the discriminator the spread of each batch (Karras et al. 2018), against mode dropping.")] = False,
    pack: Annotated[int, typer.Option(help="gan: images the discriminator judges together (PacGAN, Lin et al. 2018), against mode dropping.")] = 1,
    spectral_norm: Annotated[bool, typer.Option("--spectral-norm", help="gan: spectral normalisation instead of batch norm in the discriminator (Miyato et al. 2018).")] = False,
    coupling: Annotated[str, typer.Option(help="flow: affine or additive coupling.")] = "affine",
    layers: Annotated[int, typer.Option(help="pixelcnn: gated layers.")] = 8,
    kernel: Annotated[int, typer.Option(help="pixelcnn: kernel size (odd).")] = 5,
    data_root: Annotated[Optional[str], typer.Option(help="Where MNIST/Fashion-MNIST are (or are downloaded to; default $RESTORE_DATA).")] = None,
    seed: Seed = 0,
):
    """Train a prior on a dataset (ddpm, vae and gan run under torchrun for several processes; gaussian fits in seconds)."""
    trainable = ("ddpm", "gaussian", "gmm", "vae", "gan", "flow", "pixelcnn")
    if family not in trainable:
        raise RestoreError(f"training {family!r} is not available yet; trainable families: {', '.join(trainable)}")
    _check_seed(seed)
    if patch is not None and family not in ("ddpm", "gmm"):
        raise RestoreError(f"--patch is a ddpm and gmm option (patch priors); {family} trains on whole images")
    if patch is not None and patch < (2 if family == "gmm" else 8):
        raise RestoreError(f"--patch must be at least {2 if family == 'gmm' else 8}, got {patch}")
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        raise RestoreError(f"--max-minutes must be a positive number of minutes, got {max_minutes}")
    if resume and overwrite:
        raise RestoreError("--resume continues the run in --out and --overwrite replaces it: give one")
    import os

    if int(os.environ.get("RANK", "0")) == 0:  # the other processes of a torchrun job see rank 0's folder
        from .training import claim_run_folder

        claim_run_folder(out, resume=resume, overwrite=overwrite)
    if family == "gaussian":
        from .priors.gaussian import train_gaussian

        if not 1 <= rank:
            raise RestoreError(f"--rank must be a positive integer, got {rank}")
        summary = train_gaussian(data=data, out=out, size=size, channels=channels, rank=rank, seed=seed,
                                 data_root=data_root)
        typer.echo(f"{out}: Gaussian prior of rank {rank} fitted to {summary['train_images']} images in "
                   f"{summary['seconds']:.1f} s" + (f", validation {summary['val_bits_per_dim']:.3f} bits/dim"
                                                    if "val_bits_per_dim" in summary else ""))
        return
    if family == "gmm":
        from .priors.gmm import train_gmm

        if data in ("mnist", "fashion-mnist"):
            raise RestoreError(f"gmm fits patches of photographs: give a photo set (train400, bsds400) or a folder of "
                               f"images, not {data}")
        for name, value in (("--steps", steps), ("--components", components), ("--patch-count", patch_count)):
            if value is not None and value < 1:
                raise RestoreError(f"{name} must be a positive integer, got {value}")
        train_gmm(data=data, out=out, patch=patch or 8, components=components, patches=patch_count,
                  iterations=steps or 30, channels=channels, seed=seed, max_minutes=max_minutes, resume=resume,
                  data_root=data_root, log=typer.echo)
        return
    steps = 10000 if steps is None else steps
    for name, value in (("--steps", steps), ("--batch-size", batch_size), ("--width", width), ("--timesteps", timesteps),
                        ("--checkpoint-every", checkpoint_every), ("--sample-every", sample_every),
                        ("--latent-dim", latent_dim), ("--n-critic", n_critic), ("--levels", levels),
                        ("--depth", None if family == "gan" else depth), ("--layers", layers)):
        if value is not None and value < 1:
            raise RestoreError(f"{name} must be a positive integer, got {value}")
    if lr is not None and not (math.isfinite(lr) and lr > 0) or not 0 <= ema < 1:
        raise RestoreError(f"--lr must be positive and --ema in [0, 1), got {lr} and {ema}")
    if not (math.isfinite(beta) and beta >= 0) or kl_warmup < 0:
        raise RestoreError(f"--beta and --kl-warmup must be non-negative, got {beta} and {kl_warmup}")
    common = dict(data=data, out=out, size=size, channels=channels, steps=steps, ema_decay=ema, seed=seed,
                  max_minutes=max_minutes, checkpoint_every=checkpoint_every, sample_every=sample_every, resume=resume,
                  device=device, precision=precision, flip=flip, data_root=data_root)
    # Options left unset take each family's own default (the train_* signatures): one place for them.
    common.update({k: v for k, v in (("batch_size", batch_size), ("lr", lr)) if v is not None})
    net = {"hidden" if family == "flow" else "width": width} if width is not None else {}
    latent = {"latent_dim": latent_dim} if latent_dim is not None else {}
    if family == "vae":
        from .priors.vae import train_vae

        summary = train_vae(**common, **net, **latent, beta=beta, kl_warmup=kl_warmup, val_every=checkpoint_every)
    elif family == "gan":
        from .priors.gan import train_gan

        # train_gan refuses a negative --depth or --fc and a --pack that does not divide the batch.
        summary = train_gan(**common, **net, **latent, depth=depth or 0, fc=fc, minibatch_std=minibatch_std, pack=pack,
                            spectral=spectral_norm, loss=loss, n_critic=n_critic)
    elif family == "flow":
        from .priors.flow import train_flow

        summary = train_flow(**common, **net, levels=levels, depth=8 if depth is None else depth, coupling=coupling, val_every=checkpoint_every)
    elif family == "pixelcnn":
        from .priors.pixelcnn import train_pixelcnn

        summary = train_pixelcnn(**common, **net, layers=layers, kernel=kernel, val_every=checkpoint_every)
    else:
        from .priors.ddpm import train_ddpm

        summary = train_ddpm(**common, **net, schedule=schedule, timesteps=timesteps, val_every=checkpoint_every,
                             init=init, patch=patch)
    if int(os.environ.get("RANK", "0")) == 0:
        state = ("finished" if summary["finished"] else
                 f"stopped by {summary['interrupted_by']} (continue with --resume)" if summary.get("interrupted_by")
                 else "stopped by the time budget (continue with --resume)")
        typer.echo(f"{out}: step {summary['step']}, {state}, {summary['minutes']:.1f} min")


PriorSpec = Annotated[str, typer.Option(help="A family name (its shipped default), a model folder or a hub id (owner/name).")]


@app.command()
def sample(
    prior: PriorSpec = "ddpm",
    n: Annotated[int, typer.Option("-n", help="Number of samples.")] = 64,
    output: Annotated[str, typer.Option("-o", "--output", help="Grid of the samples (.png).")] = "samples.png",
    method: Annotated[Optional[str], typer.Option(help="ancestral (Algorithm 2 of Ho et al.), ddim (Song et al. 2021), or exact (gaussian, and gmm patches; their default).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps (default: every timestep for ancestral, 50 for ddim).")] = None,
    variance: Annotated[str, typer.Option(help="Ancestral variance sigma_t^2: beta_tilde (default) or beta.")] = "beta_tilde",
    eta: Annotated[float, typer.Option(help="DDIM noise scale: 0 is deterministic, 1 is ancestral-like.")] = 0.0,
    nrow: Annotated[Optional[int], typer.Option(help="Images per grid row (default about sqrt(n)).")] = None,
    truncation: Annotated[Optional[float], typer.Option(help="vae, gan, flow: redraw latent entries with |z| > this (the truncation trick).")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="flow: scale of the latent draws (Glow's temperature; default 1).")] = None,
    json: Json = False,
    device: Device = "auto",
    seed: Seed = 0,
):
    """Draw samples from a prior and write them as one grid image."""
    import torch

    from . import io
    from .priors import load_prior

    out = _output_check(output)
    _check_seed(seed)
    if n < 1:
        raise RestoreError(f"-n must be a positive integer, got {n}")
    if method not in (None, "ancestral", "ddim", "exact"):
        raise RestoreError(f"--method must be ancestral, ddim or exact, got {method!r}")
    if variance not in ("beta_tilde", "beta"):
        raise RestoreError(f"--variance must be beta_tilde or beta, got {variance!r}")
    if not (math.isfinite(eta) and eta >= 0):
        raise RestoreError(f"--eta must be a non-negative number, got {eta}")
    if nrow is not None and nrow < 1:
        raise RestoreError(f"--nrow must be a positive integer, got {nrow}")
    if truncation is not None and not (math.isfinite(truncation) and truncation > 0):
        raise RestoreError(f"--truncation must be a positive number, got {truncation}")
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise RestoreError(f"--temperature must be a non-negative number, got {temperature}")
    dev = _device(device)
    model = load_prior(prior, device=dev)
    if temperature is not None and model.family != "flow":
        raise RestoreError(f"--temperature is for flow priors, not {model.family}")
    if hasattr(model, "latent_shape") or hasattr(model, "sample_conditional"):
        _sample_direct(model, n, out, prior, method, steps, truncation, temperature, nrow, json, dev, seed)
        return
    if truncation is not None:
        raise RestoreError(f"--truncation is for priors with a latent (vae, gan, flow), not {model.family}")
    exact = model.family in ("gaussian", "gmm")  # the families with exact draws (gmm: of single patches)
    method = method or ("exact" if exact else "ancestral")
    if method == "exact" and not exact:
        raise RestoreError(f"--method exact is for the gaussian and gmm priors; a {model.family} prior samples by "
                           "ancestral or ddim")
    if method == "exact":
        steps = 0
    elif steps is None:
        steps = model.num_timesteps if method == "ancestral" else min(50, model.num_timesteps)
    if method != "exact" and not 1 <= steps <= model.num_timesteps:
        raise RestoreError(f"--steps must be between 1 and {model.num_timesteps} for this prior, got {steps}")
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=f"sampling ({method})", unit="step", disable=None, leave=False)
    t0 = time.perf_counter()
    x = model.sample(n, steps=steps, method=method, variance=variance, eta=eta,
                     generator=torch.Generator(device=dev).manual_seed(seed), callback=lambda info: bar.update(1))
    seconds = time.perf_counter() - t0
    bar.close()
    io.write_grid(out, x.cpu(), nrow=nrow)
    result = {"output": str(out), "prior": prior, "n": n, "method": method, "steps": steps,
              "variance": variance if method == "ancestral" else None, "eta": eta if method == "ddim" else None,
              "seed": seed, "seconds": round(seconds, 3), "nfe": steps, "image_shape": list(x.shape[1:])}
    if json:
        import json as json_module

        typer.echo(json_module.dumps(result))
    else:
        typer.echo(f"wrote {out} ({n} samples, {method}, {steps} steps, {seconds:.2f} s)")


def _sample_direct(model, n, out, prior, method, steps, truncation, temperature, nrow, json_out, dev, seed) -> None:
    """``restore sample`` for a prior that decodes a latent (one pass) or samples pixel by pixel (PixelCNN)."""
    import torch
    from tqdm.auto import tqdm

    from . import io

    if method is not None or steps is not None:
        raise RestoreError(f"a {model.family} prior has its own sampler: --method and --steps are for diffusion priors")
    sequential = not hasattr(model, "latent_shape")
    if sequential and truncation is not None:
        raise RestoreError("--truncation is for priors with a latent (vae, gan, flow), not pixelcnn")
    kwargs = {"truncation": truncation} if not sequential else {}
    if temperature is not None:
        kwargs["temperature"] = temperature
    bar = tqdm(total=model.image_shape[1], desc="sampling rows", unit="row", disable=None if sequential else True, leave=False)
    t0 = time.perf_counter()
    x = model.sample(n, generator=torch.Generator(device=dev).manual_seed(seed), callback=lambda info: bar.update(1),
                     **kwargs)
    seconds = time.perf_counter() - t0
    bar.close()
    io.write_grid(out, x.cpu(), nrow=nrow)
    result = {"output": str(out), "prior": prior, "n": n, "method": "sequential" if sequential else "decode",
              "truncation": truncation, "temperature": temperature, "seed": seed, "seconds": round(seconds, 3),
              "nfe": x.shape[-2] * x.shape[-1] if sequential else 1, "image_shape": list(x.shape[1:])}
    if json_out:
        import json as json_module

        typer.echo(json_module.dumps(result))
    else:
        extra = (f", truncation {truncation}" if truncation is not None else "") + \
            (f", temperature {temperature}" if temperature is not None else "")
        typer.echo(f"wrote {out} ({n} samples of the {model.family} prior{extra}, {seconds:.2f} s)")


@app.command()
def info(prior: PriorSpec = "ddpm", json: Json = False):
    """Describe a prior: family, image size, channels, training data, and what can use it."""
    from .priors import load_prior
    from .solvers import solvers_for

    model = load_prior(prior)
    result = {**model.info(), "solvers": solvers_for(model), "sampling": "restore sample --prior " + prior}
    if json:
        import json as json_module

        typer.echo(json_module.dumps(result))
        return
    for key, value in result.items():
        if key == "solvers" and not value:
            value = "none in this installation"
        elif value is None:
            value = "unknown (not recorded by a restore training run)"
        elif isinstance(value, list):
            value = ", ".join(map(str, value)) if key != "image_size" else "x".join(map(str, value))
        typer.echo(f"{key + ':':17s}{value}")


def _bench_photos(data: str, tasks, priors: str, solvers: Optional[str], steps: str, out: str, force: bool) -> None:
    """restore bench on a photo test set: the natural-image benchmark's settings for that set (``tasks``:
    names or prefixes of settings, e.g. denoise or deblur/set12/sigma2.55)."""
    from . import photo_bench
    from .solvers import CLASSICAL, DIFFUSION

    names = [s.name for s in photo_bench.settings() if s.data == data
             and (tasks is None or any(s.name.startswith(t) for t in tasks))]
    if not names:
        raise RestoreError(f"no {data} setting matches --tasks {','.join(tasks)}; settings: "
                           + ", ".join(s.name for s in photo_bench.settings() if s.data == data))
    step_list = [int(v) for v in steps.split(",") if v.strip().isdigit()]
    learned = []
    for prior in (p for p in priors.split(",") if p and p not in ("gaussian", "vae", "gan")):
        for solver in (solvers.split(",") if solvers else ["tweedie"]):
            if solver not in DIFFUSION:
                raise RestoreError(f"on photos, --solvers takes diffusion solvers ({', '.join(DIFFUSION)}), got {solver!r}")
            for st in ([None] if solver == "tweedie" else step_list):
                learned.append((prior, solver, st))
    folder = Path(out)
    if not folder.resolve().parent.is_dir():
        raise RestoreError(f"cannot create '{folder}': '{folder.parent}' does not exist")
    cells = photo_bench.run(out=folder, setting_names=names, solvers=list(CLASSICAL), force=force,
                            learned=learned, log=lambda text: typer.echo(text, err=True))
    table = photo_bench.markdown([r for r in photo_bench.summary(cells) if r["setting"] in names])
    (folder / "results.md").write_text(table + "\n")
    typer.echo(table)
    typer.echo(f"wrote {folder}/results.md and {folder}/cells.jsonl")


@app.command()
def bench(
    data: Annotated[str, typer.Option(help="mnist, fashion-mnist or a folder of images (its first -n, sorted).")] = "mnist",
    tasks: Annotated[str, typer.Option(help="Comma-separated standard tasks.")] = "inpaint-box,inpaint-random,deblur,superres,denoise",
    priors: Annotated[str, typer.Option(help="Comma-separated --prior values (empty: classical only).")] = "ddpm,gaussian,vae,gan",
    solvers: Annotated[Optional[str], typer.Option(help="Comma-separated learned-prior solvers (default: every one that fits).")] = None,
    n: Annotated[int, typer.Option("-n", help="Images per cell.")] = 100,
    steps: Annotated[str, typer.Option(help="Comma-separated step counts of the diffusion solvers.")] = "20,50,100",
    samples: Annotated[int, typer.Option(help="Posterior samples per image for samplers.")] = 4,
    out: Annotated[str, typer.Option(help="Folder for results.json, results.md, report.html, grids and the cell cache.")] = "bench",
    paper_n: Annotated[int, typer.Option(help="Images for the papers' step counts (DPS 1000, RePaint 250); 0: none.")] = 0,
    quick: Annotated[bool, typer.Option("--quick", help="A smoke run of about a minute: 4 images, the classical solvers, and DDNM and PiGDM at 10 steps with 2 samples on the shipped DDPM and Gaussian priors (--priors and --solvers still choose).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Recompute cached cells.")] = False,
    data_root: Annotated[Optional[str], typer.Option(help="Where MNIST/Fashion-MNIST are (default $RESTORE_DATA).")] = None,
):
    """Compare every compatible prior and solver, and the classical baselines, on the same images.

    With --data bsd68, set12 or cbsd68 it runs the natural-image benchmark's settings on that test set
    (restore/photo_bench.py, the protocol of benchmarks/natural.py): the classical solvers, and
    each --priors value with each of --solvers at each --steps."""
    from .bench import run_bench

    if data in ("bsd68", "set12", "cbsd68"):
        default_tasks = "inpaint-box,inpaint-random,deblur,superres,denoise"
        _bench_photos(data, None if tasks == default_tasks else tasks.split(","), priors, solvers, steps, out, force)
        return
    if quick:  # fast solvers only: the default list includes 500-step Langevin and latent optimisation
        n, steps, samples = 4, "10", 2
        priors = "ddpm,gaussian" if priors == "ddpm,gaussian,vae,gan" else priors
        solvers = solvers or "ddnm,pigdm"
    try:
        step_list = [int(v) for v in steps.split(",") if v]
    except ValueError:
        raise RestoreError(f"--steps must be comma-separated integers, got {steps!r}") from None
    if n < 1 or samples < 1 or not step_list or min(step_list) < 1:
        raise RestoreError("-n, --samples and every --steps value must be positive integers")
    result = run_bench(data=data, tasks=[t for t in tasks.split(",") if t], priors=[p for p in priors.split(",") if p],
                       solvers=[s for s in solvers.split(",") if s] if solvers else None, n=n, out=out,
                       steps=step_list, samples=samples, force=force, data_root=data_root,
                       paper_n=0 if quick else paper_n)
    for text in result["warnings"]:
        typer.echo(f"warning: {text}", err=True)
    typer.echo(result["table"])
    typer.echo(f"wrote {out}/results.json, results.md, report.html")


@app.command()
def evaluate(
    prior: PriorSpec = "ddpm",
    data: Annotated[str, typer.Option(help="Evaluation data: mnist or fashion-mnist (their test splits), or a folder "
                                           "(the validation split restore train makes with seed 0).")] = "mnist",
    samples: Annotated[int, typer.Option(help="Samples for the Frechet and kernel distances.")] = 2000,
    nll_images: Annotated[int, typer.Option(help="Test images for bits/dim (0: skip).")] = 1000,
    feature_steps: Annotated[int, typer.Option(help="Training steps of the feature autoencoder for data other than "
                                                    "MNIST (cached in $RESTORE_CACHE, default ~/.cache/restore).")] = 1000,
    data_root: Annotated[Optional[str], typer.Option(help="Where MNIST is (default $RESTORE_DATA).")] = None,
    json: Json = False,
    seed: Seed = 0,
):
    """Evaluate a prior: bits/dim on 8-bit test data, and FID/KID of its samples (MNIST classifier features on
    MNIST; features of an autoencoder trained on the data otherwise)."""
    from .evaluate import evaluate_prior
    from .priors import load_prior

    _check_seed(seed)
    if samples < 2 or nll_images < 0 or feature_steps < 1:
        raise RestoreError(f"--samples must be at least 2, --nll-images non-negative and --feature-steps positive, "
                           f"got {samples}, {nll_images} and {feature_steps}")
    model = load_prior(prior)
    report = {"prior": prior, **evaluate_prior(model, data=data, samples=samples, nll_images=nll_images, seed=seed,
                                               data_root=data_root, feature_steps=feature_steps)}
    if "warning" in report:
        typer.echo(f"warning: {report['warning']}", err=True)
    if json:
        import json as json_module

        typer.echo(json_module.dumps(report))
        return
    if "bits_per_dim" in report:
        typer.echo(f"bits/dim:        {report['bits_per_dim']:.3f} +- {report['bits_per_dim_sem']:.3f} "
                   f"({report['nll_images']} test images)")
    typer.echo(f"FID:             {report['fid']:.2f} (train-vs-test floor {report['fid_floor']:.2f}; "
               f"{samples} samples against {report['test_images']} test images)")
    typer.echo(f"KID:             {report['kid']:.4f} +- {report['kid_std']:.4f} (floor {report['kid_floor']:.4f})")
    typer.echo(f"features:        {report['features']}")
    if "confident_fraction" in report:
        typer.echo(f"confident >=0.9: {100 * report['confident_fraction']:.1f}%, largest class deviation "
                   f"{100 * report['max_class_deviation']:.1f} points")


@app.command()
def priors():
    """List the prior families this installation can use, with their shipped defaults."""
    from .priors import FAMILIES, SHIPPED, VARIANTS, WEIGHTS, shipped_path

    for name, text in FAMILIES.items():
        shipped = ""
        if name in SHIPPED:
            state = "" if shipped_path(name).is_dir() else ", missing from this installation"
            shipped = f" [default: {SHIPPED[name]}{state}]"
        elif name != "classical":
            shipped = f" [none shipped: restore train {name}]"
        typer.echo(f"{name:10s} {text}{shipped}")
        for variant, channels, size in VARIANTS.get(name, []):
            kind = f"{'gray' if channels == 1 else 'colour'} {f'{size}x{size}' if size else 'photographs, any size'}"
            state = "shipped" if (WEIGHTS / variant).is_dir() else "not shipped yet"
            typer.echo(f"{'':10s}   {variant}: {kind} ({state})")
    typer.echo("A family name picks its shipped prior by the input: the first listed whose channels and size fit; "
               "a colour photo with no colour prior gets the gray photo prior channel by channel.")


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    import os

    from .runtime import keep_freed_memory

    # OpenMP threads that finish early wait passively instead of spinning: on a machine where another
    # job holds a core, spinning threads made every command 1.3-2.5x slower than one thread, and
    # passive ones cost nothing (README, "Threads"). Set before torch (and OpenMP) is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()
    import signal

    def terminated(signum, frame):  # SIGTERM unwinds like Ctrl-C: temporary files and partial outputs go
        raise SystemExit(128 + signum)

    import threading

    if threading.current_thread() is threading.main_thread():  # handlers can only be installed there
        signal.signal(signal.SIGTERM, terminated)
    try:
        # standalone_mode=False: usage errors come here as exceptions instead of a framed message box.
        code = app(prog_name="restore", standalone_mode=False)
    except RestoreError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:  # Ctrl-C: what was being written has been removed on the way out
        _fail("interrupted", 130)
    except Exception as exc:
        # click's exceptions (typer vendors click in some versions, so they are matched by name): a
        # mistyped option, a missing argument, a value of the wrong type; Abort is Ctrl-C at a prompt.
        kinds = {cls.__name__ for cls in type(exc).__mro__}
        if "NoArgsIsHelpError" in kinds:  # `restore` alone: the help has been shown
            sys.exit(2)
        if "ClickException" in kinds:
            ctx = getattr(exc, "ctx", None)
            _fail(f"{exc.format_message()} (see '{ctx.command_path if ctx else 'restore'} --help')",
                  getattr(exc, "exit_code", 2))
        if "Abort" in kinds:
            _fail("interrupted", 130)
        text = str(exc)  # torch's allocators report a failed allocation as a RuntimeError
        if not (isinstance(exc, MemoryError) or isinstance(exc, RuntimeError) and (
                "can't allocate memory" in text or "out of memory" in text.lower())):
            raise
        wanted = re.search(r"allocate ([0-9.]+ ?[KMGT]?i?B|[0-9]+ bytes)", text)
        _fail(f"out of memory{f' (an allocation of {wanted.group(1)} failed)' if wanted else ''}: "
              "use a smaller image, fewer --samples or a smaller --batch-size")
    if isinstance(code, int) and code:
        sys.exit(code)


def _fail(message: str, code: int = 2) -> None:
    """The one line of a failed command on stderr, exit code ``code``; with --json, also the error as a
    JSON object on stdout, where a script reads the result."""
    import json

    typer.echo(f"error: {message}", err=True)
    if "--json" in sys.argv[1:]:
        typer.echo(json.dumps({"error": message, "code": code}))
    sys.exit(code)


if __name__ == "__main__":
    main()
