"""The analysis pipeline: requests, real workers, signed results, crash safety, publishing."""

import base64
import hashlib
import json
import os
import stat
import uuid

import pytest
from rest_framework.test import APIClient

from custody import keys, signing
from custody.models import LogEntry
from custody.storage import blob_store
from forensics import services
from forensics.models import Analysis

from .conftest import api_client_for, kill_worker, start_worker, upload
from .test_worker import wait_for


def request(client, evidence_id, analyzer="test.digest", **parameters):
    return client.post(
        f"/api/v1/evidence/{evidence_id}/analyses/",
        {"analyzer": analyzer, "parameters": parameters},
        format="json",
    )


def statement_of(analysis_json) -> dict:
    return json.loads(base64.b64decode(analysis_json["envelope"]["payload"]))


def actions_for(analysis_id) -> list[str]:
    return [
        e.action
        for e in LogEntry.objects.filter(action__startswith="analysis.").order_by("index")
        if json.loads(bytes(e.leaf))["details"].get("analysis") == str(analysis_id)
    ]


def test_analyzer_registry_lists_name_version_accepts_description_limits(as_carol):
    body = as_carol.get("/api/v1/analyzers/").json()
    digest = next(a for a in body if a["name"] == "test.digest")
    assert digest["version"] == "1.1.0" and digest["accepts"] == ["*/*"]
    assert digest["description"] and digest["limits"] and "delay" in digest["parameters"]


def test_request_run_and_signed_result(as_alice, evidence_a):
    response = request(as_alice, evidence_a.pk)
    assert response.status_code == 202, response.content
    analysis_id = response.json()["id"]
    assert response.json()["status"] == "queued"
    assert services.run_analysis(analysis_id, worker="inline") == "succeeded"

    body = as_alice.get(f"/api/v1/analyses/{analysis_id}/").json()
    assert body["status"] == "succeeded" and body["attempts"] == 1
    payload, keyid = signing.dsse_verify(body["envelope"], keys.public_keys("results"))
    statement = json.loads(payload)
    assert statement["subject"] == [
        {"name": f"evidence/{evidence_a.pk}", "digest": {"sha256": evidence_a.sha256}}
    ]
    p = statement["predicate"]
    assert p["analyzer"] == {"name": "test.digest", "version": "1.1.0"}
    assert p["parameters"] == {"delay": 0.0, "fail": False, "hog_mb": 0, "kill_self": False}
    assert p["libraries"]["python"] and p["started_at"] <= p["finished_at"]
    assert p["limits"] == ["for tests of the pipeline; says nothing about the file's authenticity"]
    assert {f["class"] for f in p["findings"]} <= {"fact", "measurement", "indicator", "visual"}
    assert p["findings"][0]["value"] == evidence_a.sha256
    artifact = p["artifacts"][0]
    assert artifact["digest"]["sha256"] == hashlib.sha256(evidence_a.sha256.encode()).hexdigest()
    assert p["findings"][1]["artifact"] == f"sha256:{artifact['digest']['sha256']}"
    assert body["artifacts"][0]["sha256"] == artifact["digest"]["sha256"]
    content = as_alice.get(f"/api/v1/analyses/{analysis_id}/artifacts/{artifact['digest']['sha256']}/")
    assert b"".join(content.streaming_content) == evidence_a.sha256.encode()
    assert body["statement_sha256"] == hashlib.sha256(payload).hexdigest()
    assert actions_for(analysis_id) == ["analysis.requested", "analysis.started", "analysis.completed"]
    completed = json.loads(bytes(LogEntry.objects.get(index=body["result_log_index"]).leaf))
    assert completed["details"]["statement_sha256"] == body["statement_sha256"]


