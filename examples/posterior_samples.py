"""Draw posterior samples for one damaged digit: their mean, their spread, and how well the spread
covers the true error.

    python examples/posterior_samples.py                  # writes posterior_samples.png and posterior_std.png
    python examples/posterior_samples.py --prior gaussian --samples 16 --steps 20
"""

import argparse

import torch

from restore import io, metrics, operators
from restore.data import mnist_images
from restore.priors import load_prior
from restore.solvers import DIFFUSION

parser = argparse.ArgumentParser()
parser.add_argument("--prior", default="ddpm")
parser.add_argument("--samples", type=int, default=8)
parser.add_argument("--steps", type=int, default=50)
parser.add_argument("--out", default=".", help="folder for the two pictures")
args = parser.parse_args()

x, _ = mnist_images(1, start=3)  # one digit, (1, 1, 28, 28)
operator = operators.Downsample(4, noise=operators.GaussianNoise(0.05))  # 7x7 and noisy
y = operator(x, generator=torch.Generator().manual_seed(0))
prior = load_prior(args.prior)

# N samples at once: the measurement repeated along the batch.
samples = DIFFUSION["pigdm"](y.repeat(args.samples, 1, 1, 1), operator, prior, steps=args.steps,
                             generator=torch.Generator().manual_seed(1)).clamp(0, 1)
mean, std = samples.mean(0, keepdim=True), samples.std(0, keepdim=True)
# The share of true pixels inside the samples' 95% predictive interval (Student-t, exact for any number of
# samples from the exact posterior; the naive mean +- 2 std would undercount with few samples).
inside = metrics.coverage(samples[None], x)

print(f"PSNR of the posterior mean {metrics.psnr(mean, x)[0]:.2f} dB, of one sample {metrics.psnr(samples[:1], x)[0]:.2f} dB")
print(f"true pixels inside the samples' 95% predictive interval: {100 * inside:.1f}% (95% if calibrated)")
io.write_grid(f"{args.out}/posterior_samples.png", samples)
io.write_png(f"{args.out}/posterior_std.png", (4 * std).clamp(0, 1))  # white = std 0.25
