"""The EXIF thumbnail compared with the main image.

Cameras store a small JPEG preview (EXIF IFD1, tags JPEGInterchangeFormat and
JPEGInterchangeFormatLength) made from the same exposure. Editing software
often rewrites the main image but keeps the old thumbnail, so a thumbnail
that no longer looks like the main image is worth a human's attention.

Method (documented, deterministic):
1. The thumbnail bytes are sliced from the EXIF block at the IFD1 offset and
   length and decoded with the same guards as any image (_imageio).
2. Both images are converted to 8-bit luma (Pillow's ITU-R 601-2 "L").
3. If the aspect ratios differ by more than 2 %, the thumbnail is assumed to
   be letterboxed (bars centred, as cameras do) and only the part of it that
   matches the main image's aspect ratio is compared.
4. The main image is reduced to that size by area averaging (Pillow BOX),
   and both are smoothed with a Gaussian blur of radius 1 thumbnail pixel
   (Pillow GaussianBlur), which removes most of the difference that comes
   from other resampling filters, sharpening and JPEG noise.
   When the thumbnail is portrait and the main image landscape (or the other
   way round), the main image is also tried turned by 90 and 270 degrees and
   the rotation that fits best is used (reported).
5. thumbnail_mismatch = mean absolute luma difference over the compared area,
   in levels 0-255, rounded to 3 decimals; thumbnail_local_mismatch = the
   largest mean absolute difference of one 8x8-pixel cell of the thumbnail
   grid, with its region mapped back to main-image pixels.
Typical values on the tests' synthetic images: a thumbnail made from the
unedited image differs by about 1 level (resampling, JPEG noise); a repainted region shows
up as a much larger local value. There is no fixed threshold: these are
measurements, not verdicts.
"""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import ExifTags, Image, ImageFilter

from . import _figure, _imageio
from .base import AnalysisError, finding

NAME = "image.thumbnail"
VERSION = "1.1.0"  # 1.1.0: the difference picture is a labelled three-panel figure
TIME_LIMIT = 600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 2 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["image/jpeg", "image/png", "image/webp"]
DESCRIPTION = (
    "Extracts the EXIF thumbnail (IFD1) and measures how much it differs from the main image "
    "(mean absolute luma difference, globally and per cell), with a difference picture."
)
LIMITS = [
    "Only EXIF IFD1 JPEG thumbnails are read (JPEG APP1, PNG eXIf, WebP EXIF); Photoshop IRB thumbnails, "
    "MPF preview images and TIFF sub-images are not compared. The mismatch is a measurement without a "
    "threshold: camera thumbnails are made with their own resampling, sharpening and tone curve, so an "
    "unedited image never scores exactly 0, and a global colour or tone edit raises the score as much as "
    "a local one. Letterboxed thumbnails are assumed to have centred bars. Cropping, resizing or rotating "
    "the main image by other than 90-degree steps changes the geometry and raises the score without any "
    "content edit. A matching thumbnail proves nothing: software can regenerate it after an edit. "
    "Only the first frame is decoded; "
    f"images over {_imageio.MAX_PIXELS:,} pixels are refused."
]
PARAMETERS: dict = {}

BLUR_RADIUS = 1.0  # Gaussian smoothing of both images at thumbnail size, in thumbnail pixels
CELL = 8  # thumbnail pixels per side of a local-mismatch cell
DIFF_GAIN = 4  # the difference figure's colour scale tops out at 255 / DIFF_GAIN levels
_ASPECT_TOLERANCE = 0.02


def exif_tiff_bytes(im) -> bytes | None:
    """The TIFF structure of the image's EXIF block (without the "Exif\\0\\0" header)."""
    exif = im.info.get("exif")
    if not exif:
        return None
    exif = bytes(exif)
    if exif.startswith(b"Exif\x00\x00"):
        exif = exif[6:]
    return exif


def thumbnail_location(im) -> tuple[int, int] | None:
    """(offset, length) of the IFD1 JPEG thumbnail inside the EXIF TIFF structure."""
    try:
        ifd1 = im.getexif().get_ifd(ExifTags.IFD.IFD1)
    except Exception:  # noqa: BLE001 - unreadable IFD1 = no usable thumbnail
        return None
    offset, length = ifd1.get(0x0201), ifd1.get(0x0202)
    if offset is None or length is None:
        return None
    try:
        return int(offset), int(length)
    except (TypeError, ValueError):
        return None


def _luma(im: Image.Image) -> Image.Image:
    if im.mode == "L":
        return im
    if im.mode not in ("RGB", "RGBA", "CMYK", "YCbCr", "LA", "P", "1"):
        im = im.convert("RGB")
    return im.convert("L")


