"""Small server-side SVG charts: no JavaScript library, nothing loaded from elsewhere.

Every colour comes from the stylesheet (static/dashboard/dashboard.css) through the
admin's CSS variables, never from attributes here: the admin switches those variables
for its dark theme (``prefers-color-scheme`` and ``data-theme="dark"``), so a hard-coded
fill is what once made the bars vanish on a dark background.

A chart is a series of days. Both kinds share one frame: a y axis with round ticks and a
title, a date axis with its title, and the last day (today) labelled "today" with a
dashed marker. Each day has an invisible hover target whose tooltip reads
``<ISO date>: <value>``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

Point = tuple[dt.date, int]

#: A small canvas, scaled by the stylesheet to the column's width: its text stays
#: readable from a phone (about 0.7 times) to a laptop (about 1.3 times).
WIDTH, HEIGHT = 480, 190
TOP, BOTTOM, LEFT, RIGHT = 12, 46, 58, 10
#: Room (in canvas units) between a date label's centre and today's, so the two do not
#: overlap even at the phone's larger font.
TODAY_CLEARANCE = 72


def nice_step(peak: int, ticks: int = 4) -> int:
    """A round tick step (1, 2 or 5 times a power of ten) giving about ``ticks`` ticks
    up to ``peak``."""
    raw = max(peak, 1) / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= raw:
            return max(int(factor * magnitude), 1)
    return int(10 * magnitude)  # pragma: no cover - the loop always returns


@dataclass(frozen=True)
class _Frame:
    """Where a series of ``count`` days goes in the plot area."""

    count: int
    top_value: int

    @property
    def plot_w(self) -> float:
        return WIDTH - LEFT - RIGHT

    @property
    def plot_h(self) -> float:
        return HEIGHT - TOP - BOTTOM

    @property
    def slot(self) -> float:
        return self.plot_w / max(self.count, 1)

    def x(self, index: int) -> float:
        """The centre of day ``index``'s slot."""
        return LEFT + (index + 0.5) * self.slot

    def y(self, value: float) -> float:
        return TOP + self.plot_h - self.plot_h * value / self.top_value


def _day_label(day: dt.date) -> str:
    return f"{day:%b} {day.day}"


def _open(points: Sequence[Point], *, title: str, y_label: str, x_label: str,
          kind: str) -> tuple[_Frame, list[str]]:
    """The SVG's start: title, grid and y ticks, axes and their titles."""
    peak = max((value for _, value in points), default=0)
    step = nice_step(peak)
    frame = _Frame(len(points), max(step * math.ceil(peak / step), step))
    parts = [f'<svg class="mw-chart mw-chart-{kind}" role="img" aria-label="{escape(title)}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
             f'data-days="{len(points)}" xmlns="http://www.w3.org/2000/svg">',
             f"<title>{escape(title)}</title>"]
    for tick in range(0, frame.top_value + 1, step):
        y = frame.y(tick)
        parts.append(f'<line class="mw-grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" '
                     f'y2="{y:.1f}"/>')
        parts.append(f'<text class="mw-tick" x="{LEFT - 5}" y="{y:.1f}" '
                     f'text-anchor="end" dominant-baseline="middle">{tick:,}</text>')
    base = frame.y(0)
    parts += [f'<line class="mw-axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base:.1f}"/>',
              f'<line class="mw-axis" x1="{LEFT}" y1="{base:.1f}" x2="{WIDTH - RIGHT}" '
              f'y2="{base:.1f}"/>',
              f'<text class="mw-axis-title" transform="translate(2 {TOP + frame.plot_h / 2:.1f}) '
              f'rotate(-90)" text-anchor="middle" dominant-baseline="hanging">'
              f"{escape(y_label)}</text>",
              f'<text class="mw-axis-title" x="{LEFT + frame.plot_w / 2:.1f}" y="{HEIGHT - 4}" '
              f'text-anchor="middle">{escape(x_label)}</text>']
    return frame, parts


def _close(frame: _Frame, points: Sequence[Point], parts: list[str], label_every: int,
           today: dt.date | None) -> SafeString:
    """Date labels (today's always, as "today"), the today marker and hover targets."""
    base = frame.y(0)
    last = len(points) - 1
    for i, (day, _value) in enumerate(points):
        is_today = day == today
        # A regular label too near today's (end-anchored, so it reaches left) would
        # overlap it.
        if is_today or (i % label_every == 0 and (last - i) * frame.slot >= TODAY_CLEARANCE):
            label = "today" if is_today else _day_label(day)
            css = "mw-day mw-today-label" if is_today else "mw-day"
            parts.append(f'<text class="{css}" x="{frame.x(i):.1f}" y="{base + 5:.1f}" '
                         f'text-anchor="{"end" if is_today and i == last else "middle"}" '
                         f'dominant-baseline="hanging">{escape(label)}</text>')
        if is_today:
            parts.append(f'<line class="mw-today" x1="{frame.x(i):.1f}" y1="{TOP}" '
                         f'x2="{frame.x(i):.1f}" y2="{base:.1f}"/>')
    for i, (day, value) in enumerate(points):
        parts.append(f'<rect class="mw-hit" x="{LEFT + i * frame.slot:.1f}" y="{TOP}" '
                     f'width="{frame.slot:.1f}" height="{frame.plot_h:.1f}">'
                     f"<title>{day.isoformat()}: {value}</title></rect>")
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated text is escaped or a number


def bar_chart(points: Sequence[Point], *, title: str, y_label: str, x_label: str = "Day",
              today: dt.date | None = None, label_every: int = 5) -> SafeString:
    """A bar per day (its value in the tooltip); for counts per day."""
    frame, parts = _open(points, title=title, y_label=y_label, x_label=x_label, kind="bars")
    width = max(frame.slot - 2, 1)
    for i, (day, value) in enumerate(points):
        top = frame.y(value)
        parts.append(f'<rect class="bar" x="{frame.x(i) - width / 2:.1f}" y="{top:.1f}" '
                     f'width="{width:.1f}" height="{frame.y(0) - top:.1f}" '
                     f'data-day="{day.isoformat()}" data-value="{value}"/>')
    return _close(frame, points, parts, label_every, today)


def line_chart(points: Sequence[Point], *, title: str, y_label: str, x_label: str = "Day",
               today: dt.date | None = None, label_every: int = 5) -> SafeString:
    """A line with the area under it shaded, and the last value written at its end; for
    a running total."""
    frame, parts = _open(points, title=title, y_label=y_label, x_label=x_label, kind="line")
    if points:
        coords = [(frame.x(i), frame.y(value)) for i, (_, value) in enumerate(points)]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        base = frame.y(0)
        parts.append(f'<path class="mw-area" d="M{coords[0][0]:.1f},{base:.1f} L{line} '
                     f'L{coords[-1][0]:.1f},{base:.1f} Z"/>')
        parts.append(f'<polyline class="mw-line" points="{line}" data-values="'
                     f'{",".join(str(value) for _, value in points)}"/>')
        end_x, end_y = coords[-1]
        parts.append(f'<circle class="mw-end" cx="{end_x:.1f}" cy="{end_y:.1f}" r="3.5"/>')
        parts.append(f'<text class="mw-end-label" x="{end_x - 6:.1f}" '
                     f'y="{max(end_y - 7, TOP + 9):.1f}" text-anchor="end">'
                     f"{points[-1][1]:,}</text>")
    return _close(frame, points, parts, label_every, today)
