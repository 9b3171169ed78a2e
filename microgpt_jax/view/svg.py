"""Hand-written SVG: the few chart kinds the report draws, each a function from numbers to markup.

Every mark carries a ``<title>`` (the browser's tooltip) with its exact value. Colours: parameters on a
diverging scale (blue negative, white zero, red positive), probabilities and counts on a white-to-blue one.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

BLUE, RED, INK = (33, 102, 172), (178, 24, 43), (8, 48, 107)
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
FONT = 'font-family="system-ui,sans-serif" font-size="11"'


def esc(text: Any) -> str:
    """``text`` made safe inside HTML and SVG text and attributes."""
    return html.escape(str(text), quote=True)


def num(x: float, digits: int = 5) -> str:
    """A number for a tooltip or a label: ``digits`` significant digits."""
    return "nan" if not math.isfinite(x) else f"{x:.{digits}g}"


def _mix(rgb: tuple[int, int, int], t: float) -> str:
    t = min(1.0, max(0.0, t))
    r, g, b = (round(255 + (c - 255) * t) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def diverging(v: float, vmax: float) -> str:
    """Blue for negative, white for zero, red for positive; full colour at |v| = vmax."""
    t = abs(v) / vmax if vmax > 0 else 0.0
    return _mix(RED if v > 0 else BLUE, t)


def sequential(v: float, vmax: float = 1.0) -> str:
    """White at 0 to dark blue at ``vmax``."""
    return _mix(INK, v / vmax if vmax > 0 else 0.0)


def wrap(width: float, height: float, body: str, label: str = "") -> str:
    """An ``<svg>`` element of the given size around ``body``."""
    aria = f' role="img" aria-label="{esc(label)}"' if label else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" {FONT}{aria}>{body}</svg>'
    )


def heatmap(
    values_RxC: np.ndarray,
    colour: Callable[[float], str],
    tooltip: Callable[[int, int, float], str],
    *,
    cell: float = 10,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    text: Callable[[int, int, float], str] | None = None,
    label: str = "",
) -> str:
    """A grid of coloured cells, one per entry, each with its tooltip (and optional text in it)."""
    R, C = values_RxC.shape
    left = 6 + 7 * max((len(s) for s in row_labels), default=0) if row_labels is not None else 0
    top = 6 + 7 * max((len(s) for s in col_labels), default=0) if col_labels is not None else 0
    top = min(top, 60)
    parts = []
    for i in range(R):
        for j in range(C):
            v = float(values_RxC[i, j])
            x, y = left + j * cell, top + i * cell
            inner = f"<title>{esc(tooltip(i, j, v))}</title>"
            parts.append(
                f'<rect x="{x:g}" y="{y:g}" width="{cell:g}" height="{cell:g}" fill="{colour(v)}">{inner}</rect>'
            )
            if text is not None and (t := text(i, j, v)):
                parts.append(
                    f'<text x="{x + cell / 2:g}" y="{y + cell * 0.68:g}" text-anchor="middle" '
                    f'font-size="{cell * 0.32:.1f}" pointer-events="none">{esc(t)}</text>'
                )
    if row_labels is not None:
        for i, s in enumerate(row_labels):
            parts.append(f'<text x="{left - 3:g}" y="{top + (i + 0.72) * cell:g}" text-anchor="end">{esc(s)}</text>')
    if col_labels is not None:
        for j, s in enumerate(col_labels):
            parts.append(f'<text x="{left + (j + 0.5) * cell:g}" y="{top - 4:g}" text-anchor="middle">{esc(s)}</text>')
    return wrap(left + C * cell + 2, top + R * cell + 2, "".join(parts), label)


def ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round numbers spanning [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (m * step) <= n:
            step *= m
            break
    first = math.ceil(lo / step) * step
    return [first + k * step for k in range(int((hi - first) / step + 1e-9) + 1)]


def line_chart(
    series: Sequence[dict[str, Any]],
    *,
    points: Sequence[dict[str, Any]] = (),
    hlines: Sequence[dict[str, Any]] = (),
    width: float = 880,
    height: float = 320,
    xlog: bool = False,
    xlabel: str = "step",
    ylabel: str = "loss",
    label: str = "",
) -> str:
    """Lines (``series``: xs, ys, colour, name, optional stroke width and opacity), marked points (``points``:
    xs, ys, colour, name; a tooltip each) and labelled horizontal reference lines (``hlines``: y, name, colour)
    on shared axes; ``xlog`` plots x on a log axis (x + 1, so step 0 has a place)."""
    fx = (lambda x: math.log10(x + 1)) if xlog else float
    all_x = [fx(x) for s in (*series, *points) for x in s["xs"]]
    all_y = [y for s in (*series, *points) for y in s["ys"] if math.isfinite(y)] + [h["y"] for h in hlines]
    if not all_x or not all_y:
        return wrap(width, 40, '<text x="8" y="24">no data</text>', label)
    x0, x1 = min(all_x), max(all_x)
    y0, y1 = min(all_y), max(all_y)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    pad = 0.04 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad
    L, R, T, B = 48, 170, 10, 34
    pw, ph = width - L - R, height - T - B

    def px(x: float) -> float:
        return L + (fx(x) - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return T + (y1 - y) / (y1 - y0) * ph

    parts = [f'<rect x="{L}" y="{T}" width="{pw:g}" height="{ph:g}" fill="none" stroke="#999"/>']
    for y in ticks(y0, y1):
        parts.append(
            f'<line x1="{L}" x2="{L + pw:g}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>'
            f'<text x="{L - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{num(y, 3)}</text>'
        )
    if xlog:  # 0, 10, 100, ... inside the axis (x is drawn at log10(x + 1))
        xt = [x for x in [0, *(10**k for k in range(1, math.floor(x1) + 1))] if x0 - 1e-9 <= fx(x) <= x1 + 1e-9]
    else:
        xt = ticks(x0, x1)
    for x in xt:
        parts.append(f'<text x="{px(x):.1f}" y="{T + ph + 14:g}" text-anchor="middle">{num(x, 6)}</text>')
    parts.append(
        f'<text x="{L + pw / 2:g}" y="{height - 4:g}" text-anchor="middle">'
        f"{esc(xlabel + (' (log scale)' if xlog else ''))}</text>"
    )
    parts.append(
        f'<text x="12" y="{T + ph / 2:g}" transform="rotate(-90 12 {T + ph / 2:g})" '
        f'text-anchor="middle">{esc(ylabel)}</text>'
    )
    legend = []
    for h in hlines:
        y = py(h["y"])
        tip = f"<title>{esc(h['name'])}: {num(h['y'])}</title>"
        parts.append(
            f'<line x1="{L}" x2="{L + pw:g}" y1="{y:.1f}" y2="{y:.1f}" stroke="{h["colour"]}" '
            f'stroke-dasharray="5 3" stroke-width="1.5">{tip}</line>'
        )
        legend.append((h["colour"], f"{h['name']} {num(h['y'], 4)}", True))
    for s in series:
        xy = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(s["xs"], s["ys"], strict=True) if math.isfinite(y))
        parts.append(
            f'<polyline points="{xy}" fill="none" stroke="{s["colour"]}" '
            f'stroke-width="{s.get("width", 1.5)}" opacity="{s.get("opacity", 1)}">'
            f"<title>{esc(s['name'])}</title></polyline>"
        )
        if s.get("legend", True):
            legend.append((s["colour"], s["name"], False))
    for p in points:
        for x, y in zip(p["xs"], p["ys"], strict=True):
            if math.isfinite(y):
                parts.append(
                    f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3.5" fill="{p["colour"]}" stroke="#fff">'
                    f"<title>{esc(p['name'])} at step {x:g}: {num(y)}</title></circle>"
                )
        legend.append((p["colour"], p["name"], False))
    for k, (c, name, dashed) in enumerate(legend):
        y = T + 8 + 16 * k
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        parts.append(
            f'<line x1="{L + pw + 8:g}" x2="{L + pw + 24:g}" y1="{y}" y2="{y}" stroke="{c}" '
            f'stroke-width="2"{dash}/><text x="{L + pw + 28:g}" y="{y + 4}">{esc(name[:26])}</text>'
        )
    return wrap(width, height, "".join(parts), label)


def bars(
    values: Sequence[float],
    labels: Sequence[str],
    tooltips: Sequence[str],
    *,
    highlight: int | None = None,
    width: float = 14,
    height: float = 60,
    label: str = "",
) -> str:
    """Vertical bars of probabilities in [0, 1], each labelled below; ``highlight`` draws one in red."""
    vmax = max(max(values, default=0), 1e-12)
    slanted = any(len(name) > 1 for name in labels)  # words: labels turned so they do not overlap
    parts = []
    for i, (v, name, tip) in enumerate(zip(values, labels, tooltips, strict=True)):
        h = height * v / vmax
        fill = "#d62728" if i == highlight else "#6b8fbf"
        x, y = (i + 0.5) * width, height + (8 if slanted else 11)
        turn = f' transform="rotate(-55 {x:g} {y:g})" text-anchor="end"' if slanted else ' text-anchor="middle"'
        parts.append(
            f'<rect x="{i * width + 1:g}" y="{height - h:.1f}" width="{width - 2:g}" height="{max(h, 0.5):.1f}"'
            f' fill="{fill}"><title>{esc(tip)}</title></rect>'
            f'<text x="{x:g}" y="{y:g}"{turn} font-size="9">{esc(name[:8])}</text>'
        )
    return wrap(len(values) * width, height + (40 if slanted else 14), "".join(parts), label)


def scatter(
    xs: Sequence[float],
    ys: Sequence[float],
    tooltips: Sequence[str],
    *,
    xlabel: str,
    ylabel: str,
    diagonal: bool = False,
    xlog: bool = False,
    xcats: Sequence[str] | None = None,
    colours: Sequence[str] | None = None,
    size: tuple[float, float] = (320, 260),
    label: str = "",
) -> str:
    """Points with tooltips; ``diagonal`` draws y = x; ``xcats`` places x at category positions 0..n-1."""
    width, height = size
    fx = (lambda x: math.log10(x)) if xlog else float
    fin = [(fx(x), y, t, i) for i, (x, y, t) in enumerate(zip(xs, ys, tooltips, strict=True)) if math.isfinite(y)]
    if not fin:
        return wrap(width, 40, '<text x="8" y="24">no finite values</text>', label)
    x0, x1 = min(f[0] for f in fin), max(f[0] for f in fin)
    y0, y1 = min(f[1] for f in fin), max(f[1] for f in fin)
    if diagonal:
        x0 = y0 = min(x0, y0)
        x1 = y1 = max(x1, y1)
    dx, dy = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    x0, x1, y0, y1 = x0 - 0.06 * dx, x1 + 0.06 * dx, y0 - 0.06 * dy, y1 + 0.06 * dy
    L, T, B = 56, 8, 34
    pw, ph = width - L - 8, height - T - B

    def px(x: float) -> float:
        return L + (x - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return T + (y1 - y) / (y1 - y0) * ph

    parts = [f'<rect x="{L}" y="{T}" width="{pw:g}" height="{ph:g}" fill="none" stroke="#999"/>']
    if diagonal:
        parts.append(f'<line x1="{px(x0):.1f}" y1="{py(x0):.1f}" x2="{px(x1):.1f}" y2="{py(x1):.1f}" stroke="#bbb"/>')
    for y in ticks(y0, y1, 4):
        parts.append(f'<text x="{L - 4}" y="{py(y) + 4:.1f}" text-anchor="end">{num(y, 3)}</text>')
    if xcats is not None:
        xt = [(float(k), c) for k, c in enumerate(xcats)]
    else:  # a few distinct values (a sweep's grid): a tick at each
        distinct = sorted({f[0] for f in fin})
        xt = [(x, num(10**x if xlog else x, 3)) for x in (distinct if len(distinct) <= 8 else ticks(x0, x1, 4))]
    for x, name in xt:
        parts.append(f'<text x="{px(x):.1f}" y="{T + ph + 14:g}" text-anchor="middle">{esc(name)}</text>')
    parts.append(
        f'<text x="{L + pw / 2:g}" y="{height - 4:g}" text-anchor="middle">{esc(xlabel)}</text>'
        f'<text x="10" y="{T + ph / 2:g}" transform="rotate(-90 10 {T + ph / 2:g})" '
        f'text-anchor="middle">{esc(ylabel)}</text>'
    )
    for x, y, t, i in fin:
        c = colours[i] if colours is not None else "#1f77b4"
        parts.append(
            f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.5" fill="{c}" fill-opacity="0.7">'
            f"<title>{esc(t)}</title></circle>"
        )
    return wrap(width, height, "".join(parts), label)
