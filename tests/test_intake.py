"""Evidence intake through the REST API: hashing, refusals, storage, media types."""

import hashlib
import io
import os
import stat

import pytest
from django.conf import settings
from PIL import Image

from custody.models import Blob, Evidence, LogEntry
from custody.storage import blob_store

from .conftest import upload


def digests(data: bytes) -> dict:
    return {n: hashlib.new(n, data).hexdigest() for n in ("sha256", "sha1", "md5")}


def temp_files() -> list[str]:
    return os.listdir(settings.FILE_UPLOAD_TEMP_DIR)


def test_intake_returns_hashes_receipt_and_log_index(as_alice, case_a, alice):
    data = os.urandom(300_000)
    response = upload(as_alice, case_a, data, name="call.bin", description="phone dump", source="Pixel 7")
    assert response.status_code == 201, response.content
    body = response.json()
    assert {k: body[k] for k in ("sha256", "sha1", "md5")} == digests(data)
    assert body["size"] == len(data)
    assert body["original_name"] == "call.bin"
    assert body["submitted_by"] == "alice" and body["custodian"] == "alice"
    assert body["receipt"]["payloadType"] == "application/vnd.in-toto+json"
    entry = LogEntry.objects.get(index=body["log_index"])
    assert entry.action == "evidence.received" and str(entry.evidence_id) == body["id"]
    assert temp_files() == []  # the temporary upload is gone, the blob remains
    assert blob_store().path(body["sha256"]).read_bytes() == data


def test_zero_byte_file_is_accepted_and_hashed(as_alice, case_a):
    response = upload(as_alice, case_a, b"", name="empty.txt")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["size"] == 0
    assert body["sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert body["md5"] == "d41d8cd98f00b204e9800998ecf8427e"
    assert body["media_type"] == "application/x-empty"


def test_declared_sha256_match_is_accepted(as_alice, case_a):
    data = b"declared"
    response = upload(as_alice, case_a, data, sha256=hashlib.sha256(data).hexdigest().upper())
    assert response.status_code == 201


def test_declared_sha256_mismatch_is_422_and_nothing_is_kept(as_alice, case_a):
    before = LogEntry.objects.count()
    response = upload(as_alice, case_a, b"the real bytes", sha256="0" * 64)
    assert response.status_code == 422
    assert "does not match" in response.json()["detail"]
    assert Evidence.objects.count() == 0 and Blob.objects.count() == 0
    assert LogEntry.objects.count() == before
    assert not blob_store().exists(hashlib.sha256(b"the real bytes").hexdigest())
    assert temp_files() == []


def test_malformed_declared_sha256_is_400(as_alice, case_a):
    response = upload(as_alice, case_a, b"x", sha256="not-a-hash")
    assert response.status_code == 400
    assert "64 hexadecimal" in response.json()["detail"]


def test_missing_file_is_400_with_a_clear_message(as_alice, case_a):
    response = as_alice.post("/api/v1/evidence/", {"case": str(case_a.pk)}, format="multipart")
    assert response.status_code == 400
    assert "no file received" in response.json()["detail"]


def test_missing_case_is_400(as_alice, case_a):
    response = as_alice.post("/api/v1/evidence/", {"file": io.BytesIO(b"x")}, format="multipart")
    assert response.status_code == 400
    assert response.json()["detail"].startswith("case:")


def test_unknown_or_invisible_case_is_404(as_alice, case_b):
    assert upload(as_alice, case_b).status_code == 404
    assert upload(as_alice, "no-such-case").status_code == 404
    assert Evidence.objects.count() == 0


def test_case_can_be_named_by_reference(as_alice, case_a):
    response = upload(as_alice, case_a.reference)
    assert response.status_code == 201
    assert response.json()["case"] == str(case_a.pk)


def test_json_body_instead_of_multipart_is_415(as_alice, case_a):
    response = as_alice.post("/api/v1/evidence/", {"case": str(case_a.pk)}, format="json")
    assert response.status_code == 415
    assert "detail" in response.json()


def test_auditor_cannot_submit(as_carol, case_a):
    response = upload(as_carol, case_a)
    assert response.status_code == 403
    assert "read-only" in response.json()["detail"]


@pytest.mark.parametrize(
    "hostile, expected",
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("evil\x00name.txt", "evilname.txt"),
        ("bell\x07\x1b[31mred.txt", "bell[31mred.txt"),
        ("rtl\u202egnp.exe", "rtlgnp.exe"),
        ("x" * 1000 + ".wav", None),
    ],
)
def test_hostile_file_names_are_kept_only_as_sanitised_metadata(as_alice, case_a, hostile, expected):
    response = upload(as_alice, case_a, b"payload " + hostile.encode("utf-8", "replace"), name=hostile)
    assert response.status_code == 201, response.content
    name = response.json()["original_name"]
    if expected is not None:
        assert name == expected
    else:
        assert len(name) <= 255 and name.endswith(".wav")
    assert "/" not in name and "\\" not in name and all(c.isprintable() for c in name)
    # The stored file is named by its hash, never by the client's name.
    stored = list(settings.CUSTODY_BLOB_DIR.rglob("*"))
    assert all(p.name != name for p in stored)


