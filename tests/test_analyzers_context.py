"""Context alignment (forensics/analyzers/audio_context.py).

Two sets: the small synthetic one of tests/context_fixtures.py (espeak-ng
voices, built once per session) for the behaviour of single findings
(determinism, speed, unrelated recordings, parameters), and the realistic
evaluation set of forensics/evaluation/context.py (real speech, rooms, noise,
devices, leak codecs), whose quick subset is rerun here and must give exactly
the "quick" block of forensics/analyzers/rates/audio.context.json; the full
set is rerun by ``bench/evaluate.py --check audio.context``. Every rate the
analyzer quotes comes from that table. Pure: no database, no network.
"""

from __future__ import annotations

import json
import time
from unittest import mock

import numpy as np
import pytest

from forensics.analyzers import _figure, _rates, audio_context
from forensics.analyzers._context_plot import render
from forensics.analyzers.base import AnalysisContext, AnalysisError, validate_parameters
from forensics.evaluation import audio as eval_audio
from forensics.evaluation import context as evaluation
from forensics.evaluation import tables
from tests import context_fixtures as cf

INDICATORS = ("removed", "inserted", "reordered")


@pytest.fixture(scope="session")
def labelled(tmp_path_factory):
    return cf.build(tmp_path_factory.mktemp("context-set"))


FIGURE_CPU_S = 1.5  # the alignment figure: a fixed cost per run, whatever the clip's length


def _run(path, reference, references=None):
    """(output, ctx, CPU seconds of the analysis without the figure); the figure's own CPU is
    checked against FIGURE_CPU_S here: a fixed cost per run must not count against a short
    clip's share of real time."""
    ctx = AnalysisContext()
    if references is not None:
        ctx.references = references
    drawing = []

    def timed_render(*args):
        started = time.process_time()
        png = render(*args)
        drawing.append(time.process_time() - started)
        return png

    started = time.process_time()
    with mock.patch.object(audio_context, "render", timed_render):
        out = audio_context.analyze(str(path), {"reference": str(reference)}, ctx)
    cpu = time.process_time() - started
    assert len(drawing) == 1 and drawing[0] <= FIGURE_CPU_S, drawing
    return out, ctx, cpu - drawing[0]


@pytest.fixture(scope="session")
def results(labelled):
    """Every clip of the set analysed against its reference: (clip, findings, cpu seconds)."""
    # matplotlib is imported on first use, not with the module like numpy and scipy: load it
    # here so that its one-time import is not counted against the first clip's figure
    _figure.figure(1.0)
    out = []
    for clip in labelled.clips:
        result, _, cpu = _run(clip.path, labelled.references[clip.reference])
        out.append((clip, result["findings"], cpu))
    return out


def test_unedited_excerpt_is_one_segment_at_its_place(results):
    for clip, findings, _ in results:
        if clip.name != "excerpt_a" or clip.codec != "opus16k":
            continue
        segs = [f for f in findings if f["name"] == "segment"]
        assert len(segs) == 1
        assert segs[0]["class"] == "measurement"
        truth = clip.parts[0]
        assert segs[0]["at"][0] == 0.0
        assert abs(segs[0]["value"]["reference_at"][0] - truth.ref[0]) <= 0.05
        assert abs(segs[0]["value"]["reference_at"][1] - truth.ref[1]) <= 0.1
        assert segs[0]["score"] > 0.99
        assert not [f for f in findings if f["name"] in INDICATORS]


def test_removed_material_is_reported_at_the_join_with_its_duration(results):
    for clip, findings, _ in results:
        if clip.name != "cuts_a" or clip.codec != "amrnb12k" or clip.reference != "wav":
            continue
        removed = [f for f in findings if f["name"] == "removed"]
        assert [f["value"]["duration_s"] for f in removed] == pytest.approx([1.0, 5.5, 20.0], abs=0.05)
        for f, truth in zip(removed, clip.removed(), strict=True):
            assert f["class"] == "indicator"
            assert f["at"][0] <= f["at"][1] and f["value"]["join_at"] == f["at"]
            assert f["at"][0] - 0.6 < truth["join"] < f["at"][1] + 0.6
            assert f["value"]["reference_at"] == pytest.approx(list(truth["reference_at"]), abs=0.6)
            assert 0 < f["score"] <= 1


def test_clip_at_another_speed_is_measured_and_stretched_back(results):
    for clip, findings, _ in results:
        if clip.name != "speed_a":
            continue
        speed = [f for f in findings if f["name"] == "speed_ratio"]
        assert len(speed) == 1 and speed[0]["class"] == "measurement"
        assert speed[0]["value"] == pytest.approx(0.985, abs=0.001), clip.codec
        removed = [f["value"]["duration_s"] for f in findings if f["name"] == "removed"]
        assert removed == pytest.approx([3.0, 10.0], abs=0.05), clip.codec
    for clip, findings, _ in results:
        if clip.name != "speed_a":
            assert not [f for f in findings if f["name"] == "speed_ratio"], (clip.name, clip.codec)


