"""Peak memory and seconds of BM3D deblurring (the authors' package) against the image's size.

    python benchmarks/bm3d_memory.py --sizes 256 512 1024   # -> benchmarks/results/bm3d_memory.md (rewritten whole)
    python benchmarks/bm3d_memory.py --channels 3 --sizes 512 1024   # -> bm3d_memory_rgb.md (opponent space)
    python benchmarks/bm3d_memory.py --sizes 4000x3000 --out runs/bm3d_4000.md   # W x H; the table to another file

BM3D deblurring's regularised inverses are global filters of the whole image; its BM3D filtering of their
coloured noise, where the package's memory goes, runs in ``restore.solvers.bm3d.TILE`` tiles (since 2026-12-03;
before, the package deblurred the whole image: about 700 bytes per pixel gray, 1,100 colour). The solver refuses
an image whose estimate exceeds the memory available. Each size runs in its own process (its peak RSS is its own):
a smooth random n x n (or W x H) image (gray, or with --channels 3 colour), Levin kernel 3, sigma 0.01, circular
boundary.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from frame_size import at_least

OUT = Path(__file__).parent / "results" / "bm3d_memory.md"
SIZE = at_least(16)  # the test image is bicubic noise of 1/16 the size


def one(w: int, h: int, channels: int) -> None:
    import torch

    from restore.data import levin_kernel
    from restore.operators import Blur, GaussianNoise
    from restore.solvers.bm3d import bm3d

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, channels, h // 16, w // 16, generator=g), size=(h, w), mode="bicubic")
    op = Blur(levin_kernel(3), GaussianNoise(0.01))
    y = op(x.clamp(0, 1), generator=g)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    bm3d(y, op)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(f"RESULT {time.perf_counter() - t0:.1f} {before / 2**20:.3f} {after / 2**20:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=SIZE, nargs="+", default=[(256, 256), (512, 512), (1024, 1024)],
                        help="N (N x N) or WxH")
    parser.add_argument("--channels", type=int, choices=[1, 3], default=1)
    parser.add_argument("--out", type=Path, help="the table's file (default: bm3d_memory.md, or bm3d_memory_rgb.md "
                        "with --channels 3, in benchmarks/results; the whole file is rewritten)")
    parser.add_argument("--one", type=SIZE, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        return one(*args.one, args.channels)
    out_file = args.out or (OUT if args.channels == 1 else OUT.with_name("bm3d_memory_rgb.md"))
    out_file.parent.mkdir(parents=True, exist_ok=True)  # before the measurements, which take minutes
    from restore.runtime import machine

    what = "" if args.channels == 1 else " of an RGB image (CBM3D's opponent space)"
    lines = [f"# BM3D deblurring{what}: peak memory against image size\n",
             f"`python benchmarks/bm3d_memory.py {' '.join(sys.argv[1:])}` on {machine(threads=False)}; peak RSS of "
             "the process before and after the call, and the growth per pixel.\n",
             "| image | seconds | peak RSS before (GiB) | peak RSS after (GiB) | growth (bytes / pixel) |",
             "|---|---|---|---|---|"]
    for w, h in args.sizes:
        out = subprocess.run([sys.executable, __file__, "--one", f"{w}x{h}", "--channels", str(args.channels)],
                             capture_output=True, text=True, check=True).stdout
        seconds, before, after = map(float, re.search(r"RESULT (\S+) (\S+) (\S+)", out).groups())
        lines.append(f"| {w}x{h} | {seconds:.1f} | {before:.2f} | {after:.2f} | {(after - before) * 2**30 / (w * h):.0f} |")
        print(lines[-1], flush=True)
    out_file.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
