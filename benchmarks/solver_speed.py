"""Wall-clock time of each diffusion solver on 100 MNIST images at 50 steps (one sample each).

The speed target of the diffusion-solver issue: 100 images at 50 steps in at most 30 s on this
machine. Every solver runs on the same box-inpainting measurements in one batch; ``--rounds``
repeats the whole set (solvers interleaved, so machine load hits them alike) and the median is
reported, with the time per network evaluation so solvers with and without backpropagation compare.

    python benchmarks/solver_speed.py                 # shipped DDPM, 100 images, 50 steps, 1 round
    python benchmarks/solver_speed.py --rounds 3 --task superres
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from restore import io
from restore.data import mnist_images
from restore.priors import load_prior
from restore.runtime import keep_freed_memory, machine
from restore.solvers import DIFFUSION, missing_capabilities
from restore.solvers.counting import CountingPrior
from restore.tasks import standard_operator

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="ddpm")
    parser.add_argument("--task", default="inpaint-box")
    parser.add_argument("-n", type=int, default=100)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    prior = load_prior(args.prior)
    x, _ = mnist_images(args.n)
    op = standard_operator(args.task, x.shape[1:], 0)
    y = op(x, generator=torch.Generator().manual_seed(0))
    solvers = [s for s in DIFFUSION if not missing_capabilities(DIFFUSION[s], op)]
    times: dict[str, list[float]] = {s: [] for s in solvers}
    nfe = {}
    for _ in range(args.rounds):
        for name in solvers:
            counted = CountingPrior(prior)
            t0 = time.perf_counter()
            DIFFUSION[name](y, op, counted, steps=args.steps, generator=torch.Generator().manual_seed(0))
            times[name].append(time.perf_counter() - t0)
            nfe[name] = counted.calls
    rows = [{"solver": s, "seconds": statistics.median(times[s]), "all_seconds": times[s], "nfe": nfe[s],
             "ms_per_image_nfe": 1000 * statistics.median(times[s]) / (nfe[s] * args.n)} for s in solvers]
    RESULTS.mkdir(exist_ok=True)
    where = machine()
    io.write_json(RESULTS / "solver_speed.json", {"prior": args.prior, "task": args.task, "n": args.n,
                                                 "steps": args.steps, "rounds": args.rounds, "machine": where,
                                                 "rows": rows})
    lines = [f"{args.n} MNIST test images, {args.task}, {args.steps} steps, one sample each, prior `{args.prior}`, "
             f"median of {args.rounds} round(s), on {where}; target: <= 30 s.", "",
             "| solver | seconds | NFE | ms per image per NFE | within 30 s |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['solver']} | {r['seconds']:.1f} | {r['nfe']} | {r['ms_per_image_nfe']:.2f} | "
                     f"{'yes' if r['seconds'] <= 30 else 'no'} |")
    (RESULTS / "solver_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    keep_freed_memory()
    main()
