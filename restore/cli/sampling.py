"""``restore sample``, ``restore info`` and ``restore priors``."""

from __future__ import annotations

import math
import time
from typing import Literal, Optional

import typer
from typing_extensions import Annotated

from ..errors import RestoreError
from .app import app
from .common import Device, Json, PriorSpec, Seed, _device, _output_check, report


@app.command()
def sample(
    prior: PriorSpec = "ddpm",
    n: Annotated[int, typer.Option("-n", min=1, help="Number of samples.")] = 64,
    output: Annotated[str, typer.Option("-o", "--output", help="Grid of the samples (.png).")] = "samples.png",
    method: Annotated[Optional[Literal["ancestral", "ddim", "exact"]], typer.Option(help="ancestral (Algorithm 2 of Ho et al.), ddim (Song et al. 2021), or exact (gaussian, and gmm patches; their default).")] = None,
    steps: Annotated[Optional[int], typer.Option(min=1, help="Denoising steps (default: every timestep for ancestral, 50 for ddim).")] = None,
    variance: Annotated[Literal["beta_tilde", "beta"], typer.Option(help="Ancestral variance sigma_t^2: beta_tilde (default) or beta.")] = "beta_tilde",
    eta: Annotated[float, typer.Option(help="DDIM noise scale: 0 is deterministic, 1 is ancestral-like.")] = 0.0,
    nrow: Annotated[Optional[int], typer.Option(min=1, help="Images per grid row (default about sqrt(n)).")] = None,
    truncation: Annotated[Optional[float], typer.Option(help="vae, gan, flow: redraw latent entries with |z| > this (the truncation trick).")] = None,
    temperature: Annotated[Optional[float], typer.Option(help="flow: scale of the latent draws (Glow's temperature; default 1).")] = None,
    json: Json = False,
    device: Device = "auto",
    seed: Seed = 0,
):
    """Draw samples from a prior and write them as one grid image."""
    import torch

    from .. import io
    from ..priors import load_prior

    out = _output_check(output)
    if not (math.isfinite(eta) and eta >= 0):
        raise RestoreError(f"--eta must be a non-negative number, got {eta}")
    if truncation is not None and not (math.isfinite(truncation) and truncation > 0):
        raise RestoreError(f"--truncation must be a positive number, got {truncation}")
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise RestoreError(f"--temperature must be a non-negative number, got {temperature}")
    dev = _device(device)
    model = load_prior(prior, device=dev)
    if temperature is not None and model.family != "flow":
        raise RestoreError(f"--temperature is for flow priors, not {model.family}")
    if model.offers & {"decode", "conditionals"}:
        _sample_direct(model, n, out, prior, method, steps, truncation, temperature, nrow, json, dev, seed)
        return
    if truncation is not None:
        raise RestoreError(f"--truncation is for priors with a latent (vae, gan, flow), not {model.family}")
    exact = "exact_samples" in model.offers  # the Gaussian; the patch mixture (of single patches)
    method = method or ("exact" if exact else "ancestral")
    if method == "exact" and not exact:
        raise RestoreError(f"--method exact is for the gaussian and gmm priors; a {model.family} prior samples by "
                           "ancestral or ddim")
    if method == "exact":
        steps = 0
    elif steps is None:
        steps = model.num_timesteps if method == "ancestral" else min(50, model.num_timesteps)
    if method != "exact" and not 1 <= steps <= model.num_timesteps:
        raise RestoreError(f"--steps must be between 1 and {model.num_timesteps} for this prior, got {steps}")
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=f"sampling ({method})", unit="step", disable=None, leave=False)
    t0 = time.perf_counter()
    x = model.sample(n, steps=steps, method=method, variance=variance, eta=eta,
                     generator=torch.Generator(device=dev).manual_seed(seed), callback=lambda info: bar.update(1))
    seconds = time.perf_counter() - t0
    bar.close()
    io.write_grid(out, x.cpu(), nrow=nrow)
    result = {"output": str(out), "prior": prior, "model": model.model, "n": n, "method": method, "steps": steps,
              "variance": variance if method == "ancestral" else None, "eta": eta if method == "ddim" else None,
              "seed": seed, "seconds": round(seconds, 3), "nfe": steps, "image_shape": list(x.shape[1:])}
    report(result, json, f"wrote {out} ({n} samples of {model.model or prior}, {method}, {steps} steps, {seconds:.2f} s)")


