"""Resumable evidence uploads over tus 1.0 (core, creation, checksum,
termination, expiration), so stock tus clients can send multi-GB files over
connections that break.

    OPTIONS /api/v1/uploads/          what this server supports
    POST    /api/v1/uploads/          Upload-Length, Upload-Metadata -> 201, Location
    HEAD    /api/v1/uploads/{id}/     Upload-Offset: how much has been kept
    PATCH   /api/v1/uploads/{id}/     the next bytes, at Upload-Offset
    DELETE  /api/v1/uploads/{id}/     give up (termination)
    GET     /api/v1/uploads/{id}/     JSON: progress, and the evidence once complete (not tus)

Upload-Metadata keys: ``case`` (id or reference, required), ``filename`` (or
``name``), ``description``, ``source`` and ``sha256`` (declared; a mismatch is
refused with 422 when the last byte arrives and nothing is kept).

When the last byte arrives the file becomes evidence through the same intake
service as a multipart upload (blob, log entry, signed receipt); the PATCH
answer names it in a ``Custody-Evidence`` header.

Several web nodes: with an upload staging store (CUSTODY_UPLOAD_STAGING,
custody/storage.py UploadStaging) each chunk is copied there before its
offset is recorded, so a PATCH may land on any node: one that has not seen
the upload rebuilds its local file from the staged pieces (each checked
against the digest in the upload's record) and goes on. One PATCH at a time
per upload across nodes: a PostgreSQL advisory lock beside the file lock.

Hashing: as on the multipart path, bytes are hashed as they are written and
the file is not read back for it. Each process keeps the hash state of the
uploads it has served. A PATCH that lands in a process that has not seen the
earlier bytes (the other gunicorn worker, or after a restart) first hashes
the part on disk that this state has not covered, so each process reads each
byte at most once more.

Progress seal: each time the server counts bytes (or links the evidence) it
records, beside the offset, the SHA-256 of the bytes counted so far (taken
from the running hash) and an HMAC under SECRET_KEY of the offset, that
digest, the evidence and the staged pieces (models.upload_progress_mac).
Wherever that progress is read (HEAD, GET, PATCH, the finished answer, the
sweeper, verify_log) a record whose seal does not hold is refused (410), and
a process that catches up from the partial file checks the SHA-256 of what it
re-read against the sealed one before it adds a byte: an offset moved over
bytes planted in the data directory, bytes rewritten there, or an evidence
link set in the table never become what the client is told it sent. A
process that holds the hash state re-reads too if the partial file's ctime is
neither the one it left nor the one sealed by the last process that counted
bytes (_forget_if_touched): a write made there outside the server shows.
"""

from __future__ import annotations

import base64
import binascii
import collections
import copy
import datetime as dt
import errno
import fcntl
import hashlib
import logging
import os
import threading
import uuid
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import Http404, HttpResponse
from django.utils import timezone
from django.utils.http import http_date
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from . import limits, services
from .hashing import MultiHasher
from .models import (
    ResumableUpload,
    seal_upload_progress,
    sealed_by_this_server,
    upload_progress_intact,
    upload_record_mac,
)
from .permissions import Forbidden, client_address, require_write
from .serializers import EvidenceSerializer, UploadStatusSerializer
from .storage import (
    BlobError,
    BlobStoreUnavailable,
    _pread_exactly,
    fsync_dir,
    make_dirs_durable,
    staged_chain,
    staged_pieces,
    upload_staging,
)
from .uploads import _read_socket_directly, _Writeback

logger = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,checksum,termination,expiration"
CHECKSUM_ALGORITHMS = ("sha1", "md5", "sha256")
OFFSET_TYPE = "application/offset+octet-stream"
_MAX_STATES = 16  # hash states kept per process (each holds two idle threads)
# A staged piece smaller than this that the next chunk follows is staged again
# with it, as one piece: tiny PATCHes then add no objects (and no record
# entries), at the price of sending at most this many bytes again per PATCH.
_RESTAGE_BELOW = 256 << 10


class TusError(Exception):
    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class _WriteFailed(Exception):
    """The disk did not take a piece of the body: ``written`` bytes before it were written whole."""

    def __init__(self, written: int, cause: str, error: OSError | None = None):
        super().__init__(cause)
        self.written, self.cause, self.error = written, cause, error


def _storage_error(cause: str, error: OSError | None, kept: int) -> TusError:
    """The answer when bytes could not be stored: 507 when the disk is full, 503 otherwise."""
    full = error is None or error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
    return TusError(
        507 if full else 503,
        f"the server could not store these bytes ({cause}"
        + ("; its disk is full" if full else "")
        + f"); {kept} bytes of the upload are kept: resume from Upload-Offset later",
        {"Upload-Offset": str(kept)},
    )


def upload_dir() -> Path:
    path = Path(settings.CUSTODY_RESUMABLE_DIR)
    make_dirs_durable(path)
    return path


def data_path(upload_id) -> Path:
    return upload_dir() / str(upload_id)


def expires_at(upload: ResumableUpload) -> dt.datetime:
    return upload.updated_at + dt.timedelta(seconds=settings.CUSTODY_UPLOAD_EXPIRY_SECONDS)


# --- per-process hash states ------------------------------------------------------------


