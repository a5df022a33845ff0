"""audio.enf: mains-hum trace, edit candidates and hum-free spans.

The rates the findings quote come from forensics/evaluation/enf.py (real
speech); the quick subset of it is rebuilt here and must equal the stored
table. Single clips (tests/enf_fixtures.py and the evaluation's own clips)
test the findings' shapes, determinism and speed.

Pure: no database. Run alone with
    python -m pytest tests/test_analyzers_enf.py -q -s
to see the measured table and the speed.
"""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from forensics.analyzers import _enf, _rates, audio_enf
from forensics.analyzers.base import FINDING_CLASSES, AnalysisContext, AnalysisError, validate_parameters
from forensics.evaluation import audio, sources, tables
from forensics.evaluation import enf as enf_eval
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


# ------------------------------------------------- rates from the evaluation ---


def test_quick_subset_reproduces_the_stored_quick_table():
    """Rebuild the quick subset of the real-speech evaluation and compare with the stored table.

    The full set's figures (the ones findings quote) are rerun by
    ``bench/evaluate.py audio.enf --check``; this reruns the same code on the
    subset, so a change to the detectors or the set that the table does not
    reflect fails here.
    """
    missing = [s for s in sources.SPEAKERS if s not in sources.available()]
    if missing:
        pytest.fail(
            f"speech sources missing ({', '.join(missing)}): install {', '.join(sources.DEBIAN_PACKAGES)}"
        )
    stored = _rates.table(audio_enf.NAME)
    assert stored and "quick" in stored and "indicators" in stored
    result = enf_eval.evaluate(quick=True, jobs=1)
    assert tables.differences(json.loads(json.dumps(result["indicators"])), stored["quick"]) == []


def test_limits_quote_the_table_and_nothing_synthetic():
    table = _rates.table(audio_enf.NAME)
    quoted = _rates.limits(audio_enf.NAME)
    assert quoted[0] in audio_enf.LIMITS and all(line in audio_enf.LIMITS for line in quoted)
    assert table["set"] in quoted[0] and "Asterisk" in table["set"]
    assert not any("espeak" in line for line in audio_enf.LIMITS)
    rows = table["indicators"]["edit_candidate"]["rows"]
    assert {r["condition"]["codec"] for r in rows} == set(enf_eval.CODECS)
    for r in rows:
        assert r["condition"]["hum_snr_band"] in audio_enf.SNR_BANDS
        assert (r.get("positives") or 0) + r["negatives"] > 0


def test_a_hum_free_insertion_is_a_span_with_rates_and_a_calibrated_score(tmp_path):
    clip = enf_eval.clip(8)  # 1.6 s of hum-free material inserted into a 60 Hz recording (tuning half)
    assert clip.kind == "humfree"
    path = tmp_path / "humfree.wav"
    path.write_bytes(audio.encode(clip.samples, "wav", enf_eval.SR))
    out, _ = run(path)
    (span,) = named(out, "hum_level_change")
    a, b = clip.humfree
    assert abs(span["value"]["start"] - a) <= 0.5 and abs(span["value"]["end"] - b) <= 0.5
    assert span["class"] == "indicator" and span["at"] == [span["value"]["start"], span["value"]["end"]]
    assert span["rates"]["measured"] is True
    assert all(f["class"] in FINDING_CLASSES for f in out["findings"])
    assert span["rates"]["condition"] == {"codec": "wav", "hum_snr_band": ">=20 dB"}
    assert span["score"] == _rates.calibrated(audio_enf.NAME, "hum_level_change", span["raw_score"])
    times = sorted(c["value"]["time"] for c in named(out, "edit_candidate") if c["value"]["test"] == "level")
    assert times == [span["value"]["start"], span["value"]["end"]]
    for c in named(out, "edit_candidate"):
        assert c["rates"]["measured"] is True and c["rates"]["table_sha256"]
        assert c["score"] == _rates.calibrated(audio_enf.NAME, "edit_candidate", c["raw_score"])
        half = c["rates"]["timing_error_p90_s"]
        assert c["at"] == [round(c["value"]["time"] - half, 2), round(c["value"]["time"] + half, 2)]


def test_a_voiced_moment_inside_hum_free_material_does_not_split_its_span(tmp_path, monkeypatch):
    """5 s of hum-free speech inserted into a 50 Hz recording (tuning half): for about half a second
    inside it the inserted speech has energy at the hum's harmonic and the level rises to the file's.
    The two low runs on either side are one span, whose ends are the splices; before audio.enf 2.6.0
    (LEVEL_CLOSE_S) each run alone was judged and neither was kept."""
    clip = enf_eval.clip(68)
    assert clip.kind == "humfree"
    path = tmp_path / "humfree.wav"
    path.write_bytes(audio.encode(clip.samples, "wav", enf_eval.SR))
    a, b = clip.humfree
    det = audio_enf.detect(str(path))
    (span,) = det.level_spans
    assert abs(span["start"] - a) <= 0.5 and abs(span["end"] - b) <= 0.5
    inside = (det.result.level_times > a + 0.5) & (det.result.level_times < b - 0.5)
    assert (
        det.result.level_db[inside].max() > det.result.level_ref_db - _enf.LEVEL_DROP_DB
    )  # the voiced moment

    monkeypatch.setattr(_enf, "LEVEL_CLOSE_S", 0.0)
    assert audio_enf.detect(str(path)).level_spans == []