def _sample_direct(model, n, out, prior, method, steps, truncation, temperature, nrow, json_out, dev, seed) -> None:
    """``restore sample`` for a prior that decodes a latent (one pass) or samples pixel by pixel (PixelCNN)."""
    import torch
    from tqdm.auto import tqdm

    from .. import io

    if method is not None or steps is not None:
        raise RestoreError(f"a {model.family} prior has its own sampler: --method and --steps are for diffusion priors")
    sequential = "decode" not in model.offers
    if sequential and truncation is not None:
        raise RestoreError("--truncation is for priors with a latent (vae, gan, flow), not pixelcnn")
    kwargs = {"truncation": truncation} if not sequential else {}
    if temperature is not None:
        kwargs["temperature"] = temperature
    bar = tqdm(total=model.image_shape[1], desc="sampling rows", unit="row", disable=None if sequential else True, leave=False)
    t0 = time.perf_counter()
    x = model.sample(n, generator=torch.Generator(device=dev).manual_seed(seed), callback=lambda info: bar.update(1),
                     **kwargs)
    seconds = time.perf_counter() - t0
    bar.close()
    io.write_grid(out, x.cpu(), nrow=nrow)
    result = {"output": str(out), "prior": prior, "model": model.model, "n": n,
              "method": "sequential" if sequential else "decode",
              "truncation": truncation, "temperature": temperature, "seed": seed, "seconds": round(seconds, 3),
              "nfe": x.shape[-2] * x.shape[-1] if sequential else 1, "image_shape": list(x.shape[1:])}
    extra = (f", truncation {truncation}" if truncation is not None else "") + \
        (f", temperature {temperature}" if temperature is not None else "")
    report(result, json_out, f"wrote {out} ({n} samples of {model.model or prior}{extra}, {seconds:.2f} s)")


@app.command()
def info(prior: PriorSpec = "ddpm", json: Json = False):
    """Describe a prior: family, image size, channels, training data, and what can use it."""
    from ..priors import load_prior
    from ..solvers import solvers_for

    model = load_prior(prior)
    result = {**model.info(), "solvers": solvers_for(model), "sampling": "restore sample --prior " + prior}
    def lines():
        for key, value in result.items():
            if key == "solvers" and not value:
                value = "none in this installation"
            elif value is None:
                value = "not recorded"
            elif isinstance(value, list):
                value = ", ".join(map(str, value)) if key != "image_size" else "x".join(map(str, value))
            typer.echo(f"{key + ':':17s}{value}")

    report(result, json, lines)


@app.command()
def priors():
    """List the prior families this installation can use, with their shipped defaults."""
    from ..priors import FAMILIES, SHIPPED, VARIANTS, WEIGHTS, shipped_path

    for name, text in FAMILIES.items():
        shipped = ""
        if name in SHIPPED:
            state = "" if shipped_path(name).is_dir() else ", missing from this installation"
            shipped = f" [default: {SHIPPED[name]}{state}]"
        elif name != "classical":
            shipped = f" [none shipped: restore train {name}]"
        typer.echo(f"{name:10s} {text}{shipped}")
        for variant, channels, size in VARIANTS.get(name, []):
            kind = f"{'gray' if channels == 1 else 'colour'} {f'{size}x{size}' if size else 'photographs, any size'}"
            state = "shipped" if (WEIGHTS / variant).is_dir() else "not shipped yet"
            typer.echo(f"{'':10s}   {variant}: {kind} ({state})")
    typer.echo("A family name picks its shipped prior by the input: the first listed whose channels and size fit; "
               "a colour photo with no colour prior gets the gray photo prior channel by channel.")
