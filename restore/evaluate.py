"""Evaluate a prior: bits/dim on 8-bit test data where its family defines one, and the distance of its
samples to real images (Frechet and kernel distances on the features of the shipped MNIST classifier).

The distances compare ``samples`` generated images with the test split; the floor beside them is
the same distance between as many training images and the test split (what a perfect generator
would score at this sample size). They use the MNIST classifier's 128-d feature layer, so they are
defined for 28x28 gray digit-like data only: other data are refused with a message rather than
measured on features that mean nothing there.
"""

from __future__ import annotations

import time

import torch

from . import classifier, metrics
from .data import mnist_images
from .errors import RestoreError


def draw_samples(prior, n: int, *, generator: torch.Generator, steps: int = 50, batch: int = 500) -> torch.Tensor:
    """n samples from any family with its cheap default: DDIM for diffusion priors, exact draws for
    the Gaussian, one decoder pass for latent priors, raster order for a PixelCNN."""
    out = []
    for start in range(0, n, batch):
        m = min(batch, n - start)
        if prior.family == "gaussian":
            out.append(prior.sample(m, method="exact", generator=generator))
        elif hasattr(prior, "eps_and_x0"):
            out.append(prior.sample(m, steps=steps, method="ddim", generator=generator))
        else:
            out.append(prior.sample(m, generator=generator))
    return torch.cat(out).clamp(0, 1)


def evaluate_prior(prior, *, data: str = "mnist", samples: int = 2000, nll_images: int = 1000, seed: int = 0,
                   data_root=None) -> dict:
    """Figures for one prior: bits/dim, FID and KID on classifier features (with the train-vs-test floor),
    the classifier's confident fraction and class balance, and the sample count and time."""
    if data not in ("mnist",):
        raise RestoreError(f"evaluate measures sample distances on the MNIST classifier's features, so --data must be "
                           f"mnist (got {data!r}); a feature network for other data is not built yet")
    if tuple(prior.image_shape) != (1, 28, 28):
        raise RestoreError(f"the prior models {'x'.join(map(str, prior.image_shape))} images; MNIST is 1x28x28")
    g = torch.Generator().manual_seed(seed)
    report: dict = {"family": prior.family, "data": data, "seed": seed}
    run = getattr(prior, "run_info", None) or {}
    if run.get("data") not in (None, "mnist") or run.get("file_list_hash"):
        report["warning"] = (f"the prior was trained on {run.get('data')!r}, not MNIST's training split: "
                             "its test figures may include training images")
    # 1. Bits/dim on the first nll_images test images, where the family has a likelihood or a bound.
    if hasattr(prior, "bits_per_dim") and nll_images:
        test, _ = mnist_images(nll_images, split="test", root=data_root)
        t0 = time.perf_counter()
        bpd = prior.bits_per_dim(test)
        report.update(bits_per_dim=float(bpd.mean()), bits_per_dim_sem=float(bpd.std() / len(bpd) ** 0.5),
                      nll_images=nll_images, nll_seconds=round(time.perf_counter() - t0, 2))
    # 2. Samples, judged and embedded by the classifier.
    judge = classifier.load_classifier()
    t0 = time.perf_counter()
    x = draw_samples(prior, samples, generator=g)
    report["sample_seconds"] = round(time.perf_counter() - t0, 2)
    report["samples"] = samples
    report.update({k: v for k, v in classifier.sample_figures(judge, x).items() if k != "samples"})
    test, _ = mnist_images(10000, split="test", root=data_root)
    train, _ = mnist_images(samples, split="train", root=data_root)
    with torch.no_grad():
        f_test, f_gen, f_train = (torch.cat([judge.features(v[i : i + 1000]) for i in range(0, len(v), 1000)])
                                  for v in (test, x, train))
    kid, kid_std = metrics.kernel_distance(f_gen, f_test, generator=torch.Generator().manual_seed(seed))
    kid_floor, _ = metrics.kernel_distance(f_train, f_test, generator=torch.Generator().manual_seed(seed))
    report.update(fid=metrics.frechet_distance(f_gen, f_test), fid_floor=metrics.frechet_distance(f_train, f_test),
                  kid=kid, kid_std=kid_std, kid_floor=kid_floor, features="MNIST classifier, 128-d penultimate layer")
    return report
