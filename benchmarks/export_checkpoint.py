"""Export a photo DDPM training run's latest checkpoint as a shippable diffusers folder (float16 weights).

    python benchmarks/export_checkpoint.py --run runs/ddpm-photo-rgb --weights model --out restore/weights/ddpm-photo-rgb

Training exports the EMA weights. A run started from other weights (--init) carries those weights in
its EMA for a while (0.999^steps of them), so its raw weights can be the better model for some time;
``--weights model`` exports those. Choose by held-out PSNR (benchmarks/ddpm_photo_curve.py --weights),
never on test images. The folder gets model_index.json, unet/ (float16 safetensors), scheduler/, and
the run's run.json (with "exported_weights") and train_digests.txt; --out must not exist.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ddpm_photo_curve import from_checkpoint


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--weights", choices=["ema", "model"], default="ema")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"'{args.out}' exists: choose a new folder")
    from diffusers import DDPMPipeline

    from restore.priors.ddpm import make_scheduler

    prior, where, config = from_checkpoint(args.run, args.weights)
    scheduler = make_scheduler(config["schedule"], config["timesteps"])
    DDPMPipeline(unet=prior.unet, scheduler=scheduler).save_pretrained(args.out, safe_serialization=True)
    for weights in (args.out / "unet").glob("*.safetensors"):
        save_file({k: v.half().contiguous() for k, v in load_file(str(weights)).items()}, str(weights))
        weights.chmod(0o644)
    if config.get("init") and "init_steps" not in config:  # runs started before train_ddpm recorded it
        from restore.priors import load_prior
        from restore.priors.ddpm import _total_steps

        config["init_steps"] = _total_steps(load_prior(config["init"]).run_info or {})
    run = {**config, "steps_done": where["step"], "minutes_total": where["minutes"],
           "exported_weights": "raw (not EMA)" if args.weights == "model" else "EMA"}
    (args.out / "run.json").write_text(json.dumps(run, indent=2) + "\n")
    shutil.copy(args.run / "train_digests.txt", args.out / "train_digests.txt")
    print(f"wrote {args.out}: step {where['step']}, {args.weights} weights, float16")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
