"""Small server-side SVG charts: no JavaScript library, nothing loaded from elsewhere."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe


def bar_chart(points: Sequence[tuple[str, int]], *, title: str, width: int = 720,
              height: int = 180, label_every: int = 5) -> SafeString:
    """A bar per point (label, value), the value on hover, every ``label_every``-th label
    under the axis. Labels and the title are escaped."""
    top, bottom, left = 16, 22, 36
    plot_h, plot_w = height - top - bottom, width - left - 4
    peak = max((value for _, value in points), default=0) or 1
    step = plot_w / max(len(points), 1)
    parts = [f'<svg class="mw-chart" role="img" aria-label="{escape(title)}" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
             'xmlns="http://www.w3.org/2000/svg">',
             f'<title>{escape(title)}</title>',
             f'<text x="0" y="{top - 4}">{peak}</text>',
             f'<text x="0" y="{top + plot_h}">0</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width}" y2="{top + plot_h}" stroke="#999"/>']
    for i, (label, value) in enumerate(points):
        bar_h = plot_h * value / peak
        x = left + i * step
        parts.append(f'<rect class="bar" x="{x + 1:.1f}" y="{top + plot_h - bar_h:.1f}" '
                     f'width="{max(step - 2, 1):.1f}" height="{bar_h:.1f}">'
                     f'<title>{escape(label)}: {value}</title></rect>')
        if i % label_every == 0:
            parts.append(f'<text x="{x:.1f}" y="{height - 6}">{escape(label)}</text>')
    parts.append("</svg>")
    return mark_safe("".join(parts))  # every interpolated label is escaped above
