"""The AAC frame grid in decoded audio (the "inverse decoder" idea of Moehrs, Herre & Geiger 2003).

An AAC encoder cuts the signal into 2048-sample windows every 1024 samples,
takes their MDCT (long blocks use a Kaiser-Bessel-derived or sine window) and
quantises the coefficients; most of them become exactly zero. The decoder's
output is the inverse, overlapped transform of those quantised coefficients,
and the MDCT with overlap-add is an orthogonal lapped transform: analysing the
decoded samples again with the same window *at the same 1024-sample grid*
returns the quantised coefficients, zeros included (up to the rounding of
16-bit PCM, about 1e-5). One sample off the grid, the zeros are gone.

So the fraction of near-zero coefficients, as a function of the analysis
offset (0-1023), has a sharp peak at the encoder's grid. A cut made after
decoding (delete a span, insert or splice other material) shifts the grid of
everything after it by the length removed or inserted (modulo 1024), and a
gain change keeps zeros zero. Re-encoding with another codec (MP3) or at a
higher bit rate leaves the old grid visible more weakly; resampling or
filtering destroys it.

- ``sparsity``: per analysis frame, the mean over two thresholds (3e-5 and
  1e-4 of full scale, above the rounding of 16-bit PCM) of the fraction of
  MDCT coefficients in the lower half of the spectrum below it (FFmpeg's
  encoder fills much of the upper half with substituted noise, PNS, which
  leaves no zeros there);
- ``probe``: the sparsity of one stretch at all 1024 offsets (the search);
- ``trace``: the sparsity of every frame on a given grid offset, minus the
  sparsity half a frame away (the "excess"; silence is sparse everywhere and
  has no excess);
- ``segments``: frames labelled with the grid that explains them, grouped into
  runs; a run on one grid followed by a run on another is a grid change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

HOP = 1024  # AAC long-block frame (samples per channel)
THRESHOLDS = (3e-5, 1e-4)
BAND = HOP // 2  # coefficients counted: the lower half of the spectrum
FRAME_EXCESS = 0.05  # a frame is on a grid when its excess sparsity there exceeds this
PROBE_CONTRAST = 0.05  # a probe finds a grid when its peak exceeds the median over offsets by this
SILENT = 0.5  # frames with this share of coefficients below 3e-5 half a frame off the grid: silence


def kbd_window(alpha: float = 4.0, half: int = HOP) -> np.ndarray:
    """The AAC long Kaiser-Bessel-derived window (2 * ``half`` samples)."""
    kaiser = np.kaiser(half + 1, np.pi * alpha)
    cum = np.cumsum(kaiser)
    rise = np.sqrt(cum[:half] / cum[half])
    return np.concatenate([rise, rise[::-1]])


WINDOW = kbd_window()


def mdct(frames: np.ndarray) -> np.ndarray:
    """Orthonormal MDCT of rows of 2048 samples (windowed with ``WINDOW``) -> rows of 1024 coefficients.

    Computed as the DCT-IV of the time-folded window: with the quarters
    (a, b, c, d), MDCT(a, b, c, d) = DCT-IV(-c_reversed - d, a - b_reversed).
    """
    y = frames * WINDOW
    h = HOP // 2
    a, b, c, d = y[:, :h], y[:, h : 2 * h], y[:, 2 * h : 3 * h], y[:, 3 * h :]
    folded = np.concatenate([-c[:, ::-1] - d, a - b[:, ::-1]], axis=1)
    return scipy.fft.dct(folded, type=4, norm="ortho", axis=-1)


def sparsity(frames: np.ndarray, lowest: bool = False):
    """Per frame: mean over ``THRESHOLDS`` of the fraction of MDCT coefficients below the threshold.

    With ``lowest``, also the fraction below the lowest threshold alone (what
    digital silence or a band-limited quiet frame shows at any offset).
    """
    mag = np.abs(mdct(frames)[..., :BAND])
    fractions = [np.mean(mag < t, axis=-1) for t in THRESHOLDS]
    mean = np.mean(fractions, axis=0)
    return (mean, fractions[0]) if lowest else mean


def probe(x: np.ndarray, start: int) -> tuple[int, float, float] | None:
    """Search all 1024 offsets of the frame at ``start``: (grid offset mod 1024, peak, contrast) or None."""
    if start < 0 or start + 3 * HOP > len(x):
        return None
    seg = np.asarray(x[start : start + 3 * HOP], dtype=np.float64)
    values = np.empty(HOP)
    for i in range(0, HOP, 256):  # bounded memory: 256 frames of 2048 at a time
        values[i : i + 256] = sparsity(sliding_window_view(seg, 2 * HOP)[i : i + 256])
    best = int(np.argmax(values))
    return (start + best) % HOP, float(values[best]), float(values[best] - np.median(values))


@dataclass
class Trace:
    offset: int
    starts: np.ndarray  # sample index of each frame's first sample (an MP3 granule's analysis window)
    excess: np.ndarray  # sparsity on the grid minus sparsity half a frame (granule) off it
    informative: np.ndarray  # bool: not sparse off the grid (not silence)


def trace(x: np.ndarray, offset: int) -> Trace:
    """Excess sparsity of every frame on the grid ``offset`` (frames start at offset + k * 1024)."""
    x = np.asarray(x, dtype=np.float64)
    count = max(0, (len(x) - offset - 2 * HOP - HOP // 2) // HOP + 1)
    starts = offset + HOP * np.arange(count)
    on = np.empty(count)
    off = np.empty(count)
    quiet = np.empty(count)
    for i in range(0, count, 256):
        idx = starts[i : i + 256]
        on[i : i + 256] = sparsity(np.stack([x[s : s + 2 * HOP] for s in idx]))
        off[i : i + 256], quiet[i : i + 256] = sparsity(
            np.stack([x[s + HOP // 2 : s + HOP // 2 + 2 * HOP] for s in idx]), lowest=True
        )
    return Trace(offset=offset, starts=starts, excess=on - off, informative=quiet < SILENT)


@dataclass
class Segment:
    label: int | None  # grid offset, or None for informative frames no grid explains
    first: int  # index of the first frame (on the common 1024 time grid)
    last: int
    support: int  # frames labelled with this grid
    mean_excess: float


def labels(
    traces: list, total: int, hop: int = HOP, centre: int = HOP, min_excess: float = FRAME_EXCESS
) -> tuple[np.ndarray, np.ndarray]:
    """Per ``hop``-sample slot (slot j starts at j * hop): the grid label (-1 none, -2 silent) and its excess.

    ``centre`` is the distance from a frame's first sample to its centre
    (1024 for the AAC frames; ``_mp3grid`` traces use their own); a slot is
    on a grid when its excess there is above ``min_excess``.
    """
    slots = max(0, total // hop)
    best = np.full(slots, -np.inf)
    label = np.full(slots, -1, dtype=int)
    silent = np.ones(slots, dtype=bool)
    for t in traces:
        idx = (t.starts + centre) // hop  # the slot holding the frame's centre
        ok = idx < slots
        idx, ex, inf = idx[ok], t.excess[ok], t.informative[ok]
        silent[idx[inf]] = False
        better = inf & (ex > best[idx])
        best[idx[better]] = ex[better]
        label[idx[better]] = t.offset
    label[best <= min_excess] = -1
    label[silent] = -2
    best[silent] = 0.0
    return label, best


def segments(label: np.ndarray, excess: np.ndarray, min_frames: int) -> list[Segment]:
    """Runs of one grid label, ignoring silent slots and gaps shorter than ``min_frames``."""
    out: list[Segment] = []
    current: Segment | None = None
    for j, lab in enumerate(label):
        if lab == -2:
            continue
        value = None if lab == -1 else int(lab)
        if current is not None and current.label == value:
            current.last = j
            current.support += 1
            current.mean_excess += float(excess[j])
            continue
        current = Segment(value, j, j, 1, float(excess[j]))
        out.append(current)
    for s in out:
        s.mean_excess = s.mean_excess / s.support
    # Short runs (a transient coded with short blocks, one frame across a cut)
    # are absorbed: drop them, then merge neighbours that now share a label.
    kept = [s for s in out if s.support >= min_frames]
    merged: list[Segment] = []
    for s in kept:
        if merged and merged[-1].label == s.label:
            m = merged[-1]
            m.mean_excess = (m.mean_excess * m.support + s.mean_excess * s.support) / (m.support + s.support)
            m.last = s.last
            m.support += s.support
        else:
            merged.append(s)
    return merged
