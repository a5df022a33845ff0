"""The ENF figure for audio_enf: trace, test statistic and hum SNR against time (matplotlib).

Three panels sharing the time axis:
- the ENF trace in Hz (left axis) and as an offset from the grid's nominal
  frequency in mHz (right axis): the combined trace as a black line, each
  harmonic divided by its number as coloured dots, the edit candidates as
  numbered red lines (numbers in the order of the edit_candidate findings,
  with the test that found them), hum-free spans shaded;
- the phase-step statistic (a normal deviate) with its detection threshold;
- the hum SNR per frame for both grids, with the frame SNR floor.
Same input, same bytes (``_figure``); the figure has a fixed size whatever
the length of the recording (long series are reduced to per-pixel min/max).
"""

from __future__ import annotations

import numpy as np

from . import _enf, _figure

PLOT_COLUMNS = 1000  # about the plot area's width in pixels
HARMONIC_COLOURS = {1: "#5082c8", 2: "#78b46e", 3: "#c89650", 4: "#9a6fb0", 5: "#4aa3a3"}
CANDIDATE = "#d21e1e"
GRID_COLOURS = {50: "#285ab4", 60: "#be6e14"}
_TEST_LABELS = {"if": "IF", "level": "level"}


def _test_label(test: str) -> str:
    """'const:3s' -> 'phase 3s' (the phase test and its window); 'if', 'level' as they are."""
    if ":" in test:
        kind, window = test.split(":", 1)
        return f"phase{' (slope)' if kind == 'slope' else ''} {window}"
    return _TEST_LABELS.get(test, test)


