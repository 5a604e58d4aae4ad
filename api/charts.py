"""Line charts as SVG, drawn by the server.

Why the server: the operations page stays a plain HTML file with no build step and no third-party script to
vendor and keep patched, and the same chart can be linked from a report. Each chart carries a <title> and <desc>
with its data, so it is readable without sight.
"""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD = 640, 220, 40


def line_chart(title: str, unit: str, points: list[tuple[str, float | None]]) -> str:
    values = [v for _, v in points if v is not None]
    top = max(values, default=1.0) or 1.0
    step = (WIDTH - 2 * PAD) / max(1, len(points) - 1)

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
    labels = "".join(
        f'<text x="{x(i):.1f}" y="{HEIGHT - PAD + 16}" font-size="10" text-anchor="middle">{escape(label)}</text>'
        for i, (label, _) in enumerate(points)
        if i % max(1, len(points) // 6) == 0
    )
    description = "; ".join(f"{label}: {'no data' if v is None else f'{v:.2f} {unit}'}" for label, v in points)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="chart-title chart-desc" font-family="system-ui, sans-serif">'
        f'<title id="chart-title">{escape(title)}</title><desc id="chart-desc">{escape(description)}</desc>'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#868e96"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#868e96"/>'
        f'<text x="{PAD - 6}" y="{PAD + 4}" font-size="10" text-anchor="end">{top:.2f}</text>'
        f'<text x="{PAD - 6}" y="{HEIGHT - PAD}" font-size="10" text-anchor="end">0</text>'
        f'<text x="{WIDTH / 2}" y="18" font-size="13" text-anchor="middle">{escape(title)} ({escape(unit)})</text>'
        f"{lines}{dots}{labels}</svg>"
    )
