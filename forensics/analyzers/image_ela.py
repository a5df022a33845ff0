"""Error level analysis (ELA): a picture of how much each pixel changes when re-saved as JPEG.

Method: the first frame is decoded (safe decoder), converted to 8-bit RGB,
re-encoded in memory with Pillow/libjpeg at the given quality (4:2:0
subsampling, baseline, no optimisation) and decoded again; the error level of
a pixel is the largest absolute difference over its three channels (0-255).
Parts of a JPEG that were already compressed at about that quality change
little when re-saved; parts with another compression history (pasted from
another picture, painted, never compressed) often change more.

Findings: the ELA picture (per-channel difference times ``amplification``,
clipped at 255, PNG; a visual aid, no verdict), the mean, 99th percentile and
maximum error level (measurements), and the cell of a 16 x 16 grid (at least
8 pixels a side) with the highest mean error level, with its region.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageChops

from . import _imageio
from .base import finding

NAME = "image.ela"
VERSION = "1.0.0"
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


def analyze(path, params, ctx) -> dict:
    quality = int(params.get("quality", PARAMETERS["quality"]["default"]))
    gain = int(params.get("amplification", PARAMETERS["amplification"]["default"]))
    _data, im = _imageio.open_image(path)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) or 1.0
        im = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    diff, level = error_levels(im, quality)
    picture = diff.point([min(255, v * gain) for v in range(256)] * 3)
    artifact = ctx.add_artifact(f"ela-q{quality}.png", "image/png", _imageio.png_bytes(picture))
    value, region = peak_cell(level)
    findings = [
        finding(
            "ela_image",
            "visual",
            artifact=artifact,
            quality=quality,
            amplification=gain,
            note=f"absolute difference from a JPEG re-save at quality {quality}, amplified x{gain}; "
            "bright areas changed more. Interpret with care: edges and texture are bright too.",
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
    return {"findings": findings, "libraries": _imageio.libraries()}
