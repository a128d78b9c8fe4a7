"""DPS's step size on a whole photo: how zeta should grow with the image.

One held-out training photo (the first of ``ddpm-photo-rgb``'s validation split, a BSDS400 image never
in a benchmark test set), made gray and cropped to a multiple of 4, degraded as the natural-image
benchmark's 4x super-resolution setting degrades Set12; ``ddpm-photo-gray`` and DPS at 100 steps for
each zeta given, seed 0. One JSON line per run is appended to benchmarks/results/tune/dps_photo.jsonl,
and the table of all lines is rewritten to dps_photo.md. Compare with the 180x180 held-out photos of
``benchmarks/tune_photo.py --setting superres/set12/x4 --prior ddpm-photo-gray --solver dps``.

    python benchmarks/dps_step_photo.py --zeta 3.16,20,default,100
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from restore import photo_bench
from restore.data import held_out_images
from restore.operators import functional as Fn
from restore.priors import load_prior
from restore.runtime import machine
from restore.solvers import PRIOR_SOLVERS

OUT = Path(__file__).parent / "results" / "tune"


def table(lines: list[dict]) -> str:
    rows = ["| photo | size | zeta | PSNR (dB) | SSIM | pseudo-inverse (dB) | seconds |", "|---|---|---|---|---|---|---|"]
    for r in sorted(lines, key=lambda r: (r["photo"], r["zeta"])):
        rows.append(f"| {r['photo']} | {r['size']} | {r['zeta']:.2f}{' (default)' if r['default'] else ''} | "
                    f"{r['psnr']:.2f} | {r['ssim']:.3f} | {r['pinv']:.2f} | {r['seconds']:.0f} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zeta", default="default", help="comma-separated values; 'default' is dps's own rule")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--table", action="store_true", help="only rewrite the table")
    args = parser.parse_args()
    log = OUT / "dps_photo.jsonl"
    if not args.table:
        run(args.zeta, args.steps, log)
    lines = [json.loads(s) for s in log.read_text().splitlines() if s.strip()]
    (OUT / "dps_photo.md").write_text(
        "# DPS's step size on a whole photo\n\nProduced by `python benchmarks/dps_step_photo.py`: 4x super-resolution "
        "(the Set12 setting's operator) of a held-out BSDS400 photo made gray, `ddpm-photo-gray`, DPS at 100 steps, "
        "seed 0, one run per row on the project's 2-core CPU. The default is sqrt(T / steps * H * W) / 28 for H x W pixels (gray or colour); "
        "before 2026-12-01 it was sqrt(T / steps), 3.16 at 100 steps.\n\n" + table(lines) + "\n\n"
        + small_photos() + "\n")


def small_photos() -> str:
    """The 180x180 held-out Train400 photos' DPS cells of benchmarks/tune_photo.py, by zeta."""
    import numpy as np

    path = OUT / "photo_cells.jsonl"
    groups: dict[str, list[float]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        r = json.loads(line)
        if r["setting"] != "superres/set12/x4" or not r["method"].startswith("ddpm-photo-gray + dps 100"):
            continue
        s = r["settings"]
        label = (f"{s['zeta']:g}" if s.get("zeta") is not None
                 else "the default" if s.get("zeta_rule") else "3.16 (the default before)")
        groups.setdefault(label, []).append(r["psnr"])
    cells = ", ".join(f"{label} {np.mean(v):.2f} dB" for label, v in sorted(
        groups.items(), key=lambda kv: float(kv[0].split()[0]) if kv[0][0].isdigit() else math.inf))
    return ("On the two 180x180 held-out Train400 photos of `benchmarks/tune_photo.py --setting superres/set12/x4 "
            f"--prior ddpm-photo-gray --solver dps --steps 100` (mean PSNR by zeta; rows in photo.md): {cells}.")

def run(zetas: str, steps: int, log: Path) -> None:
    images, names = held_out_images(load_prior("ddpm-photo-rgb").run_info, channels=1, n=1)
    x = Fn.modcrop(images[0].float()[None] / 255, 4)  # (1, 1, H, W)
    setting = next(s for s in photo_bench.settings() if s.name == "superres/set12/x4")
    op, y = photo_bench.measurement(setting, x, 0)
    prior = load_prior("ddpm-photo-gray")
    pinv = photo_bench.score(op.A_pinv(y).clamp(0, 1), x, setting.shave)[0]
    for value in zetas.split(","):
        default = value == "default"
        zeta = math.sqrt(prior.num_timesteps / steps) * (math.sqrt(x[0].numel()) / 28) if default else float(value)
        t0 = time.perf_counter()
        x_hat = PRIOR_SOLVERS["dps"](y, op, prior, steps=steps, generator=torch.Generator().manual_seed(0),
                                     **({} if default else {"zeta": zeta})).detach()
        psnr, ssim = photo_bench.score(x_hat, x, setting.shave)
        line = {"photo": names[0], "size": "x".join(map(str, x.shape[-2:][::-1])), "steps": steps, "zeta": zeta,
                "default": default, "psnr": psnr, "ssim": ssim, "pinv": pinv,
                "seconds": time.perf_counter() - t0, "prior_steps": prior.info().get("training_steps"),
                "machine": machine()}
        print(json.dumps(line), flush=True)
        with open(log, "a") as f:
            f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
