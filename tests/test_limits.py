"""Upload limits: maximum size, per-case quota, free-space reserve; refusals say nothing of the disk."""

import os
import shutil
from collections import namedtuple

import pytest
from django.conf import settings
from django.test import Client, override_settings

from custody import tus
from custody.models import Evidence, ResumableUpload

from .conftest import busy_writeback_helper, upload
from .test_tus import create, patch, path_of

# --- 3. limits ---------------------------------------------------------------------------


def _no_disk_numbers(detail: str) -> None:
    free = shutil.disk_usage(settings.DATA_DIR).free
    assert str(free) not in detail and "free" not in detail.lower()


def _nothing_kept(before_files: set) -> None:
    assert set(os.listdir(settings.FILE_UPLOAD_TEMP_DIR)) <= before_files
    assert not any(ResumableUpload.objects.filter(evidence=None))


@override_settings(CUSTODY_MAX_UPLOAD_BYTES=1000)
def test_multipart_over_the_maximum_is_413_and_nothing_kept(as_alice, case_a):
    before = set(os.listdir(settings.FILE_UPLOAD_TEMP_DIR))
    response = upload(as_alice, case_a, os.urandom(5000))
    assert response.status_code == 413
    assert "1000" in response.json()["detail"]
    _nothing_kept(before)
    assert not Evidence.objects.exists()
    assert upload(as_alice, case_a, os.urandom(900)).status_code == 201


@override_settings(CUSTODY_MAX_UPLOAD_BYTES=1000)
def test_web_upload_over_the_maximum_is_refused(client, alice, case_a):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client.force_login(alice)
    response = client.post(f"/cases/{case_a.pk}/", {"file": SimpleUploadedFile("a.bin", os.urandom(5000))})
    assert response.status_code == 413
    assert not Evidence.objects.exists()


def test_multipart_over_the_maximum_is_refused_as_bytes_arrive(rf, settings):
    """A body without a usable Content-Length is cut off when the file passes the maximum."""
    from django.core.files.uploadhandler import StopUpload

    from custody import uploads

    settings.CUSTODY_MAX_UPLOAD_BYTES = 100
    handler = uploads.HashingUploadHandler(rf.post("/"))
    handler.handle_raw_input(None, {}, 0, b"x")
    handler.new_file("file", "a.bin", "application/octet-stream", None)
    path = handler.file.temporary_file_path()
    handler.receive_data_chunk(b"x" * 60, 0)
    with pytest.raises(StopUpload):
        handler.receive_data_chunk(b"x" * 60, 60)
    assert uploads.refusal(handler.request).status == 413
    assert not os.path.exists(path)


def test_multipart_disk_full_while_writing_is_507_and_keeps_nothing(rf, monkeypatch):
    """The disk fills up after the free-space check (another writer): 507, the partial file removed."""
    import errno

    from django.core.files.uploadhandler import StopUpload

    from custody import uploads

    handler = uploads.HashingUploadHandler(rf.post("/"))
    handler.handle_raw_input(None, {}, 0, b"x")
    handler.new_file("file", "a.bin", "application/octet-stream", None)
    path = handler.file.temporary_file_path()
    handler.receive_data_chunk(b"x" * 60, 0)

    def full(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(handler.file.file, "write", full)
    with pytest.raises(StopUpload):
        handler.receive_data_chunk(b"x" * 60, 60)
    refused = uploads.refusal(handler.request)
    assert refused.status == 507 and "disk is full; nothing was kept" in refused.detail
    assert not os.path.exists(path)


def test_a_refused_upload_frees_its_space_before_the_answer(rf, settings, monkeypatch):
    """The writeback helper's own descriptor of the file does not keep the refused bytes on disk.

    The helper (uploads._Writeback) closes its duplicate descriptor in its own thread, perhaps
    after the refusal is answered; an unlinked file keeps its blocks until then. The file is
    emptied before it is closed, so the space is free when the view answers.
    """
    from django.core.files.uploadhandler import StopUpload

    from custody import uploads

    started, release, helper_fds = busy_writeback_helper(monkeypatch)
    settings.CUSTODY_MAX_UPLOAD_BYTES = 3 << 16
    handler = uploads.HashingUploadHandler(rf.post("/"))
    handler.handle_raw_input(None, {}, 0, b"x")
    handler.new_file("file", "a.bin", "application/octet-stream", None)
    path = handler.file.temporary_file_path()
    try:
        handler.receive_data_chunk(os.urandom(1 << 16), 0)
        handler.receive_data_chunk(os.urandom(1 << 16), 1 << 16)
        assert started.wait(10), "the writeback helper did not start"
        with pytest.raises(StopUpload):
            handler.receive_data_chunk(os.urandom(1 << 17), 2 << 16)
        assert uploads.refusal(handler.request).status == 413
        assert not os.path.exists(path)
        held = os.fstat(helper_fds[0])  # the helper's descriptor is still open
        assert (held.st_size, held.st_blocks) == (0, 0)
    finally:
        release.set()


def test_disk_full_while_storing_the_blob_is_507_and_keeps_nothing(as_alice, case_a, monkeypatch):
    import errno

    from custody.models import LogEntry
    from custody.storage import LocalBlobStore

    def full(self, source, sha256, size):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LocalBlobStore, "put_file", full)
    entries = LogEntry.objects.count()
    response = upload(as_alice, case_a, b"arrives on a full disk")
    assert response.status_code == 507
    assert "disk is full; nothing was kept" in response.json()["detail"]
    assert LogEntry.objects.count() == entries and not Evidence.objects.exists()
    assert not [p for p in os.listdir(settings.FILE_UPLOAD_TEMP_DIR) if p.startswith("upload-")]