def test_same_analyzer_on_same_file_gives_identical_findings(as_alice, evidence_a):
    ids = [request(as_alice, evidence_a.pk).json()["id"] for _ in range(2)]
    for analysis_id in ids:
        services.run_analysis(analysis_id, worker="inline")
    first, second = (statement_of(as_alice.get(f"/api/v1/analyses/{i}/").json())["predicate"] for i in ids)
    assert first["findings"] == second["findings"] and first["artifacts"] == second["artifacts"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"analyzer": "no.such"}, "unknown analyzer"),
        ({"analyzer": "test.digest", "parameters": {"speed": 1}}, "unknown parameter"),
        ({"analyzer": "test.digest", "parameters": {"delay": "slow"}}, "must be of type float"),
        ({"analyzer": "test.digest", "parameters": {"delay": 1000}}, "between"),
        ({"analyzer": "test.digest", "parameters": [1]}, "JSON object"),
    ],
)
def test_bad_requests_are_400_with_a_clear_message(as_alice, evidence_a, body, message):
    response = as_alice.post(f"/api/v1/evidence/{evidence_a.pk}/analyses/", body, format="json")
    assert response.status_code == 400 and message in response.json()["detail"]
    assert not Analysis.objects.exists()


def test_malformed_json_is_400(as_alice, evidence_a):
    response = as_alice.post(
        f"/api/v1/evidence/{evidence_a.pk}/analyses/", "{oops", content_type="application/json"
    )
    assert response.status_code == 400 and "detail" in response.json()


def test_auditor_cannot_request_and_outsider_gets_404(as_carol, as_dave, as_alice, evidence_a):
    assert request(as_carol, evidence_a.pk).status_code == 403
    assert request(as_dave, evidence_a.pk).status_code == 404
    analysis_id = request(as_alice, evidence_a.pk).json()["id"]
    assert as_dave.get(f"/api/v1/analyses/{analysis_id}/").status_code == 404
    assert as_dave.post(f"/api/v1/analyses/{analysis_id}/publish/").status_code == 404


def test_refused_input_fails_with_a_recorded_reason(as_alice, evidence_a):
    analysis_id = request(as_alice, evidence_a.pk, fail=True).json()["id"]
    assert services.run_analysis(analysis_id, worker="inline") == "failed"
    body = as_alice.get(f"/api/v1/analyses/{analysis_id}/").json()
    assert body["status"] == "failed" and body["error"] == "the input was refused on purpose"
    assert body["envelope"] is None
    assert actions_for(analysis_id)[-1] == "analysis.failed"


def test_changed_bytes_are_not_analysed(as_alice, evidence_a):
    path = blob_store().path(evidence_a.sha256)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    with open(path, "ab") as f:
        f.write(b"!")
    analysis_id = request(as_alice, evidence_a.pk).json()["id"]
    services.run_analysis(analysis_id, worker="inline")
    assert "no longer match" in Analysis.objects.get(pk=analysis_id).error


def test_a_claimed_analysis_is_not_run_twice(as_alice, evidence_a):
    analysis_id = request(as_alice, evidence_a.pk).json()["id"]
    assert services.run_analysis(analysis_id, worker="one") == "succeeded"
    assert services.run_analysis(analysis_id, worker="two") == "skipped"
    assert actions_for(analysis_id).count("analysis.completed") == 1


def test_a_missed_heartbeat_does_not_stop_the_next_ones(monkeypatch):
    """A locked or restarting database costs one beat; the thread goes on, so a live run never looks dead."""
    import threading
    import types

    from django.db import OperationalError

    beats, failures = threading.Event(), []

    def flaky(analysis):
        if not failures:
            failures.append(analysis.id)
            raise OperationalError("database is locked")
        beats.set()
        return True

    monkeypatch.setattr(services, "heartbeat", flaky)
    beat = services._Heartbeat(types.SimpleNamespace(id=uuid.uuid4()))
    beat.interval = 0.02
    beat.start()
    try:
        assert beats.wait(5), "no heartbeat after the failed one"
    finally:
        beat.stop()
    assert len(failures) == 1 and not beat._thread.is_alive()


def test_case_wide_request(as_alice, case_a, evidence_a):
    upload(as_alice, case_a, b"second item")
    response = as_alice.post(
        f"/api/v1/cases/{case_a.pk}/analyses/", {"analyzer": "test.digest"}, format="json"
    )
    assert response.status_code == 202 and len(response.json()) == 2


