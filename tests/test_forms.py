"""Analysis forms made from each analyzer's PARAMETERS, and "run every applicable analyzer" (issue 13, part 4)."""

from __future__ import annotations

import io
import json
import re
import uuid
import wave

import pytest

from custody.models import Evidence, LogEntry
from forensics import analyzers, services
from forensics.forms import NOT_LISTED
from forensics.models import Analysis

from .conftest import upload


def wav_bytes(seconds: float = 0.25, rate: int = 8000, tone: int = 1) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes((i * tone) % 256 for i in range(int(seconds * rate) * 2)))
    return buf.getvalue()


@pytest.fixture
def audio(as_alice, as_bob, case_a, case_b):
    """Two recordings and a text note in case A, a recording in case B."""
    ids = {
        "clip": upload(as_alice, case_a, wav_bytes(tone=1), name="clip.wav").json()["id"],
        "meeting": upload(as_alice, case_a, wav_bytes(tone=3), name="meeting.wav").json()["id"],
        "note": upload(as_alice, case_a, b"plain words, not audio\n", name="note.txt").json()["id"],
        "elsewhere": upload(as_bob, case_b, wav_bytes(tone=5), name="elsewhere.wav").json()["id"],
    }
    return ids


@pytest.fixture
def web(client, alice):
    client.force_login(alice)
    return client


def select_options(html: str, name: str) -> list[tuple[str, str]]:
    match = re.search(rf'<select name="{re.escape(name)}"[^>]*>(.*?)</select>', html, re.S)
    assert match, f"no select {name}"
    return re.findall(r'<option value="([^"]*)"[^>]*>([^<]*)</option>', match.group(1))


def input_tag(html: str, name: str) -> str:
    match = re.search(rf'<input [^>]*name="{re.escape(name)}"[^>]*>', html)
    assert match, f"no input {name}"
    return match.group(0)


def field_block(html: str, name: str) -> str:
    """From the field's label to its input: label, help, errors and the input with its value."""
    match = re.search(
        rf'<label for="id_{re.escape(name)}".*?<input [^>]*name="{re.escape(name)}"[^>]*>', html, re.S
    )
    assert match, f"no field {name}"
    return match.group(0)


def requested_entries() -> int:
    return LogEntry.objects.filter(action="analysis.requested").count()


def accepting(media_type: str) -> set[str]:
    return {m.NAME for m in analyzers.registry().values() if analyzers.accepts(m, media_type)}


# --- the forms ----------------------------------------------------------------


def test_evidence_page_has_a_form_per_analyzer_that_reads_the_item(web, audio):
    html = web.get(f"/evidence/{audio['clip']}/").content.decode()
    media_type = Evidence.objects.get(pk=audio["clip"]).media_type
    assert media_type.startswith("audio/")
    shown = set(re.findall(r'<input type="hidden" name="analyzer" value="([^"]+)"', html))
    assert shown == accepting(media_type) and "image.ela" not in shown and "audio.signal" in shown
    # Numbers carry their range and default; the help text is shown.
    silence = input_tag(html, "audio_signal-silence_min_ms")
    assert 'type="number"' in silence and 'value="20"' in silence
    assert 'min="1"' in silence and 'max="600000"' in silence
    assert "shortest run of exact zeros reported, in milliseconds (1 to 600000; default 20)" in html
    assert 'step="any"' in input_tag(html, "audio_signal-clip_level")
    assert "checked" in input_tag(html, "audio_signal-images")  # a bool defaulting to true
    assert [v for v, _ in select_options(html, "audio_enf-grid")] == ["auto", "50", "60"]
    # Each analyzer in a <details> with its description, the run-all button above them.
    assert '<details class="analyzer" id="analyzer-audio_signal">' in html
    assert analyzers.get("audio.signal").DESCRIPTION[:60] in html
    assert 'id="run-all"' in html and "<script>" not in html  # no inline script (CSP)


def test_reference_lists_only_the_other_audio_items_of_the_same_case(web, audio):
    html = web.get(f"/evidence/{audio['clip']}/").content.decode()
    options = select_options(html, "audio_context-reference")
    values = [v for v, _ in options if v]
    assert values == [audio["meeting"]]  # not itself, not the text note, not case B's recording
    label = dict(options)[audio["meeting"]]
    sha = Evidence.objects.get(pk=audio["meeting"]).blob_id
    assert label.startswith("meeting.wav (audio/") and f"sha256 {sha[:12]}" in label


def test_valid_form_requests_the_analysis_with_those_parameters(web, audio):
    response = web.post(
        f"/evidence/{audio['clip']}/analyses/",
        {
            "analyzer": "audio.signal",
            "audio_signal-silence_min_ms": "50",
            "audio_signal-clip_level": "0.99",
            "audio_signal-clip_min_samples": "",  # left empty: its default
            "audio_signal-bandwidth_floor_db": "60",
            # images unchecked: false
        },
    )
    analysis = Analysis.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/analyses/{analysis.pk}/"
    assert analysis.parameters == {
        "silence_min_ms": 50,
        "clip_level": 0.99,
        "clip_min_samples": 3,
        "bandwidth_floor_db": 60.0,
        "images": False,
    }


