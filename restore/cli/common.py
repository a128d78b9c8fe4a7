"""What the commands share: defaults per task, option types, operators from options, files and checks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Optional

import typer
from typing_extensions import Annotated

from ..errors import RestoreError


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
#: evaluations, 48 for inpainting, 24 from sigma 0.3 for super-resolution) and its periodical self-ensemble
#: (8 views, one per step, no extra cost), and Tweedie's one-step posterior mean for denoising. Chosen on
#: held-out training photos (benchmarks/results/tune/photo.md): DPIR beat DDNM at 20 steps by 4.4 dB on 80%
#: random inpainting, DDRM and DiffPIR at 50 steps by 2.5 dB on Levin-kernel deblurring, and BM3D by 1.8 dB
#: there; on 4x super-resolution 16 steps from 0.3 gained 0.23 dB over 8 from 49/255 with the gray prior (4
#: photos) and 0.05 dB with the colour one (3 photos), and 24 steps with 8 views 0.19 dB more (gray; colour
#: 0.03). The views added 0.08 dB on deblurring at sigma 2.55 (0 at 7.65) and 0.05 on 80% inpainting.
#: Inpainting has 48 steps since the shipped colour prior (22,921 steps): on four held-out colour photos with 8
#: views, 80% missing, 29.70 dB against 29.60 at 24 and 29.58 at 96 (48 better on all four); 50% missing, 34.74
#: against 34.68. A large hole keeps 24 (LARGE_HOLE_DPIR_STEPS).
DEFAULT_PHOTO_SOLVER = {"inpaint": ("dpir", 48, {"views": 8}), "deblur": ("dpir", 8, {"views": 8}),
                        "superres": ("dpir", 24, {"sigma_max": 0.3, "views": 8}),
                        "denoise": ("tweedie", None, {}), "cs": ("pigdm", 50, {})}


#: DPIR's settings where an inpainting mask has a large hole (restore.solvers.base.has_large_hole), so that it
#: starts from TV's fill: a lower first noise level keeps that start. On four held-out colour photos with a
#: quarter-area box (benchmarks/results/tune/photo.md): 21.77 dB from 0.05, 21.65 from 49/255, TV 21.69.
LARGE_HOLE_DPIR = {"sigma_max": 0.05}
#: ... and 24 steps there, the count that start was chosen with (48 steps were measured on scattered masks only).
LARGE_HOLE_DPIR_STEPS = 24


#: A Gaussian mixture of patches restores with its own algorithm, EPLL's half-quadratic splitting, and
#: the paper's schedule of beta for every task (restore.solvers.epll).
DEFAULT_PATCH_SOLVER = {task: ("epll", None, {}) for task in DEFAULT_PHOTO_SOLVER}


# Options shared by several commands.
Box = Annotated[Optional[str], typer.Option(help="Missing rectangle X,Y,W,H in pixels (inpainting).")]


Random = Annotated[Optional[float], typer.Option(min=0.0, max=1.0, help="Fraction of pixels missing at random, seeded (inpainting).")]

Mask = Annotated[Optional[str], typer.Option(help="Mask image: white = observed, black = missing (inpainting).")]

Kernel = Annotated[
    Optional[str],
    typer.Option(help="Blur kernel: gaussian:SIGMA[:SIZE], motion[:SIZE[:INTENSITY]], levin:N (the 8 camera-shake "
                      "kernels of Levin et al. 2009) or a kernel file (.npy, .safetensors, 8- or 16-bit .png)."),
]

Boundary = Annotated[
    Optional[Literal["valid", "circular"]],
    typer.Option(help="Blur boundary: valid (a camera's blur: the scene beyond the frame is unknown, nothing wraps "
                      "around) or circular (periodic, as synthetic benchmarks blur). Default: valid for a photo, "
                      "circular for a prior of fixed-size images (the MNIST priors) and for `restore degrade`."),
]

Factor = Annotated[Optional[int], typer.Option(min=1, help="Downsampling factor (super-resolution).")]

Filter = Annotated[Optional[Literal["box", "bicubic"]], typer.Option(help="Downsampling filter: box (default) or bicubic.")]

Noise = Annotated[Optional[float], typer.Option(help="Standard deviation sigma_y of Gaussian noise on [0, 1] intensities.")]

Poisson = Annotated[Optional[float], typer.Option(help="Poisson noise with this gain (photons at intensity 1) instead of Gaussian.")]

Seed = Annotated[int, typer.Option(min=0, max=2**63 - 1, help="Seed of every random choice (mask, kernel, noise, solver).")]


def _parse_box(text: str) -> tuple[int, int, int, int]:
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise RestoreError(f"--box must be X,Y,W,H (four integers), got {text!r}") from None
    return x, y, w, h


def _noise(sigma: Optional[float], gain: Optional[float]):
    from ..operators import GaussianNoise, PoissonNoise

    if sigma is not None and gain is not None:
        raise RestoreError("give either --noise (Gaussian) or --poisson (shot noise), not both")
    return PoissonNoise(gain) if gain is not None else GaussianNoise(sigma or 0.0)


def _kernel(text: str, seed: int, frame=None):
    """Build a Blur from the --kernel option text; a built kernel larger than ``frame`` (H, W) is refused
    before it is allocated."""
    from .. import io
    from ..operators import Blur

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
        from ..data import levin_kernel

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
    from .. import io, operators as O

    chosen = [o for o in (box, random, mask) if o is not None]
    if task != "inpaint" and chosen:
        raise RestoreError(f"--box, --random and --mask are for inpainting, not {task}")
    if task != "deblur" and kernel is not None:
        raise RestoreError(f"--kernel is for deblurring, not {task}")
    if task != "deblur" and boundary is not None:
        raise RestoreError(f"--boundary is for deblurring, not {task}")
    if task != "superres" and (factor is not None or filter is not None):
        raise RestoreError(f"--factor and --filter are for super-resolution, not {task}")
    if task != "cs" and measurements is not None:
        raise RestoreError(f"--measurements is for compressed sensing, not {task}")
    if task == "inpaint":
        if len(chosen) > 1:
            raise RestoreError("give only one of --box, --random and --mask")
        observed = None
        if mask is not None:
            pixels, mask_alpha = io.read_image(mask, mode="L")
            if tuple(pixels.shape[-2:]) != tuple(image_shape[-2:]):
                h, w = pixels.shape[-2:]
                raise RestoreError(f"the mask '{mask}' is {w}x{h} but the image is {image_shape[-1]}x{image_shape[-2]}")
            observed = pixels[0] > 0.5  # white = observed, black = missing
            if mask_alpha is not None:
                observed &= mask_alpha[0] > 0.5  # and transparent = missing, as in the image itself
        elif alpha is not None and not chosen:
            observed = alpha[0] > 0.5  # transparent = missing
        elif not chosen and not for_degrade:
            raise RestoreError(
                "this image has no alpha channel and no mask was given: erase the missing region to "
                "transparency in an image editor, or pass --mask m.png, --box X,Y,W,H or --random FRACTION"
            )
        op = O.make_operator("inpaint", image_shape, mask=observed, box=_parse_box(box) if box is not None else None,
                             random=random, seed=seed)
        if alpha is not None and chosen:
            # One rule: a transparent pixel of the image is missing, whatever option adds more holes.
            op = O.Inpainting(op.mask.bool() & (alpha[0] > 0.5))
        if not for_degrade and bool(op.mask.all()):
            raise RestoreError("nothing to inpaint: no pixel is missing (a mask is white where observed and black "
                               "or transparent where missing; an image's transparent pixels are missing)")
    elif task == "deblur":
        blur = _kernel("gaussian:2" if kernel is None else kernel, seed, frame=tuple(image_shape[-2:]))
        blur.check_input((1, *image_shape[-3:]))  # a kernel larger than the frame is refused either way
        op = O.make_operator("deblur", kernel=blur, boundary=boundary or "circular")
    else:
        op = O.make_operator(task, image_shape, factor=4 if factor is None else factor, filter=filter or "box",
                             measurements=measurements, seed=seed)
    op.noise = noise
    if not (boundary == "valid" and not for_degrade):  # a valid blur's x is the frame grown by the kernel
        op.check_input((1, *image_shape[-3:]))
    _check_observed(op)
    return op


#: Facts about the last reference read, for the result JSON (the modcrop applied to it).
_NOTES: dict = {}


def _read_reference(reference: Optional[str], shape, op=None, gray_rgb: bool = False):
    """The clean reference image (1, C, H, W), or None; it must have the restored image's shape: that of x,
    or for a valid blur that of the frame (a reference shaped like x is cropped to the frame). With
    ``gray_rgb`` (a gray image stored as RGB, restored as gray, written as RGB) it is compared with the RGB
    output: a gray reference counts as RGB."""
    _NOTES.clear()
    if reference is None:
        return None
    import torch

    from .. import io
    from ..operators import functional as Fn

    truth, _ = io.read_image(reference)
    if gray_rgb:
        shape = (3, *shape[1:])
        truth = truth.expand(-1, 3, -1, -1)
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


def report(result: dict, as_json: bool, text) -> None:
    """Every command's result: with --json, one JSON object on stdout (what a script reads); else ``text``,
    a line, or a function that writes the readable form (called only then)."""
    if as_json:
        import json

        typer.echo(json.dumps(result))
    elif callable(text):
        text()
    else:
        typer.echo(text)


def _output_check(path: str) -> Path:
    from .. import io

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
    """The files a restoring command reads (an option naming a kernel such as levin:3 is no file), and
    those a measurement spec names beside it (its arrays and its preview): they belong to the measurement."""
    options = op_options or {}
    specs = [p for p in (input, spec) if p is not None and str(p).lower().endswith(".json")]
    return [input, spec, reference, options.get("mask"), options.get("kernel"), *(f for p in specs for f in _spec_files(p))]


def _spec_files(path) -> list:
    """The array and preview files a measurement spec names, beside it; none when it cannot be read (loading
    it says why)."""
    import json

    try:
        meta = json.loads(Path(path).read_text())
        names = [*meta.get("arrays", {}).values(), meta.get("preview")]
    except (OSError, ValueError, AttributeError, RecursionError):  # RecursionError: JSON nested too deep
        return []
    return [Path(path).parent / name for name in names if isinstance(name, str)]


def _parse_params(params: list[str], fn) -> dict:
    """--param KEY=VALUE options, typed by the solver's own keyword defaults."""
    import inspect

    signature = inspect.signature(fn).parameters
    defaults = {k: p.default for k, p in signature.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and k not in ("steps", "generator", "callback")}
    out = {}
    for text in params:
        key, sep, value = text.partition("=")
        if not defaults:
            raise RestoreError(f"--param {text!r}: {fn.__name__.replace('_', '-')} has no hyperparameters to set")
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
    from ..solvers.base import check_hyperparameters

    check_hyperparameters(fn, out)
    return {**defaults, **out}


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


