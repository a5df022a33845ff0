"""JPEG ghosts (Farid 2009): a map of where the image's earlier JPEG compression is and is not.

A JPEG saved once at quality q1 and again at q2 > q1 still "remembers" q1:
re-saving it at q1 changes it very little (a ghost, a dip of the difference
at q1). A region pasted in from another picture, or painted, does not share
that history on the image's 8 x 8 grid, so at q1 it changes as much as a
fresh image would; a region that was compressed on the grid at a quality the
rest never saw shows a ghost of its own.

Method: the first frame's luma (for a JPEG the decoded Y plane itself, with
no colour conversion; otherwise converted from RGB) is re-saved with Pillow's
libjpeg at every quality from ``Q_MIN`` to two below the file's own quality
(``_jpegq``; up to 98 for a file that is not a JPEG), on the file's own grid.
For each 16 x 16 block and quality the mean squared difference is divided by
the block's mean over all qualities (which removes most of the effect of
texture). The background history is the quality whose median normalised
difference over the textured blocks dips to less than ``DIP`` of its value
four qualities away on either side. The anomaly of a block is the log ratio
of its normalised difference to the median: at the background's quality when
there is a history (a block without the ghost stands out), otherwise the
strongest dip of the block below the others over the qualities (a block with
a ghost of its own). The anomaly map is median-filtered over 3 x 3 blocks;
connected groups of blocks above ``THRESHOLD`` covering at least
``MIN_BLOCKS`` blocks are the candidate regions, reported only when a
background history was found (without one the map is a visual aid only).

Findings: the anomaly map (a labelled figure, visual, and the same map as a
transparent overlay of the image's size, ``ghost_overlay``), the background history quality
(measurement, or none), and a ``ghost_inconsistency`` indicator for each
candidate region (at most ``MAX_REGIONS``) with its [x, y, w, h] region,
rates for this file's condition (background history found or not, final
JPEG quality band) and calibrated score (raw score: the
region's mean anomaly).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from . import _figure, _imageio, _jpegq, _rates
from .base import finding

NAME = "image.ghost"
# 1.1.0: regions are reported only when the image shows a background history (the other
# branch found no splice and made false alarms on the evaluation set); 1.0.0: first version.
# 1.2.0: the map is a labelled figure (pixel axes, colour bar, numbered regions) plus a
# same-size transparent overlay (ghost_overlay).
# Rates measured on splices in real camera photographs (forensics/evaluation/ghost.py).
VERSION = "1.2.0"
TIME_LIMIT = 900  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 3 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["image/jpeg", "image/png", "image/tiff", "image/webp", "image/bmp", "image/x-ms-bmp"]
DESCRIPTION = (
    "JPEG ghosts: a map of the blocks whose earlier JPEG compression differs from the rest of the image, "
    "with the inconsistent regions as indicators."
)
PARAMETERS = {}

BLOCK = 16
Q_MIN = 50
Q_MAX = 98
DIP = 0.5
THRESHOLD = 1.2  # natural log of the ratio to the median (about 3.3x)
MIN_BLOCKS = 8
MAX_REGIONS = 3
TEXTURE = 0.5  # mean squared difference (grey levels squared) below which a block is not judged
HISTORY = ("earlier quality found", "none found")

LIMITS = [
    "A ghost inconsistency means that a group of blocks has another JPEG compression history, on the "
    "image's 8 x 8 grid, than the rest; it does not tell how that came about. It is seen only when the "
    "image had an earlier JPEG compression at a lower quality than its last one (a photograph received "
    "from a messenger or social network and saved again by an editor, for instance): when the last save "
    "was at a lower quality than the earlier one, or the image was resized, rotated or cropped off the "
    "8-pixel grid after the earlier save, the history is erased and nothing is found. Flat, saturated or "
    "very dark blocks are not judged. Regions are located to 16-pixel blocks. Only the first frame's "
    "luma is used, in stored pixel orientation. "
    f"Images over {_imageio.MAX_PIXELS:,} pixels are refused."
] + _rates.limits(NAME)


def _luma(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) or 1.0
        return Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if im.mode == "L":
        return im
    return im.convert("RGB").convert("L")


def differences(luma: Image.Image, qualities: list[int]) -> np.ndarray:
    """Mean squared difference per 16 x 16 block after re-saving at each quality: (Q, rows, cols)."""
    a = np.asarray(luma, dtype=np.float32)
    rows, cols = a.shape[0] // BLOCK, a.shape[1] // BLOCK
    out = np.empty((len(qualities), rows, cols), dtype=np.float32)
    for i, q in enumerate(qualities):
        buf = io.BytesIO()
        luma.save(buf, format="JPEG", quality=q, optimize=False, progressive=False)
        with Image.open(io.BytesIO(buf.getvalue())) as j:
            b = np.asarray(j, dtype=np.float32)
        d = (a - b) ** 2
        d = d[: rows * BLOCK, : cols * BLOCK].reshape(rows, BLOCK, cols, BLOCK)
        out[i] = d.mean(axis=(1, 3))
    return out


def _median3(a: np.ndarray) -> np.ndarray:
    padded = np.pad(a, 1, mode="edge")
    stack = [padded[dy : dy + a.shape[0], dx : dx + a.shape[1]] for dy in range(3) for dx in range(3)]
    return np.median(np.stack(stack), axis=0)


def _components(mask: np.ndarray) -> list[np.ndarray]:
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=int))
    return [labels == i for i in range(1, count + 1)]


def analyse(im: Image.Image) -> dict:
    """The ghost analysis of a decoded image: map, history quality and candidate regions."""
    quality = _jpegq.estimate(im)
    top = Q_MAX if quality["quality"] is None else quality["quality"] - 2
    qualities = list(range(Q_MIN, top + 1))
    luma = _luma(im)
    rows, cols = luma.height // BLOCK, luma.width // BLOCK
    result = {"quality": quality, "history": None, "map": None, "regions": [], "blocks": (rows, cols)}
    if len(qualities) < 9 or rows < 4 or cols < 4:
        return result
    d = differences(luma, qualities)
    level = d.mean(axis=0)
    textured = level > TEXTURE
    if textured.sum() < MIN_BLOCKS * 4:
        return result
    n = d / (level[None] + 1e-6)
    med = np.median(n[:, textured], axis=1)
    # Background history: the deepest dip of the median curve below both sides (4 qualities away).
    best = None
    for i in range(4, len(qualities) - 4):
        side = min(med[i - 4], med[i + 4])
        ratio = med[i] / side if side > 0 else 1.0
        if ratio < DIP and (best is None or ratio < best[1]):
            best = (i, ratio)
    eps = 0.02
    if best is not None:
        i = best[0]
        result["history"] = qualities[i]
        anomaly = np.log((n[i] + eps) / (med[i] + eps))
    else:
        z = np.log((n + eps) / (med[:, None, None] + eps))
        # A ghost of the block's own: the deepest drop below the others, over three neighbouring qualities.
        smooth = (z[:-2] + z[1:-1] + z[2:]) / 3
        anomaly = -smooth.min(axis=0)
    anomaly = np.where(textured, anomaly, 0.0)
    anomaly = _median3(anomaly)
    result["map"] = anomaly
    if best is None:
        # Without a background history the map is shown, but no region is reported: on the evaluation
        # set, version 1.0.0's regions in this case matched no splice and were all false alarms.
        return result
    regions = []
    for comp in _components(anomaly > THRESHOLD):
        count = int(comp.sum())
        if count < MIN_BLOCKS:
            continue
        ys, xs = np.nonzero(comp)
        box = [
            int(xs.min() * BLOCK),
            int(ys.min() * BLOCK),
            int((xs.max() - xs.min() + 1) * BLOCK),
            int((ys.max() - ys.min() + 1) * BLOCK),
        ]
        regions.append(
            {
                "region": box,
                "blocks": count,
                "area_fraction": count / float(rows * cols),
                "raw": round(float(anomaly[comp].mean()), 3),
            }
        )
    regions.sort(key=lambda r: (-r["raw"] * np.sqrt(r["blocks"]), r["region"]))
    result["regions"] = regions[:MAX_REGIONS]
    return result


def _heat(anomaly: np.ndarray) -> np.ndarray:
    """Anomaly per block -> RGBA uint8: transparent at 0, red at the threshold, opaque yellow at 2x."""
    x = np.clip(anomaly / (2 * THRESHOLD), 0, 1)
    rgba = np.zeros(anomaly.shape + (4,), dtype=np.uint8)
    rgba[..., 0] = np.round(np.clip(x * 2, 0, 1) * 255)
    rgba[..., 1] = np.round(np.clip(x * 2 - 1, 0, 1) * 255)
    rgba[..., 3] = np.round(x * 255)
    return rgba


def overlay(anomaly: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The block map as a transparent RGBA layer of the image's own size (blocks of BLOCK pixels)."""
    rows, cols = anomaly.shape
    pic = Image.fromarray(_heat(anomaly), "RGBA").resize(
        (cols * BLOCK, rows * BLOCK), Image.Resampling.NEAREST
    )
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    canvas.paste(pic, (0, 0))
    return canvas


