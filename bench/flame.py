"""A flame graph as a standalone SVG (no script): one box per frame, as wide as its share of the samples,
callers below callees; hover a box for its full name, samples and share. Colour by library."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from html import escape
from typing import Any

WIDTH, ROW, MIN_PX = 1400.0, 16, 0.3


def _tree(stacks: list[tuple[list[str], int]]) -> dict[str, Any]:
    root: dict[str, Any] = {"n": 0, "kids": {}}
    for frames, count in stacks:
        root["n"] += count
        node = root
        for frame in frames:
            node = node["kids"].setdefault(frame, {"n": 0, "kids": {}})
            node["n"] += count
    return root


def _colour(library: str) -> str:
    h = zlib.crc32(library.encode())
    return f"rgb({205 + h % 50},{80 + (h >> 8) % 130},{40 + (h >> 16) % 60})"


def _depth(node: dict[str, Any]) -> int:
    return 1 + max((_depth(k) for k in node["kids"].values()), default=0)


def flame_svg(
    title: str, stacks: list[tuple[list[str], int]], library: Callable[[str], str] | None = None
) -> str:
    root = _tree(stacks)
    total = max(1, root["n"])
    rows = _depth(root)
    height = (rows + 2) * ROW
    scale = WIDTH / total
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH:.0f}" height="{height}" '
        f'font-family="monospace" font-size="11">',
        f'<rect width="100%" height="100%" fill="#fdfdf6"/><text x="4" y="12">{escape(title)}</text>',
    ]

    def draw(node: dict[str, Any], x: float, depth: int) -> None:
        for frame, kid in sorted(node["kids"].items()):
            w = kid["n"] * scale
            if w >= MIN_PX:
                y = height - (depth + 1) * ROW
                file = frame.rsplit(" (", 1)[-1].rstrip(")")
                lib = library(file.rsplit(":", 1)[0]) if library else ""
                tip = f"{frame} — {kid['n']} samples, {100 * kid['n'] / total:.1f}%"
                out.append(
                    f'<g><title>{escape(tip)}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
                    f'height="{ROW - 1}" fill="{_colour(lib)}" rx="1"/>'
                )
                chars = int(w / 6.7)
                if chars >= 3:
                    label = frame if len(frame) <= chars else frame[: chars - 1] + "…"
                    out.append(f'<text x="{x + 2:.1f}" y="{y + ROW - 4}">{escape(label)}</text>')
                out.append("</g>")
                draw(kid, x, depth + 1)
            x += w

    draw(root, 0.0, 0)
    out.append("</svg>")
    return "\n".join(out)
