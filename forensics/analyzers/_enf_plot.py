"""The ENF picture for audio_enf: trace, test statistic and hum SNR against time.

Drawn with Pillow in a 16-colour palette and its built-in bitmap font (no
font files, no anti-aliasing), so the same result gives the same PNG bytes;
the canvas has a fixed size whatever the length of the recording.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import _enf

WIDTH, HEIGHT = 1000, 620
LEFT, RIGHT = 70, 20
PANELS = {"trace": (30, 300), "stat": (330, 470), "snr": (500, 590)}  # (top, bottom)

PALETTE = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "grid": (225, 225, 225),
    "axis": (120, 120, 120),
    "k1": (80, 130, 200),
    "k2": (120, 180, 110),
    "k3": (200, 150, 80),
    "trace": (0, 0, 0),
    "cand": (210, 30, 30),
    "thr": (210, 30, 30),
    "g50": (40, 90, 180),
    "g60": (190, 110, 20),
    "stat": (60, 60, 60),
    "muted": (150, 150, 150),
}
_INDEX = {name: i for i, name in enumerate(PALETTE)}


def _nice_step(span: float, target: int) -> float:
    raw = span / max(target, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag


def _fmt_time(t: float, duration: float) -> str:
    if duration >= 600:
        return f"{int(t // 60)}:{int(t % 60):02d}"
    return f"{t:g}"


class _Canvas:
    def __init__(self, duration: float):
        self.img = Image.new("P", (WIDTH, HEIGHT), _INDEX["white"])
        flat = [v for rgb in PALETTE.values() for v in rgb]
        self.img.putpalette(flat + [0] * (768 - len(flat)))
        self.draw = ImageDraw.Draw(self.img)
        self.font = ImageFont.load_default_imagefont()
        self.duration = max(duration, 1e-6)

    def x(self, t):
        return LEFT + (np.asarray(t, dtype=float) / self.duration) * (WIDTH - LEFT - RIGHT)

    def text(self, xy, s, colour="black"):
        self.draw.text(xy, s, fill=_INDEX[colour], font=self.font)

    def frame(self, panel: str, lo: float, hi: float, label: str, ticks: int = 5, fmt="{:g}"):
        top, bottom = PANELS[panel]
        step = _nice_step(hi - lo, ticks)
        v = math.ceil(lo / step) * step
        while v <= hi + 1e-12:
            y = self.y(panel, v, lo, hi)
            self.draw.line([(LEFT, y), (WIDTH - RIGHT, y)], fill=_INDEX["grid"])
            self.text((4, y - 5), fmt.format(round(v, 6)), "axis")
            v += step
        tstep = _nice_step(self.duration, 10)
        t = 0.0
        while t <= self.duration + 1e-9:
            x = float(self.x(t))
            self.draw.line([(x, top), (x, bottom)], fill=_INDEX["grid"])
            if panel == "snr":
                self.text((x - 8, bottom + 4), _fmt_time(t, self.duration), "axis")
            t += tstep
        self.draw.rectangle([LEFT, top, WIDTH - RIGHT, bottom], outline=_INDEX["axis"])
        self.text((LEFT, top - 13), label)

    def y(self, panel: str, v, lo: float, hi: float):
        top, bottom = PANELS[panel]
        frac = (np.asarray(v, dtype=float) - lo) / (hi - lo if hi > lo else 1.0)
        return bottom - np.clip(frac, 0, 1) * (bottom - top)

    def series(self, panel, t, v, lo, hi, colour, dots=False):
        """A line (or dots) with gaps where v is NaN; long series drawn as per-pixel min/max."""
        t, v = np.asarray(t, float), np.asarray(v, float)
        ok = np.isfinite(v)
        if not ok.any():
            return
        xs = np.round(self.x(t)).astype(int)
        ys = np.round(self.y(panel, np.where(ok, v, lo), lo, hi)).astype(int)
        fill = _INDEX[colour]
        if dots:
            for xi, yi in zip(xs[ok], ys[ok], strict=True):
                self.draw.rectangle([int(xi) - 1, int(yi) - 1, int(xi) + 1, int(yi) + 1], fill=fill)
            return
        if len(t) > 2 * (WIDTH - LEFT - RIGHT):
            # one vertical stroke per pixel column: min to max of what falls in it (t is sorted)
            xo, yo = xs[ok], ys[ok]
            starts = np.flatnonzero(np.r_[True, np.diff(xo) != 0])
            lows, highs = np.minimum.reduceat(yo, starts), np.maximum.reduceat(yo, starts)
            for col, lo_, hi_ in zip(xo[starts], lows, highs, strict=True):
                self.draw.line([(int(col), int(lo_)), (int(col), int(hi_))], fill=fill)
            return
        run: list[tuple[int, int]] = []
        for xi, yi, good in zip(xs, ys, ok, strict=True):
            if good:
                run.append((int(xi), int(yi)))
            else:
                if len(run) > 1:
                    self.draw.line(run, fill=fill)
                run = []
        if len(run) > 1:
            self.draw.line(run, fill=fill)

    def hline(self, panel, v, lo, hi, colour):
        y = float(self.y(panel, v, lo, hi))
        for x in range(LEFT, WIDTH - RIGHT, 8):
            self.draw.line([(x, y), (x + 4, y)], fill=_INDEX[colour])

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.img.save(buf, format="PNG", optimize=False, compress_level=6)
        return buf.getvalue()


def render(res: _enf.Result, candidates: list[dict]) -> bytes:
    """The PNG: ENF trace with edit candidates, the phase-step statistic, and the hum SNR."""
    c = _Canvas(res.duration)
    if res.grid is None:
        c.frame("trace", 49.9, 50.1, "ENF trace: no usable ENF (no grid reached the SNR threshold)")
        c.text(
            (LEFT + 20, 150), "No usable ENF: no 50 Hz or 60 Hz mains hum strong enough to follow.", "muted"
        )
    else:
        g = res.grid
        values = [res.trace[np.isfinite(res.trace)]] + [v[np.isfinite(v)] for v in res.trace_k.values()]
        allv = np.concatenate(values) if any(len(v) for v in values) else np.array([float(g)])
        mid = float(np.median(allv)) if len(allv) else float(g)
        lo = min(float(np.percentile(allv, 1)) if len(allv) else mid, mid - 0.05)
        hi = max(float(np.percentile(allv, 99)) if len(allv) else mid, mid + 0.05)
        pad = 0.1 * (hi - lo)
        lo, hi = lo - pad, hi + pad
        used = ", ".join(f"{k * g} Hz" for k in sorted(res.trace_k))
        c.frame(
            "trace",
            lo,
            hi,
            f"ENF trace (Hz), {g} Hz grid; black: combined, dots: {used} divided by k; red: edit candidates",
            fmt="{:.3f}",
        )
        for k, v in sorted(res.trace_k.items()):
            c.series("trace", res.times, v, lo, hi, f"k{k}", dots=len(res.times) <= 2000)
        c.series("trace", res.times, res.trace, lo, hi, "trace")
        top, bottom = PANELS["trace"]
        for n, cand in enumerate(candidates, start=1):
            x = float(c.x(cand["time"]))
            c.draw.line([(x, top), (x, bottom)], fill=_INDEX["cand"])
            c.text((x + 2, top + 2 + 12 * ((n - 1) % 3)), str(n), "cand")
    stat = res.statistic
    smax = float(np.nanmax(stat)) if np.isfinite(stat).any() else 0.0
    shi = max(2 * _enf.THRESHOLD, min(smax, 50.0)) * 1.05
    c.frame("stat", 0.0, shi, f"phase-step statistic (normal deviate); dashed: threshold {_enf.THRESHOLD:g}")
    if len(stat):
        c.series("stat", res.stat_times, np.clip(stat, 0, shi), 0.0, shi, "stat")
    c.hline("stat", _enf.THRESHOLD, 0.0, shi, "thr")
    for cand in candidates:
        x = float(c.x(cand["time"]))
        top, bottom = PANELS["stat"]
        c.draw.line([(x, top), (x, bottom)], fill=_INDEX["cand"])
    # hum SNR per frame for both grids (best harmonic)
    snr_hi = 40.0
    c.frame("snr", 0.0, snr_hi, "hum SNR per frame, best harmonic (dB): blue 50 Hz grid, orange 60 Hz grid")
    for g, colour in ((50, "g50"), (60, "g60")):
        if g in res.frame_snr_db:
            c.series("snr", res.times, np.clip(res.frame_snr_db[g], 0, snr_hi), 0.0, snr_hi, colour)
    c.hline("snr", _enf.FRAME_SNR_DB, 0.0, snr_hi, "muted")
    c.text((WIDTH - RIGHT - 60, HEIGHT - 14), "time (s)" if res.duration < 600 else "time (m:s)", "axis")
    return c.png()