def ghost_figure(res: dict, size: tuple[int, int]):
    """The court figure: the anomaly map in the image's pixel coordinates, colour bar, regions numbered."""
    w, h = size
    anomaly = res["map"]
    rows, cols = anomaly.shape
    fig = _figure.figure(_figure.image_height_in(w, h))
    ax = fig.subplots()
    ax.set_facecolor("#bbbbbb")  # the strip beyond the last whole block, never judged
    image = ax.imshow(
        anomaly,
        extent=(0, cols * BLOCK, rows * BLOCK, 0),
        cmap=_figure.COLORMAP,
        vmin=0.0,
        vmax=2 * THRESHOLD,
        interpolation="nearest",
    )
    _figure.pixel_axes(ax, w, h)
    ax.set_xlabel(f"x (pixels; one cell = {BLOCK} x {BLOCK} block)")
    for i, r in enumerate(res["regions"], 1):
        _figure.box(ax, r["region"], "#00c8ff", str(i))
    history = (
        f"background history at quality {res['history']}"
        if res["history"] is not None
        else "no background history found (map only, no region reported)"
    )
    fig.suptitle(f"JPEG ghosts: how far each block's compression history departs from the rest\n{history}")
    bar = _figure.colorbar(
        fig, image, ax, f"anomaly: ln(ratio to the median)\nline: detection threshold {THRESHOLD:g}"
    )
    bar.ax.axhline(THRESHOLD, color="#00c8ff", lw=2)
    return fig


