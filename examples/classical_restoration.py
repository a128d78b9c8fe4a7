"""Degrade an MNIST digit and restore it with the classical solvers, through the Python API.

    python examples/classical_restoration.py
"""

import torch

from restore import metrics
from restore.data import mnist_images
from restore.solvers import CLASSICAL, missing_capabilities
from restore.tasks import STANDARD, standard_operator

x, _ = mnist_images(8)  # (8, 1, 28, 28) in [0, 1]
for task in STANDARD:
    operator = standard_operator(task, x.shape[1:])
    y = operator(x, generator=torch.Generator().manual_seed(0))  # y = noise(A(x))
    for name, solver in CLASSICAL.items():
        if missing_capabilities(solver, operator):
            continue  # e.g. Wiener needs a blur, biharmonic a mask
        x_hat = solver(y, operator, None)
        print(f"{task:15s} {name:16s} PSNR {metrics.psnr(x_hat, x).mean():6.2f} dB  SSIM {metrics.ssim(x_hat, x).mean():.3f}")
