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


# --- verified private copies: what an analyzer reads ------------------------------------------


def test_a_verified_copy_has_no_name_is_read_only_and_opens_in_a_child(store, tmp_path):
    import subprocess
    import sys

    from custody.storage import verified_copy

    store.put_bytes(GOOD, sha256(GOOD))
    workdir = tmp_path / "work"
    workdir.mkdir()
    with verified_copy(sha256(GOOD), workdir, store) as copy:
        assert list(workdir.iterdir()) == []  # no path in the directory names it
        assert stat.S_IMODE(os.fstat(copy.fd).st_mode) == stat.S_IRUSR
        assert copy.size == len(GOOD) and copy.sha256 == sha256(GOOD)
        with open(copy.path, "rb") as f:
            assert f.read() == GOOD
        child = subprocess.run(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", f"import sys; sys.stdout.buffer.write(open({copy.path!r}, 'rb').read())"],
            pass_fds=(copy.fd,),
            capture_output=True,
            check=True,
        )
        assert child.stdout == GOOD
        fd = copy.fd
    with pytest.raises(OSError):
        os.fstat(fd)  # closed: the kernel frees the copy
    assert list(workdir.iterdir()) == []


def test_a_verified_copy_of_changed_bytes_is_refused_and_not_kept(store, tmp_path):
    from custody.storage import BlobMismatch, verified_copy

    store.put_bytes(GOOD, sha256(GOOD))
    damage(store.path(sha256(GOOD)), b"other bytes")
    opened = len(os.listdir("/proc/self/fd"))
    with pytest.raises(BlobMismatch) as caught, verified_copy(sha256(GOOD), tmp_path, store):
        pass
    assert caught.value.actual == sha256(b"other bytes")
    assert len(os.listdir("/proc/self/fd")) == opened  # the copy's descriptor was closed
    with pytest.raises(FileNotFoundError), verified_copy(sha256(b"never stored"), tmp_path, store):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["blobs"]


def test_a_verified_copy_of_a_large_blob_streams_in_chunks(store, tmp_path):
    import tracemalloc

    from custody.storage import verified_copy

    chunk = os.urandom(1 << 20)
    big = tmp_path / "big"
    digest = hashlib.sha256()
    with open(big, "wb") as f:
        for _ in range(64):
            f.write(chunk)
            digest.update(chunk)
    store.put_file(big, digest.hexdigest(), big.stat().st_size)
    big.unlink()
    tracemalloc.start()
    try:
        with verified_copy(digest.hexdigest(), tmp_path, store) as copy:
            peak = tracemalloc.get_traced_memory()[1]
            assert copy.size == 64 << 20 and os.fstat(copy.fd).st_size == 64 << 20
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20  # a few chunks at most, never the whole file
