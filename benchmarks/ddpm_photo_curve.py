"""Denoising PSNR of a photo DDPM during training: the curve for its model card.

    python benchmarks/ddpm_photo_curve.py --run runs/ddpm-photo-gray          # its latest checkpoint
    python benchmarks/ddpm_photo_curve.py --prior ddpm-photo-gray --label shipped
    python benchmarks/ddpm_photo_curve.py --prior ddpm-photo-gray --images-of runs/ddpm-photo-rgb  # channelwise
    python benchmarks/ddpm_photo_curve.py --prior ddpm-photo-gray --superres  # 4x SR with DPIR instead
    python benchmarks/ddpm_photo_curve.py --prior ddpm-photo-rgb --inpaint    # 80% random inpainting, DPIR

Loads the EMA weights of the run's latest checkpoint (or a finished prior) and denoises the run's own
held-out validation images (the 5% of the training folder it never trained on, so no test image is
touched) at sigma 15, 25 and 50 (on 0-255) with the one-step Tweedie estimate, PSNR on 8-bit-rounded
estimates. One JSON line per call is appended to benchmarks/results/ddpm_photo/curve.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from restore import metrics
from restore.data import held_out_images
from restore.operators import Denoising, GaussianNoise
from restore.runtime import machine
from restore.solvers import CLASSICAL, DIFFUSION

OUT = Path(__file__).parent / "results" / "ddpm_photo" / "curve.jsonl"


def from_checkpoint(run: Path, weights: str = "ema"):
    """The EMA (or the raw, ``weights="model"``) weights of a training run's latest checkpoint as a
    DDPMPrior, and the checkpoint's meta."""
    from restore.priors.ddpm import DDPMPrior, make_patch_unet, make_scheduler
    from restore.training import load_checkpoint

    config = json.loads((run / "run.json").read_text())
    tensors, meta = load_checkpoint(run / "checkpoint")
    unet = make_patch_unet(config["patch"], config["channels"], config["width"], config["layers_per_block"])
    unet.load_state_dict({k[len(weights) + 1:]: v for k, v in tensors.items() if k.startswith(f"{weights}.")})
    prior = DDPMPrior(unet.eval(), make_scheduler(config["schedule"], config["timesteps"]).betas)
    prior.run_info = config
    return prior, {"step": meta["step"], "minutes": round(meta.get("minutes", 0.0), 1)}, config


def denoising_psnr(solve, images: list[torch.Tensor], sigma: int) -> float:
    """Mean PSNR of the 8-bit-rounded ``solve(y, op)`` over ``images`` ((1, C, H, W) in [0, 1]) with Gaussian
    noise of ``sigma`` (on 0-255), seeded by sigma and the image's index, so that every call sees the same y."""
    op = Denoising(GaussianNoise(sigma / 255))
    scores = []
    for i, x in enumerate(images):
        y = op(x.double(), generator=torch.Generator().manual_seed(1000 * sigma + i)).float()
        with torch.no_grad():
            x_hat = solve(y, op)
        scores.append(float(metrics.psnr((x_hat * 255).round() / 255, x)[0]))
    return round(float(np.mean(scores)), 3)


#: The restoration checks besides denoising: (benchmark setting, the CLI's task whose photo default solves it).
CHECKS = {"superres": ("superres/cbsd68/x4", "superres"), "inpaint": ("inpaint/cbsd68/random80", "inpaint")}


