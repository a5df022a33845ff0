"""Resumable uploads over tus 1.0: the protocol through DRF's client, and a stock
tus client (tuspy) against gunicorn, including a server restart mid-upload."""

import base64
import errno
import hashlib
import json
import os
import subprocess

import pytest
import requests
from django.utils import timezone

from custody import services, tus
from custody.models import Blob, Evidence, LogEntry, ResumableUpload
from custody.storage import blob_store

from .conftest import PASSWORD, busy_writeback_helper, start_gunicorn

TUS = {"HTTP_TUS_RESUMABLE": "1.0.0"}


def meta(**values) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def create(client, case, length: int, **values):
    values.setdefault("case", str(case.pk))
    return client.post(
        "/api/v1/uploads/", HTTP_UPLOAD_LENGTH=str(length), HTTP_UPLOAD_METADATA=meta(**values), **TUS
    )


def patch(client, url, data: bytes, offset: int, **headers):
    return client.generic(
        "PATCH",
        url,
        data=data,
        content_type="application/offset+octet-stream",
        HTTP_UPLOAD_OFFSET=str(offset),
        **TUS,
        **headers,
    )


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def id_of(url: str) -> str:
    """The upload id at the end of its URL."""
    return url.rstrip("/").rsplit("/", 1)[1]


def digests(data: bytes) -> dict:
    return {name: hashlib.new(name, data).hexdigest() for name in ("sha256", "sha1", "md5")}


@pytest.fixture
def content():
    return os.urandom(3 * 1024 * 1024 + 123)


def test_capabilities_are_public(client):
    response = client.options("/api/v1/uploads/")
    assert response.status_code == 204
    assert response["Tus-Version"] == "1.0.0" and response["Tus-Resumable"] == "1.0.0"
    assert set(response["Tus-Extension"].split(",")) == {"creation", "checksum", "termination", "expiration"}
    assert "sha1" in response["Tus-Checksum-Algorithm"].split(",")


def test_upload_in_pieces_becomes_evidence_with_the_right_hashes(as_alice, case_a, content):
    response = create(as_alice, case_a, len(content), filename="clip.opus", description="from the phone")
    assert response.status_code == 201, response.content
    url = path_of(response["Location"])
    assert response["Upload-Offset"] == "0" and response["Upload-Expires"]
    head = as_alice.head(url, **TUS)
    assert (
        head.status_code == 200
        and head["Upload-Offset"] == "0"
        and head["Upload-Length"] == str(len(content))
    )
    assert head["Cache-Control"] == "no-store"

    first = patch(as_alice, url, content[:1_000_000], 0)
    assert first.status_code == 204 and first["Upload-Offset"] == "1000000"
    assert as_alice.head(url, **TUS)["Upload-Offset"] == "1000000"
    assert not Evidence.objects.exists()  # not evidence until the last byte

    # Another process (or a restarted server) serves the next piece: it has no
    # hash state and must catch up from the bytes on disk.
    tus._states.clear()
    second = patch(as_alice, url, content[1_000_000:2_500_000], 1_000_000)
    assert second.status_code == 204 and second["Upload-Offset"] == "2500000"
    last = patch(as_alice, url, content[2_500_000:], 2_500_000)
    assert last.status_code == 204, last.content
    assert last["Upload-Offset"] == str(len(content))

    evidence = Evidence.objects.get()
    assert last["Custody-Evidence"] == f"/api/v1/evidence/{evidence.pk}/"
    expected = digests(content)
    assert (evidence.blob.sha256, evidence.blob.sha1, evidence.blob.md5) == (
        expected["sha256"],
        expected["sha1"],
        expected["md5"],
    )
    assert blob_store().path(evidence.blob_id).read_bytes() == content
    assert evidence.original_name == "clip.opus" and evidence.description == "from the phone"
    entry = LogEntry.objects.get(index=evidence.log_index)
    assert entry.action == "evidence.received" and entry.evidence_id == evidence.pk
    statement = json.loads(base64.b64decode(evidence.receipt["payload"]))  # the receipt names these bytes
    assert statement["subject"][0]["digest"]["sha256"] == expected["sha256"]
    assert not tus.data_path(id_of(url)).exists()  # no copy left behind

    progress = as_alice.get(url, **TUS).json()
    assert progress["complete"] and progress["evidence"]["sha256"] == expected["sha256"]
    again = patch(as_alice, url, b"x", len(content))
    assert again.status_code == 409


