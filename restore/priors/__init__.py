"""Generative priors, and the one rule that turns a ``--prior`` value into a loaded model.

:func:`load_prior` resolves, in this order:

1. a family name (``ddpm``) -> that family's shipped default, from ``restore/weights/``;
2. an existing path -> a model folder: ours (a training run's exported model) or any diffusers DDPM
   folder. Pickled checkpoints (.bin, .pt, .pth, .pkl, .ckpt) are refused: unpickling runs code;
3. otherwise a Hugging Face hub id (``google/ddpm-cifar10-32``), downloaded with its safetensors
   weights only.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import RestoreError

#: Prior families this installation has, with a one-line description each.
FAMILIES = {
    "classical": "no learned prior: biharmonic, Wiener, Richardson-Lucy, TV, bicubic, pseudo-inverse, Lasso",
    "ddpm": "denoising diffusion (Ho et al. 2020) on a diffusers UNet2DModel: Tweedie x0_hat, score, sampling, bits/dim",
    "gaussian": "Gaussian N(mu, W W^T + diag(d)) fitted by PCA: exact Tweedie x0_hat and closed-form posterior",
    "vae": "variational autoencoder (Kingma & Welling 2014): decoder G(z), encoder, ELBO and IWAE bits/dim",
    "gan": "DCGAN generator (Radford et al. 2016) trained non-saturating or WGAN-GP: G(z), truncated sampling",
    "flow": "multi-scale Glow (Kingma & Dhariwal 2018): exact log-density and score, G(eps), temperature",
    "pixelcnn": "gated PixelCNN (van den Oord et al. 2016): exact 8-bit likelihood, conditional sampling",
    "gmm": "Gaussian mixture of image patches (Zoran & Weiss 2011, EPLL): exact patch density, any image size",
}

#: Families whose model folders this installation loads.
LOADERS = ("ddpm", "gaussian", "vae", "gan", "flow", "pixelcnn", "gmm")

#: Family name -> the folder of its shipped default under restore/weights/.
SHIPPED = {"ddpm": "ddpm-mnist", "gaussian": "gaussian-mnist", "vae": "vae-mnist", "gan": "gan-mnist",
           "flow": "flow-mnist", "pixelcnn": "pixelcnn-mnist", "gmm": "gmm-photo-gray"}

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"

#: Shipped priors of a family by the images they model, in the order the rule tries them:
#: (folder under restore/weights/, channels, size or None for any size).
VARIANTS = {"ddpm": [("ddpm-mnist", 1, 28), ("ddpm-photo-gray", 1, None), ("ddpm-photo-rgb", 3, None)],
            "gmm": [("gmm-photo-gray", 1, None), ("gmm-photo-rgb", 3, None)]}


def shipped_for(family: str, image_shape=None) -> tuple[str, int]:
    """The shipped folder that the family name means for images of ``image_shape`` (C, H, W), and the
    channel groups to run it with (1, or 3 for a gray prior on colour images).

    The rule: the first variant of :data:`VARIANTS` whose channels match and whose size is the
    image's (28x28 digits) or any size (photographs); a colour photo with no colour prior shipped
    gets the gray photo prior channel by channel; anything else the family's default, whose own
    size check then says what fits.
    """
    variants = [v for v in VARIANTS.get(family, []) if (WEIGHTS / v[0]).is_dir()]
    if image_shape is None or not variants:
        return SHIPPED[family], 1
    C, H, W = image_shape
    for name, channels, size in variants:
        if channels == C and (size is None or (size == H and size == W)):
            return name, 1
    gray_any = [name for name, channels, size in variants if channels == 1 and size is None]
    if C == 3 and gray_any:
        return gray_any[0], 3
    return SHIPPED[family], 1

# File suffixes of pickled checkpoints; loading one could run arbitrary code.
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

# Names that can only be paths, never hub ids.
_FILE_SUFFIXES = (*_PICKLE_SUFFIXES, ".json", ".safetensors")

# A hub id: "name" or "owner/name", letters, digits, '-', '_', '.'.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def shipped_path(family: str) -> Path:
    """The folder of a family's shipped default prior."""
    return WEIGHTS / SHIPPED[family]


def folder_family(path: Path) -> str | None:
    """The prior family a model folder holds: "ddpm" for a diffusers DDPM layout, else what its
    run.json says (a restore training run), else None."""
    if (path / "unet" / "config.json").is_file() or (path / "scheduler_config.json").is_file():
        return "ddpm"
    run = path / "run.json"
    if run.is_file():
        try:
            return json.loads(run.read_text()).get("family")
        except (json.JSONDecodeError, AttributeError):
            raise RestoreError(f"'{run}' is not a valid run description (JSON object)") from None
    return None


def fit_channels(prior, channels: int):
    """The prior for images of ``channels`` channels: a gray prior of photographs (any size) on colour
    images runs on R, G and B as three gray images (:meth:`DDPMPrior.channelwise`); any other prior as it is."""
    if channels == 3 and getattr(prior, "any_size", False) and prior.image_shape[0] == 1:
        return prior.channelwise(3)
    return prior


