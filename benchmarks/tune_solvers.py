"""Choosing a solver's default hyperparameters on held-out images, not on the benchmark's.

The solver table (``benchmarks/solvers.py``) uses the first 20 MNIST test images. Defaults are
chosen here on other test images (from ``--start``, 1000 by default), with the same measurements,
samples and prior, so the table does not reward tuning to its own images.

    python benchmarks/tune_solvers.py --solver diffpir --grid '{"zeta": [0.3, 1.0]}'
    python benchmarks/tune_solvers.py --solver dps --steps 20,50 --grid '{"zeta": [1, 2, 4, 8]}' --tasks deblur

Each cell (prior, solver, task, steps, setting) is cached in benchmarks/results/tune/cells.jsonl
with every hyperparameter it ran with (the solver's defaults included); a cached cell whose prior
was retrained or whose solver defaults changed since is recomputed, as in the solver table. The
table of every cached cell is rewritten to benchmarks/results/tune/results.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

from restore.bench import run_prior, solver_settings
from restore.data import mnist_images
from restore.runtime import keep_freed_memory
from restore.tasks import STANDARD

RESULTS = Path(__file__).parent / "results" / "tune"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solver", required=True)
    parser.add_argument("--grid", required=True, help='JSON object: hyperparameter -> list of values')
    parser.add_argument("--tasks", default=",".join(STANDARD))
    parser.add_argument("--steps", default="50")
    parser.add_argument("--prior", default="ddpm")
    parser.add_argument("-n", type=int, default=20, help="test images per cell")
    parser.add_argument("--start", type=int, default=1000, help="first test image (the benchmark uses 0-19)")
    parser.add_argument("--samples", type=int, default=4)
    args = parser.parse_args()

    from restore.priors import load_prior
    from restore.solvers import PRIOR_SOLVERS

    RESULTS.mkdir(parents=True, exist_ok=True)
    cache = RESULTS / "cells.jsonl"
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            row = json.loads(line)
            done[row["key"]] = row
    prior = load_prior(args.prior)
    trained = prior.info().get("training_steps")
    x, labels = mnist_images(args.n, split="test", start=args.start)
    grid = json.loads(args.grid)
    for task, steps, values in itertools.product(args.tasks.split(","), args.steps.split(","), itertools.product(*grid.values())):
        setting = dict(zip(grid, values))
        key = json.dumps([args.prior, args.solver, task, int(steps), setting, args.n, args.start, args.samples], sort_keys=True)
        settings = solver_settings(PRIOR_SOLVERS[args.solver], int(steps), setting)
        row = done.get(key)
        if row is None or row.get("settings") != settings or row.get("prior_steps") != trained:
            figures, _ = run_prior(task, prior, args.solver, int(steps), x, labels, None, args.samples, 80, setting)
            done[key] = {"key": key, "prior": args.prior, "solver": args.solver, "task": task, "steps": int(steps),
                         "setting": setting, "settings": settings, "prior_steps": trained, "n": args.n,
                         "start": args.start, "samples": args.samples,
                         **{k: figures[k] for k in ("psnr", "ssim", "psnr_one_sample", "calibration", "seconds_per_image")}}
            with cache.open("a") as f:
                f.write(json.dumps(done[key]) + "\n")
        row = done[key]
        print(f"{task} {args.solver} {steps} steps {setting}: {row['psnr']:.2f} dB "
              f"(one sample {row['psnr_one_sample']:.2f}, calibration {row['calibration']:.0%})", flush=True)
    lines = ["Held-out MNIST test images (images start..start+n-1), PSNR of the mean of the samples. A setting "
             "of None is the solver's own default (DPS: zeta = sqrt(T / steps) on these 28x28 digits; its rule is sqrt(T / steps * H * W) / 28 for H x W pixels (gray or colour)). Seconds per image were "
             "measured beside other jobs on the same cores: compare them within a run only.", "",
             "| prior | solver | task | steps | setting | images | PSNR (dB) | PSNR 1 sample | calibration | s / image |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(done.values(), key=lambda r: (r["prior"], r["solver"], r["task"], r["steps"], json.dumps(r["setting"], sort_keys=True))):
        lines.append(f"| {r['prior']} | {r['solver']} | {r['task']} | {r['steps']} | "
                     f"{', '.join(f'{k}={v}' for k, v in r['setting'].items())} | {r['start']}-{r['start'] + r['n'] - 1} | "
                     f"{r['psnr']:.2f} | {r['psnr_one_sample']:.2f} | {r['calibration']:.0%} | {r['seconds_per_image']:.3f} |")
    (RESULTS / "results.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    keep_freed_memory()
    main()
