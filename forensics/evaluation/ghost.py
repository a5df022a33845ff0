"""Evaluation of image.ghost on splices made in real camera photographs.

Each case starts from one of the 25 photographs of ``photos.py`` (Debian
wallpaper packages; nine camera models), scaled to 1024 pixels on its longer
side. Its history: saved once as a JPEG at a quality drawn from what
messengers and social networks send (70-85) or from what cameras write
(88-97), and decoded. A spliced case pastes into it a region (a rectangle,
an ellipse or an irregular polygon, 0.5-2% or 2-6% of the image) cut from
another of the photographs, itself a JPEG of quality 70-95, at a random
position (so on a random 8 x 8 grid offset, as a paste is); the result is
saved at a final quality of 70-98 (as an editor or a service would). An
untouched case goes through the same saves without the paste; a quarter of
the untouched cases have no earlier JPEG at all (saved once). The cells
(final quality band x region size band) are cycled through.

Conditions are what the analyzer reads from the file itself: whether it
found a background history and the final quality band (the region size
band is reported per history in the report lines: the analyzer's own
region sizes are coarse, to 16-pixel blocks). A splice counts as found when one
reported region overlaps its box with IoU >= 0.5; a false alarm is any
region reported on an untouched image (per image). The score map is fitted
on the even seeds, its reliability table computed on the odd seeds.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from forensics.analyzers import image_ghost as analyzer

from . import photos, run_all, stats
from .copymove import _bbox, _shape_mask, calibration_map, iou
from .tables import rate_row

ANALYZER = analyzer.NAME
INDICATOR = "ghost_inconsistency"
SIDE = 1024
FINAL_BANDS = {"70-79": (70, 79), "80-89": (80, 89), "90-100": (90, 98)}
SIZES = {"<2%": (0.005, 0.02), ">=2%": (0.02, 0.06)}
CELLS = [(q, s) for q in FINAL_BANDS for s in SIZES]
FULL = {"per_cell": 30, "negatives_per_band": 40}
# The quick subset the test suite reruns: the first cases of the full set.
QUICK = {"cases": 6, "negatives": 3}


def _jpeg(arr: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _history_quality(rng: np.random.Generator) -> int:
    if rng.random() < 0.5:
        return int(rng.integers(70, 86))  # messenger / social network
    return int(rng.integers(88, 98))  # camera


def make(kind: str, seed: int) -> tuple[bytes, dict]:
    """One labelled case: (the JPEG file's bytes, what was done to it)."""
    rng = np.random.default_rng([20261207, 3 if kind == "spliced" else 4, seed])
    if kind == "spliced":
        band, size = CELLS[seed % len(CELLS)]
    else:
        band, size = list(FINAL_BANDS)[seed % len(FINAL_BANDS)], None
    host_index = (seed * 7 + (0 if kind == "spliced" else 5)) % len(photos.PHOTOS)
    host = np.asarray(photos.photo(host_index, max_side=SIDE))
    first = None
    if kind == "spliced" or rng.random() >= 0.25:
        first = _history_quality(rng)
        host = _jpeg(host, first)
    truth = None
    if kind == "spliced":
        donor_index = (host_index + 1 + int(rng.integers(0, len(photos.PHOTOS) - 1))) % len(photos.PHOTOS)
        donor = _jpeg(np.asarray(photos.photo(donor_index, max_side=SIDE)), int(rng.integers(70, 96)))
        h, w = host.shape[:2]
        lo, hi = SIZES[size]
        mask = _shape_mask(rng, h, w, float(rng.uniform(lo, hi)) * h * w).astype(bool)
        box = _bbox(mask)
        dh, dw = donor.shape[:2]
        # Where in the donor the region comes from: any place that fits.
        ox = int(rng.integers(0, max(1, dw - box[2]))) - box[0]
        oy = int(rng.integers(0, max(1, dh - box[3]))) - box[1]
        ys, xs = np.nonzero(mask)
        ok = (ys + oy >= 0) & (ys + oy < dh) & (xs + ox >= 0) & (xs + ox < dw)
        ys, xs = ys[ok], xs[ok]
        host = host.copy()
        host[ys, xs] = donor[ys + oy, xs + ox]
        filled = np.zeros_like(mask)
        filled[ys, xs] = True
        truth = {"region": _bbox(filled), "area_fraction": round(float(filled.mean()), 4)}
    qlo, qhi = FINAL_BANDS[band]
    quality = int(rng.integers(qlo, qhi + 1))
    buf = io.BytesIO()
    Image.fromarray(host).save(buf, format="JPEG", quality=quality)
    meta = {
        "kind": kind,
        "seed": seed,
        "photo": photos.PHOTOS[host_index].name,
        "band": band,
        "first_quality": first,
        "quality": quality,
        "size": size,
        "truth": truth,
    }
    return buf.getvalue(), meta


def case(kind: str, seed: int) -> dict:
    data, meta = make(kind, seed)
    truth = meta["truth"]
    decoded = Image.open(io.BytesIO(data))
    decoded.draft("L", None)  # as the analyzer reads it: the decoded Y plane
    decoded.load()
    res = analyzer.analyse(decoded)
    regions = [
        {"raw": r["raw"], "hit": bool(truth) and iou(r["region"], truth["region"]) >= 0.5}
        for r in res["regions"]
    ]
    return {
        **meta,
        "measured_band": res["quality"]["band"],
        "history": "earlier quality found" if res["history"] is not None else "none found",
        "history_quality": res["history"],
        "candidates": regions,
        "detected": any(r["hit"] for r in regions),
    }


def _run(args):
    return case(*args)


def run_cases(quick: bool, jobs: int) -> list[dict]:
    if quick:
        count, negatives = QUICK["cases"], QUICK["negatives"]
    else:
        count, negatives = FULL["per_cell"] * len(CELLS), FULL["negatives_per_band"] * len(FINAL_BANDS)
    work = [("spliced", s) for s in range(count)] + [("untouched", s) for s in range(negatives)]
    return run_all(_run, work, jobs, chunksize=4)


def summarise(results: list[dict]) -> dict:
    spliced = [r for r in results if r["kind"] == "spliced"]
    untouched = [r for r in results if r["kind"] == "untouched"]
    rows = []
    for history in analyzer.HISTORY:
        for band in FINAL_BANDS:
            cell = [r for r in spliced if (r["history"], r["measured_band"]) == (history, band)]
            neg = [r for r in untouched if (r["history"], r["measured_band"]) == (history, band)]
            if not cell and not neg:
                continue
            rows.append(
                rate_row(
                    {"background_history": history, "jpeg_quality_band": band},
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
    for history in analyzer.HISTORY:
        for size in SIZES:
            sel = [r for r in spliced if (r["history"], r["size"]) == (history, size)]
            if sel:
                k = sum(r["detected"] for r in sel)
                lo, hi = stats.wilson(k, len(sel))
                report.append(
                    f"splices, background history {history}, region {size} of the image: found "
                    f"{k}/{len(sel)} ({k / len(sel):.0%}, 95% CI {lo:.0%}-{hi:.0%})"
                )
    for label, sel in (
        ("history quality < final - 2", [r for r in spliced if r["first_quality"] < r["quality"] - 2]),
        ("history quality >= final - 2", [r for r in spliced if r["first_quality"] >= r["quality"] - 2]),
    ):
        if sel:
            k = sum(r["detected"] for r in sel)
            lo, hi = stats.wilson(k, len(sel))
            report.append(
                f"splices, {label}: found {k}/{len(sel)} ({k / len(sel):.0%}, 95% CI {lo:.0%}-{hi:.0%})"
            )
    had = [r for r in results if r["first_quality"] is not None and r["first_quality"] < r["quality"] - 2]
    right = sum(
        r["history_quality"] is not None and abs(r["history_quality"] - r["first_quality"]) <= 1 for r in had
    )
    report.append(
        f"background history quality within +-1 of the true one: {right}/{len(had)} (when lower than final)"
    )
    fa = sum(len(r["candidates"]) for r in untouched)
    lo, hi = stats.poisson_interval(fa, len(untouched))
    report.append(
        f"untouched: {fa} regions on {len(untouched)} images ({fa / len(untouched):.3f} per image, "
        f"95% CI {lo:.3f}-{hi:.3f})"
    )
    spurious = sum(sum(not c["hit"] for c in r["candidates"]) for r in spliced)
    report.append(f"spliced: {spurious} regions not matching the splice on {len(spliced)} images")
    return {
        "indicators": {
            INDICATOR: {
                "condition": ["background_history", "jpeg_quality_band"],
                "found_when": "a reported region overlaps the pasted region's box with IoU >= 0.5; false "
                "alarms: regions on untouched photographs in the same history and final quality band",
                "false_alarm_unit": "image",
                "rows": rows,
                "calibration": calibration,
                "reliability": reliability,
            }
        },
        "set": (
            f"{len(spliced)} splices and {len(untouched)} untouched images from 25 real photographs "
            "(Debian mate-backgrounds, plasma-workspace-wallpapers, lomiri-wallpapers; nine camera models) "
            f"at {SIDE} px; earlier JPEG q70-85 or q88-97 (a quarter of untouched: none); pasted "
            "rectangle/ellipse/polygon regions of 0.5-6% from another photograph (JPEG q70-95, random "
            "grid offset); final JPEG q70-98"
        ),
        "report": report,
    }


def evaluate(quick: bool, jobs: int) -> dict:
    return summarise(run_cases(quick, jobs))
