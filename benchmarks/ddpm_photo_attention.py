"""What the photo DDPM's one attention layer does on whole photographs.

    python benchmarks/ddpm_photo_attention.py --prior ddpm-photo-gray
    python benchmarks/ddpm_photo_attention.py --prior ddpm-photo-rgb --attention global 4

The photo UNet (``make_patch_unet``) has a single self-attention layer, in its middle block at 1/8 of the
image's resolution (diffusers' ``UNetMidBlock2D`` adds it by default). Trained on 64x64 patches it only
ever attended over 8 x 8 = 64 positions; on a 481x321 photo it attends over 61 x 41 = 2,501 of them, in a
512-pixel window over 4,096. Does it generalise? This denoises the prior's own held-out training images
(never a test image) with the one-step Tweedie estimate, as ``ddpm_photo_curve.py`` does, with that layer

- ``global``: as trained and shipped, every position attends to every other;
- ``R`` (an integer): each position attends only to the (2R+1)^2 positions around it inside the image,
  so R = 4 is a 72x72-pixel neighbourhood, about the training patch;
- ``none``: the layer removed (its residual passed through), to show what it contributes at all.

If ``R`` scores as ``global`` does, the long-range attention adds nothing the training patch did not teach,
and the layer generalises. With ``--setting`` the variants restore the first ``-n`` held-out photos
degraded as that benchmark setting degrades its test images (``restore.photo_bench``), with ``--solver``:

    python benchmarks/ddpm_photo_attention.py --prior ddpm-photo-rgb --setting superres/cbsd68/x4 \
        --solver dpir --steps 24 --params '{"sigma_max": 0.3, "views": 8}' -n 4 --attention global 4

One JSON line per variant goes to ``benchmarks/results/ddpm_photo/attention.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ddpm_photo_curve import denoising_psnr  # a sibling script, as export_checkpoint.py imports it
from restore.data import held_out_images
from restore.runtime import machine
from restore.solvers import DIFFUSION

OUT = Path(__file__).parent / "results" / "ddpm_photo" / "attention.jsonl"


def local_attention(q, k, v, radius: int, scale: float):
    """Softmax attention of each position over the (2 radius + 1)^2 positions around it that lie inside the
    image; q, k, v and the result are (B, heads, d, H, W)."""
    B, heads, d, H, W = q.shape
    r = radius
    k, v = F.pad(k, (r, r, r, r)), F.pad(v, (r, r, r, r))
    inside = F.pad(torch.ones(H, W, dtype=torch.bool, device=q.device), (r, r, r, r))
    offsets = [(dy, dx) for dy in range(2 * r + 1) for dx in range(2 * r + 1)]
    logits = torch.stack([
        ((q * k[..., dy:dy + H, dx:dx + W]).sum(2) * scale).masked_fill(~inside[dy:dy + H, dx:dx + W], -torch.inf)
        for dy, dx in offsets], 2)  # (B, heads, n, H, W)
    weights = logits.softmax(2)
    out = torch.zeros_like(q)
    for i, (dy, dx) in enumerate(offsets):
        out += weights[:, :, i:i + 1] * v[..., dy:dy + H, dx:dx + W]
    return out


class LocalAttention:
    """A diffusers attention processor for a spatial self-attention layer (``Attention`` on (B, C, H, W)
    input, as in ``UNetMidBlock2D``): the layer's own norm and projections, attention restricted to a
    neighbourhood (``radius``), or no attention at all (``radius=None``: the residual alone)."""

    def __init__(self, radius: int | None):
        self.radius = radius

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        residual = hidden_states
        B, C, H, W = hidden_states.shape
        if self.radius is None:
            out = torch.zeros_like(hidden_states)
        else:
            h = hidden_states.view(B, C, H * W).transpose(1, 2)  # (B, HW, C)
            if attn.group_norm is not None:
                h = attn.group_norm(h.transpose(1, 2)).transpose(1, 2)
            q, k, v = attn.to_q(h), attn.to_k(h), attn.to_v(h)  # (B, HW, inner)
            inner = k.shape[-1]
            d = inner // attn.heads

            def spatial(t):  # (B, HW, inner) -> (B, heads, d, H, W)
                return t.transpose(1, 2).reshape(B, attn.heads, d, H, W)

            out = local_attention(spatial(q), spatial(k), spatial(v), self.radius, attn.scale)
            out = attn.to_out[1](attn.to_out[0](out.reshape(B, inner, H * W).transpose(1, 2)))
            out = out.transpose(1, 2).reshape(B, C, H, W)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def _restore_setting(args, prior, images) -> float:
    """Mean PSNR of ``args.solver`` with ``prior`` on ``images`` degraded as the benchmark setting
    ``args.setting`` degrades its test images (same operator, same seeded noise, same scoring)."""
    from restore import photo_bench
    from restore.operators import functional as Fn
    from restore.solvers import PRIOR_SOLVERS

    setting = next(s for s in photo_bench.settings() if s.name == args.setting)
    kwargs = {**({"steps": args.steps} if args.steps else {}), **json.loads(args.params)}
    scores = []
    for i, x in enumerate(images):
        x = Fn.modcrop(x, setting.modcrop)
        op, y = photo_bench.measurement(setting, x, i * setting.items_per_image)
        with torch.no_grad():
            x_hat = PRIOR_SOLVERS[args.solver](y, op, prior, generator=torch.Generator().manual_seed(0), **kwargs)
        scores.append(photo_bench.score(op.field_of_view(x_hat), x, setting.shave)[0])
    return round(float(np.mean(scores)), 3)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prior", required=True, help="a photo DDPM (a --prior value)")
    parser.add_argument("--attention", nargs="+", default=["global", "4", "7", "none"],
                        help="variants: global, none, or a neighbourhood radius in positions at 1/8 scale")
    parser.add_argument("--sigmas", type=int, nargs="+", default=[15, 25, 50], help="noise levels on 0-255")
    parser.add_argument("--setting", help="restore this benchmark setting's degradation of held-out photos instead")
    parser.add_argument("--solver", default="dpir", help="with --setting: the diffusion solver")
    parser.add_argument("--steps", type=int, default=None, help="with --setting: the solver's steps")
    parser.add_argument("--params", default="{}", help="with --setting: JSON object of solver hyperparameters")
    parser.add_argument("-n", type=int, default=4, help="with --setting: held-out photos")
    args = parser.parse_args()

    from diffusers.models.attention_processor import Attention

    from restore.priors import load_prior

    prior = load_prior(args.prior)
    layers = [m for m in prior.unet.modules() if isinstance(m, Attention)]
    shipped = [layer.processor for layer in layers]
    images, _ = held_out_images(prior.run_info, channels=prior.run_info["channels"],
                                n=args.n if args.setting else None)
    val = [image.float()[None] / 255 for image in images]
    for variant in args.attention:
        for layer, processor in zip(layers, shipped):
            layer.set_processor(processor if variant == "global" else
                                LocalAttention(None if variant == "none" else int(variant)))
        row = {"prior": args.prior, "training_steps": prior.info()["training_steps"], "attention": variant,
               "attention_layers": len(layers), "images": len(val), "machine": machine()}
        t0 = time.perf_counter()
        if args.setting:
            row.update(setting=args.setting, solver=args.solver, steps=args.steps, params=json.loads(args.params),
                       psnr=_restore_setting(args, prior, val))
            args.sigmas = []
        for sigma in args.sigmas:  # the noise of ddpm_photo_curve.py, so its rows compare
            row[f"psnr_sigma{sigma}"] = denoising_psnr(lambda y, op: DIFFUSION["tweedie"](y, op, prior), val, sigma)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        with open(OUT, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
