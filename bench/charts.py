"""Line charts as inline SVG for the bench report: axes, a few ticks, one polyline per series."""

from __future__ import annotations

import math
from html import escape

W, H, PAD_L, PAD_B, PAD_T, PAD_R = 520, 220, 56, 28, 22, 12
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def _nice(top: float) -> float:
    if top <= 0 or math.isnan(top):
        return 1.0
    step = 10 ** math.floor(math.log10(top))
    for m in (1, 2, 2.5, 5, 10):
        if m * step >= top:
            return m * step
    return 10 * step


def line_chart(title: str, xs: list[float], series: dict[str, list[float]]) -> str:
    values = [v for vs in series.values() for v in vs if not math.isnan(v)]
    if not xs or not values:
        return f"<p>{escape(title)}: no data</p>"
    x_max, y_max = _nice(max(xs)), _nice(max(values))
    pw, ph = W - PAD_L - PAD_R, H - PAD_T - PAD_B

    def px(x: float) -> float:
        return PAD_L + pw * x / x_max

    def py(y: float) -> float:
        return PAD_T + ph * (1 - y / y_max)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
        f'font-size="10"><text x="{PAD_L}" y="13" font-size="12">{escape(title)}</text>',
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>',
    ]
    for i in range(5):
        y, x = y_max * i / 4, x_max * i / 4
        out.append(
            f'<line x1="{PAD_L}" x2="{PAD_L + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#eee"/>'
            f'<text x="{PAD_L - 4}" y="{py(y) + 3:.1f}" text-anchor="end">{y:g}</text>'
            f'<text x="{px(x):.1f}" y="{H - PAD_B + 13}" text-anchor="middle">{x:g}s</text>'
        )
    for n, (name, vs) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        points = " ".join(
            f"{px(x):.1f},{py(v):.1f}" for x, v in zip(xs, vs, strict=False) if not math.isnan(v)
        )
        out.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
        out.append(
            f'<text x="{PAD_L + pw - 4}" y="{PAD_T + 12 + 12 * n}" text-anchor="end" fill="{colour}">'
            f"{escape(name)}</text>"
        )
    out.append("</svg>")
    return "".join(out)
