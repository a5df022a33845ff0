"""audio.enf: mains-hum trace and phase-jump edit candidates, measured on a labelled set.

The set (tests/enf_fixtures.py) is synthesised speech with mains hum of known
wander, background noise, and cuts, insertions and reorderings at known
times, encoded through six codecs. The detection rates, false alarms and
timing errors measured here are the figures audio_enf.MEASURED states (and
LIMITS repeats); the test fails when they drift.

Pure: no database. Run alone with
    python -m pytest tests/test_analyzers_enf.py -q -s
to see the measured table and the speed.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from PIL import Image

from forensics.analyzers import _enf, audio_enf
from forensics.analyzers.base import FINDING_CLASSES, AnalysisContext, AnalysisError, validate_parameters
from tests import enf_fixtures as fx


def run(path: str, **params) -> tuple[dict, AnalysisContext]:
    ctx = AnalysisContext(original_name=str(path))
    out = audio_enf.analyze(str(path), validate_parameters(audio_enf.PARAMETERS, params), ctx)
    return out, ctx


def named(out: dict, name: str) -> list[dict]:
    return [f for f in out["findings"] if f["name"] == name]


def one(out: dict, name: str) -> dict:
    (f,) = named(out, name)
    return f


# ------------------------------------------------------------ labelled set ---


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> dict:
    """{codec: (clips, results)}: every labelled clip encoded through every codec and analysed.

    Clips are independent, so they are shared among up to two processes.
    """
    tmp = str(tmp_path_factory.mktemp("enf"))
    specs = fx.labelled_specs()
    codecs = list(fx.CODECS)
    workers = max(1, min(2, os.cpu_count() or 1))
    if workers > 1:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            done = list(pool.map(fx.encode_and_analyse, specs, [tmp] * len(specs), [codecs] * len(specs)))
    else:
        done = [fx.encode_and_analyse(spec, tmp, codecs) for spec in specs]
    clips = [clip for clip, _ in done]
    return {codec: (clips, [results[codec] for _, results in done]) for codec in codecs}


def test_labelled_set_is_what_the_fixtures_say(labelled):
    clips, _ = labelled["wav"]
    kinds = [c.kind for c in clips]
    assert kinds.count("unedited") == 10 and kinds.count("no_hum") == 4
    assert kinds.count("cut") == 8 and kinds.count("insertion") == 6 and kinds.count("reordering") == 6
    assert all(20 <= c.seconds <= 60 for c in clips)
    assert sum(len(c.edits) for c in clips) == 8 + 2 * 6 + 3 * 6
    assert {c.nominal for c in clips} == {50.0, 60.0}
    for c in clips:  # edits lie well inside the clip and apart
        assert all(5.0 < t < c.seconds - 5.0 for t in c.edits)
        assert all(b - a >= 0.95 for a, b in zip(c.edits, c.edits[1:], strict=False))


def test_measured_rates_match_limits(labelled):
    if not fx.HAVE_ESPEAK:
        pytest.fail(
            "espeak-ng is not installed (the README's test command installs it): the set would not be the one the figures were measured on"
        )
    measured = {codec: fx.evaluate(clips, results) for codec, (clips, results) in labelled.items()}
    print("\nENF measured on the labelled set:\n" + json.dumps(measured, indent=1))
    assert set(measured) == set(audio_enf.MEASURED)
    for codec, m in measured.items():
        stated = audio_enf.MEASURED[codec]
        assert m["edits"] == stated["edits"]
        assert m["unedited_files"] == stated["unedited_files"]
        assert abs(m["detection_rate"] - stated["detection_rate"]) <= 0.08, codec
        assert abs(m["detection_rate_step30"] - stated["detection_rate_step30"]) <= 0.08, codec
        assert abs(m["false_alarms_per_file"] - stated["false_alarms_per_file"]) <= 0.15, codec
        assert abs(m["false_alarms_per_minute"] - stated["false_alarms_per_minute"]) <= 0.15, codec
        assert abs(m["false_alarms_edited"] - stated["false_alarms_edited"]) <= 2, codec
        assert abs(m["timing_error_median_s"] - stated["timing_error_median_s"]) <= 0.1, codec
        assert abs(m["timing_error_p90_s"] - stated["timing_error_p90_s"]) <= 0.2, codec
        assert abs(m["usable_files"] - stated["usable_files"]) <= 2, codec
        assert m["false_usable"] <= stated["false_usable"] + 1, codec
        # the timing uncertainty put around each candidate covers what was measured
        assert m["timing_error_p90_s"] <= audio_enf.TIMING_UNCERTAINTY_S
        # and LIMITS says it in words
        assert any(
            line.startswith(f"{codec} (") and f"found {stated['detected']}/{stated['edits']} edits" in line
            for line in audio_enf.LIMITS
        )


def test_unedited_files_give_no_candidates_on_lossless_copies(labelled):
    clips, results = labelled["wav"]
    for clip, out in zip(clips, results, strict=True):
        if clip.kind in ("unedited", "no_hum"):
            assert named(out, "edit_candidate") == [], clip.name


def test_candidates_are_indicators_in_the_shared_shape(labelled):
    clips, results = labelled["flac"]
    seen = 0
    for clip, out in zip(clips, results, strict=True):
        for f in out["findings"]:
            assert f["class"] in FINDING_CLASSES
            assert set(f) >= {"name", "class", "value", "note"}
        for f in named(out, "edit_candidate"):
            seen += 1
            assert f["class"] == "indicator" and 0.0 <= f["score"] <= 1.0
            start, end = f["at"]
            assert 0 <= start <= f["value"]["time"] <= end <= clip.seconds + 0.01
            assert f["note"]
        assert one(out, "edit_candidate_count")["value"] == len(named(out, "edit_candidate"))
    assert seen > 20


# --------------------------------------------------------- single clips ---


def test_no_hum_is_a_neutral_result_with_no_candidates(tmp_path):
    clip = fx.make_unedited(901, 30.0, hum_db=-np.inf)
    out, ctx = run(fx.write(tmp_path, "nohum", clip.samples, "opus_24k"))
    usable = one(out, "enf_usable")
    assert usable["value"] is False and usable["class"] == "measurement"
    assert "No usable ENF" in usable["note"] and "neutral" in usable["note"]
    assert named(out, "edit_candidate") == [] and named(out, "enf_grid") == []
    assert one(out, "edit_candidate_count")["value"] == 0
    plot = one(out, "enf_plot")
    assert plot["class"] == "visual" and plot["artifact"] == f"sha256:{ctx.artifacts[-1].sha256}"


def test_60_hz_grid_is_detected(tmp_path):
    clip = fx.make_unedited(902, 30.0, 60.0, hum_db=-50.0)
    out, _ = run(fx.write(tmp_path, "sixty", clip.samples, "mp3_64k"))
    assert one(out, "enf_usable")["value"] is True
    assert one(out, "enf_grid")["value"] == 60
    trace = one(out, "enf_trace")["value"]
    assert 59.9 < trace["median"] < 60.1
    snr = one(out, "enf_snr")["value"]
    assert snr["60"]["60"] > 20 and max(snr["50"].values()) < _enf.MIN_SNR_DB


def test_forcing_the_other_grid_finds_no_enf(tmp_path):
    clip = fx.make_unedited(902, 30.0, 60.0, hum_db=-50.0)
    out, _ = run(fx.write(tmp_path, "sixty", clip.samples, "wav"), grid="50")
    assert one(out, "enf_usable")["value"] is False


def test_a_cut_is_found_at_its_time(tmp_path):
    clip = fx.make_cut(201, 32.0)  # a 77 degree phase step
    assert abs(clip.steps_deg[0]) > 60
    out, ctx = run(fx.write(tmp_path, "cut", clip.samples, "aac_48k"))
    (cand,) = named(out, "edit_candidate")
    assert abs(cand["value"]["time"] - clip.edits[0]) < 0.5
    assert cand["at"][0] < clip.edits[0] < cand["at"][1]
    assert cand["score"] > 0.3
    assert one(out, "decoder")["value"]["codec"] == "aac"
    assert one(out, "decoder")["value"]["output_sample_rate"] == _enf.FS
    assert set(out["libraries"]) == {"av", "numpy", "scipy", "Pillow"}
    names = {a.name for a in ctx.artifacts}
    assert names == {"enf_trace.csv", "enf_trace.png"}
    csv = next(a for a in ctx.artifacts if a.name == "enf_trace.csv").data.decode()
    assert csv.splitlines()[0].startswith("time_s,enf_hz,")
    assert (
        abs(len(csv.splitlines()) - 1 - (clip.seconds - _enf.FRAME_S) / _enf.HOP_S) <= 2
    )  # one row per frame


def test_same_bytes_give_the_same_findings_and_pictures(tmp_path):
    clip = fx.make_reordering(402, 39.0, 60.0)
    path = fx.write(tmp_path, "reorder", clip.samples, "opus_24k")
    first, ctx1 = run(path)
    second, ctx2 = run(path)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert [(a.name, a.data) for a in ctx1.artifacts] == [(a.name, a.data) for a in ctx2.artifacts]
    png = next(a for a in ctx1.artifacts if a.media_type == "image/png").data
    assert png.startswith(b"\x89PNG") and len(png) < 200_000
    assert len(named(first, "edit_candidate")) == 3


def test_speed_and_quiet_on_ten_minutes(tmp_path):
    """Ten minutes with one cut, one core: CPU seconds of analyze() per hour of audio.

    Also: nothing but the cut is reported, and the picture keeps its size.
    """
    clip = fx.make_cut(77, 600.0)
    report = {}
    for codec in ("wav", "opus_24k"):
        path = fx.write(tmp_path, f"ten-minutes-{codec}", clip.samples, codec)
        start = time.process_time()
        out, ctx = run(path)
        report[codec] = round((time.process_time() - start) * 3600 / clip.seconds, 1)
        times = [f["value"]["time"] for f in named(out, "edit_candidate")]
        assert len(times) == 1 and abs(times[0] - clip.edits[0]) < 0.5, times
        png = next(a for a in ctx.artifacts if a.media_type == "image/png").data
        assert Image.open(io.BytesIO(png)).size == (1000, 620) and len(png) < 200_000
    print(f"\nENF speed, CPU seconds per hour of audio (decoding included): {report}")
    # the whole audio suite's budget is 120 s per hour (1/30 of real time): ENF must take a fraction
    assert max(report.values()) < 60


# ------------------------------------------------------------- contract ---


def test_module_declares_the_contract():
    assert audio_enf.NAME == "audio.enf" and audio_enf.VERSION
    assert audio_enf.ACCEPTS == ["audio/*", "video/*"]
    assert audio_enf.DESCRIPTION and all(isinstance(line, str) for line in audio_enf.LIMITS)
    assert validate_parameters(audio_enf.PARAMETERS, {}) == {"grid": "auto"}
    with pytest.raises(ValueError):
        validate_parameters(audio_enf.PARAMETERS, {"grid": "55"})


def test_not_audio_is_refused(tmp_path):
    path = tmp_path / "junk.bin"
    path.write_bytes(b"not audio at all" * 100)
    with pytest.raises(AnalysisError):
        run(path)


def test_a_fraction_of_a_second_is_refused(tmp_path):
    path = fx.write(tmp_path, "blip", np.zeros(fx.SR // 4), "wav")
    with pytest.raises(AnalysisError):
        run(path)


def test_a_few_seconds_is_analysed_without_candidates(tmp_path):
    clip = fx.make_unedited(904, 30.0, hum_db=-45.0)
    out, _ = run(fx.write(tmp_path, "short", clip.samples[: 3 * fx.SR], "wav"))
    assert one(out, "enf_usable")["value"] is True
    assert named(out, "edit_candidate") == []
