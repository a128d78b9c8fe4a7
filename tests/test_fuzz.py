"""Random malformed images, specs and options thrown at the command line (issue 25's fuzz run).

Each case runs ``restore.cli.main`` in-process on small files. Whatever the input, the command must
exit with 0 or 2 (never a traceback), write nothing but the outputs it was asked for, and leave every
input byte-identical. Seeded: a failure names its case number and arguments, and reruns the same.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from restore.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = 200
TASKS = ["inpaint", "deblur", "superres", "denoise"]
SOLVERS = ["pinv", "wiener", "tv", "biharmonic", "richardson-lucy", "bicubic", "lasso", "nonsense"]
NUMBERS = ["0", "-1", "1e308", "-1e308", "nan", "inf", "0.5", "3", "1e-9", "abc", "", "2.5e3", "7"]


def _image(rng: random.Random, path: Path) -> None:
    """A small image of a random mode, or bytes that are not one."""
    kind = rng.choice(["L", "L", "LA", "RGB", "RGB", "RGBA", "P", "I;16", "RGB16", "LA16", "1", "truncated", "text",
                       "empty"])
    h, w = (rng.randint(1, 24), rng.randint(1, 24)) if rng.random() < 0.3 else (16, 16)
    pixels = np.random.default_rng(rng.randint(0, 2**31)).integers(0, 256, (h, w, 4), dtype=np.uint8)
    if kind in ("truncated", "text", "empty"):
        Image.fromarray(pixels[..., 0]).save(path, format="PNG")
        data = path.read_bytes()
        path.write_bytes({"truncated": data[: len(data) // 2], "text": b"not an image\n", "empty": b""}[kind])
    elif kind == "I;16":
        Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(path, format="PNG")
    elif kind in ("RGB16", "LA16"):  # PIL cannot write these; restore's own 16-bit PNG writer can
        from restore.io import _png16_bytes

        path.write_bytes(_png16_bytes(pixels[..., :3 if kind == "RGB16" else 2].astype(np.uint16) * 257))
    elif kind == "P":
        Image.fromarray(pixels[..., :3]).convert("P").save(path, format="PNG")
    elif kind == "1":
        Image.fromarray(pixels[..., 0] > 127).save(path, format="PNG")
    else:
        channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[kind]
        array = pixels[..., :channels] if channels > 1 else pixels[..., 0]
        Image.fromarray(array, mode=kind).save(path, format="PNG")


def _mutate(rng: random.Random, value, depth: int = 0):
    """A randomly damaged copy of a JSON value."""
    junk = [None, -1, 0, 1e308, "x", [], {}, [1, 2], True, 2**70, -0.5, "../../etc/passwd"]
    if isinstance(value, dict) and value and depth < 4:
        out = dict(value)
        key = rng.choice(sorted(out))
        action = rng.random()
        if action < 0.3:
            del out[key]
        elif action < 0.7:
            out[key] = _mutate(rng, out[key], depth + 1)
        else:
            out[key] = rng.choice(junk)
        return out
    if isinstance(value, list) and value and rng.random() < 0.5:
        out = list(value)
        out[rng.randrange(len(out))] = rng.choice(junk)
        return out
    return rng.choice(junk)


@pytest.fixture(scope="module")
def spec_folder(tmp_path_factory):
    """Valid specs of each task for a 16x16 gray image, written by `restore degrade`."""
    folder = tmp_path_factory.mktemp("specs")
    x = np.random.default_rng(0).integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(x).save(folder / "clean.png")
    for task in TASKS:
        sys.argv = ["restore", "degrade", str(folder / "clean.png"), "--task", task, "--noise", "0.05",
                    "--kernel" if task == "deblur" else "--seed", "gaussian:1" if task == "deblur" else "0",
                    "-o", str(folder / f"{task}.png")]
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None)
    return folder


def _case(rng: random.Random, folder: Path, specs: Path) -> tuple[list[str], set[str]]:
    """The arguments of one random command, and the names of the files it may write in ``folder``."""
    task = rng.choice(TASKS + ["degrade"])
    if rng.random() < 0.3 and task != "degrade":
        source = json.loads((specs / f"{task}.json").read_text())
        for name in source["arrays"].values():
            (folder / name).write_bytes((specs / name).read_bytes())
        spec = _mutate(rng, source) if rng.random() < 0.7 else source
        (folder / "in.json").write_text(json.dumps(spec))
        args = [task, str(folder / "in.json")]
    else:
        _image(rng, folder / "in.png")
        args = [task, str(folder / "in.png")] + (["--task", rng.choice(TASKS)] if task == "degrade" else [])
        if task == "inpaint" and rng.random() < 0.8:
            args += ["--random", "0.5"]  # an image without transparency needs a mask
    # Each option: values a user would pass, and values that must be refused; one in three is bad.
    options = {
        "--noise": (["0.05", "0.1", "0"], ["-1", "1e308", "nan", "abc", ""]),
        "--poisson": (["50", "1000"], ["0", "-3", "1e300", "inf"]),
        "--factor": (["2", "4"], ["0", "-2", "1000", "x", "3"]),
        "--kernel": (["gaussian:1", "motion:7", "levin:1", "k.npy"], ["gaussian:-1", "gaussian:1:100000", "motion:0",
                                                                     "levin:9", "", "gaussian"]),
        "--box": (["0,0,2,2", "1,1,3,4"], ["-1,0,3,3", "1,1,100,100", "a,b,c,d", "0,0,0,0"]),
        "--random": (["0.5", "0.2"], ["1", "-0.1", "nan", "0"]),
        "--solver": (SOLVERS[:-1], ["nonsense", ""]),
        "--steps": (["3", "5"], ["0", "-3", "x"]),
        "--seed": (["0", "7"], ["-1", "99999999999999999999"]),
        "--boundary": (["valid", "circular"], ["bogus"]),
        "--filter": (["box", "bicubic"], ["lanczos"]),
        "--param": (["weight=0.05"], ["eta=-1", "weight=0", "rcond=2", "balance=nan", "x=1", "="]),
        "--bits": (["auto", "8", "16"], ["12", ""]),
    }
    relevant = {"inpaint": ["--box", "--random"], "deblur": ["--kernel", "--boundary"],
                "superres": ["--factor", "--filter"], "denoise": []}
    effective = args[3] if task == "degrade" else task
    usable = ["--noise", "--poisson", "--seed"] + relevant[effective] + ([] if task == "degrade" else
                                                                         ["--solver", "--steps", "--param", "--bits"])
    for key in rng.sample(sorted(options) if rng.random() < 0.1 else usable, rng.randint(0, 2)):
        good, bad = options[key]
        args += [key, rng.choice(bad if rng.random() < 1 / 3 else good)]
    if rng.random() < 0.1:
        args += ["--prior", rng.choice(["gaussian", "", "nonexistent-folder", "classical"])]
    if rng.random() < 0.15:
        args += ["--reference", str(folder / rng.choice(["in.png", "ref.png", "missing.png"]))]
    if rng.random() < 0.2:
        args += ["--json"]
    # Some would overwrite an input, or cannot be written.
    out = rng.choice(["o.png"] * 6 + ["in.png", "in.json", "o.jpg", "sub/o.png", "ref.png", ""])
    args += ["-o", str(folder / out)]
    stem = Path(out).stem
    allowed = {f"{stem}{suffix}" for suffix in (".png", ".json", ".samples.png", ".std.png", ".safetensors")}
    return args, allowed


def test_random_malformed_commands_exit_0_or_2_and_touch_nothing_else(tmp_path, spec_folder, monkeypatch):
    rng = random.Random(20261130)
    Image.fromarray(np.full((8, 8), 128, np.uint8)).save(tmp_path / "ref.png")
    np.save(tmp_path / "k.npy", np.ones((3, 3)))
    monkeypatch.chdir(tmp_path)
    fixed = {p.name for p in tmp_path.iterdir()}
    for case in range(CASES):
        for p in tmp_path.iterdir():
            if p.name not in fixed:
                p.unlink()
        args, allowed = _case(rng, tmp_path, spec_folder)
        inputs = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        monkeypatch.setattr(sys, "argv", ["restore", *args])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        except Exception as exc:  # a traceback for the user
            pytest.fail(f"case {case}: restore {' '.join(args)} raised {type(exc).__name__}: {exc}")
        assert code in (0, 2), f"case {case}: restore {' '.join(args)} exited {code}"
        after = {p.name: p for p in tmp_path.iterdir()}
        for name, data in inputs.items():
            written = name in allowed and code == 0 and name not in ("in.png", "in.json")
            assert name in after and (written or after[name].read_bytes() == data), \
                f"case {case}: restore {' '.join(args)} changed or removed its input {name}"
        new = set(after) - set(inputs)
        assert new <= allowed, f"case {case}: restore {' '.join(args)} left {sorted(new - allowed)}"
        assert code == 0 or not new, f"case {case}: restore {' '.join(args)} failed but wrote {sorted(new)}"
