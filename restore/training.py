"""Training machinery shared by every prior family.

A family supplies a model, a loss ``loss_fn(model, x, generator, step)`` on a batch x of images
in [0, 1] (a scalar, or a dict of scalars whose "loss" is minimised and whose other entries are
logged; ``step`` is None for validation), a sampler for progress grids, and an export function;
adversarial families give several :class:`Phase` es instead of one loss (a discriminator step,
then a generator step, each with its own Adam). :func:`train` does the rest once for all of
them: Adam, an EMA copy of the weights, a progress bar (loss, images/s), a JSONL log of training and validation loss, sample grids at intervals, atomic checkpoints
(safetensors + JSON, no pickle), ``resume`` after a kill, a wall-clock budget, and
DistributedDataParallel under ``torchrun`` (gloo on CPU, nccl on GPU; only rank 0 writes).

Batches are drawn with replacement from a generator seeded by (seed, step, rank), so a resumed
run continues with exactly the batches and noise the uninterrupted run would have used.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import torch

from . import io
from .data import write_training_digests
from .errors import RestoreError
from .runtime import to_device

CHECKPOINT_FORMAT = "restore.checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class Phase:
    """One optimiser of a training step: Adam on ``model.<module>`` (the whole model if ""),
    minimising ``loss_fn``, ``repeats`` times per step (a fresh batch each time)."""

    name: str
    loss_fn: Callable
    module: str = ""
    repeats: int = 1
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class TrainOptions:
    """The options every trained network shares: the run folder, the optimiser, the budget and the
    machine. Each family's ``train_*`` function takes them as keyword arguments with its own defaults
    (as ``restore train FAMILY`` does), and hands them to :func:`train` as one object."""

    out: str | Path
    steps: int = 10000
    batch_size: int = 128
    lr: float = 2e-4
    lr_decay: int = 0
    ema_decay: float = 0.999
    seed: int = 0
    max_minutes: float | None = None
    checkpoint_every: int = 500
    val_every: int = 500
    sample_every: int = 1000
    resume: bool = False
    device: str = "auto"
    precision: str = "auto"
    flip: bool = False

    @classmethod
    def pick(cls, arguments: dict) -> "TrainOptions":
        """The options among ``arguments`` (a train_* function's ``locals()`` on entry); others are left out."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in arguments.items() if k in names})


@dataclass
class Dist:
    """Where this process stands in a (possibly single-process) distributed run."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Dist:
    """Join the process group torchrun describes in the environment, or run alone."""
    import torch.distributed as dist

    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise RestoreError("--device cuda was asked for, but no CUDA GPU is available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return Dist(rank, world, torch.device("cuda", local))
    return Dist(rank, world, torch.device("cpu"))


def save_checkpoint(folder: Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write ``step-N.safetensors`` atomically, then point ``checkpoint.json`` at it, then prune.

    A kill at any moment leaves checkpoint.json naming a complete tensor file: the old one or the new.
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    name = f"step-{meta['step']}.safetensors"
    with io.atomic_write(folder / name) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    io.write_json(folder / "checkpoint.json", {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "tensors": name, **meta})
    for old in folder.glob("step-*.safetensors"):
        if old.name != name:
            old.unlink()


#: What a training run writes into its folder: --overwrite removes these, and nothing else.
RUN_FILES = ("run.json", "log.jsonl", "train_digests.txt", "model_index.json", "checkpoint", "samples", "unet",
             "scheduler", "config.json", "scheduler_config.json", "model.safetensors", "vae.safetensors",
             "generator.safetensors", "flow.safetensors", "pixelcnn.safetensors", "gaussian.safetensors",
             "gmm.safetensors")


def claim_run_folder(out, *, resume: bool, overwrite: bool) -> None:
    """Check that a training run may write into the folder ``out`` before anything is written.

    A missing or empty folder is free. ``resume`` needs a checkpoint there (train() checks its family). Any
    other non-empty folder (a model, a run killed before its first checkpoint, someone's files) is refused,
    so that no run overwrites a model or mixes its log with an old one, unless ``overwrite``: then the
    files a run writes (RUN_FILES) are removed first; other files are left alone and still refuse.
    """
    import shutil

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RestoreError(f"'{out}' exists and is not a folder: choose another --out")
    if not out.is_dir() or resume:
        return
    held = sorted(p.name for p in out.iterdir())
    if not held:
        return
    if not overwrite:
        what = ("a training checkpoint (pass --resume to continue it)" if "checkpoint" in held
                else "a model" if any(name.endswith(".safetensors") or name in ("unet", "model_index.json")
                                      for name in held) else "files")
        shown = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise RestoreError(f"'{out}' is not empty: it holds {what} ({shown}); choose another --out, or pass "
                           "--overwrite to replace the run's files")
    others = [name for name in held if name not in RUN_FILES]
    if others:
        raise RestoreError(f"--overwrite replaces a training run's files only, and '{out}' also holds "
                           f"{', '.join(others[:4])}: choose another --out")
    for name in held:
        path = out / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()


def load_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict] | None:
    """The latest checkpoint in ``folder`` as (tensors, meta), or None if there is none."""
    from safetensors.torch import load_file

    index = folder / "checkpoint.json"
    if not index.exists():
        return None
    try:
        meta = json.loads(index.read_text())
    except json.JSONDecodeError:
        raise RestoreError(f"checkpoint index '{index}' is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise RestoreError(f"'{index}' is not a {CHECKPOINT_FORMAT} version {CHECKPOINT_VERSION} file")
    step, name = meta.get("step"), meta.get("tensors")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise RestoreError(f"'{index}' is damaged: its step must be a non-negative integer, got {step!r}")
    if not isinstance(name, str) or Path(name).name != name:
        raise RestoreError(f"'{index}' is damaged: 'tensors' must name a file in '{folder}', got {name!r}")
    try:
        tensors = load_file(str(folder / name))
    except FileNotFoundError:
        raise RestoreError(f"the checkpoint file '{folder / name}' named by '{index}' is missing: the run cannot "
                           "be resumed (start a new one, or --init from its exported model)") from None
    except Exception as exc:  # SafetensorError: a truncated or damaged file
        raise RestoreError(f"the checkpoint file '{folder / name}' is damaged ({io._one_line(exc)}): the run "
                           "cannot be resumed (start a new one, or --init from its exported model)") from None
    return tensors, meta


def _optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = "optim") -> tuple[dict[str, torch.Tensor], list]:
    """Adam's state as flat named tensors ``prefix.i.name`` plus JSON-able param groups (no pickle)."""
    state = opt.state_dict()
    tensors = {f"{prefix}.{i}.{k}": torch.as_tensor(v) for i, s in state["state"].items() for k, v in s.items()}
    return tensors, state["param_groups"]


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, groups: list, prefix: str = "optim") -> None:
    state: dict = {}
    for key, value in tensors.items():
        if key.startswith(prefix + "."):
            i, name = key[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def _prefix(phases: list, j: int) -> str:
    """Tensor-name prefix of phase j's optimiser state ("optim" for the first, as single-loss runs)."""
    return "optim" if j == 0 else f"optim_{phases[j].name}"


# On an accelerator the losses of this many steps are read back at once (each read waits for the device).
READ_EVERY = 25


def _read_every(device: torch.device) -> int:
    """How many steps' losses are read back at once: each step's on the CPU, READ_EVERY elsewhere."""
    return 1 if device.type == "cpu" else READ_EVERY


def _scalars(out, read: bool = True) -> tuple[torch.Tensor, dict]:
    """A loss function's result as (the loss to minimise, the values to log): floats, or with ``read`` False
    the detached tensors, read later by :func:`_read` so that the host need not wait for the device."""
    loss = out["loss"] if isinstance(out, dict) else out
    values = {k: v.detach() if torch.is_tensor(v) else float(v) for k, v in (out if isinstance(out, dict) else {"loss": out}).items()}
    if read:
        _read([values])
    return loss, values


def _read(records: list[dict]) -> None:
    """Replace the tensors among the values of ``records`` by floats, in place, with one read from the device."""
    where = [(r, k) for r in records for k, v in r.items() if torch.is_tensor(v)]
    if where:
        device = where[0][0][where[0][1]].device
        for (r, k), v in zip(where, torch.stack([r[k].double().reshape(()).to(device) for r, k in where]).tolist()):
            r[k] = v


def _batch(images: torch.Tensor, size: int, generator: torch.Generator, flip: bool = False,
           device: torch.device | str = "cpu") -> torch.Tensor:
    """A batch drawn with replacement, as floats in [0, 1] on ``device``; with ``flip``, each image is mirrored
    left-right with probability 1/2. A :class:`restore.data.PatchSet` draws its own random patches. The
    draws come from ``generator`` whatever the device; the images travel as uint8 (a quarter of the bytes)
    and become floats, and are flipped, on the device."""
    if hasattr(images, "crops"):
        return images.batch(size, generator, device=device)
    idx = torch.randint(len(images), (size,), generator=generator)
    x = to_device(images[idx], device).float() / 255
    if flip:
        mirror = to_device((torch.rand(size, generator=generator) < 0.5).nonzero().squeeze(1), device)  # no sync
        x[mirror] = x[mirror].flip(-1)
    return x


def randn_on(shape, generator: torch.Generator, device: torch.device | str = "cpu") -> torch.Tensor:
    """Standard normal samples of ``shape`` on ``device``: from ``generator`` on the CPU; elsewhere from a
    generator on the device seeded by one draw of ``generator``, so a seed still gives the same batch there.
    Drawn on the CPU and copied, the 3.1 M normals of a batch of 256 colour 64x64 patches took 33 ms on one
    core of the project's CPU, about half of what a training step took on an H200 (benchmarks/results/ddpm_photo/gpu.md)."""
    device = torch.device(device)
    if device.type == "cpu":
        return torch.randn(shape, generator=generator)
    return _randn_from_seed(shape, int(torch.randint(2**62, (1,), generator=generator)), device)


def _randn_from_seed(shape, seed: int, device: torch.device) -> torch.Tensor:
    """Standard normal samples of ``shape`` drawn on ``device`` by a generator there seeded with ``seed``."""
    return torch.randn(shape, generator=torch.Generator(device).manual_seed(seed), device=device)


def learning_rate(step: int, lr: float, steps: int, warmup: int = 0, decay: int = 0) -> float:
    """The learning rate of optimiser step ``step`` (counted from 0) of a run of ``steps`` steps.

    A linear ramp from lr / warmup to ``lr`` over the first ``warmup`` steps, ``lr`` after it and, with
    ``decay``, a linear fall to 0 over the last ``decay`` steps: the "warmup-stable-decay" schedule, whose
    cool-down of 10-20% of a run matches a cosine schedule of the same length while the run can be
    continued from any step before it (Hagele et al. 2024, "Scaling laws and compute-optimal training beyond
    fixed training durations", NeurIPS). ``steps`` is the run's total, so a resumed run with a larger
    --steps moves its cool-down to the new end.
    """
    rate = lr * min(1.0, (step + 1) / warmup) if warmup else lr
    if decay:
        rate *= min(1.0, (steps - step) / decay)
    return rate


def train(
    *,
    model: torch.nn.Module,
    data: dict,
    config: dict,
    options: TrainOptions,
    loss_fn: Callable | None = None,
    phases: list[Phase] | None = None,
    warn_fn: Callable[[dict], str | None] | None = None,
    sample_fn: Callable[[torch.nn.Module, torch.Generator], torch.Tensor] | None = None,
    export_fn: Callable[[torch.nn.Module, Path], None] | None = None,
    grad_clip: float | None = None,
    warmup: int = 0,
    dist_info: Dist | None = None,
) -> dict:
    """Train ``model`` on ``data["train"]`` (uint8 (N, C, H, W)) with ``options``; returns a summary dict.

    ``options.out`` receives run.json (the resolved options and data description), log.jsonl,
    samples/step-N.png, checkpoint/ and, through ``export_fn``, the exported EMA model.
    ``options.precision`` "bf16" runs the forward pass under bfloat16 autocast (weights, optimiser and
    EMA stay float32); "auto" means bf16 on a GPU and fp32 on the CPU. ``options.flip`` mirrors training
    images left-right at random (for data where that is natural; not for digits or text).
    Give either ``loss_fn`` or ``phases``; with one phase, validation reports its loss on the EMA
    model. ``warn_fn(record)`` may return a warning about a validation record (printed and logged).
    ``warmup`` ramps the learning rate linearly from lr / warmup over the first steps, and
    ``options.lr_decay`` brings it down linearly to 0 over the last steps (:func:`learning_rate`); ``grad_clip``
    rescales each phase's gradient to at most that norm, and a step whose gradient is not finite is
    skipped (counted as "skipped" in the log) rather than written into the weights.
    """
    from tqdm.auto import tqdm

    o = options
    steps, batch_size, lr, ema_decay, seed, max_minutes = o.steps, o.batch_size, o.lr, o.ema_decay, o.seed, o.max_minutes
    lr_decay = o.lr_decay
    checkpoint_every, val_every, sample_every, resume, precision, flip = (
        o.checkpoint_every, o.val_every, o.sample_every, o.resume, o.precision, o.flip)
    d = dist_info or setup_distributed(o.device)
    if precision not in ("auto", "fp32", "bf16"):
        raise RestoreError(f"unknown precision {precision!r} (known: auto, fp32, bf16)")
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        raise RestoreError(f"--max-minutes must be a positive number of minutes, got {max_minutes}")
    if not 0 <= lr_decay <= steps:
        raise RestoreError(f"--lr-decay must be between 0 and --steps ({steps}) steps, got {lr_decay}")
    amp = precision == "bf16" or (precision == "auto" and d.device.type == "cuda")
    if amp and d.is_main:
        from .runtime import bf16_warning

        if warning := bf16_warning(d.device.type):
            tqdm.write(warning)
    out = Path(o.out)
    ckpt_dir = out / "checkpoint"
    if d.is_main:
        _prepare_folder(out, resume)
    if (loss_fn is None) == (phases is None):
        raise ValueError("give either loss_fn or phases")
    phases = phases or [Phase("loss", loss_fn)]
    model = model.to(d.device)
    autotune = torch.backends.cudnn.benchmark  # restored at the end (inference on images of many sizes)
    if d.device.type == "cuda":  # every batch has one shape: let cuDNN time its convolution algorithms once
        torch.backends.cudnn.benchmark = True
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opts = [torch.optim.Adam((model.get_submodule(ph.module) if ph.module else model).parameters(), lr=lr, betas=ph.betas)
            for ph in phases]
    start, minutes_before = 0, 0.0  # minutes_before: training time of the segments before a resume
    if resume:
        start, minutes_before, config = _resume(out, model, ema, opts, phases, config, d)
    if d.is_main:
        io.write_json(out / "run.json", {**config, "steps": steps, "batch_size": batch_size, "lr": lr,
                                         "ema_decay": ema_decay, "seed": seed, "world_size": d.world_size,
                                         "precision": "bf16" if amp else "fp32", "flip": flip,
                                         **({"grad_clip": grad_clip} if grad_clip is not None else {}),
                                         **({"warmup": warmup} if warmup else {}),
                                         **({"lr_decay": lr_decay} if lr_decay else {})})
        write_training_digests(out, data)
    net = model
    if d.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # With several phases each step leaves some parameters unused (the generator in a critic step).
        net = DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None,
                                      find_unused_parameters=len(phases) > 1)
    train_images = data["train"]
    val_images = data.get("val")
    log_path = out / "log.jsonl"
    t_start = time.monotonic()
    per_rank = max(1, batch_size // d.world_size)
    bar = tqdm(total=steps, initial=start, desc=config.get("family", "train"), unit="step", disable=None if d.is_main else True)
    seen, t_window = 0, time.monotonic()
    skipped = 0  # steps with a non-finite gradient, in this segment
    step = start
    stopped_by_budget = False
    interrupted = _Interrupt()  # Ctrl-C or SIGTERM: finish the step, checkpoint, export, say how to resume
    read_every = _read_every(d.device)  # on an accelerator a step does not wait for its loss to be read
    pending: list[dict] = []  # log records not yet written

    try:
        while step < steps:
            g = torch.Generator().manual_seed(seed * 1_000_003 + step * d.world_size + d.rank)
            model.train()
            # 1. One optimiser step per phase and repeat (DDP averages the gradients across ranks).
            logged: dict = {}
            for phase, opt in zip(phases, opts):
                for _ in range(phase.repeats):
                    x = _batch(train_images, per_rank, g, flip, device=d.device)
                    with torch.autocast(d.device.type, dtype=torch.bfloat16, enabled=amp):
                        loss, values = _scalars(phase.loss_fn(net, x, g, step), read=read_every == 1)
                    step_lr = learning_rate(step, lr, steps, warmup, lr_decay)
                    skipped += not _optimizer_step(opt, loss, step_lr, grad_clip)
                logged.update(values if len(phases) == 1 else {f"{phase.name}_{k}": v for k, v in values.items()})
            # 2. EMA of the weights, identical on every rank because the weights are.
            _update_ema(ema, model, ema_decay)
            step += 1
            seen += per_rank * d.world_size
            minutes = minutes_before + (time.monotonic() - t_start) / 60  # training time over all segments
            record = {"step": step, **logged, "minutes": minutes, **({"skipped": skipped} if skipped else {}),
                      **({"lr": step_lr} if warmup or lr_decay else {})}
            pending.append(record)
            validate = val_images is not None and len(phases) == 1 and (step % val_every == 0 or step == steps)
            if validate:
                val = validation_loss(ema, phases[0].loss_fn, val_images, per_rank, seed, d.device)
                record.update({f"val_{k}": v for k, v in val.items()} if isinstance(val, dict) else {"val_loss": val})
                _read([record])
                warning = warn_fn(record) if warn_fn is not None else None
                if warning and d.is_main:
                    record["warning"] = warning
                    tqdm.write(f"warning: step {step}: {warning}")
            over_budget = (max_minutes is not None and time.monotonic() - t_start > 60 * max_minutes) or bool(interrupted.signal)
            if d.world_size > 1:  # every rank must stop at the same step: a vote (a wait) every read_every steps
                if step % read_every == 0 or step == steps:
                    flag = to_device(torch.tensor([float(over_budget)]), d.device)
                    torch.distributed.all_reduce(flag)
                    over_budget = bool(flag.item() > 0)
                else:
                    over_budget = False
            checkpoint = step % checkpoint_every == 0 or step == steps or over_budget
            sample = sample_fn is not None and step % sample_every == 0
            if d.is_main:
                bar.update(1)
                if len(pending) >= read_every or validate or checkpoint or sample:
                    _read(pending)  # the log is written up to this step before any checkpoint of it
                    rate = seen / max(time.monotonic() - t_window, 1e-9)
                    first = next(iter(logged))
                    bar.set_postfix({first: f"{record[first]:.4f}", "img_s": f"{rate:.0f}"})
                    with open(log_path, "a") as f:
                        f.write("".join(json.dumps(r) + "\n" for r in pending))
                    pending.clear()
                if sample:
                    io.write_grid(out / "samples" / f"step-{step}.png", sample_fn(ema, _sample_generator(ema, seed)).cpu())
            else:
                pending.clear()
            if d.is_main and checkpoint:
                _checkpoint(ckpt_dir, step, model, ema, opts, phases, config,
                            minutes_before + (time.monotonic() - t_start) / 60)
            if over_budget:
                stopped_by_budget = True
                break
    finally:
        interrupted.restore()
        torch.backends.cudnn.benchmark = autotune
        if pending and d.is_main:  # an error ended the run: keep the records of its last steps
            try:
                _read(pending)
                with open(log_path, "a") as f:
                    f.write("".join(json.dumps(r) + "\n" for r in pending))
            except Exception:  # a broken device cannot give them back; the error that ended the run matters more
                pass
    bar.close()
    segment = (time.monotonic() - t_start) / 60
    summary = {"step": step, "finished": step >= steps, "stopped_by_budget": stopped_by_budget and not interrupted.signal,
               **({"interrupted_by": interrupted.signal} if interrupted.signal else {}),
               "minutes": segment, "minutes_total": minutes_before + segment, "ranks_identical": ranks_identical(model, d)}
    if d.is_main:
        _finish(out, ema, summary, export_fn, sample_fn if step > start else None, seed)
    return summary


def _prepare_folder(out: Path, resume: bool) -> None:
    """Check and create the run folder (its parents too: `--out runs/NAME` works in a fresh clone); a folder
    holding a checkpoint is continued only with ``resume``."""
    if out.exists() and not out.is_dir():
        raise RestoreError(f"'{out}' exists and is not a folder")
    if (out / "checkpoint" / "checkpoint.json").exists() and not resume:
        raise RestoreError(f"'{out}' already holds a checkpoint: pass --resume to continue it, or choose another --out")
    try:
        (out / "samples").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RestoreError(f"cannot create the run folder '{out}': {exc.strerror or exc}") from None


def _resume(out: Path, model, ema, opts, phases, config: dict, d: Dist) -> tuple[int, float, dict]:
    """Load the checkpoint of ``out`` into the model, its EMA and the optimisers; returns the step reached,
    the training minutes before this segment and the config (keeping the original run's init record)."""
    ckpt_dir = out / "checkpoint"
    found = load_checkpoint(ckpt_dir)
    if found is None:
        raise RestoreError(f"--resume: no checkpoint in '{ckpt_dir}'")
    tensors, meta = found
    if meta.get("config", {}).get("family") != config.get("family"):
        raise RestoreError(f"--resume: '{out}' holds a {meta.get('config', {}).get('family')} run, not {config.get('family')}")
    try:
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    except RuntimeError:
        raise RestoreError(f"--resume: the checkpoint in '{ckpt_dir}' was made for a different model "
                           "(resume with the options of the original run, see its run.json)") from None
    try:
        groups = [meta["param_groups"], *meta.get("more_param_groups", [])]
        for j, opt in enumerate(opts):
            # As saved, on the CPU: Adam moves its moments to each parameter's device and keeps a non-capturable
            # step count where it is given; a count on a GPU would be read back (a wait) twice a tensor a step.
            _load_optimizer(opt, tensors, groups[j], _prefix(phases, j))
    except (KeyError, IndexError, ValueError, TypeError, RuntimeError) as exc:
        raise RestoreError(f"--resume: the optimiser state in '{ckpt_dir}' is damaged or made for another "
                           f"model ({io._one_line(exc)})") from None
    start = meta["step"]
    # Where the run started is the original's: a resume (which takes no --init) keeps its init record.
    first = meta.get("config", {})
    if config.get("init") is None and first.get("init") is not None:
        config = {**config, **{k: first[k] for k in ("init", "init_steps") if k in first}}
    logged = _truncate_log(out / "log.jsonl", start) if d.is_main else None
    # Checkpoints from before the "minutes" field: the log's last kept record has the time.
    return start, meta.get("minutes", logged or 0.0), config


def _checkpoint(folder: Path, step: int, model, ema, opts, phases, config: dict, minutes: float) -> None:
    """Save the model, its EMA and every phase's optimiser state atomically (``save_checkpoint``)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in ema.state_dict().items()})
    groups = []
    for j, opt in enumerate(opts):
        optim_tensors, phase_groups = _optimizer_tensors(opt, _prefix(phases, j))
        tensors.update(optim_tensors)
        groups.append(phase_groups)
    meta = {"step": step, "param_groups": groups[0], "config": config, "minutes": minutes}
    if len(groups) > 1:
        meta["more_param_groups"] = groups[1:]
    save_checkpoint(folder, tensors, meta)


def _optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float, grad_clip: float | None) -> bool:
    """Backpropagate ``loss`` and step ``opt`` at learning rate ``lr``; with ``grad_clip``, the gradient is
    rescaled to at most that norm and a non-finite one skips the step. Returns whether it stepped."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    for group in opt.param_groups:
        group["lr"] = lr
    if grad_clip is not None:
        params = [p for group in opt.param_groups for p in group["params"]]
        if not torch.isfinite(torch.nn.utils.clip_grad_norm_(params, grad_clip)):
            return False
    opt.step()
    return True


@torch.no_grad()
def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """ema <- decay ema + (1 - decay) model for the weights; buffers are copied."""
    # One fused call over all tensors (one kernel launch per group on a GPU, not one per parameter).
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - decay)
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def _sample_generator(model: torch.nn.Module, seed: int) -> torch.Generator:
    """The seeded generator for sample grids, on the model's device (samplers draw their noise there; a CPU
    generator fails on CUDA)."""
    return torch.Generator(device=next(model.parameters()).device).manual_seed(seed)


def _finish(out: Path, ema, summary: dict, export_fn, sample_fn, seed: int) -> None:
    """Export the EMA model, draw a last sample grid if this segment trained and has none, and record in
    run.json and the log how far the exported weights were trained."""
    step = summary["step"]
    if export_fn is not None:
        export_fn(ema, out)
    final_grid = out / "samples" / f"step-{step}.png"
    if sample_fn is not None and not final_grid.exists():
        # A run shorter than --sample-every (or stopped between grids) still shows what it learned.
        io.write_grid(final_grid, sample_fn(ema, _sample_generator(ema, seed)).cpu())
    run = json.loads((out / "run.json").read_text())
    io.write_json(out / "run.json", {**run, "steps_done": step, "minutes_total": round(summary["minutes_total"], 2)})
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps({"summary": summary}) + "\n")


