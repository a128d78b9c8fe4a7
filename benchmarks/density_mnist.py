"""Quality of an MNIST flow or PixelCNN prior: exact bits/dim, sample quality, sampling time, and the
bits/dim-versus-training-time curve of its run.

1. Likelihood: bits/dim on the first ``--nll-images`` MNIST test images (8-bit). The PixelCNN's is
   exact; the flow's is the uniform-dequantization bound of Dinh et al. (2017) / Kingma & Dhariwal
   (2018) with one draw of the noise per image.
2. Samples: ``--samples`` images (flow: at each ``--temperature``), labelled by the shipped MNIST
   classifier; the fraction labelled with confidence >= 0.9, the share of each class, and the
   seconds per sample (the PixelCNN draws pixel by pixel: 784 network passes per batch).
3. With ``--run FOLDER`` (the training run), the validation bits/dim that training logged (EMA
   weights, on a fixed part of the MNIST test split) against the training minutes, as an SVG chart.

Writes benchmarks/results/<family>_mnist.{md,json}, <family>_mnist_samples.png and
<family>_curve.svg (with --run).

    python benchmarks/density_mnist.py --prior runs/flow-mnist --run runs/flow-mnist
    python benchmarks/density_mnist.py --prior pixelcnn --samples 200
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
from restore.plots import line_chart
from restore.runtime import keep_freed_memory

RESULTS = Path(__file__).parent / "results"
CONFIDENCE = 0.9


def training_curve(run: Path) -> list[dict]:
    """(step, minutes, validation bits/dim) of every validation record in the run's log.jsonl."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    return [{"step": r["step"], "minutes": r["minutes"], "val_bits_per_dim": r["val_loss"]}
            for r in records if "val_loss" in r]


