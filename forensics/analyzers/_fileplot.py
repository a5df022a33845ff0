"""Small, deterministic PNG plots with Pillow for the file.* analyzers.

Same input, same bytes: a fixed palette, Pillow's built-in bitmap font (no
system fonts), no text chunks, no timestamps, fixed compression settings.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH = 1000  # plot area, in pixels: one column per pixel
HEIGHT = 240
LEFT, RIGHT, TOP, BOTTOM = 56, 24, 28, 44

WHITE, BLACK, GRID, BAND, LINE = range(5)
_PALETTE = [
    255, 255, 255,  # background
    0, 0, 0,  # axes and text
    220, 220, 220,  # grid
    160, 190, 230,  # per-column min..max band
    20, 60, 150,  # per-column mean
]  # fmt: skip


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB' (binary units, at most one decimal)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            text = f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    raise AssertionError("unreachable")


def _columns(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reduce len(values) points to WIDTH columns: (min, max, mean) per column."""
    n = len(values)
    if n >= WIDTH:
        edges = (np.arange(WIDTH, dtype=np.int64) * n) // WIDTH
        lo = np.minimum.reduceat(values, edges)
        hi = np.maximum.reduceat(values, edges)
        counts = np.diff(np.append(edges, n))
        mean = np.add.reduceat(values, edges) / counts
        return lo, hi, mean
    idx = (np.arange(WIDTH, dtype=np.int64) * n) // WIDTH
    picked = values[idx]
    return picked, picked, picked


def series_png(
    values: np.ndarray,
    *,
    span: int,
    y_max: float,
    y_ticks: list[float],
    title: str,
    y_label: str,
) -> bytes:
    """Plot one value per block over a file of ``span`` bytes, as a PNG.

    Where several blocks share a pixel column the column shows their range
    (light band) and their mean (dark line).
    """
    font = ImageFont.load_default_imagefont()
    image = Image.new("P", (LEFT + WIDTH + RIGHT, TOP + HEIGHT + BOTTOM), WHITE)
    image.putpalette(_PALETTE)
    draw = ImageDraw.Draw(image)

    def y_of(v: np.ndarray | float) -> np.ndarray:
        return np.rint(TOP + HEIGHT - 1 - np.clip(v, 0, y_max) / y_max * (HEIGHT - 1)).astype(np.int64)

    for tick in y_ticks:
        y = int(y_of(tick))
        draw.line([(LEFT, y), (LEFT + WIDTH - 1, y)], fill=GRID)
        label = f"{tick:g}"
        draw.text((LEFT - 6 - font.getbbox(label)[2], y - 5), label, fill=BLACK, font=font)

    if len(values):
        lo, hi, mean = _columns(np.asarray(values, dtype=np.float64))
        y_lo, y_hi, y_mean = y_of(lo), y_of(hi), y_of(mean)
        for x in range(WIDTH):
            if y_lo[x] != y_hi[x]:
                draw.line([(LEFT + x, int(y_hi[x])), (LEFT + x, int(y_lo[x]))], fill=BAND)
        points = [(LEFT + x, int(y_mean[x])) for x in range(WIDTH)]
        draw.line(points, fill=LINE)

    draw.rectangle([LEFT - 1, TOP - 1, LEFT + WIDTH, TOP + HEIGHT], outline=BLACK)
    for k in range(5):
        x = LEFT + (WIDTH - 1) * k // 4
        draw.line([(x, TOP + HEIGHT), (x, TOP + HEIGHT + 4)], fill=BLACK)
        label = human_bytes(span * k // 4)
        w = font.getbbox(label)[2]
        draw.text(
            (min(max(x - w // 2, 0), image.width - w - 1), TOP + HEIGHT + 8), label, fill=BLACK, font=font
        )
    draw.text((LEFT + (WIDTH - font.getbbox(title)[2]) // 2, 4), title, fill=BLACK, font=font)
    axis = "offset in the file"
    draw.text((LEFT + (WIDTH - font.getbbox(axis)[2]) // 2, TOP + HEIGHT + 26), axis, fill=BLACK, font=font)
    draw.text((4, TOP - 14), y_label, fill=BLACK, font=font)

    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False, compress_level=9)
    return out.getvalue()