def _content_box(thumb_size, main_size):
    """Where the main image sits inside the thumbnail, assuming centred letterbox bars."""
    tw, th = thumb_size
    mw, mh = main_size
    main_aspect, thumb_aspect = mw / mh, tw / th
    if abs(main_aspect - thumb_aspect) / thumb_aspect <= _ASPECT_TOLERANCE:
        return (0, 0, tw, th), False
    if main_aspect > thumb_aspect:  # bars top and bottom
        ch = max(1, round(tw / main_aspect))
        top = (th - ch) // 2
        return (0, top, tw, top + ch), True
    cw = max(1, round(th * main_aspect))
    left = (tw - cw) // 2
    return (left, 0, left + cw, th), True


def compare(main: Image.Image, thumb: Image.Image) -> dict:
    """Mismatch measurements between a main image and its thumbnail (both PIL images)."""
    main_l, thumb_l = _luma(main), _luma(thumb)
    candidates = [0]
    if (main_l.width > main_l.height) != (thumb_l.width > thumb_l.height) and main_l.width != main_l.height:
        candidates = [0, 90, 270]
    best = None
    for rotation in candidates:
        rotated = main_l if rotation == 0 else main_l.rotate(rotation, expand=True)
        box, letterbox = _content_box(thumb_l.size, rotated.size)
        bw, bh = box[2] - box[0], box[3] - box[1]
        reduced = rotated.resize((bw, bh), Image.Resampling.BOX).filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
        part = thumb_l.crop(box).filter(ImageFilter.GaussianBlur(BLUR_RADIUS))
        reduced, part = np.asarray(reduced, dtype=np.float64), np.asarray(part, dtype=np.float64)
        diff = np.abs(reduced - part)
        mad = float(diff.mean())
        if best is None or mad < best["mad"] - 1e-12:
            best = {
                "mad": mad,
                "diff": diff,
                "main": reduced,
                "thumb": part,
                "box": box,
                "rotation": rotation,
                "letterbox": letterbox,
            }
    diff, box = best["diff"], best["box"]
    bh, bw = diff.shape
    # local mismatch: mean of each CELL x CELL cell (partial cells at the edges count too)
    rows, cols = -(-bh // CELL), -(-bw // CELL)
    best_cell = (-1.0, 0, 0)
    for r in range(rows):
        for c in range(cols):
            cell = diff[r * CELL : (r + 1) * CELL, c * CELL : (c + 1) * CELL]
            value = float(cell.mean())
            if value > best_cell[0] + 1e-12:
                best_cell = (value, r, c)
    value, r, c = best_cell
    rotated_size = main_l.size if best["rotation"] in (0, 180) else (main_l.height, main_l.width)
    sx, sy = rotated_size[0] / bw, rotated_size[1] / bh
    x0, y0 = int(c * CELL * sx), int(r * CELL * sy)
    x1, y1 = (
        min(rotated_size[0], int(round((c + 1) * CELL * sx))),
        min(rotated_size[1], int(round((r + 1) * CELL * sy))),
    )
    region = [x0, y0, x1 - x0, y1 - y0]
    if best["rotation"] == 90:  # map back from the turned image to the stored one
        region = [main_l.width - (y0 + region[3]), x0, region[3], region[2]]
    elif best["rotation"] == 270:
        region = [y0, main_l.height - (x0 + region[2]), region[3], region[2]]
    return {
        "mad": round(best["mad"], 3),
        "cell_mad": round(value, 3),
        "region": region,
        "rotation": best["rotation"],
        "letterbox": best["letterbox"],
        "compared": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
        "diff": diff,  # the three arrays at thumbnail size, smoothed, over the compared area
        "main_small": best["main"],
        "thumb_small": best["thumb"],
        "cell": [c * CELL, r * CELL, min(CELL, bw - c * CELL), min(CELL, bh - r * CELL)],
    }


def difference_figure(result: dict):
    """The court figure: main image reduced, thumbnail, and their difference with a colour bar.

    All three in thumbnail pixels over the compared area; the most different cell outlined.
    """
    h, w = result["diff"].shape
    fig = _figure.figure(min(6.0, max(2.6, (_figure.WIDTH_IN - 1.2) / 3 * h / max(w, 1) + 1.2)))
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    turned = f", turned {result['rotation']} degrees" if result["rotation"] else ""
    panels = (
        (result["main_small"], f"main image reduced{turned}"),
        (result["thumb_small"], "EXIF thumbnail"),
    )
    for ax, (array, title) in zip(axes[:2], panels, strict=True):
        _figure.show_image(ax, array, w, h, cmap="gray", vmin=0, vmax=255)
        ax.set_title(title)
    top = 255 / DIFF_GAIN
    image = _figure.show_image(axes[2], result["diff"], w, h, cmap=_figure.COLORMAP, vmin=0, vmax=top)
    axes[2].set_title("absolute difference")
    _figure.box(axes[2], result["cell"], "#00c8ff", "max cell")
    for ax in axes[1:]:
        ax.set_ylabel("")
    for ax in axes:
        ax.set_xlabel("x (thumbnail pixels)")
    axes[0].set_ylabel("y (thumbnail pixels)")
    _figure.colorbar(fig, image, axes[2], "difference (luma levels)")
    fig.suptitle(f"EXIF thumbnail against the main image: mean luma difference {result['mad']:.2f} levels")
    return fig


def analyze(path, params, ctx) -> dict:
    data, im = _imageio.open_image(path, formats=("JPEG", "PNG", "WEBP"))
    libraries = _imageio.libraries()
    location = thumbnail_location(im)
    tiff = exif_tiff_bytes(im)
    if location is None or tiff is None:
        return {
            "findings": [
                finding(
                    "thumbnail",
                    "fact",
                    {"present": False},
                    note="no EXIF thumbnail (IFD1 JPEGInterchangeFormat) in the file",
                )
            ],
            "libraries": libraries,
        }
    offset, length = location
    details = {"present": True, "offset": offset, "length": length}
    if offset < 0 or length <= 0 or offset + length > len(tiff):
        details["readable"] = False
        return {
            "findings": [
                finding(
                    "thumbnail",
                    "fact",
                    details,
                    note=f"IFD1 points to bytes {offset}..{offset + length} outside the {len(tiff)}-byte EXIF block",
                )
            ],
            "libraries": libraries,
        }
    thumb_bytes = tiff[offset : offset + length]
    details["sha256"] = hashlib.sha256(thumb_bytes).hexdigest()
    try:
        thumb = _imageio.decode(thumb_bytes, formats=("JPEG",))
    except AnalysisError as exc:
        details["readable"] = False
        return {
            "findings": [
                finding("thumbnail", "fact", details, note=f"the EXIF thumbnail cannot be decoded: {exc}")
            ],
            "libraries": libraries,
        }
    details.update({"readable": True, "width": thumb.width, "height": thumb.height})
    findings = [
        finding(
            "thumbnail",
            "fact",
            details,
            note="EXIF IFD1 JPEG thumbnail: offset and length inside the EXIF block, SHA-256, size",
        ),
        finding(
            "thumbnail_image",
            "visual",
            artifact=ctx.add_artifact("exif-thumbnail.jpg", "image/jpeg", thumb_bytes),
            note="the embedded thumbnail exactly as stored in the file",
        ),
    ]
    result = compare(im, thumb)
    method = (
        "mean absolute difference of 8-bit luma after reducing the main image to the thumbnail size by area "
        f"averaging and smoothing both with a Gaussian blur of radius {BLUR_RADIUS} thumbnail pixel"
    )
    findings.append(
        finding(
            "thumbnail_mismatch",
            "measurement",
            result["mad"],
            unit="luma levels (0-255)",
            method=method,
            rotation=result["rotation"],
            letterbox=result["letterbox"],
            compared=result["compared"],
            note="how much the thumbnail differs from the main image overall"
            + ("; the main image was turned to match the thumbnail" if result["rotation"] else "")
            + ("; thumbnail assumed letterboxed" if result["letterbox"] else ""),
        )
    )
    findings.append(
        finding(
            "thumbnail_local_mismatch",
            "measurement",
            result["cell_mad"],
            unit="luma levels (0-255)",
            region=result["region"],
            method=f"largest mean absolute luma difference over one {CELL}x{CELL}-pixel cell of the thumbnail",
            note="where the thumbnail and the main image differ most (region in main-image pixels)",
        )
    )
    findings.append(
        finding(
            "thumbnail_difference",
            "visual",
            artifact=ctx.add_artifact(
                "thumbnail-difference.png", "image/png", _figure.png_bytes(difference_figure(result))
            ),
            note="the main image reduced to the thumbnail's size, the thumbnail, and the absolute "
            "difference of their smoothed luma with a colour bar (levels); the most different cell "
            "is outlined",
        )
    )
    return {"findings": findings, "libraries": {**libraries, "matplotlib": _figure.version()}}
