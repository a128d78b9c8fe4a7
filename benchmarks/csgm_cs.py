"""The compressed-sensing experiment of Bora et al. (2017), "Compressed Sensing using Generative Models", on MNIST.

y = A x + noise with A an (m, 784) matrix of i.i.d. N(0, 1/m) entries and Gaussian noise of
standard deviation 0.1 per measurement (their setting), for m in {10, 25, 50, 100, 200, 400, 750}.
Methods:

- latent optimization (CSGM, :func:`restore.solvers.latent.csgm`) with each generative prior in
  ``--priors``: Adam, ``--restarts`` starts, ``--steps`` iterations, lam = 1/2 (the MAP estimate of
  z under N(0, I); not tuned);
- Lasso (:func:`restore.solvers.classical.lasso`, FISTA) with sparsity in pixels and in Haar
  wavelets, its weight chosen per m from a grid on 10 training images (never the test images).

The error is the per-pixel squared error ||x_hat - x||^2 / 784 (their "reconstruction error per
pixel"), mean and standard error over the first ``-n`` MNIST test images. Cells are cached under
benchmarks/results/csgm_cells/ (on this machine, not in git; keyed by the prior's training steps), so a rerun only computes what
is missing. Writes benchmarks/results/csgm_cs.{md,json,svg} and csgm_cs_m<m>.png picture grids.

    python benchmarks/csgm_cs.py                      # vae and gan, 50 test images
    python benchmarks/csgm_cs.py --priors vae -n 10 --m 25,100
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from restore import io, plots
from restore.bench import cached
from restore.data import mnist_images
from restore.metrics import standard_error
from restore.operators import CompressedSensing, GaussianNoise
from restore.runtime import keep_freed_memory
from restore.solvers.classical import lasso
from restore.solvers.latent import csgm

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CACHE = RESULTS / "csgm_cells"
LASSO_WEIGHTS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3)


def measure(x: torch.Tensor, m: int, noise: float):
    op = CompressedSensing(m, (1, 28, 28), seed=0, noise=GaussianNoise(noise))
    return op, op(x, generator=torch.Generator().manual_seed(m))


def per_pixel_error(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return (x_hat - x).square().flatten(1).mean(1)


def run_lasso(basis: str, m: int, x: torch.Tensor, x_val: torch.Tensor, noise: float, steps: int):
    """Lasso with the weight that does best on the validation images, then on the test images."""
    op, y_val = measure(x_val, m, noise)
    val = {w: float(per_pixel_error(lasso(y_val, op, steps=steps, weight=w, basis=basis), x_val).mean())
           for w in LASSO_WEIGHTS}
    weight = min(val, key=val.get)
    op, y = measure(x, m, noise)
    t0 = time.perf_counter()
    x_hat = lasso(y, op, steps=steps, weight=weight, basis=basis)
    seconds = time.perf_counter() - t0
    return {"weight": weight, "validation_errors": val, "seconds_per_image": seconds / len(x)}, x_hat


def run_csgm(prior, m: int, x: torch.Tensor, noise: float, steps: int, restarts: int):
    op, y = measure(x, m, noise)
    t0 = time.perf_counter()
    x_hat = csgm(y, op, prior, steps=steps, restarts=restarts, generator=torch.Generator().manual_seed(0)).detach()
    seconds = time.perf_counter() - t0
    return {"steps": steps, "restarts": restarts, "lam": 0.5, "seconds_per_image": seconds / len(x)}, x_hat


def scored(compute, x: torch.Tensor):
    """A cell's figures with its error per pixel (mean and standard error), and its first 8 estimates."""
    cell, x_hat = compute()
    err = per_pixel_error(x_hat, x)
    cell.update(error=float(err.mean()), error_sem=standard_error(err), n=len(x))
    return cell, {"x": x_hat[:8]}


