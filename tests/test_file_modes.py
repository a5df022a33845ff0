"""Files on disk are the server's user's only, whatever the umask."""

import os
import stat
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

from custody import tus
from custody.storage import blob_store

from .conftest import upload
from .test_tus import create, patch, path_of

# --- 2. files on disk: the server's user only ------------------------------------------


@contextmanager
def permissive_umask():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_blobs_are_owner_read_only(as_alice, case_a):
    with permissive_umask():
        body = upload(as_alice, case_a, b"umask test bytes").json()
    path = blob_store().path(body["sha256"])
    assert mode(path) == 0o400
    assert mode(path.parent) == 0o700


def test_data_dir_is_private(tmp_path):
    from custody.storage import private_dir

    with permissive_umask():
        made = private_dir(tmp_path / "fresh" / "data")
        loose = tmp_path / "loose"
        loose.mkdir(mode=0o755)
        private_dir(loose)
    assert mode(made) == 0o700 and mode(loose) == 0o700


def test_configured_data_dir_is_private():
    assert mode(settings.DATA_DIR) == 0o700


def test_sqlite_database_file_is_private(db, tmp_path):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite only")
    from custody.apps import make_sqlite_files_private

    name = tmp_path / "x.sqlite3"
    with permissive_umask():
        name.touch()
        Path(f"{name}-wal").touch()
        assert mode(name) == 0o644
        make_sqlite_files_private(str(name))
    assert mode(name) == 0o600 and mode(f"{name}-wal") == 0o600
    assert mode(connection.settings_dict["NAME"]) == 0o600


def test_key_files_are_private(custody_db, tmp_path):
    from custody import keys

    with permissive_umask(), override_settings(CUSTODY_KEY_DIR=tmp_path / "keys"):
        keyid, _ = keys.generate_key_file()
        path = keys.key_path(keyid)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700


def test_multipart_temporary_file_is_private(as_alice, case_a, monkeypatch):
    from custody import uploads

    seen = []
    real = uploads.HashingUploadHandler.receive_data_chunk

    def spy(self, raw_data, start):
        seen.append(mode(self.file.temporary_file_path()))
        return real(self, raw_data, start)

    monkeypatch.setattr(uploads.HashingUploadHandler, "receive_data_chunk", spy)
    with permissive_umask():
        assert upload(as_alice, case_a, b"temporary bytes").status_code == 201
    assert seen and set(seen) == {0o600}


def test_resumable_upload_file_is_private(as_alice, case_a):
    with permissive_umask():
        response = create(as_alice, case_a, 10)
        upload_id = path_of(response["Location"]).rstrip("/").rsplit("/", 1)[1]
        path = tus.data_path(upload_id)
        assert mode(path) == 0o600
        assert patch(as_alice, path_of(response["Location"]), b"12345", 0).status_code == 204
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
