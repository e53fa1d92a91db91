"""Small bar charts as inline SVG, rendered on the server: no script, no image requests,
nothing for a browser to fetch. Pure: numbers and labels in, markup out.

Every label is escaped here (:func:`html.escape`): a pair or a date never becomes markup.
Colours are left to the page's stylesheet (classes ``bar``, ``bar bad``), so that the
Content-Security-Policy needs no inline style.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from syncd import display

WIDTH = 320
HEIGHT = 110
TOP = 18  # room for the title line
BOTTOM = 14  # room for the axis labels
GAP_RATIO = 0.2  # of each bar's slot


@dataclass(frozen=True, slots=True)
class Bar:
    label: str  # the tooltip: what the bar is ("2024-05-01", "alice/default 12:00")
    value: float
    bad: bool = False  # drawn in the warning colour (a failed run)


def count(value: float) -> str:
    return f"{value:.0f}"


def seconds(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    return f"{value / 60:.1f} min" if value < 3600 else f"{value / 3600:.1f} h"


def size(value: float) -> str:
    """Bytes as ``512 B``, ``1.5 KiB`` ... ``3.0 GiB`` (:func:`syncd.display.size` of a chart's float)."""
    return display.size(round(value))


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    fmt: Callable[[float], str] = count,
    first: str = "",
    last: str = "",
) -> str:
    """One chart: a bar per item, scaled to the largest, each with a tooltip ``label: value``;
    the title with the largest value, ``first`` and ``last`` under the two ends of the axis.
    No bars (or all zero) still draws the frame, with "no data" or flat bars."""
    peak = max((b.value for b in bars), default=0.0)
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{_e(title)}">',
        f'<text class="title" x="0" y="12">{_e(title)}{_e(f" (max {fmt(peak)})" if bars else "")}</text>',
        f'<line class="axis" x1="0" y1="{HEIGHT - BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - BOTTOM}"/>',
    ]
    if not bars:
        parts.append(f'<text class="empty" x="{WIDTH / 2:.0f}" y="{TOP + plot_h / 2:.0f}">no data</text>')
    slot = WIDTH / max(1, len(bars))
    for i, bar in enumerate(bars):
        height = 0.0 if peak <= 0 else max(0.0, bar.value) / peak * plot_h
        height = max(height, 1.0)  # a zero still shows as a hairline: the run happened
        x = i * slot + slot * GAP_RATIO / 2
        y = HEIGHT - BOTTOM - height
        css = "bar bad" if bar.bad else "bar"
        parts.append(
            f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{slot * (1 - GAP_RATIO):.1f}" height="{height:.1f}">'
            f"<title>{_e(f'{bar.label}: {fmt(bar.value)}')}</title></rect>"
        )
    if first:
        parts.append(f'<text class="tick" x="0" y="{HEIGHT - 2}">{_e(first)}</text>')
    if last:
        parts.append(f'<text class="tick end" x="{WIDTH}" y="{HEIGHT - 2}" text-anchor="end">{_e(last)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _e(text: str) -> str:
    return html.escape(text, quote=True)
