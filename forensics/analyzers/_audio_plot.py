"""Waveform and spectrogram pictures (PNG) drawn with numpy and Pillow.

The pictures are for a human to look at, never a verdict. They are
deterministic (no timestamps or text chunks in the PNG, fixed colours and
scales) and bounded in size whatever the duration: at most ``WIDTH`` columns.

- waveform: per column, the minimum and maximum sample of that stretch of
  time (an envelope), one band per channel (at most two channels drawn),
  full scale -1..+1 top to bottom, a grey zero line, red marks on the top row
  where the channel reached the clipping level, blue marks on the bottom row
  where the recording is exactly zero;
- spectrogram: time left to right, frequency 0 Hz (bottom) to Nyquist (top),
  power in dB over a fixed 90 dB range below the loudest cell, through a
  black-purple-orange-yellow colour map.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

WIDTH = 1200
CHANNEL_HEIGHT = 160
SPECTROGRAM_HEIGHT = 256
DB_RANGE = 90.0

# a perceptually ordered map (black -> purple -> red -> orange -> pale yellow)
_ANCHORS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB, by linear interpolation between the anchors."""
    v = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * (len(_ANCHORS) - 1)
    low = np.minimum(v.astype(np.int64), len(_ANCHORS) - 2)
    frac = (v - low)[..., None]
    rgb = _ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac
    return np.round(rgb).astype(np.uint8)


def _png(rgb: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), "RGB").save(out, format="PNG", compress_level=6)
    return out.getvalue()


def reduce_columns(values: np.ndarray, columns: int, how: str) -> np.ndarray:
    """Group the first axis into ``columns`` nearly equal groups; min, max or mean of each group."""
    n = values.shape[0]
    if n <= columns:
        return values
    edges = (np.arange(columns + 1) * n) // columns
    fn = {"min": np.minimum.reduceat, "max": np.maximum.reduceat, "mean": np.add.reduceat}[how]
    out = fn(values, edges[:-1], axis=0)
    if how == "mean":
        out = out / np.diff(edges).reshape((-1,) + (1,) * (values.ndim - 1))
    return out


def waveform_png(
    mins: np.ndarray, maxs: np.ndarray, clipped: np.ndarray | None = None, silent: np.ndarray | None = None
) -> bytes:
    """Draw envelopes: ``mins``/``maxs`` have shape (steps, channels); flags per step are optional.

    ``clipped`` (steps, channels) and ``silent`` (steps,) are booleans per step.
    """
    steps, channels = mins.shape
    shown = min(channels, 2)
    if channels > 2:  # more than two channels: draw the outer envelope of all of them
        mins, maxs = mins.min(axis=1, keepdims=True), maxs.max(axis=1, keepdims=True)
        clipped = clipped.any(axis=1, keepdims=True) if clipped is not None else None
        shown = 1
    cols = min(WIDTH, max(steps, 1))
    lo = reduce_columns(mins[:, :shown], cols, "min")
    hi = reduce_columns(maxs[:, :shown], cols, "max")
    clip = reduce_columns(clipped[:, :shown].astype(np.uint8), cols, "max") if clipped is not None else None
    sil = reduce_columns(silent.astype(np.uint8), cols, "min") if silent is not None else None
    h = CHANNEL_HEIGHT
    image = np.full((h * shown, cols, 3), 255, dtype=np.uint8)
    rows = np.arange(h)[:, None]
    for c in range(shown):
        band = image[c * h : (c + 1) * h]
        mid = (h - 1) / 2
        top = np.round(mid - np.clip(hi[:, c], -1, 1) * mid).astype(np.int64)
        bottom = np.round(mid - np.clip(lo[:, c], -1, 1) * mid).astype(np.int64)
        band[int(round(mid)), :] = (200, 200, 200)
        mask = (rows >= top[None, :]) & (rows <= bottom[None, :])
        band[mask] = (31, 73, 125)
        if clip is not None:
            band[0:3, clip[:, c] > 0] = (220, 30, 30)
        if sil is not None:
            band[h - 3 : h, sil > 0] = (30, 120, 220)
        if c:
            band[0, :] = (120, 120, 120)  # separator between channels
    return _png(image)


def spectrogram_png(power: np.ndarray) -> bytes:
    """Draw a power spectrogram of shape (columns, bins), bins from 0 Hz to Nyquist."""
    cols = min(WIDTH, max(power.shape[0], 1))
    p = reduce_columns(power, cols, "mean")
    p = reduce_columns(p.T, SPECTROGRAM_HEIGHT, "mean").T  # (cols, rows)
    db = 10 * np.log10(np.maximum(p, 1e-20))
    top = float(db.max()) if db.size else 0.0
    scaled = (db - (top - DB_RANGE)) / DB_RANGE
    # quantise before colouring, so tiny floating-point differences cannot change a pixel
    levels = np.round(np.clip(scaled, 0, 1) * 255) / 255
    rgb = colormap(levels.T[::-1])  # rows: high frequencies on top
    return _png(rgb)
