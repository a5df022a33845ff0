"""The JPEG quality a file was last saved at, as the condition the image indicators' rates are kept by.

The luminance quantisation table of the file is compared with the tables
libjpeg writes for qualities 1-100 (image.jpeg's STD_TABLES) (the IJG scaling of the standard
table, which most editors, phones and web services use). The nearest one
gives the quality; ``exact`` says whether it matched entry for entry (a
camera's own table matches only approximately). The band is the condition
key of the rate tables: "<70", "70-79", "80-89", "90-100", or "not JPEG".
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from .base import finding

BANDS = ((0, 69, "<70"), (70, 79, "70-79"), (80, 89, "80-89"), (90, 100, "90-100"))
NOT_JPEG = "not JPEG"


@functools.cache
def _reference() -> np.ndarray:
    """Row q-1: libjpeg's luminance table for quality q (image.jpeg's IJG scaling, baseline), as floats."""
    from .image_jpeg import STD_TABLES

    return STD_TABLES[:, 0, 0, :].astype(np.float64)


def band(quality: int | None) -> str:
    if quality is None:
        return NOT_JPEG
    for lo, hi, name in BANDS:
        if lo <= quality <= hi:
            return name
    raise ValueError(f"quality {quality} is outside 0-100")


def estimate(im: Image.Image) -> dict:
    """{"quality": int | None, "exact": bool, "band": str} for a decoded Pillow image."""
    tables = getattr(im, "quantization", None) if im.format in ("JPEG", "MPO") else None
    if not tables or 0 not in tables or len(tables[0]) != 64:
        return {"quality": None, "exact": False, "band": NOT_JPEG}
    luma = np.asarray(list(tables[0]), dtype=np.float64)
    ref = _reference()
    # Relative distance, so that coarse and fine tables weigh alike.
    dist = np.abs(np.log(ref) - np.log(np.maximum(luma, 1.0))).mean(axis=1)
    q = int(np.argmin(dist)) + 1
    return {"quality": q, "exact": bool(np.array_equal(ref[q - 1], luma)), "band": band(q)}


def quality_finding(quality: dict, note: str) -> dict:
    """The jpeg_quality_estimate measurement of an estimate() result."""
    return finding(
        "jpeg_quality_estimate",
        "measurement",
        quality["quality"],
        unit="IJG quality (1-100)",
        exact=quality["exact"],
        method="nearest of libjpeg's scaled standard luminance tables (quality 1-100)",
        note=note,
    )
