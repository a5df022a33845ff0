"""What a published result reveals (forensics/publication.py): the public statement only.

A real audio.context result names the reference recording by evidence id and
SHA-256; published, the public API and the public page must name neither, nor
any evidence id, analysis id or user name, unless the publisher discloses the
reference's SHA-256. The public statement is checked by hand with openssl.
"""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from rest_framework.test import APIClient

from custody import signing
from custody.models import LogEntry
from forensics import publication, services
from forensics.models import Analysis

from .conftest import upload
from .test_analyses import _wav, meeting_and_clip, request, statement_of
from .test_auditor_by_hand import run_block


def _recordings():
    """The meeting and clip of the pipeline test (tests/test_analyses.py), as WAV bytes."""
    reference, clip = meeting_and_clip()
    return _wav(reference), _wav(clip)


@pytest.fixture
def context_result(as_alice, case_a):
    """A succeeded audio.context analysis of a clip against a reference of the same case."""
    reference, clip = _recordings()
    ref = upload(as_alice, case_a, reference, name="meeting.wav").json()
    item = upload(as_alice, case_a, clip, name="leak.wav").json()
    analysis_id = request(as_alice, item["id"], "audio.context", reference=ref["id"]).json()["id"]
    assert services.run_analysis(analysis_id, worker="inline") == "succeeded", Analysis.objects.get(
        pk=analysis_id
    ).error
    internal = statement_of(as_alice.get(f"/api/v1/analyses/{analysis_id}/").json())
    # The internal result does name the reference, by id and SHA-256: what must not go public.
    assert internal["predicate"]["references"]["reference"] == {"id": ref["id"], "sha256": ref["sha256"]}
    assert any(
        f.get("value", {}).get("evidence") == ref["id"]
        for f in internal["predicate"]["findings"]
        if isinstance(f.get("value"), dict)
    )
    return {
        "analysis": analysis_id,
        "clip": item,
        "reference": ref,
        "internal": internal,
        "case": case_a,
    }


def _secrets(r) -> dict[str, str]:
    case = r["case"]
    return {
        "reference id": r["reference"]["id"],
        "reference sha256": r["reference"]["sha256"],
        "clip evidence id": r["clip"]["id"],
        "analysis id": r["analysis"],
        "case id": str(case.pk),
        "case reference": case.reference,
        "case title": case.title,
        "user name": "alice",
        "reference file name": "meeting.wav",
        "clip file name": "leak.wav",
    }


def _public(sha256: str):
    client = APIClient()
    body = client.get("/api/v1/public/results/", {"sha256": sha256})
    page = client.get("/verify/", {"sha256": sha256})
    assert body.status_code == 200 and page.status_code == 200
    return body.json(), page.content.decode()


def _payload(result) -> dict:
    return json.loads(base64.b64decode(result["envelope"]["payload"]))


def test_published_context_result_names_no_ids_no_reference_no_user(as_alice, context_result):
    r = context_result
    response = as_alice.post(f"/api/v1/analyses/{r['analysis']}/publish/")
    assert response.status_code == 200 and response.json()["published"] is True
    body, page = _public(r["clip"]["sha256"])
    assert len(body["results"]) == 1
    statement = _payload(body["results"][0])
    # Searched in the JSON, in the decoded signed statement and in the page.
    texts = {"API JSON": json.dumps(body), "public statement": json.dumps(statement), "public page": page}
    for where, text in texts.items():
        for what, secret in _secrets(r).items():
            assert secret not in text, f"the {where} reveals the {what}"

    p = statement["predicate"]
    assert statement["predicateType"] == "urn:custody-server:published-result:v1"
    assert statement["subject"] == [{"name": "evidence", "digest": {"sha256": r["clip"]["sha256"]}}]
    assert p["references"] == {"reference": {"label": "reference recording"}}
    assert p["disclosed_references"] is False and "reference" not in p["parameters"]
    segments = [f for f in p["findings"] if f["name"] == "segment"]
    assert len(segments) == 2 and all(s["value"]["evidence"] == "reference recording" for s in segments)
    assert [round(s["value"]["reference_at"][0]) for s in segments] == [10, 30]  # the findings survive
    summary = next(f for f in p["findings"] if f["name"] == "alignment_summary")
    assert summary["value"]["reference"] == {"evidence": "reference recording"}
    # The link to the full result, for whoever is given it later.
    internal_payload = base64.b64decode(
        as_alice.get(f"/api/v1/analyses/{r['analysis']}/").json()["envelope"]["payload"]
    )
    assert p["internal_statement"]["digest"]["sha256"] == hashlib.sha256(internal_payload).hexdigest()
    # The page shows the findings and the label, rendered on the server.
    assert "reference recording (not identified in the public result)" in page
    assert 'class="findings"' in page and "segment" in page


