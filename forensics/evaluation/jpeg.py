"""Evaluation of image.jpeg's double-compression indicator on real photographs.

Source (``photos()``): the photographs Debian's ``mate-backgrounds`` package
ships in /usr/share/backgrounds/mate (twelve nature photographs and one of
elephants; camera JPEGs from Canon, Sony and Minolta bodies and others whose
metadata was stripped, 1280x1024 to 2560x1920, saved at qualities 75-100).
Synthetic pictures, screenshots and the package's drawn wallpapers are not used.

Each picture of the set is a patch of one photograph: the photograph is
decoded, scaled down by a random factor of 0.35-0.6 (Lanczos; at least to 521
pixels on the short side; this also
removes the grid of the photograph's own JPEG compression) and a 520x520
patch is cut at a random place. Then, with Pillow's libjpeg-turbo encoder:

- single: a 512x512 crop of the patch at a random offset, compressed once at
  the second quality Q2 (60-98);
- double: the patch compressed at the first quality Q1 (50-95, Q1 != Q2),
  decoded, cropped to 512x512 and compressed again at Q2. The crop keeps the
  8x8 grid (offset a multiple of 8: "aligned", half the cases) or shifts it
  (any other offset: "shifted", as after cropping in an editor).

Chroma subsampling is 4:2:0 in three cases out of four and 4:4:4 otherwise
(the same for both compressions of a picture). Every draw comes from a seed
(photo, patch), so the set is rebuilt identically.

The indicator's condition is what the analyzer reads in the file: the band of
its estimated quality Q2 and whether its tables are libjpeg's standard ones.
The statistic's spread on single compressions differs a lot between bands, so
each band has its own threshold: the lowest that flags at most 2% of the
single compressions of the even patches. The calibration map (statistic /
threshold -> probability of double compression) is fitted on the same even
patches. Every rate in the table, the reliability table and the report are
measured on the odd patches only (held out). The first quality is unknown to
the analyzer, so the report adds detection rates per true Q1 band, Q2 band and
grid alignment, and the rates of image.jpeg 1.0.0's single threshold on the
same held-out pictures.
"""

from __future__ import annotations

import functools
import io
import math
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from forensics.analyzers import _rates, image_jpeg

from . import stats, tables

ANALYZER = "image.jpeg"
INDICATOR = "double_compression"
DEBIAN_PACKAGE = "mate-backgrounds"
PHOTO_DIR = Path("/usr/share/backgrounds/mate")
# The photographs of the package (its other files are drawn or rendered wallpapers).
PHOTO_FILES = (
    "nature/Aqua.jpg",
    "nature/Blinds.jpg",
    "nature/Dune.jpg",
    "nature/FreshFlower.jpg",
    "nature/Garden.jpg",
    "nature/GreenMeadow.jpg",
    "nature/LadyBird.jpg",
    "nature/RainDrops.jpg",
    "nature/Storm.jpg",
    "nature/TwoWings.jpg",
    "nature/Wood.jpg",
    "nature/YellowFlower.jpg",
    "abstract/Elephants.jpg",
)
PATCH = 520
SIZE = 512
FULL_PATCHES = 40  # per photograph; each patch gives one single and one double
QUICK_PATCHES = 2
Q1_RANGE = (50, 95)
Q2_RANGE = (60, 98)
Q1_BANDS = ((50, 69), (70, 84), (85, 95))
Q2_BANDS = image_jpeg.DQ_Q2_BANDS
TARGET_FALSE_ALARMS = 0.02  # per band, on the fit half
MIN_THRESHOLD = 0.05


class MissingSource(RuntimeError):
    pass


def photos() -> list[Path]:
    """The real photographs the set is cut from, in a fixed order."""
    paths = [PHOTO_DIR / name for name in PHOTO_FILES]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise MissingSource(
            f"{missing[0]} is missing: install the Debian package {DEBIAN_PACKAGE} (./scripts/test does)"
        )
    return paths


@functools.cache
def _photo(index: int) -> Image.Image:
    with Image.open(photos()[index]) as im:
        return im.convert("RGB")


def band(value: int, bands) -> str:
    for lo, hi in bands:
        if lo <= value <= hi:
            return f"{lo}-{hi}"
    return "other"


def _encode(img: Image.Image, quality: int, subsampling: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, subsampling=subsampling)
    return buf.getvalue()


