"""Evaluation of image.copymove on copy-moves made in real camera photographs.

Each case starts from one of the 25 photographs of ``photos.py`` (Debian
wallpaper packages; nine camera models), scaled to 1024 pixels on its longer
side and saved as the "camera" JPEG at quality 88-97, then decoded. A forged
case copies a region of it (a rectangle, an ellipse or an irregular polygon,
0.5-2% or 2-6% of the image) to another, non-overlapping place: shifted only,
rotated by 5-45 degrees, or scaled by 0.8-0.95 or 1.05-1.25 (and rotated by
up to 30 degrees), with bicubic interpolation; the result is saved at a final
JPEG quality of 70-95 (4:2:0), as editors and social media do. An untouched
case is the same photograph, shifted crop, saved the same way. The cells
(final quality band x transform x region size band) are cycled through so
that each gets the same number of cases; everything is drawn from the seed.

A copy-move counts as found when one candidate's two regions overlap the true
source and target boxes with IoU >= 0.5 each (in either order). A false alarm
is any candidate on an untouched image (rate per image, per final quality
band). The score map is fitted on the even seeds and its reliability table
is computed on the odd seeds.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from forensics.analyzers import _jpegq
from forensics.analyzers import image_copymove as analyzer

from . import photos, run_all, stats
from .tables import rate_row

ANALYZER = analyzer.NAME
INDICATOR = "copy_move"
SIDE = 1024
QUALITY_BANDS = {"70-79": (70, 79), "80-89": (80, 89), "90-100": (90, 95)}
TRANSFORMS = ("shift", "rotation", "scaled")
SIZES = {"<2%": (0.005, 0.02), ">=2%": (0.02, 0.06)}
CELLS = [(q, t, s) for q in QUALITY_BANDS for t in TRANSFORMS for s in SIZES]
FULL = {"per_cell": 10, "negatives_per_band": 30}
# The quick subset the test suite reruns: the first cases of the full set.
QUICK = {"cases": 9, "negatives": 3}


def _shape_mask(rng: np.random.Generator, h: int, w: int, area: float) -> np.ndarray:
    """A region of about ``area`` pixels: rectangle, ellipse or star-shaped polygon."""
    import cv2

    aspect = float(rng.uniform(0.6, 1.6))
    kind = int(rng.integers(0, 3))
    bw = math.sqrt(area * aspect) * (1.0 if kind == 0 else 2 / math.sqrt(math.pi))
    bh = bw / aspect
    bw, bh = min(bw, w * 0.45), min(bh, h * 0.45)
    cx = float(rng.uniform(bw / 2 + 4, w - bw / 2 - 4))
    cy = float(rng.uniform(bh / 2 + 4, h - bh / 2 - 4))
    mask = np.zeros((h, w), np.uint8)
    if kind == 0:
        mask[round(cy - bh / 2) : round(cy + bh / 2), round(cx - bw / 2) : round(cx + bw / 2)] = 1
    elif kind == 1:
        cv2.ellipse(mask, (round(cx), round(cy)), (round(bw / 2), round(bh / 2)), 0, 0, 360, 1, -1)
    else:
        n = int(rng.integers(5, 9))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        radii = rng.uniform(0.6, 1.0, n)
        pts = np.stack([cx + radii * bw / 2 * np.cos(angles), cy + radii * bh / 2 * np.sin(angles)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    return mask


def calibration_map(pairs: list[tuple[float, int]]) -> list[list[float]]:
    """Isotonic map from raw score to the frequency of a true detection, equal scores pooled.

    Like ``stats.isotonic``, but candidates with the same raw score (integer
    inlier counts tie often) form one block before pooling, so that a tie
    cannot produce two steps at the same score. Same output format.
    """
    groups: dict[float, list[int]] = {}
    for score, outcome in pairs:
        groups.setdefault(float(score), []).append(int(outcome))
    blocks: list[list[float]] = []  # [sum of outcomes, count, lowest score]
    for score in sorted(groups):
        blocks.append([float(sum(groups[score])), float(len(groups[score])), score])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            y2, n2, _ = blocks.pop()
            blocks[-1][0] += y2
            blocks[-1][1] += n2
    return [[b[2], round(b[0] / b[1], 3)] for b in blocks]


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def iou(a: list[int], b: list[int]) -> float:
    ax1, ay1, bx1, by1 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0, min(ax1, bx1) - max(a[0], b[0]))
    ih = max(0, min(ay1, by1) - max(a[1], b[1]))
    inter = iw * ih
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0


def _camera(seed: int, rng: np.random.Generator) -> np.ndarray:
    """The photograph as a camera JPEG at quality 88-97, decoded (RGB uint8)."""
    im = photos.photo(seed % len(photos.PHOTOS), max_side=SIDE)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=int(rng.integers(88, 98)))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _forge(img: np.ndarray, rng: np.random.Generator, transform: str, size: str):
    import cv2

    h, w = img.shape[:2]
    lo, hi = SIZES[size]
    for _ in range(200):
        area = float(rng.uniform(lo, hi)) * h * w
        src = _shape_mask(rng, h, w, area)
        sb = _bbox(src)
        cx, cy = sb[0] + sb[2] / 2, sb[1] + sb[3] / 2
        angle, scale = 0.0, 1.0
        if transform == "rotation":
            angle = float(rng.uniform(5, 45)) * float(rng.choice([-1, 1]))
        elif transform == "scaled":
            scale = float(rng.choice([rng.uniform(0.8, 0.95), rng.uniform(1.05, 1.25)]))
            angle = float(rng.uniform(-30, 30))
        tx, ty = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        m = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        m[0, 2] += tx - cx
        m[1, 2] += ty - cy
        tgt = cv2.warpAffine(src * 255, m, (w, h), flags=cv2.INTER_LINEAR) > 127
        if tgt.sum() < 0.97 * src.sum() * scale * scale:
            continue  # partly outside the image
        tb = _bbox(tgt)
        gap = 8
        if not (
            tb[0] > sb[0] + sb[2] + gap
            or sb[0] > tb[0] + tb[2] + gap
            or tb[1] > sb[1] + sb[3] + gap
            or sb[1] > tb[1] + tb[3] + gap
        ):
            continue
        flags = cv2.INTER_NEAREST if transform == "shift" else cv2.INTER_CUBIC
        if transform == "shift":
            m[0, 2], m[1, 2] = round(m[0, 2]), round(m[1, 2])
            tgt = cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_NEAREST) > 0
            tb = _bbox(tgt)
        moved = cv2.warpAffine(img, m, (w, h), flags=flags, borderMode=cv2.BORDER_REFLECT)
        out = img.copy()
        out[tgt] = moved[tgt]
        truth = {
            "source": sb,
            "target": tb,
            "area_fraction": round(float(tgt.sum()) / (h * w), 4),
            "rotation_deg": round(angle, 1),
            "scale": round(scale, 3),
        }
        return out, truth
    raise RuntimeError("no place for the copy")


def make(kind: str, seed: int) -> tuple[bytes, dict]:
    """One labelled case: (the JPEG file's bytes, what was done to it)."""
    rng = np.random.default_rng([20261207, 1 if kind == "forged" else 2, seed])
    if kind == "forged":
        band, transform, size = CELLS[seed % len(CELLS)]
    else:
        band, transform, size = list(QUALITY_BANDS)[seed % len(QUALITY_BANDS)], None, None
    photo_index = (seed * 7 + (0 if kind == "forged" else 3)) % len(photos.PHOTOS)
    img = _camera(photo_index, rng)
    truth = None
    if kind == "forged":
        img, truth = _forge(img, rng, transform, size)
    else:
        # A different framing of the photograph than the forged cases (crop of 85-100%).
        h, w = img.shape[:2]
        f = float(rng.uniform(0.85, 1.0))
        ch, cw = int(h * f), int(w * f)
        y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = img[y0 : y0 + ch, x0 : x0 + cw]
    qlo, qhi = QUALITY_BANDS[band]
    quality = int(rng.integers(qlo, qhi + 1))
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    meta = {
        "kind": kind,
        "seed": seed,
        "photo": photos.PHOTOS[photo_index].name,
        "band": band,
        "quality": quality,
        "transform": transform,
        "size": size,
        "truth": truth,
    }
    return buf.getvalue(), meta


def case(kind: str, seed: int) -> dict:
    """One labelled case: run the detector on it and score its candidates."""
    data, meta = make(kind, seed)
    truth = meta["truth"]
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    measured_band = _jpegq.estimate(decoded)["band"]
    grey, scale = analyzer._grey(decoded, analyzer.PARAMETERS["max_side"]["default"])
    found = analyzer.detect(grey, analyzer.PARAMETERS["min_inliers"]["default"])
    candidates = []
    for c in found:
        hit = False
        if truth:
            a, b = truth["source"], truth["target"]
            s, t = c["source"], c["target"]
            hit = (iou(s, a) >= 0.5 and iou(t, b) >= 0.5) or (iou(s, b) >= 0.5 and iou(t, a) >= 0.5)
        candidates.append(
            {
                "raw": c["inliers"],
                "hit": hit,
                "transform": analyzer.transform_kind(c["rotation_deg"], c["scale"]),
            }
        )
    return {
        **meta,
        "measured_band": measured_band,
        "candidates": candidates,
        "detected": any(c["hit"] for c in candidates),
    }


def _run(args):
    return case(*args)


def run_cases(quick: bool, jobs: int) -> list[dict]:
    if quick:
        count, negatives = QUICK["cases"], QUICK["negatives"]
    else:
        count, negatives = FULL["per_cell"] * len(CELLS), FULL["negatives_per_band"] * len(QUALITY_BANDS)
    work = [("forged", s) for s in range(count)] + [("untouched", s) for s in range(negatives)]
    return run_all(_run, work, jobs, chunksize=4)


def summarise(results: list[dict]) -> dict:
    forged = [r for r in results if r["kind"] == "forged"]
    untouched = [r for r in results if r["kind"] == "untouched"]
    rows = []
    for band, transform, size in CELLS:
        cell = [r for r in forged if (r["band"], r["transform"], r["size"]) == (band, transform, size)]
        neg = [r for r in untouched if r["band"] == band]
        rows.append(
            rate_row(
                {"jpeg_quality_band": band, "transform": transform, "region_size_band": size},
                positives=len(cell),
                detected=sum(r["detected"] for r in cell),
                negatives=len(neg),
                false_alarms=sum(len(r["candidates"]) for r in neg),
            )
        )
    fit = [(c["raw"], int(c["hit"])) for r in results if r["seed"] % 2 == 0 for c in r["candidates"]]
    held = [(c["raw"], int(c["hit"])) for r in results if r["seed"] % 2 == 1 for c in r["candidates"]]
    calibration = calibration_map(fit) if fit else []
    reliability = (
        stats.reliability([stats.apply_map(calibration, s) for s, _ in held], [y for _, y in held])
        if calibration and held
        else []
    )
    report = []
    for label, key in (
        ("final JPEG quality band", "band"),
        ("transform", "transform"),
        ("size band", "size"),
    ):
        for value in sorted({r[key] for r in forged}):
            sel = [r for r in forged if r[key] == value]
            k = sum(r["detected"] for r in sel)
            lo, hi = stats.wilson(k, len(sel))
            report.append(
                f"{label} {value}: found {k}/{len(sel)} ({k / len(sel):.0%}, 95% CI {lo:.0%}-{hi:.0%})"
            )
    fa = sum(len(r["candidates"]) for r in untouched)
    lo, hi = stats.poisson_interval(fa, len(untouched))
    report.append(
        f"untouched: {fa} false candidates on {len(untouched)} images ({fa / len(untouched):.3f} per image, "
        f"95% CI {lo:.3f}-{hi:.3f}); images with any: {sum(bool(r['candidates']) for r in untouched)}"
    )
    spurious = sum(sum(not c["hit"] for c in r["candidates"]) for r in forged)
    report.append(f"forged: {spurious} candidates not matching the true pair on {len(forged)} images")
    misband = sum(r["measured_band"] != r["band"] for r in results)
    report.append(
        f"final quality band read from the file differs from the band made: {misband}/{len(results)}"
    )
    return {
        "indicators": {
            INDICATOR: {
                "condition": ["jpeg_quality_band", "transform", "region_size_band"],
                "found_when": "one candidate's source and target boxes overlap the true ones with IoU >= 0.5 "
                "each; false alarms: candidates on untouched photographs of the same final quality band",
                "false_alarm_unit": "image",
                "rows": rows,
                "calibration": calibration,
                "reliability": reliability,
            }
        },
        "set": (
            f"{len(forged)} copy-moves and {len(untouched)} untouched images from 25 real photographs "
            "(Debian mate-backgrounds, plasma-workspace-wallpapers, lomiri-wallpapers; nine camera models) "
            f"at {SIDE} px, camera JPEG q88-97, regions rectangle/ellipse/polygon of 0.5-6% of the image "
            "shifted, rotated 5-45 deg or scaled 0.8-1.25 (bicubic), final JPEG q70-95"
        ),
        "report": report,
    }


def evaluate(quick: bool, jobs: int) -> dict:
    return summarise(run_cases(quick, jobs))
