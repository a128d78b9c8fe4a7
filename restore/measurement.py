"""Measurements on disk at full precision: float arrays + a JSON spec + a PNG preview.

An 8-bit PNG clips and quantises y (sigma_y = 0.05 noise on a black background loses half its
values below 0), so ``restore degrade`` writes three files for ``-o y.png``:

- ``y.safetensors`` (or ``y.npy``): the float measurement ``y`` and any operator arrays (mask, kernel);
- ``y.json``: the operator and the noise, exactly, naming the array files (relative paths);
- ``y.png``: a preview for people; an inpainting preview carries the mask as its alpha channel.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import io, operators
from .errors import RestoreError

FORMAT = "restore.measurement"
VERSION = 1
_FIELDS = {"format", "version", "task", "image_shape", "operator", "arrays", "preview", "seed", "source", "crop", "bits"}
_REQUIRED = {"format", "version", "task", "image_shape", "operator", "arrays"}


def preview(y: torch.Tensor, operator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """An image a person can look at: (image (1, C, H, W) in [0, 1], alpha or None)."""
    if y.dim() != 4:  # compressed sensing: show the pseudo-inverse, not the vector
        return operator.A_pinv(y).clamp(0, 1), None
    alpha = operator.mask[None].expand(1, 1, *y.shape[-2:]) if hasattr(operator, "mask") else None
    return y.clamp(0, 1), alpha


def paths_for(png_path: str | Path, float_format: str = "safetensors") -> dict[str, Path]:
    """The files ``save`` writes for an output name: png, json and the float data file."""
    png = Path(png_path)
    if float_format not in ("safetensors", "npy"):
        raise RestoreError(f"unknown float format {float_format!r} (known: safetensors, npy)")
    if png.suffix.lower() != ".png":
        raise RestoreError(f"the measurement preview must be a .png file, got '{png}'")
    return {"png": png, "json": png.with_suffix(".json"), "data": png.with_suffix("." + float_format)}


def save(png_path, y: torch.Tensor, operator, *, task: str, image_shape, seed=None, source=None,
         float_format: str = "safetensors", crop: dict | None = None, bits: int = 8) -> dict[str, Path]:
    """Write the measurement y of one image (batch 1) with its spec and preview; returns the paths.
    ``crop`` records how the source image was cropped before the measurement (super-resolution's modcrop);
    ``bits`` is the source image's bit depth, the preview's and that of what is restored from the spec."""
    paths = paths_for(png_path, float_format)
    tensors = {"y": y.detach().cpu().float()}
    tensors.update({k: v.detach().cpu().float() for k, v in operator.arrays().items()})
    if float_format == "safetensors":
        targets = {paths["data"]: tensors}
    else:
        # One .npy file per array: y.npy, y.mask.npy, ...
        targets = {paths["data"] if name == "y" else paths["data"].with_suffix(f".{name}.npy"): {name: t}
                   for name, t in tensors.items()}
    files = {name: target.name for target, group in targets.items() for name in group}
    for p in [paths["png"], paths["json"], *targets]:
        io.output_path_check(p)
    spec = {
        "format": FORMAT,
        "version": VERSION,
        "task": task,
        "image_shape": list(image_shape[-3:]),
        "operator": operator.spec(),
        "arrays": files,
        "preview": paths["png"].name,
        "seed": seed,
        "source": str(source) if source is not None else None,
        **({"crop": crop} if crop is not None else {}),
        **({"bits": bits} if bits != 8 else {}),  # 8 is the default: such a spec reads in older versions too
    }
    image, alpha = preview(y, operator)
    # The arrays, preview and spec land together or not at all: a failed command leaves no partial
    # measurement behind.
    with io.together():
        for target, group in targets.items():
            io.save_arrays(target, group)
        io.write_png(paths["png"], image, alpha=alpha, bits=bits)
        io.write_json(paths["json"], spec)
    return paths


def load(json_path) -> tuple[torch.Tensor, operators.Operator, dict]:
    """Read a measurement spec and its float arrays: (y, operator, spec)."""
    path = Path(json_path)
    if not path.exists():
        raise RestoreError(f"measurement spec '{path}' does not exist")
    if path.is_dir():
        raise RestoreError(f"measurement spec '{path}' is a directory, not a JSON file")
    try:
        spec = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RestoreError(f"measurement spec '{path}' is not valid JSON ({exc.__class__.__name__})") from None
    except RecursionError:
        raise RestoreError(f"measurement spec '{path}' is nested too deeply to be a measurement spec") from None
    if not isinstance(spec, dict):
        raise RestoreError(f"measurement spec '{path}' must hold a JSON object")
    unknown = sorted(set(spec) - _FIELDS)
    missing = sorted(_REQUIRED - set(spec))
    if unknown:
        raise RestoreError(f"measurement spec '{path}' has unknown field(s): {', '.join(unknown)}")
    if missing:
        raise RestoreError(f"measurement spec '{path}' is missing field(s): {', '.join(missing)}")
    if spec["format"] != FORMAT or spec["version"] != VERSION:
        raise RestoreError(f"measurement spec '{path}' is not a {FORMAT} version {VERSION} file")
    files = spec["arrays"]
    if not isinstance(files, dict) or "y" not in files:
        raise RestoreError(f"measurement spec '{path}' must name the array file of 'y' under 'arrays'")
    if not all(isinstance(file, str) and file for file in files.values()):
        raise RestoreError(f"measurement spec '{path}': 'arrays' must map each array name to a file name")
    shape = spec["image_shape"]
    if not (isinstance(shape, list) and len(shape) == 3
            and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise RestoreError(f"measurement spec '{path}': 'image_shape' must be [C, H, W], three positive integers")
    if not isinstance(spec["task"], str):
        raise RestoreError(f"measurement spec '{path}': 'task' must be a task name")
    bits = spec.get("bits", 8)
    if not (type(bits) is int and bits in (8, 16)):
        raise RestoreError(f"measurement spec '{path}': 'bits' must be 8 or 16")
    arrays: dict[str, torch.Tensor] = {}
    folder = path.parent.resolve()
    for name, file in files.items():
        # Array files lie beside the spec: a name that leads elsewhere (../x.npy, /etc/x) is refused.
        if Path(file).is_absolute() or folder not in (folder / file).resolve().parents:
            raise RestoreError(f"measurement spec '{path}': the array file {file!r} must lie in the spec's own "
                               "folder (a plain file name)")
        data = io.load_arrays(path.parent / file)
        if "array" in data and len(data) == 1:  # a .npy file holds one unnamed array
            data = {name: data["array"]}
        if name not in data:
            raise RestoreError(f"array file '{path.parent / file}' does not hold the array {name!r}")
        array = data[name]
        if array.is_complex() or (name == "y" and not array.is_floating_point()):
            kind = str(array.dtype).replace("torch.", "")
            raise RestoreError(f"the array {name!r} in '{path.parent / file}' holds {kind} values: arrays are real, "
                               "and a measurement is floating point (float16, float32 or float64)")
        if not torch.isfinite(array).all():
            raise RestoreError(f"the array {name!r} in '{path.parent / file}' holds NaN or infinite values")
        # float16 and bfloat16 are ways to store; the operators and solvers compute in float32 or float64.
        arrays[name] = array.float() if array.dtype in (torch.float16, torch.bfloat16) else array
    try:
        op = operators.from_spec(spec["operator"], arrays)
    except RestoreError:
        raise
    # A hand-edited spec can hold values of the wrong type (a string factor, a list as noise).
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise RestoreError(f"measurement spec '{path}' has an invalid operator ({reason})") from None
    y = arrays["y"]
    shape = tuple(shape)
    op.check_input((1, *shape))
    # One image per measurement file: the command line restores one image.
    expected = op.measurement_shape((1, *shape))
    if tuple(y.shape) != expected:
        raise RestoreError(f"the measurement in '{path}' has shape {tuple(y.shape)}, but the operator expects {expected}")
    return y, op, spec