def test_publish_makes_the_result_public_by_file_hash_only(as_alice, evidence_a, case_a):
    public = APIClient()
    analysis_id = request(as_alice, evidence_a.pk).json()["id"]
    other = request(as_alice, evidence_a.pk).json()["id"]
    services.run_analysis(analysis_id, worker="inline")
    services.run_analysis(other, worker="inline")
    before = public.get("/api/v1/public/results/", {"sha256": evidence_a.sha256}).json()
    nothing = public.get("/api/v1/public/results/", {"sha256": "0" * 64}).json()
    assert before["results"] == [] and nothing["results"] == []  # unpublished looks like absent

    response = as_alice.post(f"/api/v1/analyses/{analysis_id}/publish/")
    assert response.status_code == 200 and response.json()["published"] is True
    body = public.get("/api/v1/public/results/", {"sha256": evidence_a.sha256.upper()}).json()
    # One result (the published one), and no analysis id in what the public sees.
    assert len(body["results"]) == 1 and analysis_id not in json.dumps(body)
    result = body["results"][0]
    payload, _ = signing.dsse_verify(
        result["envelope"],
        {
            k["keyid"]: signing.load_public_key_pem(k["public_key_pem"])
            for k in public.get("/api/v1/keys/").json()["keys"]
        },
    )
    assert json.loads(payload)["subject"][0]["digest"]["sha256"] == evidence_a.sha256
    assert json.loads(payload)["predicateType"] == "urn:custody-server:published-result:v1"
    # The publication is a public log entry, provably in the signed tree.
    from .test_log_api import parse_and_verify_checkpoint, verify_inclusion

    leaf = base64.b64decode(result["log"]["leaf"])
    entry = json.loads(leaf)
    assert entry["action"] == "result.announced" and entry["public"] is True
    assert (
        entry["case"] is None
        and entry["evidence"] == {"sha256": evidence_a.sha256}
        and entry["client"] is None
        and entry["actor"] is None  # who published is in the case's own entry, not the public one
    )
    assert "analysis" not in entry["details"]
    assert entry["details"]["public_statement_sha256"] == hashlib.sha256(payload).hexdigest()
    _, size, root = parse_and_verify_checkpoint(
        body["checkpoint"], public.get("/api/v1/keys/").json()["log_vkey"]
    )
    proof = [base64.b64decode(h) for h in result["log"]["inclusion_proof"]]
    assert size == result["log"]["size"]
    assert verify_inclusion(
        hashlib.sha256(b"\x00" + leaf).digest(), result["log"]["index"], size, proof, root
    )
    artifact = result["artifacts"][0]["sha256"]
    assert public.get(f"/api/v1/public/artifacts/{artifact}/").status_code == 200
    assert public.get("/api/v1/public/results/", {"sha256": "nothex"}).status_code == 400
    # Not the evidence file itself, whatever is asked.
    assert public.get(f"/api/v1/public/artifacts/{evidence_a.sha256}/").status_code == 404


def test_only_a_succeeded_analysis_can_be_published(as_alice, evidence_a):
    analysis_id = request(as_alice, evidence_a.pk).json()["id"]
    response = as_alice.post(f"/api/v1/analyses/{analysis_id}/publish/")
    assert response.status_code == 409 and "only a succeeded analysis" in response.json()["detail"]


def test_web_request_and_publish(client, alice, evidence_a):
    client.force_login(alice)
    page = client.get(f"/evidence/{evidence_a.pk}/")
    assert b'id="analysis-form"' in page.content and b"test.digest" in page.content
    response = client.post(
        f"/evidence/{evidence_a.pk}/analyses/", {"analyzer": "test.digest", "parameters": ""}
    )
    analysis = Analysis.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/analyses/{analysis.pk}/"
    services.run_analysis(analysis.pk, worker="inline")
    page = client.get(f"/analyses/{analysis.pk}/")
    assert b"sha256_recomputed" in page.content and b'id="publish"' in page.content
    client.post(f"/analyses/{analysis.pk}/publish/")
    analysis.refresh_from_db()
    assert analysis.published_at is not None
    bad = client.post(f"/evidence/{evidence_a.pk}/analyses/", {"analyzer": "test.digest", "parameters": "{x"})
    assert bad.status_code == 302 and Analysis.objects.count() == 1