@override_settings(CUSTODY_CASE_QUOTA_BYTES=1000)
def test_case_quota_is_413_for_multipart_and_tus(as_alice, case_a, as_bob, case_b):
    assert upload(as_alice, case_a, os.urandom(600)).status_code == 201
    before = set(os.listdir(settings.FILE_UPLOAD_TEMP_DIR))
    response = upload(as_alice, case_a, os.urandom(600))
    assert response.status_code == 413 and "quota" in response.json()["detail"]
    _no_disk_numbers(response.json()["detail"])
    _nothing_kept(before)
    assert Evidence.objects.filter(case=case_a).count() == 1
    response = create(as_alice, case_a, 600)
    assert response.status_code == 413 and "quota" in response.json()["detail"]
    assert not ResumableUpload.objects.exists()
    assert create(as_alice, case_a, 400).status_code == 201
    # Unfinished uploads hold their share of the quota.
    assert create(as_alice, case_a, 1).status_code == 413
    assert upload(as_bob, case_b, os.urandom(900)).status_code == 201  # another case, its own quota


@override_settings(CUSTODY_MAX_UPLOAD_BYTES=1000)
def test_tus_over_the_maximum_is_413_at_creation(as_alice, case_a):
    response = create(as_alice, case_a, 1001)
    assert response.status_code == 413 and "1000" in response.json()["detail"]
    assert not ResumableUpload.objects.exists()


FakeUsage = namedtuple("FakeUsage", "total used free")


def test_tus_free_space_reserve_at_creation_reveals_nothing(as_alice, case_a, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: FakeUsage(10**12, 10**12 - 123457, 123457))
    with override_settings(CUSTODY_FREE_SPACE_RESERVE_BYTES=100000):
        response = create(as_alice, case_a, 30000)
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "123457" not in detail and "23457" not in detail and "free" not in detail.lower()
    assert not ResumableUpload.objects.exists()


def test_tus_free_space_reserve_as_bytes_arrive(as_alice, case_a, monkeypatch):
    url = path_of(create(as_alice, case_a, 10)["Location"])
    assert patch(as_alice, url, b"12345", 0).status_code == 204
    upload_row = ResumableUpload.objects.get()
    monkeypatch.setattr(shutil, "disk_usage", lambda path: FakeUsage(10**12, 10**12 - 1000, 1000))
    with override_settings(CUSTODY_FREE_SPACE_RESERVE_BYTES=5000):
        response = patch(as_alice, url, b"67890", 5)
    assert response.status_code == 413
    _no_disk_numbers(response.json()["detail"])
    assert "1000" not in response.json()["detail"]
    assert not ResumableUpload.objects.exists()
    assert not tus.data_path(upload_row.pk).exists()
    assert not Evidence.objects.exists()


def test_multipart_free_space_reserve(as_alice, case_a, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: FakeUsage(10**12, 10**12 - 4321, 4321))
    before = set(os.listdir(settings.FILE_UPLOAD_TEMP_DIR))
    with override_settings(CUSTODY_FREE_SPACE_RESERVE_BYTES=4000):
        response = upload(as_alice, case_a, os.urandom(2000))
    assert response.status_code == 413
    assert "4321" not in response.json()["detail"]
    _no_disk_numbers(response.json()["detail"])
    _nothing_kept(before)
    assert not Evidence.objects.exists()


def _free_then_full():
    """Plenty of room at the first look, almost none afterwards (someone else filled the disk)."""
    calls = []

    def usage(path):
        calls.append(path)
        return FakeUsage(10**12, 0, 10**11) if len(calls) == 1 else FakeUsage(10**12, 10**12 - 10, 10)

    return usage


def test_tus_reserve_checked_again_while_the_bytes_arrive(as_alice, case_a, monkeypatch):
    url = path_of(create(as_alice, case_a, 10)["Location"])
    path = tus.data_path(ResumableUpload.objects.get().pk)
    monkeypatch.setattr(shutil, "disk_usage", _free_then_full())
    response = patch(as_alice, url, b"12345", 0)
    assert response.status_code == 413
    _no_disk_numbers(response.json()["detail"])
    assert not ResumableUpload.objects.exists()
    assert not path.exists()


def test_multipart_reserve_checked_again_while_the_bytes_arrive(as_alice, case_a, monkeypatch):
    before = set(os.listdir(settings.FILE_UPLOAD_TEMP_DIR))
    monkeypatch.setattr(shutil, "disk_usage", _free_then_full())
    response = upload(as_alice, case_a, os.urandom(2000))
    assert response.status_code == 413
    _nothing_kept(before)
    assert not Evidence.objects.exists()


@override_settings(CUSTODY_MAX_UPLOAD_BYTES=1000)
def test_web_upload_over_the_maximum_with_csrf_checks_is_413_not_500(alice, case_a):
    # A browser's POST: the CSRF middleware reads the body before the view does.
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get(f"/cases/{case_a.pk}/")
    response = client.post(
        f"/cases/{case_a.pk}/",
        {  # the token first, as the page's form sends it
            "csrfmiddlewaretoken": client.cookies["csrftoken"].value,
            "file": SimpleUploadedFile("a.bin", os.urandom(5000)),
        },
    )
    assert response.status_code == 413
    assert b"1000 bytes at most" in response.content
    assert not Evidence.objects.exists()
