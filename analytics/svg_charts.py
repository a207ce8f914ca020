"""Small server-side SVG charts for the admin: bars, lines and a timeline of lanes.

No chart library and nothing for the browser to fetch: each chart is inline SVG markup with
a ``<title>`` and ``<desc>`` (read by screen readers), labelled axes, and the numbers it
draws as table rows, which the template prints under it. Text and grid lines use
``currentColor``, so the admin's light and dark themes both read; series colours are the
Okabe-Ito palette, told apart by colour-blind readers too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

BLUE = "#0072B2"
ORANGE = "#E69F00"
GREEN = "#009E73"
RED = "#D55E00"
PURPLE = "#CC79A7"
SKY = "#56B4E9"
GREY = "#7F7F7F"
PALETTE = (BLUE, ORANGE, GREEN, RED, PURPLE, SKY, GREY)

WIDTH = 720
HEIGHT = 230
LEFT, RIGHT, TOP, BOTTOM = 80, 16, 30, 46
# At most this many x labels are written; the others stay in the table below the chart.
MAX_X_LABELS = 12


def number(value: float | None, digits: int = 0) -> str:
    """A table cell: thousands separated, an en dash for no value."""
    if value is None:
        return "\u2013"
    return f"{value:,.{digits}f}"


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str = BLUE


@dataclass(frozen=True)
class Chart:
    """What a template shows: the SVG, then a table of the same numbers."""

    chart_id: str
    title: str
    description: str
    svg: SafeString
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass(frozen=True)
class Mark:
    """One item on a timeline lane: a bar from ``start_s`` to ``end_s``, or a point."""

    start_s: float
    end_s: float | None
    label: str
    color: str = BLUE


@dataclass(frozen=True)
class Lane:
    name: str
    marks: Sequence[Mark]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above ``value`` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def axis_top(peak: float) -> float:
    """The top of a value axis with four grid steps, each a round number."""
    return 4 * nice_ceiling(peak / 4) if peak > 0 else 4.0


def bar_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    stacked: bool = False,
    digits: int = 0,
) -> Chart:
    """Bars per label: side by side, or stacked (one total bar per label)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(labels))]
    peak = max(totals) if stacked and totals else _peak(series)
    top = axis_top(peak)
    slot = plot_w / max(1, len(labels))
    groups = 1 if stacked else max(1, len(series))
    bar_w = max(1.0, slot * 0.8 / groups)
    parts: list[str] = []
    for i, label in enumerate(labels):
        base = 0.0
        for k, one in enumerate(series):
            value = one.values[i] or 0
            height = value / top * plot_h
            x = LEFT + i * slot + slot * 0.1 + (0 if stacked else k * bar_w)
            y = TOP + plot_h - base - height
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    "<title>{}, {}: {}</title></rect>",
                    _f(x),
                    _f(y),
                    _f(bar_w),
                    _f(height),
                    one.color,
                    label,
                    one.name,
                    number(one.values[i], digits),
                )
            )
            if stacked:
                base += height
    svg = _frame(chart_id, title, description, labels, series, x_label, y_label, top, digits, parts)
    return Chart(chart_id, title, description, svg, *_table(x_label, labels, series, digits))