@pytest.mark.slow
def test_real_worker_runs_requested_analyses(celery_worker_proc, alice, case_a):
    client = api_client_for(alice)
    evidence_id = upload(client, case_a, os.urandom(50_000)).json()["id"]
    ok = request(client, evidence_id).json()["id"]
    bad = request(client, evidence_id, fail=True).json()["id"]
    after = request(client, evidence_id).json()["id"]  # the worker survives a refused input
    assert wait_for(lambda: Analysis.objects.filter(status__in=["succeeded", "failed"]).count() == 3)
    statuses = dict(Analysis.objects.values_list("id", "status"))
    assert statuses == {uuid.UUID(ok): "succeeded", uuid.UUID(bad): "failed", uuid.UUID(after): "succeeded"}


@pytest.mark.slow
def test_worker_killed_mid_analysis_ends_with_exactly_one_result(transactional_db, alice, case_a, tmp_path):
    client = api_client_for(alice)
    evidence_id = upload(client, case_a, os.urandom(20_000)).json()["id"]
    log_path = tmp_path / "worker.log"
    worker = start_worker(log_path)
    try:
        analysis_id = request(client, evidence_id, delay=6.0).json()["id"]
        assert wait_for(lambda: Analysis.objects.get(pk=analysis_id).status == "running", timeout=60)
        kill_worker(worker)  # SIGKILL to the worker and its pool child, mid-analysis
        analysis = Analysis.objects.get(pk=analysis_id)
        assert analysis.status == "running" and analysis.envelope is None

        # The sweeper sees the heartbeat go stale and re-queues; a new worker finishes the run.
        assert wait_for(lambda: services.sweep_stale() == [analysis_id], timeout=30)
        worker = start_worker(log_path)
        assert wait_for(lambda: Analysis.objects.get(pk=analysis_id).status == "succeeded", timeout=90)
    finally:
        kill_worker(worker)
    analysis = Analysis.objects.get(pk=analysis_id)
    assert analysis.attempts == 2 and analysis.envelope is not None
    assert actions_for(analysis_id) == [
        "analysis.requested",
        "analysis.started",
        "analysis.requeued",
        "analysis.started",
        "analysis.completed",
    ]
    assert services.sweep_stale() == []
    from django.conf import settings

    assert not list(
        settings.FILE_UPLOAD_TEMP_DIR.glob(f"analysis-{analysis_id}-*")
    )  # the dead run's scratch dir


def test_every_registered_analyzer_describes_itself_completely(custody_db):
    from forensics import analyzers
    from forensics.analyzers.base import validate_parameters

    for name, module in analyzers.registry().items():
        assert module.NAME == name and module.VERSION and module.DESCRIPTION, name
        assert isinstance(module.ACCEPTS, list) and module.ACCEPTS, name
        assert isinstance(module.LIMITS, list) and all(isinstance(x, str) and x for x in module.LIMITS), name
        evidence_free = {k: v for k, v in module.PARAMETERS.items() if v["type"] != "evidence"}
        validate_parameters(evidence_free, {})  # every non-evidence parameter has a default
        assert callable(module.analyze), name


def _wav(samples, rate=16000) -> bytes:
    import io

    import numpy as np
    from scipy.io import wavfile

    buf = io.BytesIO()
    wavfile.write(buf, rate, (np.clip(samples, -1, 1) * 32767).astype(np.int16))
    return buf.getvalue()