def measurements_for(curve: dict[int, float], error: float) -> float | None:
    """The m at which a (decreasing) error curve reaches ``error``, interpolated in log-log; None
    if the curve never gets that low within the measured m."""
    ms = sorted(curve)
    for a, b in zip(ms, ms[1:]):
        ea, eb = curve[a], curve[b]
        if ea >= error >= eb and ea > eb:
            s = (math.log(ea) - math.log(error)) / (math.log(ea) - math.log(eb))
            return math.exp(math.log(a) + s * (math.log(b) - math.log(a)))
    return ms[0] if curve[ms[0]] <= error else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", default="vae,gan", help="generative priors (family names or folders)")
    parser.add_argument("--m", default="10,25,50,100,200,400,750", help="numbers of measurements")
    parser.add_argument("-n", type=int, default=50, help="MNIST test images")
    parser.add_argument("--noise", type=float, default=0.1, help="noise standard deviation per measurement")
    parser.add_argument("--steps", type=int, default=500, help="Adam steps of latent optimization")
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--lasso-steps", type=int, default=500, help="FISTA iterations")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    from tqdm.auto import tqdm

    from restore.priors import load_prior

    x, _ = mnist_images(args.n, split="test")
    x_val, _ = mnist_images(10, split="train")
    ms = [int(v) for v in args.m.split(",")]
    priors = {name: load_prior(name) for name in args.priors.split(",") if name}
    plan = []
    for m in ms:
        for basis in ("pixel", "wavelet"):
            plan.append((f"lasso-{basis}", m, f"lasso-{basis}/{m}/{args.n}/{args.noise}/{args.lasso_steps}",
                         lambda b=basis, mm=m: run_lasso(b, mm, x, x_val, args.noise, args.lasso_steps)))
        for name, prior in priors.items():
            tag = f"{name}-{prior.info().get('training_steps')}"
            plan.append((f"{name} + csgm", m, f"{tag}/{m}/{args.n}/{args.noise}/{args.steps}/{args.restarts}",
                         lambda p=prior, mm=m: run_csgm(p, mm, x, args.noise, args.steps, args.restarts)))
    rows, pictures = [], {}
    for method, m, key, compute in tqdm(plan, desc="cells", unit="cell"):
        cell, images = cached(CACHE, key, lambda c=compute: scored(c, x), args.force)
        rows.append({"method": method, "m": m, **cell})
        pictures[(method, m)] = images["x"]
    RESULTS.mkdir(exist_ok=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    curves = {meth: {r["m"]: r["error"] for r in rows if r["method"] == meth} for meth in methods}
    # How many measurements Lasso (the better basis at each m) needs for the error a prior reaches.
    best_lasso = {m: min(curves["lasso-pixel"][m], curves["lasso-wavelet"][m]) for m in ms}
    savings = {}
    for meth in methods:
        if meth.startswith("lasso"):
            continue
        savings[meth] = {m: (lambda need: None if need is None else round(need / m, 2))(measurements_for(best_lasso, e))
                         for m, e in curves[meth].items()}
    io.write_json(RESULTS / "csgm_cs.json", {"rows": rows, "n": args.n, "noise": args.noise, "m": ms,
                                             "lasso_measurement_ratio": savings})
    svg = plots.line_chart({meth: sorted(c.items()) for meth, c in curves.items()},
                           title=f"Compressed sensing on MNIST (noise {args.noise}, {args.n} test images)",
                           xlabel="number of measurements m", ylabel="per-pixel squared error", log_x=True, log_y=True)
    (RESULTS / "csgm_cs.svg").write_text(svg)
    for m in (25, 100):
        if all((meth, m) in pictures for meth in methods):
            grid = torch.cat([x[:8], *[pictures[(meth, m)] for meth in methods]])
            io.write_grid(RESULTS / f"csgm_cs_m{m}.png", grid, nrow=8)
    header = "| m | " + " | ".join(methods) + " |"
    lines = [f"Per-pixel squared error (mean +- s.e. over MNIST test images 0-{args.n - 1}), y = A x + N(0, "
             f"{args.noise}^2), A with N(0, 1/m) entries. CSGM: {args.steps} Adam steps, {args.restarts} restarts, "
             "lam = 1/2. Lasso: FISTA, weight chosen per m on 10 training images.", "", header,
             "|" + "---|" * (len(methods) + 1)]
    for m in ms:
        cells = {r["method"]: r for r in rows if r["m"] == m}
        lines.append(f"| {m} | " + " | ".join(f"{cells[meth]['error']:.4f} +- {cells[meth]['error_sem']:.4f}"
                                               for meth in methods) + " |")
    lines += ["", "Measurements the better Lasso needs for the error each prior reaches at m, as a multiple of m "
              "(blank: Lasso does not reach it within m <= " + str(max(ms)) + "):", "",
              "| m | " + " | ".join(savings) + " |", "|" + "---|" * (len(savings) + 1)]
    for m in ms:
        lines.append(f"| {m} | " + " | ".join("" if savings[p][m] is None else f"{savings[p][m]:.1f}x" for p in savings) + " |")
    lines += ["", f"Pictures: `csgm_cs_m25.png`, `csgm_cs_m100.png` (rows: truth, {', '.join(methods)}); "
              "curve: `csgm_cs.svg`."]
    (RESULTS / "csgm_cs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    keep_freed_memory()
    main()