def analyze(path, params, ctx) -> dict:
    # The luma plane exactly as the JPEG decoder produces it (no colour conversion and clipping).
    _data, im = _imageio.open_image(path, draft_mode="L")
    res = analyse(im)
    quality = res["quality"]
    history = "earlier quality found" if res["history"] is not None else "none found"
    findings = [
        _jpegq.quality_finding(
            quality,
            f"the quality the file was last saved at (band {quality['band']})",
        ),
        finding(
            "ghost_history_quality",
            "measurement",
            res["history"],
            unit="IJG quality (1-100)",
            method=f"deepest dip (below {DIP} of both sides) of the median re-save difference",
            note="an earlier JPEG quality most of the image still shows"
            if res["history"] is not None
            else "no earlier, lower JPEG quality is seen in most of the image",
        ),
    ]
    if res["map"] is None:
        findings.append(
            finding(
                "ghost_not_analysed",
                "fact",
                True,
                note="too few qualities below the file's own quality, too small or too flat an image: "
                "no ghost map was made",
            )
        )
        return {"findings": findings, "libraries": _imageio.libraries("scipy")}
    figure_png = _figure.png_bytes(ghost_figure(res, im.size))
    findings.append(
        finding(
            "ghost_map",
            "visual",
            artifact=ctx.add_artifact("ghost-map.png", "image/png", figure_png),
            note="per 16 x 16 block, how far its JPEG compression history departs from the rest, in "
            "the image's pixel coordinates; the colour bar gives the anomaly and marks the detection "
            "threshold; reported regions are outlined and numbered. Flat blocks are at 0: they are "
            "not judged.",
        )
    )
    findings.append(
        finding(
            "ghost_overlay",
            "visual",
            artifact=ctx.add_artifact(
                "ghost-overlay.png", "image/png", _imageio.png_bytes(overlay(res["map"], im.size))
            ),
            overlay=True,
            note="the same map as a transparent layer of the image's size, to be laid over the image: "
            "clear where a block is like the rest, red at the detection threshold, opaque yellow at "
            "twice it; no axes",
        )
    )
    for i, r in enumerate(res["regions"], 1):
        condition = {"background_history": history, "jpeg_quality_band": quality["band"]}
        findings.append(
            finding(
                "ghost_inconsistency",
                "indicator",
                i,
                region=r["region"],
                score=_rates.calibrated(NAME, "ghost_inconsistency", r["raw"]),
                raw_score=r["raw"],
                rates=_rates.for_condition(NAME, "ghost_inconsistency", condition),
                blocks=r["blocks"],
                area_fraction=round(r["area_fraction"], 4),
                note="these blocks' JPEG compression history differs from the rest of the image "
                + (
                    f"(they lack the ghost at quality {res['history']} the rest shows)"
                    if res["history"] is not None
                    else "(they show a ghost of an earlier compression the rest lacks)"
                ),
            )
        )
    findings.append(
        finding(
            "ghost_region_count",
            "measurement",
            len(res["regions"]),
            unit="regions",
            note=f"groups of at least {MIN_BLOCKS} blocks above the threshold (at most {MAX_REGIONS} reported)",
        )
    )
    return {
        "findings": findings,
        "libraries": {**_imageio.libraries("scipy"), "matplotlib": _figure.version()},
    }
