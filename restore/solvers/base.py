"""What every solver shares: the call shape, capability requirements and noise handling.

A solver is a plain function
``solver(y, operator, prior, *, steps, generator, callback, **hyperparameters) -> x_hat``
with x_hat of shape (B, C, H, W) in [0, 1]. It states the operator capabilities it needs
(methods or attributes such as ``A_adjoint``, ``otf``, ``mask``) with :func:`requires`, and
:func:`check_compatible` turns a missing one into a one-line message naming what does work. It states
the range of each numeric hyperparameter with :func:`hyperparameters`, which checks every call.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Callable, Optional

import torch

from ..errors import RestoreError

#: A solver calls ``callback(info)`` after each iteration with a dict, as k-diffusion's samplers do: ``i``
#: (the iteration, from 0) and, where the solver has them, ``x`` (its current estimate, an image in [0, 1]),
#: ``x0_hat`` (a diffusion solver's denoised estimate, an image in [0, 1]) and ``t`` (its timestep).
Callback = Optional[Callable[[dict], None]]


def report(callback: Callback, i: int, **state) -> None:
    """Call ``callback`` (if any) with ``{"i": i, **state}``."""
    if callback is not None:
        callback({"i": i, **state})


def requires(*capabilities: str, noise: tuple[str, ...] = ("gaussian", "poisson"), prior: tuple[str, ...] = ()):
    """Mark a solver with the operator capabilities and noise models it works with, and the prior
    methods it calls (``prior_needs``; empty for the classical solvers, which use no prior)."""

    def mark(fn):
        fn.requires = capabilities
        fn.noise_models = noise
        fn.prior_needs = prior
        return fn

    return mark


def progress(total: Callable):
    """Mark a solver whose callback count is not its ``steps``: ``total(y, operator, steps, hyperparameters)``
    says how many times it calls back (RePaint's jumps, EPLL's schedule of beta), for progress bars."""

    def mark(fn):
        fn.progress_total = total
        return fn

    return mark


def missing_capabilities(solver, operator) -> list[str]:
    """Capabilities the solver needs that the operator lacks (empty if compatible)."""
    missing = [c for c in getattr(solver, "requires", ()) if not hasattr(operator, c)]
    if operator.noise.kind not in getattr(solver, "noise_models", ("gaussian", "poisson")):
        missing.append(f"{operator.noise.kind} noise")
    return missing


def check_compatible(name: str, solver, operator, candidates: dict) -> None:
    """Refuse a solver/operator pair that cannot work, naming the solvers that can."""
    missing = missing_capabilities(solver, operator)
    if missing:
        usable = [n for n, s in candidates.items() if not missing_capabilities(s, operator)]
        raise RestoreError(
            f"solver {name!r} cannot handle the {operator.name} operator (it needs {', '.join(missing)}); "
            f"solvers that can: {', '.join(usable) or 'none'}"
        )


def check_measurement(y: torch.Tensor, operator, prior) -> tuple[int, ...]:
    """The shape (B, C, H, W) of the images to restore, after checking that the operator takes the
    prior's images and that y has the shape it maps them to. A prior of images of any size
    (``any_size``) restores the size the operator gives from y."""
    if getattr(prior, "any_size", False):
        shape = tuple(operator.input_shape(tuple(y.shape)))
        if shape[1] != prior.image_shape[0]:
            kind = {1: "gray", 3: "colour"}
            raise RestoreError(f"the prior models {kind.get(prior.image_shape[0], prior.image_shape[0])} images, "
                               f"the measurement is of {kind.get(shape[1], shape[1])} ones")
        operator.check_input(shape)
        return shape
    shape = (y.shape[0], *prior.image_shape)
    operator.check_input(shape)
    expected = tuple(operator.measurement_shape(shape))
    if tuple(y.shape) != expected:
        raise RestoreError(f"the measurement has shape {tuple(y.shape)}, but the operator maps the prior's "
                           f"{'x'.join(map(str, prior.image_shape[1:]))} images to {expected}")
    return shape


def effective_sigma(y: torch.Tensor, operator) -> float:
    """sigma_y of Gaussian noise, or for Poisson noise the root mean variance sqrt(mean(y) / gain)."""
    if operator.noise.kind == "poisson":
        return float((y.clamp_min(0).mean() / operator.noise.gain).sqrt())
    return float(operator.noise.sigma)


_INTERVAL = re.compile(r"^([\[(])\s*(-?inf|[-+0-9.e]+)\s*,\s*(-?inf|[-+0-9.e]+)\s*([\])])$")


def _interval(text: str):
    """'[0, 1]', '(0, inf)', ... as a membership test."""
    found = _INTERVAL.match(text)
    if not found:
        raise ValueError(f"not an interval: {text!r}")
    left, low, high, right = found.groups()
    low, high = float(low), float(high)
    return lambda v: (low <= v if left == "[" else low < v) and (v <= high if right == "]" else v < high)


def hyperparameters(**ranges: str):
    """Declare the range of a solver's numeric hyperparameters, e.g. ``@hyperparameters(eta="[0, 1]",
    lam="(0, inf)")``, and check them on every call (a None keeps its meaning, "the solver chooses"):
    a value outside, or not finite, is a RestoreError naming the solver, the value and the range.
    ``solver.ranges`` holds the declarations (``restore`` prints them in its errors)."""
    tests = {name: _interval(text) for name, text in ranges.items()}  # a malformed one fails at import

    def mark(fn):
        @functools.wraps(fn)
        def checked(*args, **kwargs):
            check_hyperparameters(checked, kwargs)
            return fn(*args, **kwargs)

        checked.ranges = dict(ranges)
        checked.range_tests = tests
        return checked

    return mark


def check_hyperparameters(solver, values: dict) -> None:
    """Refuse a value outside the range the solver declares (see :func:`hyperparameters`)."""
    for name, inside in getattr(solver, "range_tests", {}).items():
        value = values.get(name)
        if value is None or isinstance(value, str):
            continue
        if not (math.isfinite(float(value)) and inside(value)):
            raise RestoreError(f"{solver.__name__.replace('_', '-')}: {name} must lie in {solver.ranges[name]}, "
                               f"got {value}")


def keep_observed(solver):
    """The solver with a final data-consistency step for noiseless inpainting: every returned image
    equals y on the observed pixels, x = m * y + (1 - m) * x.

    A noiselessly observed pixel has no posterior uncertainty, yet guided samplers (DPS, PiGDM) only
    pull their samples towards y, and latent or Langevin solvers reach it approximately, so single
    samples differed from observed values by up to 0.44 and a std map was brightest where the user gave
    the pixels. DDNM and RePaint end with this same replacement (Wang et al. 2023; Lugmayr et al.
    2022). With noise (sigma_y > 0, or Poisson) y is not the truth and nothing is replaced.
    """

    @functools.wraps(solver)
    def consistent(y, operator, prior, *args, **kwargs):
        x = solver(y, operator, prior, *args, **kwargs)
        mask, noise = getattr(operator, "mask", None), getattr(operator, "noise", None)
        if mask is None or getattr(noise, "kind", None) != "gaussian" or getattr(noise, "sigma", 1.0) != 0:
            return x
        m = mask.to(device=x.device, dtype=x.dtype)
        return m * y.to(x) + (1 - m) * x

    return consistent


#: Missing pixels farther than this many pixels from every observed one make a large hole: there the start
#: of an iterative solver is TV's fill, not the biharmonic one, which bends far past the hole's border values.
#: On two held-out colour photos with a centred quarter-area box (benchmarks/results/tune/photo.md): TV 23.32
#: dB, biharmonic 20.21; DPIR (24 steps, the colour DDPM) 23.44 from TV, 20.28 from biharmonic.
LARGE_HOLE = 8


def has_large_hole(mask: torch.Tensor, radius: int = LARGE_HOLE) -> bool:
    """Whether some pixel missing in every channel of ``mask`` (C, H, W; 1 = observed) lies farther than
    ``radius`` pixels (in the max norm) from every observed pixel."""
    observed = mask.amax(0)[None, None].float()
    near = torch.nn.functional.max_pool2d(observed, 2 * radius + 1, stride=1, padding=radius)
    return bool((near == 0).any())


def initial_image(y: torch.Tensor, operator, init: str = "auto") -> torch.Tensor:
    """The starting image of an iterative solver (EPLL, DPIR). ``init`` "auto": y where it is one (denoising,
    circular blur), y with its edge pixels repeated to x's frame for a valid blur, missing pixels filled by
    biharmonic inpainting (by TV where a hole is large, see :data:`LARGE_HOLE`), else the pseudo-inverse;
    the name of a classical solver (e.g. "tv"): its estimate, a warm start."""
    if init == "auto" and hasattr(operator, "mask") and has_large_hole(operator.mask):
        init = "tv"
    if init != "auto":
        from . import CLASSICAL

        if init not in CLASSICAL:
            raise RestoreError(f"init must be auto or a classical solver ({', '.join(CLASSICAL)}), got {init!r}")
        check_compatible(init, CLASSICAL[init], operator, CLASSICAL)
        return CLASSICAL[init](y, operator, None).clamp(0, 1)
    if hasattr(operator, "extend"):
        return operator.extend(y)
    if hasattr(operator, "mask"):
        from .classical import biharmonic

        return biharmonic(y, operator)
    shape = operator.input_shape(tuple(y.shape))
    if tuple(shape) == tuple(y.shape):
        return y.clone()
    return operator.A_pinv(y).clamp(0, 1)


def context_tiles(H: int, W: int, tile: int, margin: int) -> list[tuple[tuple[slice, slice], ...]]:
    """How a local method too large for a whole H x W image runs in pieces: for each ``tile`` x ``tile`` core
    (smaller at the right and bottom), (window, inner, core) as (rows, columns) slices: the window is the
    core with ``margin`` pixels of context on every side (cut at the image's border), ``inner`` the core's
    place in the window, ``core`` its place in the image. The result of a window is kept on its core only.
    One piece, the whole image, when it has at most ``tile`` ** 2 pixels."""
    if H * W <= tile * tile:
        whole = (slice(0, H), slice(0, W))
        return [(whole, whole, whole)]
    pieces = []
    for top in range(0, H, tile):
        for left in range(0, W, tile):
            t0, l0 = max(0, top - margin), max(0, left - margin)
            pieces.append(((slice(t0, top + tile + margin), slice(l0, left + tile + margin)),
                           (slice(top - t0, top - t0 + tile), slice(left - l0, left - l0 + tile)),
                           (slice(top, top + tile), slice(left, left + tile))))
    return pieces
