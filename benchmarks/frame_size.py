"""The WIDTHxHEIGHT (or N, a square) frame sizes that the benchmark scripts take on their command lines.

    from frame_size import frame_size      # a script in benchmarks/ run as `python benchmarks/NAME.py`
    parser.add_argument("--sizes", type=frame_size, nargs="+")
"""

from __future__ import annotations

import argparse
import functools
import re


def frame_size(text: str, minimum: int = 1) -> tuple[int, int]:
    """'WxH' (or 'WXH') -> (W, H); 'N' -> (N, N). Either side under ``minimum`` is refused, as is anything
    else, with argparse's one-line error."""
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip(), flags=re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT or N")
    w, h = int(match[1]), int(match[2] or match[1])
    if min(w, h) < minimum:
        raise argparse.ArgumentTypeError(f"{text!r}: width and height must be at least {minimum}")
    return w, h


def at_least(minimum: int):
    """frame_size with a smallest side, for argparse's ``type``."""
    return functools.partial(frame_size, minimum=minimum)
