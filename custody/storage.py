"""Content-addressed, write-once blob storage: a local directory or an S3 bucket.

``blob_store()`` is the configured store (``CUSTODY_BLOB_STORE``: empty for
the directory under the data dir, ``s3://bucket/prefix`` for S3BlobStore);
both answer the BlobStore protocol. Callers read bytes with ``open`` (a
stream) or, when a tool needs a file, ``verified_copy`` (a private copy that
no path names, checked against the SHA-256 as it was made: whichever store).

On disk, a blob lives at ``sha256/ab/cd/<hex>`` and is never overwritten or deleted by
the application, with one exception: a stored file that no longer hashes to
its name (damaged) is replaced by good bytes when the same content arrives
again. Storing is a hard link from the upload's temporary file, which sits on
the same filesystem: no copy, and ``link`` fails if the target exists, so two
concurrent uploads of the same bytes cannot clobber each other.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import hashlib
import logging
import os
import re
import secrets
import stat
import tempfile
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

from .hashing import MultiHasher, is_sha256_hex

logger = logging.getLogger(__name__)
_CHUNK = 1024 * 1024
# Evidence is for the server's user alone: directories 0700, blobs read-only
# to their owner. Set explicitly, never left to the umask.
PRIVATE_DIR_MODE = 0o700
BLOB_MODE = stat.S_IRUSR  # 0400


class BlobError(Exception):
    pass


class BlobStoreUnavailable(BlobError):
    """The store did not answer (down, unreachable, overloaded): nothing about the blob is known."""


class BlobMismatch(BlobError):
    """The stored bytes no longer hash to the blob's name."""

    def __init__(self, sha256: str, actual: str):
        super().__init__(f"the stored bytes of blob {sha256} now hash to {actual}")
        self.sha256, self.actual = sha256, actual


class BlobStore(Protocol):
    """What every blob store offers. A missing blob raises FileNotFoundError; a store down, BlobStoreUnavailable."""

    def exists(self, sha256: str) -> bool: ...

    def open(self, sha256: str) -> BinaryIO:
        """A binary stream of the stored bytes, as the store returns them (not re-hashed)."""

    def put_file(self, source: str | os.PathLike, sha256: str, size: int) -> bool:
        """Store the file (hashed by the caller) as ``sha256``; False if it was stored already."""

    def put_bytes(self, data: bytes, sha256: str) -> bool: ...

    def describe(self) -> str:
        """Where the blobs are, for messages."""


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

    def describe(self) -> str:
        return f"directory {self.root}"

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


def sha256_stream(f: BinaryIO) -> str:
    """SHA-256 of a stream, read to its end and closed."""
    digest = hashlib.sha256()
    with f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_stream(f: BinaryIO) -> tuple[dict[str, str], int]:
    """({algorithm: hex}, size) of a stream (the fixity hashes), read to its end and closed."""
    hasher = MultiHasher()
    try:
        with f:
            while chunk := f.read(_CHUNK):
                hasher.update(chunk)
    except BaseException:
        hasher.abort()
        raise
    return hasher.hexdigests(), hasher.size


def hash_stored(sha256: str) -> tuple[dict[str, str], int]:
    """Re-hash what the configured store returns for blob ``sha256``: ({algorithm: hex}, size)."""
    return hash_stream(blob_store().open(sha256))


# --- verified private copies ------------------------------------------------
#
# What a tool that needs a file (an analyzer) reads must be the bytes whose
# SHA-256 was checked, with no moment at which a file in the data directory
# can change them: re-hashing the blob's own file and then handing its path
# over leaves a window in which anyone who can write there (same uid as the
# server) rewrites the file, has it analysed, and puts it back. So the blob
# is copied once, hashed as it is copied (one read, one write: no separate
# re-hash), into a file that no path names: O_TMPFILE (never linked into a
# directory), or where the filesystem lacks it a mkstemp file unlinked at
# once (``tempfile.TemporaryFile``). The copy is made read-only and reached
# by its descriptor alone (``path`` is /proc/self/fd/N, which a child given
# the descriptor with ``pass_fds`` opens too). The kernel frees its blocks
# when the last descriptor closes: at the end of the run, or when a killed
# worker's processes end; nothing is left for a sweeper.
#
# What remains: in the mkstemp fallback the file has a name for the few
# microseconds between the two calls; and a process of the server's own uid
# can still reach an open file through /proc/<pid>/fd/N of the worker or of
# its analysis child (chmod, then write), or ptrace either. Closing that
# needs the worker under a uid of its own, which the data directory's
# writers do not have.