class _Interrupt:
    """While training, Ctrl-C (SIGINT) and SIGTERM set ``signal`` instead of killing the process: the loop
    finishes its step, checkpoints and exports, and the run can be continued with --resume. A second
    signal of the same kind kills as usual."""

    def __init__(self):
        import signal
        import threading

        self.signal: str | None = None
        self._previous = {}
        if threading.current_thread() is not threading.main_thread():
            return  # handlers can only be installed from the main thread
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        import signal

        if self.signal is not None:  # the second time: stop now
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
            return
        self.signal = signal.Signals(signum).name
        from tqdm.auto import tqdm

        tqdm.write(f"{self.signal}: stopping after this step; the checkpoint and the exported model will be written "
                   "(continue with --resume; the same signal again stops at once)")

    def restore(self):
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


def _truncate_log(path: Path, step: int) -> float | None:
    """Drop the log records after ``step`` (written between the last checkpoint and a kill), atomically;
    returns the training minutes of the last record kept, if any."""
    if not path.exists():
        return None
    kept, minutes = [], None
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
            at = record.get("step", record.get("summary", {}).get("step", 0))
            keep = at <= step
        except (json.JSONDecodeError, AttributeError, TypeError):  # a line cut by a kill, or edited
            continue
        if keep:
            kept.append(line)
            minutes = record.get("minutes", minutes)
    with io.atomic_write(path) as tmp:
        tmp.write_text("".join(k + "\n" for k in kept))
    return minutes


@torch.no_grad()
def validation_loss(model, loss_fn, images: torch.Tensor, batch_size: int, seed: int, device,
                    batches: int = 4) -> float | dict[str, float]:
    """Mean loss of ``batches`` fixed validation batches (same images and noise every time); a dict
    of means for a loss that returns a dict."""
    model.eval()
    totals: dict[str, float] = {}
    for i in range(batches):
        g = torch.Generator().manual_seed(10_000_019 + seed + i)
        out = loss_fn(model, _batch(images, batch_size, g, device=device), g, None)
        for k, v in _scalars(out)[1].items():
            totals[k] = totals.get(k, 0.0) + v / batches
    return totals if isinstance(out, dict) else totals["loss"]


def ranks_identical(model: torch.nn.Module, d: Dist) -> bool:
    """Whether every rank holds the same weights (a float64 checksum compared across ranks)."""
    if d.world_size == 1:
        return True
    checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).to(d.device)
    gathered = [torch.zeros_like(checksum) for _ in range(d.world_size)]
    torch.distributed.all_gather(gathered, checksum)
    return all(torch.equal(g, gathered[0]) for g in gathered)
