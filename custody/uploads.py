"""The project-wide upload handler (settings.FILE_UPLOAD_HANDLERS).

Installed for every request rather than swapped in by a view: swapping
handlers inside a view breaks CSRF checks, and a project-wide handler means
the web form and the REST API hash uploads the same way.

Speed (bench/upload.py): under gunicorn the body is read straight off the
client socket in whole chunks (_DirectBody), and the temporary file goes to
disk while the upload is still arriving (_Writeback), so the fsync before the
blob is named has little left to do. Memory stays at a few chunks whatever
the file size.
"""

from __future__ import annotations

import io
import os
import socket
import ssl
import tempfile
import threading
import time
import weakref

from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.core.handlers.wsgi import LimitedStream
from django.core.signals import request_finished
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

from . import limits
from .hashing import MultiHasher
from .limits import UploadRefused


def refusal(request) -> UploadRefused | None:
    """The limit an upload in this request went over, if any (the view answers 413 with it)."""
    return getattr(request, "custody_upload_refused", None)


TEMP_PREFIX = "upload-"


def _temp_prefix() -> str:
    """upload-<host>-<pid>-: whose process a temporary upload belongs to (see sweep_abandoned)."""
    return f"{TEMP_PREFIX}{socket.gethostname()}-{os.getpid()}-"