def test_wrong_offset_is_409_with_the_offset_to_resume_from(as_alice, case_a):
    url = path_of(create(as_alice, case_a, 10)["Location"])
    assert patch(as_alice, url, b"abcd", 0).status_code == 204
    response = patch(as_alice, url, b"efgh", 2)
    assert response.status_code == 409 and response["Upload-Offset"] == "4"
    assert "detail" in response.json()


def test_checksum_mismatch_drops_the_chunk_and_the_upload_goes_on(as_alice, case_a):
    data = b"0123456789" * 1000
    url = path_of(create(as_alice, case_a, len(data))["Location"])
    good = base64.b64encode(hashlib.sha1(data[:4000]).digest()).decode()  # noqa: S324 (tus checksum algorithm)
    assert patch(as_alice, url, data[:4000], 0, HTTP_UPLOAD_CHECKSUM=f"sha1 {good}").status_code == 204
    bad = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    refused = patch(as_alice, url, data[4000:], 4000, HTTP_UPLOAD_CHECKSUM=f"sha256 {bad}")
    assert refused.status_code == 460 and "does not match" in refused.json()["detail"]
    assert as_alice.head(url, **TUS)["Upload-Offset"] == "4000"
    right = base64.b64encode(hashlib.md5(data[4000:]).digest()).decode()  # noqa: S324 (tus checksum algorithm)
    assert patch(as_alice, url, data[4000:], 4000, HTTP_UPLOAD_CHECKSUM=f"md5 {right}").status_code == 204
    assert Evidence.objects.get().blob_id == hashlib.sha256(data).hexdigest()


def test_declared_sha256_mismatch_is_422_and_nothing_is_kept(as_alice, case_a):
    data = b"the bytes that arrive"
    url = path_of(
        create(as_alice, case_a, len(data), sha256=hashlib.sha256(b"other").hexdigest())["Location"]
    )
    upload_id = id_of(url)
    response = patch(as_alice, url, data, 0)
    assert response.status_code == 422 and "does not match" in response.json()["detail"]
    assert not Evidence.objects.exists() and not Blob.objects.exists()
    assert not blob_store().exists(hashlib.sha256(data).hexdigest())
    assert not tus.data_path(upload_id).exists()
    assert as_alice.head(url, **TUS).status_code == 404


def test_declared_sha256_that_matches_is_accepted(as_alice, case_a):
    data = b"declared and matching"
    url = path_of(create(as_alice, case_a, len(data), sha256=hashlib.sha256(data).hexdigest())["Location"])
    assert patch(as_alice, url, data, 0).status_code == 204
    assert Evidence.objects.get().blob_id == hashlib.sha256(data).hexdigest()


def test_zero_byte_upload_is_evidence_at_creation(as_alice, case_a):
    response = create(as_alice, case_a, 0, filename="empty.bin")
    assert response.status_code == 201, response.content
    evidence = Evidence.objects.get()
    assert response["Custody-Evidence"] == f"/api/v1/evidence/{evidence.pk}/"
    assert evidence.blob_id == hashlib.sha256(b"").hexdigest() and evidence.blob.size == 0


def test_hostile_file_name_is_kept_only_sanitised(as_alice, case_a):
    url = path_of(create(as_alice, case_a, 3, filename="../../etc/passwd\x00\x1b[31m")["Location"])
    assert patch(as_alice, url, b"abc", 0).status_code == 204
    name = Evidence.objects.get().original_name
    assert "/" not in name and "\x00" not in name and "\x1b" not in name


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 412),  # no Tus-Resumable
        ({"HTTP_TUS_RESUMABLE": "0.2.2", "HTTP_UPLOAD_LENGTH": "5"}, 412),
        ({**TUS}, 400),  # no Upload-Length
        ({**TUS, "HTTP_UPLOAD_LENGTH": "-1"}, 400),
        ({**TUS, "HTTP_UPLOAD_DEFER_LENGTH": "1"}, 400),
        ({**TUS, "HTTP_UPLOAD_LENGTH": "5", "HTTP_UPLOAD_METADATA": "case !!notbase64"}, 400),
        ({**TUS, "HTTP_UPLOAD_LENGTH": "5", "HTTP_UPLOAD_METADATA": meta(filename="x")}, 400),  # no case
        ({**TUS, "HTTP_UPLOAD_LENGTH": str(1 << 62), "HTTP_UPLOAD_METADATA": "case"}, 400),
    ],
)
def test_bad_creation_requests_get_a_clear_4xx(as_alice, case_a, headers, status):
    response = as_alice.post("/api/v1/uploads/", **headers)
    assert response.status_code == status, response.content
    assert response.json()["detail"]
    assert response["Tus-Resumable"] == "1.0.0"
    assert not ResumableUpload.objects.exists()


