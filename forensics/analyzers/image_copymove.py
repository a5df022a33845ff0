"""Copy-move forgery detection: a part of the image copied to another place in the same image.

Method (keypoint matching in the style of Amerini et al. 2011, with a dense
check of each match):

1. The first frame is decoded (safe decoder) and converted to grey; it is
   scaled down so that its longer side is at most ``max_side`` pixels
   (regions are reported in the file's own pixel coordinates).
2. SIFT keypoints and descriptors (OpenCV), at most ``MAX_KEYPOINTS``.
3. Every descriptor is matched against all others (k nearest neighbours);
   the g2NN rule keeps the neighbours before the first ratio of successive
   distances above ``G2NN_RATIO``. Pairs closer than ``MIN_SHIFT`` pixels are
   dropped (a keypoint matches its own neighbourhood).
4. RANSAC fits a similarity transform (rotation, uniform scale, shift) to
   the pairs (both directions offered); a transform with at least
   ``min_inliers`` inlier pairs is a candidate. Its inliers are removed and
   the search repeated, up to ``MAX_CLUSTERS`` candidates.
5. Dense check: the image is mapped through the transform and compared with
   itself in 9 x 9 windows; the textured pixels where the two agree closely
   (normalised residual below ``RESIDUAL_MAX``), in the connected parts that
   hold the inlier keypoints, are the copied target region; the source region
   is that region mapped back. A candidate whose target region is smaller
   than ``MIN_AREA`` of the image is dropped.

Findings: the transform and regions of each candidate (``copy_move``
indicator: "region" is the target, "source_region" the source, both
[x, y, w, h]) with its rates for this file's condition (final JPEG quality
band, kind of transform, region size band) and calibrated score (the raw
score is the number of inlier pairs); a ``copy_move_count`` measurement; a
figure of the image with sources in green, targets in red (numbered as the
findings) and the matched keypoints joined (visual), and the same drawing
on a transparent layer of the image's size (``copy_move_overlay``).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from . import _figure, _imageio, _jpegq, _rates
from .base import finding

NAME = "image.copymove"
# 1.0.0: first version; rates measured on copy-moves in real camera photographs
# (forensics/evaluation/copymove.py). 1.1.0: the picture is a labelled figure (pixel axes,
# numbered regions, legend) plus a same-size transparent overlay (copy_move_overlay).
VERSION = "1.1.0"
TIME_LIMIT = 600  # seconds of wall-clock time per run (CUSTODY_ANALYSIS_TIME_LIMITS overrides)
MEMORY_LIMIT = 2 << 30  # bytes of address space (CUSTODY_ANALYSIS_MEMORY_LIMITS overrides)
ACCEPTS = ["image/jpeg", "image/png", "image/tiff", "image/webp", "image/bmp", "image/x-ms-bmp", "image/gif"]
DESCRIPTION = (
    "Copy-move detection: regions of the image that reappear elsewhere in it (shifted, rotated or "
    "scaled), found by SIFT keypoint matching and checked pixel by pixel, drawn on the image."
)
PARAMETERS = {
    "max_side": {
        "type": "int",
        "default": 1600,
        "min": 256,
        "max": 4096,
        "help": "the image is analysed scaled down to this longer side (pixels)",
    },
    "min_inliers": {
        "type": "int",
        "default": 8,
        "min": 4,
        "max": 1000,
        "help": "fewest keypoint pairs agreeing on one transform for a candidate",
    },
}

MAX_KEYPOINTS = 6000
CONTRAST = 0.01  # SIFT contrast threshold (OpenCV's default 0.04 leaves smooth areas without keypoints)
KNN = 8  # neighbours examined per keypoint by g2NN
G2NN_RATIO = 0.6
MIN_SHIFT = 24  # pixels at analysis scale
RANSAC_PX = 3.0
MAX_CLUSTERS = 4
WINDOW = 9
RESIDUAL_MAX = 0.15
MIN_TEXTURE = 4.0  # local variance (grey levels squared) below which pixels are not compared
MIN_AREA = 0.001  # fraction of the image
SIZE_BANDS = ((0.0, 0.02, "<2%"), (0.02, 1.0, ">=2%"))

LIMITS = [
    "A copy-move indicator means that two parts of the image agree, point for point, after a shift, "
    "rotation and scaling; it does not tell which is the original and which the copy, nor who made it. "
    "Genuinely repeated things (windows of a facade, tiles, printed patterns, rows of identical objects) "
    "match too and are false alarms the examiner must rule out by looking. Copies of flat or smooth "
    "areas (sky, blurred background, a wall) have no keypoints and are not found; mirrored copies, "
    "perspective-distorted copies and copies that were blurred, re-coloured or resized by more than "
    "about 1.5x are outside the method. The image is analysed at most max_side pixels on its longer "
    "side; alpha is dropped, only the first frame is used and EXIF Orientation is not applied "
    "(regions are in stored pixel coordinates). "
    f"Images over {_imageio.MAX_PIXELS:,} pixels are refused."
] + _rates.limits(NAME)


def _cv2():
    import cv2

    cv2.setNumThreads(1)  # deterministic and within the worker's share of the machine
    return cv2


def _grey(im: Image.Image, max_side: int) -> tuple[np.ndarray, float]:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max()) or 1.0
        im = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    grey = im.convert("RGB").convert("L")
    scale = 1.0
    if max(grey.size) > max_side:
        scale = max_side / max(grey.size)
        grey = grey.resize(
            (max(1, round(grey.width * scale)), max(1, round(grey.height * scale))), Image.Resampling.LANCZOS
        )
    return np.asarray(grey, dtype=np.uint8), scale


def _pairs(cv2, grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matched keypoint positions (p, q), each an (n, 2) array, by g2NN."""
    sift = cv2.SIFT_create(nfeatures=MAX_KEYPOINTS, contrastThreshold=CONTRAST)
    kps, des = sift.detectAndCompute(grey, None)
    if des is None or len(kps) < 3:
        return np.zeros((0, 2)), np.zeros((0, 2))
    pts = np.asarray([k.pt for k in kps], dtype=np.float64)
    k = min(KNN + 1, len(kps))
    matches = cv2.BFMatcher(cv2.NORM_L2).knnMatch(des, des, k=k)
    seen = set()
    src, dst = [], []
    for i, row in enumerate(matches):
        others = [m for m in row if m.trainIdx != i]
        for t in range(len(others) - 1):
            d1, d2 = others[t].distance, others[t + 1].distance
            if d2 <= 0 or d1 / d2 > G2NN_RATIO:
                break
            j = others[t].trainIdx
            key = (min(i, j), max(i, j))
            if key in seen or np.hypot(*(pts[i] - pts[j])) < MIN_SHIFT:
                continue
            seen.add(key)
            src.append(pts[i])
            dst.append(pts[j])
    return np.asarray(src).reshape(-1, 2), np.asarray(dst).reshape(-1, 2)


