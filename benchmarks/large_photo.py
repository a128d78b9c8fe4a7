"""A large photo through the solvers: seconds and peak memory (RSS) of each, per task.

    python benchmarks/large_photo.py --solvers wiener pinv bicubic richardson-lucy tv bm3d biharmonic lasso
    python benchmarks/large_photo.py --prior ddpm-photo-gray --gray --size 2048x2048 --solvers tweedie dps \
        --tasks denoise --extra --steps 2

Without --prior, a 4000x3000 RGB photo through classical solvers (results/large_photo.md); with one, the
diffusion solvers on that prior (results/large_photo_PRIOR.md), which run the network in overlapping
windows (restore.priors.tiles) on images larger than its tile.

The photo is a training image (BSDS500's first of bsds400) enlarged bicubically to 4000x3000. Each run is
`restore TASK` in its own process (so its peak RSS is its own, read from getrusage), with a time limit;
results go to benchmarks/results/large_photo.md. Tasks: denoising (sigma 0.1), deblurring with Levin
kernel 3 (valid boundary, sigma 0.01), 4x super-resolution (bicubic) and 80% random inpainting.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from frame_size import frame_size

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
    parser.add_argument("--prior", help="a learned prior: run the diffusion solvers on it")
    parser.add_argument("--size", type=frame_size, default=(4000, 3000), help="WIDTHxHEIGHT of the photo")
    parser.add_argument("--gray", action="store_true", help="a gray photo instead of RGB")
    parser.add_argument("--out", type=Path, help="the table's file (default: results/large_photo.md, or "
                        "results/large_photo_PRIOR.md with --prior); a run of some cells can write elsewhere")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="options passed to every run")
    args = parser.parse_args()
    from restore.data import levin_kernel
    from restore.operators import Blur, GaussianNoise, make_operator
    from restore.solvers import CLASSICAL, DIFFUSION, missing_capabilities

    with tempfile.TemporaryDirectory() as tmp:
        photo = io.read_image(sorted(natural_folder("bsds400").iterdir())[0])[0]
        width, height = args.size
        if args.gray:
            photo = photo.mean(1, keepdim=True)
        big = torch.nn.functional.interpolate(photo, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
        io.write_png(Path(tmp, "big.png"), big)
        io.write_png(Path(tmp, "small.png"), big[..., ::4, ::4])  # the low-resolution input of super-resolution
        what = f"{args.prior} and diffusion solvers" if args.prior else "Classical solvers"
        lines = [f"# {what} on a {width}x{height} {'gray' if args.gray else 'RGB'} photo\n\n"
                 f"`python benchmarks/large_photo.py {' '.join(sys.argv[1:])}` on {machine()} "
                 "(each run a separate `restore` process, OMP_NUM_THREADS as set).\n",
                 "| task | solver | seconds | peak RSS (GiB) | exit |", "|---|---|---|---|---|"]
        for task in args.tasks:
            shape = (big.shape[1], height, width)
            for name in args.solvers:
                # The operator each command builds, to skip the solvers that cannot use it.
                op = make_operator(task, shape, random=0.8, kernel=Blur(levin_kernel(3)), boundary="valid",
                                   filter="bicubic", noise=GaussianNoise(0.01))
                solver = (DIFFUSION if args.prior else CLASSICAL)[name]
                if missing_capabilities(solver, op):
                    continue
                source = "small.png" if task == "superres" else "big.png"
                cmd = [sys.executable, "-m", "restore.cli", task, str(Path(tmp, source)), *TASKS[task], "--solver", name,
                       "-o", str(Path(tmp, "out.png")), *(["--prior", args.prior] if args.prior else []), *args.extra]
                t0 = time.perf_counter()
                with open(Path(tmp, "log.txt"), "w") as log:
                    child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
                    timed_out = []  # the limit's kill, told apart from a crash or the OOM killer
                    timer = threading.Timer(args.limit, lambda: (timed_out.append(True), child.kill()))
                    timer.start()
                    _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
                    timer.cancel()
                    child.returncode = os.waitstatus_to_exitcode(status)
                code = (child.returncode if child.returncode >= 0 else "killed (time limit)" if timed_out
                        else f"died of signal {-child.returncode}")
                seconds = time.perf_counter() - t0
                rss = f"{usage.ru_maxrss / 2**20:.2f}"  # KiB on Linux
                if code != 0:
                    print(Path(tmp, "log.txt").read_text()[-2000:], file=sys.stderr)
                lines.append(f"| {task} | {name} | {seconds:.1f} | {rss} | {code} |")
                print(lines[-1], flush=True)
    out = args.out or (OUT.with_name(f"large_photo_{args.prior}.md") if args.prior else OUT)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
