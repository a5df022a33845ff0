"""Findings in plain words (forensics/presentation.py), the summaries and the examination report.

The unit tests read real analyzer outputs: the analyzers run here on files the
tests make (a JPEG with camera EXIF, a double-compressed JPEG, an AAC clip with
container tags, a WAV with exact digital silence, a ZIP), and the expected
words are computed from the same result's numbers, not copied from a run.
"""

from __future__ import annotations

import html
import importlib
import io
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from custody.models import LogEntry
from forensics import presentation
from forensics.analyzers import (
    _rates,
    audio_container,
    audio_signal,
    file_archive,
    file_structure,
    image_ela,
    image_jpeg,
    image_metadata,
)
from forensics.analyzers.base import AnalysisContext, validate_parameters
from forensics.models import Analysis

from . import audio_fixtures as af
from .conftest import upload
from .test_analyzers_image import camera_exif, jpeg_bytes, recompress, synthetic


def run(module, path) -> dict:
    ctx = AnalysisContext(original_name=Path(path).name, size=Path(path).stat().st_size)
    result = module.analyze(str(path), validate_parameters(module.PARAMETERS, {}), ctx)
    return {"analyzer": {"name": module.NAME, "version": module.VERSION}, **result}


def named(predicate: dict, name: str) -> dict:
    return next(f for f in predicate["findings"] if f["name"] == name)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("presentation")
    photo = root / "photo.jpg"
    photo.write_bytes(jpeg_bytes(synthetic(7, 320), 90, exif=camera_exif()))
    double = root / "double.jpg"
    double.write_bytes(recompress(jpeg_bytes(synthetic(3, 320), 60), 90))
    x = af.concat(af.tone(440, 1.0, 48000), af.noise(1.0, 48000))
    clip = af.encode(
        x, 48000, root / "clip.m4a", bitrate=96000, metadata={"creation_time": "2024-01-02T03:04:05Z"}
    )
    wav = af.write_wav(
        af.concat(af.noise(1.0, 16000), af.silence(0.25, 16000), af.noise(1.0, 16000)), 16000, root / "s.wav"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("notes.txt", "meeting notes\n" * 20)
    archive = root / "notes.zip"
    archive.write_bytes(buf.getvalue())
    return {"photo": photo, "double": double, "clip": clip, "wav": wav, "zip": archive}


@pytest.fixture(scope="module")
def results(files) -> dict[str, dict]:
    return {
        "metadata": run(image_metadata, files["photo"]),
        "jpeg": run(image_jpeg, files["double"]),
        "ela": run(image_ela, files["photo"]),
        "container": run(audio_container, files["clip"]),
        "signal": run(audio_signal, files["wav"]),
        "archive": run(file_archive, files["zip"]),
        "structure": run(file_structure, files["zip"]),
    }


# ---------------------------------------------------------------- words


def test_clock_writes_positions_as_minutes_seconds_millis():
    assert presentation.clock(0) == "00:00.000"
    assert presentation.clock(12.3456) == "00:12.346"
    assert presentation.clock(442.5) == "07:22.500"
    assert presentation.clock(3725.5) == "1:02:05.500"
    for bad in (float("nan"), "12", None, True):
        with pytest.raises(ValueError):
            presentation.clock(bad)


def test_fired_indicator_quotes_its_own_conditions_rates(results):
    jpeg = results["jpeg"]
    finding = named(jpeg, "double_compression")
    assert finding["value"] is True and presentation.is_fired(finding)
    rates = finding["rates"]
    assert rates["measured"]
    [fired] = presentation.fired_indicators([(None, jpeg)])
    lo, hi = (round(100 * v) for v in rates["detection_ci95"])
    assert fired["rates"].startswith(
        f"detected {rates['detected']} of {rates['positives']} "
        f"({round(100 * rates['detection_rate'])}%, 95% CI {lo}-{hi}%) in "
        f"q2 band {rates['condition']['q2_band']}, tables {rates['condition']['tables']}; "
        f"false alarms on {rates['false_alarms']} of {rates['negatives']} unedited images"
    )
    assert fired["probability"] == f"{round(100 * finding['score'])}%"


def test_indicator_that_looked_and_found_nothing_has_not_fired(results):
    bomb = named(results["archive"], "possible_decompression_bomb")
    assert bomb["value"] is False and not presentation.is_fired(bomb)
    assert presentation.fired_indicators([(None, results["archive"])]) == []
    assert presentation.summary([(None, results["archive"])])["indicators"] == 1
    # null: the test did not apply; an empty candidate is nothing found either
    assert not presentation.is_fired({"class": "indicator", "value": None})
    assert not presentation.is_fired({"class": "indicator", "value": {}})
    assert presentation.is_fired({"class": "indicator", "value": {"time": 3.2}, "score": 0.1})
    assert not presentation.is_fired({"class": "measurement", "value": True})


def test_rates_per_hour_and_never_measured_conditions():
    measured = _rates.for_condition(
        "audio.enf", "edit_candidate", {"codec": "wav", "hum_snr_band": ">=20 dB"}
    )
    assert measured["measured"] and measured["false_alarm_unit"] == "hour"
    text = presentation.rates_sentence(measured)
    lo, hi = measured["false_alarm_ci95"]
    assert f"false alarms per hour (95% CI {lo:.2g}-{hi:.2g})" in text
    assert "codec wav, hum snr band >=20 dB" in text
    unmeasured = _rates.for_condition(
        "audio.enf", "edit_candidate", {"codec": "amr", "hum_snr_band": "<12 dB"}
    )
    assert presentation.rates_sentence(unmeasured).startswith("not measured for this condition: ")
    assert presentation.rates_sentence(None) == "no error rates were given with this finding"


def test_key_facts_from_audio_and_image_results(results):
    pairs = [(None, results[k]) for k in ("metadata", "jpeg", "container", "signal")]
    facts = {}
    for f in presentation.key_facts(pairs):
        facts.setdefault(f["label"], []).append(f)
    duration = named(results["container"], "duration")["value"]
    assert facts["Codec"][0]["value"].startswith("AAC") and "(aac)" in facts["Codec"][0]["value"]
    assert facts["Duration"][0]["value"] == f"{duration:g} s ({presentation.clock(duration)})"
    assert facts["Sample rate"][0]["value"] == "48000 Hz"
    assert any("Lavf" in f["value"] for f in facts["Encoder"])
    assert "2024-01-02T03:04:05" in facts["Creation dates (file tags)"][0]["value"]
    assert facts["Camera make"][0]["value"] == "Canon"
    assert facts["Camera model"][0]["value"] == "Canon EOS 5D Mark IV"
    assert facts["Captured (camera clock)"][0]["value"] == "2023:07:14 21:09:33 +02:00"
    assert facts["Dimensions"][0]["value"] == "320 × 320 px"
    assert facts["Camera make"][0]["sources"] == [f"image.metadata {image_metadata.VERSION}"]


def test_times_seek_the_player_and_regions_carry_their_box(results):
    silence = named(results["signal"], "silence_run")
    start, end = silence["at"]
    html = presentation.finding_html(silence)
    assert f'data-seek="{presentation.number(start)}"' in html
    assert f">{presentation.clock(start)}</a>" in html and f">{presentation.clock(end)}</a>" in html
    peak = named(results["ela"], "ela_peak_region")
    x, y, w, h = peak["region"]
    html = presentation.finding_html(peak)
    assert f'data-region="{x},{y},{w},{h}"' in html and f"{x},{y} {w}×{h} px" in html
    # a time with a figure links to it, so it leads somewhere without JavaScript
    plot = named(results["signal"], "waveform")
    html = presentation.finding_html(plot, artifact_url=lambda d: f"/figures/{d}/")
    assert f'href="/figures/{plot["artifact"][7:]}/" data-seek="0"' in html


def test_start_and_end_are_times_only_in_a_finding_about_time(results):
    span = named(results["structure"], "zip_archive")  # byte offsets [start, end)
    html = presentation.finding_html(span)
    assert "data-seek" not in html and f"<td>{span['value']['end']}</td>" in html
    hum_gap = {  # audio.enf's shape for a span without hum
        "name": "hum_level_change",
        "class": "indicator",
        "value": {"start": 12.5, "end": 14.25, "depth_db": 18.0},
        "unit": "s",
        "at": [12.5, 14.25],
    }
    html = presentation.finding_html(hum_gap)
    assert 'data-seek="12.5"' in html and 'data-seek="14.25"' in html and "18 dB" in html


def test_nested_values_are_small_tables_with_units(results):
    streams = named(results["container"], "streams")
    html = presentation.finding_html(streams)
    assert '<table class="rows">' in html and "<th>sample rate</th>" in html
    tables = named(results["jpeg"], "quantization_tables")
    html = presentation.finding_html(tables)
    assert html.count('<table class="grid">') == len(tables["value"])
    quality = named(results["jpeg"], "jpeg_quality")
    html = presentation.finding_html(quality)
    assert (
        f'<dd>{quality["value"]} IJG quality (1-100) <span class="uncertainty">± 0 IJG quality</span>' in html
    )
    coverage = named(results["signal"], "decoded_coverage")
    assert f"{coverage['value']['decoded_s']:g} s" in presentation.finding_html(coverage)
    # no Python reprs anywhere
    for finding in results["container"]["findings"]:
        assert "{'" not in presentation.finding_html(finding)


def test_analyzer_text_is_escaped():
    hostile = {
        "name": "tags",
        "class": "fact",
        "value": {"<b>Title</b>": "<script>alert(1)</script>", "list": ["<img src=x onerror=alert(1)>"]},
        "note": "read from the file: <i>x</i>",
        "at": [1, 2],
    }
    html = str(presentation.finding_html(hostile))
    assert "<script>" not in html and "<img" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;Title&lt;/b&gt;" in html


# ---------------------------------------------------------------- pages


@pytest.fixture
def in_process(monkeypatch):
    """Run analyzers in this process instead of a sandboxed child (the pipeline around it is the real one).

    The child interpreter costs seconds of imports per run on a busy machine;
    tests/test_analyses.py covers the sandbox itself.
    """
    from forensics import sandbox

    def run(module_name, path, params, ctx, **limits):
        return importlib.import_module(module_name).analyze(path, params, ctx), ctx

    monkeypatch.setattr(sandbox, "run", run)


def run_inline(client, evidence_id, analyzer: str) -> str:
    from forensics import services

    analysis_id = client.post(
        f"/api/v1/evidence/{evidence_id}/analyses/", {"analyzer": analyzer}, format="json"
    ).json()["id"]
    assert services.run_analysis(analysis_id, worker="inline") == "succeeded"
    return analysis_id


@pytest.fixture
def analysed_photo(as_alice, case_a, in_process):
    """A JPEG item with image.jpeg and image.metadata run on it."""
    from custody.models import Evidence

    data = recompress(jpeg_bytes(synthetic(3, 320), 60), 90, exif=camera_exif())
    evidence_id = upload(as_alice, case_a, data, name="scene.jpg").json()["id"]
    ids = [run_inline(as_alice, evidence_id, analyzer) for analyzer in ("image.jpeg", "image.metadata")]
    return Evidence.objects.get(pk=evidence_id), ids


def test_analysis_page_shows_findings_in_words_with_a_summary(client, alice, analysed_photo):
    evidence, (jpeg_id, _) = analysed_photo
    client.force_login(alice)
    page = client.get(f"/analyses/{jpeg_id}/").content.decode()
    summary = page[page.index('id="summary"') : page.index('id="findings"')]
    assert (
        "double compression" in summary
        and "detected " in summary
        and "When an indicator has fired" in summary
    )
    assert "JPEG quality" in summary  # key facts of this analysis
    assert 'class="finding finding-indicator fired" id="finding-' in page
    assert "Raw JSON" in page and "IJG quality (1-100)" in page
    assert "{'" not in page  # no Python dict reprs left


def test_evidence_page_summarises_every_completed_analysis(client, alice, analysed_photo):
    evidence, _ = analysed_photo
    client.force_login(alice)
    page = client.get(f"/evidence/{evidence.pk}/").content.decode()
    facts = page[page.index('id="key-facts"') :]
    facts = facts[: facts.index("</dl>")]
    for text in ("Canon EOS 5D Mark IV", "2023:07:14 21:09:33 +02:00", "320 × 320 px"):
        assert text in facts
    assert 'id="fired"' in page and f"/evidence/{evidence.pk}/examination/" in page


def test_examination_report_is_complete_and_logged_as_a_view(client, alice, analysed_photo):
    evidence, ids = analysed_photo
    client.force_login(alice)
    views_before = LogEntry.objects.filter(evidence=evidence, action="evidence.viewed").count()
    response = client.get(f"/evidence/{evidence.pk}/examination/")
    assert response.status_code == 200
    page = response.content.decode()
    assert LogEntry.objects.filter(evidence=evidence, action="evidence.viewed").count() == views_before + 1
    for text in (evidence.blob.sha256, evidence.blob.sha1, evidence.blob.md5, "scene.jpg"):
        assert text in page
    assert page.count('<section class="analysis"') == 2
    for analysis_id in ids:
        analysis = Analysis.objects.get(pk=analysis_id)
        assert analysis.envelope["signatures"][0]["sig"] in page
        assert analysis.statement_sha256 in page
    assert page.count("the signature verifies with this results key") == 2
    assert "openssl pkeyutl -verify" in page
    entries = LogEntry.objects.filter(evidence=evidence).order_by("index")
    assert page.count("leads to the checkpoint's root") == entries.count()
    assert "NOT lead" not in page
    for entry in entries:
        assert bytes(entry.leaf_hash).hex() in page
    assert "LIMITS" not in page and "Limits of the method" in page


def test_examination_report_signature_checks_with_the_commands_it_prints(
    client, alice, analysed_photo, tmp_path
):
    """What the report tells an auditor to run, run as printed: openssl says the signature verifies."""
    evidence, (analysis_id, _) = analysed_photo
    client.force_login(alice)
    page = client.get(f"/evidence/{evidence.pk}/examination/").content.decode()
    keyid = Analysis.objects.get(pk=analysis_id).envelope["signatures"][0]["keyid"]
    pem = html.unescape(re.search(rf'<pre class="pem" data-keyid="{keyid}">(.*?)</pre>', page, re.S)[1])
    commands = html.unescape(re.search(r'<pre class="commands">(.*?)</pre>', page, re.S)[1])
    assert f"/analyses/{analysis_id}/envelope/" in page
    (tmp_path / "results.pub.pem").write_text(pem)
    envelope = client.get(f"/analyses/{analysis_id}/envelope/")
    (tmp_path / "result.json").write_bytes(envelope.content)
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Signature Verified Successfully" in done.stdout
    assert Analysis.objects.get(pk=analysis_id).statement_sha256 in done.stdout


def test_examination_report_for_outsiders_and_from_other_sites(client, alice, dave, analysed_photo):
    evidence, _ = analysed_photo
    client.force_login(dave)
    assert client.get(f"/evidence/{evidence.pk}/examination/").status_code == 404
    client.force_login(alice)
    before = LogEntry.objects.count()
    page = client.get(f"/evidence/{evidence.pk}/examination/", HTTP_SEC_FETCH_SITE="cross-site")
    assert b'id="confirm-open"' in page.content
    assert LogEntry.objects.count() == before


def test_examination_report_shows_figures_but_not_overlays(client, alice, as_alice, case_a, in_process):
    data = jpeg_bytes(synthetic(5, 256), 85)
    evidence_id = upload(as_alice, case_a, data, name="ela.jpg").json()["id"]
    analysis_id = run_inline(as_alice, evidence_id, "image.ela")
    client.force_login(alice)
    page = client.get(f"/evidence/{evidence_id}/examination/").content.decode()
    predicate = presentation.result_of(Analysis.objects.get(pk=analysis_id))
    overlays = presentation.overlay_digests(predicate)
    figures = [
        f["artifact"][7:]
        for f in predicate["findings"]
        if f.get("artifact") and f["artifact"][7:] not in overlays
    ]
    assert figures
    for digest in figures:
        assert f'<img src="/analyses/{analysis_id}/artifacts/{digest}/"' in page
    for digest in overlays:
        assert f'<img src="/analyses/{analysis_id}/artifacts/{digest}/"' not in page


def test_item_without_analyses_says_so(client, alice, evidence_a):
    client.force_login(alice)
    assert b'id="summary-empty"' in client.get(f"/evidence/{evidence_a.pk}/").content
    page = client.get(f"/evidence/{evidence_a.pk}/examination/").content
    assert b'id="no-analyses"' in page and evidence_a.blob.sha256.encode() in page
