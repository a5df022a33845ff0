"""The content-addressed blob store on its own: deduplication that never trusts a damaged copy."""

import hashlib
import logging
import os
import stat

import pytest

from custody.storage import LocalBlobStore

GOOD = b"the bytes an investigator received\n" * 100


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def damage(path, data: bytes) -> None:
    """What a bad disk, a bad restore or a careless hand might leave: other bytes under the name."""
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    path.write_bytes(data)
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


def source_file(tmp_path, data: bytes = GOOD):
    path = tmp_path / "upload.tmp"
    path.write_bytes(data)
    return path


@pytest.fixture
def store(tmp_path):
    return LocalBlobStore(tmp_path / "blobs")


def assert_read_only(path) -> None:
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o222 == 0


def test_an_intact_copy_is_kept_and_the_new_one_dropped(store, tmp_path, caplog):
    assert store.put_bytes(GOOD, sha256(GOOD)) is True
    inode = os.stat(store.path(sha256(GOOD))).st_ino
    with caplog.at_level(logging.WARNING, logger="custody.storage"):
        assert store.put_file(source_file(tmp_path), sha256(GOOD), len(GOOD)) is False
    assert os.stat(store.path(sha256(GOOD))).st_ino == inode  # the first copy stays
    assert not caplog.records


@pytest.mark.parametrize(
    "damaged",
    [
        b"X" + GOOD[1:],  # same size: the old size check let this through
        GOOD[:-10],  # truncated: the old check refused the good upload instead
    ],
    ids=["same-size", "truncated"],
)
def test_a_damaged_copy_is_replaced_by_good_bytes_from_a_file(store, tmp_path, caplog, damaged):
    store.put_bytes(GOOD, sha256(GOOD))
    damage(store.path(sha256(GOOD)), damaged)
    with caplog.at_level(logging.WARNING, logger="custody.storage"):
        assert store.put_file(source_file(tmp_path), sha256(GOOD), len(GOOD)) is True
    target = store.path(sha256(GOOD))
    assert target.read_bytes() == GOOD
    assert_read_only(target)
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert sha256(GOOD) in caplog.text and "replaced" in caplog.text
    assert sorted(os.listdir(target.parent)) == [target.name]  # no temporary copy left behind
    assert source_file(tmp_path).exists()  # the caller still owns its file


def test_a_damaged_copy_is_replaced_by_good_bytes_from_memory(store, caplog):
    store.put_bytes(GOOD, sha256(GOOD))
    damage(store.path(sha256(GOOD)), b"X" + GOOD[1:])
    with caplog.at_level(logging.WARNING, logger="custody.storage"):
        assert store.put_bytes(GOOD, sha256(GOOD)) is True
    assert store.path(sha256(GOOD)).read_bytes() == GOOD
    assert_read_only(store.path(sha256(GOOD)))
    assert "replaced" in caplog.text


def test_intake_of_the_same_bytes_repairs_a_damaged_blob(as_alice, case_a):
    from custody.models import Evidence
    from custody.storage import blob_store

    from .conftest import upload

    first = upload(as_alice, case_a, GOOD, name="first.bin").json()
    damage(blob_store().path(first["sha256"]), b"X" + GOOD[1:])
    second = upload(as_alice, case_a, GOOD, name="second.bin")
    assert second.status_code == 201, second.content
    assert blob_store().path(first["sha256"]).read_bytes() == GOOD
    assert Evidence.objects.count() == 2


def test_new_directories_are_fsynced_into_their_parents(tmp_path, fsynced):
    """A blob's own fsync does not make the directories leading to it durable."""
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    name = sha256(GOOD)
    store.put_bytes(GOOD, name)
    fan_out = [root / "sha256", root / "sha256" / name[:2], root / "sha256" / name[:2] / name[2:4]]
    for directory in [root, *fan_out]:
        assert directory.parent in fsynced, directory  # its entry in its parent is on disk
    assert fan_out[-1] in fsynced  # and the blob's entry in its own directory


def test_make_dirs_durable_refuses_a_file_in_the_way(tmp_path):
    from custody.storage import make_dirs_durable

    (tmp_path / "a").write_bytes(b"")
    with pytest.raises(FileExistsError):
        make_dirs_durable(tmp_path / "a" / "b")
