"""Charts as server-rendered SVG: no JavaScript, no chart library, nothing to build or vendor.

Colours and fonts come from the console's stylesheet (classes `s0`, `s1`... per series), so the
markup carries no inline style (the console's Content-Security-Policy allows none). Every point
and bar has a `<title>` (its exact value, shown on hover and read by screen readers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

Format = Callable[[float], str]

WIDTH, HEIGHT = 640, 200
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 12, 28  # the plot area's margins (axis labels)


@dataclass(frozen=True, slots=True)
class Series:
    """One line: a name for the legend and (epoch seconds, value) points."""

    name: str
    points: Sequence[tuple[float, float]]


def number(value: float) -> str:
    """12345 -> 12.3k: short axis labels."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.3g}" if value != int(value) else str(int(value))


def _nice_top(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (the y axis' top)."""
    if value <= 0:
        return 1.0
    scale = 10 ** math.floor(math.log10(value))
    return next(step * scale for step in (1, 2, 5, 10) if step * scale >= value)


def _empty(label: str) -> Markup:
    return Markup(f'<figure class="chart"><figcaption>{label}</figcaption><p class="empty">no calls in this period</p>'
                  "</figure>")  # fmt: skip


def _time_label(at: float, span: float) -> str:
    return time.strftime("%H:%M" if span <= 2 * 86400 else "%d %b", time.gmtime(at))


def line_chart(title: str, series: Sequence[Series], fmt: Format = number, *, step: float = 3600) -> Markup:
    """A time-series line chart of `series` (points `step` seconds apart; gaps are zero-free:
    a missing bucket is just absent)."""
    points = [p for s in series for p in s.points]
    label = escape(title)
    if not points:
        return _empty(label)
    x0 = min(x for x, _ in points)
    x1 = max(x for x, _ in points) + step
    top = _nice_top(max(y for _, y in points))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x + step / 2 - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        return TOP + plot_h - y / top * plot_h

    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{label}">']
    for i in range(5):  # grid lines and y labels
        y = top * i / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}"/>')
        parts.append(f'<text class="axis" x="{LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{escape(fmt(y))}</text>')
    span = x1 - x0
    for frac in (0.0, 0.5, 1.0):  # x labels: start, middle, end
        at = x0 + span * frac
        anchor = ("start", "middle", "end")[int(frac * 2)]
        x = LEFT + frac * plot_w
        parts.append(
            f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">{_time_label(at, span)} UTC</text>'
        )
    for n, s in enumerate(series):
        ordered = sorted(s.points)
        if not ordered:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in ordered)
        parts.append(f'<polyline class="line s{n}" points="{path}"/>')
        for x, y in ordered:
            tip = f"{escape(s.name)} {time.strftime('%Y-%m-%d %H:%M', time.gmtime(x))} UTC: {escape(fmt(y))}"
            parts.append(
                f'<circle class="dot s{n}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5"><title>{tip}</title></circle>'
            )
    parts.append("</svg>")
    legend = "".join(f'<span class="key s{n}">{escape(s.name)}</span>' for n, s in enumerate(series))
    return Markup(f'<figure class="chart"><figcaption>{label} {legend}</figcaption>{"".join(parts)}</figure>')


def bar_chart(title: str, bars: Sequence[tuple[str, float]], fmt: Format = number) -> Markup:
    """Horizontal bars, one per (label, value), longest first as given."""
    label = escape(title)
    if not bars:
        return _empty(label)
    row, name_w = 22, 180
    height = row * len(bars) + 8
    top = max(v for _, v in bars) or 1.0
    plot_w = WIDTH - name_w - 90
    parts = [f'<svg viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{label}">']
    for i, (name, value) in enumerate(bars):
        y = 4 + i * row
        w = max(1.0, value / top * plot_w) if value else 0.0
        shown = name if len(name) <= 28 else name[:27] + "…"
        parts.append(f'<text class="axis" x="{name_w - 6}" y="{y + 15}" text-anchor="end">{escape(shown)}</text>')
        parts.append(
            f'<rect class="bar s0" x="{name_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}">'
            f"<title>{escape(name)}: {escape(fmt(value))}</title></rect>"
        )
        parts.append(f'<text class="axis" x="{name_w + w + 6:.1f}" y="{y + 15}">{escape(fmt(value))}</text>')
    parts.append("</svg>")
    return Markup(f'<figure class="chart"><figcaption>{label}</figcaption>{"".join(parts)}</figure>')
