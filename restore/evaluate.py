"""Evaluate a prior: bits/dim on 8-bit test data where its family defines one, and the distance of its
samples to real images (Frechet and kernel distances, Heusel et al. 2017; Binkowski et al. 2018).

The distances compare ``samples`` generated images with the test images; the floor beside them is
the same distance between as many training images and the test images (what a perfect generator
would score at this sample size). On MNIST the features are the shipped classifier's 128-d layer; on
any other data they are the bottleneck of an autoencoder trained on that data's training images
(:mod:`restore.features`), and the report says which.
"""

from __future__ import annotations

import time

import torch

from . import classifier, features, metrics
from .errors import RestoreError


def draw_samples(prior, n: int, *, generator: torch.Generator, steps: int = 50, batch: int = 500) -> torch.Tensor:
    """n samples from any family with its cheap default: exact draws where the family has them (the Gaussian,
    a patch mixture), DDIM for other diffusion priors (``steps``, at most the prior's timesteps), one decoder
    pass for latent priors, raster order for a PixelCNN."""
    steps = min(steps, getattr(prior, "num_timesteps", steps))
    out = []
    for start in range(0, n, batch):
        m = min(batch, n - start)
        if "exact_samples" in prior.offers:
            out.append(prior.sample(m, method="exact", generator=generator))
        elif "tweedie" in prior.offers:
            out.append(prior.sample(m, steps=steps, method="ddim", generator=generator))
        else:
            out.append(prior.sample(m, generator=generator))
    return torch.cat(out).clamp(0, 1)


def evaluate_prior(prior, *, data: str = "mnist", samples: int = 2000, nll_images: int = 1000, seed: int = 0,
                   data_root=None, feature_steps: int = 1000, features_folder=None) -> dict:
    """Figures for one prior: bits/dim, FID and KID (with the train-vs-test floor), the sample count and
    time and, on MNIST, the classifier's confident fraction and class balance.

    ``data`` is mnist (features of the shipped classifier), fashion-mnist or a folder of images (features of
    an autoencoder trained on the data's training part, see :mod:`restore.features`). The test images are
    the official test split, or for a folder the validation split that ``restore train`` makes with seed 0;
    for a prior trained with ``--stretch``, each with its range stretched onto 0-255 as the prior's were.
    """
    from .data import overlap_warning, training_data
    from .stretch import trained_stretched

    c, h, w = prior.image_shape
    if data == "mnist" and (c, h, w) != (1, 28, 28):
        raise RestoreError(f"the prior models {c}x{h}x{w} images; MNIST is 1x28x28")
    if h != w:
        raise RestoreError(f"the prior models {c}x{h}x{w} images; evaluation data are resized to squares")
    stretched = trained_stretched(prior)  # then it draws images spanning 0-255: compare it with such images
    ds = training_data(data, size=h, channels=c, root=data_root, stretch=stretched)
    test, train = ds["val"], ds["train"]
    if len(test) < 2:
        raise RestoreError(f"'{data}' gives {len(test)} test image(s); the distances need at least 2")
    g = torch.Generator().manual_seed(seed)
    report: dict = {"family": prior.family, "data": data, "seed": seed, "test_images": len(test)}
    warning = overlap_warning(prior, test, "test images", root=data_root, stretched=stretched)
    if warning:
        report["warning"] = warning
    # 1. Bits/dim on the first nll_images test images, where the family has a likelihood or a bound.
    if hasattr(prior, "bits_per_dim") and nll_images:
        subset = test[:nll_images].float() / 255
        t0 = time.perf_counter()
        bpd = prior.bits_per_dim(subset)
        report.update(bits_per_dim=float(bpd.mean()), bits_per_dim_sem=metrics.standard_error(bpd),
                      nll_images=len(subset), nll_seconds=round(time.perf_counter() - t0, 2))
    # 2. The feature network: the shipped classifier on MNIST, else an autoencoder trained on the data.
    if data == "mnist":
        net = classifier.load_classifier()
        report["features"] = "MNIST classifier, 128-d penultimate layer"
    else:
        description = {"data": ds.get("name", data), "file_list_hash": ds.get("file_list_hash"),
                       **({"stretch": True} if stretched else {})}  # a network of stretched images is another one
        net, info = features.feature_net(train, description, steps=feature_steps, folder=features_folder)
        report["features"] = (f"{info['dim']}-d bottleneck of an autoencoder trained on {len(train)} {data} training "
                              f"images for {info['steps']} steps (reconstruction MSE {info['final_mse']:.4f}; "
                              f"{'read from the cache' if info['cached'] else 'trained now'}, key {info['key']})")
        report["feature_net"] = {k: v for k, v in info.items() if k not in ("format", "version")}
    # 3. Samples, then the distances to the test set beside the floor of as many real training images.
    t0 = time.perf_counter()
    x = draw_samples(prior, samples, generator=g)
    report["sample_seconds"] = round(time.perf_counter() - t0, 2)
    report["samples"] = samples
    if data == "mnist":
        report.update({k: v for k, v in classifier.sample_figures(net, x).items() if k != "samples"})
    real = train[:samples]
    with torch.no_grad():
        f_test, f_gen, f_train = (torch.cat([net.features(v[i : i + 1000]) for i in range(0, len(v), 1000)])
                                  for v in (test.float() / 255, x, real.float() / 255))
    kid, kid_std = metrics.kernel_distance(f_gen, f_test, generator=torch.Generator().manual_seed(seed))
    kid_floor, _ = metrics.kernel_distance(f_train, f_test, generator=torch.Generator().manual_seed(seed))
    report.update(fid=metrics.frechet_distance(f_gen, f_test), fid_floor=metrics.frechet_distance(f_train, f_test),
                  kid=kid, kid_std=kid_std, kid_floor=kid_floor, floor_images=len(real))
    return report
