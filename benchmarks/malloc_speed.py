"""CPU time of the shipped DDPM's network with glibc's default allocator settings and with
:func:`restore.runtime.keep_freed_memory`, which the CLI and the benchmark scripts apply.

Each measurement runs in a fresh process (the setting is process-wide): the network's forward pass
(what DDRM, DDNM and DiffPIR evaluate), forward plus input gradient (DPS, PiGDM), and a training
step (DDPM loss, backward to the weights, Adam) on batches of 28x28 images. The two settings
alternate round by round, so machine load hits them alike; the median of ``--rounds`` is reported,
with the process's minor page faults per pass.

    python benchmarks/malloc_speed.py                  # batches 100 and 400, 3 rounds
    python benchmarks/malloc_speed.py --batches 128 --kinds train
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SETTINGS = {"glibc default": "system", "keep_freed_memory": ""}


def child(batch: int, kind: str, passes: int) -> dict:
    import torch

    from restore import runtime
    from restore.priors import load_prior

    applied = runtime.keep_freed_memory()
    prior = load_prior("ddpm")
    prior.unet.train(kind == "train")
    x = torch.rand(batch, 1, 28, 28)
    opt = torch.optim.Adam(prior.unet.parameters(), lr=1e-4)
    t = torch.randint(0, prior.num_timesteps, (batch,), generator=torch.Generator().manual_seed(0))

    def one():
        if kind == "train":
            loss = (prior.unet(x, t).sample - x).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        elif kind == "grad":
            xg = x.clone().requires_grad_(True)
            x0 = prior.eps_and_x0(xg, 500)[1]
            torch.autograd.grad(x0.square().sum(), xg)
        else:
            with torch.no_grad():
                prior.eps_and_x0(x, 500)

    one()  # warm-up
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        one()
        times.append(time.perf_counter() - t0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"applied": applied, "ms_per_image": 1000 * statistics.median(times) / batch, "faults_per_pass": faults / passes,
            "machine": runtime.machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="100,400")
    parser.add_argument("--kinds", default="forward,grad", help="comma-separated: forward, grad, train")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        batch, kind = args.child.split(",")
        print(json.dumps(child(int(batch), kind, args.passes)))
        return
    cases = [(int(b), kind) for b in args.batches.split(",") for kind in args.kinds.split(",")]
    runs = {(case, name): [] for case in cases for name in SETTINGS}
    for _ in range(args.rounds):
        for case in cases:
            for name, env in SETTINGS.items():
                out = subprocess.run([sys.executable, __file__, "--child", f"{case[0]},{case[1]}", "--passes",
                                      str(args.passes)], env={**os.environ, "RESTORE_MALLOC": env},
                                     capture_output=True, text=True, check=True)
                run = json.loads(out.stdout.splitlines()[-1])
                if run["applied"] != (env != "system"):
                    sys.exit(f"keep_freed_memory was {'not ' * (not run['applied'])}applied in the "
                             f"'{name}' process: this machine cannot compare the two settings")
                runs[case, name].append(run)
    threads = os.environ.get("OMP_NUM_THREADS", "all cores")
    path = RESULTS / "malloc_speed.json"
    rows = {(r["batch"], r["pass"]): r for r in json.loads(path.read_text())["rows"]} if path.exists() else {}
    for case in cases:  # a rerun replaces the rows of the cases it measured and keeps the others
        med = {name: statistics.median(r["ms_per_image"] for r in runs[case, name]) for name in SETTINGS}
        flt = {name: statistics.median(r["faults_per_pass"] for r in runs[case, name]) for name in SETTINGS}
        rows[case] = {"batch": case[0], "pass": case[1], "ms_per_image": med, "faults_per_pass": flt,
                      "rounds": args.rounds, "passes": args.passes, "threads": threads,
                      "machine": runs[case, "keep_freed_memory"][0]["machine"]}
    lines = ["The shipped DDPM's UNet on this CPU, each setting in its own process; medians over rounds.", "",
             "| batch | pass | threads | rounds x passes | glibc default ms / image | keep_freed_memory ms / image | "
             "speed-up | page faults / pass (default, kept) | machine |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows.values(), key=lambda r: (r["batch"], r["pass"])):
        a, b = r["ms_per_image"]["glibc default"], r["ms_per_image"]["keep_freed_memory"]
        flt = r["faults_per_pass"]
        lines.append(f"| {r['batch']} | {r['pass']} | {r['threads']} | {r['rounds']} x {r['passes']} | {a:.2f} | "
                     f"{b:.2f} | {a / b:.2f}x | {flt['glibc default']:.0f}, {flt['keep_freed_memory']:.0f} | "
                     f"{r.get('machine', 'not recorded')} |")
    RESULTS.mkdir(exist_ok=True)
    path.write_text(json.dumps({"rows": list(rows.values())}, indent=1) + "\n")
    (RESULTS / "malloc_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
