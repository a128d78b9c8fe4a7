"""PSNR and seconds of the solvers on a camera (valid) blur of held-out photos: to compare two versions of the
code on the same measurements.

    python benchmarks/valid_blur_quality.py --out after.jsonl
    PYTHONPATH=/path/to/other/checkout python benchmarks/valid_blur_quality.py --out before.jsonl
    python benchmarks/valid_blur_quality.py --compare before.jsonl after.jsonl   # -> a markdown table

The first -n validation photos of ``ddpm-photo-gray`` (``--photos-of ddpm-photo-rgb``: the colour prior's; their
training runs held them out; never a benchmark test image) are x, the scene; each is blurred by Levin et al.'s
kernels --kernels with the valid boundary (y is the frame, smaller than x by the kernel; ``--boundary circular``:
the periodic blur, y as large as x) and Gaussian noise sigma 2.55/255, seeded by photo and kernel. Each
solver's estimate of x is scored on the whole of x (PSNR after rounding to 8 bits) and on its frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def rows(args):
    import restore
    from restore import photo_bench
    from restore.data import levin_kernel
    from restore.operators import Blur, GaussianNoise, ValidBlur
    from restore.priors import load_prior

    sys.path.insert(0, str(Path(__file__).parent))
    from tune_photo import held_out_photos

    prior = load_prior(args.photos_of)
    blur = ValidBlur if args.boundary == "valid" else Blur
    photos, names = held_out_photos(prior, args.n, 1)
    for index, (x, name) in enumerate(zip(photos, names)):
        for k in args.kernels:
            op = blur(levin_kernel(k), GaussianNoise(2.55 / 255))
            y = op(x.double(), generator=torch.Generator().manual_seed(1000 * index + k)).float()
            for spec in args.solvers:
                solver, _, prior_name = spec.partition("@")
                _, solve, _ = photo_bench.method(solver, prior_name or None, shape=tuple(x.shape[1:]))
                t0 = time.perf_counter()
                x_hat = solve(y, op)
                seconds = time.perf_counter() - t0
                whole = photo_bench.score(x_hat, x)[0]
                frame = photo_bench.score(op.field_of_view(x_hat), op.field_of_view(x))[0]
                yield {"photo": name, "kernel": k, "boundary": args.boundary, "method": spec, "psnr": whole, "psnr_frame": frame,
                       "seconds": seconds, "code": str(Path(restore.__file__).parent)}


def compare(before: Path, after: Path) -> str:
    def load(path):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    old, new = load(before), load(after)
    methods = list(dict.fromkeys(r["method"] for r in new))
    out = ["| method | PSNR before (dB) | PSNR after (dB) | frame before | frame after | s before (median) | "
           "s after (median) | ratio |", "|---|---|---|---|---|---|---|---|"]
    for m in methods:
        a = [r for r in old if r["method"] == m]
        b = [r for r in new if r["method"] == m]
        if not a or len(a) != len(b):
            continue
        mean = lambda rs, key: sum(r[key] for r in rs) / len(rs)  # noqa: E731
        sa, sb = statistics.median(r["seconds"] for r in a), statistics.median(r["seconds"] for r in b)
        out.append(f"| {m} | {mean(a, 'psnr'):.2f} | {mean(b, 'psnr'):.2f} | {mean(a, 'psnr_frame'):.2f} | "
                   f"{mean(b, 'psnr_frame'):.2f} | {sa:.2f} | {sb:.2f} | {sa / sb:.1f} |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=3, help="held-out photos")
    parser.add_argument("--kernels", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--solvers", nargs="+", default=["wiener", "tv", "pinv", "dpir@ddpm-photo-gray",
                                                          "epll@gmm-photo-gray"],
                        help="SOLVER or SOLVER@PRIOR")
    parser.add_argument("--photos-of", default="ddpm-photo-gray",
                        help="whose held-out photos: ddpm-photo-gray's (gray) or ddpm-photo-rgb's (colour)")
    parser.add_argument("--boundary", choices=["valid", "circular"], default="valid",
                        help="valid: y is the frame (a camera); circular: the periodic blur the benchmark uses")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"))
    args = parser.parse_args()
    if args.compare:
        print(compare(*args.compare))
        return
    with args.out.open("a") as f:
        for r in rows(args):
            print(json.dumps(r), flush=True)
            f.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
