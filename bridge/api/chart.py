"""The overview's chart: categories over recent runs as inline SVG, drawn on the server."""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

from bridge.domain.reconciliation import CATEGORIES, Category
from bridge.services.ports.reconciliation import RunInfo

# Matched dwarfs everything else; the chart shows what needs looking at.
SHOWN = [c for c in Category if c is not Category.MATCHED]
# One distinct colour per category shown (a test checks there are enough).
COLOURS = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d",
    "#17becf", "#393b79",
]  # fmt: skip
WIDTH, HEIGHT, LEFT, BOTTOM, LEGEND = 720, 300, 48, 28, 230


def category_chart(runs: Sequence[RunInfo]) -> Markup:
    """Stacked bars, one per run, of every category but matched; a legend beside."""
    if not runs:
        return Markup('<p class="muted">尚无对账记录 No runs yet.</p>')
    plot_w, plot_h = WIDTH - LEFT - LEGEND, HEIGHT - BOTTOM - 10
    top = max(1, max(sum(r.counts.get(c.value, 0) for c in SHOWN) for r in runs))
    bar_w = plot_w / len(runs)
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="categories over recent runs">',
        f'<text x="4" y="14" class="axis">{top}</text>',
        f'<text x="4" y="{HEIGHT - BOTTOM}" class="axis">0</text>',
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{LEFT + plot_w}" y2="{HEIGHT - BOTTOM}" '
        'stroke="#888"/>',
    ]
    for i, run in enumerate(runs):
        x = LEFT + i * bar_w + 4
        y = float(HEIGHT - BOTTOM)
        for colour, category in zip(COLOURS, SHOWN, strict=True):
            n = run.counts.get(category.value, 0)
            if not n:
                continue
            h = n / top * plot_h
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(bar_w - 8, 2):.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>#{run.run_id} {escape(category.value)}: {n}</title></rect>'
            )
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 10}" class="axis">#{run.run_id}</text>')
    for j, (colour, category) in enumerate(zip(COLOURS, SHOWN, strict=True)):
        ly = 12 + j * 15
        lx = WIDTH - LEGEND + 10
        info = CATEGORIES[category]
        parts.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>')
        parts.append(
            f'<text x="{lx + 14}" y="{ly}" class="legend">{escape(info.zh)} '
            f"{escape(category.value)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
