"""The CLI's model paths on a GPU in one process: training, sampling and every photo solver with --device.

    python benchmarks/gpu_smoke.py --device cuda --out $OUT/smoke.log --budget 150
    python benchmarks/gpu_smoke.py --device cpu --out /tmp/smoke.log         # a dry run here

The test suite chooses no device (on a GPU machine its tests still run on the CPU), so this is what checks
that the learned paths run on CUDA: the first device session found a CPU generator in training's last
sample grid and a CPU/CUDA mix in the Tweedie noise-level lookup (DPIR, Tweedie denoising) this way. The
cases run in-process through the CLI's own entry point (one CUDA start instead of one per command, which
cost ~15 s each there) on 96x96 crops of a training photo (benchmarks/gpu_prepare.sh's .gpudata, or
RESTORE_DATA). Each case gets one line: ok, FAIL with the error's last line, or skipped once the budget is
spent; the script itself never stops at a failure, and exits 1 if any case failed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from PIL import Image


def cases(work: Path, gray: Path, colour: Path | None, data: Path) -> list[tuple[str, list[str], bool]]:
    """(name, restore arguments, whether --device applies) in order; later cases read earlier outputs."""
    c, w = str(work / "clean.png"), str(work)
    out = [
        ("degrade-denoise", ["degrade", c, "--task", "denoise", "--noise", "0.1", "-o", f"{w}/yn.png"], False),
        ("degrade-deblur", ["degrade", c, "--task", "deblur", "--kernel", "levin:1", "--noise", "0.01", "-o", f"{w}/yb.png"], False),
        ("degrade-inpaint", ["degrade", c, "--task", "inpaint", "--random", "0.5", "--noise", "0.01", "-o", f"{w}/yi.png"], False),
        ("degrade-superres", ["degrade", c, "--task", "superres", "--factor", "2", "--noise", "0.01", "-o", f"{w}/ys.png"], False),
        ("ddpm-tweedie", ["denoise", f"{w}/yn.json", "--prior", "ddpm", "--solver", "tweedie", "-o", f"{w}/o1.png", "--reference", c], True),
        ("ddpm-dps", ["denoise", f"{w}/yn.json", "--prior", "ddpm", "--solver", "dps", "--steps", "20", "-o", f"{w}/o2.png"], True),
        ("ddpm-dpir-deblur", ["deblur", f"{w}/yb.json", "--prior", "ddpm", "-o", f"{w}/o3.png", "--reference", c], True),
        ("ddpm-dpir-bf16", ["deblur", f"{w}/yb.json", "--prior", "ddpm", "--precision", "bf16", "-o", f"{w}/o4.png"], True),
        ("ddpm-inpaint", ["inpaint", f"{w}/yi.json", "--prior", "ddpm", "-o", f"{w}/o5.png", "--reference", c], True),
        ("ddpm-superres", ["superres", f"{w}/ys.json", "--prior", "ddpm", "-o", f"{w}/o6.png", "--reference", c], True),
        ("ddpm-ddnm-samples", ["inpaint", f"{w}/yi.json", "--prior", "ddpm", "--solver", "ddnm", "--steps", "20", "--samples", "4", "-o", f"{w}/o7.png"], True),
        ("ddpm-pigdm", ["deblur", f"{w}/yb.json", "--prior", "ddpm", "--solver", "pigdm", "--steps", "20", "-o", f"{w}/o8.png"], True),
        ("ddpm-diffpir", ["deblur", f"{w}/yb.json", "--prior", "ddpm", "--solver", "diffpir", "--steps", "20", "-o", f"{w}/o9.png"], True),
        ("ddpm-repaint", ["inpaint", f"{w}/yi.json", "--prior", "ddpm", "--solver", "repaint", "--steps", "20", "-o", f"{w}/o10.png"], True),
        ("ddpm-tweedie-views", ["denoise", f"{w}/yn.json", "--prior", "ddpm", "--solver", "tweedie", "--param", "views=8", "-o", f"{w}/o14.png"], True),
        ("degrade-box", ["degrade", c, "--task", "inpaint", "--box", "28,28,40,40", "-o", f"{w}/yx.png"], False),
        ("ddpm-inpaint-box", ["inpaint", f"{w}/yx.json", "--prior", "ddpm", "-o", f"{w}/o15.png", "--reference", c], True),
        ("epll-denoise", ["denoise", f"{w}/yn.json", "--prior", "gmm", "-o", f"{w}/o11.png", "--reference", c], True),
        ("bm3d-denoise", ["denoise", f"{w}/yn.json", "--solver", "bm3d", "-o", f"{w}/o12.png"], True),
        ("sample-ddim", ["sample", "--prior", "ddpm-photo-gray", "--method", "ddim", "--steps", "10", "-n", "4", "-o", f"{w}/grid.png"], True),
    ]
    if colour is not None:
        out += [
            ("degrade-rgb", ["degrade", f"{w}/rgb.png", "--task", "denoise", "--noise", "0.1", "-o", f"{w}/yr.png"], False),
            ("ddpm-rgb", ["denoise", f"{w}/yr.json", "--prior", "ddpm", "--solver", "tweedie", "-o", f"{w}/o13.png"], True),
        ]
        # The speed cells on a 481x321 gray photo (the model and CUDA already warm): seconds per image.
        out += [
            ("degrade-speed", ["degrade", f"{w}/gray481.png", "--task", "inpaint", "--random", "0.5", "--noise", "0.01", "-o", f"{w}/yg.png"], False),
            ("speed-481x321-ddnm-20", ["inpaint", f"{w}/yg.json", "--prior", "ddpm", "--solver", "ddnm", "--steps", "20", "-o", f"{w}/s1.png"], True),
            ("speed-481x321-dps-100", ["inpaint", f"{w}/yg.json", "--prior", "ddpm", "--solver", "dps", "--steps", "100", "-o", f"{w}/s2.png"], True),
        ]
    train = ["train", "ddpm", "--data", str(data / "gray400"), "--patch", "32", "--out", f"{w}/run", "--batch-size", "8",
             "--width", "8", "--checkpoint-every", "10", "--sample-every", "10", "--timesteps", "50"]
    # A few steps with a sample grid on the way and at the end, then a resume.
    out += [("train-ddpm", train + ["--steps", "20"], True), ("train-resume", train + ["--steps", "30", "--resume"], True)]
    return out


def run_case(args: list[str]) -> str | None:
    """Run ``restore ARGS`` in this process; None when it succeeded, else the error's last line."""
    from restore.cli.app import main

    sys.argv = ["restore", *args]
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
            return f"exit {exc.code}: {lines[-1] if lines else ''}"
    except Exception:
        return traceback.format_exc().strip().splitlines()[-1]
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp")) / "smoke.log")
    parser.add_argument("--budget", type=float, default=300, help="seconds; the cases after it are skipped")
    a = parser.parse_args()
    from restore.data import default_data_root

    data = Path(default_data_root()) / "natural" / "train"
    gray = sorted((data / "gray400").iterdir())[0]
    colour_files = sorted((data / "bsds400").iterdir()) if (data / "bsds400").is_dir() else []
    a.out.parent.mkdir(parents=True, exist_ok=True)
    start, failed = time.monotonic(), 0
    with tempfile.TemporaryDirectory() as tmp, open(a.out, "w") as log:
        work = Path(tmp)
        Image.open(gray).convert("L").crop((0, 0, 96, 96)).save(work / "clean.png")
        colour = colour_files[0] if colour_files else None
        if colour is not None:
            Image.open(colour).convert("RGB").crop((0, 0, 96, 96)).save(work / "rgb.png")
            Image.open(colour).convert("L").save(work / "gray481.png")  # a whole BSDS photo, 481x321 or 321x481

        def say(line: str) -> None:
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()

        say(f"device {a.device}, {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}")
        for name, args, on_device in cases(work, gray, colour, data):
            if time.monotonic() - start > a.budget:
                say(f"skip  {name} (budget of {a.budget:.0f} s spent)")
                continue
            t0 = time.monotonic()
            error = run_case(args + (["--device", a.device] if on_device else []))
            seconds = time.monotonic() - t0
            failed += error is not None
            say(f"ok    {name} {seconds:.1f}s" if error is None else f"FAIL  {name} {seconds:.1f}s: {error[:300]}")
        say(f"{failed} failed, {time.monotonic() - start:.0f} s in all")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
