"""The natural-image benchmark: photographs under the protocols of the restoration literature.

Settings (the test sets of ``shared/data/natural``; no training image is used):

- gray denoising on BSD68 and Set12 at sigma 15, 25 and 50 (on 0-255), colour denoising on CBSD68 at 25;
  the noisy image is x + sigma n, unclipped and unquantised, as DnCNN (Zhang et al. 2017) evaluates;
- deblurring of Set12 with each of the 8 camera-shake kernels of Levin et al. (2009), noise sigma 2.55
  and 7.65: a circular blur (synthetic, as IRCNN and DPIR blur), 96 measurements per sigma;
- 4x super-resolution of Set12 and CBSD68: each image cropped to a multiple of 4 ("modcrop"), bicubic
  downsampling as MATLAB's imresize (antialiased Keys kernel, mirrored borders), rounded to 8 bits;
  PSNR and SSIM with a 4-pixel border shaved, as the super-resolution literature does;
- inpainting of CBSD68: 50% and 80% of the pixels missing at random, and a centred box of a quarter
  of the area (half the height by half the width), noiseless.

Every estimate is clipped to [0, 1] and rounded to 8 bits before PSNR and SSIM. A measurement is drawn
from a generator seeded by the setting's name and the image's index, so every solver sees the same y
and a rerun the same numbers. Figures are kept per measurement in one JSON line each
(``cells.jsonl``), with the solver's settings: an interrupted run resumes where it stopped, and a
solver whose defaults changed is run again.

The classical baselines are the ones a practitioner would pick for photographs: BM3D, TV, Wiener,
Richardson-Lucy, biharmonic and bicubic interpolation, and the pseudo-inverse as the floor. Lasso is
left out (``NOT_PHOTO_BASELINES``): it is the compressed-sensing reference, its Haar-wavelet weight tuned
on MNIST digits, not on photographs; ``--solvers lasso`` still runs it.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import io, metrics
from . import operators as O
from .operators import functional as Fn
from .data import image_files, levin_kernel, natural_folder
from .errors import RestoreError

#: Classical solvers that the benchmark runs only when asked for by name, and why.
NOT_PHOTO_BASELINES = {"lasso": "the compressed-sensing reference, its weight tuned on MNIST digits"}


#: Published figures for the same protocol (mean PSNR, dB), by setting and method, with the source.
PUBLISHED = {
    "denoise/bsd68/sigma15": {"BM3D": 31.07, "EPLL": 31.21, "DnCNN": 31.73, "DRUNet": 31.91},
    "denoise/bsd68/sigma25": {"BM3D": 28.57, "EPLL": 28.68, "DnCNN": 29.23, "DRUNet": 29.48},
    "denoise/bsd68/sigma50": {"BM3D": 25.62, "EPLL": 25.67, "DnCNN": 26.23, "DRUNet": 26.59},
    "denoise/set12/sigma15": {"BM3D": 32.37},
    "denoise/set12/sigma25": {"BM3D": 29.97},
    "denoise/set12/sigma50": {"BM3D": 26.72},
    "denoise/cbsd68/sigma25": {"CBM3D": 30.71},
}
PUBLISHED_SOURCES = (
    "BM3D, EPLL and DnCNN on BSD68 and Set12, CBM3D on CBSD68: Zhang et al. (2017), DnCNN, Tables 2, 3 and 5; "
    "DRUNet: Zhang et al. (2021), DPIR, Table 2."
)

#: The literature's shave for super-resolution: this many pixels of each border are left out of the metrics.
SR_SHAVE = 4


@dataclass
class Setting:
    """One benchmark setting: a task on a test set, and how to degrade item i (an image, or an image and
    a kernel) of it."""

    name: str
    task: str
    data: str
    description: str
    operator: Callable[[tuple, int], O.Operator]  # (image shape (C, H, W), item) -> operator
    items_per_image: int = 1
    modcrop: int = 1
    quantise: bool = False
    shave: int = 0


def _denoise(sigma):
    return lambda shape, item: O.Denoising(O.GaussianNoise(sigma / 255))


def _deblur(sigma):
    return lambda shape, item: O.Blur(levin_kernel(item % 8 + 1), O.GaussianNoise(sigma / 255),
                                      description={"kind": "levin", "index": item % 8 + 1})


def _random(fraction):
    return lambda shape, item: O.Inpainting.random(shape, fraction, seed=item)


def _box(shape, item):
    C, H, W = shape
    return O.Inpainting.box(shape, W // 4, H // 4, W // 2, H // 2)


def settings() -> list[Setting]:
    """Every setting of the benchmark, in table order."""
    out = []
    for data in ("bsd68", "set12"):
        for sigma in (15, 25, 50):
            out.append(Setting(f"denoise/{data}/sigma{sigma}", "denoise", data, f"gray, sigma {sigma}", _denoise(sigma)))
    out.append(Setting("denoise/cbsd68/sigma25", "denoise", "cbsd68", "colour, sigma 25", _denoise(25)))
    for sigma in (2.55, 7.65):
        out.append(Setting(f"deblur/set12/sigma{sigma}", "deblur", "set12", f"Levin kernels 1-8 (circular), sigma {sigma}",
                           _deblur(sigma), items_per_image=8))
    for data in ("set12", "cbsd68"):
        out.append(Setting(f"superres/{data}/x4", "superres", data, "4x bicubic, modcrop, 8-bit, 4-pixel shave",
                           lambda shape, item: O.Downsample(4, "bicubic"), modcrop=4, quantise=True, shave=SR_SHAVE))
    out.append(Setting("inpaint/cbsd68/random50", "inpaint", "cbsd68", "50% of pixels missing", _random(0.5)))
    out.append(Setting("inpaint/cbsd68/random80", "inpaint", "cbsd68", "80% of pixels missing", _random(0.8)))
    out.append(Setting("inpaint/cbsd68/box", "inpaint", "cbsd68", "centred box, a quarter of the area", _box))
    return out


def test_images(data: str, modcrop: int = 1, root=None) -> tuple[list[torch.Tensor], list[str]]:
    """The images of a named test set as (1, C, H, W) floats in [0, 1], cropped to a multiple of ``modcrop``
    (top-left kept, as MATLAB's modcrop), and their file names."""
    from .data import NATURAL_SETS

    if not NATURAL_SETS[data].startswith("test/"):
        raise RestoreError(f"{data} is a training set: the benchmark runs on test sets only")
    folder = natural_folder(data, root)
    files = [rel for rel, _ in image_files(folder)]
    return [Fn.modcrop(io.read_image(folder / rel)[0], modcrop) for rel in files], files


def measurement(setting: Setting, x: torch.Tensor, item: int) -> tuple[O.Operator, torch.Tensor]:
    """The operator and the measurement y of item ``item`` (image x), drawn from a seeded generator."""
    op = setting.operator(tuple(x.shape[1:]), item)
    seed = zlib.crc32(setting.name.encode()) * 1000 + item
    y = op(x.double(), generator=torch.Generator().manual_seed(seed)).float()
    if setting.quantise:
        y = (y.clamp(0, 1) * 255).round() / 255
    return op, y


def score(x_hat: torch.Tensor, x: torch.Tensor, shave: int = 0) -> tuple[float, float]:
    """PSNR and SSIM of the estimate clipped and rounded to 8 bits, ``shave`` border pixels left out."""
    x_hat = (x_hat.clamp(0, 1) * 255).round() / 255
    if shave:
        x_hat, x = x_hat[..., shave:-shave, shave:-shave], x[..., shave:-shave, shave:-shave]
    return float(metrics.psnr(x_hat, x)[0]), float(metrics.ssim(x_hat, x)[0])


class Cells:
    """Per-measurement figures in a JSONL file: (setting, method, item) -> record, appended as computed.

    ``current(setting, method)`` are the records computed with the settings of the newest one: when a
    method's settings change (a new default, a retrained prior) and only some of its cells have been
    computed again, the others no longer count towards its row."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[tuple[str, str], dict[int, dict]] = {}  # (setting, method) -> item -> record
        self.newest: dict[tuple[str, str], dict] = {}  # (setting, method) -> the settings of its newest record
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    self._keep(json.loads(line))

    def _keep(self, r: dict) -> None:
        self.records.setdefault((r["setting"], r["method"]), {})[r["item"]] = r
        self.newest[(r["setting"], r["method"])] = r.get("settings")

    def current(self, setting: str, method: str) -> list[dict]:
        want = self.newest.get((setting, method))
        return [r for r in self.records.get((setting, method), {}).values() if r.get("settings") == want]

    def get(self, setting: str, method: str, item: int, settings: dict) -> dict | None:
        r = self.records.get((setting, method), {}).get(item)
        return r if r is not None and r.get("settings") == settings else None

    def add(self, record: dict) -> None:
        self._keep(record)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def method(solver: str, prior: str | None = None, steps: int | None = None, shape=None,
           overrides: dict | None = None, patches: int | None = None) -> tuple[str, Callable, dict] | None:
    """(row name, solve(y, op), settings) of a classical solver (``prior`` None), or of a learned prior with a
    solver on images of ``shape`` (C, H, W), or None where the prior cannot serve them; ``overrides`` set
    hyperparameters (they are in the settings, not in the name). A learned method's settings name the
    prior's training steps, so a retrained prior's cells are computed again. ``patches``: a diffusion prior
    used on random partitions into patches of that size (PaDIS, :mod:`restore.priors.padis`), not on the
    whole image. A prior trained on stretched images (``restore train --stretch``) restores each measurement
    stretched (:mod:`restore.stretch`), as the CLI does."""
    from .bench import solver_settings
    from .priors import load_prior
    from .solvers import CLASSICAL, PRIOR_SOLVERS
    from .stretch import stretch, trained_stretched, unstretch

    overrides = overrides or {}
    if prior is None:
        fn = CLASSICAL[solver]
        return solver, lambda y, op: fn(y, op, None, **overrides), solver_settings(fn, steps, overrides)
    model = load_prior(prior, image_shape=shape)  # a gray photo prior comes fitted to colour images
    if model.image_shape[0] != shape[0] or not (getattr(model, "any_size", False) or model.image_shape == shape):
        return None
    fn = PRIOR_SOLVERS[solver]
    stretching = trained_stretched(model)  # as the CLI restores with a prior trained on stretched images
    settings = {**solver_settings(fn, steps, overrides, math.prod(shape)), "prior_steps": model.info().get("training_steps"),
                **({"patches": patches} if patches else {}), **({"stretch": True} if stretching else {})}
    kwargs = {**({"steps": steps} if steps is not None else {}), **overrides}

    def solve(y, op):
        used = model.with_patches(patches) if patches else model  # the same partitions for every image
        if stretching:
            y, op, record = stretch(y, op, why=f"the prior {prior!r}, trained stretched,")
        with torch.no_grad() if solver in ("tweedie", "ddrm", "ddnm", "epll", "dpir") else torch.enable_grad():
            x_hat = fn(y, op, used, generator=torch.Generator().manual_seed(0), **kwargs).detach()
        return unstretch(x_hat, record) if stretching else x_hat

    name = f"{prior}{f' (PaDIS {patches})' if patches else ''} + {solver}" + (f" {steps}" if steps is not None else "")
    return name, solve, settings


def run(*, out: Path, setting_names: list[str] | None = None, solvers: list[str] | None = None,
        max_minutes: float | None = None, force: bool = False, log=print,
        learned: list[tuple] = ()) -> Cells:
    """Compute every missing (setting, solver, measurement) cell, until ``max_minutes`` is spent: the classical
    ``solvers`` (default all; none when only ``learned`` methods are asked for), and each (prior, solver,
    steps) or (prior, solver, steps, hyperparameter overrides) of ``learned``; overrides are named in the
    row's method."""
    from tqdm.auto import tqdm

    from .runtime import machine
    from .solvers import CLASSICAL, PRIOR_SOLVERS, missing_capabilities

    # Kept in each cell: a table gathers cells of several runs, on several machines and thread counts.
    here = {"machine": machine(threads=False), "threads": torch.get_num_threads()}
    chosen = [s for s in settings() if setting_names is None or any(s.name.startswith(n) for n in setting_names)]
    if not chosen:
        raise RestoreError(f"no benchmark setting matches {setting_names}; known: {', '.join(s.name for s in settings())}")
    unknown = sorted(set(solvers or ()) - set(CLASSICAL))
    if unknown:
        raise RestoreError(f"unknown classical solver(s) {', '.join(unknown)}; known: {', '.join(CLASSICAL)}")
    cells = Cells(Path(out) / "cells.jsonl")
    t_start = time.monotonic()
    default = [n for n in CLASSICAL if n not in NOT_PHOTO_BASELINES]
    for setting in chosen:
        images, names = test_images(setting.data, setting.modcrop)
        op0 = setting.operator(tuple(images[0].shape[1:]), 0)  # what the solvers must handle
        methods = []
        for name in (solvers if solvers is not None else [] if learned else default):
            if not missing_capabilities(CLASSICAL[name], op0):
                methods.append(method(name))
        for prior, solver, steps, *more in learned:
            overrides = more[0] if more else {}
            if not missing_capabilities(PRIOR_SOLVERS[solver], op0):
                found = method(solver, prior, steps, tuple(images[0].shape[1:]), overrides)
                if found is not None:
                    name, solve, config = found
                    label = " ".join([name, *(f"{k}={v}" for k, v in overrides.items())])
                    methods.append((label, solve, config))
        for name, solve, config in methods:
            items = [(i, j) for i in range(len(images)) for j in range(setting.items_per_image)]
            todo = [(i, j) for i, j in items
                    if force or cells.get(setting.name, name, i * setting.items_per_image + j, config) is None]
            if not todo:
                continue
            for i, j in tqdm(todo, desc=f"{setting.name} {name}", unit="measurement", leave=False):
                if max_minutes is not None and time.monotonic() - t_start > 60 * max_minutes:
                    log(f"stopped by the time budget ({max_minutes} min); run again to continue")
                    return cells
                item = i * setting.items_per_image + j
                x = images[i]
                op, y = measurement(setting, x, item)
                t0 = time.perf_counter()
                x_hat = op.field_of_view(solve(y, op))
                seconds = time.perf_counter() - t0
                p, s = score(x_hat, x, setting.shave)
                cells.add({"setting": setting.name, "method": name, "item": item, "image": names[i], "psnr": p,
                           "ssim": s, "seconds": seconds, "settings": config, **here})
            done = [cells.records[(setting.name, name)][k] for k in range(len(items))]
            log(f"{setting.name} {name}: {np.mean([r['psnr'] for r in done]):.2f} dB, "
                f"{np.median([r['seconds'] for r in done]):.2f} s per measurement")
    return cells


def summary(cells: Cells) -> list[dict]:
    """One row per (setting, method) with every measurement done: mean PSNR / SSIM, median seconds."""
    # Measurements per setting, from the file lists (decoding every test image only to count them is slow).
    counts = {s.name: len(image_files(natural_folder(s.data))) * s.items_per_image for s in settings()}
    groups = {key: cells.current(*key) for key in cells.newest}
    rows = []
    for s in settings():
        for (setting, method), records in groups.items():
            if setting != s.name:
                continue
            rows.append({"setting": setting, "method": method, "n": len(records), "of": counts[setting],
                         "psnr": float(np.mean([r["psnr"] for r in records])),
                         "ssim": float(np.mean([r["ssim"] for r in records])),
                         "seconds": float(np.median([r["seconds"] for r in records])),
                         # A learned method's training steps: rows of one prior's weights before and after a
                         # retraining can share a name (an old default's row keeps the weights it ran with).
                         "prior_steps": (records[0].get("settings") or {}).get("prior_steps")})
    return rows


def markdown(rows: list[dict]) -> str:
    """The table: per setting, methods by PSNR (complete ones in bold when best), published figures beside."""
    lines = ["| setting | method | prior steps | PSNR (dB) | SSIM | s / measurement (median) | done | published (dB) |",
             "|---|---|---|---|---|---|---|---|"]
    for s in settings():
        mine = sorted((r for r in rows if r["setting"] == s.name), key=lambda r: -r["psnr"])
        complete = [r for r in mine if r["n"] == r["of"]]
        best = max((r["psnr"] for r in complete), default=None)
        published = ", ".join(f"{k} {v:.2f}" for k, v in PUBLISHED.get(s.name, {}).items())
        for k, r in enumerate(mine):
            bold = "**" if r["n"] == r["of"] and r["psnr"] == best else ""
            done = "all" if r["n"] == r["of"] else f"{r['n']} of {r['of']}"
            steps = f"{r['prior_steps']:,}" if r.get("prior_steps") is not None else "-"
            lines.append(f"| {s.name} | {r['method']} | {steps} | {bold}{r['psnr']:.2f}{bold} | {r['ssim']:.3f} | "
                         f"{r['seconds']:.2f} | {done} | {published if k == 0 else ''} |")
    return "\n".join(lines)
