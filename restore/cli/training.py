"""``restore train FAMILY``: one sub-command per prior family, whose options mirror its ``train_*`` function.

Every family that trains a network shares the data and run options (:data:`_DATA`) and the loop's options
(:class:`restore.training.TrainOptions`, :data:`_LOOP`), with the family's own defaults; then come the
family's own options. Defaults are written here, not read from the ``train_*`` signatures (that would import
torch for ``restore --help``); tests/test_cli_train.py checks that they agree.
"""

from __future__ import annotations

import inspect
import math
import os
from typing import Literal, Optional

import typer
from typing_extensions import Annotated

from ..errors import RestoreError
from .app import app
from .common import Device, Seed

train_app = typer.Typer(help="Train a prior on a dataset or a folder of images (one sub-command per family).",
                        no_args_is_help=True)
app.add_typer(train_app, name="train")

_REQUIRED = inspect.Parameter.empty

# The data and the run folder.
Data = Annotated[str, typer.Option(help="mnist, fashion-mnist, a photo set (train400, bsds400, set12, bsd68, cbsd68) or "
                                        "a folder of images (searched recursively).")]
Out = Annotated[str, typer.Option(help="Run folder: checkpoints, log.jsonl, sample grids and the exported model.")]
Size = Annotated[Optional[int], typer.Option(min=1, help="Image size (default: the data's own: 28 for MNIST, the shared "
                                                         "shorter side of a folder's images; images of several sizes "
                                                         "need --size).")]
Channels = Annotated[Optional[int], typer.Option(min=1, max=3,
                                                 help="1 or 3 to convert every image (default: as stored).")]
DataRoot = Annotated[Optional[str], typer.Option(help="Where MNIST/Fashion-MNIST are (or are downloaded to; default "
                                                      "$RESTORE_DATA).")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue the checkpoint in --out.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the training run or model in --out (a non-empty "
                                                             "--out is refused without it).")]
MaxMinutes = Annotated[Optional[float], typer.Option(help="Wall-clock budget; checkpoints and stops when spent.")]
_DATA = [("data", Data, _REQUIRED), ("out", Out, _REQUIRED), ("size", Size, None), ("channels", Channels, None),
         ("data_root", DataRoot, None)]

# The training loop (restore.training.TrainOptions); steps, batch size and rate take the family's defaults.
Steps = Annotated[int, typer.Option(min=1, help="Optimiser steps in total (a resumed run continues to this).")]
BatchSize = Annotated[int, typer.Option(min=1, help="Images per step, over all processes.")]
Lr = Annotated[float, typer.Option(help="Adam learning rate.")]
LrDecay = Annotated[int, typer.Option(min=0, help="Bring the learning rate down linearly to 0 over the last LR_DECAY "
                                                  "of --steps (a cool-down; 0: constant). A resumed run with a "
                                                  "larger --steps cools down at its new end.")]
Ema = Annotated[float, typer.Option("--ema", "--ema-decay", min=0.0, help="EMA decay of the exported weights "
                                                                              "(below 1).")]
CheckpointEvery = Annotated[int, typer.Option(min=1, help="Steps between checkpoints (and validations).")]
SampleEvery = Annotated[int, typer.Option(min=1, help="Steps between sample grids.")]
Precision = Annotated[Literal["auto", "fp32", "bf16"], typer.Option(help="auto (bf16 on GPU, fp32 on CPU), fp32 or bf16 (autocast).")]
Flip = Annotated[bool, typer.Option("--flip", help="Mirror training images left-right at random (not for digits).")]


def _loop(steps=10000, batch_size=128, lr=2e-4, sample_every=1000) -> list:
    return [("steps", Steps, steps), ("batch_size", BatchSize, batch_size), ("lr", Lr, lr), ("lr_decay", LrDecay, 0),
            ("ema", Ema, 0.999),
            ("max_minutes", MaxMinutes, None), ("checkpoint_every", CheckpointEvery, 500),
            ("sample_every", SampleEvery, sample_every), ("resume", Resume, False), ("overwrite", Overwrite, False),
            ("device", Device, "auto"), ("precision", Precision, "auto"), ("flip", Flip, False), ("seed", Seed, 0)]


def _width(default: int, what: str = "Base channel count of the network."):
    return ("width", Annotated[int, typer.Option(min=1, help=what)], default)


def _option(name: str, kind, default, help: str, **checks):
    return (name, Annotated[kind, typer.Option(help=help, **checks)], default)


def _choice(name: str, choices: list[str], help: str):
    return (name, Annotated[Literal[tuple(choices)], typer.Option(help=help)], choices[0])


def _flag(name: str, help: str):
    return (name, Annotated[bool, typer.Option(f"--{name.replace('_', '-')}", help=help)], False)


