"""Figures for the file.* analyzers: one value per block along the file (matplotlib via ``_figure``).

Same input, same bytes (``_figure``). At most ``COLUMNS`` columns are drawn:
where several blocks share a column the figure shows their range (a light
band) and their mean (a dark line).
"""

from __future__ import annotations

import numpy as np

from . import _figure

COLUMNS = 1000  # about the plot area's width in pixels
BAND, LINE = "#a0bee6", "#143c96"


def human_bytes(n: int) -> str:
    """1536 -> '1.5 KiB' (binary units, at most one decimal)."""
    return _figure.human_bytes(n)


def _columns(values: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Reduce the blocks to at most COLUMNS columns: (column edges, min, max, mean)."""
    n = len(values)
    if n <= COLUMNS:
        return edges, values, values, values
    starts = (np.arange(COLUMNS, dtype=np.int64) * n) // COLUMNS
    lo = np.minimum.reduceat(values, starts)
    hi = np.maximum.reduceat(values, starts)
    mean = np.add.reduceat(values, starts) / np.diff(np.append(starts, n))
    return np.append(edges[starts], edges[-1]), lo, hi, mean


def byte_ticks(span: int, most: int = 8) -> list[int]:
    """Tick offsets at a power-of-two step (labels such as 64 KiB, 128 KiB), at most ``most`` + 1."""
    step = 1 << max(0, int(np.ceil(np.log2(max(span, 1) / most))))
    return list(range(0, max(span, 1) + 1, step))


def series_figure(
    values: np.ndarray,
    *,
    span: int,
    block: int,
    y_max: float,
    y_ticks: list[float],
    title: str,
    y_label: str,
):
    """One value per block of ``block`` bytes over a file of ``span`` bytes (the last block may be short)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    values = np.asarray(values, dtype=np.float64)
    fig = _figure.figure(3.0)
    ax = fig.subplots()
    if len(values):
        edges = np.minimum(np.arange(len(values) + 1, dtype=np.float64) * block, float(span))
        x, lo, hi, mean = _columns(values, edges)
        steps = np.append(mean, mean[-1])
        if (lo != hi).any():
            ax.fill_between(
                x, np.append(lo, lo[-1]), np.append(hi, hi[-1]), step="post", color=BAND, lw=0, label="range"
            )
            ax.step(x, steps, where="post", color=LINE, lw=0.9, label="mean of the blocks in a column")
            ax.legend(loc="lower right", framealpha=0.9)
        else:
            ax.step(x, steps, where="post", color=LINE, lw=0.9)
    ax.set_xlim(0, max(span, 1))
    ax.set_ylim(-0.03 * y_max, 1.05 * y_max)  # values at 0 and y_max stay off the frame
    ax.set_yticks(y_ticks)
    ax.xaxis.set_major_locator(FixedLocator(byte_ticks(span)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: human_bytes(int(round(v)))))
    ax.set_xlabel(f"offset in the file (bytes; KiB = 1024 B; file size {human_bytes(span)} = {span:,} B)")
    ax.set_ylabel(y_label)
    ax.set_title(title)
    return fig


def series_png(values: np.ndarray, **kwargs) -> bytes:
    """The PNG of ``series_figure``."""
    return _figure.png_bytes(series_figure(values, **kwargs))
