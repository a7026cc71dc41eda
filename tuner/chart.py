"""A self-contained HTML page with an SVG chart: per-query latency over time, actions marked.

No plotting library: the demo must leave a picture on a machine with nothing but Python.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 1000, 480, 70, 220, 30, 50


@dataclass(frozen=True, slots=True)
class Point:
    """Mean latency of one query over one interval ending `seconds` after the start."""

    seconds: float
    query: str
    mean_ms: float


@dataclass(frozen=True, slots=True)
class Marker:
    """A vertical line at `seconds`: an index built, kept, rolled back, a freeze..."""

    seconds: float
    label: str
    color: str = "#444"


def _log_y(value: float, low: float, high: float) -> float:
    span = math.log10(high) - math.log10(low) or 1.0
    fraction = (math.log10(max(value, low)) - math.log10(low)) / span
    return TOP + (1 - fraction) * (HEIGHT - TOP - BOTTOM)


def render(title: str, points: Sequence[Point], markers: Sequence[Marker]) -> str:
    """The page as a string: one line per query on a log scale, one rule per marker."""
    queries = sorted({p.query for p in points})
    t_max = max([p.seconds for p in points] + [m.seconds for m in markers] + [1.0])
    values = [p.mean_ms for p in points if p.mean_ms > 0] or [1.0]
    low = 10 ** math.floor(math.log10(min(values)))
    high = 10 ** math.ceil(math.log10(max(values) * 1.01))
    plot_w = WIDTH - LEFT - RIGHT

    def x(seconds: float) -> float:
        return LEFT + seconds / t_max * plot_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{HEIGHT - TOP - BOTTOM}" '
        'fill="none" stroke="#ccc"/>',
    ]
    decade = low
    while decade <= high:
        y = _log_y(decade, low, high)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#eee"/>')  # fmt: skip
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{decade:g} ms</text>')
        decade *= 10
    for i in range(6):
        seconds = t_max * i / 5
        parts.append(f'<text x="{x(seconds):.1f}" y="{HEIGHT - BOTTOM + 18}" '
                     f'text-anchor="middle">{seconds:.0f} s</text>')  # fmt: skip
    for marker in markers:
        mx = x(marker.seconds)
        parts.append(f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{TOP}" y2="{HEIGHT - BOTTOM}" '
                     f'stroke="{marker.color}" stroke-dasharray="4 3"/>')  # fmt: skip
        parts.append(f'<text transform="translate({mx + 3:.1f},{TOP + 4}) rotate(90)" '
                     f'fill="{marker.color}">{html.escape(marker.label)}</text>')  # fmt: skip
    for i, query in enumerate(queries):
        color = PALETTE[i % len(PALETTE)]
        series = sorted((p for p in points if p.query == query), key=lambda p: p.seconds)
        path = " ".join(f"{x(p.seconds):.1f},{_log_y(p.mean_ms, low, high):.1f}" for p in series)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        ly = TOP + 14 + 18 * i
        parts.append(f'<rect x="{WIDTH - RIGHT + 12}" y="{ly - 9}" width="12" height="3" '
                     f'fill="{color}"/>')  # fmt: skip
        parts.append(f'<text x="{WIDTH - RIGHT + 30}" y="{ly}">{html.escape(query)}</text>')
    parts.append("</svg>")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head><body>"
        f"<h2 style='font-family:sans-serif'>{html.escape(title)}</h2>"
        + "\n".join(parts)
        + "<p style='font-family:sans-serif'>Mean latency per query per interval, log scale. "
        "Dashed lines: the tuner's actions.</p></body></html>"
    )
