"""Small self-contained SVG charts (no plotting library): for benchmark results and reports."""

from __future__ import annotations

import math
from html import escape

#: Line colours, distinguishable in print and for common colour-vision deficiencies (Okabe & Ito).
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        return [10.0**e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    step = 10 ** math.floor(math.log10((hi - lo) or 1.0))
    while (hi - lo) / step > 8:
        step *= 2
    return [k * step for k in range(math.floor(lo / step), math.ceil(hi / step) + 1)]


def line_chart(series: dict[str, list[tuple[float, float]]], *, title: str, xlabel: str, ylabel: str,
               log_x: bool = False, log_y: bool = False, width: int = 640, height: int = 400) -> str:
    """An SVG line chart of named series of (x, y) points, with axes, ticks and a legend."""
    points = [p for s in series.values() for p in s]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    fx = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    fy = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    xt, yt = _ticks(min(xs), max(xs), log_x), _ticks(min(ys), max(ys), log_y)
    x0, x1 = fx(min(xt[0], min(xs))), fx(max(xt[-1], max(xs)))
    y0, y1 = fy(min(yt[0], min(ys))), fy(max(yt[-1], max(ys)))
    left, right, top, bottom = 70, 170, 40, 50
    px = lambda v: left + (fx(v) - x0) / ((x1 - x0) or 1) * (width - left - right)  # noqa: E731
    py = lambda v: height - bottom - (fy(v) - y0) / ((y1 - y0) or 1) * (height - top - bottom)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
           f'font-size="12"><rect width="100%" height="100%" fill="white"/>',
           f'<text x="{width / 2 - right / 2}" y="20" text-anchor="middle" font-size="14">{escape(title)}</text>']
    for t in xt:
        if x0 - 1e-9 <= fx(t) <= x1 + 1e-9:
            out.append(f'<line x1="{px(t):.1f}" y1="{top}" x2="{px(t):.1f}" y2="{height - bottom}" stroke="#ddd"/>'
                       f'<text x="{px(t):.1f}" y="{height - bottom + 16}" text-anchor="middle">{t:g}</text>')
    for t in yt:
        if y0 - 1e-9 <= fy(t) <= y1 + 1e-9:
            out.append(f'<line x1="{left}" y1="{py(t):.1f}" x2="{width - right}" y2="{py(t):.1f}" stroke="#ddd"/>'
                       f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
    out.append(f'<text x="{(left + width - right) / 2}" y="{height - 12}" text-anchor="middle">{escape(xlabel)}</text>'
               f'<text transform="translate(16 {(top + height - bottom) / 2}) rotate(-90)" text-anchor="middle">'
               f'{escape(ylabel)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in sorted(pts))
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in pts]
        ly = top + 10 + 18 * i
        out.append(f'<line x1="{width - right + 12}" y1="{ly}" x2="{width - right + 32}" y2="{ly}" stroke="{colour}" '
                   f'stroke-width="2"/><text x="{width - right + 38}" y="{ly + 4}">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