#: Per family: its help, its options after the shared ones, and what runs it. ``run(kwargs)`` gets every
#: option by name (``ema`` as the train_* functions' ``ema_decay``) and returns the training summary.
FAMILIES: dict = {}


def _family(name: str, doc: str, options: list):
    def register(run):
        FAMILIES[name] = (doc, options, run)
        return run
    return register


@_family("ddpm", "Train a DDPM (Ho et al. 2020) with diffusers' UNet2DModel; the run folder loads in DDPMPipeline.",
         _DATA + _loop() + [
             _width(32),
             _option("layers_per_block", int, 1, "ResNet blocks per UNet level.", min=1),
             _choice("schedule", ["linear", "cosine"], "Beta schedule."),
             _option("timesteps", int, 1000, "Diffusion timesteps T of the schedule.", min=1),
             _option("init", Optional[str], None, "Start from this model (a --prior value) instead of random weights."),
             _option("patch", Optional[int], None, "Train on random PATCH x PATCH crops of whole photographs (flipped "
                     "and turned), with a UNet that runs on any image size.", min=8),
             _option("focus_sigma", Optional[float], None, "Draw --focus-share of each batch's timesteps among those of "
                     "noise level at most this (on [0, 1] images; e.g. 0.3, the levels DPIR and Tweedie denoising "
                     "use), the rest from all T (Karras et al. 2022's choice of training noise levels).", min=0.0),
             _option("focus_share", float, 0.75, "The share of each batch that --focus-sigma draws.", min=0.0,
                     max=1.0),
             _flag("stretch", "With --patch: map each image's range of values onto [0, 1] (dark data such as "
                   "unscaled 12-bit images); restoring with the prior then stretches each measurement too.")])
def _ddpm(kw):
    from ..priors.ddpm import train_ddpm

    return train_ddpm(**kw, val_every=kw["checkpoint_every"])


@_family("vae", "Train a VAE (Kingma & Welling 2014) by its ELBO.",
         _DATA + _loop(lr=1e-3) + [
             _width(32), _option("hidden", int, 256, "Units of the fully connected layer.", min=1),
             _option("latent_dim", int, 16, "Dimension of the latent z.", min=1),
             _option("beta", float, 1.0, "Weight of the KL term (1 is the ELBO).", min=0.0),
             _option("kl_warmup", int, 0, "Steps over which the KL weight ramps up from 0 (0: none).", min=0)])
def _vae(kw):
    from ..priors.vae import train_vae

    return train_vae(**kw, val_every=kw["checkpoint_every"])


@_family("gan", "Train a DCGAN (Radford et al. 2016), non-saturating or WGAN-GP.",
         _DATA + [o if o[0] != "lr" else _option("lr", Optional[float], None, "Adam learning rate (default: ns 2e-4, "
                                                 "wgan-gp 1e-4).")
                  for o in _loop(batch_size=64)] + [
             _width(64), _option("latent_dim", int, 100, "Dimension of the latent z.", min=1),
             _option("depth", int, 0, "3x3 convolutions added at each resolution of the generator.", min=0),
             _option("fc", int, 0, "Units of a fully connected layer added to generator and discriminator (InfoGAN's "
                     "MNIST networks: 1024; 0: none).", min=0),
             _flag("minibatch_std", "Give the discriminator the spread of each batch (Karras et al. 2018), against "
                   "mode dropping."),
             _option("pack", int, 1, "Images the discriminator judges together (PacGAN, Lin et al. 2018).", min=1),
             _flag("spectral_norm", "Spectral normalisation instead of batch norm in the discriminator (Miyato et al. "
                   "2018)."),
             _choice("loss", ["ns", "wgan-gp"], "ns (non-saturating, DCGAN) or wgan-gp."),
             _option("n_critic", Optional[int], None, "Discriminator steps per generator step (default: ns 1, "
                     "wgan-gp 5).", min=1)])
def _gan(kw):
    from ..priors.gan import train_gan

    spectral = kw.pop("spectral_norm")
    return train_gan(**kw, spectral=spectral)


@_family("flow", "Train a Glow (Kingma & Dhariwal 2018): actnorm, invertible 1x1 convolution, coupling.",
         _DATA + _loop(batch_size=64, lr=5e-4) + [
             _width(128, "Channels of each coupling network."),
             _option("levels", int, 2, "Multi-scale levels (squeeze, steps, split).", min=1),
             _option("depth", int, 8, "Steps of flow per level.", min=1),
             _choice("coupling", ["affine", "additive"], "Coupling layers.")])
def _flow(kw):
    from ..priors.flow import train_flow

    hidden = kw.pop("width")
    return train_flow(**kw, hidden=hidden, val_every=kw["checkpoint_every"])


