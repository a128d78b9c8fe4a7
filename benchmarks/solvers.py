r"""The project's solver table: ``restore bench`` on MNIST with the shipped priors.

    python benchmarks/solvers.py                 # the six priors on 20 images, into results/bench
    python benchmarks/solvers.py --diffusion     # the diffusion solvers' table, into results/bench-diffusion
    python benchmarks/solvers.py --quick         # a smoke run into results/bench-quick
    # DPS on deblurring from the diffusion table, DPS 1000 on all 100 images, into results/bench-deblur-100:
    python benchmarks/solvers.py --diffusion --tasks deblur --priors ddpm --solvers dps \
        --paper-n 100 --out bench-deblur-100

``--diffusion`` is the diffusion-solver issue's protocol: the DDPM and the Gaussian prior with the
six Tweedie solvers at 20, 50 and 100 steps on 100 images, the papers' step counts (DPS 1000,
RePaint 250) on the first 20, the classical baselines, and the settings chosen on held-out
images (``TUNED``) as rows of their own. Every cell is cached under
benchmarks/results/bench/cells/ (on this machine, not in git: a fresh clone recomputes them; shared by both
tables, keyed by the data, the settings and a digest of each prior's weights), so an interrupted run computes
only what is missing. Writes
{results.json,results.md,summary.md,report.html,<task>.png} into its folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from restore.bench import run_bench
from restore.runtime import keep_freed_memory
from restore.solvers import DIFFUSION, LATENT
from restore.tasks import STANDARD

RESULTS = Path(__file__).parent / "results"

#: Settings chosen on held-out test images (benchmarks/tune_solvers.py, images 1000-1019), run in the
#: --diffusion table as their own rows beside each solver's defaults. DPS on deblurring at 100 steps:
#: fidelity 1, 2, 3 gave 23.18, 23.48 and 22.75 dB (zeta 3.2, 6.3, 9.5); 1.5 and 2.5 gave 23.35 and 23.44.
#: DDRM on deblurring at 100 steps: eta (Kawar et al.'s 0.85, our default now 1) 0.85, 0.95, 1.0 at fidelity 2
#: gave 21.82, 22.85, 23.65 dB; fidelity 1, 2, 4 at eta 1 gave 23.29, 23.65, 23.52 (at 50 steps 22.79,
#: 23.24, 23.12). Not kept: DiffPIR's lam 0.3, 0.5, 1, 3, 20 (23.19, 23.39, 23.38, 22.66, 20.05 dB), PiGDM
#: fidelity 0.5, 2, 4 (22.07, 22.52, 22.30) and DPS with eta 0.5 (16.58), all at 100 steps.
#: On 100 other held-out images (1000-1099) DPS 100 at fidelity 2 gave 23.14 dB and DiffPIR 100 at most 22.91 (lam
#: 0.5, 1, 2 by zeta 0.5, 0.8, 1; best lam 0.5, zeta 1). One-off variants of DPS 100 at fidelity 2, not in the
#: library, on images 1000-1019 against its 23.48 dB: "trailing" step spacing (999, 989, ..., 9) 23.53 (23.18
#: against 23.14 on 1000-1099), the DDPM variance beta_t in place of beta_tilde_t 23.27, zeta weighted by sqrt(1 -
#: alpha_bar_t) 23.00 or by sqrt(alpha_bar_t) 19.09 (mean weight 1), DDIM's quadratic spacing with zeta by the
#: square root of each stride 23.44, the residual of the clipped x0_hat 23.43.
TUNED = {("ddpm", "deblur", "dps"): [{"fidelity": 2.0}], ("ddpm", "deblur", "ddrm"): [{"fidelity": 2.0, "eta": 1.0}]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # Defaults of None are filled in below: --diffusion has its own.
    parser.add_argument("--priors", help="default: ddpm,gaussian,vae,gan,flow,pixelcnn (--diffusion: ddpm,gaussian)")
    # map is left out: on a flow it defaults to the latent space, where it is csgm with the same settings.
    parser.add_argument("--solvers", help="default: every solver (--diffusion: the diffusion solvers)")
    parser.add_argument("--tasks", default=",".join(STANDARD))
    parser.add_argument("--steps", default="20,50,100")
    parser.add_argument("-n", type=int, help="MNIST test images per cell (default 20; --diffusion: 100)")
    parser.add_argument("--paper-n", type=int,
                        help="images for the papers' step counts, 0 to skip (default 3; --diffusion: 20)")
    parser.add_argument("--out", help="folder under benchmarks/results for the tables (default: by mode)")
    parser.add_argument("--samples", type=int, default=4, help="posterior samples per image")
    parser.add_argument("--diffusion", action="store_true",
                        help="ddpm and gaussian with the diffusion solvers on 100 images (papers' steps on 20), "
                             "into results/bench-diffusion")
    parser.add_argument("--quick", action="store_true", help="4 images, 5 steps, 2 samples, into results/bench-quick")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    out = RESULTS / (args.out or ("bench-quick" if args.quick else "bench-diffusion" if args.diffusion else "bench"))
    cells = None if args.quick else RESULTS / "bench" / "cells"
    defaults = {"priors": "ddpm,gaussian,vae,gan,flow,pixelcnn", "n": 20, "paper_n": 3,
                "solvers": ",".join([*DIFFUSION, *LATENT, "langevin", "annealed-langevin", "conditional"])}
    if args.diffusion:
        defaults.update(priors="ddpm,gaussian", solvers=",".join(DIFFUSION), n=100, paper_n=20)
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.quick:
        args.n, args.steps, args.samples, args.paper_n = 4, "5", 2, 0
    out.mkdir(exist_ok=True)
    result = run_bench(data="mnist", tasks=args.tasks.split(","), priors=args.priors.split(","),
                       solvers=args.solvers.split(","), n=args.n, out=out, steps=[int(s) for s in args.steps.split(",")],
                       samples=args.samples, force=args.force, paper_n=args.paper_n, cells=cells,
                       variants=TUNED if args.diffusion else None)
    print(result["table"])


if __name__ == "__main__":
    keep_freed_memory()
    main()
