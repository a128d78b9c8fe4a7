"""Learned priors and their solvers on the five standard MNIST tasks, beside the classical baselines.

    python benchmarks/solvers.py                          # shipped priors, diffusion solvers at 20/50/100 steps, 100 images
    python benchmarks/solvers.py --quick                  # 8 images, 10 steps, 2 samples: a smoke run
    python benchmarks/solvers.py --priors gaussian --solvers ddnm,pigdm --steps 20 -n 16

Each cell (task, prior, solver, steps, images, samples) is cached as one JSON file (and its first
6 estimates) under benchmarks/results/solvers_cells/, which is committed: an interrupted run, or a
later session, resumes and only computes what is missing. Every method sees the same measurements
(fixed seed per task). For each cell: PSNR and SSIM of the posterior mean of ``--samples`` samples
(clipped to [0, 1]), PSNR of one sample, calibration (the share of pixels whose true error lies
within +-2 posterior standard deviations), seconds per image (all samples included) and NFE
(network evaluations per sample). The paper's step counts (DPS 1000, RePaint 250 with 10 jumps of
10) run on ``--paper-n`` images. Latent optimization (csgm, for the VAE and GAN) is a MAP method:
one estimate per image, 300 Adam steps, its default restarts.

Writes benchmarks/results/solvers.{md,json} and solvers_<task>.png (rows: truth, measurement,
then each method's estimate at its best step count).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from restore import io, metrics
from restore.data import mnist_images
from restore.priors import load_prior
from restore.solvers import CLASSICAL, DIFFUSION, LATENT, PRIOR_SOLVERS, missing_capabilities, solvers_for
from restore.solvers.diffusion import CountingPrior
from restore.tasks import STANDARD, standard_operator

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CACHE = RESULTS / "solvers_cells"  # committed, so a later session resumes the same cells

#: The step counts of the papers, run on fewer images: (steps, extra keyword arguments).
PAPER = {"dps": (1000, {}), "repaint": (250, {"jump_length": 10, "resamplings": 10})}

#: Latent optimization is a MAP method, not a sampler: one estimate per image, at its own step count.
LATENT_STEPS = 300


def measure(task: str, x: torch.Tensor):
    op = standard_operator(task, x.shape[1:], 0)
    return op, op(x, generator=torch.Generator().manual_seed(0))


def run_prior(task, prior_name, prior, solver, steps, x, samples, batch, extra):
    """One cell: every image's ``samples`` posterior samples, in batches of ``batch`` images."""
    op, y = measure(task, x)
    fn = PRIOR_SOLVERS[solver]
    counted = CountingPrior(prior)
    outs = []
    t0 = time.perf_counter()
    per = max(1, batch // samples)  # measured images per batch
    for start in range(0, len(x), per):
        yy = y[start : start + per].repeat_interleave(samples, 0)
        g = torch.Generator().manual_seed(1000 + start)
        outs.append(fn(yy, op, counted, steps=steps, generator=g, **extra).reshape(-1, samples, *x.shape[1:]))
    seconds = time.perf_counter() - t0
    xs = torch.cat(outs).clamp(0, 1)  # (n, samples, C, H, W)
    mean = xs.mean(1)
    cell = {"psnr": float(np.mean(metrics.psnr(mean, x))), "ssim": float(np.mean(metrics.ssim(mean, x))),
            "psnr_one_sample": float(np.mean(metrics.psnr(xs[:, 0], x))),
            "seconds_per_image": seconds / len(x), "nfe": counted.calls / -(-len(x) // per), "n": len(x),
            "samples": samples, "steps": steps, "extra": extra}
    if samples > 1:
        std = xs.std(1)
        cell["calibration"] = float(((mean - x).abs() <= 2 * std).float().mean())
    return cell, mean[:6]


def run_classical(task, solver, x):
    op, y = measure(task, x)
    t0 = time.perf_counter()
    x_hat = CLASSICAL[solver](y, op, None).clamp(0, 1)
    seconds = time.perf_counter() - t0
    return {"psnr": float(np.mean(metrics.psnr(x_hat, x))), "ssim": float(np.mean(metrics.ssim(x_hat, x))),
            "seconds_per_image": seconds / len(x), "n": len(x), "samples": 1, "steps": None}, x_hat[:6]


def cached(key: str, compute, force: bool):
    """The cell's figures from the cache, or computed and cached (with its first 6 estimates)."""
    path = CACHE / (key.replace("/", "__") + ".json")
    pictures = path.with_suffix(".safetensors")
    if path.exists() and pictures.exists() and not force:
        return json.loads(path.read_text()), io.load_arrays(pictures)["x"]
    cell, images = compute()
    CACHE.mkdir(parents=True, exist_ok=True)
    io.save_arrays(pictures, {"x": images})
    io.write_json(path, cell)
    return cell, images


def table(rows: list[dict]) -> str:
    lines = ["| task | method | steps | PSNR mean (dB) | SSIM | PSNR 1 sample | calibration | s / image | NFE | n |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task in STANDARD:
        here = sorted((r for r in rows if r["task"] == task), key=lambda r: -r["psnr"])
        if not here:
            continue
        best = here[0]["psnr"]
        for r in here:
            mark = "**" if r["psnr"] == best else ""
            one = f"{r['psnr_one_sample']:.2f}" if "psnr_one_sample" in r else ""
            cal = f"{100 * r['calibration']:.0f}%" if "calibration" in r else ""
            nfe = f"{r['nfe']:.0f}" if "nfe" in r else ""
            lines.append(f"| {task} | {r['method']} | {r['steps'] or ''} | {mark}{r['psnr']:.2f}{mark} | {r['ssim']:.3f} "
                         f"| {one} | {cal} | {r['seconds_per_image']:.3f} | {nfe} | {r['n']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", default="ddpm,gaussian,vae,gan")
    parser.add_argument("--solvers", default=",".join([*DIFFUSION, *LATENT]))
    parser.add_argument("--tasks", default=",".join(STANDARD))
    parser.add_argument("--steps", default="20,50,100")
    parser.add_argument("-n", type=int, default=100, help="MNIST test images per cell")
    parser.add_argument("--paper-n", type=int, default=20, help="images for the paper's step counts (0: skip)")
    parser.add_argument("--samples", type=int, default=4, help="posterior samples per image")
    parser.add_argument("--batch", type=int, default=400, help="images (samples included) per solver call")
    parser.add_argument("--quick", action="store_true", help="8 images, 10 steps, 2 samples, no paper runs")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.steps, args.samples, args.paper_n = 8, "10", 2, 0
    from tqdm.auto import tqdm

    x, _ = mnist_images(max(args.n, args.paper_n))
    priors = {name: load_prior(name) for name in args.priors.split(",")}
    tasks = args.tasks.split(",")
    plan = []  # (key, task, method label, compute)
    for task in tasks:
        op, _ = measure(task, x[:1])
        for solver in CLASSICAL:
            if not missing_capabilities(CLASSICAL[solver], op):
                plan.append((f"{task}/classical/{solver}/{args.n}", task, solver,
                             lambda t=task, s=solver: run_classical(t, s, x[: args.n])))
        for pname, prior in priors.items():
            for solver in args.solvers.split(","):
                if solver not in solvers_for(prior) or missing_capabilities(PRIOR_SOLVERS[solver], op):
                    continue
                samples = 1 if solver in LATENT else args.samples
                runs = [(int(s), {}, args.n) for s in args.steps.split(",")] if solver not in LATENT else \
                    [(LATENT_STEPS if not args.quick else 10, {}, args.n)]
                if solver in PAPER and args.paper_n:
                    runs.append((PAPER[solver][0], PAPER[solver][1], args.paper_n))
                for steps, extra, n in runs:
                    # The prior's training steps are in the key: a retrained prior gets new cells.
                    tag = f"{pname}-{prior.info().get('training_steps')}"
                    key = f"{task}/{tag}/{solver}/{steps}/{n}/{samples}"
                    plan.append((key, task, f"{pname} + {solver}", lambda t=task, pn=pname, p=prior, s=solver, st=steps,
                                 e=extra, m=n, k=samples: run_prior(t, pn, p, s, st, x[:m], k, args.batch, e)))
    rows, pictures = [], {}
    for key, task, label, compute in tqdm(plan, desc="cells", unit="cell"):
        cell, images = cached(key, compute, args.force)
        row = {"task": task, "method": label, "key": key, **cell}
        rows.append(row)
        best = pictures.get((task, label))
        if best is None or row["psnr"] > best[0]:
            pictures[(task, label)] = (row["psnr"], images)
    RESULTS.mkdir(exist_ok=True)
    io.write_json(RESULTS / "solvers.json", {"rows": rows, "samples": args.samples, "n": args.n})
    legends = []
    for task in tasks:
        op, y = measure(task, x[:6])
        shown = y if y.shape == x[:6].shape else torch.nn.functional.interpolate(y, size=x.shape[-2:], mode="nearest")
        methods = sorted(((p, label, im) for (t, label), (p, im) in pictures.items() if t == task), key=lambda v: -v[0])
        grid = torch.cat([x[:6], shown.clamp(0, 1), *[im for _, _, im in methods]])
        io.write_grid(RESULTS / f"solvers_{task}.png", grid, nrow=6)
        legends.append(f"- `solvers_{task}.png` rows: truth, measurement, " + ", ".join(label for _, label, _ in methods))
    text = table(rows)
    (RESULTS / "solvers.md").write_text(
        f"Posterior mean of {args.samples} samples per image; MNIST test images 0-{args.n - 1} "
        f"(paper step counts on 0-{max(args.paper_n - 1, 0)}).\n\n" + text + "\n\nPictures (first 6 images; each method "
        "at its best step count):\n\n" + "\n".join(legends) + "\n")
    print(text)


if __name__ == "__main__":
    main()
