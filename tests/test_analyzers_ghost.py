"""image.ghost on real camera photographs (Debian wallpaper packages, forensics/evaluation/photos.py).

The spliced files come from the evaluation set's own generator
(forensics/evaluation/ghost.py); the quick subset of that evaluation is
rerun and must equal the stored "quick" block exactly.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from forensics import analyzers
from forensics.analyzers import _rates, image_ghost
from forensics.analyzers.base import AnalysisContext, AnalysisError
from forensics.evaluation import ghost, photos
from forensics.evaluation.copymove import iou

from .test_analyzers_image import png_declaring


def _run(tmp_path, data: bytes, name="evidence.jpg"):
    path = tmp_path / name
    path.write_bytes(data)
    ctx = AnalysisContext(workdir=str(tmp_path))
    return image_ghost.analyze(str(path), {}, ctx), ctx


def _named(result, name):
    return [f for f in result["findings"] if f["name"] == name]


def _saved(im: Image.Image, fmt="JPEG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_a_splice_into_a_recompressed_photograph_is_mapped_and_located(tmp_path):
    data, meta = ghost.make("spliced", 4)  # Storm (Canon EOS 400D): earlier q79, final q96
    assert (meta["first_quality"], meta["quality"]) == (79, 96)
    result, ctx = _run(tmp_path, data)
    assert _named(result, "ghost_history_quality")[0]["value"] == 79
    assert _named(result, "jpeg_quality_estimate")[0]["value"] == 96
    found = _named(result, "ghost_inconsistency")
    assert len(found) == 1, found
    hit = found[0]
    assert hit["class"] == "indicator"
    assert iou(hit["region"], meta["truth"]["region"]) >= 0.5
    rates = hit["rates"]
    assert rates["condition"] == {
        "background_history": "earlier quality found",
        "jpeg_quality_band": "90-100",
    }
    assert rates["measured"] is True, rates
    assert rates["positives"] > 0 and rates["negatives"] > 0
    assert hit["score"] == _rates.calibrated("image.ghost", "ghost_inconsistency", hit["raw_score"])
    assert 0 <= hit["score"] <= 1
    visual = _named(result, "ghost_map")[0]
    art = next(a for a in ctx.artifacts if f"sha256:{a.sha256}" == visual["artifact"])
    assert Image.open(io.BytesIO(art.data)).width == 1120  # the labelled figure
    layer = _named(result, "ghost_overlay")[0]
    assert layer["overlay"] is True and layer["class"] == "visual"
    art = next(a for a in ctx.artifacts if f"sha256:{a.sha256}" == layer["artifact"])
    overlay = Image.open(io.BytesIO(art.data))
    assert overlay.mode == "RGBA"
    alpha = np.asarray(overlay.getchannel("A"), dtype=np.float64)
    assert alpha.shape == (Image.open(io.BytesIO(data)).height, Image.open(io.BytesIO(data)).width)
    x, y, w, h = meta["truth"]["region"]
    inside = alpha[y : y + h, x : x + w].mean()
    assert inside > 5 * alpha.mean() / 2 and inside > 100  # the region is the opaque part of the layer
    assert np.median(alpha) == 0  # clear where the blocks are like the rest


def test_a_recompressed_untouched_photograph_shows_its_history_and_no_region(tmp_path):
    im = photos.photo(11, max_side=1024)  # ColorfulCups (Sony NEX-3N)
    first = Image.open(io.BytesIO(_saved(im, quality=75))).convert("RGB")
    result, _ctx = _run(tmp_path, _saved(first, quality=95))
    assert _named(result, "ghost_history_quality")[0]["value"] == 75
    assert _named(result, "ghost_inconsistency") == []
    assert _named(result, "ghost_region_count")[0]["value"] == 0


def test_a_photograph_saved_once_has_no_history(tmp_path):
    result, _ctx = _run(tmp_path, _saved(photos.photo(8, max_side=1024), quality=90))
    history = _named(result, "ghost_history_quality")[0]
    assert history["value"] is None and "no earlier" in history["note"]
    assert _named(result, "ghost_map")  # the map is still drawn, as a visual aid
    assert _named(result, "ghost_inconsistency") == []  # but without a history no region is reported
    assert _named(result, "ghost_region_count")[0]["value"] == 0


def test_a_png_is_searched_for_ghosts_up_to_98_and_its_condition_was_never_measured(tmp_path):
    im = photos.photo(3, max_side=640)
    first = Image.open(io.BytesIO(_saved(im, quality=70))).convert("RGB")
    arr = np.asarray(first).copy()
    arr[200:328, 160:320] = np.asarray(photos.photo(20, max_side=640))[
        100:228, 100:260
    ]  # not JPEG-compressed
    result, _ctx = _run(tmp_path, _saved(Image.fromarray(arr), "PNG"), "evidence.png")
    assert _named(result, "jpeg_quality_estimate")[0]["value"] is None
    assert _named(result, "ghost_history_quality")[0]["value"] == 70
    found = _named(result, "ghost_inconsistency")
    assert found and iou(found[0]["region"], [160, 200, 160, 128]) >= 0.5
    assert found[0]["rates"]["measured"] is False
    assert "never measured" in found[0]["rates"]["note"]


def test_too_small_or_low_quality_images_say_they_were_not_analysed(tmp_path):
    tiny = photos.photo(5, max_side=48)
    result, _ctx = _run(tmp_path, _saved(tiny, quality=90))
    assert _named(result, "ghost_not_analysed")[0]["value"] is True
    assert _named(result, "ghost_map") == []
    low = photos.photo(5, max_side=512)
    result, _ctx = _run(tmp_path, _saved(low, quality=55))
    assert _named(result, "ghost_not_analysed") and not _named(result, "ghost_inconsistency")


def test_bad_input_is_refused_with_a_reason(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(100_000, 100_000))
    with pytest.raises(AnalysisError, match="decompression-bomb"):
        image_ghost.analyze(str(bomb), {}, AnalysisContext())
    data, _ = ghost.make("untouched", 2)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(AnalysisError, match="truncated"):
        image_ghost.analyze(str(broken), {}, AnalysisContext())
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(AnalysisError, match="empty"):
        image_ghost.analyze(str(empty), {}, AnalysisContext())


def test_registered_with_limits_quoting_the_table():
    module = analyzers.get("image.ghost")
    assert module is image_ghost
    table = _rates.table("image.ghost")
    assert table is not None, "run bench/evaluate.py image.ghost"
    assert table["command"] in " ".join(module.LIMITS)
    for line in _rates.limits_for_block(table):
        assert line in module.LIMITS
    spec = table["indicators"]["ghost_inconsistency"]
    assert spec["condition"] == ["background_history", "jpeg_quality_band"]
    assert spec["calibration"] and spec["reliability"]


def test_quick_evaluation_reruns_exactly():
    block = ghost.evaluate(quick=True, jobs=1)["indicators"]
    stored = (_rates.table("image.ghost") or {}).get("quick")
    assert stored is not None, "run bench/evaluate.py --quick image.ghost"
    assert json.dumps(block, sort_keys=True) == json.dumps(stored, sort_keys=True)