def cases(photo: int, patch: int) -> list[dict]:
    """The single- and the double-compressed picture made from one patch of one photograph."""
    rng = np.random.default_rng([20261207, photo, patch])
    src = _photo(photo)
    low = max(0.35, (PATCH + 1) / min(src.size))  # the smallest photographs are scaled less
    scale = rng.uniform(low, max(low, 0.6))
    small = src.resize((round(src.width * scale), round(src.height * scale)), Image.Resampling.LANCZOS)
    x = int(rng.integers(0, small.width - PATCH + 1))
    y = int(rng.integers(0, small.height - PATCH + 1))
    base = small.crop((x, y, x + PATCH, y + PATCH))
    subsampling = 0 if rng.random() < 0.25 else 2
    out = []
    q2 = int(rng.integers(Q2_RANGE[0], Q2_RANGE[1] + 1))
    dx, dy = (int(v) for v in rng.integers(0, PATCH - SIZE + 1, 2))
    single = _encode(base.crop((dx, dy, dx + SIZE, dy + SIZE)), q2, subsampling)
    out.append({"double": False, "q1": None, "q2": q2, "aligned": None, "data": single})
    q2 = int(rng.integers(Q2_RANGE[0], Q2_RANGE[1] + 1))
    q1 = q2
    while q1 == q2:
        q1 = int(rng.integers(Q1_RANGE[0], Q1_RANGE[1] + 1))
    aligned = bool(rng.random() < 0.5)
    if aligned:
        dx, dy = 8 * int(rng.integers(0, 2)), 0
    else:
        dx, dy = 0, 0
        while dx % 8 == 0 and dy % 8 == 0:
            dx, dy = (int(v) for v in rng.integers(0, 8, 2))
    with Image.open(io.BytesIO(_encode(base, q1, subsampling))) as first:
        first = first.convert("RGB")
    double = _encode(first.crop((dx, dy, dx + SIZE, dy + SIZE)), q2, subsampling)
    out.append({"double": True, "q1": q1, "q2": q2, "aligned": aligned, "data": double})
    for case in out:
        case.update(photo=photo, patch=patch, subsampling="4:4:4" if subsampling == 0 else "4:2:0")
    return out


def _run(args: tuple[int, int]) -> list[dict]:
    photo, patch = args
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases(photo, patch):
            path = Path(tmp) / "case.jpg"
            path.write_bytes(case.pop("data"))
            found = {f["name"]: f for f in image_jpeg.analyze(path, {}, None)["findings"]}
            quality = found["jpeg_quality"]
            indicator = found[INDICATOR]
            case.update(
                estimated_q2=quality["value"],
                standard_table=quality["standard_table"],
                raw=indicator.get("raw_score"),
            )
            results.append(case)
    return results


def measure(patches: int, jobs: int) -> list[dict]:
    work = [(p, k) for p in range(len(photos())) for k in range(patches)]
    if jobs > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            parts = list(pool.map(_run, work))
    else:
        parts = [_run(w) for w in work]
    return [c for part in parts for c in part]


def condition_of(case: dict) -> dict:
    return {
        "q2_band": image_jpeg.q2_band(case["estimated_q2"]),
        "tables": "standard IJG" if case["standard_table"] else "non-standard",
    }


def _rate(sel: list[dict]) -> str:
    k, n = sum(c["detected"] for c in sel), len(sel)
    if not n:
        return "-"
    lo, hi = stats.wilson(k, n)
    return f"{k}/{n} ({100 * k / n:.0f}%, {100 * lo:.0f}-{100 * hi:.0f}%)"


def fit_thresholds(fit: list[dict]) -> dict[str, float]:
    """Per condition, the lowest threshold that flags at most TARGET_FALSE_ALARMS of the fit half's singles."""
    out = {}
    for key in sorted({_key(c) for c in fit}):
        singles = sorted((c["raw"] for c in fit if _key(c) == key and not c["double"]), reverse=True)
        allowed = int(TARGET_FALSE_ALARMS * len(singles))
        above = singles[allowed] if len(singles) > allowed else 0.0
        out[key] = round(max(MIN_THRESHOLD, math.floor(above * 1000) / 1000 + 0.001), 3)
    return out


def _key(case: dict) -> str:
    return _rates.describe(condition_of(case))


def _decide(cases: list[dict], thresholds: dict[str, float]) -> None:
    for c in cases:
        c["threshold"] = thresholds.get(_key(c), image_jpeg.DQ_THRESHOLD)
        c["detected"] = c["raw"] >= c["threshold"]


