"""Bits/dim of every likelihood-bearing prior, side by side, on the same 8-bit MNIST test images.

Each family reports what it defines, on the first ``--images`` test images:

- gaussian: the exact density under uniform dequantization (an upper bound on the discrete bits/dim);
- vae: the importance-weighted bound (IWAE, Burda et al. 2016, k = 100) with its discretised-logistic decoder;
- flow: the uniform-dequantization bound (Dinh et al. 2017; Kingma & Dhariwal 2018), one draw per image;
- pixelcnn: the exact discrete likelihood (van den Oord et al. 2016);
- ddpm: the variational bound of Ho et al. (2020), eq. (5), all T terms.

Every figure is an upper bound on the model's true bits/dim except the PixelCNN's, which is exact.
Rows are cached in the JSON by (prior, training steps, images), so a rerun only computes what changed.

    python benchmarks/bits_per_dim.py                       # the shipped priors
    python benchmarks/bits_per_dim.py --priors runs/flow-mnist
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from restore import io
from restore.data import mnist_images
from restore.metrics import standard_error
from restore.runtime import keep_freed_memory

RESULTS = Path(__file__).parent / "results"
KIND = {"gaussian": "dequantization bound (exact density)", "vae": "IWAE bound, k = 100",
        "flow": "dequantization bound", "pixelcnn": "exact", "ddpm": "variational bound (all T terms)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", default="gaussian,vae,flow,pixelcnn,ddpm", help="comma-separated --prior values")
    parser.add_argument("--images", type=int, default=100, help="first N MNIST test images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args()

    from restore.priors import load_prior

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bits_per_dim.json"
    rows = json.loads(path.read_text())["rows"] if path.is_file() else []
    images, _ = mnist_images(args.images, split="test")
    for spec in [p for p in args.priors.split(",") if p]:
        prior = load_prior(spec)
        info = prior.info()
        key = {"family": prior.family, "training_steps": info.get("training_steps"), "images": args.images}
        if any(all(r.get(k) == v for k, v in key.items()) for r in rows):
            print(f"{spec}: cached")
            continue
        g = torch.Generator().manual_seed(args.seed)
        t0 = time.perf_counter()
        options = {"progress": True} if prior.family == "ddpm" else {}
        bpd = prior.bits_per_dim(images, generator=g, **options)
        seconds = time.perf_counter() - t0
        rows = [r for r in rows if not (r["family"] == prior.family and r["images"] == args.images)]
        rows.append({**key, "prior": spec, "parameters": info.get("parameters"), "kind": KIND[prior.family],
                     "bits_per_dim": float(bpd.mean()), "sem": standard_error(bpd),
                     "seconds_per_image": seconds / args.images})
        print(f"{spec}: {rows[-1]['bits_per_dim']:.3f} bits/dim ({seconds:.1f} s)")
    rows.sort(key=lambda r: -r["bits_per_dim"])
    io.write_json(path, {"seed": args.seed, "rows": rows})
    lines = ["Bits/dim on the first MNIST test images (8-bit; lower is better; +- one standard error over images). "
             "Every figure is an upper bound on the model's bits/dim except the PixelCNN's, which is exact.", "",
             "| prior | what is measured | images | training steps | parameters | bits/dim | s / image |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        params = f"{r['parameters']:,}" if r.get("parameters") else "-"
        lines.append(f"| {r['family']} | {r['kind']} | {r['images']} | {r['training_steps'] or '-'} | {params} | "
                     f"{r['bits_per_dim']:.3f} +- {r['sem']:.3f} | {r['seconds_per_image']:.3f} |")
    (out / "bits_per_dim.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    keep_freed_memory()
    main()