def _local(cv2, a: np.ndarray) -> np.ndarray:
    return cv2.boxFilter(a, cv2.CV_32F, (WINDOW, WINDOW), borderType=cv2.BORDER_REFLECT)


def _dense_region(cv2, grey: np.ndarray, matrix: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
    """Mask of target pixels whose neighbourhood equals the source mapped through ``matrix``."""
    h, w = grey.shape
    a = grey.astype(np.float32)
    b = cv2.warpAffine(a, matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=-1.0)
    valid = cv2.warpAffine(np.ones_like(a), matrix, (w, h), flags=cv2.INTER_NEAREST, borderValue=0.0)
    mean_a = _local(cv2, a)
    var_a = np.maximum(_local(cv2, a * a) - mean_a * mean_a, 0)
    resid = _local(cv2, (a - b) ** 2)
    ok = (var_a > MIN_TEXTURE) & (resid < RESIDUAL_MAX * (var_a + 1.0)) & (valid > 0.5)
    # The trivial match: where the transform moves a pixel by less than MIN_SHIFT.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    inv = cv2.invertAffineTransform(matrix)
    sx = inv[0, 0] * xx + inv[0, 1] * yy + inv[0, 2]
    sy = inv[1, 0] * xx + inv[1, 1] * yy + inv[1, 2]
    ok &= np.hypot(sx - xx, sy - yy) >= MIN_SHIFT
    mask = ok.astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    count, labels = cv2.connectedComponents(mask, connectivity=8)
    if count <= 1:
        return None
    keep = set()
    for x, y in targets:
        xi, yi = int(round(x)), int(round(y))
        if 0 <= xi < w and 0 <= yi < h:
            window = labels[max(0, yi - 3) : yi + 4, max(0, xi - 3) : xi + 4]
            keep.update(int(v) for v in np.unique(window) if v)
    if not keep:
        return None
    return np.isin(labels, sorted(keep))


def _bbox(mask: np.ndarray) -> list[int] | None:
    ys, xs = np.nonzero(mask)
    if not len(xs):
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _scaled(box: list[int], scale: float, size: tuple[int, int]) -> list[int]:
    x, y, w, h = (v / scale for v in box)
    x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
    x1, y1 = min(size[0], math.ceil(x + w)), min(size[1], math.ceil(y + h))
    return [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]


def transform_kind(rotation_deg: float, scale: float) -> str:
    """The condition key for the transform: "shift", "rotation" or "scaled" (scaled, maybe rotated)."""
    if abs(math.log(scale)) > math.log(1.05):
        return "scaled"
    if abs(rotation_deg) > 3.0:
        return "rotation"
    return "shift"


def size_band(fraction: float) -> str:
    for lo, hi, name in SIZE_BANDS:
        if lo <= fraction < hi:
            return name
    return SIZE_BANDS[-1][2]


def detect(grey: np.ndarray, min_inliers: int) -> list[dict]:
    """Copy-move candidates in a grey uint8 array: regions in its own coordinates."""
    cv2 = _cv2()
    h, w = grey.shape
    p, q = _pairs(cv2, grey)
    out = []
    alive = np.ones(len(p), dtype=bool)
    for _ in range(MAX_CLUSTERS):
        idx = np.nonzero(alive)[0]
        if len(idx) < min_inliers:
            break
        src = np.concatenate([p[idx], q[idx]]).astype(np.float32)
        dst = np.concatenate([q[idx], p[idx]]).astype(np.float32)
        matrix, inl = cv2.estimateAffinePartial2D(
            src, dst, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX, maxIters=4000, confidence=0.999
        )
        if matrix is None:
            break
        inl = inl.ravel().astype(bool)
        n = len(idx)
        used = inl[:n] | inl[n:]
        forward = inl[:n].sum() >= inl[n:].sum()
        pairs_in = int(max(inl[:n].sum(), inl[n:].sum()))
        alive[idx[used]] = False
        if pairs_in < min_inliers:
            continue
        if forward:
            s_pts, t_pts = p[idx[inl[:n]]], q[idx[inl[:n]]]
        else:
            s_pts, t_pts = q[idx[inl[n:]]], p[idx[inl[n:]]]
        scale = float(math.hypot(matrix[0, 0], matrix[1, 0]))
        rotation = float(math.degrees(math.atan2(matrix[1, 0], matrix[0, 0])))
        if not 1 / 3 < scale < 3:
            continue
        mask = _dense_region(cv2, grey, matrix, t_pts)
        if mask is None or mask.sum() < MIN_AREA * h * w:
            continue
        inv = cv2.invertAffineTransform(matrix)
        src_mask = cv2.warpAffine(mask.astype(np.uint8), inv, (w, h), flags=cv2.INTER_NEAREST) > 0
        target, source = _bbox(mask), _bbox(src_mask)
        if source is None:
            continue
        out.append(
            {
                "target": target,
                "source": source,
                "area_fraction": float(mask.sum()) / (h * w),
                "inliers": pairs_in,
                "rotation_deg": rotation,
                "scale": scale,
                "shift": [float(matrix[0, 2]), float(matrix[1, 2])],
                "source_points": s_pts,
                "target_points": t_pts,
            }
        )
    return out


SOURCE, TARGET, LINK = "#00d200", "#ff0000", "#ffd700"
FIGURE_SIDE = 1100  # longest side of the photograph as drawn in the figure (about its pixel width)
MAX_LINKS = 200  # matched keypoint pairs drawn per candidate at most (evenly thinned beyond)


def _links(c: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = list(zip(c["source_points"], c["target_points"], strict=True))
    if len(pairs) > MAX_LINKS:
        pairs = [pairs[i] for i in np.linspace(0, len(pairs) - 1, MAX_LINKS).astype(int)]
    return pairs


def copymove_figure(im: Image.Image, found: list[dict], scale: float):
    """The court figure: the image in its own pixel coordinates, each candidate's regions numbered."""
    from matplotlib.lines import Line2D

    w, h = im.size
    small = im.convert("RGB")
    if max(small.size) > FIGURE_SIDE:
        f = FIGURE_SIDE / max(small.size)
        small = small.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BOX)
    fig = _figure.figure(_figure.image_height_in(w, h, extra_in=1.3))
    ax = fig.subplots()
    _figure.show_image(ax, np.asarray(small), w, h)
    for i, c in enumerate(found, 1):
        for a, b in _links(c):
            ax.plot([a[0] / scale, b[0] / scale], [a[1] / scale, b[1] / scale], color=LINK, lw=0.6)
        _figure.box(ax, _scaled(c["source"], scale, (w, h)), SOURCE, f"{i} source")
        _figure.box(ax, _scaled(c["target"], scale, (w, h)), TARGET, f"{i} target")
    ax.set_title(
        f"Copy-move: {len(found)} candidate(s); each source region reappears at its target"
        if found
        else "Copy-move: no candidate found"
    )
    if found:
        handles = [
            Line2D([], [], color=SOURCE, lw=2, label="source region"),
            Line2D([], [], color=TARGET, lw=2, label="target region (which is the copy is not known)"),
            Line2D([], [], color=LINK, lw=1, label="matched keypoints"),
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    return fig


def overlay(size: tuple[int, int], found: list[dict], scale: float) -> Image.Image:
    """Regions and links on a transparent RGBA layer of the image's own size (no axes)."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    line = max(2, round(max(size) / 400))
    for c in found:
        for a, b in _links(c):
            draw.line([tuple(a / scale), tuple(b / scale)], fill=(255, 215, 0, 255), width=max(1, line // 2))
        for box, colour in ((c["source"], (0, 210, 0, 255)), (c["target"], (255, 0, 0, 255))):
            x, y, bw, bh = _scaled(box, scale, size)
            draw.rectangle([x, y, x + bw - 1, y + bh - 1], outline=colour, width=line)
    return layer


def analyze(path, params, ctx) -> dict:
    max_side = int(params.get("max_side", PARAMETERS["max_side"]["default"]))
    min_inliers = int(params.get("min_inliers", PARAMETERS["min_inliers"]["default"]))
    _data, im = _imageio.open_image(path)
    quality = _jpegq.estimate(im)
    grey, scale = _grey(im, max_side)
    found = detect(grey, min_inliers)
    size = im.size
    findings = [
        _jpegq.quality_finding(
            quality,
            "the quality the file was last saved at; the rates of this analyzer are kept per band "
            f"of it (this file: {quality['band']})",
        )
    ]
    for i, c in enumerate(found, 1):
        condition = {
            "jpeg_quality_band": quality["band"],
            "transform": transform_kind(c["rotation_deg"], c["scale"]),
            "region_size_band": size_band(c["area_fraction"]),
        }
        findings.append(
            finding(
                "copy_move",
                "indicator",
                i,
                region=_scaled(c["target"], scale, size),
                source_region=_scaled(c["source"], scale, size),
                score=_rates.calibrated(NAME, "copy_move", c["inliers"]),
                raw_score=c["inliers"],
                rates=_rates.for_condition(NAME, "copy_move", condition),
                transform={
                    "rotation_deg": round(c["rotation_deg"], 1),
                    "scale": round(c["scale"], 3),
                    "shift_px": [round(v / scale, 1) for v in c["shift"]],
                },
                area_fraction=round(c["area_fraction"], 4),
                note=f"{c['inliers']} keypoint pairs agree on one transform and the pixels agree with it: "
                "'source_region' reappears at 'region' (which one is the copy is not known)",
            )
        )
    findings.append(
        finding(
            "copy_move_count",
            "measurement",
            len(found),
            unit="candidates",
            method="SIFT + g2NN + RANSAC similarity transform + dense check",
            note="number of copy-move candidates found",
        )
    )
    figure_png = _figure.png_bytes(copymove_figure(im, found, scale))
    findings.append(
        finding(
            "copy_move_image",
            "visual",
            artifact=ctx.add_artifact("copymove.png", "image/png", figure_png),
            note="the image in its pixel coordinates: sources in green, targets in red, numbered as the "
            "copy_move findings, matched keypoints joined in yellow"
            if found
            else "the image; no copy-move candidate was found",
        )
    )
    findings.append(
        finding(
            "copy_move_overlay",
            "visual",
            artifact=ctx.add_artifact(
                "copymove-overlay.png", "image/png", _imageio.png_bytes(overlay(size, found, scale))
            ),
            overlay=True,
            note="the same regions and links on a transparent layer of the image's size, to be laid "
            "over the image; no axes" + ("" if found else " (empty: no candidate)"),
        )
    )
    return {
        "findings": findings,
        "libraries": {**_imageio.libraries("opencv-python-headless"), "matplotlib": _figure.version()},
    }
