"""``restore train FAMILY``: train a prior on a dataset or a folder of images."""

from __future__ import annotations

import math
from typing import Optional

import typer
from typing_extensions import Annotated

from ..errors import RestoreError
from .app import app
from .common import Device, Seed, _check_seed


@app.command()
def train(
    family: Annotated[str, typer.Argument(help="Prior family to train: ddpm, gaussian, gmm, vae, gan, flow or pixelcnn.")],
    data: Annotated[str, typer.Option(help="mnist, fashion-mnist, a photo set (train400, bsds400, set12, bsd68, cbsd68) or a folder of images (searched recursively).")],
    out: Annotated[str, typer.Option(help="Run folder: checkpoints, log.jsonl, sample grids and the exported model.")],
    size: Annotated[Optional[int], typer.Option(help="Image size (default: the data's own: 28 for MNIST, the shared shorter side of a folder's images; images of several sizes need --size or --patch).")] = None,
    channels: Annotated[Optional[int], typer.Option(help="1 or 3 to convert every image (default: as stored).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Base channel count of the network (default: 32; gan, pixelcnn 64; flow 128).")] = None,
    schedule: Annotated[str, typer.Option(help="Beta schedule: linear or cosine.")] = "linear",
    timesteps: Annotated[int, typer.Option(help="Diffusion timesteps T of the schedule.")] = 1000,
    steps: Annotated[Optional[int], typer.Option(help="Optimiser steps in total (a resumed run continues to this; default 10000); gmm: EM iterations (default 30).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Images per step, over all processes (default: 128; gan, flow, pixelcnn 64).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (default: ddpm 2e-4; vae, pixelcnn 1e-3; flow 5e-4 after a 500-step warm-up; gan 2e-4, wgan-gp 1e-4).")] = None,
    ema: Annotated[float, typer.Option(help="EMA decay of the exported weights.")] = 0.999,
    max_minutes: Annotated[Optional[float], typer.Option(help="Wall-clock budget; checkpoints and stops when spent.")] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 500,
    sample_every: Annotated[int, typer.Option(help="Steps between sample grids.")] = 1000,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the checkpoint in --out.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the training run or model in --out (a non-empty --out is refused without it).")] = False,
    device: Device = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16 on GPU, fp32 on CPU), fp32 or bf16 (autocast).")] = "auto",
    flip: Annotated[bool, typer.Option("--flip", help="Mirror training images left-right at random (not for digits).")] = False,
    rank: Annotated[int, typer.Option(help="gaussian: number of principal directions kept (the rest is diagonal).")] = 64,
    init: Annotated[Optional[str], typer.Option(help="ddpm: start from this model (a --prior value) instead of random weights.")] = None,
    patch: Annotated[Optional[int], typer.Option(help="ddpm: train on random PATCH x PATCH crops of whole photographs (flipped and turned), with a fully convolutional UNet that runs on any image size; gmm: the patch size (default 8).")] = None,
    components: Annotated[int, typer.Option(help="gmm: Gaussian components of the mixture.")] = 200,
    patch_count: Annotated[int, typer.Option(help="gmm: random patches (flipped and turned) that EM fits.")] = 400_000,
    latent_dim: Annotated[Optional[int], typer.Option(help="vae, gan: dimension of the latent z (default: vae 16, gan 100).")] = None,
    beta: Annotated[float, typer.Option(help="vae: weight of the KL term (1 is the ELBO).")] = 1.0,
    kl_warmup: Annotated[int, typer.Option(help="vae: steps over which the KL weight ramps up from 0 (0: none).")] = 0,
    loss: Annotated[str, typer.Option(help="gan: ns (non-saturating, DCGAN) or wgan-gp.")] = "ns",
    n_critic: Annotated[Optional[int], typer.Option(help="gan: discriminator steps per generator step (default: ns 1, wgan-gp 5).")] = None,
    levels: Annotated[int, typer.Option(help="flow: multi-scale levels (squeeze, steps, split).")] = 2,
    depth: Annotated[Optional[int], typer.Option(help="flow: steps of flow per level (default 8); gan: 3x3 convolutions added at each resolution of the generator (default 0).")] = None,
    fc: Annotated[int, typer.Option(help="gan: units of a fully connected layer added to generator and discriminator (InfoGAN's MNIST networks: 1024; default 0, none).")] = 0,
    minibatch_std: Annotated[bool, typer.Option("--minibatch-std", help="gan: give the discriminator the spread of each batch (Karras et al. 2018), against mode dropping.")] = False,
    pack: Annotated[int, typer.Option(help="gan: images the discriminator judges together (PacGAN, Lin et al. 2018), against mode dropping.")] = 1,
    spectral_norm: Annotated[bool, typer.Option("--spectral-norm", help="gan: spectral normalisation instead of batch norm in the discriminator (Miyato et al. 2018).")] = False,
    coupling: Annotated[str, typer.Option(help="flow: affine or additive coupling.")] = "affine",
    layers: Annotated[int, typer.Option(help="pixelcnn: gated layers.")] = 8,
    kernel: Annotated[int, typer.Option(help="pixelcnn: kernel size (odd).")] = 5,
    data_root: Annotated[Optional[str], typer.Option(help="Where MNIST/Fashion-MNIST are (or are downloaded to; default $RESTORE_DATA).")] = None,
    seed: Seed = 0,
):
    """Train a prior on a dataset (ddpm, vae and gan run under torchrun for several processes; gaussian fits in seconds)."""
    trainable = ("ddpm", "gaussian", "gmm", "vae", "gan", "flow", "pixelcnn")
    if family not in trainable:
        raise RestoreError(f"training {family!r} is not available yet; trainable families: {', '.join(trainable)}")
    _check_seed(seed)
    if patch is not None and family not in ("ddpm", "gmm"):
        raise RestoreError(f"--patch is a ddpm and gmm option (patch priors); {family} trains on whole images")
    if patch is not None and patch < (2 if family == "gmm" else 8):
        raise RestoreError(f"--patch must be at least {2 if family == 'gmm' else 8}, got {patch}")
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        raise RestoreError(f"--max-minutes must be a positive number of minutes, got {max_minutes}")
    if resume and overwrite:
        raise RestoreError("--resume continues the run in --out and --overwrite replaces it: give one")
    import os

    if int(os.environ.get("RANK", "0")) == 0:  # the other processes of a torchrun job see rank 0's folder
        from ..training import claim_run_folder

        claim_run_folder(out, resume=resume, overwrite=overwrite)
    if family == "gaussian":
        from ..priors.gaussian import train_gaussian

        if not 1 <= rank:
            raise RestoreError(f"--rank must be a positive integer, got {rank}")
        summary = train_gaussian(data=data, out=out, size=size, channels=channels, rank=rank, seed=seed,
                                 data_root=data_root)
        typer.echo(f"{out}: Gaussian prior of rank {rank} fitted to {summary['train_images']} images in "
                   f"{summary['seconds']:.1f} s" + (f", validation {summary['val_bits_per_dim']:.3f} bits/dim"
                                                    if "val_bits_per_dim" in summary else ""))
        return
    if family == "gmm":
        from ..priors.gmm import train_gmm

        if data in ("mnist", "fashion-mnist"):
            raise RestoreError(f"gmm fits patches of photographs: give a photo set (train400, bsds400) or a folder of "
                               f"images, not {data}")
        for name, value in (("--steps", steps), ("--components", components), ("--patch-count", patch_count)):
            if value is not None and value < 1:
                raise RestoreError(f"{name} must be a positive integer, got {value}")
        train_gmm(data=data, out=out, patch=patch or 8, components=components, patches=patch_count,
                  iterations=steps or 30, channels=channels, seed=seed, max_minutes=max_minutes, resume=resume,
                  data_root=data_root, log=typer.echo)
        return
    steps = 10000 if steps is None else steps
    for name, value in (("--steps", steps), ("--batch-size", batch_size), ("--width", width), ("--timesteps", timesteps),
                        ("--checkpoint-every", checkpoint_every), ("--sample-every", sample_every),
                        ("--latent-dim", latent_dim), ("--n-critic", n_critic), ("--levels", levels),
                        ("--depth", None if family == "gan" else depth), ("--layers", layers)):
        if value is not None and value < 1:
            raise RestoreError(f"{name} must be a positive integer, got {value}")
    if lr is not None and not (math.isfinite(lr) and lr > 0) or not 0 <= ema < 1:
        raise RestoreError(f"--lr must be positive and --ema in [0, 1), got {lr} and {ema}")
    if not (math.isfinite(beta) and beta >= 0) or kl_warmup < 0:
        raise RestoreError(f"--beta and --kl-warmup must be non-negative, got {beta} and {kl_warmup}")
    common = dict(data=data, out=out, size=size, channels=channels, steps=steps, ema_decay=ema, seed=seed,
                  max_minutes=max_minutes, checkpoint_every=checkpoint_every, sample_every=sample_every, resume=resume,
                  device=device, precision=precision, flip=flip, data_root=data_root)
    # Options left unset take each family's own default (the train_* signatures): one place for them.
    common.update({k: v for k, v in (("batch_size", batch_size), ("lr", lr)) if v is not None})
    net = {"hidden" if family == "flow" else "width": width} if width is not None else {}
    latent = {"latent_dim": latent_dim} if latent_dim is not None else {}
    if family == "vae":
        from ..priors.vae import train_vae

        summary = train_vae(**common, **net, **latent, beta=beta, kl_warmup=kl_warmup, val_every=checkpoint_every)
    elif family == "gan":
        from ..priors.gan import train_gan

        # train_gan refuses a negative --depth or --fc and a --pack that does not divide the batch.
        summary = train_gan(**common, **net, **latent, depth=depth or 0, fc=fc, minibatch_std=minibatch_std, pack=pack,
                            spectral=spectral_norm, loss=loss, n_critic=n_critic)
    elif family == "flow":
        from ..priors.flow import train_flow

        summary = train_flow(**common, **net, levels=levels, depth=8 if depth is None else depth, coupling=coupling, val_every=checkpoint_every)
    elif family == "pixelcnn":
        from ..priors.pixelcnn import train_pixelcnn

        summary = train_pixelcnn(**common, **net, layers=layers, kernel=kernel, val_every=checkpoint_every)
    else:
        from ..priors.ddpm import train_ddpm

        summary = train_ddpm(**common, **net, schedule=schedule, timesteps=timesteps, val_every=checkpoint_every,
                             init=init, patch=patch)
    if int(os.environ.get("RANK", "0")) == 0:
        state = ("finished" if summary["finished"] else
                 f"stopped by {summary['interrupted_by']} (continue with --resume)" if summary.get("interrupted_by")
                 else "stopped by the time budget (continue with --resume)")
        typer.echo(f"{out}: step {summary['step']}, {state}, {summary['minutes']:.1f} min")
