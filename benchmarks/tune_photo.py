"""Choosing a learned method's solver and settings for the natural-image benchmark on held-out
training photos, never on its test images.

The photographs a prior's training run held out for validation (its run.json names the data and the
split's seed) are degraded exactly as a benchmark setting degrades its test images (same operator,
same seeded noise), and each (prior, solver, steps, setting) is scored on the first ``-n`` of them:

    python benchmarks/tune_photo.py --setting inpaint/cbsd68/random80 --prior ddpm-photo-rgb \
        --solver ddnm --steps 20,50 --grid '{"eta": [0.85, 1.0]}' -n 3

Cells are cached in benchmarks/results/tune/photo_cells.jsonl (one line per image and setting, with
every hyperparameter the solver ran with), and the table of all cached cells is rewritten to
benchmarks/results/tune/photo.md. Seconds are wall-clock beside whatever else ran: compare within a run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import torch

from restore import photo_bench
from restore.runtime import keep_freed_memory, machine

OUT = Path(__file__).parent / "results" / "tune"


def held_out_photos(prior, n: int, modcrop: int) -> tuple[list[torch.Tensor], list[str]]:
    """The first ``n`` validation photos of ``prior``'s training data, (1, C, H, W) in [0, 1]."""
    from restore.data import held_out_images
    from restore.operators import functional as Fn

    images, names = held_out_images(prior.run_info, channels=prior.image_shape[0], n=n)
    return [Fn.modcrop(im.float()[None] / 255, modcrop) for im in images], names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", help="a benchmark setting, e.g. deblur/set12/sigma2.55")
    parser.add_argument("--prior")
    parser.add_argument("--solver")
    parser.add_argument("--steps", default="", help="comma-separated step counts (default: the solver's)")
    parser.add_argument("--grid", default="{}", help='JSON object: hyperparameter -> list of values')
    parser.add_argument("-n", type=int, default=3, help="held-out photos")
    parser.add_argument("--items", type=int, default=1, help="measurements per photo (e.g. kernels)")
    parser.add_argument("--photos-of", default=None,
                        help="score on this prior's validation photos (default: --prior's), to compare two "
                             "priors trained on different data on the same photos")
    parser.add_argument("--patches", type=int, default=None,
                        help="use the diffusion prior on random partitions into patches of this size (PaDIS)")
    parser.add_argument("--table", action="store_true", help="only rewrite the table")
    args = parser.parse_args()
    if not args.table and not (args.setting and args.prior and args.solver):
        parser.error("--setting, --prior and --solver are required (unless --table)")

    from restore.priors import load_prior
    from restore.solvers import CLASSICAL

    cells = photo_bench.Cells(OUT / "photo_cells.jsonl")
    if not args.table:
        setting = next(s for s in photo_bench.settings() if s.name == args.setting)
        images, names = held_out_photos(load_prior(args.photos_of or args.prior), args.n, setting.modcrop)
        classical = args.solver in CLASSICAL  # a baseline on the same photos; --prior still names them
        grid = json.loads(args.grid)
        steps_list = [int(s) for s in args.steps.split(",")] if args.steps else [None]
        for steps, values in itertools.product(steps_list, itertools.product(*grid.values())):
            override = dict(zip(grid, values))
            name, solve, settings = photo_bench.method(args.solver, None if classical else args.prior, steps,
                                                       tuple(images[0].shape[1:]), override, args.patches)
            config = {**settings, "photos": names}
            label = name + (f" {steps}" if steps and classical else "") + \
                (" " + ", ".join(f"{k}={v}" for k, v in override.items()) if override else "") + \
                (f" (photos of {args.photos_of})" if args.photos_of not in (None, args.prior) else "")
            rows = []
            for i, x in enumerate(images):
                for j in range(args.items):
                    item = i * setting.items_per_image + j
                    found = cells.get(setting.name, label, item, config)
                    if found is None:
                        op, y = photo_bench.measurement(setting, x, item)
                        t0 = time.perf_counter()
                        x_hat = op.field_of_view(solve(y, op))
                        seconds = time.perf_counter() - t0
                        p, s = photo_bench.score(x_hat, x, setting.shave)
                        found = {"setting": setting.name, "method": label, "item": item, "image": names[i],
                                 "psnr": p, "ssim": s, "seconds": seconds, "settings": config}
                        cells.add(found)
                    rows.append(found)
            print(f"{setting.name} {label}: {np.mean([r['psnr'] for r in rows]):.2f} dB "
                  f"({np.median([r['seconds'] for r in rows]):.1f} s per measurement)", flush=True)
    # Every group of cells measured with the same settings, older priors' included: a retrained prior's
    # rows stand beside the earlier ones, told apart by its training steps.
    groups: dict[tuple, dict[int, dict]] = {}
    for line in (OUT / "photo_cells.jsonl").read_text().splitlines():
        r = json.loads(line)
        key = (r["setting"], r["method"], r["settings"].get("prior_steps") or 0, json.dumps(r["settings"], sort_keys=True))
        groups.setdefault(key, {})[r["item"]] = r
    lines = ["| setting | method | prior steps | measurements | PSNR (dB) | SSIM | s / measurement (median) |",
             "|---|---|---|---|---|---|---|"]
    for (setting, method, steps, _), by_item in sorted(groups.items()):
        rows = list(by_item.values())
        lines.append(f"| {setting} | {method} | {steps or '-'} | {len(rows)} | {np.mean([r['psnr'] for r in rows]):.2f} | "
                     f"{np.mean([r['ssim'] for r in rows]):.3f} | {np.median([r['seconds'] for r in rows]):.1f} |")
    (OUT / "photo.md").write_text(
        f"# Learned methods on held-out training photos\n\nProduced by `python benchmarks/tune_photo.py` on "
        f"{machine(threads=False)}, from cells of several runs (1 or 2 torch threads, often beside another job). "
        f"Each prior's validation photos (never a benchmark test image), degraded as the named benchmark setting "
        f"degrades its test images; mean over the measurements.\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    keep_freed_memory()
    main()