class _HashState:
    def __init__(self, vouched: int = 0, staged: list[dict] = (), ctime: int | None = None):
        self.hasher = MultiHasher()
        self.offset = 0  # bytes fed to the hasher
        # Bytes of the local file this process vouches for: its own, counted, or restored and checked.
        self.vouched = vouched
        # With a staging store: the names of the pieces recorded then.
        self.staged: list[str] = [p["name"] for p in staged]
        # The local file's st_ctime_ns when this process last left it.
        self.ctime = ctime


_states: collections.OrderedDict[uuid.UUID, _HashState] = collections.OrderedDict()
_states_lock = threading.Lock()


def _take_state(upload_id) -> _HashState:
    """The state for this upload, out of the cache while a PATCH uses it (or a new one)."""
    with _states_lock:
        state = _states.pop(upload_id, None)
    return state or _HashState()


def _own_offset(upload_id, staged: list[dict]) -> int:
    """How many bytes of the upload this process wrote and still vouches for.

    0 unless the record still begins with the staged pieces it listed
    when this process last counted bytes: otherwise another node has rolled
    the upload back since (and the client may have sent other bytes), so
    this process's bytes and its hash state of them are stale: the state
    is dropped, and the staged pieces are the authority.
    """
    with _states_lock:
        state = _states.get(upload_id)
        if state is None:
            return 0
        if [p["name"] for p in staged[: len(state.staged)]] == state.staged:
            return state.vouched
        del _states[upload_id]
    state.hasher.abort()
    return 0


def _forget_if_touched(upload: ResumableUpload, fd: int) -> None:
    """Drop this process's state of the upload if the local file changed since it was last left
    by this process or by the one that last counted bytes (its ctime is neither's).

    Any write sets a file's ctime, and nobody can set it back: so a file written to outside the
    server between two PATCHes is hashed again from the start, and checked against the sealed
    digest, instead of being trusted for the bytes this state hashed as they arrived. (A write
    within the same clock tick as the server's last one is not seen where ctime is kept only to
    the tick, a few milliseconds: before Linux 6.13's fine-grained timestamps.)
    """
    ctime = os.fstat(fd).st_ctime_ns
    with _states_lock:
        state = _states.get(upload.pk)
        if state is None or ctime in (state.ctime, upload.file_ctime):
            return
        del _states[upload.pk]
    logger.warning(
        "resumable upload %s: its partial file changed since it was last written; re-read", upload.pk
    )
    state.hasher.abort()


def _keep_state(upload_id, state: _HashState) -> None:
    with _states_lock:
        _states[upload_id] = state
        while len(_states) > _MAX_STATES:
            _, oldest = _states.popitem(last=False)
            oldest.hasher.abort()


def _drop_state(upload_id) -> None:
    with _states_lock:
        state = _states.pop(upload_id, None)
    if state is not None:
        state.hasher.abort()


# --- the schema: tus headers (custody.api.ContractSchema adds the common errors) ----------


def _header(name: str, description: str, *, required: bool = False, response=False, **kwargs):
    return OpenApiParameter(
        name,
        str,
        location=OpenApiParameter.HEADER,
        required=required,
        description=description,
        response=response,
        **kwargs,
    )


def _tus_schema(*, request_headers=(), response_headers=(), errors=(), **kwargs):
    """extend_schema for a tus operation: Tus-Resumable both ways, and the operation's own errors."""
    from .api import errors as error_responses

    responses = kwargs.pop("responses")
    return extend_schema(
        parameters=[
            _header(
                "Tus-Resumable",
                f"the tus protocol version: {TUS_VERSION} (412 otherwise)",
                required=True,
                enum=[TUS_VERSION],
            ),
            *request_headers,
            _header("Tus-Resumable", "the protocol version this server speaks", required=True, response=True),
            _header("Tus-Version", "on a 412: the versions this server speaks", response=[412]),
            *response_headers,
        ],
        responses={**responses, **error_responses(412, *errors)},
        **kwargs,
    )


