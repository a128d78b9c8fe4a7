"""Tweedie denoising of held-out Train400 photos (the gray prior's validation split, never test images): the
geometric self-ensemble (views) against cycle spinning over sub-stride shifts, and both.

    python benchmarks/shift_ensemble.py sigma25 8     # -> printed; results/tune/shift_ensemble.md

A shift mirror-pads the noisy photo by (dy, dx) pixels at its top and left, so that its content meets the
UNet's stride-2 grid at another phase, denoises and crops back; the estimates of the shifts (each with its
views) are averaged. Noise as the benchmark's denoise/bsd68 setting draws it; one torch thread.
"""

import itertools
import sys

import numpy as np
import torch

from tune_photo import held_out_photos  # a sibling script, as ddpm_photo_attention.py imports one
from restore import photo_bench
from restore.priors import load_prior
from restore.solvers.tweedie import SYMMETRIES, denoise, to_view, from_view


def shifted(prior, y, sigma, dy, dx, views):
    # mirror-pad top/left by (dy, dx) so the content sits at another phase of the network's stride grid
    H, W = y.shape[-2:]
    yp = torch.cat([y[..., 1:dy + 1, :].flip(-2), y], -2) if dy else y
    yp = torch.cat([yp[..., :, 1:dx + 1].flip(-1), yp], -1) if dx else yp
    out = sum(from_view(denoise(prior, to_view(yp, *s), sigma), *s) for s in SYMMETRIES[:views]) / views
    return out[..., dy:dy + H, dx:dx + W]


def main():
    torch.set_num_threads(1)
    sigma_name = sys.argv[1]  # e.g. sigma25
    n = int(sys.argv[2])
    prior = load_prior("ddpm-photo-gray")
    setting = next(s for s in photo_bench.settings() if s.name == f"denoise/bsd68/{sigma_name}")
    sigma = int(sigma_name[5:]) / 255
    images, names = held_out_photos(prior, n, 1)

    configs = {
        "v1": (1, [(0, 0)]), "v4": (4, [(0, 0)]),
        "v1 s(0,0)(4,4)": (1, [(0, 0), (4, 4)]),
        "v4 s(0,0)(4,4)": (4, [(0, 0), (4, 4)]),
        "v4 s4 (0/4 grid)": (4, [(0, 0), (0, 4), (4, 0), (4, 4)]),
        "v1 s4 (0/4 grid)": (1, [(0, 0), (0, 4), (4, 0), (4, 4)]),
        "v1 s16 (0/2/4/6)": (1, list(itertools.product([0, 2, 4, 6], repeat=2))),
    }
    res = {k: [] for k in configs}
    for i, x in enumerate(images):
        op, y = photo_bench.measurement(setting, x, i)
        with torch.no_grad():
            for k, (views, shifts) in configs.items():
                est = sum(shifted(prior, y.double(), sigma, dy, dx, views) for dy, dx in shifts) / len(shifts)
                res[k].append(photo_bench.score(est.clamp(0, 1).float(), x)[0])
        print(names[i], {k: round(v[-1], 3) for k, v in res.items()}, flush=True)
    for k, v in res.items():
        print(f"{sigma_name} {k}: {np.mean(v):.3f} ({len(v)} photos)")


if __name__ == "__main__":
    main()