def test_the_publication_entry_names_only_what_the_readme_says(as_alice, context_result):
    """The public log leaf: no case, no client, no evidence id, no reference, no analysis id, no publisher."""
    r = context_result
    as_alice.post(f"/api/v1/analyses/{r['analysis']}/publish/")
    body, _ = _public(r["clip"]["sha256"])
    entry = json.loads(base64.b64decode(body["results"][0]["log"]["leaf"]))
    leaf = json.dumps(entry)
    for what in (
        "reference id",
        "reference sha256",
        "clip evidence id",
        "case id",
        "case reference",
        "analysis id",
    ):
        assert _secrets(r)[what] not in leaf, what
    assert "alice" not in leaf
    assert entry["action"] == "result.announced" and entry["actor"] is None
    assert entry["case"] is None and entry["client"] is None
    assert entry["evidence"] == {"sha256": r["clip"]["sha256"]}
    assert set(entry["details"]) == {
        "published_entry",
        "analyzer",
        "public_statement_sha256",
        "public_keyid",
        "public_sig",
    }
    # Who published which analysis is the case's own entry, just before (not public).
    record = LogEntry.objects.get(index=entry["details"]["published_entry"]).decoded
    assert record["action"] == "result.published" and record["actor"]["username"] == "alice"
    assert record["details"]["analysis"] == r["analysis"] and "public" not in record


def test_disclosing_the_reference_publishes_its_sha256_never_its_id(as_alice, context_result):
    r = context_result
    response = as_alice.post(
        f"/api/v1/analyses/{r['analysis']}/publish/", {"disclose_references": True}, format="json"
    )
    assert response.status_code == 200
    body, page = _public(r["clip"]["sha256"])
    p = _payload(body["results"][0])["predicate"]
    assert p["disclosed_references"] is True
    assert p["references"] == {
        "reference": {"label": "reference recording", "digest": {"sha256": r["reference"]["sha256"]}}
    }
    summary = next(f for f in p["findings"] if f["name"] == "alignment_summary")
    assert summary["value"]["reference"] == {
        "evidence": "reference recording",
        "sha256": r["reference"]["sha256"],
    }
    assert r["reference"]["sha256"] in page
    for what in ("reference id", "clip evidence id", "analysis id", "user name", "case reference"):
        assert _secrets(r)[what] not in json.dumps(body) + page, what
    # The custody record of the publication is the case's entry just before the public announcement.
    entry = LogEntry.objects.get(index=Analysis.objects.get(pk=r["analysis"]).publish_log_index - 1).decoded
    assert entry["action"] == "result.published" and entry["details"]["disclosed_references"] is True


