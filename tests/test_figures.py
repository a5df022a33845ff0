"""The analyzers' figures (forensics/analyzers/_figure.py and its users): labelled, readable, reproducible.

Each figure is built through the function that returns the matplotlib Figure
before it is saved, so the tests can check its title, axis labels (with
units) and colour bar; the PNG is then checked for size, chunks and
determinism, in this process and in a fresh one with another matplotlib
configuration directory and hash seed.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forensics.analyzers import (
    _audio_plot,
    _context_plot,
    _enf,
    _enf_plot,
    _figure,
    _fileplot,
    image_copymove,
    image_ela,
    image_ghost,
    image_thumbnail,
)

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- inputs


def _waveform():
    rng = np.random.default_rng(1)
    n = 3000
    env = np.abs(np.sin(np.linspace(0, 12, n)))[:, None] * np.array([0.9, 0.4])
    mins, maxs = -env * rng.uniform(0.5, 1, (n, 2)), env * rng.uniform(0.5, 1, (n, 2))
    clipped = np.zeros((n, 2), dtype=bool)
    clipped[500:540, 0] = True
    silent = np.zeros(n, dtype=bool)
    silent[2000:2300] = True
    return _audio_plot.waveform_figure(mins, maxs, clipped, silent, duration=42.0)


def _spectrogram(duration=75.0):
    rng = np.random.default_rng(2)
    power = rng.exponential(1.0, (600, 513)) * np.exp(-np.arange(513) / 80)[None, :]
    return _audio_plot.spectrogram_figure(power, rate=16000, duration=duration)


def _enf_result():
    times = np.arange(1.0, 60.0, 1.0)
    trace = 50.0 + 0.01 * np.sin(times / 7)
    trace[30:33] = np.nan
    stat_times = np.arange(3.0, 57.0, 0.5)
    res = _enf.Result(
        duration=60.0,
        snr_db={50: {50: 30.0, 100: 25.0}, 60: {60: 2.0}},
        grid=50,
        harmonics=[],
        times=times,
        trace=trace,
        trace_k={1: trace, 2: trace + 0.002},
        frame_snr_db={50: np.full(len(times), 30.0), 60: np.full(len(times), 3.0)},
        stat_times=stat_times,
        statistic=np.where(np.abs(stat_times - 40) < 1, 12.0, 1.0),
    )
    res.level_spans = [{"start": 30.0, "end": 33.0, "depth_db": 20.0}]
    return res, [{"time": 40.0, "test": "const:3s"}, {"time": 30.0, "test": "level"}]


def _alignment():
    parts = [
        {"clip_at": (0.0, 10.0), "reference_at": (100.0, 110.0), "moved": False},
        {"clip_at": (10.0, 20.0), "reference_at": (130.0, 140.0), "moved": True},
    ]
    removed = [{"at": (10.0, 10.0), "reference_at": (110.0, 130.0)}]
    inserted = [{"at": (20.0, 24.0)}]
    points = [(t, 100.0 + t) for t in np.arange(0, 10, 0.1)]
    return _context_plot.figure(24.0, parts, removed, inserted, points)


def _entropy():
    values = np.concatenate([np.zeros(20), np.full(30, 7.99), np.full(14, 4.2)])
    return _fileplot.series_figure(
        values,
        span=64 * 4096 - 100,
        block=4096,
        y_max=8.0,
        y_ticks=[0, 2, 4, 6, 8],
        title="entropy",
        y_label="entropy (bits/byte)",
    )


def _ela():
    level = np.zeros((300, 400), dtype=np.uint8)
    level[100:160, 200:260] = 12
    return image_ela.ela_figure(level, 90, 15, [200, 100, 25, 25])


def _ghost():
    anomaly = np.zeros((18, 25))
    anomaly[5:9, 10:14] = 2.0
    res = {"map": anomaly, "history": 75, "regions": [{"region": [160, 80, 64, 64]}]}
    return image_ghost.ghost_figure(res, (405, 290))


def _copymove():
    im = Image.fromarray(np.random.default_rng(3).integers(0, 255, (300, 500, 3), dtype=np.uint8), "RGB")
    found = [
        {
            "source": [10, 20, 60, 50],
            "target": [300, 150, 60, 50],
            "source_points": np.array([[20.0, 30.0], [40.0, 50.0]]),
            "target_points": np.array([[310.0, 160.0], [330.0, 180.0]]),
        }
    ]
    return image_copymove.copymove_figure(im, found, 1.0)


def _thumbnail():
    main = Image.fromarray(np.random.default_rng(4).integers(0, 255, (240, 320), dtype=np.uint8), "L")
    thumb = main.resize((160, 120))
    return image_thumbnail.difference_figure(image_thumbnail.compare(main, thumb))


# (builder, x label start, y label start, colour bar label start or None)
FIGURES = {
    "waveform": (_waveform, "time (s)", "left", None),
    "spectrogram": (_spectrogram, "time (s)", "frequency (kHz)", "power (dB"),
    "enf": (lambda: _enf_plot.figure(*_enf_result()), "time (s)", "ENF (Hz)", None),
    "alignment": (_alignment, "clip time (s)", "reference time (s)", None),
    "entropy": (_entropy, "offset in the file (bytes", "entropy (bits/byte)", None),
    "ela": (_ela, "x (pixels", "y (pixels)", "error level"),
    "ghost": (_ghost, "x (pixels", "y (pixels)", "anomaly"),
    "copymove": (_copymove, "x (pixels", "y (pixels)", None),
    "thumbnail": (_thumbnail, "x (thumbnail pixels)", "y (thumbnail pixels)", "difference (luma levels)"),
}


def _plot_axes(fig):
    """The axes that hold data (not colour bars or secondary axes)."""
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.get_navigate()]


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_every_figure_has_a_title_labelled_axes_and_a_colour_bar_where_colour_is_a_value(name):
    build, xlabel, ylabel, bar = FIGURES[name]
    fig = build()
    axes = _plot_axes(fig)
    assert axes
    titles = [ax.get_title() for ax in axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
    assert any(t.strip() for t in titles), f"{name}: no title"
    xlabels = [ax.get_xlabel() for ax in axes]
    ylabels = [ax.get_ylabel() for ax in axes]
    if name == "waveform":
        ylabels = [y.split("\n", 1)[0] for y in ylabels]
        assert all("amplitude (full scale)" in ax.get_ylabel() for ax in axes)
    assert any(x.startswith(xlabel) for x in xlabels), (name, xlabels)
    assert any(y.startswith(ylabel) for y in ylabels), (name, ylabels)
    fig.draw_without_rendering()  # tick labels are made at drawing
    assert [t.get_text() for t in axes[0].get_yticklabels() if t.get_text()], (name, "y ticks")
    assert [t.get_text() for t in axes[-1].get_xticklabels() if t.get_text()], (name, "x ticks")
    images = [im for ax in axes for im in ax.images if im.colorbar is not None]
    if bar is None:
        assert not any(ax.get_label() == "<colorbar>" for ax in fig.axes), name
    else:
        assert images, f"{name}: colour means a value but there is no colour bar"
        assert images[0].colorbar.ax.get_ylabel().startswith(bar), images[0].colorbar.ax.get_ylabel()


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_text_stays_readable_printed_at_the_text_width_of_an_a4_page(name):
    from matplotlib.text import Text

    fig = FIGURES[name][0]()
    fig.draw_without_rendering()
    width_in = fig.get_size_inches()[0]
    assert width_in == _figure.WIDTH_IN
    scale = _figure.PRINT_WIDTH_IN / width_in
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert texts
    smallest = min(t.get_fontsize() for t in texts)
    assert smallest * scale >= _figure.MIN_PRINT_PT, (name, smallest)
    assert {t.get_fontname() for t in texts} == {"DejaVu Sans"}


def test_only_matplotlibs_bundled_fonts_are_used():
    import matplotlib
    from matplotlib import font_manager

    _figure.figure(2.0)  # applies the style
    path = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=False)).resolve()
    assert path.is_relative_to(Path(matplotlib.get_data_path()).resolve())


# ---------------------------------------------------------------- the PNG


def _chunks(data: bytes) -> list[bytes]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    out, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        out.append(kind)
        pos += 12 + length
    return out


@pytest.mark.parametrize("name", ["entropy", "ela"])
def test_png_is_readable_sized_for_print_and_the_same_bytes_twice(name):
    build = FIGURES[name][0]
    fig = build()
    first = _figure.png_bytes(fig)
    again = _figure.png_bytes(build())
    assert first == again
    with Image.open(io.BytesIO(first)) as im:
        im.load()
        assert im.format == "PNG" and im.mode == "RGB"
        w_in, h_in = fig.get_size_inches()
        assert im.size == (round(w_in * _figure.DPI), round(h_in * _figure.DPI))
        assert im.size[0] == 1120
        assert round(im.info["dpi"][0]) == _figure.DPI
    assert set(_chunks(first)) <= {b"IHDR", b"pHYs", b"IDAT", b"IEND"}  # no text, no time


_CHILD = """
import hashlib, json, sys
sys.path.insert(0, {root!r})
from tests import test_figures as t
from forensics.analyzers import _figure
print(json.dumps({{n: hashlib.sha256(_figure.png_bytes(t.FIGURES[n][0]())).hexdigest() for n in {names!r}}}))
"""


def test_same_bytes_in_a_fresh_process_with_another_config_dir_and_hash_seed(tmp_path):
    import hashlib

    names = ["entropy", "ghost"]
    here = {n: hashlib.sha256(_figure.png_bytes(FIGURES[n][0]())).hexdigest() for n in names}
    config = tmp_path / "mplconfig"
    config.mkdir()
    (config / "matplotlibrc").write_text("font.family: serif\nfont.size: 20\nlines.linewidth: 5\n")
    env = {**os.environ, "MPLCONFIGDIR": str(config), "PYTHONHASHSEED": "12345"}
    env.pop("MPLBACKEND", None)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD.format(root=str(ROOT), names=names)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_shrink_reduces_large_images_by_a_whole_factor():
    big = np.arange(2500 * 1200, dtype=np.float64).reshape(1200, 2500) % 7
    small, factor = _figure.shrink(big, 1000)
    assert factor == 3 and small.shape == (400, 834)
    assert small[0, 0] == pytest.approx(big[:3, :3].mean())
    same, one = _figure.shrink(np.zeros((10, 20)), 1000)
    assert one == 1 and same.shape == (10, 20)


def test_long_time_axes_tick_at_round_clock_times():
    fig = _figure.figure(2.0)
    ax = fig.subplots()
    _figure.time_axis(ax, 900.0)
    assert ax.get_xlabel() == "time (min:s)"
    shown = [v for v in ax.get_xticks() if 0 <= v <= 900]
    assert [ax.xaxis.get_major_formatter()(v) for v in shown] == [f"{m}:00" for m in range(0, 16, 2)]
    ax = _figure.figure(2.0).subplots()
    ax.set_ylim(3000, 3100)  # a stretch of a long reference: step chosen for the 100 s shown
    assert _figure.clock_axis(ax.yaxis, 100, "reference time", top=3100) == "reference time (min:s)"
    assert [t for t in ax.get_yticks() if 3000 <= t <= 3100][:2] == [3000, 3010]


def test_clock_and_byte_labels():
    assert _figure.clock(125) == "2:05" and _figure.clock(3725) == "1:02:05"
    assert _figure.clock(600, hours=True) == "0:10:00"
    assert _figure.human_bytes(1536) == "1.5 KiB" and _figure.human_bytes(100) == "100 B"
    assert _fileplot.byte_ticks(1 << 20) == [i << 17 for i in range(9)]