def _humfree_clip(tmp_path, seed: int) -> tuple[str, tuple[float, float]]:
    clip = enf_eval.clip(seed)
    assert clip.kind == "humfree"
    path = tmp_path / f"humfree{seed}.wav"
    path.write_bytes(audio.encode(clip.samples, "wav", enf_eval.SR))
    return str(path), clip.humfree


def test_hum_free_material_in_a_phone_recording_with_weak_hum_is_a_span(tmp_path, monkeypatch):
    """7 s of hum-free speech inserted into a phone's recording (tuning half) whose median local hum
    SNR is under 12 dB: since audio.enf 2.7.0 such files are tested, with a stricter bridge. Inside
    the span the trace follows what the noise suppressor left in the hum's band, and the phase run on
    at it shows no step; run on at the frequency of the span's two sides, it does."""
    path, (a, b) = _humfree_clip(tmp_path, 80)
    det = audio_enf.detect(path)
    assert _enf.LEVEL_REF_WEAK_DB <= det.result.level_ref_db < _enf.LEVEL_REF_MIN_DB
    (span,) = det.level_spans
    assert abs(span["start"] - a) <= 0.5 and abs(span["end"] - b) <= 0.5
    assert span["bridge_z"] >= _enf.LEVEL_BRIDGE_Z_WEAK
    tester = _enf._Tester(det.result)
    s, e = round(span["start"] * _enf.R), round(span["end"] * _enf.R)
    assert (
        _enf._bridge(tester, s, e)[0] < _enf.LEVEL_BRIDGE_Z < _enf._bridge(tester, s, e, interpolate=True)[0]
    )

    monkeypatch.setattr(_enf, "LEVEL_REF_WEAK_DB", _enf.LEVEL_REF_MIN_DB)  # 2.6.0: not tested
    assert audio_enf.detect(path).level_spans == []


def test_a_spans_ends_are_fitted_to_where_the_hum_stops(tmp_path, monkeypatch):
    """Hum-free material inserted through an AGC (tuning half): the level, a mean over 1 s less a
    local noise from 4 s frames (which rises near a splice: the step leaks into the neighbour bands),
    falls 0.6 s before the splice. The fit of hum on one side and none on the other puts the span's
    start at the splice."""
    path, (a, b) = _humfree_clip(tmp_path, 32)
    (span,) = audio_enf.detect(path).level_spans
    assert abs(span["start"] - a) <= 0.1 and abs(span["end"] - b) <= 0.1

    monkeypatch.setattr(_enf, "LEVEL_EDGE_S", 0.0)  # the level's own ends, as before 2.7.0
    (span,) = audio_enf.detect(path).level_spans
    assert a - span["start"] > 0.5


def test_the_evaluation_records_the_true_phase_step_of_each_splice():
    sr = enf_eval.SR
    n = np.arange(2 * sr)
    freq = np.full(len(n), 50.0)
    left = enf_eval.Hum(freq, 2 * np.pi * 50.0 * n / sr, {1: 0.0, 2: 0.0, 3: 0.0})
    right = enf_eval.Hum(freq + 0.02, 2 * np.pi * 50.02 * n / sr + np.radians(100), {1: 0.0, 2: 1.0, 3: 0.0})
    silent = enf_eval.Hum(freq, None, {})
    # the part before heard at its sample 800, the part after at its sample 40 (100 ms later in its own time)
    (join,) = enf_eval._joins([(left, 0), (right, 0)], [(800, 40)], [1.0])
    expect = 100 + 360 * 50.02 * 40 / sr - 360 * 50.0 * 800 / sr
    assert join["step_deg"] == pytest.approx((expect + 180) % 360 - 180)
    assert -180 <= join["step_deg"] < 180 and join["freq_step_mhz"] == pytest.approx(20.0)
    second = 2 * expect + np.degrees(1.0)
    assert join["harmonic_steps_deg"]["2"] == pytest.approx((second + 180) % 360 - 180)
    (none,) = enf_eval._joins([(left, 0), (silent, 0)], [(800, 40)], [1.0])
    assert none["step_deg"] is None and none["freq_step_mhz"] is None

    clip = enf_eval.clip(4, 30)  # a cut: within one recording each harmonic steps k times the fundamental
    assert clip.kind == "cut" and 0.3 <= clip.description["edit"]["removed_s"] <= 6
    (join,) = clip.joins
    for k in (2, 3):
        diff = join["harmonic_steps_deg"][str(k)] - k * join["step_deg"]
        assert min(diff % 360, -diff % 360) == pytest.approx(0, abs=1e-6)
    humfree = enf_eval.clip(8, 30)
    assert [j["step_deg"] for j in humfree.joins] == [None, None]
    assert -180 <= humfree.description["edit"]["bridge_step_deg"] < 180


