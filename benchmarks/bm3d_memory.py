"""Peak memory and seconds of BM3D deblurring (the authors' package) against the image's size.

    python benchmarks/bm3d_memory.py --sizes 256 512 1024   # -> benchmarks/results/bm3d_memory.md
    python benchmarks/bm3d_memory.py --channels 3 --sizes 512 1024   # -> bm3d_memory_rgb.md (opponent space)

BM3D deblurring's regularised inverses are global filters of the whole image; its BM3D filtering of their
coloured noise, where the package's memory goes, runs in ``restore.solvers.bm3d.TILE`` tiles (since 2026-12-03;
before, the package deblurred the whole image: about 700 bytes per pixel gray, 1,100 colour). The solver refuses
an image whose estimate exceeds the memory available. Each size runs in its own process (its peak RSS is its own):
a smooth random n x n image (gray, or with --channels 3 colour), Levin kernel 3, sigma 0.01, circular boundary.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).parent / "results" / "bm3d_memory.md"


def one(n: int, channels: int) -> None:
    import torch

    from restore.data import levin_kernel
    from restore.operators import Blur, GaussianNoise
    from restore.solvers.bm3d import bm3d

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, channels, n // 16, n // 16, generator=g), size=(n, n), mode="bicubic")
    op = Blur(levin_kernel(3), GaussianNoise(0.01))
    y = op(x.clamp(0, 1), generator=g)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    bm3d(y, op)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"RESULT {time.perf_counter() - t0:.1f} {before / 2**20:.3f} {after / 2**20:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--channels", type=int, choices=[1, 3], default=1)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(args.one, args.channels)
    out_file = OUT if args.channels == 1 else OUT.with_name("bm3d_memory_rgb.md")
    from restore.runtime import machine

    what = "" if args.channels == 1 else " of an RGB image (CBM3D's opponent space)"
    lines = [f"# BM3D deblurring{what}: peak memory against image size\n",
             f"`python benchmarks/bm3d_memory.py {' '.join(sys.argv[1:])}` on {machine(threads=False)}; peak RSS of "
             "the process before and after the call, and the growth per pixel.\n",
             "| image | seconds | peak RSS before (GiB) | peak RSS after (GiB) | growth (bytes / pixel) |",
             "|---|---|---|---|---|"]
    for n in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--channels", str(args.channels)], capture_output=True, text=True, check=True).stdout
        seconds, before, after = map(float, re.search(r"RESULT (\S+) (\S+) (\S+)", out).groups())
        lines.append(f"| {n}x{n} | {seconds:.1f} | {before:.2f} | {after:.2f} | {(after - before) * 2**30 / n**2:.0f} |")
        print(lines[-1], flush=True)
    out_file.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