def test_unrelated_recording_is_not_found(results):
    for clip, findings, _ in results:
        if clip.kind != "unrelated":
            continue
        names = [f["name"] for f in findings]
        assert "segment" not in names
        assert not set(INDICATORS) & set(names)
        assert "not_found" in names
        summary = next(f for f in findings if f["name"] == "alignment_summary")
        assert summary["value"]["parts"] == 0
        assert "no part of the clip was found" in summary["note"]


def test_speed_is_far_within_a_thirtieth_of_real_time(results, labelled):
    for clip, _, cpu in results:  # the reference's fingerprints are cached between clips
        assert cpu <= clip.pieces[-1].clip_at[1] / 30, (clip.name, clip.codec, cpu)
    clip = next(c for c in labelled.clips if c.name == "cuts_a" and c.codec == "opus16k")
    audio_context._REFERENCES.clear()  # and from cold: decoding and fingerprinting the reference
    _, _, cpu = _run(clip.path, labelled.references["wav"])
    assert cpu <= (clip.pieces[-1].clip_at[1] + labelled.reference_seconds) / 30


def test_same_bytes_give_the_same_result_and_picture(labelled):
    clip = next(c for c in labelled.clips if c.name == "reorder_a" and c.codec == "mp3_32k")
    audio_context._REFERENCES.clear()
    a, ctx_a, _ = _run(clip.path, labelled.references["wav"])  # fingerprints the reference
    b, ctx_b, _ = _run(clip.path, labelled.references["wav"])  # uses the cached fingerprints
    assert a == b
    assert [x.data for x in ctx_a.artifacts] == [x.data for x in ctx_b.artifacts]
    plot = next(f for f in a["findings"] if f["name"] == "alignment_plot")
    assert plot["artifact"] == f"sha256:{ctx_a.artifacts[0].sha256}"
    assert ctx_a.artifacts[0].data.startswith(b"\x89PNG")


def test_findings_name_the_reference_evidence_given_by_the_pipeline(labelled):
    clip = next(c for c in labelled.clips if c.name == "cuts_b" and c.codec == "aac32k")
    refs = {"reference": {"id": "6f1c0b7e-0000-4000-8000-000000000001", "sha256": "ab" * 32}}
    out, _, _ = _run(clip.path, labelled.references["wav"], references=refs)
    segs = [f for f in out["findings"] if f["name"] == "segment"]
    assert segs and all(f["value"]["evidence"] == refs["reference"]["id"] for f in segs)
    summary = next(f for f in out["findings"] if f["name"] == "alignment_summary")
    assert summary["value"]["reference"] == {"evidence": refs["reference"]["id"], "sha256": "ab" * 32}
    for f in out["findings"]:
        assert set(f) <= {
            "name",
            "class",
            "value",
            "unit",
            "at",
            "score",
            "raw_score",
            "rates",
            "uncertainty",
            "artifact",
            "note",
        }
        for t in f.get("at", []):
            assert round(t, 2) == t


def test_reference_is_a_required_evidence_parameter():
    assert audio_context.PARAMETERS["reference"]["type"] == "evidence"
    with pytest.raises(ValueError, match="reference"):
        validate_parameters(audio_context.PARAMETERS, {})
    assert validate_parameters(audio_context.PARAMETERS, {"reference": "some-id"}) == {"reference": "some-id"}