class HashedUploadedFile(TemporaryUploadedFile):
    """A temporary upload that knows its digests; they were computed as it was written.

    Its name says which host and process wrote it, so that the file of a web
    process killed mid-upload (SIGKILL: nothing of it runs to clean up) can be
    told from a live upload's and removed (``sweep_abandoned``).
    """

    digests: dict[str, str]
    client_name: str | None

    def __init__(self, name, content_type, size, charset, content_type_extra=None):
        os.makedirs(settings.FILE_UPLOAD_TEMP_DIR, exist_ok=True)
        _, ext = os.path.splitext(name)
        file = tempfile.NamedTemporaryFile(
            prefix=_temp_prefix(), suffix=".upload" + ext[:16], dir=settings.FILE_UPLOAD_TEMP_DIR
        )
        UploadedFile.__init__(self, file, name, content_type, size, charset, content_type_extra)
        self.digests = {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def sweep_abandoned(grace_seconds: float = 60.0) -> int:
    """Remove temporary uploads whose writing process is gone; returns how many.

    Only this host's files are considered (the name carries the host), and a
    file whose process still exists is never touched, whatever its age (a pid
    reused by another process keeps it until that one ends too). The grace
    period keeps the sweeper off a file whose process has only just started.
    """
    directory = settings.FILE_UPLOAD_TEMP_DIR
    mine = f"{TEMP_PREFIX}{socket.gethostname()}-"
    removed = 0
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return 0
    now = time.time()
    for name in names:
        if not name.startswith(mine):
            continue
        pid_text = name[len(mine) :].split("-", 1)[0]
        if not pid_text.isdigit() or _alive(int(pid_text)):
            continue
        path = os.path.join(directory, name)
        try:
            if now - os.stat(path).st_mtime < grace_seconds:
                continue
            os.unlink(path)
            removed += 1
        except FileNotFoundError:
            continue
    return removed


class HashingUploadHandler(FileUploadHandler):
    """Writes each chunk once to a temporary file and hashes it in the same pass."""

    def __init__(self, request=None):
        super().__init__(request)
        # Larger chunks than Django's 64 KiB: fewer Python round trips per GB
        # and buffers big enough for hashlib to release the GIL.
        self.chunk_size = settings.CUSTODY_UPLOAD_CHUNK_SIZE

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.body_length = content_length or 0
        self.received = 0
        if self.body_length:
            # The body is at least as large as the file: refuse before reading it.
            try:
                limits.check_free_space(settings.FILE_UPLOAD_TEMP_DIR, self.body_length)
            except UploadRefused as exc:
                self._refuse(exc)
                return QueryDict(), MultiValueDict()  # parsed as empty: the body is not read
        # Django's multipart parser still does the parsing; this only gives
        # it a faster source of bytes when the server is gunicorn.
        _read_socket_directly(input_data, META)
        return None

    def _refuse(self, exc: UploadRefused) -> None:
        # Raising the refusal itself from here would surface in whatever
        # first reads request.POST (the CSRF middleware, a form) as a 500:
        # it is noted on the request, and the view answers 413 with it.
        if self.request is not None:
            self.request.custody_upload_refused = exc

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.file = HashedUploadedFile(
            self.file_name, self.content_type, 0, self.charset, self.content_type_extra
        )
        self.hasher = MultiHasher()
        self.writeback = _Writeback(self.file.fileno())
        _unfinished_uploads().add(self)

    def receive_data_chunk(self, raw_data, start):
        size = self.hasher.size + len(raw_data)
        self.received = getattr(self, "received", 0) + len(raw_data)  # file bytes so far, this request
        try:
            limits.check_size(size)
            remaining = max(getattr(self, "body_length", 0) - self.received, 0)
            limits.check_free_space(settings.FILE_UPLOAD_TEMP_DIR, len(raw_data) + remaining)
        except UploadRefused as exc:
            # Over a limit as the bytes arrive: drop what came, read no more.
            self._refuse(exc)
            self.upload_interrupted()
            raise StopUpload(connection_reset=True) from None
        try:
            self.file.write(raw_data)
        except OSError as exc:
            # The disk filled up after the check (another writer): 507, nothing kept.
            if exc.errno not in limits.DISK_FULL_ERRNOS:
                raise
            self._refuse(limits.DiskFull(limits.DISK_FULL_DETAIL))
            self.upload_interrupted()
            raise StopUpload(connection_reset=True) from None
        self.hasher.update(raw_data)
        self.writeback.wrote(len(raw_data))
        return None  # consumed: no later handler sees the chunk

    def file_complete(self, file_size):
        _unfinished_uploads().discard(self)
        self.writeback.close()
        try:
            self.file.flush()
        except OSError as exc:
            if exc.errno not in limits.DISK_FULL_ERRNOS:
                raise
            self._refuse(limits.DiskFull(limits.DISK_FULL_DETAIL))
            self.upload_interrupted()
            return None
        self.file.seek(0)
        self.file.size = file_size
        self.file.digests = self.hasher.hexdigests()
        if self.hasher.size != file_size:  # would mean a chunk went astray
            raise RuntimeError("hashed size differs from received size")
        return self.file

    def upload_interrupted(self):
        # The client went away mid-upload: drop the partial file, keep nothing.
        _unfinished_uploads().discard(self)
        if hasattr(self, "hasher"):
            self.hasher.abort()
            self.writeback.close()
        if hasattr(self, "file"):
            path = self.file.temporary_file_path()
            # Emptied first: the writeback helper may still hold its own descriptor
            # of the file for a moment after close() (a dup, closed by its thread),
            # and an unlinked file keeps its blocks until the last descriptor goes.
            # Truncation frees them now, so the refusal is answered with its space
            # already free (a full disk takes the next upload at once).
            try:
                os.ftruncate(self.file.fileno(), 0)
            except (OSError, ValueError):  # already closed: nothing left to free
                pass
            try:
                self.file.close()
            except OSError:  # buffered bytes a full disk could not take: dropped with the file
                pass
            try:
                os.remove(path)
            except FileNotFoundError:
                pass


# --- uploads that end in an exception ------------------------------------------
#
# When reading the body raises (connection reset, timeout), Django's parser
# re-raises without telling the handler: neither file_complete() nor
# upload_interrupted() is called. The hashing threads, the writeback thread
# and the partial temporary file would then wait for the garbage collector
# (the exception's traceback keeps the handler alive in a reference cycle).
# Each thread remembers the uploads it has started and not finished, and
# drops them when its request ends.

_local = threading.local()


def _unfinished_uploads() -> weakref.WeakSet:
    uploads = getattr(_local, "uploads", None)
    if uploads is None:
        uploads = _local.uploads = weakref.WeakSet()
    return uploads


def _drop_unfinished_uploads(**kwargs) -> None:
    uploads = getattr(_local, "uploads", None)
    while uploads:
        try:
            uploads.pop().upload_interrupted()
        except OSError:  # the response is already sent: never fail its close
            pass


request_finished.connect(_drop_unfinished_uploads, dispatch_uid="custody.uploads.drop_unfinished")


# --- writing to disk while receiving ---------------------------------------------


class _Writeback:
    """Gets the temporary file onto disk while the upload is still arriving.

    The blob store fsyncs the file before naming it. Alone, that fsync came
    after the last byte and had to write the whole file and flush it through
    the virtual disk: 1.2-1.5 s per GB on these VMs, after the client had
    sent everything. Here a helper thread, every ``WINDOW`` bytes, asks the
    kernel to start writing the new window out (POSIX_FADV_DONTNEED starts
    writeback of dirty pages without waiting) and to drop the one before,
    written by then; and every ``SYNC_EVERY`` bytes it fdatasyncs what is
    written so far. The final fsync is left with the last few windows (about
    0.1-0.2 s); the upload occupies a few windows of page cache, not the file
    size; and new writes reuse the pages just freed, which costs the kernel
    less than taking fresh ones. The helper has its own thread because both
    calls can block when the disk is busy, and the request thread must keep
    reading the socket. Nothing is read back.
    """

    WINDOW = 32 * 1024 * 1024
    SYNC_EVERY = 4 * WINDOW

    def __init__(self, fd: int, start: int = 0):
        """``start``: where in the file the writes begin (a resumed upload)."""
        self._fd = fd
        self._signalled = start
        self._state = _WritebackState(start)
        # The thread holds only the state: if this object is dropped without
        # close() (an exception in the parser), the thread still stops.
        weakref.finalize(self, self._state.close)

    def wrote(self, n: int) -> None:
        state = self._state
        state.written += n
        if state.closed or state.written - self._signalled < self.WINDOW:
            return
        self._signalled = state.written
        if state.thread is None:
            # Its own descriptor: the upload's may be closed (and its number
            # reused) while a hint is still being given.
            state.thread = threading.Thread(
                target=_give_writeback_hints,
                args=(state, _own_descriptor(self._fd)),
                daemon=True,
                name="upload-writeback",
            )
            state.thread.start()
        with state.wake:
            state.wake.notify()

    def close(self) -> None:
        """Stop the helper (does not wait for the disk)."""
        self._state.close()


def _own_descriptor(fd: int) -> int:
    """A descriptor of fd's file that shares nothing with fd but the file.

    Not a dup: a duplicate shares fd's open file description, and with it the
    flock a resumable upload is locked by (tus._locked), so the helper, which
    closes its descriptor in its own time, would keep the upload locked after
    the request ended (the client's next PATCH answered 423, a refused
    upload's discard skipped). Opened again through /proc (the file may be
    unlinked already); a dup only where /proc is missing.
    """
    try:
        return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return os.dup(fd)


class _WritebackState:
    def __init__(self, start: int = 0):
        self.start = start
        self.written = start  # the end of what has been written
        self.closed = not hasattr(os, "posix_fadvise")
        self.thread: threading.Thread | None = None
        self.wake = threading.Condition()

    def close(self) -> None:
        with self.wake:
            self.closed = True
            self.wake.notify()


def _give_writeback_hints(state: _WritebackState, fd: int) -> None:
    kicked = dropped = synced = state.start  # writeback started, pages dropped, data synced: [start, n)
    hints = True
    try:
        while True:
            with state.wake:
                while not state.closed and state.written - kicked < _Writeback.WINDOW:
                    state.wake.wait()
                if state.closed:
                    return
                target = state.written
            if hints:
                try:
                    if kicked > dropped:
                        os.posix_fadvise(fd, dropped, kicked - dropped, os.POSIX_FADV_DONTNEED)
                        dropped = kicked
                    os.posix_fadvise(fd, kicked, target - kicked, os.POSIX_FADV_DONTNEED)
                except OSError:  # not on this filesystem: syncing alone still helps
                    hints = False
            kicked = target
            if kicked - synced >= _Writeback.SYNC_EVERY:
                os.fdatasync(fd)
                synced = kicked
    except OSError:
        pass  # the final fsync does the rest of the writing, as it would anyway
    finally:
        os.close(fd)


# --- reading the body off gunicorn's socket ---------------------------------------


class _DirectBody:
    """The rest of a request body, read straight from gunicorn's client socket.

    gunicorn's own body reader hands the application 1 KiB at a time through
    several BytesIO copies, receiving 8 KiB per system call: for a 1 GB
    upload that was about 60% of the request thread's time, and it held the
    GIL the hashing threads also need. This returns what gunicorn has
    already buffered first, then asks the socket for whole chunks (plain
    sockets: one MSG_WAITALL call per chunk; TLS: records joined up to the
    chunk), and keeps gunicorn's count of unread body bytes right, so a
    keep-alive connection resumes exactly after this body.
    """

    def __init__(self, prefix: bytes, reader, sock):
        self._prefix = prefix  # body bytes gunicorn had buffered already
        self._reader = reader  # gunicorn LengthReader: .length = body bytes still on the socket
        self._sock = sock
        self._waitall = type(sock) is socket.socket and hasattr(socket, "MSG_WAITALL")

    def read(self, size=-1, /):
        if size is None or size < 0:
            size = len(self._prefix) + self._reader.length
        if size == 0:
            return b""
        if self._prefix:
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data  # may be short: the parser asks again
        n = min(size, self._reader.length)
        if n <= 0:
            return b""
        if self._waitall:
            data = self._sock.recv(n, socket.MSG_WAITALL)
        else:
            pieces, got = [], 0
            while got < n:
                piece = self._sock.recv(n - got)
                if not piece:
                    break
                pieces.append(piece)
                got += len(piece)
            data = b"".join(pieces)
        self._reader.length -= len(data)
        # Short (b"" at worst) if the client went away: the multipart parser
        # then sees the body end without its closing boundary, and the
        # handler's upload_interrupted() drops the partial file.
        return data

    def readline(self, size=-1, /):
        # The multipart parser never calls this; correct, not fast.
        line = bytearray()
        while size is None or size < 0 or len(line) < size:
            byte = self.read(1)
            if not byte:
                break
            line += byte
            if byte == b"\n":
                break
        return bytes(line)


def _read_socket_directly(request, meta) -> bool:
    """Swap the request's body stream for a _DirectBody when it is safe to.

    Only for gunicorn with a Content-Length body (not chunked) on a blocking
    socket, before anything of the body was read; otherwise nothing changes.
    """
    try:
        from gunicorn.http.body import Body, LengthReader
        from gunicorn.http.unreader import SocketUnreader
    except ImportError:
        return False
    body = meta.get("wsgi.input")
    stream = getattr(request, "_stream", None)
    if not (
        isinstance(body, Body)
        and isinstance(body.reader, LengthReader)
        and isinstance(body.reader.unreader, SocketUnreader)
        and body.reader.unreader.sock is meta.get("gunicorn.socket")
        and isinstance(stream, LimitedStream)
        and getattr(stream._read, "__self__", None) is body
        and stream._pos == 0
        and not getattr(request, "_read_started", True)
    ):
        return False
    sock = body.reader.unreader.sock
    # Real blocking sockets only (sync and gthread workers, with or without
    # TLS); gevent/eventlet sockets and non-blocking ones stay with gunicorn.
    if type(sock) not in (socket.socket, ssl.SSLSocket) or sock.gettimeout() == 0.0:
        return False
    reader, unreader = body.reader, body.reader.unreader
    # Bytes gunicorn already holds, in order: the Body's buffer (taken from
    # the reader), then the reader's share of the unreader's buffer (anything
    # after that belongs to the next request on the connection).
    prefix = body.buf.getvalue()
    if len(prefix) + reader.length != stream.limit:
        return False
    buffered = unreader.buf.getvalue()
    own, rest = buffered[: reader.length], buffered[reader.length :]
    unreader.buf = io.BytesIO()
    unreader.buf.write(rest)
    reader.length -= len(own)
    body.buf = io.BytesIO()
    request._stream = LimitedStream(_DirectBody(prefix + own, reader, sock), stream.limit)
    return True
