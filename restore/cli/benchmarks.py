"""``restore bench`` and ``restore evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

from ..errors import RestoreError
from .app import app
from .common import Json, PriorSpec, Seed, report


def _bench_photos(data: str, tasks, priors: str, solvers: Optional[str], steps: str, out: str, force: bool) -> None:
    """restore bench on a photo test set: the natural-image benchmark's settings for that set (``tasks``:
    names or prefixes of settings, e.g. denoise or deblur/set12/sigma2.55)."""
    from .. import photo_bench
    from ..solvers import CLASSICAL, DIFFUSION

    names = [s.name for s in photo_bench.settings() if s.data == data
             and (tasks is None or any(s.name.startswith(t) for t in tasks))]
    if not names:
        raise RestoreError(f"no {data} setting matches --tasks {','.join(tasks)}; settings: "
                           + ", ".join(s.name for s in photo_bench.settings() if s.data == data))
    step_list = [int(v) for v in steps.split(",") if v.strip().isdigit()]
    learned = []
    for prior in (p for p in priors.split(",") if p and p not in ("gaussian", "vae", "gan")):
        for solver in (solvers.split(",") if solvers else ["tweedie"]):
            if solver not in DIFFUSION:
                raise RestoreError(f"on photos, --solvers takes diffusion solvers ({', '.join(DIFFUSION)}), got {solver!r}")
            for st in ([None] if solver == "tweedie" else step_list):
                learned.append((prior, solver, st))
    folder = Path(out)
    if not folder.resolve().parent.is_dir():
        raise RestoreError(f"cannot create '{folder}': '{folder.parent}' does not exist")
    cells = photo_bench.run(out=folder, setting_names=names, solvers=list(CLASSICAL), force=force,
                            learned=learned, log=lambda text: typer.echo(text, err=True))
    table = photo_bench.markdown([r for r in photo_bench.summary(cells) if r["setting"] in names])
    (folder / "results.md").write_text(table + "\n")
    typer.echo(table)
    typer.echo(f"wrote {folder}/results.md and {folder}/cells.jsonl")


@app.command()
def bench(
    data: Annotated[str, typer.Option(help="mnist, fashion-mnist or a folder of images (its first -n, sorted).")] = "mnist",
    tasks: Annotated[str, typer.Option(help="Comma-separated standard tasks.")] = "inpaint-box,inpaint-random,deblur,superres,denoise",
    priors: Annotated[str, typer.Option(help="Comma-separated --prior values (empty: classical only).")] = "ddpm,gaussian,vae,gan",
    solvers: Annotated[Optional[str], typer.Option(help="Comma-separated learned-prior solvers (default: every one that fits).")] = None,
    n: Annotated[int, typer.Option("-n", help="Images per cell.")] = 100,
    steps: Annotated[str, typer.Option(help="Comma-separated step counts of the diffusion solvers.")] = "20,50,100",
    samples: Annotated[int, typer.Option(help="Posterior samples per image for samplers.")] = 4,
    out: Annotated[str, typer.Option(help="Folder for results.json, results.md, report.html, grids and the cell cache.")] = "bench",
    paper_n: Annotated[int, typer.Option(help="Images for the papers' step counts (DPS 1000, RePaint 250); 0: none.")] = 0,
    quick: Annotated[bool, typer.Option("--quick", help="A smoke run of under a minute (30 s on 2 CPU cores): 4 images, the classical solvers, and DDNM and PiGDM at 10 steps with 2 samples on the shipped DDPM and Gaussian priors (--priors and --solvers still choose).")] = False,
    force: Annotated[bool, typer.Option("--force", help="Recompute cached cells.")] = False,
    data_root: Annotated[Optional[str], typer.Option(help="Where MNIST/Fashion-MNIST are (default $RESTORE_DATA).")] = None,
):
    """Compare every compatible prior and solver, and the classical baselines, on the same images.

    With --data bsd68, set12 or cbsd68 it runs the natural-image benchmark's settings on that test set
    (restore/photo_bench.py, the protocol of benchmarks/natural.py): the classical solvers, and
    each --priors value with each of --solvers at each --steps."""
    from ..bench import run_bench

    if data in ("bsd68", "set12", "cbsd68"):
        default_tasks = "inpaint-box,inpaint-random,deblur,superres,denoise"
        _bench_photos(data, None if tasks == default_tasks else tasks.split(","), priors, solvers, steps, out, force)
        return
    if quick:  # fast solvers only: the default list includes 500-step Langevin and latent optimisation
        n, steps, samples = 4, "10", 2
        priors = "ddpm,gaussian" if priors == "ddpm,gaussian,vae,gan" else priors
        solvers = solvers or "ddnm,pigdm"
    try:
        step_list = [int(v) for v in steps.split(",") if v]
    except ValueError:
        raise RestoreError(f"--steps must be comma-separated integers, got {steps!r}") from None
    if n < 1 or samples < 1 or not step_list or min(step_list) < 1:
        raise RestoreError("-n, --samples and every --steps value must be positive integers")
    result = run_bench(data=data, tasks=[t for t in tasks.split(",") if t], priors=[p for p in priors.split(",") if p],
                       solvers=[s for s in solvers.split(",") if s] if solvers else None, n=n, out=out,
                       steps=step_list, samples=samples, force=force, data_root=data_root,
                       paper_n=0 if quick else paper_n)
    for text in result["warnings"]:
        typer.echo(f"warning: {text}", err=True)
    typer.echo(result["table"])
    typer.echo(f"wrote {out}/results.json, results.md, report.html")


@app.command()
def evaluate(
    prior: PriorSpec = "ddpm",
    data: Annotated[str, typer.Option(help="Evaluation data: mnist or fashion-mnist (their test splits), or a folder "
                                           "(the validation split restore train makes with seed 0).")] = "mnist",
    samples: Annotated[int, typer.Option(min=2, help="Samples for the Frechet and kernel distances.")] = 2000,
    nll_images: Annotated[int, typer.Option(min=0, help="Test images for bits/dim (0: skip).")] = 1000,
    feature_steps: Annotated[int, typer.Option(min=1, help="Training steps of the feature autoencoder for data other than "
                                                    "MNIST (cached in $RESTORE_CACHE, default ~/.cache/restore).")] = 1000,
    data_root: Annotated[Optional[str], typer.Option(help="Where MNIST is (default $RESTORE_DATA).")] = None,
    json: Json = False,
    seed: Seed = 0,
):
    """Evaluate a prior: bits/dim on 8-bit test data, and FID/KID of its samples (MNIST classifier features on
    MNIST; features of an autoencoder trained on the data otherwise)."""
    from ..evaluate import evaluate_prior
    from ..priors import load_prior

    model = load_prior(prior)
    result = {"prior": prior, **evaluate_prior(model, data=data, samples=samples, nll_images=nll_images, seed=seed,
                                               data_root=data_root, feature_steps=feature_steps)}
    if "warning" in result:
        typer.echo(f"warning: {result['warning']}", err=True)

    def lines():
        if "bits_per_dim" in result:
            typer.echo(f"bits/dim:        {result['bits_per_dim']:.3f} +- {result['bits_per_dim_sem']:.3f} "
                       f"({result['nll_images']} test images)")
        typer.echo(f"FID:             {result['fid']:.2f} (train-vs-test floor {result['fid_floor']:.2f}; "
                   f"{samples} samples against {result['test_images']} test images)")
        typer.echo(f"KID:             {result['kid']:.4f} +- {result['kid_std']:.4f} (floor {result['kid_floor']:.4f})")
        typer.echo(f"features:        {result['features']}")
        if "confident_fraction" in result:
            typer.echo(f"confident >=0.9: {100 * result['confident_fraction']:.1f}%, largest class deviation "
                       f"{100 * result['max_class_deviation']:.1f} points")

    report(result, json, lines)
