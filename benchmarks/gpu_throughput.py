"""Training throughput of the photo UNet against the batch size, to choose the batch of a device session.

    python benchmarks/gpu_throughput.py --device cuda --out $OUT/throughput.json     # prints BATCH=<n>
    python benchmarks/gpu_throughput.py --device cpu --batches 4,8 --steps 2          # a dry run here

The 2026-11-30 H200 session trained the width-32 photo UNet at batch 256 in 67 ms a step, where its
arithmetic alone should take a few milliseconds: the step was bound by the host (crops, flips and noise
drawn on one CPU core, now all on the device) and by kernel launches, whose cost does not grow with the
batch. A larger batch then buys samples at little cost in time, until the device itself is busy. This
script times the real training step (restore.training's batch, ddpm_loss, Adam and the
EMA update, in bf16 autocast on a GPU) on random photo-sized images at each batch size, and prints the
smallest batch whose patches per second are within 10% of the best: past it, a larger batch only trades
steps for less gradient noise. The timings go to --out as JSON, one record per batch size, each with the
number of times a step made the host wait for the device (CUDA's sync debug mode; the aim is none).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch

from restore import training
from restore.data import PatchSet
from restore.priors.ddpm import ddpm_loss, make_patch_unet, make_scheduler


def measure(batch: int, *, device: torch.device, channels: int, width: int, patch: int, steps: int,
            amp: bool, images: PatchSet) -> dict:
    """Seconds per training step (the mean of ``steps`` run back to back after two warm-up steps) and peak
    device memory."""
    torch.manual_seed(0)
    model = make_patch_unet(patch, channels, width).to(device)
    ema = make_patch_unet(patch, channels, width).to(device).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=4e-4)
    loss_fn = ddpm_loss(torch.cumprod(1 - make_scheduler("linear", 1000).betas, 0))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)

    def one_step(step: int) -> None:
        g = torch.Generator().manual_seed(step)
        x = training._batch(images, batch, g, device=device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, _ = training._scalars(loss_fn(model, x, g, step), read=False)
        training._optimizer_step(opt, loss, 4e-4, None)
        training._update_ema(ema, model, 0.999)

    for step in range(2):  # warm-up: cuDNN's autotuning, the images' copy on the device
        one_step(step)
    sync(device)
    t = time.perf_counter()
    for step in range(2, steps + 2):  # back to back, as training runs them: the host queues ahead of the device
        one_step(step)
    sync(device)
    per_step = (time.perf_counter() - t) / steps
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"batch": batch, "s_per_step": round(per_step, 5), "patches_per_s": round(batch / per_step, 1),
            "peak_gib": None if memory is None else round(memory, 2), "steps_timed": steps,
            "syncs_per_step": syncs(device, one_step)}


def syncs(device: torch.device, one_step, n: int = 3) -> float | None:
    """Operations that made the host wait for the device, per training step, as CUDA's sync debug mode
    reports them (none is the aim: the host then queues steps ahead of the device)."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            for step in range(n):
                one_step(100 + step)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / n


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def choose(records: list[dict], within: float = 0.9) -> int:
    """The smallest batch whose patches per second are at least ``within`` of the best measured."""
    best = max(r["patches_per_s"] for r in records)
    return min(r["batch"] for r in records if r["patches_per_s"] >= within * best)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batches", default="256,512,1024,2048")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--patch", type=int, default=64)
    ap.add_argument("--budget", type=float, default=60, help="seconds; larger batches are skipped once spent")
    ap.add_argument("--out", default=None, help="JSON file for the timings")
    a = ap.parse_args()
    device = torch.device(a.device)
    amp = device.type == "cuda"
    g = torch.Generator().manual_seed(0)
    # Photo-sized random images (as BSDS: 481x321 both ways), so the gather reads from an image store of real size.
    images = PatchSet([torch.randint(0, 256, (a.channels, *((321, 481) if i % 2 else (481, 321))), generator=g,
                                     dtype=torch.uint8) for i in range(40)], a.patch)
    records, start = [], time.monotonic()
    for batch in (int(b) for b in a.batches.split(",")):
        if records and time.monotonic() - start > a.budget:
            break
        try:
            records.append(measure(batch, device=device, channels=a.channels, width=a.width, patch=a.patch,
                                   steps=a.steps, amp=amp, images=images))
        except torch.OutOfMemoryError:
            break
        except RuntimeError as exc:  # e.g. a cuDNN or cuBLAS workspace that does not fit: keep what was measured
            print(f"batch {batch}: {str(exc).splitlines()[0]}", flush=True)
            break
        print(json.dumps(records[-1]), flush=True)
        info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "width": a.width, "channels": a.channels, "patch": a.patch, "bf16": amp, "records": records,
                "chosen": choose(records)}
        if a.out:  # after each batch size, so a probe stopped by its timeout still leaves its figures
            with open(a.out, "w") as f:
                json.dump(info, f, indent=1)
    if records:
        print(f"BATCH={choose(records)}")


if __name__ == "__main__":
    main()