def load_prior(spec: str, *, device=None, image_shape=None):
    """The prior named by ``spec`` (family name, shipped name such as ddpm-photo-gray, model folder or hub
    id), in eval mode; a family name picks the shipped prior for images of ``image_shape`` (C, H, W),
    see :func:`shipped_for`, and every prior is fitted to their channels (:func:`fit_channels`)."""
    if spec == "classical":
        raise RestoreError("'classical' is not a model: it means restoring without a learned prior")
    if not isinstance(spec, str) or not spec.strip():
        raise RestoreError(f"--prior {spec!r}: give a family name (ddpm, gaussian, ...), a model folder or a hub id "
                           "(restore priors lists them)")
    if spec in FAMILIES and spec not in SHIPPED:
        raise RestoreError(f"no {spec} prior ships with this installation yet: train one (restore train {spec} --data mnist "
                           f"--out runs/{spec}) and pass its folder as --prior")
    shipped_names = {name for variants in VARIANTS.values() for name, _, _ in variants}
    if spec in SHIPPED:
        name, _ = shipped_for(spec, image_shape)  # its channel groups are applied below, as for any prior
        path = WEIGHTS / name
        if not path.is_dir():
            raise RestoreError(f"the shipped {spec} prior is missing from this installation ('{path}'): reinstall restore")
        prior = _load_folder(path)
    elif spec in shipped_names:
        if not (WEIGHTS / spec).is_dir():
            raise RestoreError(f"the {spec} prior does not ship with this installation yet; `restore priors` lists "
                               "what does")
        prior = _load_folder(WEIGHTS / spec)
    elif Path(spec).expanduser().exists():
        prior = _load_path(Path(spec).expanduser())
    elif spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or spec.lower().endswith(_FILE_SUFFIXES):
        raise RestoreError(f"prior '{spec}' does not exist (no such file or folder)")
    elif _HUB_ID.match(spec):
        prior = _load_hub(spec)
    else:
        raise RestoreError(f"unknown prior {spec!r}: not a family ({', '.join(FAMILIES)}), an existing model folder, "
                           "or a hub id (owner/name)")
    prior.source = spec
    prior.model = name if spec in SHIPPED else spec
    if image_shape is not None:
        prior = fit_channels(prior, image_shape[0])
    return prior.eval().to(device) if device is not None else prior.eval()


def _load_path(path: Path):
    if path.is_file():
        if path.suffix.lower() in _PICKLE_SUFFIXES:
            raise RestoreError(f"'{path}' is a pickled checkpoint, which restore never loads (unpickling can run code); "
                               "give a model folder with safetensors weights")
        raise RestoreError(f"'{path}' is a file: --prior takes a family name, a model folder or a hub id")
    return _load_folder(path)


def _load_folder(path: Path):
    try:
        prior = _construct(path)
    except RestoreError:
        raise
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError) as exc:
        # A hand-edited run.json (latent_dim: -5, a string width) or weights another network wrote.
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise RestoreError(f"cannot build the model in '{path}' from its run.json and weights ({reason}): "
                           "the folder's settings and weights do not belong together") from None
    import torch

    broken = [name for name, t in prior.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:  # a diverged training run: every restoration would come out NaN
        raise RestoreError(f"the weights in '{path}' hold NaN or infinite values ({len(broken)} tensors, e.g. "
                           f"{broken[0]}): the model cannot be used")
    prior.folder = path  # where run.json and train_digests.txt are, for the training-overlap check
    return prior


def _construct(path: Path):
    family = folder_family(path)
    if family == "ddpm":
        if (path / "checkpoint").is_dir() and not (path / "unet").is_dir():
            raise RestoreError(f"'{path}' is a ddpm training run with no exported model yet; it exports when training "
                               "finishes or stops at its --max-minutes budget (continue it with --resume)")
        from .ddpm import DDPMPrior

        return DDPMPrior.from_pretrained(path)
    if family == "gaussian":
        from .gaussian import GaussianPrior

        return GaussianPrior.from_pretrained(path)
    if family == "vae":
        from .vae import VAEPrior

        return VAEPrior.from_pretrained(path)
    if family == "gan":
        from .gan import GANPrior

        return GANPrior.from_pretrained(path)
    if family == "flow":
        from .flow import FlowPrior

        return FlowPrior.from_pretrained(path)
    if family == "pixelcnn":
        from .pixelcnn import PixelCNNPrior

        return PixelCNNPrior.from_pretrained(path)
    if family == "gmm":
        from .gmm import GMMPatchPrior

        return GMMPatchPrior.from_pretrained(path)
    if family is None:
        pickles = sorted(p.name for p in path.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES) if path.is_dir() else []
        if pickles:
            raise RestoreError(f"'{path}' holds pickled checkpoints ({', '.join(pickles[:3])}), which restore never "
                               "loads (unpickling can run code): give a model folder with safetensors weights")
        raise RestoreError(f"'{path}' is not a model folder: it has neither a diffusers DDPM layout "
                           "(unet/config.json, scheduler/) nor a restore run.json")
    raise RestoreError(f"'{path}' holds a model of unknown family {family!r} (known: {', '.join(LOADERS)})")


def _load_hub(repo_id: str):
    """Download a hub DDPM's JSON configs and safetensors weights (never pickles), then load the folder."""
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"])
    except Exception as exc:  # offline, unknown repo, gated repo, ...: many exception types
        kind = type(exc).__name__
        if kind in ("LocalEntryNotFoundError", "ConnectError", "ConnectionError", "OfflineModeIsEnabled"):
            reason = "the hub cannot be reached and the model is not in the local cache"
        elif kind in ("RepositoryNotFoundError", "GatedRepoError"):
            reason = "no such public repository (or it needs a login)"
        else:
            # The first sentence of the message only: hub errors run on over several lines.
            first = re.split(r"(?<=[.!?])\s", " ".join(str(exc).split()), maxsplit=1)[0]
            reason = f"{kind}: {first[:160]}"
        raise RestoreError(f"cannot fetch prior {repo_id!r} from the Hugging Face hub ({reason}); check the id and "
                           "the connection, or give a local model folder") from None
    return _load_folder(Path(folder))