def test_malformed_declared_sha256_is_refused_at_creation(as_alice, case_a):
    response = create(as_alice, case_a, 5, sha256="not a hash")
    assert response.status_code == 400 and "64 hexadecimal" in response.json()["detail"]
    assert not ResumableUpload.objects.exists()


def test_too_large_for_the_disk_is_413(as_alice, case_a):
    response = create(as_alice, case_a, 1 << 62)
    # The answer says the upload cannot be taken, never how much room the disk has.
    assert response.status_code == 413 and "cannot take" in response.json()["detail"]
    assert "free" not in response.json()["detail"] and not ResumableUpload.objects.exists()


def test_bad_patches_get_a_clear_4xx_and_change_nothing(as_alice, case_a):
    url = path_of(create(as_alice, case_a, 4)["Location"])
    wrong_type = as_alice.generic(
        "PATCH", url, data=b"ab", content_type="application/json", HTTP_UPLOAD_OFFSET="0", **TUS
    )
    assert wrong_type.status_code == 415
    assert patch(as_alice, url, b"abcdef", 0).status_code == 413  # past Upload-Length
    assert patch(as_alice, url, b"ab", 0, HTTP_UPLOAD_CHECKSUM="crc32 AAAA").status_code == 400
    no_offset = as_alice.generic(
        "PATCH", url, data=b"ab", content_type="application/offset+octet-stream", **TUS
    )
    assert no_offset.status_code == 400
    assert as_alice.head(url, **TUS)["Upload-Offset"] == "0"


def test_outsiders_and_auditors(as_alice, as_dave, as_carol, case_a, case_b):
    url = path_of(create(as_alice, case_a, 4)["Location"])
    assert as_dave.head(url, **TUS).status_code == 404  # someone else's upload does not exist
    assert patch(as_dave, url, b"abcd", 0).status_code == 404
    assert as_dave.delete(url, **TUS).status_code == 404
    assert create(as_alice, case_b, 4).status_code == 404  # a case alice cannot see
    assert create(as_carol, case_a, 4).status_code == 403  # carol audits case A
    assert ResumableUpload.objects.count() == 1


def test_termination_removes_the_bytes(as_alice, case_a):
    url = path_of(create(as_alice, case_a, 10)["Location"])
    upload_id = id_of(url)
    assert patch(as_alice, url, b"abc", 0).status_code == 204
    assert as_alice.delete(url, **TUS).status_code == 204
    assert not tus.data_path(upload_id).exists()
    assert as_alice.head(url, **TUS).status_code == 404


def test_expired_uploads_are_gone_and_swept(as_alice, case_a):
    first = path_of(create(as_alice, case_a, 10)["Location"])
    second = path_of(create(as_alice, case_a, 10)["Location"])
    long_ago = timezone.now() - timezone.timedelta(days=30)
    ResumableUpload.objects.update(updated_at=long_ago)
    response = as_alice.head(first, **TUS)
    assert response.status_code == 410
    assert tus.sweep_expired() == 1  # the second; the first went when it was asked for
    assert not ResumableUpload.objects.exists()
    assert as_alice.head(second, **TUS).status_code == 404
    for url in (first, second):
        assert not tus.data_path(id_of(url)).exists()


def test_sweep_removes_old_files_no_upload_names(custody_db):
    orphan = tus.upload_dir() / "left-by-a-crash"
    orphan.write_bytes(b"partial")
    recent = tus.upload_dir() / "just-created"
    recent.write_bytes(b"partial")
    long_ago = (timezone.now() - timezone.timedelta(days=30)).timestamp()
    os.utime(orphan, (long_ago, long_ago))
    tus.sweep_expired()
    assert not orphan.exists() and recent.exists()
    recent.unlink()


# --- a stock tus client against the real web process --------------------------------------


def _token(url: str) -> str:
    response = requests.post(
        f"{url}/api/v1/auth/token/", json={"username": "alice", "password": PASSWORD}, timeout=30
    )
    return response.json()["token"]