def line_chart(
    *,
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    digits: int = 0,
) -> Chart:
    """One line per series; a missing value breaks the line (a day without data)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = axis_top(_peak(series))
    slot = plot_w / max(1, len(labels))
    parts: list[str] = []
    for one in series:
        points: list[tuple[float, float, str, float]] = []
        runs: list[list[tuple[float, float]]] = [[]]
        for i, value in enumerate(one.values):
            if value is None:
                runs.append([])
                continue
            xy = (LEFT + (i + 0.5) * slot, TOP + plot_h - value / top * plot_h)
            runs[-1].append(xy)
            points.append((*xy, labels[i], value))
        for run in runs:
            if len(run) > 1:
                coords = " ".join(f"{_f(x)},{_f(y)}" for x, y in run)
                parts.append(
                    format_html(
                        '<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>',
                        coords,
                        one.color,
                    )
                )
        for x, y, label, value in points:
            parts.append(
                format_html(
                    '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}, {}: {}</title></circle>',
                    _f(x),
                    _f(y),
                    one.color,
                    label,
                    one.name,
                    number(value, digits),
                )
            )
    svg = _frame(chart_id, title, description, labels, series, x_label, y_label, top, digits, parts)
    return Chart(chart_id, title, description, svg, *_table(x_label, labels, series, digits))


def timeline(
    *, chart_id: str, title: str, description: str, duration_s: float, lanes: Sequence[Lane]
) -> SafeString:
    """Lanes of marks over the seconds of one call (the caller prints the tables)."""
    lane_h, left, head = 34, 130, 8
    height = head + lane_h * len(lanes) + 40
    plot_w = WIDTH - left - RIGHT
    span = nice_ceiling(max(duration_s, 1.0))
    x_of: Callable[[float], float] = lambda s: left + min(max(s, 0.0), span) / span * plot_w  # noqa: E731
    parts: list[str] = []
    for n, lane in enumerate(lanes):
        y = head + n * lane_h
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}</text>'
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" '
                'stroke-opacity="0.2"/>',
                left - 8,
                y + lane_h / 2,
                lane.name,
                left,
                WIDTH - RIGHT,
                y + lane_h / 2,
                y + lane_h / 2,
            )
        )
        for mark in lane.marks:
            x = x_of(mark.start_s)
            if mark.end_s is None:
                parts.append(
                    format_html(
                        '<path d="M{} {} l6 9 l-6 9 l-6 -9 z" fill="{}"><title>{}</title></path>',
                        _f(x),
                        y + lane_h / 2 - 9,
                        mark.color,
                        mark.label,
                    )
                )
                continue
            width = max(2.0, x_of(mark.end_s) - x)
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}" fill-opacity="0.85">'
                    "<title>{}</title></rect>",
                    _f(x),
                    y + 7,
                    _f(width),
                    lane_h - 14,
                    mark.color,
                    mark.label,
                )
            )
    axis_y = head + lane_h * len(lanes)
    parts.append(_x_axis_line(left, axis_y))
    for k in range(6):
        seconds = span * k / 5
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="middle">{}</text>',
                _f(x_of(seconds)),
                axis_y + 16,
                _seconds_label(seconds),
            )
        )
    parts.append(
        format_html(
            '<text x="{}" y="{}" text-anchor="middle">{}</text>',
            left + plot_w / 2,
            axis_y + 34,
            "time since the call started",
        )
    )
    return _svg(chart_id, title, description, height, parts)


def _peak(series: Sequence[Series]) -> float:
    return max((v for s in series for v in s.values if v is not None), default=0.0)


def _f(value: float) -> str:
    return f"{value:.1f}"


def _seconds_label(seconds: float) -> str:
    if seconds >= 120:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def _x_axis_line(left: float, y: float) -> str:
    return format_html(
        '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-opacity="0.6"/>',
        left,
        WIDTH - RIGHT,
        y,
        y,
    )


def _frame(
    chart_id: str,
    title: str,
    description: str,
    labels: Sequence[str],
    series: Sequence[Series],
    x_label: str,
    y_label: str,
    top: float,
    digits: int,
    plot: list[str],
) -> SafeString:
    """Grid, axes, their labels and the legend around the plotted marks."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts: list[str] = []
    for k in range(5):
        value = top * k / 4
        y = TOP + plot_h - plot_h * k / 4
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" '
                'stroke-opacity="0.15"/><text x="{}" y="{}" text-anchor="end" '
                'dominant-baseline="middle">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                _f(y),
                _f(y),
                LEFT - 6,
                _f(y),
                number(value, 2 if value % 1 else 0),
            )
        )
    parts.extend(plot)
    parts.append(_x_axis_line(LEFT, TOP + plot_h))
    slot = plot_w / max(1, len(labels))
    step = max(1, math.ceil(len(labels) / MAX_X_LABELS))
    for i in range(0, len(labels), step):
        parts.append(
            format_html(
                '<text x="{}" y="{}" text-anchor="middle">{}</text>',
                _f(LEFT + (i + 0.5) * slot),
                TOP + plot_h + 16,
                labels[i],
            )
        )
    parts.append(
        format_html(
            '<text x="{}" y="{}" text-anchor="middle">{}</text>'
            '<text transform="translate(14 {}) rotate(-90)" text-anchor="middle">{}</text>',
            LEFT + plot_w / 2,
            HEIGHT - 6,
            x_label,
            TOP + plot_h / 2,
            y_label,
        )
    )
    x = LEFT
    for one in series:  # the legend, on the top line
        parts.append(
            format_html(
                '<rect x="{}" y="8" width="12" height="12" fill="{}"/>'
                '<text x="{}" y="14" dominant-baseline="middle">{}</text>',
                x,
                one.color,
                x + 16,
                one.name,
            )
        )
        x += 28 + 7 * len(one.name)
    return _svg(chart_id, title, description, HEIGHT, parts)


def _svg(chart_id: str, title: str, description: str, height: int, parts: list[str]) -> SafeString:
    head = format_html(
        '<svg class="vp-chart" id="{0}" viewBox="0 0 {1} {2}" role="img" '
        'aria-labelledby="{0}-title {0}-desc" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{0}-title">{3}</title><desc id="{0}-desc">{4}</desc>',
        chart_id,
        WIDTH,
        height,
        title,
        description,
    )
    # Every part was built by format_html, which escaped what came from data.
    return mark_safe(head + "".join(parts) + "</svg>")  # noqa: S308


def _table(
    x_label: str, labels: Sequence[str], series: Sequence[Series], digits: int
) -> tuple[list[str], list[list[str]]]:
    headers = [x_label, *(s.name for s in series)]
    rows = [
        [label, *(number(s.values[i], digits) for s in series)] for i, label in enumerate(labels)
    ]
    return headers, rows
