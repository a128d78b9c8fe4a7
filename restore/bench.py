"""``restore bench``: every compatible (prior, solver) pair and the classical baselines on the same
images and measurements, with a JSON of every figure, a Markdown table and a self-contained HTML
report with pictures.

Each cell (task, method, steps, images, samples) is cached under ``OUT/cells/`` (or a folder
several tables share) as JSON plus its first estimates (safetensors), keyed by the prior's training
steps, so a rerun or an interrupted run computes only what is missing; a cell records its solver's
settings (defaults included) and is recomputed when they change. Metrics per cell: PSNR and SSIM of
the estimate (the mean of ``samples`` posterior samples for samplers), PSNR of one sample,
calibration (the share of true pixels inside the samples' 95% predictive interval, which an exact
posterior sampler meets for any number of samples: ``metrics.coverage``), seconds per image, network
evaluations per sample, and for MNIST the accuracy of the shipped classifier on the restored digits
against the originals' labels (does the digit keep its identity?).
"""

from __future__ import annotations

import base64
import html
import inspect
import io as _io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import io, metrics
from .errors import RestoreError
from .tasks import STANDARD, standard_operator

#: Images kept per cell for the picture grids.
SHOWN = 6

#: The step counts of the papers (DPS: Chung et al. 2023; RePaint: Lugmayr et al. 2022, with its
#: default 10 resamplings of jumps of 10), run on ``paper_n`` images beside the step grid.
PAPER_STEPS = {"dps": 1000, "repaint": 250}

#: Solver settings that differ from the solver's defaults in the benchmark, for cost: PixelCNN
#: inpainting draws ``particles`` raster-order sequences per sample (2.4 s each on 2 CPU cores), so
#: 8 (its default) would take 25 minutes per task at 20 images x 4 samples.
BENCH_SETTINGS = {"conditional": {"particles": 2}}


@dataclass
class Cell:
    """One row of the table: what runs (``compute``) and under which cache key."""

    task: str
    method: str
    key: str
    compute: object
    settings: dict | None = None
    figures: dict = field(default_factory=dict)


