"""`restore train FAMILY`: each family's sub-command mirrors its train_* function, and refuses what it cannot use."""

import inspect
import sys

import pytest

from restore.cli import main
from restore.cli.training import FAMILIES

#: CLI option name -> train_* argument name, where they differ (per family, or for all).
RENAMED = {"ema": "ema_decay", "flow": {"width": "hidden"}, "gan": {"spectral_norm": "spectral"},
           "gmm": {"patch_count": "patches", "steps": "iterations"}}
#: Options of the command that are no argument of train_* (the CLI claims the run folder itself).
CLI_ONLY = {"overwrite"}


def _trainer(family):
    import importlib

    return getattr(importlib.import_module(f"restore.priors.{family}"), f"train_{family}")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_options_mirror_the_train_function(family):
    """Every option is an argument of the family's train_* function, with the same default."""
    signature = inspect.signature(_trainer(family)).parameters
    _, options, _ = FAMILIES[family]
    names = {name for name, _, _ in options}
    for name, _, default in options:
        if name in CLI_ONLY:
            continue
        target = RENAMED.get(family, {}).get(name, RENAMED["ema"] if name == "ema" else name)
        assert target in signature, f"--{name} of `restore train {family}` is no argument of train_{family}"
        if default is not inspect.Parameter.empty:  # --data and --out are required on both sides
            assert default == signature[target].default, (family, name, default, signature[target].default)
    # And the other way round: what train_* takes is offered, but for the few it keeps for Python callers.
    python_only = {"val_every", "log", "tol", "warmup", "grad_clip", "gp_weight"}
    offered = {RENAMED.get(family, {}).get(n, RENAMED["ema"] if n == "ema" else n) for n in names}
    assert set(signature) - offered - python_only == set()


def _run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["restore", *map(str, args)])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("args, expected", [
    (["train", "vae", "--data", "mnist", "--out", "r", "--patch", "64"], "No such option: --patch"),
    (["train", "ddpm", "--data", "mnist", "--out", "r", "--steps", "0"], "--steps"),
    (["train", "gan", "--data", "mnist", "--out", "r", "--loss", "hinge"], "hinge"),
    (["train", "ddpm", "--data", "mnist", "--out", "r", "--lr", "0"], "--lr must be a positive number"),
    (["train", "ddpm", "--data", "mnist", "--out", "r", "--steps", "10", "--lr-decay", "11"], "--lr-decay"),
    (["train", "ddpm", "--data", "mnist", "--out", "r", "--ema", "1"], "--ema below 1"),
    (["train", "ddpm", "--data", "mnist", "--out", "r", "--resume", "--overwrite"], "give one"),
    (["train", "gmm", "--data", "mnist", "--out", "r"], "gmm fits patches of photographs"),
    (["train", "transformer", "--data", "mnist", "--out", "r"], "No such command"),
    (["train", "ddpm", "--out", "r"], "Missing option '--data'"),
    (["train", "ddpm", "--data", "mnist", "--out", "r", "--focus-sigma", "1e-6"], "below the schedule's smallest"),
    (["train", "ddpm", "--data", "mnist", "--out", "r", "--focus-sigma", "0.3", "--focus-share", "1.5"],
     "--focus-share"),
])
def test_bad_options_get_one_line_and_exit_2(monkeypatch, capsys, tmp_path, args, expected):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(monkeypatch, capsys, *args)
    lines = err.splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], err
    assert not (tmp_path / "r").exists()  # nothing was created


def test_gaussian_trains_through_its_sub_command(monkeypatch, capsys, tmp_path):
    """The smallest family end to end: the options reach train_gaussian and the prior loads."""
    import numpy as np
    from PIL import Image

    from restore.priors import load_prior

    data = tmp_path / "faces"
    data.mkdir()
    for i in range(12):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (8, 8), dtype=np.uint8)).save(data / f"{i}.png")
    monkeypatch.setattr(sys, "argv", ["restore", "train", "gaussian", "--data", str(data), "--out",
                                      str(tmp_path / "g"), "--rank", "3"])
    main()
    assert "Gaussian prior of rank 3" in capsys.readouterr().out
    prior = load_prior(str(tmp_path / "g"))
    assert prior.family == "gaussian" and tuple(prior.image_shape) == (1, 8, 8)