def test_reference_chosen_from_the_list_is_recorded(web, audio):
    response = web.post(
        f"/evidence/{audio['clip']}/analyses/",
        {"analyzer": "audio.context", "audio_context-reference": audio["meeting"]},
    )
    assert response.status_code == 302
    assert Analysis.objects.get().parameters == {"reference": audio["meeting"]}


def test_bad_values_are_shown_next_to_their_fields_and_kept(web, audio):
    before = requested_entries()
    response = web.post(
        f"/evidence/{audio['clip']}/analyses/",
        {
            "analyzer": "audio.signal",
            "audio_signal-silence_min_ms": "0",
            "audio_signal-clip_level": "loud",
            "audio_signal-bandwidth_floor_db": "75",
        },
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "Nothing was requested" in html
    # Each error sits in the field's own block, and every typed value comes back.
    silence = field_block(html, "audio_signal-silence_min_ms")
    assert "greater than or equal to 1" in silence and 'value="0"' in silence
    clip = field_block(html, "audio_signal-clip_level")
    assert "Enter a number" in clip and 'value="loud"' in clip
    assert 'value="75"' in input_tag(html, "audio_signal-bandwidth_floor_db")
    assert '<details class="analyzer" id="analyzer-audio_signal" open>' in html
    assert Analysis.objects.count() == 0 and requested_entries() == before


def test_a_missing_reference_is_required(web, audio):
    response = web.post(f"/evidence/{audio['clip']}/analyses/", {"analyzer": "audio.context"})
    assert response.status_code == 400 and "This field is required" in response.content.decode()
    assert Analysis.objects.count() == 0


def _without_tokens(html: str) -> str:
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)


def test_an_item_of_another_case_is_refused_exactly_like_an_id_that_does_not_exist(web, audio):
    """Posted by hand: the answer, and the log, are the same whether the id is real or not."""
    answers = []
    for reference in (audio["elsewhere"], str(uuid.uuid4()), audio["clip"], audio["note"], "not-an-id"):
        entries = LogEntry.objects.count()
        response = web.post(
            f"/evidence/{audio['clip']}/analyses/",
            {"analyzer": "audio.context", "audio_context-reference": reference},
        )
        assert response.status_code == 400
        assert LogEntry.objects.count() == entries  # no refusal entry for either: nothing to tell apart
        html = response.content.decode()
        assert NOT_LISTED in html and f'<option value="{reference}" selected>' not in html
        answers.append(_without_tokens(html))
    assert len(set(answers)) == 1
    assert Analysis.objects.count() == 0


def test_service_refuses_a_reference_of_the_wrong_type_or_the_item_itself(as_alice, audio):
    def post(reference):
        return as_alice.post(
            f"/api/v1/evidence/{audio['clip']}/analyses/",
            {"analyzer": "audio.context", "parameters": {"reference": reference}},
            format="json",
        )

    itself = post(audio["clip"])
    assert itself.status_code == 400 and "another evidence item in this case" in itself.json()["detail"]
    note = post(audio["note"])
    assert note.status_code == 400 and "audio.context reads audio/*" in note.json()["detail"]


def test_analyzer_that_does_not_read_the_item_is_refused(web, audio):
    response = web.post(f"/evidence/{audio['note']}/analyses/", {"analyzer": "audio.signal"}, follow=True)
    assert "audio.signal does not read text/plain" in response.content.decode()
    assert Analysis.objects.count() == 0


def test_auditor_sees_no_forms_and_cannot_post(client, carol, audio):
    client.force_login(carol)
    html = client.get(f"/evidence/{audio['clip']}/").content.decode()
    assert 'id="run-all"' not in html and "audio_signal-silence_min_ms" not in html
    assert (
        client.post(f"/evidence/{audio['clip']}/analyses/", {"analyzer": "audio.signal"}).status_code == 403
    )
    assert client.post(f"/evidence/{audio['clip']}/analyses/all/").status_code == 403


def test_case_page_forms_run_one_analyzer_on_every_item_it_reads(web, audio, case_a):
    html = web.get(f"/cases/{case_a.pk}/").content.decode()
    assert 'id="case-run-all"' in html and "file_entropy-block_size" in html
    response = web.post(
        f"/cases/{case_a.pk}/analyses/", {"analyzer": "file.entropy", "file_entropy-block_size": "4096"}
    )
    assert response.status_code == 302
    rows = Analysis.objects.filter(analyzer="file.entropy")
    assert rows.count() == 3 and {a.parameters["block_size"] for a in rows} == {4096}
    bad = web.post(
        f"/cases/{case_a.pk}/analyses/", {"analyzer": "file.entropy", "file_entropy-block_size": "1"}
    )
    assert bad.status_code == 400 and "greater than or equal to 1024" in bad.content.decode()
    # With a reference: every other recording against it, not the reference against itself.
    web.post(
        f"/cases/{case_a.pk}/analyses/",
        {"analyzer": "audio.context", "audio_context-reference": audio["meeting"]},
    )
    assert [str(a.evidence_id) for a in Analysis.objects.filter(analyzer="audio.context")] == [audio["clip"]]


