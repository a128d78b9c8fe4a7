"""Seconds of super-resolution's linear algebra on photos of growing size: the banded path against the SVD's.

    python benchmarks/superres_data_step.py --repeats 3   # -> benchmarks/results/superres_data_step.md

`Downsample` applies A and A^T by the nonzeros of its 1-D matrices and computes the data step
argmin ||A v - y||^2 + rho ||v - x||^2 (``prox_l2``: DPIR's, DiffPIR's and TV's, once per iteration) and the
pseudo-inverse through the small (n/k, n/k) left singular vectors. Before, A was the dense product
D_h x D_w^T and the other two went through the right singular vectors V, dense (n, n) matrices: 4000x4000
and 3000x3000 for a 4000x3000 output. Both ways are timed here in one process on the same float64 RGB
arrays (the data step's dtype), 4x bicubic, with the largest deviation between them; medians of --repeats
calls after one warm-up call (which also builds the cached factors).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from frame_size import frame_size

from restore.operators import Downsample, SVDOperator
from restore.operators import functional as Fn
from restore.runtime import machine

OUT = Path(__file__).parent / "results" / "superres_data_step.md"


def timed(fn, repeats: int):
    out = fn()  # warm-up: builds and caches the factors
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=frame_size, nargs="+", default=[(480, 320), (2048, 2048), (4000, 3000)], help="WIDTHxHEIGHT outputs")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--factor", type=int, default=4)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    op = Downsample(args.factor, "bicubic")
    lines = [f"# Super-resolution's linear algebra, banded against the SVD's ({args.factor}x bicubic, float64 RGB)\n",
             f"`python benchmarks/superres_data_step.py {' '.join(sys.argv[1:])}` on {machine()}; median seconds per call after a warm-up call, and the largest "
             "absolute difference between the two results (images in [0, 1]).\n",
             "| output size | operation | banded (s) | SVD / dense (s) | ratio | max difference |", "|---|---|---|---|---|---|"]
    for width, height in args.sizes:
        g = torch.Generator().manual_seed(0)
        x = torch.rand(1, 3, height, width, generator=g, dtype=torch.float64)
        y = torch.rand(1, 3, height // args.factor, width // args.factor, generator=g, dtype=torch.float64)
        Dh, Dw = (Fn.resample_matrix(n, args.factor, "bicubic") for n in (height, width))
        rho = 0.05
        cases = {
            "A": (lambda: op.A(x), lambda: Dh @ x @ Dw.T),
            "A^T": (lambda: op.A_adjoint(y), lambda: Dh.T @ y @ Dw),
            "prox_l2 (data step)": (lambda: op.prox_l2(x, y, rho), lambda: SVDOperator.prox_l2(op, x, y, rho)),
            "pseudo-inverse": (lambda: op.A_pinv(y), lambda: SVDOperator.A_pinv(op, y)),
        }
        # Cold start: the first spectral(y) of a solver builds the factors for this size. Before, that was a
        # full SVD of each 1-D matrix (the (n, n) V included); now the eigendecomposition of D D^T.
        t0 = time.perf_counter()
        Fn._resample_factors.cache_clear()
        op.spectral(y)
        t_new = time.perf_counter() - t0
        t0 = time.perf_counter()
        for D in (Dh, Dw):
            torch.linalg.svd(D, full_matrices=True)
        t_old = time.perf_counter() - t0
        lines.append(f"| {width}x{height} | first spectral(y) (factors built) | {t_new:.3f} | {t_old:.3f} | "
                     f"{t_old / t_new:.1f} | |")
        print(lines[-1], flush=True)
        for name, (new, old) in cases.items():
            t_new, a = timed(new, args.repeats)
            t_old, b = timed(old, args.repeats)
            diff = float((a - b).abs().max())
            lines.append(f"| {width}x{height} | {name} | {t_new:.3f} | {t_old:.3f} | {t_old / t_new:.1f} | {diff:.1e} |")
            print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