def test_public_statement_verifies_with_openssl_and_is_named_by_the_public_entry(
    as_alice, context_result, tmp_path
):
    r = context_result
    as_alice.post(f"/api/v1/analyses/{r['analysis']}/publish/")
    body, _ = _public(r["clip"]["sha256"])
    (tmp_path / "results.json").write_text(json.dumps(body))
    (tmp_path / "keys.json").write_text(json.dumps(APIClient().get("/api/v1/keys/").json()))
    result = run_block("published", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Signature Verified Successfully" in result.stdout
    assert f"published in log entry {body['results'][0]['log']['index']}" in result.stdout
    assert r["clip"]["sha256"] in result.stdout

    # A changed finding: openssl refuses.
    envelope = body["results"][0]["envelope"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["findings"][1]["note"] = "nothing removed"
    envelope["payload"] = base64.b64encode(signing.canonical_json(statement, allow_floats=True)).decode()
    (tmp_path / "results.json").write_text(json.dumps(body))
    tampered = run_block("published", tmp_path)
    assert tampered.returncode != 0 and "Signature Verified Successfully" not in tampered.stdout


def test_web_form_offers_disclosure_only_when_the_result_read_another_item(
    client, alice, as_alice, context_result, evidence_a
):
    r = context_result
    client.force_login(alice)
    page = client.get(f"/analyses/{r['analysis']}/").content.decode()
    assert 'id="disclose-references"' in page
    plain = request(as_alice, evidence_a.pk).json()["id"]
    services.run_analysis(plain, worker="inline")
    page = client.get(f"/analyses/{plain}/").content.decode()
    assert 'id="publish"' in page and 'id="disclose-references"' not in page
    response = client.post(f"/analyses/{r['analysis']}/publish/", {"disclose_references": "1"})
    assert response.status_code == 302
    # The custody record of the publication is the case's entry just before the public announcement.
    entry = LogEntry.objects.get(index=Analysis.objects.get(pk=r["analysis"]).publish_log_index - 1).decoded
    assert entry["action"] == "result.published" and entry["details"]["disclosed_references"] is True


def test_a_result_with_no_references_publishes_the_same_shape(as_alice, evidence_a):
    analysis_id = request(as_alice, evidence_a.pk).json()["id"]
    services.run_analysis(analysis_id, worker="inline")
    as_alice.post(f"/api/v1/analyses/{analysis_id}/publish/")
    body, page = _public(evidence_a.sha256)
    p = _payload(body["results"][0])["predicate"]
    assert p["references"] == {} and p["parameters"] == {
        "delay": 0.0,
        "fail": False,
        "hog_mb": 0,
        "kill_self": False,
    }
    assert [f["name"] for f in p["findings"]] == ["sha256_recomputed", "digest_file", "size"]
    assert body["results"][0]["artifacts"][0]["sha256"] == p["artifacts"][0]["digest"]["sha256"]
    assert analysis_id not in json.dumps(body) + page and str(evidence_a.pk) not in json.dumps(body) + page
    # Publishing again changes nothing (one entry, the same statement).
    as_alice.post(f"/api/v1/analyses/{analysis_id}/publish/", {"disclose_references": True}, format="json")
    assert _public(evidence_a.sha256)[0]["results"] == body["results"]


def test_publication_fails_closed_when_an_id_would_slip_through(as_alice, context_result, monkeypatch):
    """A finding shape the scrubber does not know (here: no scrubbing at all) is refused, nothing published."""
    r = context_result
    monkeypatch.setattr(publication, "_scrub", lambda value, replace, hidden: value)
    response = as_alice.post(f"/api/v1/analyses/{r['analysis']}/publish/")
    assert response.status_code == 409 and "identifier" in response.json()["detail"]
    assert Analysis.objects.get(pk=r["analysis"]).published_at is None
    assert _public(r["clip"]["sha256"])[0]["results"] == []


def test_the_log_still_verifies_after_publishing(as_alice, context_result):
    """The publication entry, with its public statement, projects and audits like any other."""
    from .test_verify_log import run_verify

    response = as_alice.post(
        f"/api/v1/analyses/{context_result['analysis']}/publish/",
        {"disclose_references": True},
        format="json",
    )
    assert response.status_code == 200 and response.json()["published"] is True
    code, out = run_verify()
    assert code == 0, out


def test_the_export_bundle_holds_both_statements_linked(as_alice, context_result):
    """For a court: the full result and what the public saw, linked by the internal statement's digest."""
    import io
    import zipfile

    r = context_result
    as_alice.post(f"/api/v1/analyses/{r['analysis']}/publish/")
    response = as_alice.get(f"/api/v1/evidence/{r['clip']['id']}/export/")
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as z:
        folder = next(n for n in z.namelist() if n.endswith(f"analyses/{r['analysis']}/result.dsse.json"))
        internal = json.loads(z.read(folder))
        public = json.loads(z.read(folder.replace("result.dsse.json", "published.dsse.json")))
    internal_payload = base64.b64decode(internal["payload"])
    public_statement = json.loads(base64.b64decode(public["payload"]))
    linked = public_statement["predicate"]["internal_statement"]["digest"]["sha256"]
    assert linked == hashlib.sha256(internal_payload).hexdigest()