def _table_lines(cases: list[dict]) -> list[str]:
    lines = []
    doubles = [c for c in cases if c["double"]]
    for b1 in Q1_BANDS:
        for b2 in Q2_BANDS:
            sel = [
                c
                for c in doubles
                if band(c["q1"], Q1_BANDS) == f"{b1[0]}-{b1[1]}"
                and band(c["q2"], Q2_BANDS) == f"{b2[0]}-{b2[1]}"
            ]
            if sel:
                lines.append(
                    f"  Q1 {b1[0]}-{b1[1]}, Q2 {b2[0]}-{b2[1]}: aligned "
                    f"{_rate([c for c in sel if c['aligned']])}; shifted {_rate([c for c in sel if not c['aligned']])}"
                )
    for label, test in (("Q2 > Q1", lambda c: c["q2"] > c["q1"]), ("Q2 < Q1", lambda c: c["q2"] < c["q1"])):
        sel = [c for c in doubles if test(c)]
        lines.append(
            f"  {label}: aligned {_rate([c for c in sel if c['aligned']])}; "
            f"shifted {_rate([c for c in sel if not c['aligned']])}"
        )
    for b2 in Q2_BANDS:
        sel = [c for c in cases if not c["double"] and band(c["q2"], Q2_BANDS) == f"{b2[0]}-{b2[1]}"]
        lines.append(f"  false alarms, single compressions at Q2 {b2[0]}-{b2[1]}: {_rate(sel)}")
    lines.append(f"  false alarms, all single compressions: {_rate([c for c in cases if not c['double']])}")
    return lines


def evaluate(quick: bool = False, jobs: int = 1) -> dict:
    """Fit thresholds and calibration on the even patches; every rate is measured on the odd ones."""
    results = measure(QUICK_PATCHES if quick else FULL_PATCHES, max(1, min(jobs, os.cpu_count() or 1)))
    for case in results:
        if case["raw"] is None:
            raise RuntimeError(
                f"no double-compression statistic for photo {case['photo']} patch {case['patch']}"
            )
    fit = [c for c in results if c["patch"] % 2 == 0]
    held = [c for c in results if c["patch"] % 2 == 1]
    if not fit or not held:
        raise ValueError("the set needs at least two patches per photograph (one to fit, one to measure)")
    thresholds = fit_thresholds(fit)
    _decide(results, thresholds)
    rows = []
    for key in sorted({tuple(sorted(condition_of(c).items())) for c in held}):
        condition = dict(key)
        sel = [c for c in held if condition_of(c) == condition]
        pos = [c for c in sel if c["double"]]
        neg = [c for c in sel if not c["double"]]
        rows.append(
            tables.rate_row(
                condition,
                positives=len(pos),
                detected=sum(c["detected"] for c in pos),
                negatives=len(neg),
                false_alarms=sum(c["detected"] for c in neg),
                threshold=thresholds.get(_rates.describe(condition), image_jpeg.DQ_THRESHOLD),
            )
        )
    ratio = {id(c): c["raw"] / c["threshold"] for c in results}
    calibration = stats.isotonic([ratio[id(c)] for c in fit], [int(c["double"]) for c in fit])
    reliability = stats.reliability(
        [stats.apply_map(calibration, ratio[id(c)]) for c in held], [int(c["double"]) for c in held]
    )
    report = [
        f"{len(results)} pictures from {len(photos())} photographs; thresholds (at most "
        f"{100 * TARGET_FALSE_ALARMS:g}% false alarms, at least {MIN_THRESHOLD}) and calibration fitted on "
        f"the {len(fit)} of the even patches; every rate below and in the table measured on the {len(held)} "
        "of the odd patches",
        f"estimated quality equals the quality written for "
        f"{sum(c['estimated_q2'] == c['q2'] for c in results)}/{len(results)} pictures",
        "thresholds: " + "; ".join(f"{k}: {v}" for k, v in thresholds.items()),
        "held-out detection by true first quality band x second quality band, grid aligned / shifted "
        "(detected/n, rate, Wilson 95% CI):",
        *_table_lines(held),
        f"the same held-out pictures with image.jpeg 1.0.0's single threshold {image_jpeg.DQ_THRESHOLD}:",
    ]
    old = [dict(c) for c in held]
    _decide(old, {})
    report += _table_lines(old)
    return {
        "indicators": {
            INDICATOR: {
                "condition": ["q2_band", "tables"],
                "found_when": "a double-compressed picture is flagged (statistic at or over its band's threshold)",
                "false_alarm_unit": "image",
                "rows": rows,
                "calibration": [[round(s, 4), round(p, 4)] for s, p in calibration],
                "reliability": reliability,
            }
        },
        "set": (
            f"{len(results) // 2} single- and {len(results) // 2} double-compressed 512x512 pictures cut from "
            f"{len(photos())} real camera photographs (Debian {DEBIAN_PACKAGE}), scaled by 0.35-0.6; "
            f"Q1 {Q1_RANGE[0]}-{Q1_RANGE[1]}, Q2 {Q2_RANGE[0]}-{Q2_RANGE[1]} (Q1 != Q2), half with the 8x8 grid "
            "kept and half shifted by a crop; 4:2:0 or 4:4:4 chroma; Pillow/libjpeg-turbo; thresholds fitted "
            "on half the patches, rates measured on the other half"
        ),
        "report": report,
    }
