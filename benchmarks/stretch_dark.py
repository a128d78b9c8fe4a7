"""What --stretch does on a dark image: the figures README.md quotes.

    python benchmarks/stretch_dark.py

A 128x96 crop of a training photo (bsds400, the fourth, made gray) stored as unscaled 12-bit data in a
16-bit PNG (values 0-4095 of 65535), as ``tests/test_photos.py`` builds it: denoised with noise at 5% of
its range by the gray photo prior's Tweedie estimate, and blurred (Gaussian 1.5, noise 0.0005) then
deblurred by TV, each through the command line with and without ``--stretch``. PSNR on the file's [0, 1]
scale. Writes benchmarks/results/stretch_dark.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from restore import io
from restore.data import natural_folder

OUT = Path(__file__).parent / "results" / "stretch_dark.md"


def restore(*args) -> dict:
    done = subprocess.run([sys.executable, "-m", "restore.cli", *map(str, args), "--json"], capture_output=True,
                          text=True, check=True)
    return json.loads(done.stdout)


def main():
    x = io.read_image(sorted(natural_folder("bsds400").iterdir())[3])[0].mean(1, keepdim=True)[..., :96, :128]
    x = x * (4095 / 65535)
    sigma = 0.05 * 4095 / 65535
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        io.write_png(tmp / "clean.png", x, bits=16)
        noisy = x + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        io.write_png(tmp / "noisy.png", noisy.clamp(0, 1), bits=16)
        subprocess.run([sys.executable, "-m", "restore.cli", "degrade", tmp / "clean.png", "--task", "deblur", "--kernel",
                        "gaussian:1.5", "--noise", "0.0005", "-o", tmp / "blurred.png"], check=True, capture_output=True)
        cases = [("denoising, noise 5% of the range", "ddpm-photo-gray + tweedie",
                  ["denoise", tmp / "noisy.png", "--noise", sigma, "--prior", "ddpm-photo-gray"]),
                 ("deblurring, Gaussian 1.5", "tv", ["deblur", tmp / "blurred.json", "--solver", "tv"])]
        for task, method, args in cases:
            psnr = [restore(*args, "--reference", tmp / "clean.png", "-o", tmp / "out.png", *extra)["psnr"]
                    for extra in ([], ["--stretch"])]
            rows.append(f"| {task} | {method} | {psnr[0]:.2f} | {psnr[1]:.2f} |")
    table = "\n".join(["| task | method | as it is (dB) | --stretch (dB) |", "|---|---|---|---|", *rows])
    OUT.write_text(f"# --stretch on a dark 12-bit photo\n\nProduced by `python benchmarks/stretch_dark.py` "
                   f"(see its docstring).\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