def _progress(fn, steps, y=None, op=None):
    """A progress bar over an iterative solver's steps, or the calls it declares (BM3D's tiles of a large
    image), on a terminal only; or None."""
    from tqdm.auto import tqdm

    total = fn.progress_total(y, op, steps, {}) if hasattr(fn, "progress_total") and y is not None else None
    total = total or steps or _default_steps(fn)
    if not isinstance(total, int) or total < 2:
        return None
    bar = tqdm(total=total, desc=fn.__name__, unit="step", disable=None, leave=False)
    bar.update_to = lambda info: bar.update(info["i"] + 1 - bar.n)
    return bar


# The restore commands share their options; each task adds its operator options.
Input = Annotated[str, typer.Argument(help="Damaged image (PNG/JPEG), a folder of them, or a measurement spec .json from `restore degrade`.")]


Output = Annotated[str, typer.Option("-o", "--output", help="Restored image (.png), or a folder for a folder of images.")]

Spec = Annotated[Optional[str], typer.Option(help="Measurement spec .json (full-precision y and exact operator).")]

Prior = Annotated[str, typer.Option(help="classical (no learned prior), a family (ddpm, gaussian, ...: its shipped default), a model folder or a hub id.")]

Samples = Annotated[int, typer.Option(min=1, help="Posterior samples to draw (learned priors); beside -o: a grid and a std map.")]