def bench_images(data: str, n: int, root=None, shape=None, stretch: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The first n test images of MNIST / Fashion-MNIST (with labels), or of a folder (sorted, resized
    to ``shape`` (C, H, W), no labels); ``stretch``: each with its range mapped onto [0, 1], as a prior
    trained with ``--stretch`` saw its images."""
    from . import data as datasets

    if data in ("mnist", "fashion-mnist"):
        return datasets.mnist_images(n, split="test", root=root, dataset=data)
    folder = Path(data)
    if not folder.is_dir():
        raise RestoreError(f"--data must be mnist, fashion-mnist or a folder of images, got {data!r}")
    c, size = (shape[0], shape[1]) if shape is not None else (None, 64)
    ds = datasets.load_folder(folder, size=size, channels=c, val_fraction=0.0, stretch=stretch)
    images = ds["train"][:n]
    if len(images) < n:
        raise RestoreError(f"'{folder}' has {len(images)} images; -n asks for {n}")
    return images.float() / 255, None


def measure(task: str, x: torch.Tensor):
    op = standard_operator(task, x.shape[1:], 0)
    return op, op(x, generator=torch.Generator().manual_seed(0))


def _score(x_hat: torch.Tensor, x: torch.Tensor, labels, judge) -> dict:
    per_image = metrics.psnr(x_hat, x)
    # Per-image PSNR too, so cells on different numbers of images compare on the images they share.
    out = {"psnr": float(np.mean(per_image)), "ssim": float(np.mean(metrics.ssim(x_hat, x))),
           "psnr_per_image": [round(float(v), 4) for v in per_image]}
    if judge is not None and labels is not None:
        from .classifier import predict

        out["digit_accuracy"] = float((predict(judge, x_hat).argmax(1) == labels).float().mean())
    return out


def run_classical(task, name, x, labels, judge):
    from .solvers import CLASSICAL

    op, y = measure(task, x)
    t0 = time.perf_counter()
    x_hat = CLASSICAL[name](y, op, None).clamp(0, 1)
    seconds = time.perf_counter() - t0
    figures = {**_score(x_hat, x, labels, judge), "seconds_per_image": seconds / len(x), "n": len(x), "samples": 1,
               "steps": None}
    return figures, {"x": x_hat[:SHOWN]}


def run_prior(task, prior, solver, steps, x, labels, judge, samples, batch, settings=None):
    """All images' ``samples`` estimates in batches of ``batch`` (samples included), the solver run
    with its defaults updated by ``settings``; stretched (:mod:`restore.stretch`) for a prior trained so."""
    from .solvers import PRIOR_SOLVERS
    from .solvers.counting import CountingPrior
    from .stretch import stretch, trained_stretched, unstretch

    op, y = measure(task, x)
    fn = PRIOR_SOLVERS[solver]
    counted = CountingPrior(prior)
    # A prior trained on stretched images sees each measurement stretched by its own range (so with its own
    # noise level: one image per batch), as the CLI restores with it.
    stretching = trained_stretched(prior)
    per = 1 if stretching else max(1, batch // samples)
    outs = []
    t0 = time.perf_counter()
    for start in range(0, len(x), per):
        yy, op_used, record = (stretch(y[start : start + 1], op, why=f"bench image {start + 1}: the prior, trained "
                                       "stretched,") if stretching else (y[start : start + per], op, None))
        yy = yy.repeat_interleave(samples, 0)
        g = torch.Generator().manual_seed(1000 + start)
        kwargs = {**({"steps": steps} if steps is not None else {}), **(settings or {})}
        xs = fn(yy, op_used, counted, generator=g, **kwargs).detach()
        outs.append((unstretch(xs, record) if stretching else xs).reshape(-1, samples, *x.shape[1:]))
    seconds = time.perf_counter() - t0
    xs = torch.cat(outs).clamp(0, 1)  # (n, samples, C, H, W)
    mean = xs.mean(1)
    figures = {**_score(mean, x, labels, judge), "psnr_one_sample": float(np.mean(metrics.psnr(xs[:, 0], x))),
               "seconds_per_image": seconds / len(x), "nfe": counted.calls / -(-len(x) // per), "n": len(x),
               "samples": samples, "steps": steps}
    pictures = {"x": mean[:SHOWN]}
    if samples > 1:
        std = xs.std(1)
        figures["calibration"] = metrics.coverage(xs, x)
        pictures["std"] = std[:SHOWN]
    return figures, pictures


def solver_settings(fn, steps=None, overrides=None, values: int | None = None) -> dict:
    """Every keyword-only hyperparameter ``fn`` runs with (steps included, generator and callback
    left out): its declared defaults updated by ``steps`` and ``overrides``, JSON-normalised so it
    compares equal to its own stored copy. A default of None computed by a rule (``fn.default_rules``:
    name -> (rule, the image size in values at which it gives the value of the rule before it), e.g. DPS's
    zeta) is keyed by the rule on images of ``values`` values other than that size, so a cell the rule
    changes is computed again and the others are still read from the cache."""
    params = inspect.signature(fn).parameters
    out = {k: p.default for k, p in params.items()
           if p.kind is p.KEYWORD_ONLY and k not in ("generator", "callback")}
    if steps is not None:
        out["steps"] = steps
    out.update(overrides or {})
    out.update({f"{k}_rule": rule for k, (rule, same_at) in getattr(fn, "default_rules", {}).items()
                if out.get(k) is None and values is not None and values != same_at})
    return json.loads(json.dumps(out))


def cached(folder: Path, key: str, compute, force: bool, settings: dict | None = None):
    """The cell ``key``'s figures and pictures from ``folder``, computed (and stored) when missing.

    With ``settings``, a stored cell counts only if it was computed with the same settings: a
    solver whose default changed since is rerun instead of read back stale."""
    path = folder / (key.replace("/", "__") + ".json")
    arrays = path.with_suffix(".safetensors")
    if path.exists() and arrays.exists() and not force:
        figures = json.loads(path.read_text())
        stored = figures.get("settings")
        if settings is not None and stored is not None:
            # Cells from before the data and weight digests were recorded were all computed on MNIST's
            # test images (the only data then): they count for MNIST, where the digests are left out.
            legacy = {k for k in _IDENTITY if k not in stored and settings.get("data", "").startswith("mnist-")}
            settings_now = {k: v for k, v in settings.items() if k not in legacy}
        else:
            settings_now = settings
        if settings is None or stored == settings_now:
            return figures, io.load_arrays(arrays)
        from tqdm.auto import tqdm

        stored = stored or {}
        changed = sorted(k for k in {*settings_now, *stored} if settings_now.get(k) != stored.get(k))
        tqdm.write(f"{key}: recomputed, its settings changed ({', '.join(changed)})")
    figures, pictures = compute()
    if settings is not None:
        figures = {**figures, "settings": settings}
    folder.mkdir(parents=True, exist_ok=True)
    io.save_arrays(arrays, pictures)
    io.write_json(path, figures)
    return figures, pictures


#: Settings that name what a cell was computed on rather than how (see ``cached``).
_IDENTITY = ("data", "prior_weights")


def digest(tensors) -> str:
    """A short SHA-256 of tensors' bytes (images, or a model's state dict): what a cache key names."""
    import hashlib

    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def plan(tasks, priors: dict, solvers, x, labels, judge, *, steps: list[int], samples: int, batch: int,
         paper_n: int = 0, variants: dict | None = None, data: str = "mnist") -> list[Cell]:
    """Every compatible pair: classical solvers, then each prior with each solver it and the task allow.

    ``variants`` maps (prior, task, solver) to a list of extra settings, each run beside the solver's
    defaults at the step grid as its own row, e.g. ``{("ddpm", "deblur", "dps"): [{"fidelity": 2.0}]}``
    gives the row "ddpm + dps fidelity=2.0"."""
    from .solvers import CLASSICAL, DIFFUSION, ESTIMATORS, PRIOR_SOLVERS, missing_capabilities, solvers_for
    from .stretch import trained_stretched

    n = len(x)
    cells = []
    # Every cell is keyed on its images (the data's name and a digest of the n images) and a learned
    # cell on the prior's weights too, so another dataset or a refitted prior never reads stale cells.
    images = digest([x])
    data_id = f"{data}-{images}"
    where = "" if data == "mnist" else f"{Path(data).name or data}-{images}/"
    weights = {name: digest(prior.state_dict().values()) for name, prior in priors.items()}
    # A prior trained on stretched images restores stretched measurements (run_prior): not the cells of before.
    stretched = {name: {"stretch": True} if trained_stretched(prior) else {} for name, prior in priors.items()}
    for task in tasks:
        op, _ = measure(task, x[:1])
        # Prior solvers return y on noiselessly observed pixels (solvers.base.keep_observed) since
        # 2026-11-30: an inpainting cell computed before that is recomputed, not read back.
        observed = {"keeps_observed": True} if getattr(op, "mask", None) is not None else {}
        # Calibration was "truth within +-2 sample std" before 2026-11-30 (83% for an exact sampler with 4
        # samples); a sampler's cell records the rule, so a cell of the old rule is recomputed.
        for name in CLASSICAL:
            if not missing_capabilities(CLASSICAL[name], op):
                cells.append(Cell(task, name, f"{where}{task}/classical/{name}/{n}",
                                  lambda t=task, s=name: run_classical(t, s, x, labels, judge),
                                  {**solver_settings(CLASSICAL[name]), "data": data_id}))
        for pname, prior in priors.items():
            tag = f"{pname}-{prior.info().get('training_steps')}"
            for solver in solvers:
                if solver not in solvers_for(prior) or missing_capabilities(PRIOR_SOLVERS[solver], op):
                    continue
                k = 1 if solver in ESTIMATORS else samples
                stepped = solver in DIFFUSION and isinstance(solver_settings(PRIOR_SOLVERS[solver]).get("steps"), int)
                grid = [(st, n) for st in (steps if stepped else [None])]
                paper = [(PAPER_STEPS[solver], min(paper_n, n))] if solver in PAPER_STEPS and paper_n else []
                base = BENCH_SETTINGS.get(solver, {})
                # The defaults at the step grid and the papers' steps; each variant at the step grid, its
                # own settings in the row's name.
                runs = [(base, "", grid + paper)] + [
                    ({**base, **v}, "".join(f" {name}={value}" for name, value in sorted(v.items())), grid)
                    for v in (variants or {}).get((pname, task, solver), [])]
                for settings, label, cases in runs:
                    suffix = "".join(f"/{name}={value}" for name, value in sorted(settings.items()))
                    for st, m in cases:
                        key = f"{where}{task}/{tag}/{solver}/{st}/{m}/{k}{suffix}"
                        cells.append(Cell(task, f"{pname} + {solver}{label}", key,
                                          lambda t=task, p=prior, s=solver, st=st, k=k, m=m, se=settings: run_prior(
                                              t, p, s, st, x[:m], None if labels is None else labels[:m], judge, k,
                                              batch, se), {**solver_settings(PRIOR_SOLVERS[solver], st, settings, x[0].numel()),
                                                           "data": data_id, "prior_weights": weights[pname],
                                                           **observed, **stretched[pname],
                                                           **({"calibration": metrics.COVERAGE_RULE} if k > 1 else {})}))
    return cells


def markdown_table(rows: list[dict]) -> str:
    digits = any("digit_accuracy" in r for r in rows)
    head = "| task | method | steps | PSNR (dB) | SSIM | PSNR 1 sample | calibration | " + \
           ("digit accuracy | " if digits else "") + "s / image | NFE | n |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for task in dict.fromkeys(r["task"] for r in rows):
        here = sorted((r for r in rows if r["task"] == task), key=lambda r: -r["psnr"])
        # The best row on the full image set is bold, not a paper-steps cell on its first few images.
        full = max(r["n"] for r in here)
        top = next(r for r in here if r["n"] == full)
        for r in here:
            bold = "**" if r is top else ""
            cells = [task, r["method"], str(r.get("steps") or ""), f"{bold}{r['psnr']:.2f}{bold}", f"{r['ssim']:.3f}",
                     f"{r['psnr_one_sample']:.2f}" if "psnr_one_sample" in r and r["samples"] > 1 else "",
                     f"{100 * r['calibration']:.0f}%" if "calibration" in r else ""]
            if digits:
                cells.append(f"{100 * r['digit_accuracy']:.0f}%" if "digit_accuracy" in r else "")
            cells += [f"{r['seconds_per_image']:.3f}", f"{r['nfe']:.0f}" if "nfe" in r else "", str(r["n"])]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_comparison(rows: list[dict], ratio: float = 10.0) -> list[dict]:
    """Per task and paper-steps cell (DPS at 1000 steps, RePaint at 250, on the first ``m`` images):
    the best cell at <= 100 steps on those same ``m`` images (per-image PSNR), and whether it matches
    or beats the paper's setting in at most 1 / ``ratio`` of its seconds per image. For that fast cell,
    the paired per-image difference from the paper's setting: its mean, standard error and how many
    of the ``m`` images it restores better, so that a small gap can be told from noise."""
    out = []
    for ref in rows:
        solver = ref["method"].rsplit(" + ", 1)[-1]
        if PAPER_STEPS.get(solver) != ref.get("steps") or "psnr_per_image" not in ref:
            continue
        m = ref["n"]
        prior = ref["method"].rsplit(" + ", 1)[0]
        rivals = [r for r in rows if r["task"] == ref["task"] and r["method"].startswith(prior + " + ")
                  and r.get("steps") and r["steps"] <= 100 and len(r.get("psnr_per_image", [])) >= m]
        if not rivals:
            continue
        on_m = {id(r): float(np.mean(r["psnr_per_image"][:m])) for r in rivals}
        best = max(rivals, key=lambda r: on_m[id(r)])
        fast = [r for r in rivals if r["seconds_per_image"] * ratio <= ref["seconds_per_image"]]
        best_fast = max(fast, key=lambda r: on_m[id(r)]) if fast else None
        diff = np.asarray(best_fast["psnr_per_image"][:m]) - np.asarray(ref["psnr_per_image"]) if fast else None
        out.append({"task": ref["task"], "reference": f"{ref['method']} {ref['steps']}", "n": m,
                    "reference_psnr": ref["psnr"], "reference_seconds": ref["seconds_per_image"],
                    "best": f"{best['method']} {best['steps']}", "best_psnr": on_m[id(best)],
                    "best_seconds": best["seconds_per_image"],
                    "fast": f"{best_fast['method']} {best_fast['steps']}" if best_fast else None,
                    "fast_psnr": on_m[id(best_fast)] if best_fast else None,
                    "fast_seconds": best_fast["seconds_per_image"] if best_fast else None,
                    "fast_difference": float(diff.mean()) if fast else None,
                    "fast_difference_se": metrics.standard_error(diff) if fast and m > 1 else None,
                    "fast_wins": int((diff > 0).sum()) if fast else None,
                    "met": bool(best_fast and on_m[id(best_fast)] >= ref["psnr"])})
    return out


def paper_table(found: list[dict]) -> str:
    head = ("| task | paper setting | PSNR (dB) | s / image | best at <= 100 steps | PSNR | s / image | "
            "best in <= 1/10 the time | PSNR | s / image | its gain per image (paired, +- s.e.) | matched |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for f in found:
        gain = ""
        if f["fast"]:
            se = f" +- {f['fast_difference_se']:.2f}" if f["fast_difference_se"] is not None else ""
            gain = f"{f['fast_difference']:+.2f}{se} dB, better on {f['fast_wins']} of {f['n']}"
        fast = [f["fast"] or "none", f"{f['fast_psnr']:.2f}" if f["fast"] else "",
                f"{f['fast_seconds']:.3f}" if f["fast"] else "", gain]
        lines.append("| " + " | ".join([f["task"], f"{f['reference']} (first {f['n']} images)",
                                        f"{f['reference_psnr']:.2f}", f"{f['reference_seconds']:.3f}", f["best"],
                                        f"{f['best_psnr']:.2f}", f"{f['best_seconds']:.3f}", *fast,
                                        "yes" if f["met"] else "no"]) + " |")
    return "\n".join(lines)


#: Column headers of the HTML report, in order.
HEADERS = {"method": "method", "steps": "steps", "psnr": "PSNR (dB)", "ssim": "SSIM",
           "psnr_one_sample": "PSNR, one sample (dB)", "calibration": "truth in 95% interval",
           "digit_accuracy": "digit kept", "seconds_per_image": "s / image", "nfe": "network evaluations",
           "n": "images"}


def best_per_task(rows: list[dict]) -> list[dict]:
    """Per task: the best method on the full image set, and its margin over the best classical method
    (a method without a prior: no " + " in its name)."""
    out = []
    for task in dict.fromkeys(r["task"] for r in rows):
        here = [r for r in rows if r["task"] == task]
        full = max(r["n"] for r in here)
        here = [r for r in here if r["n"] == full]
        top = max(here, key=lambda r: r["psnr"])
        classical = [r for r in here if " + " not in r["method"]]
        best_classical = max(classical, key=lambda r: r["psnr"]) if classical else None
        out.append({"task": task, "best": top, "classical": best_classical,
                    "margin": top["psnr"] - best_classical["psnr"] if best_classical else None})
    return out


def html_report(rows: list[dict], grids: dict[str, str], title: str, notes: str) -> str:
    """One self-contained page: a summary (the best method per task and its margin over the classical
    ones), the table grouped by task with the best row marked, and per task the picture grid with its
    rows and columns labelled in the image (images embedded as data URIs)."""
    present = [c for c in HEADERS if any(c in r for r in rows)]

    def fmt(r, c):
        v = r.get(c)
        if v is None or (c == "psnr_one_sample" and r.get("samples", 1) <= 1):
            return ""
        if c in ("calibration", "digit_accuracy"):
            return f"{100 * v:.0f}%"
        if c in ("nfe", "steps", "n"):
            return f"{v:.0f}" if isinstance(v, (int, float)) else html.escape(str(v))
        if c in ("psnr", "psnr_one_sample"):
            return f"{v:.2f}"
        return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))

    summary = ["<h2>Summary</h2><ul>"]
    for b in best_per_task(rows):
        versus = (f", {b['margin']:+.2f} dB against the best classical method ({html.escape(b['classical']['method'])}, "
                  f"{b['classical']['psnr']:.2f} dB)" if b["classical"] is not None and b["classical"] is not b["best"]
                  else " (a classical method)" if b["classical"] is b["best"] else "")
        summary.append(f"<li><b>{html.escape(b['task'])}</b>: {html.escape(b['best']['method'])}"
                       + (f" at {b['best']['steps']} steps" if b["best"].get("steps") else "")
                       + f", {b['best']['psnr']:.2f} dB{versus}</li>")
    summary.append("</ul>")
    body = ["<h2>All methods</h2><table><thead><tr>" + "".join(f"<th>{html.escape(HEADERS[c])}</th>" for c in present)
            + "</tr></thead>"]
    tops = {id(b["best"]) for b in best_per_task(rows)}
    for task in dict.fromkeys(r["task"] for r in rows):
        body.append(f"<tbody><tr><th colspan=\"{len(present)}\" class=\"task\">{html.escape(task)}</th></tr>")
        for r in sorted((r for r in rows if r["task"] == task), key=lambda r: -r["psnr"]):
            mark = " class=\"best\"" if id(r) in tops else ""
            body.append(f"<tr{mark}>" + "".join(f"<td>{fmt(r, c)}</td>" for c in present) + "</tr>")
        body.append("</tbody>")
    body.append("</table>")
    for task, (uri, legend) in grids.items():
        body.append(f"<h2>{html.escape(task)}</h2><p>{html.escape(legend)}</p><img alt=\"{html.escape(task)} grid\" "
                    f"src=\"{uri}\" style=\"max-width: 100%\">")
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#eee}"
             "th.task{text-align:left;background:#dde}tr.best td{font-weight:bold;background:#efe}"
             "td:first-child{text-align:left}")
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p>"
            + "\n".join(summary + body) + "</body></html>\n")


def _labelled_grid(images: torch.Tensor, nrow: int, labels: list[str], scale: int = 3) -> str:
    """A PNG data URI of ``images`` in rows of ``nrow``, enlarged ``scale`` times (nearest), with each row's
    label written to its left and the image numbers above the columns."""
    from PIL import Image, ImageDraw
    from torchvision.utils import make_grid

    grid = make_grid(images.float().clamp(0, 1), nrow=nrow, padding=2, pad_value=0.5)
    array = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    picture = Image.fromarray(array).resize((array.shape[1] * scale, array.shape[0] * scale), Image.Resampling.NEAREST)
    rows = math.ceil(len(images) / nrow)
    cell_h, cell_w = picture.height / rows, picture.width / nrow
    draw_probe = ImageDraw.Draw(picture)
    margin = 8 + max(int(draw_probe.textlength(label)) for label in labels)
    canvas = Image.new("RGB", (picture.width + margin, picture.height + 16), "white")
    canvas.paste(picture.convert("RGB"), (margin, 16))
    draw = ImageDraw.Draw(canvas)
    for j in range(nrow):
        draw.text((margin + j * cell_w + cell_w / 2 - 8, 2), f"#{j + 1}", fill="black")
    for i, label in enumerate(labels):
        draw.text((4, 16 + i * cell_h + cell_h / 2 - 6), label, fill="black")
    buffer = _io.BytesIO()
    canvas.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def run_bench(*, data: str, tasks: list[str], priors: list[str], solvers: list[str] | None, n: int, out,
              steps: list[int], samples: int = 4, batch: int = 400, force: bool = False, data_root=None,
              paper_n: int = 0, cells=None, variants: dict | None = None) -> dict:
    """Run (or read from the cache) every cell; write results.json, results.md and report.html under
    ``out``. Cells are cached in ``cells`` (default ``out/cells``), which several tables may share.
    ``variants``: extra settings per (prior, task, solver), each its own row (see ``plan``)."""
    from tqdm.auto import tqdm

    from .priors import load_prior
    from .solvers import PRIOR_SOLVERS
    from .stretch import trained_stretched

    unknown = [t for t in tasks if t not in STANDARD]
    if unknown:
        raise RestoreError(f"unknown task(s) {', '.join(unknown)} (known: {', '.join(STANDARD)})")
    solvers = solvers or list(PRIOR_SOLVERS)
    bad = [s for s in solvers if s not in PRIOR_SOLVERS]
    if bad:
        raise RestoreError(f"unknown solver(s) {', '.join(bad)} (known: {', '.join(PRIOR_SOLVERS)})")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RestoreError(f"'{out}' exists and is not a folder")
    if not out.parent.is_dir():
        raise RestoreError(f"cannot create '{out}': '{out.parent}' does not exist")
    loaded = {p: load_prior(p) for p in priors}
    # A folder's images are read as a prior trained with --stretch saw its own: 16-bit dark data keeps its
    # levels instead of 17, and every method restores the same stretched images.
    stretched = any(trained_stretched(prior) for prior in loaded.values())
    x, labels = bench_images(data, n, data_root, next(iter(loaded.values())).image_shape if loaded else None,
                             stretch=stretched)
    for name, prior in loaded.items():
        if tuple(prior.image_shape) != tuple(x.shape[1:]):
            raise RestoreError(f"prior {name!r} models {'x'.join(map(str, prior.image_shape))} images; the data are "
                               f"{'x'.join(map(str, x.shape[1:]))}")
    # Figures on images a prior was trained on flatter it: say so in the report and on stderr.
    from .data import overlap_warning

    warnings = []
    for name, prior in loaded.items():
        text = overlap_warning(prior, (x * 255).round().to(torch.uint8), "bench images", root=data_root,
                               stretched=trained_stretched(prior))
        if text:
            warnings.append(f"{name}: {text}")
    judge = None
    if data == "mnist":
        from .classifier import load_classifier

        judge = load_classifier()
    cell_folder = Path(cells) if cells is not None else out / "cells"
    planned = plan(tasks, loaded, solvers, x, labels, judge, steps=steps, samples=samples, batch=batch, paper_n=paper_n,
                   variants=variants, data=data)
    rows, shown = [], {}
    for cell in tqdm(planned, desc="bench cells", unit="cell"):
        figures, pictures = cached(cell_folder, cell.key, cell.compute, force, cell.settings)
        rows.append({"task": cell.task, "method": cell.method, "key": cell.key, **figures})
        best = shown.get((cell.task, cell.method))
        if figures["n"] < min(SHOWN, len(x)):
            continue  # a paper-steps cell on fewer images than the grid shows
        if best is None or figures["psnr"] > best[0]:
            shown[(cell.task, cell.method)] = (figures["psnr"], pictures)
    grids = {}
    m = min(SHOWN, len(x))
    for task in tasks:
        _, y = measure(task, x[:m])
        seen = y if y.shape == x[:m].shape else torch.nn.functional.interpolate(y, size=x.shape[-2:], mode="nearest")
        methods = sorted(((p, meth, pics) for (t, meth), (p, pics) in shown.items() if t == task), key=lambda v: -v[0])
        rows_img = [x[:m], seen.clamp(0, 1)]
        legend = ["truth", "measurement"]
        for _, meth, pics in methods:
            rows_img.append(pics["x"][:m])
            legend.append(meth)
            if "std" in pics:
                rows_img.append((4 * pics["std"][:m]).clamp(0, 1))
                legend.append(f"{meth}: std x4")
        grid = torch.cat(rows_img)
        io.write_grid(out / f"{task}.png", grid, nrow=m)
        grids[task] = (_labelled_grid(grid, m, legend), "rows: " + ", ".join(legend) + f"; columns: images 1-{m}")
    notes = (f"{n} {data} test images; posterior samplers: mean of {samples} samples; steps {steps}"
             + (f", and the papers' step counts ({', '.join(f'{k} {v}' for k, v in PAPER_STEPS.items())}) on the "
                f"first {min(paper_n, n)} images" if paper_n else "")
             + "; every method sees the same measurements (seed 0)"
             + "".join(f"; {name} with {', '.join(f'{k}={v}' for k, v in kw.items())}"
                       for name, kw in BENCH_SETTINGS.items() if name in solvers) + "."
             + "".join(f" Warning: {w}." for w in warnings))
    table = markdown_table(rows)
    papers = paper_comparison(rows)
    io.write_json(out / "results.json", {"data": data, "n": n, "samples": samples, "steps": steps, "paper_n": paper_n,
                                         "warnings": warnings, "rows": rows, "papers": papers})
    papers_text = ("\n\nThe papers' step counts against <= 100 steps, on the images both ran on (PSNR of the mean; "
                   "matched: a cell at <= 100 steps reaches the paper setting's PSNR in at most a tenth of its time):"
                   "\n\n" + paper_table(papers) + "\n") if papers else ""
    with io.atomic_write(out / "results.md") as tmp:
        tmp.write_text(notes + "\n\n" + table + "\n" + papers_text)
    # summary.md: each method once per task, at its best step count (on the full image set).
    best: dict = {}
    for r in rows:
        if r["n"] == n and ((r["task"], r["method"]) not in best or r["psnr"] > best[(r["task"], r["method"])]["psnr"]):
            best[(r["task"], r["method"])] = r
    with io.atomic_write(out / "summary.md") as tmp:
        tmp.write_text(notes + " Each method at its best step count.\n\n" + markdown_table(list(best.values())) + "\n")
    with io.atomic_write(out / "report.html") as tmp:
        tmp.write_text(html_report(rows, grids, "restore bench", notes))
    return {"rows": rows, "table": table, "papers": papers, "out": str(out), "warnings": warnings}