def restoration_psnr(prior, images: list[torch.Tensor], check: str) -> float:
    """Mean PSNR of ``check`` ("superres": 4x super-resolution; "inpaint": 80% of the pixels missing at random)
    of ``images`` by the CLI's photo default (``DEFAULT_PHOTO_SOLVER``: DPIR) with ``prior``, under the natural
    benchmark's protocol for that setting (super-resolution: modcrop, MATLAB-style bicubic downsampling rounded to
    8 bits, a 4-pixel border shaved): the check that a better denoiser is a better plug-and-play prior too, on
    held-out photos rather than on the benchmark's test images. The setting's operator and measurement seeds are
    the benchmark's; only the images differ."""
    from restore.cli.common import DEFAULT_PHOTO_SOLVER
    from restore.operators import functional as Fn
    from restore.photo_bench import measurement, score, settings
    from restore.solvers import PRIOR_SOLVERS

    name_of_setting, task = CHECKS[check]
    setting = next(s for s in settings() if s.name == name_of_setting)
    name, steps, hyper = DEFAULT_PHOTO_SOLVER[task]
    scores = []
    for i, x in enumerate(images):
        if setting.modcrop:
            x = Fn.modcrop(x, setting.modcrop)
        op, y = measurement(setting, x, i)
        with torch.no_grad():
            x_hat = op.field_of_view(PRIOR_SOLVERS[name](y, op, prior, steps=steps, generator=torch.Generator().manual_seed(0),
                                                         **hyper))
        scores.append(score(x_hat, x, setting.shave)[0])
    return round(float(np.mean(scores)), 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, help="a training run folder (its latest checkpoint)")
    parser.add_argument("--prior", help="a finished prior (a --prior value) instead of a run")
    parser.add_argument("--label", default="", help="a note stored with the line")
    parser.add_argument("--classical", help="measure this classical solver (e.g. bm3d) on the run's images instead")
    parser.add_argument("--images-of", type=Path, help="with --prior: denoise this run's held-out images (e.g. the "
                        "gray prior, channel by channel, on a colour run's images)")
    parser.add_argument("--weights", choices=["ema", "model"], default="ema",
                        help="with --run: the EMA weights (what training exports) or the raw ones")
    parser.add_argument("--sigmas", type=int, nargs="+", default=[15, 25, 50], help="noise levels on 0-255")
    parser.add_argument("--superres", action="store_true",
                        help="measure 4x super-resolution with DPIR (the CLI's defaults) instead of denoising")
    parser.add_argument("--inpaint", action="store_true",
                        help="measure inpainting of 80%% of the pixels missing at random with DPIR (the CLI's defaults) "
                        "instead of denoising")
    args = parser.parse_args()
    check = "superres" if args.superres else "inpaint" if args.inpaint else None
    if args.superres and args.inpaint:
        parser.error("--superres and --inpaint are separate calls")
    if check and args.classical:
        parser.error(f"--{check} measures a learned prior, not --classical")
    if args.run is not None:
        prior, where, config = from_checkpoint(args.run, args.weights)
        where["weights"] = args.weights
        if args.classical:
            prior, where = None, {"step": None, "minutes": None, "method": args.classical}
    else:
        from restore.priors import load_prior

        prior = load_prior(args.prior)
        config = prior.run_info
        where = {"step": config.get("steps_done"), "minutes": config.get("minutes_total"), "prior": args.prior}
        if args.images_of is not None:
            config = json.loads((args.images_of / "run.json").read_text())
            prior = load_prior(args.prior, image_shape=(config["channels"], 64, 64))  # channelwise if need be
            where["images_of"] = str(args.images_of)
    # The run's held-out images: the split training made (patch_training_data's default fraction).
    images, _ = held_out_images(config, channels=config["channels"])
    val = [image.float()[None] / 255 for image in images]
    row = {**where, "label": args.label, "images": len(val), "machine": machine()}
    t0 = time.perf_counter()
    if check:  # the default it ran with (inpainting's was 24 steps before 2026-12-03's third session, now 48)
        from restore.cli.common import DEFAULT_PHOTO_SOLVER

        name, steps, hyper = DEFAULT_PHOTO_SOLVER[CHECKS[check][1]]
        row["solver"] = {"name": name, "steps": steps, **hyper}
    if check == "superres":
        row["psnr_superres_x4"] = restoration_psnr(prior, val, check)
    elif check == "inpaint":
        row["psnr_inpaint_random80"] = restoration_psnr(prior, val, check)
    else:
        for sigma in args.sigmas:
            row[f"psnr_sigma{sigma}"] = denoising_psnr(
                lambda y, op: CLASSICAL[args.classical](y, op, None) if prior is None else DIFFUSION["tweedie"](y, op, prior),
                val, sigma)
    row["seconds"] = round(time.perf_counter() - t0, 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
