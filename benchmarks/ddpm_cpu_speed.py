"""How fast does DDPM training run on this CPU? Training images/s for several settings, in one run.

Each setting trains the MNIST DDPM UNet of ``restore train ddpm`` (28x28, one channel) for a few
warm-up steps, then times ``--steps`` optimiser steps at ``--batch-size``. The settings are run in
rounds (every setting once per round) so that load from other processes on a shared machine hits
them alike; the table reports the median images/s over rounds and the ratio to the baseline of the
same round. Results: benchmarks/results/ddpm_cpu_speed.{md,json}.

    python benchmarks/ddpm_cpu_speed.py                 # all settings, 3 rounds
    python benchmarks/ddpm_cpu_speed.py --only base,bf16 --rounds 5
    python benchmarks/ddpm_cpu_speed.py --patch 64 --batch-size 32 --only 1-thread,bf16,bf16-1-thread

``--patch P`` times the photo priors' network instead (``make_patch_unet``: 64x64 gray patches for
``ddpm-photo-gray``; ``--channels 3`` for the colour one); its results go to ddpm_cpu_speed_patchP.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from restore.priors.ddpm import ddpm_loss, make_patch_unet, make_scheduler, make_unet
from restore.runtime import machine, native_bf16

RESULTS = Path(__file__).parent / "results"

# name -> (width, layers_per_block, threads, channels_last, bf16 autocast, torch.compile)
SETTINGS = {
    "base": (32, 1, None, False, False, False),
    "1-thread": (32, 1, 1, False, False, False),
    "channels-last": (32, 1, None, True, False, False),
    "bf16": (32, 1, None, False, True, False),
    "bf16-1-thread": (32, 1, 1, False, True, False),
    "bf16+channels-last": (32, 1, None, True, True, False),
    "compile": (32, 1, None, False, False, True),
    "width-16": (16, 1, None, False, False, False),
    "width-24": (24, 1, None, False, False, False),
    "width-32-2-layers": (32, 2, None, False, False, False),
}


def build(name: str, patch: int | None = None, channels: int = 1):
    width, layers, threads, channels_last, bf16, compiled = SETTINGS[name]
    torch.manual_seed(0)
    unet = make_patch_unet(patch, channels, width, layers) if patch else make_unet(28, 1, width, layers)
    params = sum(p.numel() for p in unet.parameters())
    if channels_last:
        unet = unet.to(memory_format=torch.channels_last)
    net = torch.compile(unet) if compiled else unet
    opt = torch.optim.Adam(unet.parameters(), lr=2e-4)
    loss_fn = ddpm_loss(torch.cumprod(1 - make_scheduler().betas, 0))
    return dict(net=net, opt=opt, loss_fn=loss_fn, threads=threads, channels_last=channels_last, bf16=bf16,
                params=params, shape=(channels, patch, patch) if patch else (1, 28, 28))


def run_steps(s: dict, steps: int, batch_size: int, generator: torch.Generator) -> float:
    """Seconds for ``steps`` training steps of setting ``s``."""
    default_threads = torch.get_num_threads()
    if s["threads"]:
        torch.set_num_threads(s["threads"])
    try:
        t0 = time.perf_counter()
        for _ in range(steps):
            x = torch.rand(batch_size, *s["shape"], generator=generator)
            if s["channels_last"]:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s["bf16"]):
                loss = s["loss_fn"](s["net"], x, generator)
            s["opt"].zero_grad(set_to_none=True)
            loss.backward()
            s["opt"].step()
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(default_threads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated settings (default: all)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--patch", type=int, help="time the photo priors' network on PATCH x PATCH crops")
    parser.add_argument("--channels", type=int, default=1, choices=[1, 3], help="with --patch: 1 (gray) or 3")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SETTINGS)
    if "base" not in names:
        names.insert(0, "base")
    unknown = set(names) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown settings {sorted(unknown)}; known: {', '.join(SETTINGS)}")

    g = torch.Generator().manual_seed(0)
    built = {}
    for name in names:
        built[name] = build(name, args.patch, args.channels)
        t0 = time.perf_counter()
        run_steps(built[name], args.warmup, args.batch_size, g)  # includes compilation for "compile"
        built[name]["warmup_s"] = time.perf_counter() - t0
        print(f"{name}: warm-up {built[name]['warmup_s']:.1f} s", flush=True)
    rates: dict[str, list[float]] = {n: [] for n in names}
    ratios: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        this_round = {}
        for name in names:
            seconds = run_steps(built[name], args.steps, args.batch_size, g)
            this_round[name] = args.steps * args.batch_size / seconds
        for name in names:
            rates[name].append(this_round[name])
            ratios[name].append(this_round[name] / this_round["base"])
        print(f"round {r + 1}: " + ", ".join(f"{n} {v:.0f}" for n, v in this_round.items()), flush=True)

    rows = []
    for name in names:
        width, layers, threads, cl, bf16, compiled = SETTINGS[name]
        rows.append({
            "setting": name, "width": width, "layers_per_block": layers, "parameters": built[name]["params"],
            "threads": threads or torch.get_num_threads(), "channels_last": cl, "bf16": bf16, "compile": compiled,
            "images_per_s": statistics.median(rates[name]), "ratio_to_base": statistics.median(ratios[name]),
            "warmup_s": built[name]["warmup_s"],
        })
    network = f"{args.patch}x{args.patch}x{args.channels} photo patches" if args.patch else "28x28 MNIST"
    meta = {"batch_size": args.batch_size, "steps_per_round": args.steps, "rounds": args.rounds,
            "torch": torch.__version__, "cpu_threads": torch.get_num_threads(), "network": network,
            "machine": machine(), "native_bf16": native_bf16()}
    RESULTS.mkdir(exist_ok=True)
    stem = f"ddpm_cpu_speed_patch{args.patch}" if args.patch else "ddpm_cpu_speed"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    bf16 = {True: "bfloat16 instructions", False: "no bfloat16 instructions",
            None: "bfloat16 support unknown"}[meta["native_bf16"]]
    lines = [f"DDPM training speed on this CPU ({meta['machine']}; {bf16}), {network}: batch {args.batch_size}, "
             f"median of {args.rounds} rounds of {args.steps} steps, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads by default.", "",
             "| setting | parameters | images/s | ratio to base | warm-up s |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['setting']} | {row['parameters']:,} | {row['images_per_s']:.0f} | "
                     f"{row['ratio_to_base']:.2f} | {row['warmup_s']:.1f} |")
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
