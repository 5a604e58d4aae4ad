"""Line charts as SVG, drawn by the server.

Why the server: the operations page stays a plain HTML file with no build step and no third-party script to
vendor and keep patched, and the same chart can be linked from a report. Each chart carries a <title> and <desc>
with its data, so it is readable without sight.
"""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD = 640, 220, 44
MIN_WIDTH, MAX_WIDTH = 280, 1600
FONT_PX = 12  # drawn at the width asked for, so the text stays this size on the page (11 px at least)
LABEL_SPACING_PX = 56  # room for one "HH:MM" label on the time axis


def line_chart(title: str, unit: str, points: list[tuple[str, float | None]], width: int = WIDTH) -> str:
    """`width`: the width the chart is shown at, in CSS pixels; the page asks for its own, so nothing is scaled
    down to unreadable text. Fewer than two values say so instead of drawing a lone dot."""
    values = [v for _, v in points if v is not None]
    top = max(values, default=1.0) or 1.0
    step = (width - 2 * PAD) / max(1, len(points) - 1)
    slug = "".join(c if c.isalnum() else "-" for c in title.lower())

    def x(i: int) -> float:
        return PAD + i * step

    def y(v: float) -> float:
        return HEIGHT - PAD - (v / top) * (HEIGHT - 2 * PAD)

    segments: list[list[str]] = [[]]
    for i, (_, value) in enumerate(points):
        if value is None:
            segments.append([])
        else:
            segments[-1].append(f"{x(i):.1f},{y(value):.1f}")
    lines = "".join(
        f'<polyline fill="none" stroke="#d9480f" stroke-width="2" points="{" ".join(s)}"/>' for s in segments if s
    )
    dots = "".join(
        f'<circle cx="{x(i):.1f}" cy="{y(v):.1f}" r="3" fill="#d9480f"><title>{escape(label)}: {v:.2f} {escape(unit)}'
        "</title></circle>"
        for i, (label, v) in enumerate(points)
        if v is not None
    )
    every = max(1, -(-len(points) * LABEL_SPACING_PX // max(1, width - 2 * PAD)))
    labels = "".join(
        f'<text x="{x(i):.1f}" y="{HEIGHT - PAD + 18}" font-size="{FONT_PX}" text-anchor="middle">'
        f"{escape(label)}</text>"
        for i, (label, _) in enumerate(points)
        if i % every == 0
    )
    if len(values) < 2:  # one point is no trend
        lines, dots = "", ""
        labels += (
            f'<text x="{width / 2}" y="{HEIGHT / 2}" font-size="{FONT_PX + 2}" text-anchor="middle" fill="#495057">'
            "Not enough data yet</text>"
        )
    description = "; ".join(f"{label}: {'no data' if v is None else f'{v:.2f} {unit}'}" for label, v in points)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {HEIGHT}" role="img" '
        f'aria-labelledby="{slug}-title {slug}-desc" font-family="system-ui, sans-serif">'
        f'<title id="{slug}-title">{escape(title)}</title><desc id="{slug}-desc">{escape(description)}</desc>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{width - PAD}" y2="{HEIGHT - PAD}" stroke="#868e96"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#868e96"/>'
        f'<text x="{PAD - 6}" y="{PAD + 4}" font-size="{FONT_PX}" text-anchor="end">{top:.3g}</text>'
        f'<text x="{PAD - 6}" y="{HEIGHT - PAD}" font-size="{FONT_PX}" text-anchor="end">0</text>'
        f'<text x="{width / 2}" y="20" font-size="{FONT_PX + 2}" text-anchor="middle">{escape(title)} ({escape(unit)})'
        f"</text>{lines}{dots}{labels}</svg>"
    )
