"""The restore commands (inpaint, deblur, superres, denoise, cs): one image, a measurement spec, or a folder."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Optional

import typer

from ..errors import RestoreError, RestoreWarning
from ..stretch import stretch as stretch_map
from ..stretch import trained_stretched, unstretch
from .app import TASKS, _threads, app
from .common import (Boundary, Box, DEFAULT_PATCH_SOLVER, DEFAULT_PHOTO_SOLVER, DEFAULT_PRIOR_SOLVER, DEFAULT_SOLVER,
    Device, Estimate, Factor, Filter, Force, Input, Json, Kernel, LARGE_HOLE_DPIR, LARGE_HOLE_DPIR_STEPS, Mask, Noise, Output, Param, Poisson,
    Bits, Precision, Prior, Stretch, Random, Reference, Resize, Samples, Seed, Solver, Spec, Steps, _NOTES, _check_observed,
    _default_steps, _device, _input_files, _noise, _operator, _output_check, _parse_box, _parse_params, _progress,
    _read_reference, _refuse_overwrite, report)


@dataclasses.dataclass
class Request:
    """One restore command as parsed: what to restore (``input`` into ``output``), how the damage is
    described (``spec``, or ``op_options``: the task's operator options and the seed), and how to
    restore it (``prior``, ``solver`` and the options of learned priors). A folder of images is one
    request per image, made with :func:`dataclasses.replace`."""

    task: str
    input: str
    output: str
    spec: Optional[str] = None
    prior: str = "classical"
    solver: Optional[str] = None
    steps: Optional[int] = None
    reference: Optional[str] = None
    json: bool = False
    device: str = "auto"
    seed: int = 0
    op_options: dict = dataclasses.field(default_factory=dict)
    samples: int = 1
    estimate: str = "mean"
    params: tuple = ()
    resize: bool = False
    precision: str = "fp32"
    force: bool = False
    bits: str = "auto"
    stretch: Optional[bool] = None  # None: as the prior was trained (off for classical solvers)

    def input_files(self) -> list:
        """The files the command reads (an option naming a kernel such as levin:3 is no file)."""
        return _input_files(self.input, self.spec, self.reference, self.op_options)


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


def _as_written(x, gray_rgb: bool):
    """The estimate as its file holds it: a gray image stored as RGB, restored as gray, goes back to RGB."""
    return x.expand(-1, 3, -1, -1) if gray_rgb else x


def _load_measurement(task: str, input: str, spec: Optional[str], op_options: dict, target=None):
    """(y, operator, image_shape, source, notes, bits, gray_rgb) from a spec or from a plain image plus options;
    ``bits`` is the depth of the image (16 for a 16-bit file, or a spec made from one; else 8). A plain RGB image
    whose three channels are equal (a gray photo stored as RGB) is restored as gray (``gray_rgb``; its output is
    written as RGB): its noise is one field, not three independent ones as a colour solver or prior assumes.

    ``notes`` are messages for stderr, printed once every check has passed, so that a failing
    command prints its one error line only. ``target`` (C, H, W): resize a plain image to it.
    """
    from .. import io, measurement

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
        source = f"{spec_path} ({Path(spec_path).parent / meta['arrays']['y']})"
        return y, op, tuple(meta["image_shape"]), source, [], meta.get("bits", 8), False
    if path.suffix.lower() in (".npy", ".safetensors"):
        raise RestoreError(f"a float measurement '{path}' needs the JSON spec written beside it: pass --spec")
    if task == "cs":
        raise RestoreError("compressed-sensing measurements are vectors: pass the .json spec written by `restore degrade`")
    if path.is_dir():
        raise RestoreError(f"'{path}' is a directory: give one image file")
    with warnings.catch_warnings(record=True) as caught:  # printed with the notes, after every check
        warnings.simplefilter("always", RestoreWarning)
        y, alpha = io.read_image(path)
    read_notes = [str(w.message) for w in caught if issubclass(w.category, RestoreWarning)]
    for w in caught:
        if not issubclass(w.category, RestoreWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    gray_rgb = io.gray_stored_as_rgb(y)
    if gray_rgb:
        y = y[:, :1]
        read_notes.append(f"'{path}' is a gray image stored as RGB (its three channels are equal): restoring it as "
                          "gray, written as RGB")
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
    from ..runtime import check_allocation

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
    notes = read_notes
    if task == "denoise" and noise_opts == (None, None):
        from ..operators.noise import estimate_sigma

        sigma = estimate_sigma(y)
        notes.append(f"estimated noise sigma_y = {sigma:.4f} (pass --noise to set it)")
        noise_opts = (sigma, None)
    if alpha is not None and task != "inpaint" and bool((alpha <= 0.5).any()):
        notes.append("the image's transparent pixels are restored as they are: transparency marks missing pixels "
                     "only for restore inpaint")
    op = _operator(task, shape, alpha=alpha, noise=_noise(*noise_opts), **op_options)
    shape = tuple(op.input_shape(tuple(y.shape))[1:])  # a valid blur's x is the frame grown by the kernel
    if task == "inpaint":
        y = op.mask * y
    return y, op, shape, str(path), notes, io.bit_depth(path), gray_rgb


def _default_boundary(task: str, input: str, spec, op_options: dict, any_size: bool = True) -> None:
    """Fill in --boundary for a plain blurred image: valid (a camera's blur), but circular for a prior of
    fixed-size images, which cannot model the scene beyond the frame. A spec fixes its own boundary."""
    if task == "deblur" and op_options.get("boundary") is None and spec is None and not input.lower().endswith(".json"):
        op_options["boundary"] = "valid" if any_size else "circular"


#: Priors loaded by this process, so that a folder of images loads its prior once.
_PRIORS: dict = {}


def _load_prior_once(prior: str, dev, shape):
    """load_prior, remembered per (prior, device, shipped choice for the image shape, channels)."""
    from ..priors import SHIPPED, load_prior, shipped_for

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

        from .. import io
        from ..data import _GRAY_MODES

        with Image.open(path) as im:
            w, h = im.size
            channels = 1 if im.mode in _GRAY_MODES else 3
        if channels == 3 and io.gray_stored_as_rgb(io.read_image(path)[0]):  # restored as gray (_load_measurement)
            channels = 1
    except (OSError, ValueError, AttributeError, RestoreError):
        return None
    k = (op_options.get("factor") or 4) if task == "superres" else 1
    return (channels, h * k, w * k)


def _run(req: Request) -> None:
    """Carry out one restore command: a folder, a learned prior's restoration, or a classical one."""
    if _COLLECTED is None:  # a new command, not the next image of a folder: load priors afresh
        _PRIORS.clear()
    if Path(req.input).is_dir():
        _run_folder(req)
        return
    out = _output_check(req.output)
    if req.prior != "classical":
        _restore_with_prior(req, out)
    else:
        _restore_classical(req, out)


def _restore_classical(req: Request, out: Path) -> None:
    """Restore with a classical solver (no learned prior): the estimate, its JSON record beside it (as a
    learned restoration writes, so that a record left there by an earlier run never describes this
    estimate) and a one-line or JSON report."""
    import torch

    from .. import io, metrics
    from ..solvers import CLASSICAL, check_compatible

    task, op_options = req.task, dict(req.op_options)
    record = io.output_path_check(f"{out.with_suffix('')}.json")
    _refuse_overwrite([out, record], req.input_files())
    if req.samples != 1 or req.resize or req.precision != "fp32":
        raise RestoreError("--samples, --resize and --precision are for learned priors (--prior ddpm, gaussian or a model)")
    _default_boundary(task, req.input, req.spec, op_options)
    y, op, shape, source, notes, depth, gray_rgb = _load_measurement(task, req.input, req.spec, op_options)
    name = req.solver or DEFAULT_SOLVER[task]
    if name not in CLASSICAL:
        raise RestoreError(f"unknown solver {name!r} for prior {req.prior!r}; known: {', '.join(CLASSICAL)}")
    fn = CLASSICAL[name]
    check_compatible(name, fn, op, CLASSICAL)
    hyper = _parse_params(list(req.params), fn)  # e.g. tv's weight, lasso's basis (the solver's keyword defaults)
    truth = _read_reference(req.reference, shape, op, gray_rgb)
    bits, operator_spec = _output_bits(req, depth), op.spec()  # the measurement's operator, whatever the solver sees
    y, op, stretch = stretch_map(y, op, why="--stretch") if req.stretch else (y, op, None)
    dev = _device(req.device)
    op = op.to(dev)
    y = y.to(dev)
    kwargs = {"generator": torch.Generator(device=dev).manual_seed(req.seed)}
    if req.steps is not None:
        # Iterative solvers have an integer default for steps; the others accept steps=None and ignore it.
        if not isinstance(_default_steps(fn), int):
            raise RestoreError(f"--steps is for iterative solvers (tv, richardson-lucy), not {name}")
        kwargs["steps"] = req.steps
    for note in notes:
        typer.echo(note, err=True)
    bar = _progress(fn, req.steps, y, op)
    t0 = time.perf_counter()
    x_hat = op.field_of_view(fn(y, op, None, callback=bar.update_to if bar else None, **kwargs, **hyper))
    if stretch:  # back to the input's range
        x_hat = unstretch(x_hat, stretch)
    x_hat = _as_written(x_hat.cpu(), gray_rgb)
    seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    result = {"input": source, "output": str(out), "task": task, "prior": req.prior, "solver": name,
              "operator": operator_spec, "hyperparameters": hyper, "seconds": round(seconds, 3), "threads": _threads(),
              "image_shape": list(shape), "seed": req.seed, "device": str(dev), "bits": bits,
              **({"stretch": stretch} if stretch else {}), **({"gray_stored_as_rgb": True} if gray_rgb else {})}
    if truth is not None:
        result["psnr"] = float(metrics.psnr(x_hat, truth)[0])
        result["ssim"] = float(metrics.ssim(x_hat, truth)[0])
        result.update(_NOTES)
    with io.together():  # the estimate and its record land together or not at all
        io.write_png(out, x_hat, bits=bits)
        io.write_json(record, result)
    _stale_side_files(out, wrote=False)
    _report(result, req.json, f"wrote {out} ({req.prior} / {name}, {seconds:.2f} s)")


def _stale_side_files(out: Path, wrote: bool) -> None:
    """Say on stderr where an earlier run's sample grid and std map lie beside ``out`` and this run wrote none
    (a classical solver, or one sample): they describe that run's estimate, not this one, and this record does
    not name them. They are left as they are: no command removes a file it was not asked to write."""
    if wrote:
        return
    stem = out.with_suffix("")
    stale = [p for p in (Path(f"{stem}.samples.png"), Path(f"{stem}.std.png")) if p.is_file()]
    if stale:
        names = " and ".join(f"'{p}'" for p in stale)
        typer.echo(f"note: {names} {'are' if len(stale) > 1 else 'is'} from an earlier run: this one wrote no samples",
                   err=True)


#: While a folder is restored, each image's result is collected here instead of printed.
_COLLECTED: list | None = None


def _matching(folder: Path, rel: str, what: str) -> str:
    """The file of ``folder`` that goes with image ``rel``: the same relative path, any image extension."""
    from ..io import IMAGE_EXTENSIONS

    stem = Path(rel).with_suffix("")
    for ext in IMAGE_EXTENSIONS:
        for candidate in (folder / stem.with_suffix(ext), folder / stem.with_suffix(ext.upper())):
            if candidate.is_file():
                return str(candidate)
    raise RestoreError(f"no {what} for '{rel}' in '{folder}' (expected '{stem}' with an image extension)")


def _run_folder(req: Request) -> None:
    """Restore every image under the folder ``input`` into the folder ``output`` (same relative paths, .png).

    A file that fails is reported and skipped; the rest still run, and the exit code is 2 if any failed.
    Images whose output exists are skipped unless ``force``. A mask or reference folder gives each image
    the file of the same relative name. Under torchrun, rank r takes every world-size-th file.
    """
    import json
    import os

    from tqdm.auto import tqdm

    from ..data import image_files

    global _COLLECTED
    task, src, dst, reference = req.task, Path(req.input), Path(req.output), req.reference
    if req.spec is not None:
        raise RestoreError("--spec describes one measurement; it cannot go with a folder of images")
    if dst.suffix.lower() in (".png", ".jpg", ".jpeg") or (dst.exists() and not dst.is_dir()):
        raise RestoreError(f"the input '{src}' is a folder, so -o must be a folder too, got '{dst}'")
    if not dst.resolve().parent.is_dir():
        raise RestoreError(f"cannot create the output folder '{dst}': '{dst.parent}' does not exist")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise RestoreError(f"the output folder '{dst}' is inside the input folder '{src}': choose another -o")
    folders = {"mask": req.op_options.get("mask"), "reference": reference}
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
        if out.exists() and not req.force:
            counts["skipped"] += 1
            continue
        record = {"file": rel}
        _COLLECTED = []
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            options = dict(req.op_options)
            if folders["mask"] is not None:
                options["mask"] = _matching(Path(folders["mask"]), rel, "mask")
            ref = _matching(Path(reference), rel, "reference") if reference is not None else None
            _run(dataclasses.replace(req, input=str(src / rel), output=str(out), reference=ref, json=False,
                                     op_options=options))
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
    report(summary, req.json, line)
    if counts["failed"]:
        raise RestoreError(f"{counts['failed']} of {len(mine)} images failed (see {log})")


def _report(result: dict, json_out: bool, line: str) -> None:
    """Report one image's result (with PSNR and SSIM when a reference was given), or collect it for the
    folder being restored."""
    if _COLLECTED is not None:
        _COLLECTED.append(result)
        return
    if "psnr" in result:
        line += f"  PSNR {result['psnr']:.2f} dB  SSIM {result['ssim']:.4f}"
    report(result, json_out, line)


def _narrow_range(y, op) -> str | None:
    """A note for a measurement whose values span under a quarter of [0, 1] (a 12-bit camera's image in a
    16-bit file spans a sixteenth), which a learned prior of full-range photographs misreads."""
    from ..stretch import observed_range

    if y.dim() != 4:  # compressed sensing: y holds projections, not pixel values
        return None
    low, high = observed_range(y, op)
    if high - low < 0.25:
        return (f"the image's values span only [{low:.4f}, {high:.4f}] of [0, 1]: a learned prior expects the full "
                "range, so --stretch (map the range to [0, 1] and back) may restore it far better")
    return None


def _output_bits(req: Request, depth: int) -> int:
    """The bit depth of the restored PNG: ``--bits``, else ``depth``, that of the input image (16 for a 16-bit
    PNG or gray TIFF, so a 12-bit camera's levels survive) or of the image a measurement spec was made from."""
    return depth if req.bits == "auto" else int(req.bits)


def _restore_with_prior(req: Request, out: Path) -> None:
    """Restore with a learned prior and a diffusion solver: estimate, sample grid, std map and a JSON record."""
    import torch

    from .. import io, metrics
    from ..solvers import check_compatible
    from ..solvers.counting import CountingPrior

    task, input, spec, prior, op_options = req.task, req.input, req.spec, req.prior, dict(req.op_options)
    samples, seed, resize = req.samples, req.seed, req.resize
    stem = out.with_suffix("")
    paths = {"samples": Path(f"{stem}.samples.png"), "std": Path(f"{stem}.std.png"), "json": Path(f"{stem}.json")}
    for p in (out, *paths.values()):
        io.output_path_check(p)
    _refuse_overwrite([out, *paths.values()], req.input_files())
    # Before the prior loads (seconds): a mistyped name, broken link or link loop fails at once.
    io._check_input_file(Path(input), "measurement spec" if input.lower().endswith(".json") else "image")
    dev = _device(req.device)
    model = _load_prior_once(prior, dev, _peek_shape(task, input, spec, op_options))
    if req.precision == "bf16":
        if not hasattr(model, "with_autocast"):
            raise RestoreError(f"--precision bf16 is for DDPM priors; the {model.family} prior runs in float32")
        model = model.with_autocast(torch.bfloat16)
    any_size = getattr(model, "any_size", False)
    name, fn, usable, hyper, default_steps = _choose_solver(model, task, req.solver, req.params)
    if resize and any_size:
        raise RestoreError(f"--resize is for priors of fixed-size images; {prior!r} restores images of any size")
    _default_boundary(task, input, spec, op_options, any_size=any_size)
    y, op, shape, source, notes, depth, gray_rgb = _load_measurement(task, input, spec, op_options,
                                                              target=model.image_shape if resize else None)
    check_compatible(name, fn, op, usable)
    hyper, default_steps = _large_hole_defaults(name, hyper, req, op, any_size, default_steps)
    if getattr(model, "channel_groups", 1) > 1:  # fitted by load_prior: a gray photo prior on a colour photo
        notes.append(f"the prior {prior!r} models gray images: restoring R, G and B each as a gray image")
    from ..runtime import bf16_warning

    if req.precision == "bf16" and (warning := bf16_warning(dev.type)):
        notes.append(warning)
    if not any_size and tuple(shape) != tuple(model.image_shape):
        have, want = "x".join(map(str, shape)), "x".join(map(str, model.image_shape))
        if hasattr(op, "grow"):  # a valid blur's unknown is the frame grown by the kernel's radius
            frame = "x".join(map(str, op.measurement_shape((1, *shape))[1:]))
            raise RestoreError(f"with --boundary valid the unknown image is the {frame} frame grown by the kernel's radius "
                               f"({have}), but the prior {prior!r} models {want} images: use --boundary circular")
        hint = " (pass --resize to fit a plain image to the prior)" if spec is None and not input.endswith(".json") else ""
        raise RestoreError(f"the image is {have} (CxHxW) but the prior {prior!r} models {want} images{hint}")
    truth = _read_reference(req.reference, shape, op, gray_rgb)
    bits, operator_spec = _output_bits(req, depth), op.spec()  # the measurement's operator, whatever the solver sees
    trained = trained_stretched(model)
    if trained and req.stretch is None:
        notes.append(f"the prior {prior!r} was trained on images stretched to [0, 1]: stretching this one too "
                     "(--no-stretch to not)")
    why = "--stretch" if req.stretch else f"the prior {prior!r}, trained stretched,"
    stretching = req.stretch if req.stretch is not None else trained
    y, op, stretch = stretch_map(y, op, why=why) if stretching else (y, op, None)
    if not stretch and req.stretch is None and (narrow := _narrow_range(y, op)):
        notes.append(narrow)
    steps = _solver_steps(fn, name, req.steps, default_steps, getattr(model, "num_timesteps", None))
    for note in notes:
        typer.echo(note, err=True)
    counted = CountingPrior(model)
    t0 = time.perf_counter()
    x = _draw(fn, name, y.to(dev), op.to(dev), counted, samples, steps, hyper, seed, dev)
    if stretch:  # back to the input's range: samples, their mean and their spread
        x = unstretch(x, stretch)
    seconds = time.perf_counter() - t0
    x_hat = _as_written((x.mean(0, keepdim=True) if req.estimate == "mean" else x[:1]).clamp(0, 1), gray_rgb)
    result = {"input": source, "output": str(out), "task": task, "prior": prior,
              "model": model.model, "prior_family": model.family,
              "solver": name, "steps": steps, "hyperparameters": hyper, "samples": samples, "estimate": req.estimate,
              "operator": operator_spec, "seconds": round(seconds, 3), "threads": _threads(), "nfe": counted.calls,
              "image_shape": list(shape),
              "seed": seed, "device": str(dev), "resize": resize, "precision": req.precision, "bits": bits,
              **({"stretch": stretch} if stretch else {})}
    if getattr(model, "channel_groups", 1) > 1:
        result["channelwise"] = True  # a gray prior applied to each colour channel
    if gray_rgb:
        result["gray_stored_as_rgb"] = True
    if samples > 1:
        std = x.std(0, keepdim=True)
        result.update(sample_grid=str(paths["samples"]), std_map=str(paths["std"]), std_map_scale=4.0,
                      mean_std=float(std.mean()))
    if truth is not None:
        result["psnr"] = float(metrics.psnr(x_hat, truth)[0])
        result["ssim"] = float(metrics.ssim(x_hat, truth)[0])
        result.update(_NOTES)
        if samples > 1:
            result["psnr_one_sample"] = float(metrics.psnr(_as_written(x[:1].clamp(0, 1), gray_rgb), truth)[0])
    size_note = ""
    if resize:  # say that the output is the prior's size, not the input's
        before = _peek_shape(task, input, None, {"factor": op_options.get("factor")})
        size_note = f"{shape[2]}x{shape[1]}, resized from {before[2]}x{before[1]}; " if before else ""
        result["resized_from"] = list(before) if before else None
    with io.together():  # the estimate, grid, std map and record land together or not at all
        io.write_png(out, x_hat, bits=bits)
        if samples > 1:
            io.write_grid(paths["samples"], x.clamp(0, 1))
            io.write_png(paths["std"], (4 * std.mean(1, keepdim=True)).clamp(0, 1))  # white = std 0.25 or more
        io.write_json(paths["json"], result)
    _stale_side_files(out, wrote=samples > 1)
    plural = "s" * (samples > 1)
    stepped = f"{steps} steps, " if steps is not None else ""
    _report(result, req.json, f"wrote {out} ({size_note}{result['model']} / {name}, {stepped}{samples} sample{plural}, {seconds:.2f} s)")


def _large_hole_defaults(name: str, hyper: dict, req: Request, op, any_size: bool, default_steps):
    """(hyperparameters, default steps): DPIR's for a large hole (:data:`LARGE_HOLE_DPIR`,
    :data:`LARGE_HOLE_DPIR_STEPS`) where the solver is the photo default, it starts from TV's fill (init auto or
    tv) and the mask has a large hole; a --param of the same name (or --steps) wins. Otherwise as given."""
    from ..solvers.base import has_large_hole

    if (name != "dpir" or req.solver is not None or not any_size or hyper.get("init", "auto") not in ("auto", "tv")
            or getattr(op, "mask", None) is None or not has_large_hole(op.mask)):
        return hyper, default_steps
    given = {text.partition("=")[0] for text in req.params}
    return ({**hyper, **{key: value for key, value in LARGE_HOLE_DPIR.items() if key not in given}},
            LARGE_HOLE_DPIR_STEPS)


def _choose_solver(model, task: str, solver, params):
    """(name, solver, the solvers the prior can use, hyperparameters, default steps or None): --solver, or the
    per-task default where the prior can use it (``DEFAULT_*_SOLVER``), else the prior's first solver (csgm).
    The default comes with its per-task hyperparameters; a --param of the same name wins."""
    from ..solvers import PRIOR_SOLVERS, solvers_for

    usable = {n: PRIOR_SOLVERS[n] for n in solvers_for(model)}
    defaults = (DEFAULT_PATCH_SOLVER if "epll" in usable else DEFAULT_PHOTO_SOLVER if getattr(model, "any_size", False)
                else DEFAULT_PRIOR_SOLVER)
    default_name, default_steps, default_params = defaults[task]
    name = solver or (default_name if default_name in usable else next(iter(usable), "none"))
    if name not in PRIOR_SOLVERS:
        raise RestoreError(f"unknown solver {name!r} for a learned prior; known: {', '.join(PRIOR_SOLVERS)}")
    if name not in usable:
        raise RestoreError(f"solver {name!r} cannot use the {model.family} prior; solvers that can: {', '.join(usable) or 'none'}")
    fn = usable[name]
    chosen = solver is None and name == default_name
    hyper = _parse_params([*(f"{k}={v}" for k, v in default_params.items() if chosen), *params], fn)
    return name, fn, usable, hyper, (default_steps if chosen else _default_steps(fn))


def _solver_steps(fn, name: str, steps, default_steps, most):
    """The step count: --steps, checked against the solver and the prior's ``most`` timesteps, or the default
    (cut to ``most``: a default step count fits a model trained with fewer timesteps)."""
    if steps is None:
        return min(default_steps, most) if default_steps is not None and most is not None else default_steps
    if _default_steps(fn) is None and "steps" not in getattr(fn, "ranges", {}):  # not EPLL's schedule length
        raise RestoreError(f"--steps is not used by the {name} solver")
    if steps < 1 or (most is not None and steps > most):
        raise RestoreError(f"--steps must be between 1 and {most} for this prior, got {steps}" if most
                           else f"--steps must be a positive integer, got {steps}")
    return steps


def _draw(fn, name: str, y, op, prior, samples: int, steps, hyper: dict, seed: int, dev):
    """``samples`` runs of the solver on y as (samples, C, H, W) on the CPU, the frame only for a valid blur,
    with a progress bar. Samples are drawn in batches of at most 2**18 values (334 digits, one photo),
    which bounds the network's activations; one generator runs through the batches, so the draw is
    reproducible."""
    import torch
    from tqdm.auto import tqdm

    from ..runtime import check_allocation

    shape = op.input_shape(tuple(y.shape))[1:]
    values = math.prod(shape)
    check_allocation(samples * values * 4 * 3, f"{samples} samples of a {'x'.join(map(str, shape))} image",
                     "pass fewer --samples")
    per_batch = max(1, min(samples, (1 << 18) // values))
    # Progress: what the solver declares (RePaint's jumps, EPLL's betas, a PixelCNN's rows), else the steps.
    total = (fn.progress_total(y, op, steps, hyper) if hasattr(fn, "progress_total")
             else steps if steps is not None else 1)
    bar = tqdm(total=total * math.ceil(samples / per_batch), desc=f"{name} ({samples} sample{'s' * (samples > 1)})",
               unit="step", disable=None, leave=False)
    generator = torch.Generator(device=dev).manual_seed(seed)
    parts = []
    for start in range(0, samples, per_batch):
        n = min(per_batch, samples - start)
        parts.append(fn(y.repeat(n, *[1] * (y.dim() - 1)), op, prior, steps=steps, generator=generator,
                        callback=lambda info: bar.update(1), **hyper).detach())
    bar.close()
    return op.field_of_view(torch.cat(parts)).cpu()


#: The restore commands, built from one table: per task, its help and the options that describe its
#: operator, which come after input and output and before the options every task shares (``_SHARED``).
_NOISE = [("noise", Noise, None), ("poisson", Poisson, None)]
TASK_COMMANDS = {
    "inpaint": ("Fill in missing pixels. Without --box/--random/--mask, transparent pixels are the missing ones.",
                [("box", Box, None), ("random", Random, None), ("mask", Mask, None), *_NOISE]),
    "deblur": ("Remove blur by a known kernel (default gaussian:2), with no wrap-around at the borders of a photo.",
               [("kernel", Kernel, None), ("boundary", Boundary, None), *_NOISE]),
    "superres": ("Upsample a low-resolution image by --factor (default 4).",
                 [("factor", Factor, None), ("filter", Filter, None), *_NOISE]),
    "denoise": ("Remove noise; without --noise, sigma_y is estimated from the image.", _NOISE),
    "cs": ("Recover an image from compressed-sensing measurements (the .json written by `restore degrade --task cs`).",
           []),
}
_SHARED = [("spec", Spec, None), ("prior", Prior, "classical"), ("solver", Solver, None), ("steps", Steps, None),
           ("reference", Reference, None), ("json", Json, False), ("device", Device, "auto"), ("seed", Seed, 0),
           ("samples", Samples, 1), ("estimate", Estimate, "mean"), ("param", Param, None), ("resize", Resize, False),
           ("force", Force, False), ("precision", Precision, "fp32"), ("bits", Bits, "auto"), ("stretch", Stretch, None)]


def _task_command(task: str, doc: str, options: list) -> None:
    """Register ``restore TASK``: input, output, the task's operator options, then the shared ones."""
    import inspect

    P = inspect.Parameter
    params = [P("input", P.POSITIONAL_OR_KEYWORD, annotation=Input),
              P("output", P.POSITIONAL_OR_KEYWORD, annotation=Output, default="restored.png")]
    shared = [o for o in _SHARED if not (task == "cs" and o[0] == "force")]  # cs has never taken --force
    params += [P(name, P.POSITIONAL_OR_KEYWORD, annotation=kind, default=default) for name, kind, default in
               [*options, *shared]]

    def command(**kw):
        op_options = {name: kw.pop(name) for name, _, _ in options} | {"seed": kw["seed"]}
        _run(Request(task=task, op_options=op_options, params=tuple(kw.pop("param") or ()), **kw))

    command.__name__, command.__doc__ = task, doc
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {q.name: q.annotation for q in params}
    app.command(name=task)(command)


for _task, (_doc, _options) in TASK_COMMANDS.items():
    _task_command(_task, _doc, _options)
