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
_FIELDS = {"format", "version", "task", "image_shape", "operator", "arrays", "preview", "seed", "source"}
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
         float_format: str = "safetensors") -> dict[str, Path]:
    """Write the measurement y of one image (batch 1) with its spec and preview; returns the paths."""
    paths = paths_for(png_path, float_format)
    for p in paths.values():
        io.output_path_check(p)
    tensors = {"y": y.detach().cpu().float()}
    tensors.update({k: v.detach().cpu().float() for k, v in operator.arrays().items()})
    if float_format == "safetensors":
        files = {name: paths["data"].name for name in tensors}
        io.save_arrays(paths["data"], tensors)
    else:
        # One .npy file per array: y.npy, y.mask.npy, ...
        files = {}
        for name, t in tensors.items():
            target = paths["data"] if name == "y" else paths["data"].with_suffix(f".{name}.npy")
            io.save_arrays(target, {name: t})
            files[name] = target.name
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
    }
    image, alpha = preview(y, operator)
    io.write_png(paths["png"], image, alpha=alpha)
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
    arrays: dict[str, torch.Tensor] = {}
    for name, file in files.items():
        data = io.load_arrays(path.parent / file)
        if "array" in data and len(data) == 1:  # a .npy file holds one unnamed array
            data = {name: data["array"]}
        if name not in data:
            raise RestoreError(f"array file '{path.parent / file}' does not hold the array {name!r}")
        arrays[name] = data[name]
    op = operators.from_spec(spec["operator"], arrays)
    y = arrays["y"]
    shape = tuple(spec["image_shape"])
    op.check_input((1, *shape))
    expected = op.measurement_shape((y.shape[0], *shape))
    if tuple(y.shape) != expected:
        raise RestoreError(f"the measurement in '{path}' has shape {tuple(y.shape)}, but the operator expects {expected}")
    return y, op, spec