def _check_with_coreutils(path, evidence: dict) -> None:
    for tool, field in (("sha256sum", "sha256"), ("sha1sum", "sha1"), ("md5sum", "md5")):
        out = subprocess.run([tool, str(path)], capture_output=True, text=True, check=True).stdout
        assert out.split()[0] == evidence[field], tool


@pytest.mark.slow
def test_stock_tus_client_resumes_after_the_server_restarts(gunicorn_server, alice, case_a, tmp_path):
    from tusclient import client as tus_client

    source = tmp_path / "recording.wav"
    source.write_bytes(os.urandom(6 * 1024 * 1024 + 7))
    url = gunicorn_server.url
    headers = {"Authorization": f"Token {_token(url)}"}
    uploader = tus_client.TusClient(f"{url}/api/v1/uploads/", headers=headers).uploader(
        file_path=str(source),
        chunk_size=512 * 1024,
        metadata={"case": case_a.reference, "filename": "recording.wav", "source": "tuspy"},
        upload_checksum=True,
    )
    uploader.upload(stop_at=3 * 1024 * 1024)  # the connection "breaks" halfway
    upload_url = uploader.url
    assert uploader.offset == 3 * 1024 * 1024

    # The web process restarts: the new one has no hash state for this upload.
    gunicorn_server.stop()
    restarted = start_gunicorn(tmp_path / "gunicorn-2.log", port=gunicorn_server.port)
    try:
        resumed = tus_client.TusClient(f"{url}/api/v1/uploads/", headers=headers).uploader(
            file_path=str(source), url=upload_url, chunk_size=512 * 1024, upload_checksum=True
        )
        assert resumed.offset == 3 * 1024 * 1024  # from HEAD
        resumed.upload()
        progress = requests.get(upload_url, headers={**headers, "Tus-Resumable": "1.0.0"}, timeout=30).json()
    finally:
        restarted.stop()
    assert progress["complete"], progress
    evidence = progress["evidence"]
    assert evidence["size"] == source.stat().st_size and evidence["original_name"] == "recording.wav"
    _check_with_coreutils(source, evidence)