def meeting_and_clip():
    """A 60 s "meeting" (samples) and a clip made of two excerpts of it (10-20 s and 30-40 s)."""
    import numpy as np

    rng = np.random.default_rng(7)
    rate = 16000
    t = np.arange(60 * rate) / rate
    tones = np.sin(
        2
        * np.pi
        * (
            300
            + 200 * np.sin(2 * np.pi * 0.3 * t)
            + 150 * rng.integers(0, 12, t.size // 800).repeat(800)[: t.size]
        )
        * t
    )
    reference = 0.4 * tones * (rng.random(t.size // 1600).repeat(1600)[: t.size] > 0.3) + 0.01 * rng.normal(
        size=t.size
    )
    clip = np.concatenate([reference[10 * rate : 20 * rate], reference[30 * rate : 40 * rate]])
    return reference, clip


def test_context_alignment_through_the_pipeline(as_alice, case_a, case_b, as_bob):
    """A clip cut from a longer recording: the reference is another item of the case, by id."""
    reference, clip = meeting_and_clip()
    ref_id = upload(as_alice, case_a, _wav(reference), name="meeting.wav").json()["id"]
    clip_id = upload(as_alice, case_a, _wav(clip), name="leak.wav").json()["id"]
    other_case_item = upload(as_bob, case_b, _wav(reference), name="elsewhere.wav").json()["id"]

    refused = request(as_alice, clip_id, "audio.context", reference=other_case_item)
    assert refused.status_code == 400 and "another evidence item in this case" in refused.json()["detail"]

    analysis_id = request(as_alice, clip_id, "audio.context", reference=ref_id).json()["id"]
    assert services.run_analysis(analysis_id, worker="inline") == "succeeded", Analysis.objects.get(
        pk=analysis_id
    ).error
    p = statement_of(as_alice.get(f"/api/v1/analyses/{analysis_id}/").json())["predicate"]
    assert p["references"]["reference"]["id"] == ref_id
    segments = [f for f in p["findings"] if f["name"] == "segment"]
    assert len(segments) == 2
    assert [round(s["value"]["reference_at"][0]) for s in segments] == [10, 30]
    assert all(s["value"]["evidence"] == ref_id for s in segments)
    removed = [f for f in p["findings"] if f["name"] == "removed"]
    assert len(removed) == 1 and round(removed[0]["value"]["duration_s"]) == 10


def test_custody_report_names_the_analyzer_of_each_analysis_entry(client, alice, as_alice, evidence_a):
    analysis_id = request(as_alice, evidence_a.pk).json()["id"]
    services.run_analysis(analysis_id, worker="inline")
    client.force_login(alice)
    html = client.get(f"/evidence/{evidence_a.pk}/report/").content.decode()
    rows = [row for row in html.split("<tr>") if "analysis." in row]
    assert len(rows) == 3  # requested, started, completed
    assert all("analyzer test.digest" in row and f"(analysis {analysis_id})" in row for row in rows)
    assert (
        sum("analyzer test.digest 1.1.0 (" in row for row in rows) == 2
    )  # the version where the entry has it


def test_queued_run_whose_message_was_lost_is_sent_again_once_per_period(
    as_alice, evidence_a, monkeypatch, django_capture_on_commit_callbacks
):
    """A broker that lost the message (Redis restarted) or was down at the request loses no run."""
    import datetime as dt

    from django.utils import timezone

    sent = []

    def broker_down(analysis_id):
        raise ConnectionError("the broker is down")

    monkeypatch.setattr(services, "_send", broker_down)
    with django_capture_on_commit_callbacks(execute=True):
        response = request(as_alice, evidence_a.pk)
    assert response.status_code == 202  # recorded and queued; the failure to send is only logged
    analysis_id = response.json()["id"]
    assert Analysis.objects.get(pk=analysis_id).sent_at is not None
    monkeypatch.setattr(services, "_send", lambda analysis_id: sent.append(str(analysis_id)))

    assert services.resend_queued() == []  # sent just now: perhaps only waiting in the queue
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    Analysis.objects.filter(pk=analysis_id).update(sent_at=an_hour_ago)
    assert services.resend_queued() == [analysis_id] and sent == [analysis_id]
    assert services.resend_queued() == []  # once per period, not at every sweep

    # The broker still down at the sweep: the next sweep tries again.
    Analysis.objects.filter(pk=analysis_id).update(sent_at=an_hour_ago)
    monkeypatch.setattr(services, "_send", broker_down)
    assert services.resend_queued() == []
    monkeypatch.setattr(services, "_send", lambda analysis_id: sent.append(str(analysis_id)))
    Analysis.objects.filter(pk=analysis_id).update(requested_at=an_hour_ago)
    assert services.resend_queued() == [analysis_id]

    # Only queued runs: a running one is the stale-heartbeat sweep's business.
    Analysis.objects.filter(pk=analysis_id).update(status=Analysis.Status.RUNNING, sent_at=an_hour_ago)
    assert services.resend_queued() == []


def _inputs_of_every_family(tmp_path) -> dict[str, tuple[str, bytes]]:
    """{media type: (original name, bytes)}: a photo with EXIF, WAV, MP3 and ZIP files."""
    import io
    import zipfile

    from .audio_fixtures import encode, noise, tone
    from .test_analyzers_image import camera_exif, jpeg_bytes, synthetic

    mp3 = encode(tone(440, 3, 44100) + noise(3, 44100, 0.05), 44100, tmp_path / "tone.mp3", bitrate=128000)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("notes.txt", "the minutes\n" * 50)
    reference, clip = meeting_and_clip()
    return {
        "image/jpeg": ("scene.jpg", jpeg_bytes(synthetic(3, 256), 85, exif=camera_exif())),
        "audio/x-wav": ("leak.wav", _wav(clip)),
        "audio/mpeg": ("tone.mp3", mp3.read_bytes()),
        "application/zip": ("notes.zip", archive.getvalue()),
        "reference": ("meeting.wav", _wav(reference)),
    }


def test_every_analyzer_reads_the_workers_nameless_copy_as_it_reads_a_named_file(custody_db, tmp_path):
    """What the worker hands over (/proc/self/fd/N of a verified copy with no name) gives every
    analyzer the very findings and artifacts that a named file of the same bytes does."""
    from custody.storage import LocalBlobStore, verified_copy
    from forensics import analyzers
    from forensics.analyzers.base import AnalysisContext, validate_parameters

    store = LocalBlobStore(tmp_path / "blobs")
    named = tmp_path / "named"
    named.mkdir()
    inputs = _inputs_of_every_family(tmp_path)
    for _, data in inputs.values():
        store.put_bytes(data, hashlib.sha256(data).hexdigest())

    def analyse(module, path, media_type, params):
        name, data = inputs[media_type]
        ctx = AnalysisContext(
            original_name=name, media_type=media_type, size=len(data), workdir=str(tmp_path)
        )
        output = module.analyze(path, params, ctx)
        return output, [(a.name, a.media_type, a.sha256) for a in ctx.artifacts]

    compared = set()
    for media_type, (name, data) in inputs.items():
        if media_type == "reference":
            continue
        (named / name).write_bytes(data)
        reference_name, reference = inputs["reference"]
        (named / reference_name).write_bytes(reference)
        for module in analyzers.registry().values():
            if module.NAME.startswith("test.") or not analyzers.accepts(module, media_type):
                continue
            spec = module.PARAMETERS
            evidence = [k for k, rule in spec.items() if rule["type"] == "evidence"]
            params = validate_parameters({k: v for k, v in spec.items() if k not in evidence}, {})
            with (
                verified_copy(hashlib.sha256(data).hexdigest(), tmp_path, store) as copy,
                verified_copy(hashlib.sha256(reference).hexdigest(), tmp_path, store) as other,
            ):
                by_copy = analyse(
                    module, copy.path, media_type, {**params, **dict.fromkeys(evidence, other.path)}
                )
            by_name = analyse(
                module,
                str(named / name),
                media_type,
                {**params, **dict.fromkeys(evidence, str(named / reference_name))},
            )
            assert by_copy == by_name, (module.NAME, media_type)
            compared.add(module.NAME)
    assert compared == {name for name in analyzers.registry() if not name.startswith("test.")}


def test_no_room_for_the_private_copy_fails_the_run_saying_so(as_alice, evidence_a, settings):
    settings.CUSTODY_FREE_SPACE_RESERVE_BYTES = 10**18  # the disk is short
    analysis_id = request(as_alice, evidence_a.pk).json()["id"]
    assert services.run_analysis(analysis_id, worker="inline") == "failed"
    analysis = Analysis.objects.get(pk=analysis_id)
    assert "not enough free disk space for the analysis's private copy" in analysis.error
    assert analysis.envelope is None and actions_for(analysis_id)[-1] == "analysis.failed"
    assert not list(settings.FILE_UPLOAD_TEMP_DIR.glob(f"analysis-{analysis_id}-*"))