_OFFSET_PATTERN = r"^[0-9]+$"
_UPLOAD_ID = OpenApiParameter("upload_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
_EXPIRES = "when the upload expires if no more bytes arrive (HTTP date)"
_EVIDENCE = "once complete: the evidence's API path"


# --- header parsing ----------------------------------------------------------------------


def _int_header(request, name: str) -> int:
    raw = request.headers.get(name)
    if raw is None:
        raise TusError(400, f"the {name} header is required")
    if not raw.isdigit():
        raise TusError(400, f"{name} must be a non-negative integer, not {raw[:40]!r}")
    return int(raw)


def parse_metadata(raw: str) -> dict[str, str]:
    """Upload-Metadata: comma-separated ``key base64(value)`` pairs."""
    result = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        key, _, value = pair.partition(" ")
        if not key or key in result:
            raise TusError(400, f"Upload-Metadata: empty or repeated key in {pair[:60]!r}")
        try:
            result[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise TusError(
                400, f"Upload-Metadata: the value of {key!r} is not base64 of UTF-8 text"
            ) from None
    return result


def _parse_checksum(request):
    raw = request.headers.get("Upload-Checksum")
    if raw is None:
        return None
    algorithm, _, value = raw.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise TusError(400, f"Upload-Checksum: unsupported algorithm {algorithm[:20]!r}")
    try:
        expected = base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raise TusError(400, "Upload-Checksum: the digest is not base64") from None
    return algorithm, expected


# --- the views ----------------------------------------------------------------------------


class _TusView(APIView):
    """tus headers on every answer; errors as JSON ``{"detail": ...}`` like the rest of the API."""

    def handle_exception(self, exc):
        if isinstance(exc, TusError):
            response = Response({"detail": exc.detail}, status=exc.status)
            for name, value in exc.headers.items():
                response[name] = value
            return response
        return super().handle_exception(exc)

    def get_permissions(self):
        if self.request.method == "OPTIONS":
            return []  # capabilities are public, as tus clients expect
        return super().get_permissions()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise TusError(
                412, f"send Tus-Resumable: {TUS_VERSION} (the protocol version this server speaks)"
            )

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Tus-Resumable"] = TUS_VERSION
        if response.status_code == 412 or request.method == "OPTIONS":
            response["Tus-Version"] = TUS_VERSION
        response["Cache-Control"] = "no-store"
        if request.method == "HEAD":
            # No body on a HEAD answer, errors included: gunicorn sends what it
            # is given, and the client would read that body as the next answer.
            if hasattr(response, "render") and not response.is_rendered:
                response.render()
            response.content = b""
        return response

    def options(self, request, *args, **kwargs):
        response = HttpResponse(status=204)
        response["Tus-Extension"] = EXTENSIONS
        response["Tus-Checksum-Algorithm"] = ",".join(CHECKSUM_ALGORITHMS)
        return response

    def get_upload(self, request, upload_id) -> ResumableUpload:
        """The caller's own upload; anyone else's is a 404, like everything they cannot see."""
        try:
            upload_id = uuid.UUID(str(upload_id))
        except ValueError:
            raise Http404("upload not found") from None
        upload = (
            ResumableUpload.objects.select_related("case")
            .filter(pk=upload_id, created_by=request.user)
            .first()
        )
        if upload is None:
            raise Http404("upload not found")
        if not upload_progress_intact(upload):
            if request.method == "DELETE":
                return upload  # the client gives it up: delete() removes it as unfinished
            raise progress_refused(upload)
        if upload.evidence_id is None and expires_at(upload) < timezone.now():
            discard(upload)
            raise TusError(410, "this upload expired; start a new one")
        return upload


class UploadCreateView(_TusView):
    @_tus_schema(
        summary="Start a resumable (tus 1.0) upload",
        description="Upload-Metadata keys: case (required), filename, description, source, sha256; "
        "values base64. Answers 201 with the upload's URL in Location; an Upload-Length of 0 makes "
        "the evidence at once (Custody-Evidence).",
        request=None,
        request_headers=[
            _header("Upload-Length", "the file's size in bytes", required=True, pattern=_OFFSET_PATTERN),
            _header("Upload-Metadata", "comma-separated 'key base64(value)' pairs; 'case' is required"),
        ],
        response_headers=[
            _header("Location", "the upload's URL", required=True, response=[201]),
            _header("Upload-Offset", "bytes kept so far (0)", required=True, response=[201]),
            _header("Upload-Expires", _EXPIRES, required=True, response=[201]),
            _header("Custody-Evidence", _EVIDENCE, response=[201]),
        ],
        responses={201: None},
        errors=(400, 404, 409, 413, 422),
    )
    def post(self, request):
        if request.headers.get("Upload-Defer-Length"):
            raise TusError(400, "Upload-Defer-Length is not supported: send Upload-Length")
        length = _int_header(request, "Upload-Length")
        meta = parse_metadata(request.headers.get("Upload-Metadata", ""))
        upload = start_upload(
            actor=request.user,
            length=length,
            case_ref=meta.get("case", ""),
            filename=meta.get("filename") or meta.get("name") or "",
            description=meta.get("description", ""),
            source=meta.get("source", ""),
            declared_sha256=meta.get("sha256", ""),
        )
        location = request.build_absolute_uri(f"/api/v1/uploads/{upload.pk}/")
        if length == 0:
            response = finish(request, upload, _HashState())
        else:
            response = HttpResponse(status=201)
        response.status_code = 201
        response["Location"] = location
        response["Upload-Offset"] = "0"
        response["Upload-Expires"] = http_date(expires_at(upload).timestamp())
        return response


class UploadView(_TusView):
    @_tus_schema(
        operation_id="v1_uploads_offset",
        summary="How many bytes of a resumable upload are kept (tus)",
        request_headers=[_UPLOAD_ID],
        response_headers=[
            _header("Upload-Offset", "bytes kept so far", required=True, response=[200]),
            _header("Upload-Length", "the file's size", required=True, response=[200]),
            _header("Upload-Expires", _EXPIRES + "; absent once complete", response=[200]),
            _header("Custody-Evidence", _EVIDENCE, response=[200]),
        ],
        responses={200: None},
        errors=(410,),
    )
    def head(self, request, upload_id):
        upload = self.get_upload(request, upload_id)
        response = HttpResponse(status=200)
        response["Upload-Offset"] = str(upload.offset)
        response["Upload-Length"] = str(upload.length)
        if upload.evidence_id is None:
            response["Upload-Expires"] = http_date(expires_at(upload).timestamp())
        else:
            response["Custody-Evidence"] = f"/api/v1/evidence/{upload.evidence_id}/"
        return response

    @_tus_schema(
        summary="Progress of a resumable upload, and its evidence once complete",
        request_headers=[_UPLOAD_ID],
        responses={200: UploadStatusSerializer},
        errors=(410,),
    )
    def get(self, request, upload_id):
        upload = self.get_upload(request, upload_id)
        return Response(
            {
                "id": str(upload.pk),
                "case": str(upload.case_id),
                "length": upload.length,
                "offset": upload.offset,
                "complete": upload.evidence_id is not None,
                "expires": None if upload.evidence_id else expires_at(upload),
                "evidence": EvidenceSerializer(upload.evidence).data if upload.evidence_id else None,
            }
        )

    @_tus_schema(
        summary="Send the next bytes of a resumable upload",
        description="The body is the bytes from Upload-Offset on (the offset HEAD gave). The answer "
        "to the last byte names the evidence in Custody-Evidence.",
        request={OFFSET_TYPE: OpenApiTypes.BINARY},
        request_headers=[
            _UPLOAD_ID,
            _header("Upload-Offset", "where these bytes start", required=True, pattern=_OFFSET_PATTERN),
            _header("Upload-Checksum", "'<sha1|md5|sha256> <base64 digest>' of this body"),
        ],
        response_headers=[
            _header("Upload-Offset", "bytes kept so far", required=True, response=[204]),
            _header("Upload-Offset", "bytes kept so far", response=[400, 409, 503, 507]),
            _header("Upload-Expires", _EXPIRES, response=[204]),
            _header("Custody-Evidence", _EVIDENCE, response=[204, 409]),
        ],
        responses={204: None},
        errors=(400, 409, 410, 411, 413, 415, 422, 423, 460, 503, 507),
    )
    def patch(self, request, upload_id):
        upload = self.get_upload(request, upload_id)
        # Who may write is checked now, not only when the upload began: a user
        # made auditor or taken off the case since then sends no more bytes.
        # (ReadOnlyForAuditors has refused an auditor already; this also covers the case.)
        require_write(request.user, upload.case)
        if request.content_type.split(";")[0].strip() != OFFSET_TYPE:
            raise TusError(415, f"send the bytes as Content-Type: {OFFSET_TYPE}")
        offset = _int_header(request, "Upload-Offset")
        content_length = request.META.get("CONTENT_LENGTH") or ""
        if not content_length.isdigit():
            raise TusError(411, "send the bytes with a Content-Length header")
        count = int(content_length)
        if upload.evidence_id is not None:
            return answer_finished(upload, offset, count)
        checksum = _parse_checksum(request)
        if offset + count > upload.length:
            raise TusError(
                413, f"these bytes would end at {offset + count}, past Upload-Length {upload.length}"
            )
        try:
            limits.check_free_space(upload_dir(), count)
            return receive(request, upload, offset, count, checksum)
        except limits.UploadRefused:
            if upload_staging() is not None:
                # This host's disk is short, not the upload over a limit: the
                # counted bytes are in the staging store, and another host (or
                # this one, later) goes on from them. Only this host's copy goes.
                kept = _forget_here(upload)
                raise TusError(
                    507,
                    "this server's disk cannot take these bytes at the moment; nothing of them was "
                    f"kept, and the {kept} bytes counted before are: resume from Upload-Offset later",
                    {"Upload-Offset": str(kept), "Retry-After": "30"},
                ) from None
            # Over a limit now (the disk filled meanwhile, or the settings
            # changed): the upload goes, as a multipart upload over a limit does.
            _discard_if_unfinished(upload)
            raise

    @_tus_schema(
        summary="Abandon a resumable upload (tus termination)",
        request_headers=[_UPLOAD_ID],
        responses={204: None},
        errors=(410, 423),
    )
    def delete(self, request, upload_id):
        upload = self.get_upload(request, upload_id)
        if upload.evidence_id is None or not upload_progress_intact(upload):
            # (An evidence link the server did not seal is no evidence of this upload's.)
            with _locked(upload):
                discard(upload)
        else:
            upload.delete()  # only the upload's record: the evidence stays, as all evidence does
        return HttpResponse(status=204)


# --- the work -----------------------------------------------------------------------------


def start_upload(
    *, actor, length: int, case_ref: str, filename: str, description: str, source: str, declared_sha256: str
) -> ResumableUpload:
    from .api import find_case  # the API's case lookup: by id or reference, 404 when not visible

    if not actor.can_write:
        raise Forbidden("auditors have read-only access")
    if not case_ref:
        raise TusError(400, "Upload-Metadata needs 'case' (the case id or reference)")
    case = find_case(actor, case_ref)
    require_write(actor, case)
    declared = services.normalize_declared_sha256(declared_sha256)
    # Every limit, from Upload-Length, before anything is made (receive() checks the disk again).
    limits.check_size(length)
    limits.check_case_quota(case, length)
    limits.check_free_space(upload_dir(), length)
    upload = ResumableUpload(
        case=case,
        created_by=actor,
        length=length,
        filename=services.sanitize_name(filename) if filename else "",
        description=description,
        source=source[:500],
        declared_sha256=declared,
    )
    upload.mac = upload_record_mac(upload, settings.SECRET_KEY)
    upload.offset_sha256 = EMPTY_SHA256
    seal_upload_progress(upload)
    upload.save(force_insert=True)
    path = data_path(upload.pk)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    # The offset will vouch for bytes in this file: its name must survive a
    # crash as surely as the bytes (each PATCH fsyncs those).
    fsync_dir(path.parent)
    return upload


class _locked:
    """An exclusive lock on the upload: one PATCH (or DELETE) at a time, in any process of any node.

    The lock on the local file serves the processes of one node; on
    PostgreSQL a session advisory lock named after the upload serves the
    nodes (released with the session if the process dies, as the file lock
    is). With a staging store a node that has not seen the upload makes
    its local file here, empty: receive() fills it from the staged pieces.
    """

    BUSY = "another request is writing to this upload; retry when it ends"

    def __init__(self, upload: ResumableUpload):
        self.upload = upload
        self.advisory = None

    def __enter__(self) -> int:
        flags = os.O_RDWR | (os.O_CREAT if upload_staging() is not None else 0)
        try:
            self.fd = os.open(data_path(self.upload.pk), flags, 0o600)
        except FileNotFoundError:
            raise TusError(410, "this upload's bytes are gone; start a new one") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise TusError(423, self.BUSY) from None
        if connection.vendor == "postgresql":
            key = int.from_bytes(self.upload.pk.bytes[:8], "big", signed=True)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
                taken = cursor.fetchone()[0]
            if not taken:
                os.close(self.fd)
                raise TusError(423, self.BUSY)
            self.advisory = key
        return self.fd

    def __exit__(self, *exc) -> None:
        os.close(self.fd)
        if self.advisory is not None:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [self.advisory])
            except DatabaseError:
                # The session failed or is gone: end it, so its lock ends with it.
                connection.close()


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def progress_refused(upload: ResumableUpload) -> TusError:
    """The answer for an upload whose recorded progress the server did not seal: refused, for good."""
    if upload.progress_mac is None:
        logger.error("resumable upload %s: its progress carries no seal; refused", upload.pk)
        return TusError(
            410,
            "this upload's progress carries no seal of this server (it was under way when the server "
            "was upgraded, and its partial file could not be checked then): nothing of it will be "
            "evidence; start a new upload",
        )
    logger.error("resumable upload %s: its progress no longer matches its HMAC; refused", upload.pk)
    return TusError(
        410,
        "this upload's recorded state (how many bytes were received, their digest, the pieces "
        "that hold them or the item it became) was changed outside the server: nothing of it will "
        "be evidence; tell the server's operator, and start a new upload",
    )


def _partial_file_refused(upload: ResumableUpload, why: str) -> TusError:
    logger.error("resumable upload %s: %s; refused", upload.pk, why)
    return TusError(
        410,
        f"this upload's partial file on the server {why} (it was changed or lost outside the "
        "server): nothing of it will be evidence; tell the server's operator, and start a new upload",
    )


def _record_progress(upload: ResumableUpload, **filters) -> int:
    """Record and seal the progress the server has just counted in ``upload``; how many rows changed."""
    seal_upload_progress(upload)
    return ResumableUpload.objects.filter(pk=upload.pk, **filters).update(
        offset=upload.offset,
        offset_sha256=upload.offset_sha256,
        file_ctime=upload.file_ctime,
        staged=upload.staged,
        progress_mac=upload.progress_mac,
        updated_at=upload.updated_at,
    )


def _roll_back(upload: ResumableUpload, fd: int, on_disk: int) -> None:
    """Count only what the local file holds of the staged pieces (``on_disk`` bytes of them).

    The pieces that follow on from byte 0 within those bytes are re-read from
    the local file, each checked against its digest in the sealed record, and
    that prefix (its SHA-256 from the same reading) is sealed as the upload's
    progress. This process keeps the hash state of it.
    """
    state = _HashState()
    kept = []
    for piece in staged_chain(upload.staged):
        if piece["end"] > on_disk:
            break
        data = _pread_exactly(fd, piece["end"] - piece["start"], piece["start"])
        if hashlib.sha256(data).hexdigest() != piece["sha256"]:
            break
        state.hasher.update(data)
        state.offset = piece["end"]
        kept.append(piece)
    os.ftruncate(fd, state.offset)
    state.ctime = upload.file_ctime = os.fstat(fd).st_ctime_ns
    upload.offset, upload.staged = state.offset, kept
    upload.offset_sha256 = state.hasher.hexdigest_so_far("sha256")
    _record_progress(upload)
    state.vouched, state.staged = state.offset, [p["name"] for p in kept]
    _keep_state(upload.pk, state)


def _check_offset(offset: int, upload: ResumableUpload) -> None:
    if offset != upload.offset:
        raise TusError(
            409,
            f"Upload-Offset {offset} does not match the {upload.offset} bytes kept so far",
            {"Upload-Offset": str(upload.offset)},
        )


def _staging_failed(exc: Exception, kept: int) -> TusError:
    return TusError(
        503,
        f"the upload staging store is unavailable ({exc}); {kept} bytes are kept, retry from there",
        {"Upload-Offset": str(kept), "Retry-After": "30"},
    )


def receive(request, upload: ResumableUpload, offset: int, count: int, checksum) -> HttpResponse:
    with _locked(upload) as fd:
        upload.refresh_from_db()  # another process may have moved it on while we waited
        if not upload_progress_intact(upload):
            _drop_state(upload.pk)
            raise progress_refused(upload)
        if upload.evidence_id is not None:
            return answer_finished(upload, offset, count)
        _forget_if_touched(upload, fd)
        on_disk = os.fstat(fd).st_size
        staging = upload_staging()
        if staging is not None:
            # This process vouches for the bytes it wrote itself and saw
            # counted; the rest may be another node's (or an uncounted chunk
            # of a crash here): the staged pieces, checked against the
            # record, are the authority for those.
            own = _own_offset(upload.pk, staged_pieces(upload.staged))
            on_disk = min(on_disk, own if own <= upload.offset else 0)
        if on_disk < upload.offset and staging is not None:
            # Counted bytes this process has not got (another node took them): fetch them,
            # but not for a PATCH at another offset, refused anyway (each would fetch them all again).
            _check_offset(offset, upload)
            limits.check_free_space(upload_dir(), upload.offset - on_disk)
            try:
                os.ftruncate(fd, on_disk)
                on_disk = staging.restore(upload.pk, upload.staged, fd, on_disk)
            except (BlobStoreUnavailable, BlobError) as exc:
                raise _staging_failed(exc, upload.offset) from None
        if on_disk < upload.offset:
            _drop_state(upload.pk)
            if staging is None:
                # Each chunk is on disk before its offset is recorded: fewer bytes than counted
                # means the file was cut outside the server, and what is left cannot be vouched for.
                raise _partial_file_refused(upload, f"holds fewer bytes than the {upload.offset} counted")
            # A staged piece is missing or not what the record says: go on from the pieces that hold.
            _roll_back(upload, fd, on_disk)
        _check_offset(offset, upload)
        state = _take_state(upload.pk)
        if state.offset > offset:  # cannot happen unless the state is stale: start over
            state.hasher.abort()
            state = _HashState()
        failed = None
        try:
            while state.offset < offset:  # catch up with bytes another process received
                data = os.pread(
                    fd, min(settings.CUSTODY_UPLOAD_CHUNK_SIZE, offset - state.offset), state.offset
                )
                if not data:
                    break  # shorter than it was a moment ago: the check below refuses it
                state.hasher.update(data)
                state.offset += len(data)
            # Whatever was re-read from the disk must be the bytes counted (sealed digest)
            # before anything is added to them.
            if state.offset != offset or state.hasher.hexdigest_so_far("sha256") != upload.offset_sha256:
                state.hasher.abort()
                raise _partial_file_refused(
                    upload, f"does not hold the {offset} bytes counted so far (their SHA-256 differs)"
                )
            os.ftruncate(fd, offset)
            received, broken, chunk_digest = _copy_body(request, fd, offset, count, state, checksum)
        except _WriteFailed as exc:
            # The pieces before the failed one are whole on the page cache and
            # in the hash state; the failed one is in neither. Keep the former
            # (if they reach the disk), like a body that ended early.
            failed, received, broken, chunk_digest = exc, exc.written, True, None
        except BaseException:
            state.hasher.abort()
            raise
        if checksum is not None and (received < count or chunk_digest != checksum[1]):
            # The chunk cannot be trusted: drop it, and the hash state that saw it.
            os.ftruncate(fd, offset)
            state.hasher.abort()
            if staging is not None:
                # The bytes before it are still this process's own or restored
                # and checked: it keeps vouching for them (the next PATCH hashes
                # them again from this disk), so a refused chunk never makes it
                # fetch the staged pieces again.
                vouched = _HashState(offset, staged_pieces(upload.staged), os.fstat(fd).st_ctime_ns)
                _keep_state(upload.pk, vouched)
            if failed is not None:
                raise _storage_error(failed.cause, failed.error, offset)
            if received < count:
                raise TusError(
                    400, "the body ended early; the chunk was dropped", {"Upload-Offset": str(offset)}
                )
            raise TusError(460, f"Upload-Checksum ({checksum[0]}) does not match; the chunk was dropped")
        new_offset = offset + received
        try:
            if failed is not None:
                os.ftruncate(fd, new_offset)  # whatever of the failed piece did land goes
            os.fsync(fd)  # kept bytes are on disk before the offset says so
        except OSError as exc:
            # None of this chunk is known to be on disk (and after a failed
            # fsync the page cache cannot be trusted to say): count none of it.
            # The next PATCH truncates the file back to the recorded offset.
            state.hasher.abort()
            raise _storage_error(exc.strerror or str(exc), exc, offset) from None
        if new_offset == upload.length:
            # The last byte: the offset is recorded with the evidence, in the
            # intake's transaction (see finish), so HEAD never says "all
            # received" for an upload that is not evidence yet.
            return finish(request, upload, state)
        pieces, replaced = [], []
        if staging is not None and new_offset > offset:
            # The other nodes' copy, before the offset vouches for these bytes.
            before = staged_pieces(upload.staged)
            start = offset
            if before and before[-1]["end"] == offset and offset - before[-1]["start"] < _RESTAGE_BELOW:
                replaced, start = before[-1:], before[-1]["start"]  # this disk holds its bytes: checked
            try:
                pieces = staging.put(upload.pk, fd, start, new_offset)
            except (BlobStoreUnavailable, BlobError) as exc:
                os.ftruncate(fd, offset)
                state.hasher.abort()
                raise _staging_failed(exc, offset) from None
        upload.offset, upload.updated_at = new_offset, timezone.now()
        upload.staged = [*staged_pieces(upload.staged)[: -len(replaced) or None], *pieces]
        upload.offset_sha256 = state.hasher.hexdigest_so_far("sha256")  # of exactly these bytes
        state.ctime = upload.file_ctime = os.fstat(fd).st_ctime_ns  # as this process leaves it
        counted = _record_progress(upload, offset=offset)
        if not counted:
            # The record went while the bytes arrived (the sweeper took the
            # upload as expired; it does not wait for the lock): they count
            # for nothing, and a 204 would say they were kept.
            state.hasher.abort()
            if staging is not None:
                staging.delete(upload.pk, pieces)
            if not ResumableUpload.objects.filter(pk=upload.pk).exists():
                data_path(upload.pk).unlink(missing_ok=True)
            raise TusError(410, "this upload was removed while these bytes arrived; start a new one")
        if replaced:
            staging.delete(upload.pk, replaced)  # now that the record names the piece that holds its bytes
        state.staged = [p["name"] for p in staged_pieces(upload.staged)]
        state.vouched = new_offset
        _keep_state(upload.pk, state)
    if failed is not None:
        raise _storage_error(failed.cause, failed.error, new_offset)
    if broken:
        raise TusError(
            400,
            f"the body ended after {received} of {count} bytes; they were kept",
            {"Upload-Offset": str(new_offset)},
        )
    response = HttpResponse(status=204)
    response["Upload-Offset"] = str(new_offset)
    response["Upload-Expires"] = http_date(expires_at(upload).timestamp())
    return response


def _copy_body(
    request, fd: int, offset: int, count: int, state: _HashState, checksum
) -> tuple[int, bool, bytes | None]:
    """Write the request body at ``offset`` and hash it.

    Returns (bytes received, whether the body ended early, the body's digest
    in the Upload-Checksum algorithm when one was given). Raises _WriteFailed
    when the disk does not take a piece whole.
    """
    chunk_hash = hashlib.new(checksum[0]) if checksum else None
    received = 0
    stream = request._request  # Django's request: its body is read here, never parsed
    _read_socket_directly(stream, stream.META)  # as the multipart path does under gunicorn
    writeback = _Writeback(fd, start=offset)
    try:
        while received < count:
            try:
                data = stream.read(min(settings.CUSTODY_UPLOAD_CHUNK_SIZE, count - received))
            except OSError:
                return received, True, None  # the client went away; what arrived is kept
            if not data:
                return received, True, None
            # The disk's reserve, as the bytes arrive: others may be filling it too.
            limits.check_free_space(upload_dir(), count - received)
            # A write that stores less than it was given (a full disk, a file
            # size limit) or fails must not be counted: the offset would then
            # be a receipt for bytes the disk never took, and the hash would
            # describe bytes other than the file's. The hash state only sees
            # pieces written whole.
            try:
                written = os.pwrite(fd, data, offset + received)
            except OSError as exc:
                raise _WriteFailed(received, exc.strerror or str(exc), exc) from exc
            if written != len(data):
                raise _WriteFailed(received, f"a write stored {written} of {len(data)} bytes")
            state.hasher.update(data)
            if chunk_hash is not None:
                chunk_hash.update(data)
            received += len(data)
            state.offset += len(data)
            writeback.wrote(len(data))
    finally:
        writeback.close()
    return received, False, chunk_hash.digest() if chunk_hash else None


class ReceivedFile:
    """What receive_evidence needs of an upload: the file, its name and size, its digests (hashed already)."""

    def __init__(self, path: Path, name: str, size: int, digests: dict[str, str]):
        self.path, self.name, self.size, self.digests = path, name, size, digests

    def temporary_file_path(self) -> str:
        return str(self.path)

    def close(self) -> None:
        pass


def record_intact(upload: ResumableUpload) -> bool:
    """Whether the fields the evidence is made of are still those the client sent (its HMAC)."""
    return sealed_by_this_server(upload.mac, lambda secret: upload_record_mac(upload, secret))


def finish(request, upload: ResumableUpload, state: _HashState) -> HttpResponse:
    """All bytes are in: make them evidence, through the same service as any intake."""
    if not record_intact(upload):
        # Changed in the database since the client sent it (name, description,
        # source, case, creator, length or declared hash): that is not what the
        # client asked to be received, and the intake entry would sign it. The
        # upload stays as it is, for whoever looks into it; the sweeper removes it.
        state.hasher.abort()
        logger.error("resumable upload %s: its record no longer matches its HMAC; refused", upload.pk)
        raise TusError(
            409,
            "this upload's record was changed on the server since it began (its name, description, "
            "source, case or declared hash): nothing was received as evidence; tell the server's "
            "operator, and start a new upload",
        )
    path = data_path(upload.pk)
    received = ReceivedFile(path, upload.filename, upload.length, state.hasher.hexdigests())
    received.resumable_id = upload.pk  # the quota counts this upload once, as the evidence it becomes

    def mark_finished(evidence) -> None:
        # Inside the intake's transaction: the upload is finished exactly when
        # its evidence exists. Marked afterwards, a crash in between left an
        # unfinished upload whose retry made a second evidence of the same bytes.
        finished = copy.copy(upload)  # (this transaction may yet roll back)
        finished.evidence_id, finished.offset = evidence.pk, upload.length
        finished.offset_sha256 = received.digests["sha256"]
        seal_upload_progress(finished)  # the evidence the server has just made of these bytes
        marked = ResumableUpload.objects.filter(pk=upload.pk, evidence=None).update(
            evidence=evidence,
            offset=finished.offset,
            offset_sha256=finished.offset_sha256,
            progress_mac=finished.progress_mac,
            updated_at=timezone.now(),
        )
        if not marked:  # finished or removed meanwhile: roll this intake back
            raise TusError(409, "this upload was finished or removed by another request")

    try:
        evidence = services.receive_evidence(
            actor=request.user,
            case=upload.case,
            upload=received,
            description=upload.description,
            source=upload.source,
            declared_sha256=upload.declared_sha256 or None,
            client=client_address(request),
            on_recorded=mark_finished,
        )
    except services.ServiceError as exc:
        if exc.status in (413, 422):
            discard(upload)  # a declared hash that does not match, or over a limit: nothing is kept
        raise
    upload.evidence, upload.offset = evidence, upload.length
    path.unlink(missing_ok=True)  # the blob store holds the bytes now
    _unstage(upload)
    return answer_finished(upload, upload.length, 0)


def answer_finished(upload: ResumableUpload, offset: int, count: int) -> HttpResponse:
    """The answer to a PATCH on an upload that is evidence already: never a second intake.

    A client whose last answer was lost may ask again: an empty PATCH at the
    end gets the answer the last byte got; bytes anywhere else get tus's 409
    for a wrong offset, with the offset and the evidence, so the client stops.
    """
    headers = {
        "Upload-Offset": str(upload.length),
        "Custody-Evidence": f"/api/v1/evidence/{upload.evidence_id}/",
    }
    if offset != upload.length or count:
        raise TusError(409, "this upload is complete", headers)
    response = HttpResponse(status=204)
    for name, value in headers.items():
        response[name] = value
    return response


def _discard_if_unfinished(upload: ResumableUpload) -> None:
    try:
        with _locked(upload):
            upload.refresh_from_db()
            if upload.evidence_id is None:
                _empty_local_copy(upload)
                discard(upload)
    except (TusError, ResumableUpload.DoesNotExist):
        pass  # gone already, or another request holds it and will meet the same limit


def _forget_here(upload: ResumableUpload) -> int:
    """Drop this process's copy of an upload whose staged pieces stay (its local file and hash
    state); returns the upload's counted offset."""
    try:
        with _locked(upload):
            upload.refresh_from_db()
            if upload.evidence_id is None:
                _drop_state(upload.pk)
                _empty_local_copy(upload)
                data_path(upload.pk).unlink(missing_ok=True)
    except TusError:
        pass  # another request here holds it: it meets the same shortage, or frees its copy itself
    except ResumableUpload.DoesNotExist:
        return 0
    if not upload_progress_intact(upload):
        raise progress_refused(upload)
    return upload.offset


def _empty_local_copy(upload: ResumableUpload) -> None:
    """Free the blocks of an unfinished upload's file now, before it is unlinked.

    The PATCH that met the limit may have left the writeback helper
    (uploads._Writeback) holding its own descriptor of the file for a moment,
    and an unlinked file keeps its blocks until the last descriptor goes: the
    refusal would be answered with its space still taken. Only under the
    upload's lock, and only while the file has no other name: ``finish``,
    which links the file into the blob store, holds that lock too, and a file
    linked by a finish that failed afterwards is a blob's bytes as well.
    """
    try:
        fd = os.open(data_path(upload.pk), os.O_WRONLY | os.O_NOFOLLOW)
    except OSError:  # gone already, or not ours to write: unlinking is all there is
        return
    try:
        if os.fstat(fd).st_nlink == 1:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def discard(upload: ResumableUpload) -> None:
    """Forget an unfinished upload: its bytes, its hash state, its record."""
    _drop_state(upload.pk)
    data_path(upload.pk).unlink(missing_ok=True)
    _unstage(upload)
    upload.delete()


def _unstage(upload: ResumableUpload) -> None:
    staging = upload_staging()
    if staging is not None and upload.staged:
        staging.delete(upload.pk, upload.staged)


def sweep_expired() -> int:
    """Remove unfinished uploads nobody has touched within the expiry time; returns how many.

    Also removes files that no upload record names (left by a crash between
    creating the record and the file, or a record removed by hand) once they
    are as old as the expiry time.
    """
    expiry = dt.timedelta(seconds=settings.CUSTODY_UPLOAD_EXPIRY_SECONDS)
    limit = timezone.now() - expiry
    count = 0
    for upload in ResumableUpload.objects.filter(evidence=None, updated_at__lt=limit):
        if not upload_progress_intact(upload):
            # Removed like any expired upload (its bytes count for nothing), but named in the
            # server's log first: verify_log will not see it any more.
            logger.error(
                "resumable upload %s: expired with its progress not as the server sealed it", upload.pk
            )
        discard(upload)
        count += 1
    known = {str(pk) for pk in ResumableUpload.objects.filter(evidence=None).values_list("pk", flat=True)}
    for path in upload_dir().iterdir():
        try:
            old = path.stat().st_mtime < limit.timestamp()
        except FileNotFoundError:
            continue
        if path.name not in known and old:
            path.unlink(missing_ok=True)
    staging = upload_staging()
    if staging is not None:
        try:
            staging.sweep(known, limit)
        except (BlobStoreUnavailable, BlobError) as exc:
            logger.warning("staged uploads not swept: %s", exc)
    return count
