"""Draw the Teams app icons with the standard library only, so they are reproducible from this file.

    python deploy/teams/make_icons.py     # writes color.png (192×192) and outline.png (32×32) here

Teams wants a full-colour icon on a solid background and an outline icon that is white on transparent
(docs: "App icons for Teams"). Both show a speech bubble with lines of text: answers in a thread.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ACCENT = (0x3B, 0x5B, 0xDB)  # the manifest's accentColor
WHITE = (0xFF, 0xFF, 0xFF)
SAMPLES = 4  # supersampling per axis, for smooth edges

Shape = Callable[[float, float], bool]  # (x, y) in 0..1 → inside?


def rounded_rect(x0: float, y0: float, x1: float, y1: float, r: float) -> Shape:
    def inside(x: float, y: float) -> bool:
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            return False
        cx = min(max(x, x0 + r), x1 - r)
        cy = min(max(y, y0 + r), y1 - r)
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r

    return inside


def triangle(a: tuple[float, float], b: tuple[float, float], c: tuple[float, float]) -> Shape:
    def side(p: tuple[float, float], q: tuple[float, float], x: float, y: float) -> float:
        return (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])

    def inside(x: float, y: float) -> bool:
        s1, s2, s3 = side(a, b, x, y), side(b, c, x, y), side(c, a, x, y)
        return (s1 >= 0 and s2 >= 0 and s3 >= 0) or (s1 <= 0 and s2 <= 0 and s3 <= 0)

    return inside


def bubble(inset: float = 0.0) -> Shape:
    body = rounded_rect(0.16 + inset, 0.2 + inset, 0.84 - inset, 0.68 - inset, max(0.1 - inset, 0.01))
    tail = triangle((0.26 + inset, 0.6), (0.44 - inset, 0.6), (0.22 + inset * 0.5, 0.84 - inset * 2))
    return lambda x, y: body(x, y) or tail(x, y)


def text_lines() -> Shape:
    rows = ((0.31, 0.72), (0.41, 0.72), (0.51, 0.58))  # (top, right end) of each line of "text"
    bars = [rounded_rect(0.28, y, x1, y + 0.055, 0.027) for y, x1 in rows]
    return lambda x, y: any(bar(x, y) for bar in bars)


def coverage(shape: Shape, px: int, py: int, size: int) -> float:
    """How much of pixel (px, py) the shape covers. Every feature is wider than a pixel, so a pixel whose
    four corners agree is wholly in or out; only edge pixels are supersampled."""
    corners = {shape((px + dx) / size, (py + dy) / size) for dx in (0, 1) for dy in (0, 1)}
    if len(corners) == 1:
        return float(corners.pop())
    hits = 0
    for sy in range(SAMPLES):
        for sx in range(SAMPLES):
            hits += shape((px + (sx + 0.5) / SAMPLES) / size, (py + (sy + 0.5) / SAMPLES) / size)
    return hits / (SAMPLES * SAMPLES)


def color_icon(size: int = 192) -> list[list[tuple[int, int, int, int]]]:
    """Accent background, white bubble, accent lines of text."""
    shape, lines = bubble(), text_lines()
    rows = []
    for py in range(size):
        row = []
        for px in range(size):
            white = coverage(shape, px, py, size) * (1 - coverage(lines, px, py, size))
            rgb = tuple(round(a + (w - a) * white) for a, w in zip(ACCENT, WHITE, strict=True))
            row.append((*rgb, 255))
        rows.append(row)
    return rows


def outline_icon(size: int = 32) -> list[list[tuple[int, int, int, int]]]:
    """White bubble outline and lines on transparent: only white pixels, with alpha for edges."""
    outer, inner, lines = bubble(), bubble(inset=0.07), text_lines()
    rows = []
    for py in range(size):
        row = []
        for px in range(size):
            ring = max(coverage(outer, px, py, size) - coverage(inner, px, py, size), 0.0)
            alpha = min(ring + coverage(lines, px, py, size), 1.0)
            row.append((*WHITE, round(255 * alpha)))
        rows.append(row)
    return rows


def png(rows: list[list[tuple[int, int, int, int]]]) -> bytes:
    """An RGBA PNG: signature, IHDR, one IDAT (filter 0 on every row), IEND."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(v for pixel in row for v in pixel) for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def main() -> None:
    (HERE / "color.png").write_bytes(png(color_icon()))
    (HERE / "outline.png").write_bytes(png(outline_icon()))
    print(f"wrote {HERE / 'color.png'} and {HERE / 'outline.png'}")


if __name__ == "__main__":
    main()