def raw_multipart(client_with_token, case, filename: str, content: bytes, complete: bool = True):
    """A multipart POST built by hand, so names and truncation are exactly what a hostile client sends."""
    from django.test import Client

    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="case"\r\n\r\n{case.pk}\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + content
    if complete:
        body += f"\r\n--{boundary}--\r\n".encode()
    return Client().generic(
        "POST",
        "/api/v1/evidence/",
        body,
        content_type=f"multipart/form-data; boundary={boundary}",
        HTTP_AUTHORIZATION=client_with_token._credentials["HTTP_AUTHORIZATION"],
    )


@pytest.mark.parametrize("name", ["../", "..", "\x01\x02"])
def test_name_that_sanitises_to_nothing_gets_a_clear_400(as_alice, case_a, name):
    # Django's parser drops a part whose name is only path separators or
    # control characters, so the request arrives without a file.
    response = raw_multipart(as_alice, case_a, name, b"x")
    assert response.status_code == 400
    assert "no file received" in response.json()["detail"]
    assert Evidence.objects.count() == 0


def test_media_type_comes_from_content_not_name_or_header(as_alice, case_a):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, "PNG")
    response = upload(as_alice, case_a, buf.getvalue(), name="notes.txt")
    assert response.json()["media_type"] == "image/png"
    response = upload(
        as_alice, case_a, b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", name="photo.jpg"
    )
    assert response.json()["media_type"] == "application/pdf"


def test_same_content_twice_keeps_one_read_only_blob_and_two_records(as_alice, case_a):
    data = os.urandom(70_000)
    first = upload(as_alice, case_a, data, name="a.bin").json()
    second = upload(as_alice, case_a, data, name="b.bin").json()
    assert first["id"] != second["id"] and first["sha256"] == second["sha256"]
    assert Blob.objects.count() == 1 and Evidence.objects.count() == 2
    path = blob_store().path(first["sha256"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o400  # its owner may read it; nobody may write it
    assert path.relative_to(settings.CUSTODY_BLOB_DIR).as_posix() == (
        f"sha256/{first['sha256'][:2]}/{first['sha256'][2:4]}/{first['sha256']}"
    )


def test_blob_cannot_be_deleted_while_referenced(evidence_a):
    from django.db.models import ProtectedError

    with pytest.raises(ProtectedError):
        evidence_a.blob.delete()


def test_interrupted_upload_keeps_nothing(as_alice, case_a):
    """A body cut short (no closing boundary: the client went away): nothing is stored."""
    response = raw_multipart(as_alice, case_a, "cut.bin", os.urandom(50_000), complete=False)
    assert response.status_code == 400
    assert Evidence.objects.count() == 0
    assert temp_files() == []


def test_chunked_upload_without_length_is_411_not_a_misleading_400(as_alice, case_a):
    from django.test import Client

    response = Client().generic(
        "POST",
        "/api/v1/evidence/",
        b"",
        content_type="multipart/form-data; boundary=x",
        HTTP_TRANSFER_ENCODING="chunked",
        HTTP_AUTHORIZATION=as_alice._credentials["HTTP_AUTHORIZATION"],
        CONTENT_LENGTH="",
    )
    assert response.status_code == 411 and "Content-Length" in response.json()["detail"]


def test_receipt_carries_the_digests_computed_for_this_upload(as_alice, case_a):
    """A second upload of the same bytes is signed over its own digests, never over a stored record's."""
    import base64
    import json

    data = b"the same bytes twice\n" * 40
    first = upload(as_alice, case_a, data, name="a.bin").json()
    second = upload(as_alice, case_a, data, name="b.bin").json()
    for body in (first, second):
        digest = json.loads(base64.b64decode(body["receipt"]["payload"]))["subject"][0]["digest"]
        assert digest == {
            "sha256": hashlib.sha256(data).hexdigest(),
            "sha1": hashlib.sha1(data).hexdigest(),  # noqa: S324 - the evidence digest, not security
            "md5": hashlib.md5(data).hexdigest(),  # noqa: S324
        }


def test_a_stored_blob_record_that_disagrees_with_the_bytes_refuses_intake(as_alice, case_a):
    """The blob row's SHA-1 was changed behind the log: the same bytes arrive again; nothing new is kept."""
    data = b"bytes whose record was tampered with\n"
    first = upload(as_alice, case_a, data).json()
    Blob.objects.filter(sha256=first["sha256"]).update(sha1="0" * 40)
    before = (Evidence.objects.count(), LogEntry.objects.count())
    response = upload(as_alice, case_a, data)
    assert response.status_code == 409
    assert "disagrees with the received bytes" in response.json()["detail"]
    assert (Evidence.objects.count(), LogEntry.objects.count()) == before
