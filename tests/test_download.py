"""Streaming the evidence bytes: never whole in memory, safe names, Repr-Digest."""

import base64
import hashlib
import os

from django.http import FileResponse

from custody.models import LogEntry

from .conftest import upload


def test_content_streams_the_bytes_with_repr_digest(as_alice, case_a, alice):
    data = os.urandom(2_500_000)
    body = upload(as_alice, case_a, data, name="big.bin").json()
    response = as_alice.get(f"/api/v1/evidence/{body['id']}/content/", {"reason": "expert review"})
    assert response.status_code == 200
    assert isinstance(response, FileResponse) and response.streaming
    assert b"".join(response.streaming_content) == data
    assert response["Content-Length"] == str(len(data))
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-Content-Type-Options"] == "nosniff"
    expected = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert response["Repr-Digest"] == f"sha-256=:{expected}:"
    entry = LogEntry.objects.order_by("-index").first()
    assert entry.action == "evidence.downloaded" and entry.actor_id == alice.pk
    assert b'"reason":"expert review"' in bytes(entry.leaf)


def test_content_disposition_is_safe_for_hostile_names(as_alice, case_a):
    for name, expected in [
        ('quote".bin', 'attachment; filename="quote\\".bin"'),
        ("r\u00e9sum\u00e9 \u202e.wav", "attachment; filename*=utf-8''r%C3%A9sum%C3%A9%20.wav"),
        ("a;b\r\nX-Injected: 1.txt", None),
    ]:
        body = upload(as_alice, case_a, name.encode("utf-8"), name=name).json()
        response = as_alice.get(f"/api/v1/evidence/{body['id']}/content/")
        header = response["Content-Disposition"]
        assert "\r" not in header and "\n" not in header
        if expected:
            assert header == expected
        assert "X-Injected" not in response.headers or response.headers.get("X-Injected") is None


def test_web_download_requires_a_reason(client, alice, evidence_a):
    client.force_login(alice)
    response = client.post(f"/evidence/{evidence_a.pk}/download/", {"reason": ""})
    assert response.status_code == 302
    response = client.post(f"/evidence/{evidence_a.pk}/download/", {"reason": "court copy"})
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"RIFF....WAVEfmt the meeting recording"
