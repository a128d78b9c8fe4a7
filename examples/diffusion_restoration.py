"""Restore MNIST digits with a learned prior and two diffusion solvers, through the Python API.

    python examples/diffusion_restoration.py                     # the shipped DDPM
    python examples/diffusion_restoration.py --prior gaussian --steps 20
"""

import argparse

import torch

from restore import metrics, operators
from restore.data import mnist_images
from restore.priors import load_prior
from restore.solvers import CLASSICAL, DIFFUSION

parser = argparse.ArgumentParser()
parser.add_argument("--prior", default="ddpm", help="family name, model folder or hub id")
parser.add_argument("--steps", type=int, default=50)
args = parser.parse_args()

x, _ = mnist_images(8)  # (8, 1, 28, 28) in [0, 1]
prior = load_prior(args.prior)
operator = operators.Inpainting.centre_box(x.shape[1:], 14)  # the middle 14x14 is missing
y = operator(x, generator=torch.Generator().manual_seed(0))

print(f"biharmonic          PSNR {metrics.psnr(CLASSICAL['biharmonic'](y, operator, None), x).mean():6.2f} dB")
for name in ("ddnm", "pigdm"):
    x_hat = DIFFUSION[name](y, operator, prior, steps=args.steps, generator=torch.Generator().manual_seed(1))
    print(f"{args.prior} + {name:8s} PSNR {metrics.psnr(x_hat.clamp(0, 1), x).mean():6.2f} dB (one posterior sample)")
