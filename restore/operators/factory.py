"""One place where a task and its parameters become an operator: :func:`make_operator`. The command line's
options (restore.cli.common._operator, after parsing them), the benchmarks' standard tasks
(restore.tasks.standard_operator) and a saved measurement's spec (:func:`from_spec`) all come through it."""

from __future__ import annotations

import math

import torch

from ..errors import RestoreError
from .base import Composition, Denoising, Operator
from .blur import Blur, ValidBlur
from .cs import CompressedSensing
from .downsample import Downsample
from .mask import Inpainting
from .noise import GaussianNoise, Noise, noise_from_spec
from .phase import PhaseRetrieval

#: The tasks :func:`make_operator` builds (the "type" of an operator's spec, but for compositions).
TASKS = ("inpaint", "deblur", "superres", "denoise", "cs", "phase-retrieval")


def make_operator(task: str, image_shape=None, *, mask: torch.Tensor | None = None,
                  box: tuple[int, int, int, int] | None = None, random: float | None = None,
                  kernel: Blur | torch.Tensor | None = None, boundary: str = "circular", factor: int = 4,
                  filter: str = "box", measurements: int | None = None, oversampling: float = 2.0, seed: int = 0,
                  noise: Noise | None = None) -> Operator:
    """The operator of ``task`` for clean images of shape ``image_shape`` (C, H, W), with noise ``noise``
    (default none).

    - inpaint: the observed pixels ``mask`` (H, W) (True = observed), or a missing ``box`` (X, Y, W, H), or
      a ``random`` fraction missing (seeded), or else a centred square of half the shorter side;
    - deblur: ``kernel`` (a :class:`Blur` or a 2-D array) with a ``boundary``, circular (periodic) or
      valid (the frame of a camera: x is the frame grown by the kernel);
    - superres: downsampling by ``factor`` with ``filter`` (box or bicubic);
    - denoise: the identity;
    - cs: ``measurements`` Gaussian measurements (default n / 4), seeded;
    - phase-retrieval: Fourier magnitudes with ``oversampling``.
    """
    if task == "inpaint":
        if mask is not None:
            op = Inpainting(mask)
        elif box is not None:
            op = Inpainting.box(image_shape, *box)
        elif random is not None:
            op = Inpainting.random(image_shape, random, seed)
        else:
            op = Inpainting.centre_box(image_shape, min(image_shape[-2:]) // 2)
    elif task == "deblur":
        if boundary not in ("circular", "valid"):
            raise RestoreError(f"unknown blur boundary {boundary!r} (known: circular, valid)")
        blur = kernel if isinstance(kernel, Blur) else Blur(kernel)
        op = ValidBlur.of(blur) if boundary == "valid" else blur
    elif task == "superres":
        op = Downsample(factor, filter)
    elif task == "denoise":
        op = Denoising()
    elif task == "cs":
        n = math.prod(image_shape[-3:])
        op = CompressedSensing(n // 4 if measurements is None else measurements, tuple(image_shape), seed)
    elif task == "phase-retrieval":
        op = PhaseRetrieval(oversampling)
    else:
        raise RestoreError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    op.noise = noise if noise is not None else GaussianNoise(0.0)
    return op


_FIELDS = {
    "inpaint": {"type", "mask", "noise"},
    "deblur": {"type", "kernel", "made_by", "boundary", "noise"},
    "superres": {"type", "factor", "filter", "noise"},
    "denoise": {"type", "noise"},
    "cs": {"type", "m", "seed", "image_shape", "noise"},
    "composition": {"type", "outer", "inner", "noise"},
    "phase-retrieval": {"type", "oversampling", "noise"},
}
_REQUIRED = {
    "inpaint": {"mask"}, "deblur": {"kernel"}, "superres": {"factor"}, "denoise": set(),
    "cs": {"m", "image_shape"}, "composition": {"outer", "inner"}, "phase-retrieval": set(),
}


def from_spec(spec: dict, arrays: dict[str, torch.Tensor] | None = None) -> Operator:
    """Rebuild an operator from :meth:`Operator.spec`; {"array": name} entries come from ``arrays``."""
    if not isinstance(spec, dict):
        raise RestoreError(f"an operator spec must be a JSON object, got {type(spec).__name__}")
    arrays = arrays or {}
    kind = spec.get("type")
    if kind not in _FIELDS:
        raise RestoreError(f"unknown operator type {kind!r} (known: {', '.join(_FIELDS)})")
    unknown = sorted(set(spec) - _FIELDS[kind])
    if unknown:
        raise RestoreError(f"operator spec of type {kind!r} has unknown field(s): {', '.join(unknown)}")
    missing = sorted(_REQUIRED[kind] - set(spec))
    if missing:
        raise RestoreError(f"operator spec of type {kind!r} is missing field(s): {', '.join(missing)}")

    def array(field: str) -> torch.Tensor:
        ref = spec[field]
        name = ref.get("array") if isinstance(ref, dict) else None
        if name is None or name not in arrays:
            raise RestoreError(f"operator field {field!r} refers to array {name!r}, which the measurement file does not hold")
        return arrays[name]

    noise = noise_from_spec(spec.get("noise"))
    if kind == "inpaint":
        return make_operator(kind, mask=array("mask"), noise=noise)
    if kind == "deblur":
        kernel = Blur(array("kernel"), description=spec.get("made_by"))
        return make_operator(kind, kernel=kernel, boundary=spec.get("boundary", "circular"), noise=noise)
    if kind == "superres":
        return make_operator(kind, factor=spec["factor"], filter=spec.get("filter", "box"), noise=noise)
    if kind == "cs":
        return make_operator(kind, tuple(spec["image_shape"]), measurements=spec["m"], seed=spec.get("seed", 0),
                             noise=noise)
    if kind == "phase-retrieval":
        return make_operator(kind, oversampling=spec.get("oversampling", 2.0), noise=noise)
    if kind == "denoise":
        return make_operator(kind, noise=noise)
    inner = from_spec(spec["inner"], arrays)
    outer = from_spec(dict(spec["outer"], noise=spec.get("noise")), arrays)
    return Composition(outer, inner)
