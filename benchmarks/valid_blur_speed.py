"""Seconds of a valid (camera) blur's linear algebra on photos of growing size: before and after its FFTs on
fast grids and its preconditioned conjugate gradients.

    python benchmarks/valid_blur_speed.py            # -> benchmarks/results/valid_blur_speed.md

A valid blur's unknown is the frame grown by the kernel's radius. Before, A and A^T were a circular
convolution on that grown domain (complex FFTs of a length such as 4026 = 2 x 3 x 11 x 61, the transfer
function recomputed in float64 at every call), and every solver without a closed form for it (the
pseudo-inverse, DPIR's data step, EPLL's) ran plain conjugate gradients on the normal equations. Now the
convolution runs on the smallest grid at least as large with lengths free of primes above 7, by real FFTs,
with a cached transfer function, and conjugate gradients are preconditioned by the circulant (K^T K + rho I)^-1
on that grid. Both ways run here in one process on the same float32 RGB photo (a training image, bicubically
enlarged to each size, blurred by Levin et al.'s kernel --kernel, noise sigma 0.01): medians of --repeats calls after
a warm-up call for A and A^T; for the solves, the number of iterations to the tolerance the solvers use
(1e-6 of ||b||; at most 50 for DPIR's data step, at most 200 for the pseudo-inverse), the seconds, and the
largest difference between the two answers. The data step's rho is DPIR's first and last, lam sigma_y^2 /
sigma_k^2 for sigma_k = 49/255 and 0.01. The pseudo-inverse's rows time its conjugate gradients in float32 both
ways (eps = rcond^2 ||A||^2, rcond 1e-3); ``ValidBlur.A_pinv`` now runs them in float64, where float32's rounding
no longer decides the converged answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from frame_size import frame_size

from restore import io
from restore.data import levin_kernel, natural_folder
from restore.operators import ValidBlur
from restore.operators import functional as Fn
from restore.operators.base import DEFAULT_RCOND, conjugate_gradient, normal_preconditioner
from restore.runtime import machine
from restore.solvers import classical
from superres_data_step import timed  # median seconds after a warm-up call (FFT plans, the cached transfer function)

OUT = Path(__file__).parent / "results" / "valid_blur_speed.md"


class Before:
    """The valid blur as it was: the circular convolution on x's own (grown) domain by complex FFTs, its
    transfer function computed afresh at every call; conjugate gradients unpreconditioned."""

    def __init__(self, op: ValidBlur):
        self.op = op

    def otf(self, x):
        return Fn.kernel_otf(self.op.kernel.double(), *x.shape[-2:]).to(torch.complex64)

    def A(self, x):
        return self.op.field_of_view(torch.fft.ifft2(self.otf(x) * torch.fft.fft2(x)).real)

    def A_adjoint(self, y):
        grown = self.op.grow(y)
        return torch.fft.ifft2(self.otf(grown).conj() * torch.fft.fft2(grown)).real


class Counted:
    """apply(v) that counts its calls: the iterations of conjugate gradients (plus the one of the residual)."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, v):
        self.calls += 1
        return self.fn(v)


def solve(ops, b, rho, x0, max_iter, precondition):
    """x0 + CG on (A^T A + rho I) d = b - (A^T A + rho I) x0, as DPIR's data step (x0 = 0: the pseudo-inverse);
    (seconds, iterations, x)."""
    apply = Counted(lambda v: ops.A_adjoint(ops.A(v)) + rho * v)
    t0 = time.perf_counter()
    r0 = b - apply(x0)
    apply.calls = 0
    x = x0 + conjugate_gradient(apply, r0, max_iter=max_iter, tol=1e-6, precondition=precondition)
    return time.perf_counter() - t0, apply.calls, x


def old_domain(y, operator):
    """classical.circular_domain as it was: the margins exactly the kernel's radius plus its size, whatever
    FFT lengths they make."""
    rh, rw = operator.radius
    mh, mw = operator.kernel.shape
    return Fn.reflect_pad(y, rh + mh, rw + mw), lambda x: x[..., mh : x.shape[-2] - mh, mw : x.shape[-1] - mw]


