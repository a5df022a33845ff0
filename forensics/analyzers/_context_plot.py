"""The alignment figure: clip time across, reference time up (matplotlib, deterministic bytes).

A straight diagonal is a clip that plays the reference without a break. Each
matched part is a thick line (blue in reference order, orange when moved),
the grey dots under it are the matched spectral peaks it rests on, a dashed
red step at a join is reference material the clip leaves out, and a pale red
band is clip material not found in the reference.
"""

from __future__ import annotations

import numpy as np

from . import _figure

BLUE, ORANGE, RED, GREY = "#1f5eb4", "#e67814", "#c81e1e", "#969696"
INSERTED = "#fad7d7"
MAX_POINTS = 20000  # matched peaks drawn at most (evenly thinned beyond)


def figure(clip_duration: float, parts: list[dict], removed: list[dict], inserted: list[dict], points):
    """parts: {clip_at, reference_at, moved}; removed: {at, reference_at}; inserted: {at}."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ys = [v for p in parts for v in p["reference_at"]] + [v for r in removed for v in r["reference_at"]]
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, max(clip_duration, 1.0))
    pad = max(0.05 * (y1 - y0), 1.0)
    y0, y1 = max(0.0, y0 - pad), y1 + pad
    x1 = max(clip_duration, 1e-3)

    fig = _figure.figure(5.2)
    ax = fig.subplots()
    for item in inserted:
        ax.axvspan(item["at"][0], item["at"][1], color=INSERTED, lw=0, zorder=0)
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    pts = pts[(pts[:, 1] >= y0) & (pts[:, 1] <= y1)]
    if len(pts) > MAX_POINTS:
        pts = pts[np.linspace(0, len(pts) - 1, MAX_POINTS).astype(np.int64)]
    if len(pts):
        ax.plot(pts[:, 0], pts[:, 1], ",", color=GREY, zorder=1)
    for r in removed:
        ax.plot([r["at"][1]] * 2, r["reference_at"], color=RED, lw=1.5, ls=(0, (3, 2)), zorder=2)
    for n, p in enumerate(parts, start=1):
        ax.plot(p["clip_at"], p["reference_at"], color=ORANGE if p["moved"] else BLUE, lw=3, zorder=3)
        ax.annotate(
            str(n),
            (float(np.mean(p["clip_at"])), float(np.mean(p["reference_at"]))),
            xytext=(-6, 6),
            textcoords="offset points",
            ha="right",
            fontsize=_figure.FONT_PT - 1,
        )
    ax.set_xlim(0.0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel(_figure.clock_axis(ax.xaxis, x1, "clip time"))
    ax.set_ylabel(_figure.clock_axis(ax.yaxis, y1 - y0, "reference time", top=y1))
    ax.set_title("Where each part of the clip is in the reference (numbers: the segment findings)")
    handles = [
        Line2D([], [], color=BLUE, lw=3, label="part in reference order"),
        Line2D([], [], color=ORANGE, lw=3, label="part moved"),
        Line2D([], [], color=RED, lw=1.5, ls=(0, (3, 2)), label="reference material left out"),
        Patch(color=INSERTED, label="clip material not in the reference"),
        Line2D([], [], color=GREY, marker="s", ms=2, lw=0, label="matched spectral peaks"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    return fig


def render(
    clip_duration: float, parts: list[dict], removed: list[dict], inserted: list[dict], points
) -> bytes:
    """The PNG of ``figure``."""
    return _figure.png_bytes(figure(clip_duration, parts, removed, inserted, points))