class VerifiedCopy:
    """An open, read-only, nameless file holding a blob's bytes, checked against its SHA-256."""

    def __init__(self, fd: int, sha256: str, size: int):
        self.fd, self.sha256, self.size = fd, sha256, size

    @property
    def path(self) -> str:
        """The copy's path in this process, and in a child given ``fd`` under the same number (``pass_fds``)."""
        return f"/proc/self/fd/{self.fd}"


@contextlib.contextmanager
def verified_copy(
    sha256: str, directory: Path | str, store: BlobStore | None = None
) -> Iterator[VerifiedCopy]:
    """The blob copied into a nameless file on ``directory``'s filesystem, for the ``with`` block.

    ``tempfile.TemporaryFile`` makes the file: O_TMPFILE where the filesystem
    has it, else mkstemp and unlink at once. Raises FileNotFoundError (no
    such blob), BlobStoreUnavailable, BlobMismatch (the bytes read do not
    hash to ``sha256``; no copy is kept) or OSError (e.g. the disk is full).
    Memory stays flat whatever the size: the bytes are streamed in chunks.
    """
    store = store or blob_store()
    with tempfile.TemporaryFile(dir=directory) as copy:
        digest, size = hashlib.sha256(), 0
        with store.open(sha256) as source:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                copy.write(chunk)
                size += len(chunk)
        copy.flush()
        os.fchmod(copy.fileno(), BLOB_MODE)
        if digest.hexdigest() != sha256.lower():
            raise BlobMismatch(sha256, digest.hexdigest())
        copy.seek(0)
        yield VerifiedCopy(copy.fileno(), sha256.lower(), size)


# --- S3 ---------------------------------------------------------------------

# A single PUT up to this size (the store checks the whole object's SHA-256);
# above it a multipart upload, each part's SHA-256 checked by the store, a
# few parts sent at once.
S3_SINGLE_PUT_MAX = 16 * 1024 * 1024
S3_PART_SIZE = 8 * 1024 * 1024
S3_PARTS_IN_FLIGHT = 3
S3_MAX_PARTS = 10_000
# Answers that mean "the store is not serving now", not "this blob is bad".
_UNAVAILABLE_CODES = {
    "ServiceUnavailable",
    "SlowDown",
    "InternalError",
    "RequestTimeout",
    "503",
    "500",
    "502",
    "504",
}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}


def _b64_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


