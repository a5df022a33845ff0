"""Streaming multi-digest hashing: SHA-256, SHA-1 and MD5 in one pass.

The upload path feeds each chunk once, as it is written to disk, and never
reads the file back to hash it. On these machines MD5 is the slow digest
(~0.7 GB/s against ~1.5 GB/s for SHA-256), and one thread running all three
in a row is slower than writing to the page cache; so each digest group runs
on its own thread. hashlib releases the GIL on buffers over 2 KiB, so the
threads really run in parallel with the request thread that parses and writes.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import weakref
from collections.abc import Iterable

ALGORITHMS = ("sha256", "sha1", "md5")

# Hash groups, one thread each: MD5 alone is about as slow as SHA-256 and
# SHA-1 together.
_GROUPS = (("sha256", "sha1"), ("md5",))
# Chunks queued per thread before the writer waits: bounds memory to
# _QUEUE_DEPTH * chunk size per group, whatever the file size.
_QUEUE_DEPTH = 8
# Below this, threads cost more than they save.
_THREAD_MIN_CHUNK = 64 * 1024
_STOP = object()


class _Worker(threading.Thread):
    def __init__(self, names: Iterable[str]):
        super().__init__(daemon=True, name="hash-" + "+".join(names))
        self.hashes = {name: hashlib.new(name) for name in names}
        self.queue: queue.Queue = queue.Queue(maxsize=_QUEUE_DEPTH)
        self.error: BaseException | None = None
        self.cancelled = False

    def run(self) -> None:
        updates = [h.update for h in self.hashes.values()]
        while True:
            chunk = self.queue.get()
            if chunk is _STOP or self.cancelled:
                return
            if isinstance(chunk, _Snapshot):
                chunk.take(self.hashes)
                continue
            try:
                for update in updates:
                    update(chunk)
            except BaseException as exc:  # reported by hexdigests()
                self.error = exc
                return

    def put(self, item) -> None:
        """Queue an item, waiting for room; fails instead of waiting for a thread that has died."""
        while True:
            try:
                self.queue.put(item, timeout=1.0)
                return
            except queue.Full:
                if not self.is_alive():
                    raise RuntimeError("hashing thread failed") from self.error

    def cancel(self) -> None:
        """Stop soon without a result; never waits (may run from a finalizer)."""
        self.cancelled = True
        try:
            self.queue.put_nowait(_STOP)
        except queue.Full:
            pass  # busy: it sees ``cancelled`` after the chunk in hand


class _Snapshot:
    """A request, queued after the chunks fed so far, for one digest of them."""

    def __init__(self, name: str):
        self.name, self.value, self.done = name, None, threading.Event()

    def take(self, hashes: dict) -> None:
        self.value = hashes[self.name].copy().hexdigest()
        self.done.set()


def _cancel_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.cancel()
    workers.clear()


class MultiHasher:
    """Feeds SHA-256, SHA-1 and MD5 from the same chunks.

    >>> h = MultiHasher(); h.update(b"abc"); h.hexdigests()["sha256"][:8]
    'ba7816bf'
    """

    def __init__(self, threaded: bool = True):
        self.size = 0
        self._threaded = threaded
        self._workers: list[_Worker] = []
        self._inline = {name: hashlib.new(name) for name in ALGORITHMS}
        self._result: dict[str, str] | None = None

    def _start_threads(self) -> None:
        # The inline hashes may already hold a prefix of small chunks; the
        # threads take over their state by copying it.
        for names in _GROUPS:
            worker = _Worker(names)
            for name in names:
                worker.hashes[name] = self._inline[name].copy()
            worker.start()
            self._workers.append(worker)
        self._inline = {}
        # A hasher dropped without hexdigests() or abort() (the upload ended in
        # an exception) must not leave its threads waiting for chunks forever.
        weakref.finalize(self, _cancel_all, self._workers)

    def update(self, chunk: bytes) -> None:
        if self._result is not None:
            raise RuntimeError("MultiHasher already finished")
        chunk = bytes(chunk)  # threads keep a reference: it must not change
        self.size += len(chunk)
        if self._threaded and not self._workers and len(chunk) >= _THREAD_MIN_CHUNK:
            self._start_threads()
        if self._workers:
            for worker in self._workers:
                if worker.error is not None:
                    raise RuntimeError("hashing thread failed") from worker.error
                worker.put(chunk)
        else:
            for h in self._inline.values():
                h.update(chunk)

    def hexdigest_so_far(self, name: str) -> str:
        """The ``name`` digest of the bytes fed so far; the hasher goes on (waits for its thread)."""
        if self._result is not None:
            return self._result[name]
        if not self._workers:
            return self._inline[name].copy().hexdigest()
        (worker,) = (w for w in self._workers if name in w.hashes)
        snapshot = _Snapshot(name)
        worker.put(snapshot)
        while not snapshot.done.wait(timeout=1.0):
            if not worker.is_alive():
                raise RuntimeError("hashing thread failed") from worker.error
        return snapshot.value

    def hexdigests(self) -> dict[str, str]:
        """Finish (idempotent) and return {"sha256": hex, "sha1": hex, "md5": hex}."""
        if self._result is None:
            hashes = dict(self._inline)
            for worker in self._workers:
                worker.put(_STOP)
                worker.join()
                if worker.error is not None:
                    raise RuntimeError("hashing thread failed") from worker.error
                hashes.update(worker.hashes)
            self._workers.clear()
            self._result = {name: hashes[name].hexdigest() for name in ALGORITHMS}
        return dict(self._result)

    def abort(self) -> None:
        """Stop the threads without a result (interrupted upload); does not wait for them."""
        _cancel_all(self._workers)


def hash_file(path, chunk_size: int = 1024 * 1024) -> tuple[dict[str, str], int]:
    """Hash a stored file: ({algorithm: hex}, size). Used for fixity checks."""
    hasher = MultiHasher()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            hasher.update(chunk)
    return hasher.hexdigests(), hasher.size


def sha256_file(path, chunk_size: int = 1024 * 1024) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def is_sha256_hex(value: str) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value.lower())