@_family("pixelcnn", "Train a gated PixelCNN (van den Oord et al. 2016).",
         _DATA + _loop(batch_size=64, lr=1e-3, sample_every=2000) + [
             _width(64), _option("layers", int, 8, "Gated layers.", min=1),
             _option("kernel", int, 5, "Kernel size (odd).", min=1)])
def _pixelcnn(kw):
    from ..priors.pixelcnn import train_pixelcnn

    return train_pixelcnn(**kw, val_every=kw["checkpoint_every"])


@_family("gaussian", "Fit a Gaussian (PCA) prior in seconds: mean, leading principal directions and a diagonal rest.",
         _DATA + [("overwrite", Overwrite, False),
                  _option("rank", int, 64, "Principal directions kept (the rest is diagonal).", min=1),
                  ("seed", Seed, 0)])
def _gaussian(kw):
    from ..priors.gaussian import train_gaussian

    summary = train_gaussian(**kw)
    typer.echo(f"{kw['out']}: Gaussian prior of rank {kw['rank']} fitted to {summary['train_images']} images in "
               f"{summary['seconds']:.1f} s" + (f", validation {summary['val_bits_per_dim']:.3f} bits/dim"
                                                if "val_bits_per_dim" in summary else ""))


@_family("gmm", "Fit a Gaussian mixture of patches (EPLL, Zoran & Weiss 2011) by EM to photographs.",
         [o for o in _DATA if o[0] != "size"] + [
             _option("patch", int, 8, "Patch size.", min=2),
             _option("components", int, 200, "Gaussian components of the mixture.", min=1),
             _option("patch_count", int, 400_000, "Random patches (flipped and turned) that EM fits.", min=1),
             _option("steps", int, 30, "EM iterations.", min=1),
             ("max_minutes", MaxMinutes, None), ("resume", Resume, False), ("overwrite", Overwrite, False),
             ("seed", Seed, 0)])
def _gmm(kw):
    from ..priors.gmm import train_gmm

    if kw["data"] in ("mnist", "fashion-mnist"):
        raise RestoreError(f"gmm fits patches of photographs: give a photo set (train400, bsds400) or a folder of "
                           f"images, not {kw['data']}")
    patches, iterations = kw.pop("patch_count"), kw.pop("steps")
    train_gmm(**kw, patches=patches, iterations=iterations, log=typer.echo)


def _train(family: str, kw: dict) -> None:
    """Check what typer cannot, claim the run folder, train, and say where the run stands."""
    # What typer's ranges cannot say: strictly positive, finite, below 1.
    for name in ("lr", "max_minutes"):
        if kw.get(name) is not None and not (math.isfinite(kw[name]) and kw[name] > 0):
            raise RestoreError(f"--{name.replace('_', '-')} must be a positive number, got {kw[name]}")
    if kw.get("lr_decay", 0) > kw.get("steps", 0):
        raise RestoreError(f"--lr-decay must be at most --steps ({kw['steps']}), got {kw['lr_decay']}")
    if not math.isfinite(kw.get("beta", 0.0)) or not kw.get("ema", 0.0) < 1:
        raise RestoreError(f"--beta must be finite and --ema below 1, got {kw.get('beta')} and {kw.get('ema')}")
    overwrite = kw.pop("overwrite")
    if kw.get("resume") and overwrite:
        raise RestoreError("--resume continues the run in --out and --overwrite replaces it: give one")
    if "ema" in kw:
        kw["ema_decay"] = kw.pop("ema")
    if int(os.environ.get("RANK", "0")) == 0:  # the other processes of a torchrun job see rank 0's folder
        from ..training import claim_run_folder

        claim_run_folder(kw["out"], resume=kw.get("resume", False), overwrite=overwrite)
    summary = FAMILIES[family][2](kw)
    if summary is not None and "step" in summary and int(os.environ.get("RANK", "0")) == 0:
        state = ("finished" if summary["finished"] else
                 f"stopped by {summary['interrupted_by']} (continue with --resume)" if summary.get("interrupted_by")
                 else "stopped by the time budget (continue with --resume)")
        typer.echo(f"{kw['out']}: step {summary['step']}, {state}, {summary['minutes']:.1f} min")


def _train_command(family: str, doc: str, options: list) -> None:
    """Register ``restore train FAMILY`` with the options of the table, in its order."""
    P = inspect.Parameter
    params = [P(name, P.KEYWORD_ONLY, annotation=kind, default=default) for name, kind, default in options]

    def command(**kw):
        _train(family, kw)

    command.__name__, command.__doc__ = family, doc
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {q.name: q.annotation for q in params}
    train_app.command(name=family)(command)


for _name, (_doc, _options, _) in FAMILIES.items():
    _train_command(_name, _doc, _options)