def _envelope(t: np.ndarray, v: np.ndarray, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """A long series as per-column min and max (drawn as a zig-zag), NaN gaps kept."""
    t, v = np.asarray(t, float), np.asarray(v, float)
    if len(t) <= 2 * PLOT_COLUMNS:
        return t, v
    col = np.minimum((t / max(duration, 1e-9) * PLOT_COLUMNS).astype(np.int64), PLOT_COLUMNS - 1)
    out_t, out_v = [], []
    for c in range(PLOT_COLUMNS):
        sel = v[col == c]
        centre = (c + 0.5) * duration / PLOT_COLUMNS
        ok = sel[np.isfinite(sel)]
        if not len(ok):
            out_t.append(centre)
            out_v.append(np.nan)
            continue
        out_t += [centre, centre]
        out_v += [float(ok.min()), float(ok.max())]
    return np.asarray(out_t), np.asarray(out_v)


def figure(res: _enf.Result, candidates: list[dict]):
    """The Figure: ENF trace with edit candidates, the phase-step statistic, and the hum SNR."""
    fig = _figure.figure(7.6)
    trace_ax, stat_ax, snr_ax = fig.subplots(
        3, 1, sharex=True, gridspec_kw={"height_ratios": [2.4, 1.1, 1.1]}
    )
    duration = max(res.duration, 1e-3)
    for ax in (trace_ax, stat_ax, snr_ax):
        _figure.time_axis(ax, duration)
    trace_ax.set_xlabel("")
    stat_ax.set_xlabel("")

    if res.grid is None:
        trace_ax.set_ylim(49.9, 50.1)
        trace_ax.set_ylabel("frequency (Hz)")
        trace_ax.set_title("ENF trace: no usable ENF")
        trace_ax.text(
            0.5,
            0.5,
            "No usable ENF: no 50 Hz or 60 Hz mains hum strong enough to follow.\n"
            "A neutral result: no edit can be looked for with this method.",
            transform=trace_ax.transAxes,
            ha="center",
            va="center",
            color="#555555",
        )
    else:
        g = res.grid
        finite = [res.trace[np.isfinite(res.trace)]] + [v[np.isfinite(v)] for v in res.trace_k.values()]
        allv = np.concatenate(finite) if finite else np.zeros(0)
        mid = float(np.median(allv)) if len(allv) else float(g)
        lo = min(float(np.percentile(allv, 1)) if len(allv) else mid, mid - 0.05)
        hi = max(float(np.percentile(allv, 99)) if len(allv) else mid, mid + 0.05)
        pad = 0.1 * (hi - lo)
        trace_ax.set_ylim(lo - pad, hi + pad)
        for span in res.level_spans:
            trace_ax.axvspan(span["start"], span["end"], color="#e6e6e6", lw=0, zorder=0)
        dots = len(res.times) <= 2000
        for k, v in sorted(res.trace_k.items()):
            colour = HARMONIC_COLOURS.get(k, "#999999")
            label = f"{k * g} Hz / {k}" if k > 1 else f"{g} Hz"
            if dots:
                trace_ax.plot(res.times, v, ".", ms=2.0, color=colour, label=label)
            else:
                trace_ax.plot(*_envelope(res.times, v, duration), lw=0.5, color=colour, label=label)
        trace_ax.plot(*_envelope(res.times, res.trace, duration), lw=0.9, color="black", label="combined")
        trace_ax.set_ylabel("ENF (Hz)")
        trace_ax.yaxis.set_major_formatter("{x:.3f}")
        right = trace_ax.secondary_yaxis(
            "right", functions=(lambda f: (f - g) * 1000, lambda m: g + m / 1000)
        )
        right.set_ylabel(f"offset from {g} Hz (mHz)")
        trace_ax.set_title(f"ENF trace on the {g} Hz grid, edit candidates in red")
        ymax = trace_ax.get_ylim()[1]
        for n, cand in enumerate(candidates, start=1):
            trace_ax.axvline(cand["time"], color=CANDIDATE, lw=1.0)
            late = cand["time"] > 0.8 * duration  # label to the left of the line near the end
            trace_ax.annotate(
                f"{n} {_test_label(cand.get('test', ''))}",
                (cand["time"], ymax),
                xytext=(-2 if late else 2, -2 - 10 * ((n - 1) % 3)),
                textcoords="offset points",
                ha="right" if late else "left",
                va="top",
                fontsize=_figure.FONT_PT - 1,
                color=CANDIDATE,
            )
        if res.level_spans:
            from matplotlib.patches import Patch

            handles, _labels = trace_ax.get_legend_handles_labels()
            handles.append(Patch(color="#e6e6e6", label="hum gone"))
            trace_ax.legend(handles=handles, loc="lower left", ncols=len(handles), framealpha=0.9)
        else:
            trace_ax.legend(loc="lower left", ncols=len(res.trace_k) + 1, framealpha=0.9)

    stat = res.statistic
    smax = float(np.nanmax(stat)) if np.isfinite(stat).any() else 0.0
    shi = max(2 * _enf.THRESHOLD, min(smax, 50.0)) * 1.05
    if len(stat):
        stat_ax.plot(*_envelope(res.stat_times, np.clip(stat, 0, shi), duration), lw=0.8, color="#3c3c3c")
    stat_ax.axhline(_enf.THRESHOLD, color=CANDIDATE, lw=0.9, ls="--", label=f"threshold {_enf.THRESHOLD:g}")
    for cand in candidates:
        stat_ax.axvline(cand["time"], color=CANDIDATE, lw=0.8, alpha=0.7)
    stat_ax.set_ylim(0.0, shi * 1.2)
    stat_ax.set_ylabel("phase step\n(normal deviate)")
    stat_ax.legend(loc="upper right", framealpha=0.9)

    snr_hi = 40.0
    for grid, colour in GRID_COLOURS.items():
        if grid in res.frame_snr_db:
            snr_ax.plot(
                *_envelope(res.times, np.clip(res.frame_snr_db[grid], 0, snr_hi), duration),
                lw=0.7,
                color=colour,
                label=f"{grid} Hz grid",
            )
    snr_ax.axhline(
        _enf.FRAME_SNR_DB, color="#969696", lw=0.9, ls="--", label=f"floor {_enf.FRAME_SNR_DB:g} dB"
    )
    snr_ax.set_ylim(0.0, snr_hi * 1.3)  # values clipped at snr_hi; the band above holds the legend
    snr_ax.set_yticks([0, 10, 20, 30, 40])
    snr_ax.set_ylabel("hum SNR per\nframe (dB)")
    snr_ax.legend(loc="upper right", ncols=3, framealpha=0.9)
    return fig


def render(res: _enf.Result, candidates: list[dict]) -> bytes:
    """The PNG of ``figure``."""
    return _figure.png_bytes(figure(res, candidates))
