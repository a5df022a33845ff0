"""Entry signature checks for ``verify_log``, in this process or in worker processes.

Each log entry carries the log key's Ed25519 signature over
``signing.entry_message(leaf hash)``; it must verify with one of the log keys
valid at that entry (the replay says which: announced by a ``key.added``
entry before it, not retired before it). Checking a million of them is most
of verify_log's work, and each is independent of the others, so they are
checked in chunks by worker processes while the main process replays the
log. The checks are the same in both ways: ``check_chunk`` is what a worker
runs and what the serial way runs in this process, and the main process turns
the indexes it returns into the same problem message.

The checks use libsodium (PyNaCl), in about half the CPU time of
``cryptography``'s OpenSSL (``bench/verify.py signatures``: 55 against
107 us per signature, 1.9x, on 2026-12-07). libsodium is the stricter of the two (it
also refuses small-order keys and non-canonical points), so a signature it
accepts is one OpenSSL accepts too.

Pure module (PyNaCl and ``signing``), safe to import in a worker.
"""

from __future__ import annotations

import collections
import multiprocessing
import os
from collections.abc import Callable

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from . import signing

CHUNK = 2048  # entries per task sent to a worker
BAD_SIGNATURE = (
    "entry {index}: no valid signature by the log key of that point: "
    "it was not written by the server (appended or rewritten behind the app's back)"
)
UNEXPECTED_SIGNATURE = "entry {index}: carries a signature, but no log key was valid at that point"

_keys: dict[bytes, VerifyKey] = {}  # raw public key -> key object, per process


def _key(raw: bytes) -> VerifyKey:
    key = _keys.get(raw)
    if key is None:
        key = _keys[raw] = VerifyKey(raw)
    return key


def check_chunk(task: tuple) -> list[int]:
    """The indexes of a chunk whose signature verifies with none of the keys valid at that entry.

    ``task`` is (signer sets, indexes, leaf hashes joined, signatures, set
    number per entry): a signer set is a tuple of raw 32-byte public keys,
    tried in order (at a rotation two keys are valid).
    """
    signer_sets, indexes, hashes, signatures, set_numbers = task
    keys = [[_key(raw) for raw in signers] for signers in signer_sets]
    message = signing.entry_message
    bad = []
    for n, index in enumerate(indexes):
        data = message(hashes[n * 32 : n * 32 + 32])
        signature = bytes(signatures[n])
        for public in keys[set_numbers[n]]:
            try:
                public.verify(data, signature)
                break
            except (BadSignatureError, ValueError, TypeError):  # try the next valid key (two at a rotation)
                continue
        else:
            bad.append(index)
    return bad


def default_workers() -> int:
    return os.cpu_count() or 1


class Checker:
    """Collects (index, leaf hash, signature, signers) and reports the entries whose signature fails.

    ``workers`` 0 checks each chunk in this process; otherwise a pool of that
    many processes checks them while the caller goes on, at most ``2 x
    workers`` chunks in flight (memory stays flat); when they are all busy,
    this process checks the next chunk itself rather than wait. ``finish``
    must be called to collect the last chunks. Problems are reported through
    ``problem`` with the serial check's messages; within a chunk in index
    order, chunks possibly later than the caller's other problems about the
    same entries.
    """

    def __init__(self, problem: Callable[[str], None], workers: int = 0, chunk: int = CHUNK):
        self.problem = problem
        self.chunk = max(1, chunk)
        self.pool = None
        if workers > 0:
            methods = multiprocessing.get_all_start_methods()
            # fork: the workers start in milliseconds and touch nothing of the
            # parent but this module (no database connection, no Django).
            context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            self.pool = context.Pool(workers)
        self.max_pending = 2 * workers
        self.pending: collections.deque = collections.deque()
        self._reset()
        self.checked = 0

    def _reset(self) -> None:
        self.sets: list[tuple[bytes, ...]] = []
        self.set_of: dict[tuple[bytes, ...], int] = {}
        self.indexes: list[int] = []
        self.hashes: list[bytes] = []
        self.signatures: list[bytes] = []
        self.set_numbers: list[int] = []

    def add(self, index: int, leaf_hash: bytes, signature: bytes, signers: tuple[bytes, ...]) -> None:
        """Entry ``index``'s signature must verify with one of ``signers`` (raw public keys)."""
        self.checked += 1
        if not signers:
            if signature:
                self.problem(UNEXPECTED_SIGNATURE.format(index=index))
            return
        number = self.set_of.get(signers)
        if number is None:
            number = self.set_of[signers] = len(self.sets)
            self.sets.append(signers)
        self.indexes.append(index)
        self.hashes.append(leaf_hash)
        self.signatures.append(signature)
        self.set_numbers.append(number)
        if len(self.indexes) >= self.chunk:
            self._send()

    def _send(self) -> None:
        if not self.indexes:
            return
        task = (self.sets, self.indexes, b"".join(self.hashes), self.signatures, self.set_numbers)
        self._reset()
        if self.pool is None:
            self._report(check_chunk(task))
            return
        while self.pending and self.pending[0].ready():
            self._report(self.pending.popleft().get())
        if len(self.pending) >= self.max_pending:
            self._report(check_chunk(task))  # every worker is busy: do this one here
        else:
            self.pending.append(self.pool.apply_async(check_chunk, (task,)))

    def _report(self, bad: list[int]) -> None:
        for index in bad:
            self.problem(BAD_SIGNATURE.format(index=index))

    def finish(self) -> None:
        self._send()
        while self.pending:
            self._report(self.pending.popleft().get())
        self.close()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()
            self.pool = None
