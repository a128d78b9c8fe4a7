"""The natural-image benchmark (photographs): every classical baseline, BM3D included, under the
literature's protocols, beside the published figures. See restore/photo_bench.py for the protocol.

    python benchmarks/natural.py                                # every setting and classical solver
    python benchmarks/natural.py --settings denoise/bsd68 --solvers bm3d --max-minutes 30
    python benchmarks/natural.py --table                        # only rewrite the table from the cells

Cells (one JSON line per measurement) are kept in benchmarks/results/natural/cells.jsonl, so an
interrupted or budget-stopped run continues where it stopped. The table goes to results.md beside it.
Seconds are wall-clock on this machine with the torch threads it is given (OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path



from restore import photo_bench
from restore.runtime import keep_freed_memory, machine

OUT = Path(__file__).parent / "results" / "natural"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--settings", nargs="*", help="setting names or prefixes (default: all)")
    parser.add_argument("--solvers", nargs="*", help="classical solvers (default: every compatible one)")
    parser.add_argument("--learned", nargs="*", default=[], metavar="PRIOR:SOLVER[:STEPS][:KEY=VALUE,...]",
                        help="learned methods, e.g. ddpm:tweedie ddpm:ddnm:20 ddpm:dpir:16:sigma_max=0.3 (only these, "
                             "unless --solvers too)")
    parser.add_argument("--max-minutes", type=float, help="stop after this long; run again to continue")
    parser.add_argument("--force", action="store_true", help="recompute cached cells")
    parser.add_argument("--table", action="store_true", help="only write the table from the stored cells")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if not args.table:
        learned = []
        for text in args.learned:
            prior, solver, *rest = text.split(":")
            steps = next((int(r) for r in rest if "=" not in r), None)
            overrides = {k: json.loads(v) if v[:1].isdigit() or v[:1] in "-[" else v
                         for r in rest if "=" in r for k, v in (kv.split("=", 1) for kv in r.split(","))}
            learned.append((prior, solver, steps, overrides))
        photo_bench.run(out=args.out, setting_names=args.settings, solvers=args.solvers,
                        max_minutes=args.max_minutes, force=args.force, learned=learned)
    cells = photo_bench.Cells(args.out / "cells.jsonl")
    table = photo_bench.markdown(photo_bench.summary(cells))
    text = (f"# Natural-image benchmark: classical baselines\n\nProduced by `python benchmarks/natural.py` on "
            f"{machine(threads=False)}, from cells of several runs (1 or 2 torch threads, often beside another job: "
            f"compare seconds within a run).\n\n{photo_bench.__doc__.split(chr(10), 2)[2]}\n"
            f"Published figures: {photo_bench.PUBLISHED_SOURCES}\n\n{table}\n")
    (args.out / "results.md").write_text(text)
    print(table)


if __name__ == "__main__":
    keep_freed_memory()
    main()
