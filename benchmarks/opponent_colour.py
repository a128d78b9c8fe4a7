"""Colour photos through the gray photo prior in an opponent colour space, against the colour prior, on held-out
training photos (never on test images):

    OMP_NUM_THREADS=2 python benchmarks/opponent_colour.py superres/cbsd68/x4 3 rgb,gray-opp,mix
    OMP_NUM_THREADS=2 python benchmarks/opponent_colour.py inpaint/cbsd68/random80 3 rgb,mix

Downsampling and a pixel mask act on every channel alike, so they commute with a per-pixel colour transform:
A(T x) = T(A x). The measurement is taken to Y = (R + G + B) / 3, (R - B) / 2 + 1/2, (R - 2G + B) / 4 + 1/2 (each
in [0, 1]), each channel restored as a gray photo, and the result taken back. Methods, each DPIR with the CLI's
settings for the task: ``rgb`` the colour prior (the default), ``gray-opp`` the gray prior on all three opponent
channels, ``mix`` the gray prior on Y and the colour prior's result for the two chroma channels. The photos are
the first n the colour prior held out (bsds400); DnCNN's Train400, the gray prior's data, are gray crops of the
same BSDS500 photos, so the gray prior may have seen these ones. Results: benchmarks/results/tune/opponent_colour.md.
"""

import sys
import time

import numpy as np
import torch

from tune_photo import held_out_photos  # a sibling script, as ddpm_photo_attention.py imports one
from restore import photo_bench
from restore.priors import load_prior
from restore.solvers import PRIOR_SOLVERS

M = torch.tensor([[1/3, 1/3, 1/3], [1/2, 0, -1/2], [1/4, -1/2, 1/4]], dtype=torch.float64)
OFF = torch.tensor([0.0, 0.5, 0.5], dtype=torch.float64)
Minv = torch.linalg.inv(M)


def to_opp(x):  # (1, 3, H, W) -> (1, 3, H, W)
    return torch.einsum("ij,bjhw->bihw", M, x.double()) + OFF[None, :, None, None]


def from_opp(z):
    return torch.einsum("ij,bjhw->bihw", Minv, z.double() - OFF[None, :, None, None])


def main():
    torch.set_num_threads(2)
    setting_name = sys.argv[1]
    n = int(sys.argv[2])
    methods = sys.argv[3].split(",")
    setting = next(s for s in photo_bench.settings() if s.name == setting_name)
    rgb = load_prior("ddpm-photo-rgb")
    images, names = held_out_photos(rgb, n, setting.modcrop)
    kw = {"superres": dict(steps=24, sigma_max=0.3, views=8)}.get(setting.task, dict(steps=24, views=8))
    dpir = PRIOR_SOLVERS["dpir"]
    res = {m: [] for m in methods}
    for i, x in enumerate(images):
        op, y = photo_bench.measurement(setting, x, i)
        for m in methods:
            t0 = time.perf_counter()
            with torch.no_grad():
                if m == "rgb":
                    x_hat = dpir(y, op, rgb, **kw)
                elif m == "gray-rgb":
                    g = load_prior("ddpm-photo-gray", image_shape=tuple(x.shape[1:]))
                    x_hat = dpir(y, op, g, **kw)
                elif m == "gray-opp":
                    g = load_prior("ddpm-photo-gray")
                    yo = to_opp(y).float()
                    if setting.task == "inpaint":
                        yo = yo * op.mask
                    z = dpir(yo.transpose(0, 1).contiguous(), op, g, **kw)  # (3, 1, H, W): three gray problems
                    x_hat = from_opp(z.transpose(0, 1)).float()
                elif m == "mix":  # luminance from the gray prior, chroma from the colour prior's result
                    g = load_prior("ddpm-photo-gray")
                    yo = to_opp(y).float()
                    if setting.task == "inpaint":
                        yo = yo * op.mask
                    zy = dpir(yo[:, :1].contiguous(), op, g, **kw)
                    zc = to_opp(dpir(y, op, rgb, **kw))
                    x_hat = from_opp(torch.cat([zy.double(), zc[:, 1:]], 1)).float()
            x_hat = op.field_of_view(x_hat)
            p, s = photo_bench.score(x_hat, x, setting.shave)
            res[m].append(p)
            print(f"{names[i]} {m}: {p:.2f} dB ({time.perf_counter()-t0:.1f} s)", flush=True)
    for m in methods:
        print(f"{setting_name} {m}: mean {np.mean(res[m]):.3f} over {len(res[m])}")


if __name__ == "__main__":
    main()
