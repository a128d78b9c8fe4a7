"""A 4000x3000 RGB photo through classical solvers: seconds and peak memory (RSS) of each, per task.

    python benchmarks/large_photo.py --solvers wiener pinv bicubic richardson-lucy tv bm3d biharmonic lasso

The photo is a training image (BSDS500's first of bsds400) enlarged bicubically to 4000x3000. Each run is
`restore TASK` in its own process (so its peak RSS is its own, read from getrusage), with a time limit;
results go to benchmarks/results/large_photo.md. Tasks: denoising (sigma 0.1), deblurring with Levin
kernel 3 (valid boundary, sigma 0.01), 4x super-resolution (bicubic) and 80% random inpainting.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from restore import io
from restore.data import natural_folder
from restore.runtime import machine

OUT = Path(__file__).parent / "results" / "large_photo.md"
TASKS = {"denoise": ["--noise", "0.1"], "deblur": ["--kernel", "levin:3", "--noise", "0.01"],
         "superres": ["--factor", "4", "--filter", "bicubic"], "inpaint": ["--random", "0.8"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--solvers", nargs="+", required=True)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--limit", type=float, default=1200, help="seconds allowed per run")
    args = parser.parse_args()
    from restore.solvers import CLASSICAL, missing_capabilities
    from restore.cli import _operator, _noise  # the operators the command builds, to skip incompatible pairs

    with tempfile.TemporaryDirectory() as tmp:
        photo = io.read_image(sorted(natural_folder("bsds400").iterdir())[0])[0]
        big = torch.nn.functional.interpolate(photo, size=(3000, 4000), mode="bicubic", align_corners=False).clamp(0, 1)
        io.write_png(Path(tmp, "big.png"), big)
        io.write_png(Path(tmp, "small.png"), big[..., ::4, ::4])  # the low-resolution input of super-resolution
        lines = [f"# Classical solvers on a 4000x3000 RGB photo\n\n`python benchmarks/large_photo.py` on {machine()} "
                 "(each run a separate `restore` process, OMP_NUM_THREADS as set).\n",
                 "| task | solver | seconds | peak RSS (GiB) | exit |", "|---|---|---|---|---|"]
        for task in args.tasks:
            shape = (3, 3000, 4000)
            for name in args.solvers:
                options = dict(noise=_noise(0.01, None))
                op = _operator(task, shape, random=0.8 if task == "inpaint" else None,
                               kernel="levin:3" if task == "deblur" else None,
                               factor=4 if task == "superres" else None, filter="bicubic" if task == "superres" else None,
                               **options)
                if missing_capabilities(CLASSICAL[name], op):
                    continue
                source = "small.png" if task == "superres" else "big.png"
                cmd = [sys.executable, "-m", "restore.cli", task, str(Path(tmp, source)), *TASKS[task], "--solver", name,
                       "-o", str(Path(tmp, "out.png"))]
                t0 = time.perf_counter()
                before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
                try:
                    code = subprocess.run(cmd, capture_output=True, text=True, timeout=args.limit).returncode
                except subprocess.TimeoutExpired:
                    code = "timeout"
                seconds = time.perf_counter() - t0
                peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB, the largest child so far
                rss = f"{peak / 2**20:.2f}" if peak > before else f"<= {before / 2**20:.2f}"
                lines.append(f"| {task} | {name} | {seconds:.1f} | {rss} | {code} |")
                print(lines[-1], flush=True)
    OUT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