Estimate = Annotated[Literal["mean", "sample"], typer.Option(help="What -o holds: mean (of the samples) or sample (the first one).")]

Param = Annotated[Optional[list[str]], typer.Option("--param", help="Solver hyperparameter KEY=VALUE (repeatable), e.g. fidelity=2.")]

Resize = Annotated[bool, typer.Option("--resize", help="Fit a plain image's size and channels to the prior's.")]

Precision = Annotated[Literal["fp32", "bf16"], typer.Option(help="Learned priors: fp32, or bf16 to run the network under bfloat16 autocast "
                                             "(about 2x faster on CPUs with AVX-512 BF16, slower on others).")]

Stretch = Annotated[Optional[bool], typer.Option("--stretch/--no-stretch", help="Map the measurement's range of values onto "
                                         "[0, 1] for the solver and back (with the noise level): for dark images, "
                                         "e.g. 12-bit data in a 16-bit file, which a learned prior of photographs "
                                         "misreads. Default: as the prior was trained (restore train --stretch).")]

Bits = Annotated[Literal["auto", "8", "16"], typer.Option(help="Bits per sample of the restored PNG: auto (the input's: 16 for "
                                                  "a 16-bit PNG or gray TIFF, or a spec made from one; else 8), 8 or 16.")]

Solver = Annotated[Optional[str], typer.Option(help="Solver; default per task (see README).")]

Steps = Annotated[Optional[int], typer.Option(min=1, help="Iterations of an iterative solver, or diffusion steps.")]

Reference = Annotated[Optional[str], typer.Option(help="Clean image: print PSNR and SSIM against it.")]

Json = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result.")]

Force = Annotated[bool, typer.Option("--force", help="Folders: restore images whose output already exists, too.")]

Device = Annotated[Literal["auto", "cpu", "cuda"], typer.Option(help="auto, cpu or cuda.")]

PriorSpec = Annotated[str, typer.Option(help="A family name (its shipped default), a model folder or a hub id (owner/name).")]