def test_recall_by_phase_step_counts_each_splice_in_its_band():
    def record(band, edits, steps, found):
        return {
            "seed": 1,
            "codec": "wav",
            "kind": "cut",
            "band": band,
            "edits": edits,
            "joins": [
                {"time": e, "step_deg": s, "harmonic_steps_deg": {}, "freq_step_mhz": 0.0}
                for e, s in zip(edits, steps, strict=True)
            ],
            "candidates": [{"time": e + 0.1} for e, hit in zip(edits, found, strict=True) if hit],
        }

    bands = list(audio_enf.SNR_BANDS)
    recs = [
        record(bands[1], [10.0, 20.0, 30.0], [5.0, -100.0, None], [False, True, True]),
        record(bands[2], [10.0, 20.0], [20.0, 170.0], [True, False]),
    ]
    table = enf_eval.phase_step_breakdown(recs, bands)
    rows = {r[0]: r[1:] for r in table["rows"]}
    assert rows["0-15°"][1].startswith("0/1 =") and rows["90-180°"][1].startswith("1/1 =")
    assert rows["15-30°"][2].startswith("1/1 =") and rows["90-180°"][2].startswith("0/1 =")
    assert rows["none: hum-free material on one side"][1].startswith("1/1 =")
    assert rows["all splices"][3].startswith("3/5 =") and rows["all splices"][0] == "-"
    assert table["columns"][0] == "phase step of the fundamental (absolute)"
    assert any(line.startswith("Hum SNR >= 12 dB") for line in table["notes"])


def test_trace_digits_and_uncertainty_follow_the_measured_error(tmp_path):
    clip = enf_eval.clip(3)  # unedited, 120 s
    assert clip.kind == "unedited"
    path = tmp_path / "plain.mp3"
    path.write_bytes(audio.encode(clip.samples[: 40 * enf_eval.SR], "mp3", enf_eval.SR))
    out, ctx = run(path)
    trace = one(out, "enf_trace")
    unc = trace["uncertainty"]
    cond = {"codec": "mp3", "hum_snr_band": audio_enf.snr_band(audio_enf.detect(str(path)).snr_db)}
    row = _rates.for_condition(audio_enf.NAME, "edit_candidate", cond)
    assert unc["value"] == row["trace_error_p90_hz"] and unc["unit"] == "Hz"
    assert "90th percentile" in unc["meaning"]
    digits = audio_enf._hz_decimals(unc["value"])
    assert 10**-digits <= unc["value"] < 10 ** (1 - digits)
    csv = next(a for a in ctx.artifacts if a.name == "enf_trace.csv").data.decode().splitlines()
    value = csv[5].split(",")[1]
    assert len(value.split(".")[1]) == digits


def test_a_condition_never_measured_says_so(tmp_path):
    clip = fx.make_cut(201, 32.0)
    out, _ = run(fx.write(tmp_path, "cut", clip.samples, "flac"))  # FLAC is not in the evaluation
    (cand,) = named(out, "edit_candidate")
    assert cand["rates"]["measured"] is False and "never measured" in cand["rates"]["note"]
    assert cand["at"] == [round(cand["value"]["time"] - 0.5, 2), round(cand["value"]["time"] + 0.5, 2)]
    assert one(out, "enf_trace")["uncertainty"]["value"] is None


# --------------------------------------------------------- single clips ---


def test_no_hum_is_a_neutral_result_with_no_candidates(tmp_path):
    clip = fx.make_unedited(901, 30.0, hum_db=-np.inf)
    out, ctx = run(fx.write(tmp_path, "nohum", clip.samples, "opus"))
    usable = one(out, "enf_usable")
    assert usable["value"] is False and usable["class"] == "measurement"
    assert "No usable ENF" in usable["note"] and "neutral" in usable["note"]
    assert named(out, "edit_candidate") == [] and named(out, "enf_grid") == []
    assert one(out, "edit_candidate_count")["value"] == 0
    plot = one(out, "enf_plot")
    assert plot["class"] == "visual" and plot["artifact"] == f"sha256:{ctx.artifacts[-1].sha256}"


