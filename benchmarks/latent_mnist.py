"""Quality of an MNIST VAE or GAN prior: sample quality judged by the classifier, and (VAE) bits/dim.

1. Samples: ``--samples`` images (default 1,000) decoded from z ~ N(0, I), truncated at each
   value of ``--truncation`` ("none" for no truncation), labelled by the shipped MNIST classifier
   (:mod:`restore.classifier`). Reports the fraction labelled with confidence >= 0.9 and the share
   of each class (GAN target: >= 85% confident, every class 10 +- 3%).
2. VAE only: the negative ELBO and the importance-sampled bound (IWAE, ``--k`` draws) in bits/dim
   on the first ``--nll-images`` MNIST test images (8-bit data, discretised logistic decoder).

Writes benchmarks/results/<name>_mnist.{md,json} and <name>_mnist_samples.png (first 100 samples
at the first truncation), name = the prior's family.

    python benchmarks/latent_mnist.py --prior vae
    python benchmarks/latent_mnist.py --prior runs/gan-mnist --truncation none,1.5,1.0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from restore import classifier, io
from restore.data import mnist_images
from restore.metrics import standard_error
from restore.runtime import keep_freed_memory

RESULTS = Path(__file__).parent / "results"
CONFIDENCE = 0.9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="vae", help="family name (vae, gan), model folder or hub id")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--truncation", default="none", help="comma-separated truncations tau, or none")
    parser.add_argument("--nll-images", type=int, default=1000, help="VAE: test images for bits/dim (0: skip)")
    parser.add_argument("--k", type=int, default=100, help="VAE: importance samples per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args()

    from restore.priors import load_prior

    judge = classifier.load_classifier()
    prior = load_prior(args.prior)
    name = prior.family
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, text in enumerate(args.truncation.split(",")):
        tau = None if text == "none" else float(text)
        t0 = time.perf_counter()
        x = prior.sample(args.samples, generator=torch.Generator().manual_seed(args.seed), truncation=tau)
        seconds = time.perf_counter() - t0
        rows.append({"truncation": tau, **classifier.sample_figures(judge, x, CONFIDENCE),
                     "seconds_per_sample": seconds / args.samples})
        if i == 0:
            io.write_grid(out / f"{name}_mnist_samples.png", x[:100], nrow=10)
    report = {"prior": args.prior, "prior_info": prior.info(), "confidence_threshold": CONFIDENCE, "seed": args.seed,
              "classifier_test_accuracy": json.loads((classifier.DEFAULT_PATH / "classifier.json").read_text())["test_accuracy"],
              "sample_quality": rows}
    lines = [f"MNIST {name} prior `{args.prior}`: {args.samples} samples per row, seed {args.seed}; judged by the "
             f"shipped classifier ({100 * report['classifier_test_accuracy']:.2f}% MNIST test accuracy).", "",
             "| truncation | confident (>= 0.9) | largest class deviation | class shares (0-9, %) | s / sample |",
             "|---|---|---|---|---|"]
    for r in rows:
        shares = " ".join(f"{100 * s:.1f}" for s in r["class_shares"])
        lines.append(f"| {r['truncation'] or 'none'} | {100 * r['confident_fraction']:.1f}% | "
                     f"{100 * r['max_class_deviation']:.1f} points | {shares} | {r['seconds_per_sample']:.5f} |")
    if name == "vae" and args.nll_images:
        images, _ = mnist_images(args.nll_images, split="test")
        g = torch.Generator().manual_seed(args.seed)
        t0 = time.perf_counter()
        elbo = prior.elbo_bits_per_dim(images, generator=g)
        iwae = prior.bits_per_dim(images, k=args.k, generator=g)
        report.update(nll_images=args.nll_images, k=args.k, elbo_bits_per_dim=float(elbo.mean()),
                      elbo_sem=standard_error(elbo), iwae_bits_per_dim=float(iwae.mean()),
                      iwae_sem=standard_error(iwae),
                      nll_seconds=time.perf_counter() - t0)
        lines += ["", "| bound on the first {} MNIST test images (8-bit) | bits/dim |".format(args.nll_images),
                  "|---|---|", f"| negative ELBO (1 posterior draw) | {report['elbo_bits_per_dim']:.3f} +- {report['elbo_sem']:.3f} |",
                  f"| IWAE, k = {args.k} (Burda et al. 2016) | {report['iwae_bits_per_dim']:.3f} +- {report['iwae_sem']:.3f} |"]
    io.write_json(out / f"{name}_mnist.json", report)
    (out / f"{name}_mnist.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    keep_freed_memory()
    main()