class _ObjectReader:
    """A read-only stream over an S3 object's body; store failures while reading become BlobStoreUnavailable."""

    def __init__(self, body, size: int, key: str):
        self._body, self.size, self.key = body, size, key

    def read(self, size: int = -1) -> bytes:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        try:
            return self._body.read(None if size is None or size < 0 else size)
        except (BotoCoreError, HTTPError, OSError) as exc:
            raise BlobStoreUnavailable(f"reading {self.key} from the object store failed: {exc}") from exc

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self._body.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class S3Bucket:
    """A bucket (and a key prefix in it) of an S3-compatible store, through boto3, with its failures translated."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_attempts: int = 3,
    ):
        if not bucket:
            raise BlobError("an S3 store needs a bucket name (s3://bucket/prefix)")
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.endpoint_url, self.region = endpoint_url or None, region or None
        self.max_attempts = max_attempts

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{where} at {self.endpoint_url}" if self.endpoint_url else where

    @functools.cached_property
    def client(self):
        import boto3
        from botocore.config import Config

        config = Config(
            retries={"max_attempts": self.max_attempts, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
            # The checksums sent are the SHA-256 ones set below, not botocore's default CRC.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        )
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config
        )

    def prefixed(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    # -- errors

    @contextlib.contextmanager
    def _calling(self, what: str, key: str | None = None):
        """Translate the client's failures: missing -> FileNotFoundError, store down -> BlobStoreUnavailable."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if key is not None and (code in _MISSING_CODES or status == 404):
                raise FileNotFoundError(f"{self.describe()}: no object {key}") from None
            if code in _UNAVAILABLE_CODES or (status or 0) >= 500:
                raise BlobStoreUnavailable(f"{what} on {self.describe()} failed: {exc}") from exc
            raise
        except NoCredentialsError as exc:
            raise BlobError(
                f"{self.describe()}: no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            ) from exc
        except BotoCoreError as exc:  # connection refused, timeouts, closed connections
            raise BlobStoreUnavailable(f"{what} on {self.describe()} failed: {exc}") from exc


class S3BlobStore(S3Bucket):
    """Blobs as objects ``<prefix>/sha256/<ab>/<hex>`` of an S3 bucket, written once and locked.

    Each upload carries SHA-256 checksums the store checks before it keeps
    anything (the whole object's for a single PUT, each part's for a multipart
    upload, whose whole-file digest is re-checked here while the parts are
    read). ``If-None-Match: *`` makes the write conditional on the key being
    free. A bucket with Object Lock gets every object in COMPLIANCE retention
    for ``retention_days``; a bucket without it must be versioned, so an
    overwrite adds a version and never destroys the original. A bucket with
    neither is refused.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        retention_days: int = 3650,
        max_attempts: int = 3,
    ):
        super().__init__(bucket, prefix, endpoint_url=endpoint_url, region=region, max_attempts=max_attempts)
        if retention_days < 1:
            raise BlobError(f"CUSTODY_S3_RETENTION_DAYS must be at least 1, got {retention_days}")
        self.retention_days = retention_days
        self._protection: str | None = None  # "object-lock" or "versioning", once checked
        self._conditional_put = True  # If-None-Match honoured, until the store says otherwise

    def key(self, sha256: str) -> str:
        if not is_sha256_hex(sha256):
            raise BlobError(f"not a SHA-256 hex digest: {sha256!r}")
        sha256 = sha256.lower()
        return self.prefixed(f"sha256/{sha256[:2]}/{sha256}")

    # -- the bucket's guarantees

    def protection(self) -> str:
        """ "object-lock" or "versioning" (checked once); BlobError naming what is missing otherwise."""
        if self._protection is None:
            self._protection = self.check()["protection"]
        return self._protection

    def check(self) -> dict:
        """What the bucket offers: {"protection", "retention_days", "versioning"}; BlobError if it is not enough."""
        from botocore.exceptions import ClientError

        with self._calling("checking the bucket"):
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status in (403, 404):
                    raise BlobError(
                        f"bucket {self.bucket!r} does not exist or these credentials may not use it "
                        f"({self.describe()}, HTTP {status})"
                    ) from None
                raise
            versioning = self.client.get_bucket_versioning(Bucket=self.bucket).get("Status", "")
            try:
                lock = self.client.get_object_lock_configuration(Bucket=self.bucket)
                locked = lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
                    raise
                locked = False  # ObjectLockConfigurationNotFoundError, or not implemented by the store
        if locked:
            protection = "object-lock"
        elif versioning == "Enabled":
            protection = "versioning"
        else:
            raise BlobError(
                f"bucket {self.bucket!r} has neither Object Lock nor versioning enabled: evidence there "
                "could be overwritten or deleted. Create it with Object Lock (preferred: each blob is then "
                "kept in COMPLIANCE retention) or at least enable versioning."
            )
        return {"protection": protection, "retention_days": self.retention_days, "versioning": versioning}

    def _lock_arguments(self) -> dict:
        if self.protection() != "object-lock":
            return {}
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.retention_days)
        return {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": until}

    # -- reading

    def exists(self, sha256: str) -> bool:
        key = self.key(sha256)
        try:
            with self._calling("HEAD", key):
                self.client.head_object(Bucket=self.bucket, Key=key)
        except FileNotFoundError:
            return False
        return True

    def open(self, sha256: str) -> _ObjectReader:
        """The object's bytes as the store streams them (never held whole)."""
        key = self.key(sha256)
        with self._calling("GET", key):
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
        return _ObjectReader(answer["Body"], answer["ContentLength"], key)

    # -- writing

    def put_bytes(self, data: bytes, sha256: str) -> bool:
        if hashlib.sha256(data).hexdigest() != sha256.lower():
            raise BlobError(f"these {len(data)} bytes do not hash to {sha256}")
        key = self.key(sha256)
        if self.exists(sha256):
            return False
        return self._put_object(key, data, _b64_sha256(data))

    def put_file(self, source: str | os.PathLike, sha256: str, size: int) -> bool:
        """Upload the file at ``source`` as object ``sha256``, unless it is there already.

        ``source`` is left in place for its owner to delete (it is not needed
        once this returns). The file's SHA-256 is the object's name: a single
        PUT carries it for the store to check; a multipart upload carries each
        part's, and the whole is re-hashed here before the upload is completed.
        """
        key = self.key(sha256)
        if self.exists(sha256):
            # Written once: a damaged object is not replaced (a lock forbids it);
            # fixity and verify_log report it.
            return False
        if size <= S3_SINGLE_PUT_MAX:
            with open(source, "rb") as f:
                data = f.read()
            if hashlib.sha256(data).hexdigest() != sha256.lower():
                raise BlobError(f"{source} no longer hashes to {sha256}: not stored")
            return self._put_object(key, data, _b64_sha256(data))
        return self._put_multipart(key, source, sha256, size)

    def _put_object(self, key: str, body: bytes, checksum: str) -> bool:
        from botocore.exceptions import ClientError

        arguments = {"Bucket": self.bucket, "Key": key, "Body": body, "ChecksumSHA256": checksum}
        arguments.update(self._lock_arguments())
        with self._calling("PUT", key):
            try:
                self._conditionally(self.client.put_object, arguments)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                    return False  # stored meanwhile by a concurrent upload of the same bytes
                raise
        return True

    def _conditionally(self, call, arguments: dict):
        """``call`` with If-None-Match: * (write once), or without it on a store that does not implement it."""
        from botocore.exceptions import ClientError

        if self._conditional_put:
            try:
                return call(**arguments, IfNoneMatch="*")
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NotImplemented":
                    raise
                logger.warning("%s does not implement If-None-Match: relying on HEAD first", self.describe())
                self._conditional_put = False
        return call(**arguments)

    def _put_multipart(self, key: str, source, sha256: str, size: int) -> bool:
        from botocore.exceptions import ClientError

        part_size = max(S3_PART_SIZE, -(-size // S3_MAX_PARTS))
        with self._calling("starting a multipart upload", key):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256", **self._lock_arguments()
            )["UploadId"]
        done = False
        try:
            whole = hashlib.sha256()
            parts = []
            # A few parts in flight, so the store's latency overlaps the reading
            # and hashing of the next one; memory holds S3_PARTS_IN_FLIGHT parts.
            with open(source, "rb") as f, ThreadPoolExecutor(S3_PARTS_IN_FLIGHT) as pool:
                pending: deque = deque()
                number = 1
                while part := f.read(part_size):
                    whole.update(part)
                    checksum = _b64_sha256(part)
                    sent = pool.submit(self._upload_part, key, upload_id, number, part, checksum)
                    pending.append((number, checksum, sent))
                    del part
                    number += 1
                    if len(pending) == S3_PARTS_IN_FLIGHT:
                        parts.append(self._part_sent(*pending.popleft()))
                while pending:
                    parts.append(self._part_sent(*pending.popleft()))
            if whole.hexdigest() != sha256.lower():
                raise BlobError(f"{source} no longer hashes to {sha256}: not stored")
            arguments = {
                "Bucket": self.bucket,
                "Key": key,
                "UploadId": upload_id,
                "MultipartUpload": {"Parts": parts},
            }
            with self._calling("completing a multipart upload", key):
                try:
                    self._conditionally(self.client.complete_multipart_upload, arguments)
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") == "PreconditionFailed":
                        return False
                    raise
            done = True
            return True
        finally:
            if not done:
                self._abort(key, upload_id)

    @staticmethod
    def _part_sent(number: int, checksum: str, sent) -> dict:
        """The part's entry for completing the upload, once the store took it (its failure raised here)."""
        return {"PartNumber": number, "ETag": sent.result(), "ChecksumSHA256": checksum}

    def _upload_part(self, key: str, upload_id: str, number: int, part: bytes, checksum: str) -> str:
        """Send one part with its SHA-256 (the store refuses it if the bytes differ); returns its ETag."""
        with self._calling(f"uploading part {number}", key):
            return self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )["ETag"]

    def _abort(self, key: str, upload_id: str) -> None:
        """Drop a multipart upload's parts (best effort: a store that is down keeps them until it expires them)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("could not abort the multipart upload of %s: %s", key, exc)


STAGING_PIECE = 16 * 1024 * 1024  # the largest staged object: what one node holds in memory at a time


class UploadStaging(S3Bucket):
    """The bytes of unfinished resumable uploads, shared by every web node (CUSTODY_UPLOAD_STAGING).

    Each chunk a node accepts is copied, before the offset that counts it is
    recorded, into objects ``<prefix>/<upload id>/<start>-<end>-<nonce>`` of
    at most STAGING_PIECE bytes, each sent with its SHA-256 for the store to
    check. The upload's record lists them with their digests (``staged``), so
    a node that has not seen the upload rebuilds its local file from them,
    each piece checked against the record, and goes on. The objects are
    deleted once the upload is evidence or abandoned: the bucket wants
    neither Object Lock nor a default retention (versioning only keeps
    deleted pieces around until a lifecycle rule expires them).
    """

    def key(self, upload_id, name: str = "") -> str:
        return self.prefixed(f"{upload_id}/{name}")

    def put(self, upload_id, fd: int, start: int, end: int) -> list[dict]:
        """Copy bytes ``start:end`` of the upload's local file into the store; their record entries."""
        pieces: list[dict] = []
        try:
            position = start
            while position < end:
                size = min(STAGING_PIECE, end - position)
                data = _pread_exactly(fd, size, position)
                digest = hashlib.sha256(data).digest()
                name = f"{position:016d}-{position + size:016d}-{secrets.token_hex(4)}"
                key = self.key(upload_id, name)
                with _client_errors(self, key), self._calling("staging an upload's bytes"):
                    self.client.put_object(
                        Bucket=self.bucket,
                        Key=key,
                        Body=data,
                        ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
                    )
                pieces.append(
                    {"start": position, "end": position + size, "name": name, "sha256": digest.hex()}
                )
                position += size
        except BaseException:
            self.delete(upload_id, pieces)
            raise
        return pieces

    def restore(self, upload_id, pieces: list[dict], fd: int, start: int) -> int:
        """Write the staged bytes from ``start`` on into the local file ``fd``; returns where they end.

        Stops at a gap or an overlap (a record entry that is not a
        well-formed piece leaves a gap), or at a piece that is missing or
        whose bytes are not the ones recorded (logged): the upload then goes
        on from there, as after a lost chunk.
        """
        position = start
        for piece in staged_chain(pieces):
            if piece["end"] <= position:
                continue
            key = self.key(upload_id, piece["name"])
            size = piece["end"] - piece["start"]
            try:
                with _client_errors(self, key), self._calling("fetching an upload's staged bytes", key):
                    answer = self.client.get_object(Bucket=self.bucket, Key=key)
                    # Never more than the piece's size (and one byte to see it is longer) in memory.
                    length = answer.get("ContentLength")
                    data = _read_at_most(answer["Body"], size + 1) if length in (None, size) else b""
                    answer["Body"].close()
            except FileNotFoundError:
                data = None
            if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != piece["sha256"]:
                logger.warning(
                    "%s: staged piece %s is missing or does not hold the bytes recorded for it",
                    self.describe(),
                    key,
                )
                break
            tail = memoryview(data)[position - piece["start"] :]
            while tail:
                written = os.pwrite(fd, tail, position)
                tail, position = tail[written:], position + written
        os.fsync(fd)
        return position

    def delete(self, upload_id, pieces: list[dict]) -> None:
        """Remove these pieces (best effort: what stays behind is removed by ``sweep``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        keys = [{"Key": self.key(upload_id, piece["name"])} for piece in staged_pieces(pieces)]
        for first in range(0, len(keys), 1000):
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys[first : first + 1000]})
            except (BotoCoreError, ClientError) as exc:
                logger.warning(
                    "%s: could not remove staged pieces of %s: %s", self.describe(), upload_id, exc
                )
                return

    def sweep(self, unfinished: set[str], older_than: dt.datetime) -> int:
        """Remove pieces of uploads not in ``unfinished`` last written before ``older_than``; how many.

        Only keys ``<prefix>/<upload id>/...`` are staged pieces: anything else
        in the bucket (a staging URL without a prefix, or one that shares the
        blob store's place) is never touched.
        """
        root = f"{self.prefix}/" if self.prefix else ""
        stale: list[dict] = []
        with self._calling("listing staged uploads"):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=root)
            for page in pages:
                for item in page.get("Contents", []):
                    upload_id, slash, _ = item["Key"][len(root) :].partition("/")
                    if not slash or not _is_upload_id(upload_id):
                        continue  # not a staged piece: the bucket (or prefix) holds other things too
                    if upload_id not in unfinished and item["LastModified"] < older_than:
                        stale.append({"Key": item["Key"]})
        for first in range(0, len(stale), 1000):
            with self._calling("removing stale staged pieces"):
                self.client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": stale[first : first + 1000]}
                )
        return len(stale)


_PIECE_NAME = re.compile(r"([0-9]{16})-([0-9]{16})-[0-9a-f]{8}")


def _is_upload_id(name: str) -> bool:
    try:
        return str(uuid.UUID(name)) == name
    except ValueError:
        return False


def staged_pieces(record) -> list[dict]:
    """The well-formed entries of an upload's ``staged`` record, in their order; anything else is left out.

    A piece is ``{"start", "end", "name", "sha256"}`` with 0 <= start < end,
    at most STAGING_PIECE bytes, and the name ``put`` gives it, which says
    where its bytes go: a record edited to move a piece, or to name an
    object outside the upload's own prefix, is not believed.
    """
    if not isinstance(record, list):
        return []
    pieces = []
    for piece in record:
        if not isinstance(piece, dict):
            continue
        start, end, name = piece.get("start"), piece.get("end"), piece.get("name")
        if type(start) is not int or type(end) is not int or not isinstance(name, str):
            continue
        match = _PIECE_NAME.fullmatch(name)
        if (
            match is None
            or not 0 <= start < end <= start + STAGING_PIECE
            or (int(match[1]), int(match[2])) != (start, end)
            or not is_sha256_hex(piece.get("sha256"))
        ):
            continue
        pieces.append(piece)
    return pieces


def staged_chain(record) -> list[dict]:
    """The pieces of a ``staged`` record that follow on from byte 0, each where the last ended.

    ``put`` stages each byte once, in order; the chain ends at a gap, or
    where pieces overlap (each may check out alone, not together).
    """
    chain: list[dict] = []
    follows = 0
    for piece in sorted(staged_pieces(record), key=lambda p: p["start"]):
        if piece["start"] != follows:
            break
        chain.append(piece)
        follows = piece["end"]
    return chain


@contextlib.contextmanager
def _client_errors(bucket: S3Bucket, key: str):
    """Any other refusal of the store (access denied, a bad request): a BlobError, not a crash."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        raise BlobError(f"{bucket.describe()}: the store refused {key}: {exc}") from exc


def _read_at_most(body, limit: int) -> bytes:
    """Up to ``limit`` bytes of a response body: short reads are read on, never more is held."""
    parts, total = [], 0
    while total < limit:
        data = body.read(limit - total)
        if not data:
            break
        parts.append(data)
        total += len(data)
    return b"".join(parts)


def _pread_exactly(fd: int, size: int, offset: int) -> bytes:
    parts, wanted = [], size
    while wanted:
        data = os.pread(fd, wanted, offset + size - wanted)
        if not data:
            raise BlobError(f"the file ends before byte {offset + size}")
        parts.append(data)
        wanted -= len(data)
    return b"".join(parts)


def parse_blob_store(url: str) -> tuple[str, str, str]:
    """CUSTODY_BLOB_STORE -> ("file", "", "") or ("s3", bucket, prefix); BlobError for anything else."""
    url = (url or "").strip()
    if url in ("", "file"):
        return "file", "", ""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise BlobError(
            f"CUSTODY_BLOB_STORE must be empty (the data directory) or s3://bucket/prefix, got {url!r}"
        )
    return "s3", parts.netloc, parts.path.strip("/")


@functools.cache
def blob_store() -> BlobStore:
    """The configured store, built on first use (never at import time)."""
    from django.conf import settings

    kind, bucket, prefix = parse_blob_store(settings.CUSTODY_BLOB_STORE)
    if kind == "s3":
        return S3BlobStore(
            bucket,
            prefix,
            **_s3_connection(settings),
            retention_days=settings.CUSTODY_S3_RETENTION_DAYS,
        )
    return LocalBlobStore(settings.CUSTODY_BLOB_DIR)


@functools.cache
def upload_staging() -> UploadStaging | None:
    """The store shared by web nodes for unfinished resumable uploads, or None (each node keeps its own)."""
    from django.conf import settings

    kind, bucket, prefix = parse_blob_store(settings.CUSTODY_UPLOAD_STAGING)
    if kind != "s3":
        return None
    return UploadStaging(bucket, prefix, **_s3_connection(settings))


def _s3_connection(settings) -> dict:
    """How to reach the S3 store: the same endpoint, region and retries for every bucket the server uses."""
    return {
        "endpoint_url": settings.CUSTODY_S3_ENDPOINT_URL,
        "region": settings.CUSTODY_S3_REGION,
        "max_attempts": settings.CUSTODY_S3_MAX_ATTEMPTS,
    }
