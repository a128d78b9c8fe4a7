"""PSNR/SSIM of every classical baseline on the five standard MNIST tasks.

    python benchmarks/classical.py                 # 100 test images -> benchmarks/results/classical.md
    python benchmarks/classical.py --sweep         # hyperparameter sweep on training images

Each (task, solver) cell is cached in benchmarks/results/classical.json, so an interrupted run
resumes; --force recomputes. Measurements are drawn with a fixed seed per task, so every solver
sees the same y. Hyperparameter defaults (TV weight, Richardson-Lucy iterations) were chosen with
--sweep on training images 0-49, never on the test images reported here.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from restore import metrics
from restore.data import mnist_images
from restore.runtime import keep_freed_memory
from restore.solvers import CLASSICAL, missing_capabilities
from restore.tasks import STANDARD, standard_operator

RESULTS = Path(__file__).parent / "results"


def measure(task: str, x: torch.Tensor, seed: int = 0):
    """The task's operator and a measurement of x drawn with a fixed seed."""
    op = standard_operator(task, x.shape[1:], seed)
    y = op(x, generator=torch.Generator().manual_seed(seed))
    return op, y


def run_cell(task, solver, x, **kwargs):
    op, y = measure(task, x)
    t0 = time.perf_counter()
    x_hat = CLASSICAL[solver](y, op, None, **kwargs)
    seconds = time.perf_counter() - t0
    return {
        "psnr": float(np.mean(metrics.psnr(x_hat, x))),
        "ssim": float(np.mean(metrics.ssim(x_hat, x))),
        "seconds_per_image": seconds / len(x),
        "n": len(x),
    }


def table(cells: dict) -> str:
    lines = ["| task | solver | PSNR (dB) | SSIM | s / image |", "|---|---|---|---|---|"]
    for task in STANDARD:
        rows = {k.split("/", 1)[1]: v for k, v in cells.items() if k.split("/", 1)[0] == task}
        best = max(r["psnr"] for r in rows.values())
        for solver, r in sorted(rows.items(), key=lambda kv: -kv[1]["psnr"]):
            mark = "**" if r["psnr"] == best else ""
            lines.append(f"| {task} | {solver} | {mark}{r['psnr']:.2f}{mark} | {r['ssim']:.3f} | {r['seconds_per_image']:.4f} |")
    return "\n".join(lines)


def sweep(n: int):
    """Hyperparameters of TV and Richardson-Lucy on training images (not the test images)."""
    x, _ = mnist_images(n, split="train")
    for task in STANDARD:
        for w in (0.5, 1, 2, 3, 5):
            print(task, "tv weight", w, round(run_cell(task, "tv", x, weight=w)["psnr"], 2), flush=True)
        if task in ("deblur", "superres", "denoise"):
            for steps in (10, 20, 30, 50, 100):
                print(task, "richardson-lucy steps", steps, round(run_cell(task, "richardson-lucy", x, steps=steps)["psnr"], 2), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=100, help="number of MNIST test images")
    parser.add_argument("--force", action="store_true", help="recompute cached cells")
    parser.add_argument("--sweep", action="store_true", help="sweep hyperparameters on 50 training images")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.sweep:
        sweep(50)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    cache_path = RESULTS / "classical.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() and not args.force else {}
    x, _ = mnist_images(args.n)
    for task in STANDARD:
        op, _ = measure(task, x[:1])
        for solver, fn in CLASSICAL.items():
            key = f"{task}/{solver}"
            if missing_capabilities(fn, op) or (key in cache and cache[key]["n"] == args.n):
                continue
            cache[key] = run_cell(task, solver, x)
            print(key, {k: round(v, 4) for k, v in cache[key].items()}, flush=True)
            cache_path.write_text(json.dumps(cache, indent=2))
    md = (
        f"# Classical baselines on {args.n} MNIST test images\n\n"
        "Produced by `python benchmarks/classical.py`. Tasks:\n\n"
        + "".join(f"- **{k}**: {d}\n" for k, (_, d) in STANDARD.items())
        + "\nBest PSNR per task in bold. Seconds per image on one 2-core CPU machine, batch of all images.\n\n"
        + table(cache)
        + "\n"
    )
    (RESULTS / "classical.md").write_text(md)
    print(md)


if __name__ == "__main__":
    keep_freed_memory()
    main()
