"""The alignment picture: clip time across, reference time up (Pillow, deterministic bytes).

A straight diagonal is a clip that plays the reference without a break. Each
matched part is a thick line (blue in reference order, orange when moved), the
grey dots under it are the matched spectral peaks it rests on, a dashed red
step at a join is reference material the clip leaves out, and a pale red band
is clip material not found in the reference.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageFont

W, H = 720, 480
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 44
BLUE, ORANGE, RED, GREY, AXIS = (31, 94, 180), (230, 120, 20), (200, 30, 30), (150, 150, 150), (60, 60, 60)


def _ticks(lo: float, hi: float, n: int = 6) -> list[float]:
    span = max(hi - lo, 1e-6)
    raw = span / n
    step = min(
        (s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600) if s >= raw), default=3600
    )
    first = -(-lo // step) * step
    out, v = [], first
    while v <= hi + 1e-9:
        out.append(v)
        v += step
    return out


def _label(seconds: float) -> str:
    seconds = round(seconds, 1)
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    if h:
        return f"{h}:{m:02d}:{int(s):02d}"
    return f"{m}:{s:04.1f}" if seconds % 1 else f"{m}:{int(s):02d}"


def render(
    clip_duration: float, parts: list[dict], removed: list[dict], inserted: list[dict], points
) -> bytes:
    """parts: {clip_at, reference_at, moved}; removed: {at, reference_at}; inserted: {at}."""
    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default_imagefont()  # the bitmap font: same pixels everywhere

    ys = [v for p in parts for v in p["reference_at"]] + [v for r in removed for v in r["reference_at"]]
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, max(clip_duration, 1.0))
    pad = max(0.05 * (y1 - y0), 1.0)
    y0, y1 = max(0.0, y0 - pad), y1 + pad
    x0, x1 = 0.0, max(clip_duration, 1e-3)

    def px(x, y):
        return (
            LEFT + (x - x0) / (x1 - x0) * (W - LEFT - RIGHT),
            H - BOTTOM - (y - y0) / (y1 - y0) * (H - TOP - BOTTOM),
        )

    for item in inserted:
        a, _ = px(item["at"][0], y0)
        b, _ = px(item["at"][1], y0)
        draw.rectangle([a, TOP, max(b, a + 1), H - BOTTOM], fill=(250, 215, 215))
    for t in _ticks(x0, x1):
        x, _ = px(t, y0)
        draw.line([x, TOP, x, H - BOTTOM], fill=(235, 235, 235))
        draw.text((x - 12, H - BOTTOM + 6), _label(t), fill=AXIS, font=font)
    for t in _ticks(y0, y1):
        _, y = px(x0, t)
        draw.line([LEFT, y, W - RIGHT, y], fill=(235, 235, 235))
        draw.text((4, y - 5), _label(t), fill=AXIS, font=font)
    draw.rectangle([LEFT, TOP, W - RIGHT, H - BOTTOM], outline=AXIS)
    draw.text((LEFT, 8), "clip time (across) against reference time (up)", fill=AXIS, font=font)
    draw.text((W // 2 - 30, H - 16), "clip time", fill=AXIS, font=font)

    for x, y in points:
        if y0 <= y <= y1:
            cx, cy = px(x, y)
            draw.point((round(cx), round(cy)), fill=GREY)
    for r in removed:
        xa, ya = px(r["at"][1], r["reference_at"][0])
        _, yb = px(r["at"][1], r["reference_at"][1])
        for k in range(int(min(ya, yb)), int(max(ya, yb)), 8):
            draw.line([xa, k, xa, min(k + 4, max(ya, yb))], fill=RED, width=2)
    for p in parts:
        a = px(p["clip_at"][0], p["reference_at"][0])
        b = px(p["clip_at"][1], p["reference_at"][1])
        draw.line([a, b], fill=ORANGE if p["moved"] else BLUE, width=4)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=False, compress_level=9)
    return out.getvalue()