def per_doubling(curve: list[dict], target: float) -> dict | None:
    """The fall in validation bits/dim over the last doubling of training time (t/2 to t, linearly
    interpolated), and the minutes the target needs if each further doubling gained as much. Gains
    per doubling shrink as training goes on, so that figure is a lower bound on the budget."""
    points = [(c["minutes"], c["val_bits_per_dim"]) for c in curve if c["minutes"] > 0]
    if len(points) < 3:
        return None
    t_end, b_end = points[-1]
    half = t_end / 2
    before = [p for p in points if p[0] <= half]
    after = [p for p in points if p[0] >= half]
    if not before:
        return None
    (t0, b0), (t1, b1) = before[-1], after[0]
    b_half = b0 + (b1 - b0) * (half - t0) / ((t1 - t0) or 1.0)
    drop = b_half - b_end
    out = {"minutes": t_end, "bits_per_dim": b_end, "drop_per_doubling": drop, "target": target}
    if b_end <= target:
        out["target_minutes"] = t_end
    elif drop > 0:
        out["target_minutes"] = t_end * 2 ** ((b_end - target) / drop)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="flow", help="family name (flow, pixelcnn) or model folder")
    parser.add_argument("--samples", type=int, default=None, help="default: flow 1000, pixelcnn 200")
    parser.add_argument("--temperature", default="1.0,0.7", help="flow: comma-separated sampling temperatures")
    parser.add_argument("--nll-images", type=int, default=1000, help="test images for bits/dim (0: skip)")
    parser.add_argument("--run", default=None, help="training run folder, for the bits/dim-versus-time curve")
    parser.add_argument("--target", type=float, default=1.3, help="bits/dim target for the budget estimate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args()

    from restore.priors import load_prior

    judge = classifier.load_classifier()
    prior = load_prior(args.prior)
    name = prior.family
    if name not in ("flow", "pixelcnn"):
        raise SystemExit(f"error: {args.prior!r} is a {name} prior; this benchmark is for flow and pixelcnn")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = args.samples or (1000 if name == "flow" else 200)
    report: dict = {"prior": args.prior, "prior_info": prior.info(), "confidence_threshold": CONFIDENCE,
                    "seed": args.seed, "classifier_test_accuracy":
                    json.loads((classifier.DEFAULT_PATH / "classifier.json").read_text())["test_accuracy"]}
    lines = [f"MNIST {name} prior `{args.prior}` ({report['prior_info']['parameters']:,} parameters, "
             f"{report['prior_info']['training_steps']} training steps), seed {args.seed}.", ""]

    # 1. Bits/dim on the first test images.
    if args.nll_images:
        images, _ = mnist_images(args.nll_images, split="test")
        t0 = time.perf_counter()
        bpd = prior.bits_per_dim(images, generator=torch.Generator().manual_seed(args.seed))
        report.update(nll_images=args.nll_images, bits_per_dim=float(bpd.mean()),
                      bits_per_dim_sem=standard_error(bpd), nll_seconds=time.perf_counter() - t0)
        kind = "exact" if name == "pixelcnn" else "dequantization bound, 1 draw per image"
        lines += [f"bits/dim on the first {args.nll_images} MNIST test images ({kind}): "
                  f"**{report['bits_per_dim']:.3f} +- {report['bits_per_dim_sem']:.3f}** "
                  f"({report['nll_seconds']:.1f} s)", ""]

    # 2. Samples, judged by the classifier.
    rows = []
    temperatures = [float(t) for t in args.temperature.split(",")] if name == "flow" else [None]
    for i, temperature in enumerate(temperatures):
        g = torch.Generator().manual_seed(args.seed)
        t0 = time.perf_counter()
        x = prior.sample(n, generator=g, **({} if temperature is None else {"temperature": temperature}))
        seconds = time.perf_counter() - t0
        rows.append({"temperature": temperature, **classifier.sample_figures(judge, x, CONFIDENCE),
                     "seconds_per_sample": seconds / n})
        if i == 0:
            io.write_grid(out / f"{name}_mnist_samples.png", x[:100], nrow=10)
    report["sample_quality"] = rows
    lines += [f"{n} samples per row, judged by the shipped classifier "
              f"({100 * report['classifier_test_accuracy']:.2f}% MNIST test accuracy).", "",
              "| temperature | confident (>= 0.9) | largest class deviation | class shares (0-9, %) | s / sample |",
              "|---|---|---|---|---|"]
    for r in rows:
        shares = " ".join(f"{100 * s:.1f}" for s in r["class_shares"])
        lines.append(f"| {r['temperature'] if r['temperature'] is not None else '-'} | "
                     f"{100 * r['confident_fraction']:.1f}% | {100 * r['max_class_deviation']:.1f} points | "
                     f"{shares} | {r['seconds_per_sample']:.4f} |")

    # 3. The training curve.
    if args.run:
        curve = training_curve(Path(args.run))
        report["curve"] = curve
        chart = line_chart({name: [(c["minutes"], c["val_bits_per_dim"]) for c in curve if c["minutes"] > 0]},
                           title=f"{name}: validation bits/dim (EMA weights) against training time",
                           xlabel="training minutes (2-core CPU)", ylabel="bits/dim", log_x=True)
        (out / f"{name}_curve.svg").write_text(chart)
        lines += ["", f"Validation bits/dim logged during training (`{args.run}`, EMA weights, fixed test batches):",
                  "", "| step | minutes | bits/dim |", "|---|---|---|"]
        lines += [f"| {c['step']} | {c['minutes']:.1f} | {c['val_bits_per_dim']:.3f} |" for c in curve]
        estimate = per_doubling(curve, args.target)
        report["budget_estimate"] = estimate
        if estimate and estimate["bits_per_dim"] <= args.target:
            lines += ["", f"The validation bits/dim is already at or below the {args.target} target."]
        elif estimate and "target_minutes" in estimate:
            lines += ["", f"Over the last doubling of training time the validation bits/dim fell by "
                      f"{estimate['drop_per_doubling']:.3f}; if every further doubling gained as much, "
                      f"{args.target} bits/dim would take {estimate['target_minutes']:.0f} minutes of this "
                      "machine (a lower bound: the gain per doubling shrinks)."]
    io.write_json(out / f"{name}_mnist.json", report)
    (out / f"{name}_mnist.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    keep_freed_memory()
    main()
