"""One style for every analyzer figure: matplotlib, Agg, bundled fonts, same input same bytes.

Figures are meant to be printed in a report: about 7 inches wide (the text
width of an A4 page) at ``DPI`` dots per inch, fonts of at least 8 points even
when shrunk to the 16 cm text width of an A4 page, a title, axis labels with units, and a colour bar wherever colour
stands for a value.

Rules that keep the bytes reproducible and the code thread-safe:
- never pyplot: a ``matplotlib.figure.Figure`` is built and drawn by its own
  Agg canvas, so no global figure manager is shared between threads;
- the style is applied once per process from matplotlib's built-in defaults
  (a user's matplotlibrc or MPLCONFIGDIR changes nothing), and only the fonts
  bundled with matplotlib are used (a system DejaVu of another version would
  draw other pixels);
- ``png_bytes`` writes no Software, date or other text chunk.

matplotlib takes about half a second to import: callers import this module
lazily or call ``figure()`` only when a picture is actually drawn; importing
``_figure`` itself does not load matplotlib.
"""

from __future__ import annotations

import io
import math
import os
import threading

import numpy as np

WIDTH_IN = 7.0  # inches, as drawn
DPI = 160  # 7 in x 160 = 1120 pixels wide
# Printed across the text width of an A4 page (210 mm less two 25 mm margins) the figure is
# scaled by PRINT_WIDTH_IN / WIDTH_IN (0.9): the smallest text (FONT_PT - 1) stays >= 8 pt.
PRINT_WIDTH_IN = 160 / 25.4
MIN_PRINT_PT = 8.0
FONT_PT = 10.0  # body text; tick labels, legends and annotations 9 pt
COLORMAP = "magma"  # perceptually ordered, prints readably in grey

_STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": FONT_PT,
    "axes.titlesize": FONT_PT + 1,
    "axes.labelsize": FONT_PT,
    "xtick.labelsize": FONT_PT - 1,
    "ytick.labelsize": FONT_PT - 1,
    "legend.fontsize": FONT_PT - 1,
    "figure.titlesize": FONT_PT + 2,
    "mathtext.fontset": "dejavusans",
    "axes.grid": True,
    "grid.color": "#d9d9d9",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "axes.linewidth": 0.8,
    "image.interpolation": "nearest",
    "image.resample": False,
    "savefig.dpi": DPI,
    "figure.dpi": DPI,
    "path.simplify": True,
    "svg.hashsalt": "custody",
}

_lock = threading.Lock()
_loaded = False


def _load():
    """Import matplotlib and set the style once per process; return the Figure class."""
    global _loaded
    with _lock:
        if not _loaded:
            import matplotlib

            matplotlib.use("Agg", force=True)
            import matplotlib.font_manager as fm

            matplotlib.rcParams.update(matplotlib.rcParamsDefault)
            matplotlib.rcParams["backend"] = "Agg"
            matplotlib.rcParams.update(_STYLE)
            data = os.path.realpath(matplotlib.get_data_path())
            bundled = [f for f in fm.fontManager.ttflist if os.path.realpath(f.fname).startswith(data)]
            if not any(f.name == "DejaVu Sans" for f in bundled):  # pragma: no cover - a broken install
                raise RuntimeError("matplotlib's bundled DejaVu Sans font is missing")
            fm.fontManager.ttflist = bundled
            fm.fontManager.afmlist = []
            fm.fontManager._findfont_cached.cache_clear()
            _loaded = True
    from matplotlib.figure import Figure

    return Figure


def version() -> str:
    import matplotlib

    return matplotlib.__version__