def test_unreadable_reference_is_refused(labelled, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not audio at all" * 100)
    clip = labelled.clips[0]
    with pytest.raises(AnalysisError, match="reference"):
        _run(clip.path, junk)


# --- the realistic evaluation set (forensics/evaluation/context.py) ---------------------------------


def test_quick_evaluation_gives_the_stored_quick_table():
    """Every figure the analyzer quotes is rerun: the quick subset here, the full set by --check."""
    stored = _rates.table(audio_context.NAME)
    assert stored is not None and "indicators" in stored and "quick" in stored
    result = evaluation.evaluate(quick=True, jobs=1)
    assert tables.differences(json.loads(json.dumps(result["indicators"])), stored["quick"]) == []


def test_limits_quote_the_evaluation_table_and_nothing_else_measured():
    assert not hasattr(audio_context, "MEASURED")
    quoted = _rates.limits(audio_context.NAME)
    assert len(quoted) > 1 and "bench/evaluate.py audio.context" in quoted[0]
    assert audio_context.LIMITS[-len(quoted) :] == quoted
    table = _rates.table(audio_context.NAME)
    for name in ("removed", "reordered", "inserted", "join", "speed_ratio"):
        assert table["indicators"][name]["rows"], name


@pytest.fixture(scope="module")
def real_scene():
    return evaluation.scene(0, 120.0)


def _analyse_samples(tmp_path, scene, samples, codec="wav"):
    ref = tmp_path / "reference.wav"
    if not ref.exists():
        ref.write_bytes(eval_audio.encode(scene.samples, "wav", evaluation.SR))
    clip = tmp_path / f"clip{eval_audio.suffix(codec)}"
    clip.write_bytes(eval_audio.encode(samples, codec, evaluation.SR))
    return audio_context.analyze(str(clip), {"reference": str(ref)}, AnalysisContext())["findings"]


def _pauses(scene, lo, hi, min_s=0.6):
    return [p for p in scene.pauses(lo, hi, min_s)]


def test_join_in_a_pause_is_reported_as_the_pause(real_scene, tmp_path):
    """The outside tester's case: a cut made inside pauses was placed 0.7-1.4 s away."""
    sr = evaluation.SR
    p1 = _pauses(real_scene, 15, 50)[0]
    p2 = next(p for p in _pauses(real_scene, p1[1] + 3, 110) if p[0] > p1[1] + 3)
    cut_out = p1[0] + 0.3 * (p1[1] - p1[0])  # the editor cuts anywhere in the pause
    cut_in = p2[0] + 0.6 * (p2[1] - p2[0])
    start = p1[0] - 10
    a = real_scene.samples[round(start * sr) : round(cut_out * sr)]
    b = real_scene.samples[round(cut_in * sr) : round((cut_in + 10) * sr)]
    join = a.size / sr
    findings = _analyse_samples(tmp_path, real_scene, np.concatenate([a, b]), "amr_nb")
    removed = [f for f in findings if f["name"] == "removed"]
    assert len(removed) == 1, [(f["name"], f.get("at")) for f in findings]
    r = removed[0]
    assert r["value"]["duration_s"] == pytest.approx(cut_in - cut_out, abs=0.25)
    lo, hi = r["at"]
    assert lo - 0.25 <= join <= hi + 0.25
    assert hi - lo <= (cut_out - p1[0]) + (p2[1] - cut_in) + 0.25  # no wider than the clip's pause
    assert r["rates"]["condition"]["codec"] == "amr_nb"
    lowest = _rates.table(audio_context.NAME)["indicators"]["removed"]["calibration"][0][0]
    if r["raw_score"] >= lowest:
        assert r["score"] == _rates.calibrated(audio_context.NAME, "removed", r["raw_score"])
    else:
        assert r.get("score") is None and "no measured probability" in r["note"]
    assert r["uncertainty"]["unit"] == "s" and "90th percentile" in r["uncertainty"]["meaning"]
    assert not [f for f in findings if f["name"] in ("inserted", "reordered")]


def test_foreign_speech_is_not_absorbed_into_the_segments(real_scene, tmp_path):
    sr = evaluation.SR
    rng = np.random.default_rng(5)
    foreign = evaluation._foreign(real_scene, rng, 1.5)
    a = real_scene.samples[round(30 * sr) : round(42 * sr)]
    b = real_scene.samples[round(42 * sr) : round(54 * sr)]
    findings = _analyse_samples(tmp_path, real_scene, np.concatenate([a, foreign, b]), "opus")
    span = (a.size / sr, (a.size + foreign.size) / sr)
    inserted = [f for f in findings if f["name"] == "inserted"]
    assert len(inserted) == 1 and inserted[0]["value"]["kind"] == "not_in_reference"
    assert inserted[0]["at"] == pytest.approx(list(span), abs=0.25)
    segs = [f for f in findings if f["name"] == "segment"]
    absorbed = sum(max(0.0, min(s["at"][1], span[1]) - max(s["at"][0], span[0])) for s in segs)
    assert absorbed <= 0.25
    assert inserted[0]["rates"]["condition"] == {"codec": "opus", "speed": "same", "material": "speech"}


@pytest.mark.parametrize("percent", [-3, 3, 5])
def test_speed_change_gives_no_false_insertions(real_scene, tmp_path, percent):
    """The outside tester's case: a 3 % speed change gave false 'inserted' spans."""
    sr = evaluation.SR
    x = real_scene.samples[round(20 * sr) : round(60 * sr)]
    speed = 1 + percent / 100
    y = eval_audio.resample(x, round(sr * speed), sr)
    findings = _analyse_samples(tmp_path, real_scene, y, "aac")
    ratio = [f for f in findings if f["name"] == "speed_ratio"]
    assert len(ratio) == 1 and ratio[0]["value"] == pytest.approx(speed, abs=0.002)
    assert not [f for f in findings if f["name"] in INDICATORS]
    segs = [f for f in findings if f["name"] == "segment"]
    assert len(segs) == 1 and segs[0]["value"]["reference_at"] == pytest.approx([20, 60], abs=0.1)
