"""Seconds of every classical solver on one 481x321 RGB photo (and its gray version), per task.

    python benchmarks/classical_photo_speed.py --repeats 3     # -> benchmarks/results/classical_photo_speed.md
    python benchmarks/classical_photo_speed.py --solvers bm3d --tasks deblur   # rows printed, table kept

The issue's target: every classical solver under 5 s on a 481x321 photo on this CPU. Tasks: denoising
(sigma 25/255), deblurring with Levin kernel 3 and the valid boundary (sigma 0.01), 4x bicubic
super-resolution (480x320), and inpainting of 80% random pixels. Medians of --repeats runs; the
photo is CBSD68's first image, used for timing only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from restore import io
from restore.data import levin_kernel, natural_folder
from restore.operators import Denoising, Downsample, GaussianNoise, Inpainting, ValidBlur
from restore.runtime import machine
from restore.solvers import CLASSICAL, missing_capabilities

OUT = Path(__file__).parent / "results" / "classical_photo_speed.md"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--solvers", nargs="+", help="only these (the rows are printed; the table is not rewritten)")
    parser.add_argument("--tasks", nargs="+", choices=["denoise", "deblur", "superres", "inpaint"])
    args = parser.parse_args()
    colour = io.read_image(sorted(natural_folder("cbsd68").iterdir())[0])[0]
    if colour.shape[-2] > colour.shape[-1]:  # a portrait photo: turned, so that every task sees 480x320
        colour = colour.transpose(-2, -1)
    colour = colour[..., :320, :480]
    gray = (colour * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    lines = [f"# Classical solvers on a 480x320 photo\n\n`python benchmarks/classical_photo_speed.py --repeats "
             f"{args.repeats}` on {machine()}; seconds, median of {args.repeats}.\n",
             "| task | solver | gray (s) | RGB (s) | under 5 s |", "|---|---|---|---|---|"]
    for task, make in (("denoise", lambda s: Denoising(GaussianNoise(25 / 255))),
                       ("deblur (valid)", lambda s: ValidBlur(levin_kernel(3), GaussianNoise(0.01))),
                       ("superres x4", lambda s: Downsample(4, "bicubic")),
                       ("inpaint 80%", lambda s: Inpainting.random(s, 0.8, seed=0))):
        if args.tasks and task.split()[0] not in args.tasks:
            continue
        for name, fn in CLASSICAL.items():
            if args.solvers and name not in args.solvers:
                continue
            times = []
            for x in (gray, colour):
                op = make(tuple(x.shape[1:]))
                if missing_capabilities(fn, op):
                    break
                y = op(x, generator=torch.Generator().manual_seed(0))
                runs = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    fn(y, op, None)
                    runs.append(time.perf_counter() - t0)
                times.append(statistics.median(runs))
            if times:
                lines.append(f"| {task} | {name} | {times[0]:.2f} | {times[1]:.2f} | {'yes' if max(times) < 5 else 'no'} |")
                print(lines[-1], flush=True)
    if not (args.solvers or args.tasks):
        OUT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
