"""TV's weight for photographs, chosen on training images (Train400 images 10-13, 180x180 gray).

    python benchmarks/tune_tv_photos.py        # -> benchmarks/results/tune/tv_photos.md

PSNR of TV (ADMM, 100 iterations) for each weight on denoising (sigma 15, 25, 50 on 0-255), deblurring
(Levin kernel 3, circular, sigma 2.55 and 7.65) and inpainting (50% and 80% missing). The default for
photographs (6) is the weight that is within about 0.6 dB of each task's best; digits keep 2, chosen on MNIST.
"""

from __future__ import annotations

from pathlib import Path

import torch

from restore import io
from restore.data import levin_kernel, natural_folder
from restore.metrics import psnr
from restore.operators import Blur, Denoising, GaussianNoise, Inpainting
from restore.runtime import machine
from restore.solvers import CLASSICAL

WEIGHTS = (0.5, 1, 2, 4, 5, 6, 8, 10, 20)
OUT = Path(__file__).parent / "results" / "tune" / "tv_photos.md"


def main():
    files = sorted(natural_folder("train400").iterdir())
    x = torch.cat([io.read_image(p)[0] for p in files[10:14]])
    tasks = {"denoise sigma 15": Denoising(GaussianNoise(15 / 255)), "denoise sigma 25": Denoising(GaussianNoise(25 / 255)),
             "denoise sigma 50": Denoising(GaussianNoise(50 / 255)),
             "deblur levin3 sigma 2.55": Blur(levin_kernel(3), GaussianNoise(2.55 / 255)),
             "deblur levin3 sigma 7.65": Blur(levin_kernel(3), GaussianNoise(7.65 / 255)),
             "inpaint 50% missing": Inpainting.random(x.shape[1:], 0.5, seed=0),
             "inpaint 80% missing": Inpainting.random(x.shape[1:], 0.8, seed=0)}
    lines = [f"# TV weight on training photos\n\n`python benchmarks/tune_tv_photos.py` on {machine()}. "
             "Train400 images 10-13 (training images, not test ones); TV by ADMM, 100 iterations; mean PSNR (dB).\n",
             "| task | " + " | ".join(f"w {w}" for w in WEIGHTS) + " |", "|---|" + "---|" * len(WEIGHTS)]
    for name, op in tasks.items():
        y = op(x, generator=torch.Generator().manual_seed(0))
        row = [float(psnr(CLASSICAL["tv"](y, op, None, weight=w), x).mean()) for w in WEIGHTS]
        best = max(row)
        lines.append(f"| {name} | " + " | ".join(f"**{v:.2f}**" if v == best else f"{v:.2f}" for v in row) + " |")
        print(lines[-1], flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
