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
import re
from pathlib import Path



from restore import photo_bench
from restore.runtime import keep_freed_memory

OUT = Path(__file__).parent / "results" / "natural"


def learned_method(text: str) -> tuple:
    """PRIOR:SOLVER[:STEPS][:KEY=VALUE,...] as (prior, solver, steps or None, {key: value}); a number or a JSON
    list is parsed, anything else stays a string. A malformed one is a ValueError naming it."""
    prior, solver, *rest = text.split(":") + ([] if ":" in text else [""])
    if not prior or not solver:
        raise ValueError(f"--learned {text!r}: expected PRIOR:SOLVER[:STEPS][:KEY=VALUE,...]")
    counts = [r for r in rest if "=" not in r]
    if len(counts) > 1 or (counts and not counts[0].isdigit()):
        raise ValueError(f"--learned {text!r}: the step count must be one whole number")
    overrides = {}
    for pair in (kv for r in rest if "=" in r for kv in re.split(r",(?=[A-Za-z_]\w*=)", r)):  # a list keeps its commas
        key, _, value = pair.partition("=")
        if not key or not value:
            raise ValueError(f"--learned {text!r}: {pair!r} is not KEY=VALUE")
        if not (value[0].isdigit() or value[0] in "-[."):
            overrides[key] = value
            continue
        try:
            overrides[key] = float(value) if value[0] == "." else json.loads(value)
        except ValueError:  # json's decoding error is one
            raise ValueError(f"--learned {text!r}: {value!r} is not a number or a JSON list") from None
    return prior, solver, int(counts[0]) if counts else None, overrides


def machines(cells: photo_bench.Cells) -> str:
    """The machines the table's cells were measured on, as their records name them (cells of runs before
    2026-12-03 do not; those ran on the 2-core AMD EPYC or Intel Xeon machines of this project)."""
    current = [r for key in cells.newest for r in cells.current(*key)]
    named = sorted({r["machine"] for r in current if r.get("machine")})
    unnamed = sum(1 for r in current if not r.get("machine"))
    parts = [f"{len(current) - unnamed} cells on {' and '.join(named)}"] if named else []
    if unnamed:
        parts.append(f"{unnamed} cells on 2-core AMD EPYC or Intel Xeon machines, unrecorded")
    return "; ".join(parts) or "no cells yet"


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
        try:
            learned = [learned_method(text) for text in args.learned]
        except ValueError as exc:
            parser.error(str(exc))  # one line and exit code 2
        photo_bench.run(out=args.out, setting_names=args.settings, solvers=args.solvers,
                        max_minutes=args.max_minutes, force=args.force, learned=learned)
    cells = photo_bench.Cells(args.out / "cells.jsonl")
    table = photo_bench.markdown(photo_bench.summary(cells))
    text = (f"# Natural-image benchmark: classical baselines\n\nProduced by `python benchmarks/natural.py` from "
            f"cells of several runs ({machines(cells)}; 1 or 2 torch threads, often beside another job: compare "
            f"seconds within a run).\n\n{photo_bench.__doc__.split(chr(10), 2)[2]}\n"
            f"Published figures: {photo_bench.PUBLISHED_SOURCES}\n\n\"Prior steps\" are the training steps of a learned "
            f"row's prior (a mixture's EM iterations): rows of one prior before and after retraining can share a "
            f"name, and a row keeps the weights it was computed with.\n\n{table}\n")
    (args.out / "results.md").write_text(text)
    print(table)


if __name__ == "__main__":
    keep_freed_memory()
    main()
