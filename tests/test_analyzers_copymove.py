"""image.copymove on real camera photographs (Debian wallpaper packages, forensics/evaluation/photos.py).

The forged and untouched files come from the evaluation set's own generator
(forensics/evaluation/copymove.py), so what is tested here is what the rate
table measures; the quick subset of that evaluation is rerun and must equal
the stored "quick" block exactly.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from forensics import analyzers
from forensics.analyzers import _rates, image_copymove
from forensics.analyzers.base import AnalysisContext, AnalysisError, validate_parameters
from forensics.evaluation import copymove, photos

from .test_analyzers_image import png_declaring


def _run(tmp_path, data: bytes, params=None):
    path = tmp_path / "evidence.jpg"
    path.write_bytes(data)
    ctx = AnalysisContext(workdir=str(tmp_path))
    result = image_copymove.analyze(str(path), validate_parameters(image_copymove.PARAMETERS, params), ctx)
    return result, ctx


def _named(result, name):
    return [f for f in result["findings"] if f["name"] == name]


def test_photos_are_real_camera_files_from_debian_packages():
    paths = photos.paths()
    assert len(paths) == len(photos.PHOTOS) == 25
    assert all(p.is_file() for p in paths)
    assert photos.DEBIAN_PACKAGES == [
        "lomiri-wallpapers-20.04",
        "mate-backgrounds",
        "plasma-workspace-wallpapers",
    ]
    cameras = {p.camera for p in photos.PHOTOS if p.camera}
    assert len(cameras) == 9
    for ph in photos.PHOTOS:
        if ph.camera:  # the camera named is the one the file's EXIF names
            with Image.open(ph.path) as im:
                exif = im.getexif()
            assert ph.camera.split()[-1] in f"{exif.get(0x010F, '')} {exif.get(0x0110, '')}"
    a = photos.photo(3, max_side=512)
    assert a.mode == "RGB" and max(a.size) == 512
    a.putpixel((0, 0), (1, 2, 3))  # a copy: the cached photograph is not changed
    assert photos.photo(3, max_side=512).tobytes() != a.tobytes() or a.getpixel((0, 0)) != (1, 2, 3)
    import numpy as np

    first = [ph.name for ph, _ in photos.photos(np.random.default_rng(5), n=4, max_side=64)]
    assert first == [ph.name for ph, _ in photos.photos(np.random.default_rng(5), n=4, max_side=64)]
    assert len(set(first)) == 4
    with pytest.raises(ValueError):
        photos.photo(0, max_side=-1)


def test_missing_photographs_name_the_package(monkeypatch, tmp_path):
    fake = photos.Photo("x", "some-wallpaper-package", tmp_path / "missing.jpg", "")
    monkeypatch.setattr(photos, "PHOTOS", (fake,))
    with pytest.raises(photos.MissingSource, match="some-wallpaper-package"):
        photos.paths()


def test_a_scaled_copy_in_a_photograph_is_found_and_drawn(tmp_path):
    data, meta = copymove.make("forged", 11)  # Dune (Canon EOS Digital Rebel), scaled copy, q80-89
    result, ctx = _run(tmp_path, data)
    found = _named(result, "copy_move")
    assert found, result["findings"]
    best = max(found, key=lambda f: f["raw_score"])
    truth = meta["truth"]
    pairs = [(best["source_region"], truth["source"]), (best["region"], truth["target"])]
    swapped = [(best["source_region"], truth["target"]), (best["region"], truth["source"])]
    assert all(copymove.iou(a, b) >= 0.5 for a, b in pairs) or all(
        copymove.iou(a, b) >= 0.5 for a, b in swapped
    )
    assert best["class"] == "indicator"
    # The direction is not known: the transform maps one region onto the other, either way.
    scale = best["transform"]["scale"]
    assert min(abs(scale - truth["scale"]), abs(1 / scale - truth["scale"])) < 0.03
    rates = best["rates"]
    assert rates["condition"]["jpeg_quality_band"] == "80-89"
    assert rates["measured"] is True, rates
    assert rates["positives"] > 0 and 0 <= rates["detection_ci95"][0] <= rates["detection_ci95"][1] <= 1
    assert rates["condition"]["transform"] == "scaled"
    assert best["score"] == _rates.calibrated("image.copymove", "copy_move", best["raw_score"])
    assert 0 <= best["score"] <= 1
    count = _named(result, "copy_move_count")[0]
    assert count["value"] == len(found)
    quality = _named(result, "jpeg_quality_estimate")[0]
    assert quality["value"] == meta["quality"] and quality["exact"] is True
    visual = _named(result, "copy_move_image")[0]
    art = next(a for a in ctx.artifacts if f"sha256:{a.sha256}" == visual["artifact"])
    with Image.open(io.BytesIO(art.data)) as pic:
        assert pic.format == "PNG" and pic.width == 1120  # the labelled figure
    layer = _named(result, "copy_move_overlay")[0]
    assert layer["overlay"] is True and layer["class"] == "visual"
    art = next(a for a in ctx.artifacts if f"sha256:{a.sha256}" == layer["artifact"])
    with Image.open(io.BytesIO(art.data)) as pic:
        assert pic.mode == "RGBA" and pic.size == Image.open(io.BytesIO(data)).size
        x, y, w, h = best["region"]
        red = [pic.getpixel((x + i, y)) for i in range(w)]
        assert sum(p == (255, 0, 0, 255) for p in red) > w // 2  # the target's box is drawn in red
        assert pic.getpixel((0, 0))[3] == 0 or best["region"][:2] == [0, 0]  # clear elsewhere


def test_an_untouched_photograph_has_no_candidate(tmp_path):
    data, meta = copymove.make("untouched", 0)
    result, _ctx = _run(tmp_path, data)
    assert meta["truth"] is None
    assert _named(result, "copy_move") == []
    assert _named(result, "copy_move_count")[0]["value"] == 0
    assert "no copy-move candidate" in _named(result, "copy_move_image")[0]["note"]


def test_large_images_are_analysed_scaled_and_regions_come_back_in_file_pixels(tmp_path):
    data, meta = copymove.make("forged", 11)
    big = Image.open(io.BytesIO(data)).resize((2048, 1280), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    big.save(buf, format="JPEG", quality=92)
    result, _ctx = _run(tmp_path, buf.getvalue(), {"max_side": 1024})
    found = _named(result, "copy_move")
    assert found
    best = max(found, key=lambda f: f["raw_score"])
    boxes = [[2 * v for v in meta["truth"]["source"]], [2 * v for v in meta["truth"]["target"]]]
    assert max(copymove.iou(best["region"], b) for b in boxes) >= 0.5
    assert best["rates"]["condition"]["jpeg_quality_band"] == "90-100"


def test_bad_input_is_refused_with_a_reason(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_declaring(100_000, 100_000))
    with pytest.raises(AnalysisError, match="decompression-bomb"):
        image_copymove.analyze(str(bomb), {}, AnalysisContext())
    broken = tmp_path / "broken.jpg"
    data, _ = copymove.make("untouched", 1)
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(AnalysisError, match="truncated"):
        image_copymove.analyze(str(broken), {}, AnalysisContext())
    with pytest.raises(ValueError, match="max_side"):
        validate_parameters(image_copymove.PARAMETERS, {"max_side": 10})


def test_registered_with_limits_quoting_the_table():
    module = analyzers.get("image.copymove")
    assert module is image_copymove
    assert analyzers.accepts(module, "image/jpeg")
    text = " ".join(module.LIMITS)
    table = _rates.table("image.copymove")
    assert table is not None, "run bench/evaluate.py image.copymove"
    assert table["command"] in text
    for line in _rates.limits_for_block(table):
        assert line in module.LIMITS
    spec = table["indicators"]["copy_move"]
    assert spec["condition"] == ["jpeg_quality_band", "transform", "region_size_band"]
    assert len(spec["rows"]) == len(copymove.CELLS)
    # A condition the set never had is reported as unmeasured, never borrowed.
    other = _rates.for_condition(
        "image.copymove",
        "copy_move",
        {"jpeg_quality_band": "not JPEG", "transform": "shift", "region_size_band": "<2%"},
    )
    assert other["measured"] is False and "never measured" in other["note"]


def test_quick_evaluation_reruns_exactly():
    block = copymove.evaluate(quick=True, jobs=1)["indicators"]
    stored = (_rates.table("image.copymove") or {}).get("quick")
    assert stored is not None, "run bench/evaluate.py --quick image.copymove"
    assert json.dumps(block, sort_keys=True) == json.dumps(stored, sort_keys=True)
