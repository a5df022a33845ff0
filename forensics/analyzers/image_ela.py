"""Error level analysis (ELA): a picture of how much each pixel changes when re-saved as JPEG.

Method: the first frame is decoded (safe decoder), converted to 8-bit RGB,
re-encoded in memory with Pillow/libjpeg at the given quality (4:2:0
subsampling, baseline, no optimisation) and decoded again; the error level of
a pixel is the largest absolute difference over its three channels (0-255).
Parts of a JPEG that were already compressed at about that quality change
little when re-saved; parts with another compression history (pasted from
another picture, painted, never compressed) often change more.

Findings: the ELA figure (the error level in the image's pixel coordinates
with a colour bar, saturating at 255 / ``amplification``, and the peak cell
outlined; a visual aid, no verdict), the same levels as a plain overlay of
the image's own size (``ela_overlay``: transparent where the level is 0,
opaque red-to-yellow from 255 / ``amplification`` up, for a viewer to stack on
the image), the mean, 99th percentile and maximum error level
(measurements), and the cell of a 16 x 16 grid (at least 8 pixels a side)
with the highest mean error level, with its region.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageChops

from . import _figure, _imageio
from .base import finding

NAME = "image.ela"
# 1.1.0: the picture is a labelled figure (pixel axes, colour bar of the error level, peak cell);
# the levels also come as a same-size transparent overlay (ela_overlay).
VERSION = "1.1.0"
TIME_LIMIT = 600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 2 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["image/jpeg", "image/png", "image/tiff", "image/webp", "image/bmp", "image/x-ms-bmp", "image/gif"]
DESCRIPTION = (
    "Error level analysis: difference between the image and a JPEG re-save of it, as a picture and levels."
)
PARAMETERS = {
    "quality": {"type": "int", "default": 90, "min": 1, "max": 100, "help": "JPEG quality of the re-save"},
    "amplification": {
        "type": "int",
        "default": 15,
        "min": 1,
        "max": 255,
        "help": "factor applied to the differences in the picture (levels are reported unamplified)",
    },
}
LIMITS = [
    "ELA is a visual aid for a trained examiner, not a detector: high error levels also come from edges, "
    "fine texture, saturated colours and noise, and low levels from flat areas, whatever their history. "
    "A whole image re-saved several times, resized or filtered levels out the differences; an edited "
    "region re-saved at the same quality as the rest can look like the rest. Results depend on the "
    "re-save quality and on the JPEG encoder (Pillow's libjpeg-turbo, 4:2:0); non-JPEG inputs have no "
    "compression history, so their levels mostly show texture. Alpha is dropped, palette and 16-bit "
    "images are converted to 8-bit RGB, the picture is in stored pixel orientation (EXIF Orientation is "
    "not applied) and only the first frame is used. "
    f"Images over {_imageio.MAX_PIXELS:,} pixels are refused."
]

GRID = 16  # cells per side for the peak-region measurement
MIN_CELL = 8


def error_levels(im: Image.Image, quality: int) -> tuple[Image.Image, np.ndarray]:
    """(per-channel absolute difference as an RGB image, per-pixel error level HxW uint8)."""
    rgb = im.convert("RGB") if im.mode != "RGB" else im
    buf = io.BytesIO()
    rgb.save(buf, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
    resaved = Image.open(io.BytesIO(buf.getvalue()))
    resaved.load()
    diff = ImageChops.difference(rgb, resaved.convert("RGB"))  # uint8, computed in C without copies
    level = np.asarray(diff).max(axis=2)
    return diff, level


def peak_cell(level: np.ndarray) -> tuple[float, list[int]]:
    """Highest mean error level over the cells of a GRID x GRID partition: (value, [x, y, w, h])."""
    h, w = level.shape
    cw, ch = max(MIN_CELL, -(-w // GRID)), max(MIN_CELL, -(-h // GRID))
    best = (-1.0, [0, 0, min(cw, w), min(ch, h)])
    for y in range(0, h, ch):
        for x in range(0, w, cw):
            cell = level[y : y + ch, x : x + cw]
            value = float(cell.mean(dtype=np.float64))
            if value > best[0] + 1e-12:
                best = (value, [x, y, int(cell.shape[1]), int(cell.shape[0])])
    return best


def overlay(level: np.ndarray, gain: int) -> Image.Image:
    """The error level as an RGBA image of the same size: alpha and green grow with level x gain."""
    lut = [min(255, v * gain) for v in range(256)]
    a = Image.fromarray(level, "L").point(lut)
    red = Image.new("L", a.size, 255)
    return Image.merge("RGBA", (red, a, Image.new("L", a.size, 0), a))


def ela_figure(level: np.ndarray, quality: int, gain: int, region: list[int]):
    """The court figure: error level in pixel coordinates, colour bar, the peak cell outlined."""
    h, w = level.shape
    shown, factor = _figure.shrink(level, 1000)
    fig = _figure.figure(_figure.image_height_in(w, h))
    ax = fig.subplots()
    top = 255 / gain
    image = _figure.show_image(ax, shown, w, h, cmap=_figure.COLORMAP, vmin=0, vmax=top)
    _figure.box(ax, region, "#00c8ff", "peak cell")
    ax.set_title(f"Error level analysis: difference from a JPEG re-save at quality {quality}")
    bar = _figure.colorbar(
        fig, image, ax, f"error level (grey levels, largest of R, G, B)\ncolour saturates at 255/{gain}"
    )
    bar.ax.set_ylim(0, top)
    if factor > 1:
        ax.set_xlabel(f"x (pixels; shown as means of {factor} x {factor} pixel blocks)")
    return fig


def analyze(path, params, ctx) -> dict:
    quality = int(params.get("quality", PARAMETERS["quality"]["default"]))
    gain = int(params.get("amplification", PARAMETERS["amplification"]["default"]))
    _data, im = _imageio.open_image(path)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) or 1.0
        im = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    level = error_levels(im, quality)[1]  # the RGB difference is not kept: it is the size of the image
    value, region = peak_cell(level)
    figure_png = _figure.png_bytes(ela_figure(level, quality, gain, region))
    overlay_png = _imageio.png_bytes(overlay(level, gain))
    findings = [
        finding(
            "ela_image",
            "visual",
            artifact=ctx.add_artifact(f"ela-q{quality}.png", "image/png", figure_png),
            quality=quality,
            amplification=gain,
            note=f"error level after a JPEG re-save at quality {quality}, in the image's pixel "
            f"coordinates; the colour bar gives the level (saturating at 255/{gain}); the peak cell "
            "is outlined. Bright areas changed more. Interpret with care: edges and texture are bright too.",
        ),
        finding(
            "ela_overlay",
            "visual",
            artifact=ctx.add_artifact(f"ela-q{quality}-overlay.png", "image/png", overlay_png),
            overlay=True,
            quality=quality,
            amplification=gain,
            note=f"the same error levels as a transparent layer of the image's size (opacity = level "
            f"x {gain}, red to yellow), to be laid over the image; no axes",
        ),
        finding(
            "ela_mean_level",
            "measurement",
            round(float(level.mean(dtype=np.float64)), 4),
            unit="levels (0-255)",
            method="mean over pixels of the largest absolute channel difference after re-saving",
            note="mean error level of the whole image",
        ),
        finding(
            "ela_p99_level",
            "measurement",
            int(np.percentile(level, 99, method="lower")),
            unit="levels (0-255)",
            note="99th percentile of the error level",
        ),
        finding(
            "ela_max_level",
            "measurement",
            int(level.max()),
            unit="levels (0-255)",
            note="largest error level",
        ),
        finding(
            "ela_peak_region",
            "measurement",
            round(value, 4),
            unit="levels (0-255)",
            region=region,
            method=f"largest mean error level over the cells of a {GRID}x{GRID} grid",
            note="the cell with the highest mean error level (a place to look, not a verdict)",
        ),
    ]
    return {"findings": findings, "libraries": {**_imageio.libraries(), "matplotlib": _figure.version()}}