def figure(height_in: float, *, width_in: float = WIDTH_IN):
    """A new Figure of the house size, drawn by an Agg canvas, with constrained layout."""
    figure_class = _load()
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = figure_class(figsize=(width_in, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes: no Software or time chunk, fixed compression, RGB (no alpha)."""
    if any(ax.get_aspect() != "auto" for ax in fig.axes):
        # constrained layout needs a second pass to settle around a fixed-aspect image
        fig.draw_without_rendering()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    from PIL import Image

    out = io.BytesIO()
    # the background is opaque white: drop the alpha channel, a third smaller and no viewer differences
    Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB").save(
        out, format="PNG", optimize=False, compress_level=6, dpi=(DPI, DPI)
    )
    return out.getvalue()


# ---------------------------------------------------------------- axes helpers


def time_axis(ax, duration: float, *, label: str = "time") -> None:
    """Seconds under ten minutes, m:ss (or h:mm:ss) above; the label says which."""
    ax.set_xlim(0.0, max(duration, 1e-3))
    ax.set_xlabel(clock_axis(ax.xaxis, duration, label))


_CLOCK_STEPS = (1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200)


def clock_axis(axis, span: float, label: str, *, top: float | None = None) -> str:
    """Label an axis of times: seconds while its values stay under ten minutes, else m:ss or
    h:mm:ss at a round step for the ``span`` shown (``top``: its largest value, default ``span``).
    Returns the axis label with its unit."""
    top = span if top is None else top
    if top < 600:
        return f"{label} (s)"
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    step = next((s for s in _CLOCK_STEPS if span / s <= 10), _CLOCK_STEPS[-1])
    axis.set_major_locator(MultipleLocator(step))
    hours = top >= 3600
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: clock(v, hours=hours)))
    return f"{label} (h:mm:ss)" if hours else f"{label} (min:s)"


def clock(seconds: float, *, hours: bool = False) -> str:
    """125 -> '2:05'; 3725 -> '1:02:05'; with ``hours`` always h:mm:ss (125 -> '0:02:05')."""
    s = int(round(seconds))
    sign = "-" if s < 0 else ""
    h, rest = divmod(abs(s), 3600)
    m, s = divmod(rest, 60)
    return f"{sign}{h}:{m:02d}:{s:02d}" if h or hours else f"{sign}{m}:{s:02d}"


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, at most one decimal)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            if unit == "B":
                return f"{int(value)} B"
            return f"{f'{value:.1f}'.rstrip('0').rstrip('.')} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def colorbar(fig, mappable, ax, label: str):
    """A colour bar beside ``ax`` with its label (what the colour means, with the unit)."""
    if ax.get_aspect() != "auto":  # beside a fixed-aspect image: exactly the image's height
        bar = fig.colorbar(mappable, cax=ax.inset_axes((1.03, 0.0, 0.035, 1.0)))
    else:
        bar = fig.colorbar(mappable, ax=ax, fraction=0.05, pad=0.02)
    bar.set_label(label)
    return bar


def pixel_axes(ax, width: int, height: int, *, unit: str = "pixels") -> None:
    """An image in its own pixel coordinates: x to the right, y down, origin top left."""
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xlabel(f"x ({unit})")
    ax.set_ylabel(f"y ({unit})")
    ax.grid(False)


def image_height_in(width: int, height: int, *, extra_in: float = 1.0, max_in: float = 9.0) -> float:
    """Figure height for an image drawn across the house width, plus room for title and labels."""
    aspect = height / max(width, 1)
    return float(min(max_in, max(2.5, (WIDTH_IN - 1.6) * aspect + extra_in)))


def shrink(array: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """Reduce an image array by a whole factor so that its longer side is at most ``max_side``.

    ``array`` is H x W (any real type, averaged as float32) or H x W x 3 uint8 (RGB).
    Returns (array, factor): each output pixel is the mean of a factor x factor block
    (Pillow's reduce, in C: no full-size float copy of a large image).
    """
    from PIL import Image

    h, w = array.shape[:2]
    factor = max(1, math.ceil(max(h, w) / max_side))
    if factor == 1:
        return array, 1
    if array.ndim == 3:
        im = Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8), "RGB")
    else:
        im = Image.fromarray(np.ascontiguousarray(array, dtype=np.float32), "F")
    return np.asarray(im.reduce(factor)), factor


def show_image(ax, array: np.ndarray, width: int, height: int, **kwargs):
    """Draw ``array`` (possibly reduced) over the full ``width`` x ``height`` pixel coordinates."""
    image = ax.imshow(array, extent=(0, width, height, 0), interpolation="nearest", **kwargs)
    pixel_axes(ax, width, height)
    return image


def box(ax, region, colour: str, label: str | None = None, *, lw: float = 1.6, text_colour=None):
    """Outline an [x, y, w, h] region in data coordinates, with a short label above its corner."""
    from matplotlib.patches import Rectangle

    x, y, w, h = region
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, lw=lw))
    if label:
        right = x > 0.6 * max(ax.get_xlim())  # near the right edge: the label ends at the box's right
        ax.annotate(
            label,
            (x + w if right else x, y),
            xytext=(-1 if right else 1, 2),
            textcoords="offset points",
            ha="right" if right else "left",
            va="bottom",
            color=text_colour or colour,
            fontsize=FONT_PT - 1,
            fontweight="bold",
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8},
        )