@pytest.mark.slow
def test_a_broken_connection_keeps_what_arrived(gunicorn_server, alice, case_a):
    """The client dies mid-PATCH: the bytes that arrived are kept and the upload resumes after them."""
    import socket
    import time

    url = gunicorn_server.url
    token = _token(url)
    data = os.urandom(4 * 1024 * 1024)
    created = requests.post(
        f"{url}/api/v1/uploads/",
        headers={
            "Authorization": f"Token {token}",
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta(case=str(case_a.pk), filename="cut.bin"),
        },
        timeout=30,
    )
    location = created.headers["Location"]
    upload_path = path_of(location)
    sent = 1_500_000
    with socket.create_connection(("127.0.0.1", gunicorn_server.port), timeout=30) as sock:
        head = (
            f"PATCH {upload_path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
            f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        )
        sock.sendall(head.encode() + data[:sent])
        time.sleep(0.5)
    status = {"Authorization": f"Token {token}", "Tus-Resumable": "1.0.0"}
    for _ in range(100):  # the server notices the close, keeps the bytes, records the offset
        offset = int(requests.head(location, headers=status, timeout=30).headers["Upload-Offset"])
        if offset == sent:
            break
        time.sleep(0.1)
    assert offset == sent
    rest = requests.patch(
        location,
        data=data[offset:],
        headers={**status, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
        timeout=60,
    )
    assert rest.status_code == 204, rest.text
    evidence = requests.get(location, headers=status, timeout=30).json()["evidence"]
    assert evidence["sha256"] == hashlib.sha256(data).hexdigest()
    assert evidence["md5"] == hashlib.md5(data).hexdigest()  # noqa: S324 (comparing with the server's MD5)


def test_the_next_chunk_is_not_locked_out_by_the_last_ones_writeback(as_alice, case_a, settings, monkeypatch):
    """The helper's descriptor is its own: it does not hold the upload's lock after the PATCH ends."""
    started, release, _ = busy_writeback_helper(monkeypatch)
    settings.CUSTODY_UPLOAD_CHUNK_SIZE = 4096
    data = os.urandom(64 * 1024)
    url = path_of(create(as_alice, case_a, len(data))["Location"])
    try:
        assert patch(as_alice, url, data[:32768], 0).status_code == 204
        assert started.wait(10), "the writeback helper did not start"
        response = patch(as_alice, url, data[32768:], 32768)
        assert response.status_code == 204, response.content
        assert Evidence.objects.get().blob.sha256 == hashlib.sha256(data).hexdigest()
    finally:
        release.set()


# --- the disk refuses: only bytes on disk are counted ---------------------------------------


def test_an_upload_refused_mid_chunk_frees_its_space_before_the_answer(
    as_alice, case_a, settings, monkeypatch
):
    """The disk's reserve reached while a chunk arrives: the upload goes, and its blocks with it.

    The writeback helper (uploads._Writeback) holds its own descriptor of the file and closes
    it in its own thread, perhaps after the answer; an unlinked file keeps its blocks until
    then. The file is emptied before it is unlinked (as the multipart path does).
    """
    from custody import limits

    started, release, helper_fds = busy_writeback_helper(monkeypatch)
    settings.CUSTODY_UPLOAD_CHUNK_SIZE = 4096
    data = os.urandom(64 * 1024)
    url = path_of(create(as_alice, case_a, len(data))["Location"])
    path = tus.data_path(id_of(url))
    real, calls = limits.check_free_space, []

    def filling(directory, incoming):
        calls.append(incoming)
        if len(calls) == 6:  # the view's check, then one per piece: five pieces are on disk
            assert started.wait(10), "the writeback helper did not start"
            raise limits.UploadRefused("the server cannot take an upload of this size at the moment")
        return real(directory, incoming)

    monkeypatch.setattr(limits, "check_free_space", filling)
    try:
        response = patch(as_alice, url, data, 0)
        assert response.status_code == 413, response.content
        assert "cannot take" in response.json()["detail"]
        assert not path.exists() and not ResumableUpload.objects.exists()
        held = os.fstat(helper_fds[0])  # the helper's descriptor is still open
        assert (held.st_size, held.st_blocks) == (0, 0)
    finally:
        release.set()


def _failing_pwrite(monkeypatch, fail_on_call: int, how: str) -> None:
    """os.pwrite that, on its nth call, writes half the piece (a short write) or fails with ENOSPC."""
    real, calls = os.pwrite, []

    def pwrite(fd, data, position):
        calls.append(position)
        if len(calls) == fail_on_call:
            if how == "short":
                return real(fd, bytes(data)[: len(data) // 2], position)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data, position)

    monkeypatch.setattr(os, "pwrite", pwrite)


@pytest.mark.parametrize("how", ["short", "enospc"])
def test_a_failed_write_is_507_and_only_whole_pieces_are_counted(
    as_alice, case_a, settings, monkeypatch, how
):
    settings.CUSTODY_UPLOAD_CHUNK_SIZE = 1000
    data = os.urandom(10_000)
    url = path_of(create(as_alice, case_a, len(data))["Location"])
    assert patch(as_alice, url, data[:2000], 0).status_code == 204
    with monkeypatch.context() as m:
        _failing_pwrite(m, 3, how)  # pieces 2000-3000 and 3000-4000 are written, 4000-5000 is not
        response = patch(as_alice, url, data[2000:], 2000)
    assert response.status_code == 507, response.content
    assert "disk" in response.json()["detail"]
    assert response["Upload-Offset"] == "4000"
    assert as_alice.head(url, **TUS)["Upload-Offset"] == "4000"
    assert tus.data_path(id_of(url)).read_bytes() == data[:4000]
    assert not Evidence.objects.exists()

    done = patch(as_alice, url, data[4000:], 4000)  # resumed where HEAD said
    assert done.status_code == 204, done.content
    assert Evidence.objects.get().blob_id == hashlib.sha256(data).hexdigest()


def test_a_failed_write_drops_a_chunk_that_carries_a_checksum(as_alice, case_a, settings, monkeypatch):
    settings.CUSTODY_UPLOAD_CHUNK_SIZE = 1000
    data = os.urandom(5000)
    url = path_of(create(as_alice, case_a, len(data))["Location"])
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    with monkeypatch.context() as m:
        _failing_pwrite(m, 2, "enospc")
        response = patch(as_alice, url, data, 0, HTTP_UPLOAD_CHECKSUM=f"sha256 {digest}")
    # The checksum covers the whole chunk: a part of it cannot be kept.
    assert response.status_code == 507 and response["Upload-Offset"] == "0"
    assert as_alice.head(url, **TUS)["Upload-Offset"] == "0"
    assert patch(as_alice, url, data, 0, HTTP_UPLOAD_CHECKSUM=f"sha256 {digest}").status_code == 204
    assert Evidence.objects.get().blob_id == hashlib.sha256(data).hexdigest()


def test_a_failed_fsync_counts_none_of_the_chunk(as_alice, case_a, monkeypatch):
    data = os.urandom(6000)
    url = path_of(create(as_alice, case_a, len(data))["Location"])
    assert patch(as_alice, url, data[:1000], 0).status_code == 204
    with monkeypatch.context() as m:

        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        m.setattr(os, "fsync", fsync)
        response = patch(as_alice, url, data[1000:3000], 1000)
    assert response.status_code == 507, response.content
    assert response["Upload-Offset"] == "1000"
    assert as_alice.head(url, **TUS)["Upload-Offset"] == "1000"
    assert patch(as_alice, url, data[1000:], 1000).status_code == 204
    assert Evidence.objects.get().blob_id == hashlib.sha256(data).hexdigest()


# --- a crash around the last byte: one evidence, whatever the retries ------------------------


def test_a_crash_after_the_intake_commits_does_not_make_a_second_evidence(as_alice, case_a, monkeypatch):
    data = os.urandom(5000)
    url = path_of(create(as_alice, case_a, len(data))["Location"])
    assert patch(as_alice, url, data[:2000], 0).status_code == 204
    real = services.receive_evidence

    def receive_then_die(**kwargs):
        real(**kwargs)  # the intake's transaction commits...
        raise RuntimeError("...and the process dies before it answers")

    with monkeypatch.context() as m:
        m.setattr(services, "receive_evidence", receive_then_die)
        with pytest.raises(RuntimeError):
            patch(as_alice, url, data[2000:], 2000)
    evidence = Evidence.objects.get()
    tus._states.clear()  # the retry reaches a process that has not seen the upload

    head = as_alice.head(url, **TUS)  # what a tus client asks first when it resumes
    assert head["Upload-Offset"] == str(len(data))
    assert head["Custody-Evidence"] == f"/api/v1/evidence/{evidence.pk}/"
    # A client that re-sends the end (Django's test client leaves out "Content-Length: 0").
    ending = patch(as_alice, url, b"", len(data), CONTENT_LENGTH="0")
    assert ending.status_code == 204 and ending["Custody-Evidence"] == f"/api/v1/evidence/{evidence.pk}/"
    again = patch(as_alice, url, data[2000:], 2000)  # a client that re-sends its last chunk
    assert again.status_code == 409 and again["Upload-Offset"] == str(len(data))
    assert again["Custody-Evidence"] == f"/api/v1/evidence/{evidence.pk}/"
    assert Evidence.objects.count() == 1
    assert LogEntry.objects.filter(action="evidence.received").count() == 1


def test_a_crash_inside_the_intake_leaves_the_upload_resumable(as_alice, case_a, monkeypatch):
    data = os.urandom(5000)
    url = path_of(create(as_alice, case_a, len(data))["Location"])
    assert patch(as_alice, url, data[:2000], 0).status_code == 204

    def die(*args, **kwargs):
        raise RuntimeError("the process dies while writing the evidence record")

    with monkeypatch.context() as m:
        m.setattr(services.projection, "apply", die)
        with pytest.raises(RuntimeError):
            patch(as_alice, url, data[2000:], 2000)
    # Evidence and the upload's end are one transaction: neither was recorded,
    # so the client is told to send the last chunk again, not that all is done.
    assert not Evidence.objects.exists()
    upload = ResumableUpload.objects.get()
    assert upload.evidence_id is None and upload.offset == 2000
    assert as_alice.head(url, **TUS)["Upload-Offset"] == "2000"
    assert patch(as_alice, url, data[2000:], 2000).status_code == 204
    assert Evidence.objects.get().blob_id == hashlib.sha256(data).hexdigest()


def test_a_new_upload_file_and_its_directory_are_durable(as_alice, case_a, settings, tmp_path, fsynced):
    """The offset will promise bytes in this file: its directory entry must survive a crash too."""
    settings.CUSTODY_RESUMABLE_DIR = tmp_path / "data" / "resumable"
    url = path_of(create(as_alice, case_a, 10)["Location"])
    assert tus.data_path(id_of(url)).parent == settings.CUSTODY_RESUMABLE_DIR
    assert settings.CUSTODY_RESUMABLE_DIR in fsynced  # the upload file's entry
    assert tmp_path / "data" in fsynced and tmp_path in fsynced  # resumable/ and data/ in their parents


def test_uploads_in_progress_when_the_record_hmac_came_are_authenticated_by_the_migration(
    transactional_db, alice, case_a
):
    """An upload begun before migration 0014 gets its HMAC from the record as it stands, and
    finishes as usual; one without (or with another's) is refused at its last byte."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from custody import tus
    from custody.models import ResumableUpload

    executor = MigrationExecutor(connection)
    executor.migrate([("custody", "0013_log_queue")])
    try:
        old = executor.loader.project_state([("custody", "0013_log_queue")]).apps
        Old = old.get_model("custody", "ResumableUpload")
        begun = Old.objects.create(
            case_id=case_a.pk, created_by_id=alice.pk, length=10, filename="before.wav", source="phone"
        )
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    upload = ResumableUpload.objects.get(pk=begun.pk)
    assert upload.mac and tus.record_intact(upload)
    ResumableUpload.objects.filter(pk=upload.pk).update(source="elsewhere")
    assert not tus.record_intact(ResumableUpload.objects.get(pk=upload.pk))


def test_uploads_under_way_when_the_progress_seal_came_are_sealed_by_the_migration_if_their_file_holds(
    transactional_db, alice, case_a, as_alice
):
    """Migration 0020 seals each upload's progress from what is there: an unfinished one from the
    SHA-256 of the bytes its partial file holds (it goes on), a finished one with its item's
    SHA-256. One whose partial file is not on this host is left unsealed and refused, saying so."""
    from django.conf import settings
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    data = os.urandom(5000)
    finished = path_of(create(as_alice, case_a, len(data))["Location"])
    assert patch(as_alice, finished, data, 0).status_code == 204
    executor = MigrationExecutor(connection)
    executor.migrate([("custody", "0019_recovery_code_hmac")])
    try:
        Old = executor.loader.project_state([("custody", "0019_recovery_code_hmac")]).apps.get_model(
            "custody", "ResumableUpload"
        )
        under_way, elsewhere = (
            Old.objects.create(case_id=case_a.pk, created_by_id=alice.pk, length=len(data), offset=2000)
            for _ in range(2)
        )
        for upload in (under_way, elsewhere):
            upload.mac = tus.upload_record_mac(upload, settings.SECRET_KEY)
            upload.save(update_fields=["mac"])
        tus.data_path(under_way.pk).write_bytes(data[:2000])
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    done = ResumableUpload.objects.get(pk=id_of(finished))
    assert tus.upload_progress_intact(done) and done.offset_sha256 == hashlib.sha256(data).hexdigest()
    assert tus.upload_progress_intact(ResumableUpload.objects.get(pk=under_way.pk))
    url = f"/api/v1/uploads/{under_way.pk}/"
    assert as_alice.head(url, **TUS)["Upload-Offset"] == "2000"
    assert patch(as_alice, url, data[2000:], 2000).status_code == 204
    assert Evidence.objects.filter(blob_id=hashlib.sha256(data).hexdigest()).count() == 2

    refused = patch(as_alice, f"/api/v1/uploads/{elsewhere.pk}/", data[2000:], 2000)
    assert refused.status_code == 410 and "carries no seal" in refused.json()["detail"]
    assert as_alice.head(f"/api/v1/uploads/{elsewhere.pk}/", **TUS).status_code == 410


def test_two_workers_taking_turns_read_each_byte_at_most_once_more(as_alice, case_a, monkeypatch):
    """A worker whose hash state is behind catches up on the bytes the other one wrote only: the
    file's ctime is the one the other sealed, so nothing it hashed before is read again."""
    data = os.urandom(6000)
    url = path_of(create(as_alice, case_a, len(data))["Location"])
    workers = [{}, {}]
    read = []
    real_pread = os.pread

    def pread(fd, size, offset):
        chunk = real_pread(fd, size, offset)
        read.append(len(chunk))
        return chunk

    monkeypatch.setattr(os, "pread", pread)
    for n, offset in enumerate(range(0, 6000, 1000)):
        tus._states.clear()
        tus._states.update(workers[n % 2])  # the PATCH lands in worker n % 2
        assert patch(as_alice, url, data[offset : offset + 1000], offset).status_code == 204
        workers[n % 2] = dict(tus._states)
    assert sum(read) <= 6000, read  # each worker read the other's bytes once, never its own
    assert Evidence.objects.get().blob_id == hashlib.sha256(data).hexdigest()
