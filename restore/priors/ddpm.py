"""DDPM prior: a diffusers UNet2DModel with its noise schedule, seen from the [0, 1] image convention.

Ho et al. (2020), "Denoising Diffusion Probabilistic Models". The forward process is
x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps in the model's own [-1, 1] space, where
alpha_bar_t = prod_{s <= t} (1 - beta_s). The diffusion variable x_t stays in that space (it is
not an image); everything that is an image (x0_hat, samples) is returned in [0, 1].

Sampling follows Algorithm 2 of Ho et al.: x_{t-1} = mu_tilde(x_t, x0_hat) + sigma_t z, with the
posterior mean mu_tilde of their equation (7) and sigma_t^2 = beta_tilde_t (the default,
``variance="beta_tilde"``) or beta_t. With fewer steps than the schedule has, step t -> t' uses
alpha_t = alpha_bar_t / alpha_bar_t' in place of 1 - beta_t, i.e. the same posterior
q(x_t' | x_t, x_0) on the sub-sequence; DDIM (Song, Meng & Ermon 2021) is the eta = 0 variant.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from ..errors import RestoreError
from .base import DiffusionPrior
from . import padis, tiles
from .sampling import reverse_diffusion

TILE, TILE_OVERLAP = 512, 64  # see DDPMPrior.tile


class DDPMPrior(DiffusionPrior):
    """A UNet2DModel predicting epsilon, x_0 ("sample") or v, with the schedule alpha_bar."""

    family = "ddpm"

    def __init__(self, unet, betas: torch.Tensor, *, prediction_type: str = "epsilon", clip_sample: bool = True):
        super().__init__()
        if prediction_type not in ("epsilon", "sample", "v_prediction"):
            raise RestoreError(f"unknown DDPM prediction type {prediction_type!r} (known: epsilon, sample, v_prediction)")
        self.unet = unet
        self.prediction_type = prediction_type
        # Clip x0_hat to the data range [-1, 1] while sampling, as diffusers' DDPMScheduler does by default.
        self.clip_sample = clip_sample
        betas = torch.as_tensor(betas, dtype=torch.float32)
        self.register_buffer("betas", betas)  # (T,)
        self.register_buffer("alpha_bar", torch.cumprod(1.0 - betas, dim=0))  # (T,)
        # A gray network used on colour images treats each channel as a gray image (see channelwise).
        self.channel_groups = 1
        self.autocast_dtype: torch.dtype | None = None  # see with_autocast
        # A prior of any size runs on images larger than this in overlapping windows (restore.priors.tiles),
        # so memory stays bounded; None: always on the whole image.
        self.tile: int | None = TILE
        self.tile_overlap: int = TILE_OVERLAP
        # PaDIS (restore.priors.padis): the network on a random partition into patches of this size, the
        # shifts drawn from ``patch_generator``; None: on the whole image. See with_patches.
        self.patches: int | None = None
        self.patch_generator: torch.Generator | None = None

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "DDPMPrior":
        """Load a diffusers DDPM folder, safetensors weights only.

        Two layouts exist: ``unet/`` and ``scheduler/`` subfolders (what ``DDPMPipeline.save_pretrained``
        writes, and our training runs), or the UNet's config.json and weights beside
        scheduler_config.json at the top (older hub models such as google/ddpm-cifar10-32).
        """
        from diffusers import DDPMScheduler, UNet2DModel

        path = Path(path)
        if (path / "unet" / "config.json").is_file() and (path / "scheduler" / "scheduler_config.json").is_file():
            unet_dir, sub = path / "unet", {"unet": "unet", "scheduler": "scheduler"}
        elif (path / "config.json").is_file() and (path / "scheduler_config.json").is_file():
            unet_dir, sub = path, {"unet": None, "scheduler": None}
        else:
            raise RestoreError(f"'{path}' is not a diffusers DDPM folder (it needs unet/config.json and "
                               "scheduler/scheduler_config.json, or config.json beside scheduler_config.json)")
        weights = sorted(p.name for p in unet_dir.glob("*.safetensors"))
        if not weights:
            raise RestoreError(f"'{unet_dir}' holds no .safetensors weights (pickled .bin checkpoints are refused)")
        # Only a half-precision file: load that variant (diffusers names it *.fp16.safetensors).
        variant = "fp16" if all(".fp16." in name for name in weights) else None
        from diffusers.utils import logging as diffusers_logging

        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # its "newly initialized" warning becomes our error below
        try:
            # low_cpu_mem_usage=False: the small models here need no `accelerate` (and no warning about it).
            unet = UNet2DModel.from_pretrained(path, subfolder=sub["unet"], use_safetensors=True, variant=variant,
                                               low_cpu_mem_usage=False)
            scheduler = DDPMScheduler.from_pretrained(path, subfolder=sub["scheduler"])
        except RuntimeError as exc:  # weights of other shapes than the config's layers
            first = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), str(exc))
            raise RestoreError(f"cannot load the DDPM in '{path}': its config.json does not match its weights "
                               f"({' '.join(first.split())[:200]})") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            reason = " ".join(str(exc).split())[:300]
            raise RestoreError(f"cannot load the DDPM in '{path}': {reason}") from None
        finally:
            diffusers_logging.set_verbosity(verbosity)
        _check_weight_names(unet, [unet_dir / name for name in weights if variant is None or ".fp16." in name])
        prior = cls.from_diffusers(unet.float(), scheduler)
        run = path / "run.json"  # our training runs describe their data and options here
        prior.run_info = json.loads(run.read_text()) if run.is_file() else None
        return prior

    @classmethod
    def from_diffusers(cls, unet, scheduler) -> "DDPMPrior":
        """Wrap a UNet2DModel and a DDPMScheduler (or any scheduler with betas and the same config keys)."""
        cfg = scheduler.config
        return cls(unet, scheduler.betas, prediction_type=cfg.get("prediction_type", "epsilon"),
                   clip_sample=cfg.get("clip_sample", True) and cfg.get("clip_sample_range", 1.0) == 1.0)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this prior models (for a prior of any size: the training patches)."""
        cfg = self.unet.config
        size = cfg.sample_size if isinstance(cfg.sample_size, (tuple, list)) else (cfg.sample_size, cfg.sample_size)
        return (cfg.in_channels * self.channel_groups, *size)

    @property
    def any_size(self) -> bool:
        """Whether the prior restores images of any size: a UNet trained on patches of photographs
        (``restore train ddpm --patch``; :func:`make_patch_unet`), which runs on the whole image."""
        return bool((self.run_info or {}).get("patch"))

    def with_autocast(self, dtype: torch.dtype) -> "DDPMPrior":
        """This network run under autocast to ``dtype`` (torch.bfloat16: about 2x faster on CPUs with
        AVX-512 BF16), its outputs returned in the input's dtype. A shallow copy; this prior is unchanged."""
        import copy

        twin = copy.copy(self)
        twin.autocast_dtype = dtype
        return twin

    def with_patches(self, size: int, seed: int = 0) -> "DDPMPrior":
        """This network used as PaDIS uses a patch prior (Hu et al. 2024; restore.priors.padis): at every call,
        on the non-overlapping ``size`` x ``size`` patches of a partition of the image shifted at random (the
        shifts drawn from a generator seeded by ``seed``, so a run repeats exactly), instead of on the whole
        image. A shallow copy; this prior is unchanged."""
        import copy

        if not self.any_size:
            raise RestoreError("patch partitions are for priors trained on patches of photographs (restore train "
                               "ddpm --patch); this prior models whole images of one size")
        if not isinstance(size, int) or size < 8:
            raise RestoreError(f"the patch size must be a whole number of pixels, at least 8; got {size!r}")
        twin = copy.copy(self)
        twin.patches, twin.patch_generator = size, torch.Generator().manual_seed(seed)
        return twin

    def channelwise(self, groups: int) -> "DDPMPrior":
        """This network for images of ``groups`` times its channels, each channel (group) on its own: a gray
        photo prior on colour photos, as a prior that treats R, G and B as independent gray images. A
        shallow copy that shares the network; this prior is unchanged."""
        import copy

        twin = copy.copy(self)
        twin.channel_groups = groups
        return twin

    def info(self) -> dict:
        """What ``restore info`` prints: family, image shape, schedule, size and training data."""
        run = self.run_info or {}
        total = _total_steps(run)
        return {
            "family": self.family, "source": self.source, "model": self.model, "image_size": list(self.image_shape[1:]),
            "channels": self.image_shape[0], "prediction_type": self.prediction_type,
            "timesteps": self.num_timesteps, "parameters": sum(p.numel() for p in self.unet.parameters()),
            "training_data": run.get("data"), "training_steps": total,
            **({"stretch": "yes: trained on each image's range mapped onto [0, 1]; restoring stretches too"}
               if run.get("stretch") else {}),
            **({"steps_last_run": run.get("steps_done")} if total != run.get("steps_done") else {}),
            "file_list_hash": run.get("file_list_hash"),
            **({"any_size": f"yes: trained on {run['patch']}x{run['patch']} patches, restores whole images"}
               if self.any_size else {}),
            "offers": ["x0_hat (Tweedie)", "score", "sample (ancestral, ddim)", "bits_per_dim"],
        }

    def model_output(self, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The network's raw output at timestep t (epsilon, x_0 or v, per ``prediction_type``)."""
        B, C, H, W = x_t.shape
        if self.channel_groups > 1:  # (B, g c, H, W) -> (B g, c, H, W): each group a separate image
            x_t = x_t.reshape(B * self.channel_groups, C // self.channel_groups, H, W)
        t = torch.as_tensor(t, device=x_t.device).expand(x_t.shape[0])
        if self.patches is not None:
            shift = torch.randint(0, self.patches, (2,), generator=self.patch_generator).tolist()
            out = padis.partitioned(self._network, x_t, t, self.patches, shift)
        elif self.any_size and self.tile is not None:
            out = tiles.tiled(lambda piece: self._network(piece, t), x_t, self.tile, self.tile_overlap)
        else:
            out = self._network(x_t, t)
        return out.reshape(B, C, H, W)

    def _network(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The UNet on x_t of any size: it halves the size once per block but the last, so the bottom
        and right edges are mirrored up to a multiple of that and the output is cropped back."""
        H, W = x_t.shape[-2:]
        m = 2 ** (len(getattr(self.unet.config, "block_out_channels", (0,))) - 1)
        ph, pw = -H % m, -W % m
        padded = padis.mirror_pad(x_t, (0, pw, 0, ph)) if ph or pw else x_t
        with torch.autocast(x_t.device.type, dtype=self.autocast_dtype or torch.bfloat16,
                            enabled=self.autocast_dtype is not None):
            out = self.unet(padded, t).sample[..., :H, :W]
        return out.to(x_t.dtype)

    def eps_and_x0(self, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(eps_hat, x0_hat) in model space [-1, 1], from any prediction type."""
        a = self.alpha_bar[t]
        out = self.model_output(x_t, t)
        if self.prediction_type == "epsilon":
            eps = out
            x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()  # Tweedie: E[x_0 | x_t]
        elif self.prediction_type == "sample":
            x0 = out
            eps = (x_t - a.sqrt() * x0) / (1 - a).sqrt()
        else:  # v = sqrt(a) eps - sqrt(1 - a) x_0 (Salimans & Ho 2022)
            x0 = a.sqrt() * x_t - (1 - a).sqrt() * out
            eps = a.sqrt() * out + (1 - a).sqrt() * x_t
        return eps, x0

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    def sample(self, n: int, *, steps: int | None = None, method: str = "ancestral", variance: str = "beta_tilde",
               eta: float = 0.0, generator: torch.Generator | None = None, callback=None) -> torch.Tensor:
        """n samples in [0, 1]: ancestral sampling (Algorithm 2 of Ho et al.) or DDIM (eta = 0 is deterministic)."""
        return reverse_diffusion(self, n, steps=steps, method=method, variance=variance, eta=eta,
                                 generator=generator, callback=callback)

    @torch.no_grad()
    def bits_per_dim(self, images: torch.Tensor, *, variance: str = "beta_tilde", batch_size: int = 100,
                     generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
        """The variational bound of Ho et al. (2020), eq. (5), in bits/dim per image, on 8-bit data.

        L = L_T + sum_{t>1} L_{t-1} + L_0 with every one of the T terms evaluated (x_t drawn once
        per term): L_T = KL(q(x_T | x_0) || N(0, I)); L_{t-1} = KL(q(x_{t-1} | x_t, x_0) ||
        p(x_{t-1} | x_t)) between Gaussians; L_0 = -log p(x_0 | x_1) with the discretised Gaussian
        decoder of their Section 3.3 (256 bins, the outer two open). The model's variance is
        beta_tilde_t (at t = 1, where beta_tilde is 0, that of t = 2, as Ho et al.'s code does) or
        beta_t. ``images`` (N, C, H, W): uint8, or floats in [0, 1] rounded to 8 bits.
        """
        from tqdm.auto import tqdm

        if variance not in ("beta_tilde", "beta"):
            raise RestoreError(f"unknown variance {variance!r} (known: beta_tilde, beta)")
        device = self.betas.device
        # The schedule in float64: 1 - alpha_bar_1 from float32 products is off by 1e-3 relative,
        # and the decoder variance beta_tilde_2 inherits that.
        betas = self.betas.double()
        a_bar = torch.cumprod(1 - betas, 0)
        a_prev = torch.cat([a_bar.new_ones(1), a_bar[:-1]])
        post_var = betas * (1 - a_prev) / (1 - a_bar)  # beta_tilde_t, (T,)
        model_var = torch.cat([post_var[1:2], post_var[1:]]) if variance == "beta_tilde" else torch.cat([post_var[1:2], betas[1:]])
        T = self.num_timesteps
        out = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size].to(device)
            levels = chunk.double() if chunk.dtype == torch.uint8 else (chunk.double() * 255).round().clamp(0, 255)
            x0 = levels / 127.5 - 1
            dims = x0[0].numel()
            # L_T: KL(N(sqrt(a_T) x0, 1 - a_T) || N(0, 1)), summed over dimensions.
            total = _normal_kl(a_bar[-1].sqrt() * x0, (1 - a_bar[-1]).log(), 0.0, 0.0).flatten(1).sum(1)
            for t in tqdm(range(T), desc="bits/dim", unit="t", disable=not progress or None, leave=False):
                noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(device).double()
                x_t = a_bar[t].sqrt() * x0 + (1 - a_bar[t]).sqrt() * noise
                _, x0_hat = self.eps_and_x0(x_t.to(self.unet.dtype), t)
                x0_hat = x0_hat.double().clamp(-1, 1) if self.clip_sample else x0_hat.double()
                # Posterior mean, eq. (7): coefficients of x_0 and x_t in mu_tilde.
                c0 = a_prev[t].sqrt() * betas[t] / (1 - a_bar[t])
                ct = (1 - betas[t]).sqrt() * (1 - a_prev[t]) / (1 - a_bar[t])
                mean_model = c0 * x0_hat + ct * x_t
                if t == 0:  # L_0: the discretised decoder
                    term = -_discretised_gaussian_log_likelihood(x0, mean_model, model_var[0].log())
                else:  # L_{t-1}
                    term = _normal_kl(c0 * x0 + ct * x_t, post_var[t].log(), mean_model, model_var[t].log())
                total += term.flatten(1).sum(1)
            out.append(total / (dims * math.log(2)))
        return torch.cat(out).float().cpu()


def _check_weight_names(unet, files) -> None:
    """Refuse weights that leave some of the network's parameters out (diffusers would fill them with
    random numbers and only warn) or hold tensors it has no place for."""
    from safetensors import safe_open

    stored: set[str] = set()
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            stored.update(f.keys())
    expected = set(unet.state_dict())
    missing, unexpected = sorted(expected - stored), sorted(stored - expected)
    if missing or unexpected:
        parts = [f"{len(missing)} of the network's tensors are missing (e.g. {missing[0]})" if missing else "",
                 f"{len(unexpected)} stored tensors fit no layer (e.g. {unexpected[0]})" if unexpected else ""]
        raise RestoreError(f"the weights in '{files[0].parent}' do not fit its config.json: "
                           + "; ".join(p for p in parts if p))


def _normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) per element, in nats."""
    logvar1, logvar2 = torch.as_tensor(logvar1), torch.as_tensor(logvar2)
    return 0.5 * (logvar2 - logvar1 - 1 + (logvar1 - logvar2).exp() + (mean1 - mean2).square() * (-logvar2).exp())


def _discretised_gaussian_log_likelihood(x, mean, logvar):
    """log P(x) per element for x on the 256 levels k / 127.5 - 1: the mass of N(mean, e^logvar) on
    [x - 1/255, x + 1/255], with the bins at -1 and 1 extended to -inf and +inf (Ho et al. 2020, eq. 13)."""
    inv_std = (-0.5 * torch.as_tensor(logvar)).exp()
    upper = inv_std * (x - mean + 1 / 255)
    lower = inv_std * (x - mean - 1 / 255)
    log_cdf_upper = torch.special.log_ndtr(upper)  # log P(X <= upper edge)
    log_sf_lower = torch.special.log_ndtr(-lower)  # log P(X >= lower edge)
    # Difference of upper tails where the bin lies above the mean: no cancellation of two values near 1.
    mass = torch.where(lower > 0, torch.special.ndtr(-lower) - torch.special.ndtr(-upper),
                       torch.special.ndtr(upper) - torch.special.ndtr(lower))
    mid = mass.clamp_min(1e-300).log()
    return torch.where(x < -0.999, log_cdf_upper, torch.where(x > 0.999, log_sf_lower, mid))


def make_unet(size: int, channels: int, width: int = 32, layers_per_block: int = 1):
    """A diffusers UNet2DModel for size x size images: widths (w, 2w, 2w), attention at the lowest resolution.

    Two downsamplings, so ``size`` must be divisible by 4 (28 -> 14 -> 7 on MNIST).
    """
    from diffusers import UNet2DModel

    if size % 4:
        raise RestoreError(f"the DDPM UNet downsamples twice, so the image size must be divisible by 4, got {size}")
    return UNet2DModel(
        sample_size=size, in_channels=channels, out_channels=channels, layers_per_block=layers_per_block,
        block_out_channels=(width, 2 * width, 2 * width),
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=min(8, width),
    )


def make_patch_unet(patch: int, channels: int, width: int = 32, layers_per_block: int = 1):
    """A UNet2DModel for photographs, trained on ``patch`` x ``patch`` crops and run on
    whole images of any size (padded to a multiple of 8): widths (w, 2w, 3w, 4w), three downsamplings,
    convolutions throughout but for one self-attention layer in the middle block, at 1/8 of the resolution
    (diffusers' default). Trained on patches it attends over 8x8 positions and on a whole photo over all of
    them; restricted to each position's 9x9 neighbourhood it denoises held-out photos as well (within
    0.025 dB; benchmarks/ddpm_photo_attention.py), so it generalises to images larger than its patches."""
    from diffusers import UNet2DModel

    if patch % 8:
        raise RestoreError(f"the photo UNet downsamples three times, so --patch must be divisible by 8, got {patch}")
    return UNet2DModel(
        sample_size=patch, in_channels=channels, out_channels=channels, layers_per_block=layers_per_block,
        block_out_channels=(width, 2 * width, 3 * width, 4 * width),
        down_block_types=("DownBlock2D",) * 4, up_block_types=("UpBlock2D",) * 4,
        add_attention=True,  # the middle block's one attention layer, as in every shipped photo prior
        norm_num_groups=min(8, width),
    )


def make_scheduler(schedule: str = "linear", timesteps: int = 1000):
    """diffusers' DDPMScheduler: Ho et al.'s linear betas (1e-4 to 0.02) or the cosine schedule of
    Nichol & Dhariwal (2021) ("squaredcos_cap_v2"), epsilon prediction, beta_tilde variance."""
    from diffusers import DDPMScheduler

    names = {"linear": "linear", "cosine": "squaredcos_cap_v2"}
    if schedule not in names:
        raise RestoreError(f"unknown beta schedule {schedule!r} (known: linear, cosine)")
    return DDPMScheduler(num_train_timesteps=timesteps, beta_schedule=names[schedule], prediction_type="epsilon",
                         variance_type="fixed_small", clip_sample=True)


def focus_timesteps(alpha_bar: torch.Tensor, focus_sigma: float) -> int:
    """How many of the first timesteps have a noise level sqrt(1 - a_t) / sqrt(a_t), on the [0, 1] image
    scale (half the model's [-1, 1] scale), of at most ``focus_sigma``."""
    level = ((1 - alpha_bar) / alpha_bar).sqrt() / 2
    count = int((level <= focus_sigma).sum())
    if count == 0:
        raise RestoreError(f"--focus-sigma {focus_sigma} is below the schedule's smallest noise level "
                           f"{float(level[0]):.4g}")
    return count


def ddpm_loss(alpha_bar: torch.Tensor, focus_sigma: float | None = None, focus_share: float = 0.75):
    """Algorithm 1 of Ho et al. (2020): || eps - eps_theta(sqrt(a_t) x_0 + sqrt(1 - a_t) eps, t) ||^2,
    t uniform on 1..T.

    ``focus_sigma`` changes the training distribution of the noise level, as Karras et al. (2022,
    "Elucidating the Design Space of Diffusion-Based Generative Models", Section 5) do with their
    log-normal p_train: a share ``focus_share`` of every batch draws t uniformly among the timesteps of
    noise level at most ``focus_sigma`` (on the [0, 1] image scale), the rest uniformly on 1..T. Restoring
    with DPIR or Tweedie's one-step denoiser only ever evaluates the network at such levels (sigma <= 0.3:
    the first 17% of the linear schedule's timesteps), so a fine-tune spends most of its compute there
    while the rest of the batch keeps the whole reverse chain trained for the samplers. Validation
    (``step`` None) always draws t uniformly, so its curve stays comparable.
    """
    from ..runtime import to_device
    from ..training import randn_on  # eps drawn on the model's device

    focus = None if focus_sigma is None else focus_timesteps(alpha_bar, focus_sigma)

    def loss(net, x: torch.Tensor, generator: torch.Generator, step: int | None = None) -> torch.Tensor:
        x0 = 2 * x - 1  # [0, 1] -> the model's [-1, 1]
        t = torch.randint(len(alpha_bar), (x0.shape[0],), generator=generator)
        if focus is not None and step is not None:
            low = torch.randint(focus, (x0.shape[0],), generator=generator)
            t = torch.where(torch.rand(x0.shape[0], generator=generator) < focus_share, low, t)
        eps = randn_on(x0.shape, generator, x0.device)
        a = to_device(alpha_bar[t], x0.device).view(-1, 1, 1, 1)
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * eps
        return (net(x_t, to_device(t, x0.device)).sample.float() - eps).square().mean()

    return loss


def _total_steps(run: dict):
    """Training steps of a run and of the runs it continued (--init): run.json's total_steps, or its
    steps_done plus init_steps."""
    if "total_steps" in run:
        return run["total_steps"]
    done = run.get("steps_done", run.get("steps"))
    return done + run["init_steps"] if isinstance(done, int) and isinstance(run.get("init_steps"), int) else done


def _split_seed(out, resume: bool, init_info: dict | None, seed: int) -> int:
    """The seed of the train/validation split of the images: a resumed run's own (its run.json's
    ``split_seed``, or its ``seed`` for runs that had one seed for both), else the ``--init`` model's, else
    ``seed``. A continuation thus holds out what the model it continues held out: it never trains on the
    images that model was validated on, and the curve goes on measuring the same held-out images."""
    from ..data import run_split_seed

    run = Path(out) / "run.json"
    if resume and run.exists():
        try:
            before = run_split_seed(json.loads(run.read_text()))
        except (ValueError, AttributeError):  # not JSON, or not an object
            before = None
        if before is None:
            raise RestoreError(f"--resume: '{run}' is damaged (no seed of its split)")
        return before
    inherited = run_split_seed(init_info) if init_info else None
    return seed if inherited is None else inherited


def _init_unet(spec: str, image_shape, betas: torch.Tensor, prior=None):
    """The UNet of the DDPM named by ``spec`` (``prior``, where already loaded), checked against the data's
    image shape and the schedule."""
    from . import load_prior

    prior = load_prior(spec) if prior is None else prior
    if prior.family != "ddpm":
        raise RestoreError(f"--init {spec!r} is a {prior.family} prior, not a ddpm")
    widen = prior.any_size and prior.image_shape[0] == 1 and image_shape[0] == 3
    # A photo prior trained on patches takes any patch size, and a gray one is widened to colour.
    fits = prior.any_size and (prior.image_shape[0] == image_shape[0] or widen)
    if not fits and tuple(prior.image_shape) != tuple(image_shape):
        raise RestoreError(f"--init {spec!r} models {'x'.join(map(str, prior.image_shape))} images, "
                           f"but the data is {'x'.join(map(str, image_shape))}")
    if prior.betas.shape != betas.shape or not torch.allclose(prior.betas, betas.float()):
        raise RestoreError(f"--init {spec!r} has another noise schedule: pass its --schedule and its number of timesteps")
    if prior.prediction_type != "epsilon":
        raise RestoreError(f"--init {spec!r} predicts {prior.prediction_type}; training here predicts epsilon")
    unet = _gray_to_colour(prior.unet) if widen else prior.unet
    return unet.train().requires_grad_(True), _total_steps(prior.run_info or {})


def _gray_to_colour(gray):
    """A colour UNet that starts as the gray one run on the channel mean: its first convolution reads each
    channel with a third of the gray weights, its last writes the gray prediction to all three channels.

    A warm start (transfer learning) for a colour photo prior: what the gray network has learned about
    edges and textures carries over, and training then learns the colour statistics.
    """
    from diffusers import UNet2DModel

    colour = UNet2DModel.from_config({**gray.config, "in_channels": 3, "out_channels": 3})
    state = dict(gray.state_dict())
    state["conv_in.weight"] = state["conv_in.weight"].repeat(1, 3, 1, 1) / 3
    state["conv_out.weight"] = state["conv_out.weight"].repeat(3, 1, 1, 1)
    state["conv_out.bias"] = state["conv_out.bias"].repeat(3)
    colour.load_state_dict({k: v.float() for k, v in state.items()})
    return colour


def train_ddpm(*, data: str, out, size: int | None = None, channels: int | None = None, width: int = 32,
               layers_per_block: int = 1, schedule: str = "linear", timesteps: int = 1000, steps: int = 10000,
               batch_size: int = 128, lr: float = 2e-4, lr_decay: int = 0, ema_decay: float = 0.999, seed: int = 0,
               max_minutes: float | None = None, checkpoint_every: int = 500, sample_every: int = 1000,
               val_every: int = 500, resume: bool = False, device: str = "auto", precision: str = "auto",
               flip: bool = False, init: str | None = None, patch: int | None = None, data_root=None,
               focus_sigma: float | None = None, focus_share: float = 0.75, stretch: bool = False) -> dict:
    """Train a DDPM with :func:`restore.training.train`; ``out`` becomes a diffusers DDPM folder.

    ``patch`` trains on random ``patch`` x ``patch`` crops of whole photographs (a folder or a named
    set: train400, bsds400), flipped and turned at random, with
    :func:`make_patch_unet`, which runs on images of any size afterwards.

    ``init`` (a --prior value: family name, model folder or hub id) starts from that model's weights
    (and architecture) instead of random ones: to continue training a shipped or downloaded DDPM.

    ``focus_sigma`` and ``focus_share``: see :func:`ddpm_loss` (a share of each batch at low noise levels).

    ``stretch`` (with ``patch``) trains on each image with its range of values mapped onto [0, 1], for data
    such as unscaled 12-bit microscopy; run.json records it, and restoring with the prior then stretches
    each measurement the same way.
    """

    from .. import data as datasets
    from .. import training

    if stretch and patch is None:
        raise RestoreError("--stretch is for training on photographs of any size (--patch)")
    if resume and (Path(out) / "run.json").exists():  # a resumed run keeps the stretch it was started with
        stretched_before = bool(json.loads((Path(out) / "run.json").read_text()).get("stretch"))
        if stretch and not stretched_before:
            raise RestoreError(f"--stretch: the run in '{out}' was started without it; resume it without --stretch")
        stretch = stretched_before
    d = training.setup_distributed(device)
    init_prior = None
    if init is not None:
        from . import load_prior

        init_prior = load_prior(init)
    split_seed = _split_seed(out, resume, init_prior.run_info if init_prior is not None else None, seed)
    if patch is not None:
        if size is not None:
            raise RestoreError("--patch trains on crops of the images at their own size; drop --size")
        ds = datasets.patch_training_data(data, patch=patch, channels=channels, seed=split_seed, root=data_root,
                                          stretch=stretch)
    else:
        ds = datasets.training_data(data, size=size, channels=channels, seed=split_seed, root=data_root)
    _, c, h, w = ds["train"].shape
    torch.manual_seed(seed)  # the same initial weights on every rank
    scheduler = make_scheduler(schedule, timesteps)
    alpha_bar = torch.cumprod(1 - scheduler.betas, 0)
    focus = {}
    if focus_sigma is not None:
        if not (math.isfinite(focus_sigma) and focus_sigma > 0) or not 0 < focus_share <= 1:
            raise RestoreError(f"--focus-sigma must be positive and --focus-share in (0, 1], got {focus_sigma} and "
                               f"{focus_share}")
        focus = {"focus_sigma": focus_sigma, "focus_share": focus_share,
                 "focus_timesteps": focus_timesteps(alpha_bar, focus_sigma)}
    if init is None:
        make = make_patch_unet if patch is not None else make_unet
        unet = make(h, c, width, layers_per_block)
    else:
        unet, init_steps = _init_unet(init, (c, h, w), scheduler.betas, init_prior)
        width, layers_per_block = unet.config.block_out_channels[0], unet.config.layers_per_block
    config = {
        "family": "ddpm", "data": ds.get("name", data), "file_list_hash": ds.get("file_list_hash"), "image_size": h,
        "split_seed": split_seed,
        "channels": c, "width": width, "layers_per_block": layers_per_block, "schedule": schedule, "timesteps": timesteps,
        "parameters": sum(p.numel() for p in unet.parameters()), "init": init,
        **({"init_steps": init_steps} if init is not None and isinstance(init_steps, int) else {}),
        **({"patch": patch, "train_images": len(ds["train"])} if patch is not None else {}),
        **focus,
        **({"stretch": True} if stretch else {}),
    }

    def sample_fn(ema, generator):
        prior = DDPMPrior(ema, scheduler.betas).to(d.device)
        return prior.sample(16, steps=min(50, timesteps), method="ddim", generator=generator)

    def export_fn(ema, folder: Path):
        from diffusers import DDPMPipeline

        DDPMPipeline(unet=ema, scheduler=scheduler).save_pretrained(folder, safe_serialization=True)

    return training.train(
        model=unet, loss_fn=ddpm_loss(alpha_bar, focus_sigma, focus_share), data=ds, config=config,
        options=training.TrainOptions.pick(locals()),  # the arguments of those names
        sample_fn=sample_fn, export_fn=export_fn, dist_info=d,
    )