def wiener_with(domain, y, op):
    saved, classical.circular_domain = classical.circular_domain, domain
    try:
        return classical.wiener(y, op)
    finally:
        classical.circular_domain = saved


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=frame_size, nargs="+", default=[(481, 321), (2048, 2048), (4000, 3000)], help="WIDTHxHEIGHT frames")
    parser.add_argument("--kernel", type=int, default=4, help="Levin et al.'s kernel N (1-8; 4 is 27x27)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old-pinv-max", type=int, default=2048 * 2048,
                        help="run the old pseudo-inverse only on frames of at most this many pixels")
    parser.add_argument("--parts", nargs="+", choices=["operator", "wiener"], default=["operator", "wiener"],
                        help="operator: A, A^T and the solves; wiener: Wiener deconvolution on the mirrored domain "
                        "(classical.circular_domain) grown to fast lengths, against the kernel-sized margins alone")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    op = ValidBlur(levin_kernel(args.kernel))
    before = Before(op)
    photo = io.read_image(natural_folder("bsds400") / "100039.jpg")[0]  # (1, 3, 321, 481)
    lines = [f"# A valid blur's linear algebra, before and after (Levin kernel {args.kernel}, "
             f"{op.kernel.shape[1]}x{op.kernel.shape[0]}, float32 RGB)\n",
             f"`python benchmarks/valid_blur_speed.py {' '.join(sys.argv[1:])}` on {machine()}. Seconds are "
             "medians after a warm-up for A and A^T, single runs for the solves; 'iterations' counts applications "
             "of A^T A; 'max difference' is between the two answers (images in [0, 1]).\n",
             "| frame | FFT grid (before / after) | operation | after (s) | before (s) | ratio | iterations (after / before) "
             "| max difference |", "|---|---|---|---|---|---|---|---|"]

    def row(*cells):
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
        print(lines[-1], flush=True)

    for width, height in args.sizes:
        g = torch.Generator().manual_seed(0)
        x = torch.nn.functional.interpolate(photo, size=op.input_shape((height, width)), mode="bicubic",
                                            align_corners=False).clamp(0, 1)
        y = op.A(x) + 0.01 * torch.randn(op.measurement_shape(tuple(x.shape)), generator=g)
        if "wiener" in args.parts:
            before_grid, after_grid = old_domain(y, op)[0].shape[-2:], classical.circular_domain(y, op)[0].shape[-2:]
            t_new, a = timed(lambda: wiener_with(classical.circular_domain, y, op), args.repeats)
            t_old, b = timed(lambda: wiener_with(old_domain, y, op), args.repeats)
            row(f"{width}x{height}", f"{before_grid[1]}x{before_grid[0]} / {after_grid[1]}x{after_grid[0]}", "Wiener",
                f"{t_new:.3f}", f"{t_old:.3f}", f"{t_old / t_new:.1f}", "", f"{float((a - b).abs().max()):.1e}")
        if "operator" not in args.parts:
            continue
        grids = f"{x.shape[-1]}x{x.shape[-2]} / {op.grid(x.shape)[1]}x{op.grid(x.shape)[0]}"
        for name, new, old, arg in (("A", op.A, before.A, x), ("A^T", op.A_adjoint, before.A_adjoint, y)):
            t_new, a = timed(lambda: new(arg), args.repeats)
            t_old, b = timed(lambda: old(arg), args.repeats)
            row(f"{width}x{height}", grids, name, f"{t_new:.3f}", f"{t_old:.3f}", f"{t_old / t_new:.1f}", "",
                f"{float((a - b).abs().max()):.1e}")
        aty = op.A_adjoint(y)
        z = op.extend(y)  # DPIR's first z: y with its edges repeated
        for sigma_k in (49 / 255, 0.01):
            rho = 0.23 * 0.01**2 / sigma_k**2
            b = aty + rho * z
            t_new, n_new, a = solve(op, b, rho, z, 50, normal_preconditioner(op, z, rho))
            t_old, n_old, c = solve(before, b, rho, z, 50, None)
            row(f"{width}x{height}", grids, f"data step, rho {rho:.1e}", f"{t_new:.2f}", f"{t_old:.2f}",
                f"{t_old / t_new:.1f}", f"{n_new} / {n_old}", f"{float((a - c).abs().max()):.1e}")
        eps = DEFAULT_RCOND**2 * op.norm_squared(aty)
        t_new, n_new, a = solve(op, aty, eps, torch.zeros_like(aty), 200, normal_preconditioner(op, aty, eps))
        if width * height <= args.old_pinv_max:
            t_old, n_old, c = solve(before, aty, eps, torch.zeros_like(aty), 200, None)
            row(f"{width}x{height}", grids, "pseudo-inverse's CG", f"{t_new:.2f}", f"{t_old:.2f}", f"{t_old / t_new:.1f}",
                f"{n_new} / {n_old}", f"{float((a - c).abs().max()):.1e}")
        else:
            row(f"{width}x{height}", grids, "pseudo-inverse's CG", f"{t_new:.2f}", "not run", "", f"{n_new} / -", "")
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
