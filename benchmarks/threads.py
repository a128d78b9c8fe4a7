"""CPU threads of the command line on an idle machine and beside one competing job.

    python benchmarks/threads.py [--repeats 3]

Runs two `restore` commands (DDPM inpainting of the README's digit with 8 samples and 20 steps, and
one-step Tweedie denoising of a 481x321 gray photo with the photo prior) under three thread settings,
with no other job and with one competing job (a process multiplying 512x512 matrices on one torch
thread, as a training run would), and records the median solve time ("seconds" in the result JSON) of
each. Settings: `--threads 1`; the default (all cores, OMP_WAIT_POLICY=PASSIVE, which `restore` sets);
and all cores with OMP_WAIT_POLICY=ACTIVE (spinning threads, torch's behaviour before). Run it on an
otherwise idle machine (pause training runs with SIGSTOP). Writes benchmarks/results/threads.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results" / "threads.md"
SETTINGS = {"--threads 1": {"RESTORE_THREADS": "1"}, "default (all cores, passive)": {},
            "all cores, spinning (OMP_WAIT_POLICY=ACTIVE)": {"OMP_WAIT_POLICY": "ACTIVE"}}
COMPETITOR = ("import torch\ntorch.set_num_threads(1)\na = torch.randn(512, 512)\n"
              "while True:\n    a = torch.tanh(a @ a)\n")


def solve_seconds(args: list[str], env: dict) -> float:
    run = subprocess.run([sys.executable, "-m", "restore.cli", *args, "--json"], capture_output=True, text=True,
                         env={**{k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
                              **env})
    if run.returncode != 0:
        raise SystemExit(f"restore {' '.join(args)} failed: {run.stderr.strip()}")
    return json.loads(run.stdout)["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from PIL import Image

    from restore.data import image_files, natural_folder
    from restore.runtime import machine

    with tempfile.TemporaryDirectory() as tmp:
        folder = natural_folder("bsds400")
        Image.open(folder / image_files(folder)[1][0]).convert("L").save(Path(tmp, "photo.png"))  # a training image
        commands = {
            "digit: ddpm inpaint, 8 samples x 20 steps": ["inpaint", str(ROOT / "examples" / "digit_holes.png"),
                                                          "--prior", "ddpm", "--samples", "8", "--steps", "20",
                                                          "-o", str(Path(tmp, "a.png"))],
            "481x321 photo: ddpm-photo-gray tweedie": ["denoise", str(Path(tmp, "photo.png")), "--noise", "0.1",
                                                       "--prior", "ddpm", "-o", str(Path(tmp, "b.png"))],
        }
        rows = []
        for load in (0, 1):
            competitor = subprocess.Popen([sys.executable, "-c", COMPETITOR]) if load else None
            try:
                for setting, env in SETTINGS.items():
                    cells = []
                    for command in commands.values():
                        times = [solve_seconds(command, env) for _ in range(args.repeats)]
                        cells.append(statistics.median(times))
                    rows.append((load, setting, cells))
                    print(rows[-1], flush=True)
            finally:
                if competitor is not None:
                    competitor.kill()
    lines = ["# Threads: solve seconds of the command line, idle and beside one competing job", "",
             f"`python benchmarks/threads.py --repeats {args.repeats}` on {machine().split(',')[0]}, "
             f"{os.cpu_count()} cores; medians of {args.repeats} runs; the competing job multiplies matrices "
             "on one thread.", "",
             f"| competing jobs | threads | {' | '.join(commands)} |", "|---|---|---|---|"]
    for load, setting, cells in rows:
        lines.append(f"| {load} | {setting} | {' | '.join(f'{c:.2f} s' for c in cells)} |")
    OUT.write_text("\n".join(lines) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
