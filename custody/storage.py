"""Content-addressed, write-once blob storage on a local directory.

A blob lives at ``sha256/ab/cd/<hex>`` and is never overwritten or deleted by
the application, with one exception: a stored file that no longer hashes to
its name (damaged) is replaced by good bytes when the same content arrives
again. Storing is a hard link from the upload's temporary file, which sits on
the same filesystem: no copy, and ``link`` fails if the target exists, so two
concurrent uploads of the same bytes cannot clobber each other.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import secrets
import stat
from pathlib import Path

from .hashing import is_sha256_hex

logger = logging.getLogger(__name__)
_CHUNK = 1024 * 1024
# Evidence is for the server's user alone: directories 0700, blobs read-only
# to their owner. Set explicitly, never left to the umask.
PRIVATE_DIR_MODE = 0o700
BLOB_MODE = stat.S_IRUSR  # 0400


class BlobError(Exception):
    pass


def fsync_dir(path: Path | str) -> None:
    """Make the directory's entries (files and directories just made in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path: Path | str) -> None:
    """``mkdir -p path``, fsyncing each new directory's parent so a crash cannot lose it.

    A file's fsync makes its bytes durable, not the directory entries that
    lead to it: after a power cut, a blob fsynced into a new ``sha256/ab/cd``
    could be unreachable because ``cd`` itself never reached ``ab`` on disk.
    """
    path = Path(path)
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR_MODE)
            # The mode given to mkdir is masked by the umask: set it outright.
            os.chmod(directory, PRIVATE_DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise
            # Made meanwhile by a concurrent writer, which may not have synced
            # its parent yet: syncing it again is cheap, relying on it is not.
        fsync_dir(directory.parent)


def private_dir(path: Path | str) -> Path:
    """``path`` as a directory only its owner may enter (0700), made if missing, whatever the umask."""
    path = Path(path)
    make_dirs_durable(path)
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)
    return path


class LocalBlobStore:
    def __init__(self, root: Path | str):
        self.root = Path(root)

    def relpath(self, sha256: str) -> str:
        if not is_sha256_hex(sha256):
            raise BlobError(f"not a SHA-256 hex digest: {sha256!r}")
        sha256 = sha256.lower()
        return f"sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def path(self, sha256: str) -> Path:
        return self.root / self.relpath(sha256)

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def open(self, sha256: str):
        return open(self.path(sha256), "rb")

    def put_file(self, source: str | os.PathLike, sha256: str, size: int) -> bool:
        """Store the file at ``source`` (already hashed by the caller) as blob ``sha256``.

        Returns True if the blob was written (new, or a damaged copy replaced),
        False if an intact copy was already stored. ``source`` is left in place
        for its owner to delete.
        """

        def stage(tmp: Path) -> None:
            # Make the bytes durable before they are named: a crash must not leave
            # a blob whose name promises content the disk never received.
            with open(source, "rb") as f:
                os.fsync(f.fileno())
            try:
                os.link(source, tmp)  # same filesystem: no copy
            except OSError:  # a tmp dir elsewhere: copy instead
                with open(source, "rb") as src, open(tmp, "xb") as dst:
                    while chunk := src.read(_CHUNK):
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())

        return self._store(sha256, size, stage)

    def put_bytes(self, data: bytes, sha256: str) -> bool:
        def stage(tmp: Path) -> None:
            with open(tmp, "xb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

        return self._store(sha256, len(data), stage)

    def _store(self, sha256: str, size: int, stage) -> bool:
        """Name a fresh durable copy (made by ``stage``) as blob ``sha256``, unless an intact one exists.

        Same name means same SHA-256 only if the stored file still hashes to
        it, so a copy already there is re-hashed before the new one is dropped:
        a damaged blob (bad disk, bad restore) must not swallow good bytes.
        """
        target = self.path(sha256)
        if target.exists():
            if self._intact(target, sha256, size):
                return False
            damaged = True
        else:
            damaged = False
        make_dirs_durable(target.parent)
        # A name of this thread's own: two threads of one process may store the same bytes.
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            stage(tmp)
            os.chmod(tmp, BLOB_MODE)
            if not damaged:
                try:
                    # link, not rename: it fails if the name exists, so a concurrent
                    # upload of the same bytes is checked, never blindly clobbered.
                    os.link(tmp, target)
                except FileExistsError:
                    if self._intact(target, sha256, size):
                        return False
                    damaged = True
            if damaged:
                # rename replaces the name in one step: readers see the old file or
                # the good one, never a half-written blob.
                os.replace(tmp, target)
                logger.warning(
                    "stored blob %s did not hash to its name; replaced it with the %d bytes just "
                    "received, which do (check the disk and run verify_log)",
                    sha256,
                    size,
                )
            fsync_dir(target.parent)
            return True
        finally:
            tmp.unlink(missing_ok=True)

    @staticmethod
    def _intact(target: Path, sha256: str, size: int) -> bool:
        """Whether the stored file still holds the bytes its name promises (re-hashed)."""
        try:
            if target.stat().st_size != size:  # cheap first: no need to hash to see this
                return False
            digest = hashlib.sha256()
            with open(target, "rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
        except FileNotFoundError:
            return False
        return digest.hexdigest() == sha256.lower()


@functools.cache
def blob_store() -> LocalBlobStore:
    """The configured store, built on first use (never at import time)."""
    from django.conf import settings

    return LocalBlobStore(settings.CUSTODY_BLOB_DIR)