# --- run every applicable analyzer ------------------------------------------------


def test_run_all_on_an_item_requests_each_applicable_analyzer_with_defaults(web, audio):
    clip = Evidence.objects.get(pk=audio["clip"])
    response = web.post(f"/evidence/{clip.pk}/analyses/all/", follow=True)
    expected = accepting(clip.media_type) - {"audio.context"}
    rows = Analysis.objects.filter(evidence=clip)
    assert {a.analyzer for a in rows} == expected
    for a in rows:
        assert a.parameters == {n: r["default"] for n, r in analyzers.get(a.analyzer).PARAMETERS.items()}
        assert a.status == "queued"
    assert requested_entries() == len(expected)  # one log entry per analysis
    html = response.content.decode()
    assert f"{len(expected)} queued: " in html
    assert "Skipped audio.context on clip.wav: needs reference (no default)" in html
    # The page lists them, each status cell watched by the script.
    assert html.count('data-field="status" data-status="queued"') == len(expected)
    assert 'data-status-url="/evidence/' in html


def test_run_all_again_skips_what_is_queued_running_or_done_but_not_what_failed(web, audio):
    clip = audio["clip"]
    web.post(f"/evidence/{clip}/analyses/all/")
    first = {a.analyzer: a for a in Analysis.objects.all()}
    # One succeeds, one fails, one runs; the rest stay queued.
    assert services.run_analysis(first["file.hashes"].pk, worker="inline") == "succeeded"
    failing = services.claim(first["file.type"].pk, worker="inline")
    services.fail(failing, "disk on fire")
    services.claim(first["file.entropy"].pk, worker="inline")
    # An earlier run with other parameters is not the same run.
    Analysis.objects.filter(pk=first["audio.enf"].pk).update(parameters={"grid": "50"})

    response = web.post(f"/evidence/{clip}/analyses/all/", follow=True)
    again = Analysis.objects.exclude(pk__in=[a.pk for a in first.values()])
    assert sorted(a.analyzer for a in again) == ["audio.enf", "file.type"]
    html = response.content.decode()
    assert "2 queued: audio.enf, file.type." in html
    assert "Skipped file.hashes on clip.wav: already succeeded with version" in html
    assert "Skipped file.entropy on clip.wav: already running" in html


def test_run_all_api_lists_requested_and_skipped(as_alice, as_carol, as_dave, audio, case_a):
    response = as_alice.post(f"/api/v1/evidence/{audio['note']}/analyses/all/")
    assert response.status_code == 202
    body = response.json()
    assert {a["analyzer"] for a in body["requested"]} == accepting("text/plain")
    assert body["skipped"] == []
    again = as_alice.post(f"/api/v1/evidence/{audio['note']}/analyses/all/").json()
    assert again["requested"] == []
    assert {s["kind"] for s in again["skipped"]} == {"already"}
    assert {s["analysis"] for s in again["skipped"]} == {a["id"] for a in body["requested"]}

    case = as_alice.post(f"/api/v1/cases/{case_a.pk}/analyses/all/").json()
    assert {a["evidence"] for a in case["requested"]} == {audio["clip"], audio["meeting"]}
    needs = [s for s in case["skipped"] if s["kind"] == "needs_parameter"]
    assert sorted(s["name"] for s in needs) == ["clip.wav", "meeting.wav"]
    assert {s["analyzer"] for s in needs} == {"audio.context"}

    assert as_carol.post(f"/api/v1/evidence/{audio['clip']}/analyses/all/").status_code == 403
    real = as_dave.post(f"/api/v1/evidence/{audio['clip']}/analyses/all/")
    random = as_dave.post(f"/api/v1/evidence/{uuid.uuid4()}/analyses/all/")
    assert real.status_code == random.status_code == 404 and real.json() == random.json()


def test_run_all_on_a_case_with_no_items_says_so(as_alice, alice):
    from custody import services as custody_services

    empty = custody_services.create_case(actor=alice, reference="E-1", title="Empty")
    response = as_alice.post(f"/api/v1/cases/{empty.pk}/analyses/all/")
    assert response.status_code == 400 and "no evidence items" in response.json()["detail"]


def test_run_all_case_page_button(web, audio, case_a):
    response = web.post(f"/cases/{case_a.pk}/analyses/all/", follow=True)
    html = response.content.decode()
    assert "Skipped audio.context on clip.wav, meeting.wav: it needs a parameter with no default" in html
    assert Analysis.objects.filter(evidence_id=audio["note"]).count() == len(accepting("text/plain"))
    assert (
        json.loads(web.get(f"/cases/{case_a.pk}/status.json").content)["pending"] == Analysis.objects.count()
    )
