"""Content-addressed, write-once blob storage on a local directory.

A blob lives at ``sha256/ab/cd/<hex>`` and is never overwritten or deleted by
the application. Storing is a hard link from the upload's temporary file,
which sits on the same filesystem: no copy, and ``link`` fails if the target
exists, so two concurrent uploads of the same bytes cannot clobber each other.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

from .hashing import is_sha256_hex


class BlobError(Exception):
    pass


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

        Returns True if a new blob was written, False if the same content was
        already stored. ``source`` is left in place for its owner to delete.
        """
        target = self.path(sha256)
        if target.exists():
            self._check_existing(target, size)
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        # Make the bytes durable before they are named: a crash must not leave
        # a blob whose name promises content the disk never received.
        with open(source, "rb") as f:
            os.fsync(f.fileno())
        try:
            os.link(source, target)
        except FileExistsError:  # a concurrent upload of the same bytes won
            self._check_existing(target, size)
            return False
        except OSError:
            # Different filesystem (e.g. a tmp dir elsewhere): copy instead.
            self._copy(source, target)
        os.chmod(target, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        self._fsync_dir(target.parent)
        return True

    def put_bytes(self, data: bytes, sha256: str) -> bool:
        target = self.path(sha256)
        if target.exists():
            self._check_existing(target, len(data))
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        os.chmod(target, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        self._fsync_dir(target.parent)
        return True

    def _copy(self, source, target: Path) -> None:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(source, "rb") as src, open(tmp, "xb") as dst:
            while chunk := src.read(1024 * 1024):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)

    @staticmethod
    def _check_existing(target: Path, size: int) -> None:
        # Same name means same SHA-256; a different size means the stored blob
        # was damaged, which must not be papered over by a dedup.
        actual = target.stat().st_size
        if actual != size:
            raise BlobError(
                f"stored blob {target.name} has {actual} bytes, expected {size}: "
                "the store is damaged; run verify_log"
            )

    @staticmethod
    def _fsync_dir(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@functools.cache
def blob_store() -> LocalBlobStore:
    """The configured store, built on first use (never at import time)."""
    from django.conf import settings

    return LocalBlobStore(settings.CUSTODY_BLOB_DIR)
