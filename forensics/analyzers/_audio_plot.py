"""Waveform and spectrogram figures for audio.signal (matplotlib through ``_figure``).

The figures are for a human to look at, never a verdict. Same input, same
bytes (``_figure``); bounded in size whatever the duration: the data are
reduced to at most ``WIDTH`` columns before drawing.

- waveform: per column, the minimum and maximum sample of that stretch of
  time (an envelope), one panel per channel (at most two; more channels are
  drawn as the outer envelope of all), amplitude in full scale (-1..+1, with
  dBFS marks on the right), red marks along the top where the channel
  reached the clipping level, blue bars along the bottom where the recording
  is exactly zero (digital silence);
- spectrogram: time across, frequency up (0 Hz to Nyquist), power in dB
  relative to the loudest cell over a fixed ``DB_RANGE``, with a colour bar.
"""

from __future__ import annotations

import numpy as np

from . import _figure

WIDTH = 1200  # columns of data at most (audio_signal sizes its analysis steps on it too)
SPECTROGRAM_ROWS = 256
DB_RANGE = 90.0
ENVELOPE = "#1f497d"
CLIPPED = "#d62020"
SILENT = "#1e78dc"


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


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the runs of True."""
    f = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(f.astype(np.int8)))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def waveform_figure(
    mins: np.ndarray,
    maxs: np.ndarray,
    clipped: np.ndarray | None = None,
    silent: np.ndarray | None = None,
    *,
    duration: float,
):
    """The envelope figure: ``mins``/``maxs`` have shape (steps, channels) over ``duration`` seconds.

    ``clipped`` (steps, channels) and ``silent`` (steps,) are booleans per step.
    """
    steps, channels = mins.shape
    names = ["left", "right"] if channels == 2 else ["mono"]
    if channels > 2:  # draw the outer envelope of all channels
        mins, maxs = mins.min(axis=1, keepdims=True), maxs.max(axis=1, keepdims=True)
        clipped = clipped.any(axis=1, keepdims=True) if clipped is not None else None
        names = [f"all {channels} channels (outer envelope)"]
    shown = len(names)
    cols = min(WIDTH, max(steps, 1))
    lo = reduce_columns(mins[:, :shown], cols, "min")
    hi = reduce_columns(maxs[:, :shown], cols, "max")
    clip = reduce_columns(clipped[:, :shown].astype(np.uint8), cols, "max") if clipped is not None else None
    sil = reduce_columns(silent.astype(np.uint8), cols, "min") if silent is not None else None
    edges = np.linspace(0.0, duration, len(lo) + 1)
    centres = (edges[:-1] + edges[1:]) / 2

    fig = _figure.figure(1.2 + 1.9 * shown)
    axes = fig.subplots(shown, 1, sharex=True, squeeze=False)[:, 0]
    for c, ax in enumerate(axes):
        ax.fill_between(
            centres, np.clip(lo[:, c], -1, 1), np.clip(hi[:, c], -1, 1), step="mid", color=ENVELOPE, lw=0.6
        )
        ax.axhline(0.0, color="#888888", lw=0.6)
        ax.set_ylim(-1.08, 1.08)
        ax.set_yticks([-1, -0.5, 0, 0.5, 1])
        ax.set_ylabel(f"{names[c]}\namplitude (full scale)")
        right = ax.secondary_yaxis("right")
        right.set_yticks([-1, -0.5, 0.5, 1], labels=["0", "-6", "-6", "0"])
        right.set_ylabel("dBFS")
        if clip is not None:
            for a, b in _runs(clip[:, c] > 0):
                ax.axvspan(edges[a], edges[b], ymin=0.96, ymax=1.0, color=CLIPPED, lw=0)
        if sil is not None:
            for a, b in _runs(sil > 0):
                ax.axvspan(edges[a], edges[b], ymin=0.0, ymax=0.04, color=SILENT, lw=0)
        _figure.time_axis(ax, duration)
        if c < shown - 1:
            ax.set_xlabel("")
    from matplotlib.patches import Patch

    handles = [Patch(color=ENVELOPE, label="min/max envelope")]
    if clip is not None and clip.any():
        handles.append(Patch(color=CLIPPED, label="clipping (top band)"))
    if sil is not None and sil.any():
        handles.append(Patch(color=SILENT, label="exact digital silence (bottom band)"))
    fig.suptitle("Waveform: minimum and maximum sample per time step")
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    return fig


def waveform_png(mins, maxs, clipped=None, silent=None, *, duration: float) -> bytes:
    return _figure.png_bytes(waveform_figure(mins, maxs, clipped, silent, duration=duration))


def spectrogram_levels(power: np.ndarray) -> tuple[np.ndarray, float]:
    """(dB relative to the loudest cell, rows = frequency from 0 Hz up, quantised), top level in dB."""
    cols = min(WIDTH, max(power.shape[0], 1))
    p = reduce_columns(power, cols, "mean")
    p = reduce_columns(p.T, SPECTROGRAM_ROWS, "mean")  # (rows, cols), 0 Hz first
    db = 10 * np.log10(np.maximum(p, 1e-20))
    top = float(db.max()) if db.size else 0.0
    # quantise to 0.1 dB before drawing, so tiny floating-point differences cannot change a pixel
    rel = np.round(np.clip(db - top, -DB_RANGE, 0.0), 1)
    return rel, top


def spectrogram_figure(power: np.ndarray, *, rate: int, duration: float):
    """Power spectrogram of shape (columns, bins), bins from 0 Hz to Nyquist, over ``duration`` s."""
    rel, _top = spectrogram_levels(power)
    nyquist = rate / 2
    khz = nyquist >= 2000
    scale = 1000.0 if khz else 1.0
    fig = _figure.figure(3.6)
    ax = fig.subplots()
    image = ax.imshow(
        rel,
        origin="lower",
        aspect="auto",
        extent=(0.0, max(duration, 1e-3), 0.0, nyquist / scale),
        cmap=_figure.COLORMAP,
        vmin=-DB_RANGE,
        vmax=0.0,
        interpolation="nearest",
    )
    ax.grid(False)
    _figure.time_axis(ax, duration)
    ax.set_ylabel("frequency (kHz)" if khz else "frequency (Hz)")
    ax.set_title(f"Spectrogram, 0 Hz to Nyquist ({nyquist:g} Hz), all channels summed")
    _figure.colorbar(fig, image, ax, "power (dB below the loudest cell)")
    return fig


def spectrogram_png(power: np.ndarray, *, rate: int, duration: float) -> bytes:
    return _figure.png_bytes(spectrogram_figure(power, rate=rate, duration=duration))