def test_60_hz_grid_is_detected(tmp_path):
    clip = fx.make_unedited(902, 30.0, 60.0, hum_db=-50.0)
    out, _ = run(fx.write(tmp_path, "sixty", clip.samples, "mp3"))
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
    out, ctx = run(fx.write(tmp_path, "cut", clip.samples, "aac"))
    (cand,) = named(out, "edit_candidate")
    assert abs(cand["value"]["time"] - clip.edits[0]) < 0.5
    assert cand["at"][0] < clip.edits[0] < cand["at"][1]
    assert cand["raw_score"] >= 1.0  # at or above its test's threshold
    assert one(out, "decoder")["value"]["codec"] == "aac"
    assert one(out, "decoder")["value"]["output_sample_rate"] == _enf.FS
    assert set(out["libraries"]) == {"av", "numpy", "scipy", "Pillow", "matplotlib"}
    names = {a.name for a in ctx.artifacts}
    assert names == {"enf_trace.csv", "enf_trace.png"}
    csv = next(a for a in ctx.artifacts if a.name == "enf_trace.csv").data.decode()
    assert csv.splitlines()[0].startswith("time_s,enf_hz,")
    assert (
        abs(len(csv.splitlines()) - 1 - (clip.seconds - _enf.FRAME_S) / _enf.HOP_S) <= 2
    )  # one row per frame


def test_placement_moves_a_misplaced_candidate_to_the_phase_step_and_adds_none():
    """_place moves phase-test candidates to where a split model fits best, within PLACE_S, never past another."""
    rng = np.random.default_rng(7)
    fs, seconds, splice = _enf.FS, 40.0, 20.0
    t = np.arange(int(seconds * fs)) / fs
    freq = 50.0 + 0.01 * np.sin(2 * np.pi * t / 17)  # a slowly wandering grid
    step = np.where(t >= splice, np.radians(120), 0.0)  # a 120 degree phase step at the splice
    phase = 2 * np.pi * np.cumsum(freq) / fs + step
    hum = sum(a * np.cos(k * phase + k) for k, a in ((1, 0.02), (2, 0.01), (3, 0.006)))
    res = _enf.analyse(hum + 0.02 * rng.standard_normal(len(t)))
    assert res.grid == 50
    tester = _enf._Tester(res)
    res.candidates = [
        {"time": 10.0, "test": "level"},  # not moved: one side of a level candidate has no hum
        {"time": 20.8, "test": "const:3s"},  # misplaced by 0.8 s
        {"time": 32.0, "test": "if"},  # no step nearby: may move, but at most PLACE_S
    ]
    _enf._place(res, tester)
    times = [c["time"] for c in res.candidates]
    assert len(times) == 3 and times[0] == 10.0
    assert abs(times[1] - splice) < 0.15
    assert abs(times[2] - 32.0) <= _enf.PLACE_S
    # another candidate 0.3 s before the splice: each search stops PLACE_MIN_S short of the other candidate
    res.candidates = [{"time": 19.7, "test": "if"}, {"time": 20.8, "test": "const:1s"}]
    _enf._place(res, tester)
    assert res.candidates[0]["time"] < res.candidates[1]["time"]
    assert res.candidates[1]["time"] >= 19.7 + _enf.PLACE_MIN_S - 0.5 / _enf.R


def test_same_bytes_give_the_same_findings_and_pictures(tmp_path):
    clip = fx.make_reordering(402, 39.0, 60.0)
    path = fx.write(tmp_path, "reorder", clip.samples, "opus")
    first, ctx1 = run(path)
    second, ctx2 = run(path)
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)
    assert [(a.name, a.data) for a in ctx1.artifacts] == [(a.name, a.data) for a in ctx2.artifacts]
    png = next(a for a in ctx1.artifacts if a.media_type == "image/png").data
    assert png.startswith(b"\x89PNG") and len(png) < 400_000
    assert len(named(first, "edit_candidate")) == 3


def test_speed_and_quiet_on_ten_minutes(tmp_path):
    """Ten minutes with one cut, one core: CPU seconds of analyze() per hour of audio.

    Also: nothing but the cut is reported, and the picture keeps its size.
    """
    clip = fx.make_cut(77, 600.0)
    report = {}
    for codec in ("wav", "opus"):
        path = fx.write(tmp_path, f"ten-minutes-{codec}", clip.samples, codec)
        start = time.process_time()
        out, ctx = run(path)
        report[codec] = round((time.process_time() - start) * 3600 / clip.seconds, 1)
        times = [f["value"]["time"] for f in named(out, "edit_candidate")]
        assert len(times) == 1 and abs(times[0] - clip.edits[0]) < 0.5, times
        png = next(a for a in ctx.artifacts if a.media_type == "image/png").data
        assert Image.open(io.BytesIO(png)).size == (1120, 1216) and len(png) < 400_000
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
