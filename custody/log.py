"""The custody log: the only code that appends to it.

One RFC 9162 Merkle tree over all entries. Each entry is canonical JSON,
stored verbatim as the leaf bytes. ``append`` must run inside the caller's
transaction (the action and its entry commit or vanish together); indexes are
taken under a row lock on LogHead, so they are dense whatever the database's
sequences do, and times never go backwards along them.

Two ways in (bench/log.py measures both):

- Direct (SQLite always; on PostgreSQL the entries that change a custody
  table, and those with a ``seal``): the entry takes its index in the action's
  transaction and holds the head lock to its COMMIT. The projection written
  in the same transaction needs the index and time, and a receipt is signed
  over them. Serialises every such action: 460-1,040/s here (bench/log.py).
- Queued (PostgreSQL, the entries that change no table: views, downloads,
  fixity checks, refusals, exports...): the action's transaction only inserts
  the entry (without index, time and ``prev``) into LogQueue. After COMMIT the
  appending process tries to become the sequencer (an advisory lock) and
  drains the queue in batches: one transaction per batch takes the head lock,
  gives each entry its index, time and ``prev``, signs it, writes entries,
  tree nodes and head, and deletes the queued rows. A process that does not
  get the lock returns: the holder looks at the queue again after its batch
  commits, so no committed entry is left behind while appenders run. A
  caller that shows the index (``row.index``) waits until the entry has one.
"""

from __future__ import annotations

import functools
import json
import time as _time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from . import keys, merkle, signing
from .models import Checkpoint, LogEntry, LogHead, LogQueue, SigningKey, TreeNode, sealed_by_this_server
from .projection import ENTRY_VERSION, changes_nothing, format_time, subject_of

HASH_SIZE = 32


def _actor(user) -> dict | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return {"id": user.pk, "username": user.get_username()}


def append(
    action: str,
    *,
    actor=None,
    case=None,
    evidence=None,
    client: str | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    public: bool = False,
    seal: Callable[[dict], dict] | None = None,
) -> LogEntry:
    """Append one entry and return its row (``row.entry`` is the decoded entry).

    Call inside ``transaction.atomic()``. On PostgreSQL an entry that changes
    no table and has no ``seal`` is queued (unless this transaction already
    holds the head lock): the row returned is a ``Queued``, whose ``index``,
    ``entry`` and other fields wait until it is in the log (read them after
    the COMMIT; inside the transaction they sequence the queue there, holding
    the head lock to the COMMIT as a direct append does).

    ``public`` entries are written to be shown to anyone (publishing a result): their leaf names the evidence by
    SHA-256 only, with no case, evidence id or client address; the row still
    links case and evidence for queries. ``seal(entry)``, called under the
    lock once index and time are known, returns details to add (the intake
    receipt's signature, which covers the entry's index and time).

    An entry about an evidence item names the previous entry about the same
    item (``prev``: its index and leaf hash), so the entries of one item form
    a hash chain inside the log and an export can prove it holds them all.
    """
    if not connection.in_atomic_block:
        raise RuntimeError("log.append must run inside the action's transaction")
    actor_id = actor.pk if _actor(actor) else None
    case_id = case.pk if case is not None else None
    evidence_id = evidence.pk if evidence is not None else None
    body = _body(action, actor, case, evidence, client, reason, details, public)
    # An entry about a sealed row is appended directly: the row's seal binds its index.
    subject = subject_of(body)
    if (
        seal is None
        and subject is None
        and changes_nothing(action)
        and queue_enabled()
        and not _head_locked_here()
    ):
        return _enqueue(body, action, actor_id, case_id, evidence_id)
    sql = _statements(connection.vendor)
    _warm_log_key()
    with connection.cursor() as cursor:
        # Lock the head first: two appends must not take the same index, and
        # the frontier must be read and written by one appender at a time. The
        # lock is held to COMMIT, so everything below is raw SQL: with the ORM
        # the lock was held ~2.5 times as long (bench/log.py).
        cursor.execute(sql["lock"])
        index, frontier = cursor.fetchone()
        # Held to COMMIT: later entries of this transaction append directly
        # too, so its entries stay consecutive (a publication and its
        # announcement must be) and queuing would gain nothing.
        connection.custody_head_locked_by = _action_transaction()
        # The time is read under the lock, so entry times never go backwards
        # along the indexes. Callers that record a time too use entry.time.
        time = timezone.now()
        prev = None
        if evidence is not None:
            # Under the lock: no other entry about this item can slip in between.
            cursor.execute(sql["prev"], [_fk_param("evidence", evidence_id)])
            found = cursor.fetchone()
            if found is not None:
                prev = {"index": found[0], "hash": bytes(found[1]).hex()}
        entry = body
        entry.update(index=index, time=format_time(time))
        if evidence is not None:
            entry["prev"] = prev
        if seal is not None:
            entry["details"] = {**entry["details"], **seal(entry)}
        leaf = signing.canonical_json(entry)
        leaf_hash = merkle.leaf_hash(leaf)
        # Every entry is signed by the active log key, under the lock: the
        # tree proves no entry changed, the signature that the entry was
        # written by the holder of the key, not appended behind the app's
        # back by someone with database rights alone.
        cursor.execute(sql["log_key"])
        signer = cursor.fetchone()
        signature = keys.load_private_key(signer[0]).sign(signing.entry_message(leaf_hash)) if signer else b""
        new_frontier, nodes = merkle.append_to_frontier(_split(bytes(frontier)), index, leaf_hash)
        inner = [node for node in nodes if node[0] > 0]
        ops = connection.ops
        row_params = [
            index,
            leaf,
            leaf_hash,
            ops.adapt_datetimefield_value(time),
            action,
            actor_id,
            _fk_param("case", case_id),
            _fk_param("evidence", evidence_id),
            signature,
            subject,
        ]
        node_params = [x for node in inner for x in node]
        head_params = [index + 1, b"".join(new_frontier), merkle.root_from_frontier(new_frontier)]
        if connection.vendor == "postgresql":
            # One round trip for the three writes (data-modifying CTEs).
            cursor.execute(_write_sql(sql, len(inner)), row_params + node_params + head_params)
        else:
            cursor.execute(sql["entry"], row_params)
            if inner:
                cursor.execute(_nodes_sql(sql, len(inner)), node_params)
            cursor.execute(sql["head"], head_params)
    row = LogEntry(
        index=index,
        leaf=leaf,
        leaf_hash=leaf_hash,
        time=time,
        action=action,
        actor_id=actor_id,
        case_id=case_id,
        evidence_id=evidence_id,
        signature=signature,
        subject=subject,
    )
    row._state.adding, row._state.db = False, connection.alias
    row.entry = entry
    return row


def _body(action, actor, case, evidence, client, reason, details, public) -> dict:
    """The entry without what the log gives it under the lock: index, time, prev."""
    body = {
        "v": ENTRY_VERSION,
        "actor": _actor(actor),
        "action": action,
        "case": {"id": str(case.pk), "reference": case.reference} if case is not None else None,
        "evidence": ({"id": str(evidence.pk), "sha256": evidence.blob_id} if evidence is not None else None),
        "client": client or None,
        "reason": reason or None,
        "details": details or {},
    }
    if public:
        body["case"] = body["client"] = None
        body["evidence"] = {"sha256": evidence.blob_id} if evidence is not None else None
        body["public"] = True
    return body


def signed_here(row: LogEntry) -> bool:
    """Whether ``row`` is an entry this server wrote: its signature verifies with a log key whose
    private half is in this server's key directory, over the leaf as stored, at its own index.

    For what the server takes from an entry at run time (publishing a result names the statement
    its ``analysis.completed`` entry names): a row rewritten in the database, or signed with a key
    row added there, is not one. ``verify_log`` checks every entry against the log's own key history.
    """
    from cryptography.exceptions import InvalidSignature

    leaf = bytes(row.leaf)
    try:
        if json.loads(leaf).get("index") != row.index:
            return False
    except ValueError:
        return False
    message, signature = signing.entry_message(merkle.leaf_hash(leaf)), bytes(row.signature)
    for keyid in SigningKey.objects.filter(purpose=SigningKey.Purpose.LOG).values_list("keyid", flat=True):
        try:
            keys.load_private_key(keyid).public_key().verify(signature, message)
            return True
        except (keys.KeyUnavailable, InvalidSignature):
            continue
    return False


def signed_entry(row: LogEntry | None) -> dict:
    """The entry of ``row`` if this server signed it (``signed_here``); {} if not, or if there is no row."""
    return row.decoded if row is not None and signed_here(row) else {}


# --- the queue and its sequencer (PostgreSQL) ---------------------------------

# Largest batch: ~40 us of Python per entry (JSON, SHA-256, Ed25519), so a
# full batch holds the head lock ~20 ms.
QUEUE_BATCH = 500
# Key of the advisory lock that elects one sequencer among the app's processes.
SEQUENCER_LOCK = 0x6375_7374_6F64_79  # "custody"
# Notified by each batch's COMMIT: processes waiting for an index look again.
SEQUENCED_CHANNEL = "custody_log_sequenced"


def queue_enabled() -> bool:
    return connection.vendor == "postgresql" and settings.CUSTODY_LOG_QUEUE


class Queued:
    """An entry in the queue, returned by ``append``: it has its index once the sequencer wrote it.

    ``action`` and the id columns are known at once (``projection.apply``
    reads ``action``: a queued entry changes no table). Reading ``index``,
    ``entry``, ``leaf``, ``time``... waits until the entry is in the log
    (``wait``); inside a transaction that is still open it sequences the
    queue there, as a direct append would.
    """

    def __init__(self, queue_id: int, action: str, actor_id, case_id, evidence_id):
        self.queue_id, self.action = queue_id, action
        self.actor_id, self.case_id, self.evidence_id = actor_id, case_id, evidence_id
        self._row: LogEntry | None = None

    def wait(self, timeout: float = 30.0) -> LogEntry:
        if self._row is None:
            self._row = wait_for(self.queue_id, timeout)
        return self._row

    def __getattr__(self, name: str):
        if name in ("index", "entry", "leaf", "leaf_hash", "time", "signature", "decoded"):
            return getattr(self.wait(), name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"<Queued {self.action} #{self.queue_id}>"


def _enqueue(body: dict, action: str, actor_id, case_id, evidence_id) -> Queued:
    # Canonical form checked here, in the action's transaction (floats refused).
    encoded = signing.canonical_json(body)
    mac = _queue_mac(settings.SECRET_KEY, encoded, action, actor_id, case_id, evidence_id)
    _warm_log_key()  # the sequencer signs with it, under the head lock
    with connection.cursor() as cursor:
        cursor.execute(
            _statements(connection.vendor)["enqueue"], [encoded, action, actor_id, case_id, evidence_id, mac]
        )
        queue_id = cursor.fetchone()[0]
    if _savepoint_of_test_case():
        # The outermost transaction is a test case's, which never commits:
        # the action's "commit" is a savepoint release, so sequence now.
        _drain_in_transaction()
    else:
        # After COMMIT, in this process: become the sequencer or leave the
        # entry to the one that is. robust: the action has committed, and its
        # entry is safe in the queue even if this drain fails.
        transaction.on_commit(sequence, robust=True)
    return Queued(queue_id, action, actor_id, case_id, evidence_id)


def _queue_mac(secret: str, body: bytes, action: str, actor_id, case_id, evidence_id) -> bytes:
    """HMAC of a queued row's content under the server's SECRET_KEY.

    The sequencer signs what it takes from the queue with the log key, so a
    row must prove it was written by the app: the database role alone can
    insert rows but not make this (README, "The log queue").
    """
    message = f"{action}\n{actor_id}\n{case_id}\n{evidence_id}\n".encode() + body
    return salted_hmac("custody.log.queue", message, secret=secret, algorithm="sha256").digest()


def _queue_row_problem(body: bytes, action, actor_id, case_id, evidence_id, mac) -> str | None:
    """Why a queued row must not become the entry it describes (None: it may)."""
    if not sealed_by_this_server(
        mac, lambda secret: _queue_mac(secret, body, action, actor_id, case_id, evidence_id)
    ):
        return "its authentication code does not match (not written by this server)"
    try:
        entry = json.loads(body)
    except ValueError:
        return "its body is not JSON"
    if not isinstance(entry, dict) or entry.get("v") != ENTRY_VERSION or entry.get("action") != action:
        return "its body is not an entry of this version for its action"
    if {"index", "time", "prev"} & entry.keys():
        return "its body names an index, time or prev"
    return None


def _rejected(queue_id: int, body: bytes, action, actor_id, case_id, evidence_id, problem: str) -> dict:
    """The entry that takes a rejected queued row's place: it records the row, and vouches for nothing in it."""
    return {
        "v": ENTRY_VERSION,
        "actor": None,
        "action": "log.queue_rejected",
        "case": None,
        "evidence": None,
        "client": None,
        "reason": problem,
        "details": {
            "queue_id": queue_id,
            "action": str(action)[:64],
            "actor_id": actor_id,
            "case_id": str(case_id) if case_id else None,
            "evidence_id": str(evidence_id) if evidence_id else None,
            "body": signing.b64(body),
        },
    }


def _action_transaction():
    """The outermost atomic block that is the caller's (a test case's own blocks skipped)."""
    for block in connection.atomic_blocks:
        if not getattr(block, "_from_testcase", False):
            return block
    return None


def _head_locked_here() -> bool:
    """Whether this transaction already appended directly (and so holds the head lock)."""
    block = _action_transaction()
    return block is not None and getattr(connection, "custody_head_locked_by", None) is block


def _savepoint_of_test_case() -> bool:
    blocks = connection.atomic_blocks
    return bool(blocks) and getattr(blocks[0], "_from_testcase", False)


def sequence(budget: float = 0.02) -> int:
    """Index the queued entries, unless another process is; returns how many this call indexed.

    Outside any transaction (after the appender's COMMIT). One batch per
    transaction, which holds the sequencer's lock (a transaction-level
    advisory lock: nothing to release, and safe behind a transaction-pooling
    proxy). A process that finds the lock taken returns at once: the holder
    looks at the queue again after its batch commits, so an entry committed
    before the lock was found taken is indexed by this loop or by a later
    one. After ``budget`` seconds the holder stops (a request must not
    sequence for long under load); what is left goes to the next appender, to
    ``wait_for`` or to the beat (``drain``).
    """
    if connection.in_atomic_block:
        raise RuntimeError("log.sequence runs outside transactions (after the action's commit)")
    done, start = 0, _time.monotonic()
    sql = _statements(connection.vendor)
    with connection.cursor() as cursor:
        # One round trip for the usual answer under load ("someone is
        # sequencing"): the lock taken and let go in its own statement.
        cursor.execute(sql["try_sequencer"], [SEQUENCER_LOCK])
        if not cursor.fetchone()[0]:
            return 0
        while True:
            with transaction.atomic():
                cursor.execute(sql["try_sequencer"], [SEQUENCER_LOCK])
                if not cursor.fetchone()[0]:
                    return done
                count = _sequence_batch(cursor, sql)
            done += count
            if _time.monotonic() - start > budget:
                return done
            if count < QUEUE_BATCH:
                # After the COMMIT that let the lock go: an appender that found
                # it taken trusted its entry to this look.
                cursor.execute(sql["queued"])
                if not cursor.fetchone()[0]:
                    return done


def drain() -> int:
    """Index every committed queued entry now, waiting for the head lock (verify_log, the beat)."""
    if not queue_enabled():
        return 0
    with transaction.atomic():  # a savepoint inside the caller's transaction: a failure leaves it usable
        return _drain_in_transaction()


def _drain_in_transaction() -> int:
    sql, done = _statements(connection.vendor), 0
    with connection.cursor() as cursor:
        while True:
            count = _sequence_batch(cursor, sql)
            done += count
            if count < QUEUE_BATCH:
                return done


def wait_for(queue_id: int, timeout: float = 30.0) -> LogEntry:
    """The log entry made from queued row ``queue_id``, once it has its index.

    Listens for the sequencer's notice after each batch (no polling), and
    tries to become the sequencer itself each time it looks, so it never
    waits on a sequencer that has gone. Inside a transaction the queue is
    sequenced there and then (the head lock is held to that transaction's
    end, as a direct append holds it).
    """
    row = _sequenced(queue_id)
    if row is not None:
        return row
    if connection.in_atomic_block:
        if _drain_in_transaction() == 0:
            raise LookupError(f"queued entry {queue_id} is not in the queue this transaction sees")
        return _sequenced(queue_id)
    deadline = _time.monotonic() + timeout
    with connection.cursor() as cursor:
        # Listening before looking: a batch that commits after the look
        # still wakes this process.
        cursor.execute(f"LISTEN {SEQUENCED_CHANNEL}")
        try:
            while True:
                if sequence() == 0:
                    # Someone else is sequencing. A holder that stopped on its
                    # budget sends no further notice: look again at 50 ms.
                    for _ in connection.connection.notifies(timeout=0.05, stop_after=1):
                        pass
                row = _sequenced(queue_id)
                if row is not None:
                    return row
                if _time.monotonic() > deadline:
                    raise TimeoutError(f"queued entry {queue_id} has no index after {timeout:g} s")
        finally:
            cursor.execute(f"UNLISTEN {SEQUENCED_CHANNEL}")


def _sequenced(queue_id: int) -> LogEntry | None:
    # No ORDER BY: with the model's ordering PostgreSQL may walk the primary
    # key from the start to the one row the queue_id index would find.
    row = next(iter(LogEntry.objects.filter(queue_id=queue_id).order_by()[:1]), None)
    if row is not None:
        row.entry = row.decoded
    return row


def _sequence_batch(cursor, sql: dict[str, str]) -> int:
    """Write up to QUEUE_BATCH queued entries to the log, in the caller's transaction.

    The head lock comes first and the queue is read by a later statement, so
    under READ COMMITTED it sees every row an earlier holder of the lock
    sequenced as gone: no entry is written twice, whoever else drains.
    """
    cursor.execute(sql["lock_with_key"])
    size, frontier, keyid = cursor.fetchone()
    cursor.execute(sql["batch"], [QUEUE_BATCH])
    rows = cursor.fetchall()
    if not rows:
        return 0
    signer = keys.load_private_key(keyid) if keyid else None
    frontier = _split(bytes(frontier))
    last: dict = {}  # evidence id -> prev of the next entry about it, within the batch
    cols: list[list] = [[] for _ in range(10)]
    node_cols: list[list] = [[], [], []]
    index = size
    for queue_id, body, action, actor_id, case_id, evidence_id, mac, prev_index, prev_hash in rows:
        body = bytes(body)
        problem = _queue_row_problem(body, action, actor_id, case_id, evidence_id, mac)
        if problem is None:
            entry = json.loads(body)
        else:
            # Not signed as what it claims, and not left to stop the queue:
            # the log records the row and why it was refused.
            entry = _rejected(queue_id, body, action, actor_id, case_id, evidence_id, problem)
            action, actor_id, case_id, evidence_id = entry["action"], None, None, None
        # Under the lock, per entry: times never go backwards along the indexes.
        now = timezone.now()
        entry["index"], entry["time"] = index, format_time(now)
        if entry["evidence"] is not None:
            if evidence_id in last:
                entry["prev"] = last[evidence_id]
            else:
                entry["prev"] = (
                    None if prev_index is None else {"index": prev_index, "hash": bytes(prev_hash).hex()}
                )
        # The body was checked as canonical JSON when it was queued (its MAC
        # proves it is that body); index, time and prev are ints and strings.
        leaf = _dumps(entry).encode()
        leaf_hash = merkle.leaf_hash(leaf)
        if evidence_id is not None:
            last[evidence_id] = {"index": index, "hash": leaf_hash.hex()}
        signature = signer.sign(signing.entry_message(leaf_hash)) if signer else b""
        frontier, nodes = merkle.append_to_frontier(frontier, index, leaf_hash)
        for node in nodes:
            if node[0] > 0:
                for col, value in zip(node_cols, node, strict=True):
                    col.append(value)
        values = (index, leaf, leaf_hash, now, action, actor_id, case_id, evidence_id, signature, queue_id)
        for col, value in zip(cols, values, strict=True):
            col.append(value)
        index += 1
    head = [index, b"".join(frontier), merkle.root_from_frontier(frontier)]
    cursor.execute(sql["write_batch"], [*cols, *node_cols, *head])
    # Its own statement: the queue's guard must see the entries that name the rows.
    cursor.execute(sql["dequeue"], [cols[9], SEQUENCED_CHANNEL])
    return len(rows)


# signing.canonical_json without its float check (for bodies already checked).
_dumps = functools.partial(json.dumps, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@functools.cache
def _statements(vendor: str) -> dict[str, str]:
    """The append's SQL for one database backend (table and column names are ours)."""
    quote = connection.ops.quote_name
    names = {
        "entry": LogEntry._meta.db_table,
        "node": TreeNode._meta.db_table,
        "head": LogHead._meta.db_table,
        "key": SigningKey._meta.db_table,
        "queue": LogQueue._meta.db_table,
        "index": quote("index"),
    }
    templates = {
        "lock": "SELECT size, frontier FROM {head} WHERE id = 1",
        "entry": (
            "INSERT INTO {entry} ({index}, leaf, leaf_hash, time, action, actor_id, case_id, evidence_id, "
            "signature, subject) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ),
        "nodes": "INSERT INTO {node} (level, {index}, hash) VALUES ",
        "head": "UPDATE {head} SET size = %s, frontier = %s, root = %s WHERE id = 1",
        "log_key": "SELECT keyid FROM {key} WHERE purpose = 'log' AND valid_until IS NULL",
        "prev": "SELECT {index}, leaf_hash FROM {entry} WHERE evidence_id = %s ORDER BY {index} DESC LIMIT 1",
    }
    if vendor == "postgresql":
        templates.update(
            {
                "enqueue": (
                    "INSERT INTO {queue} (body, action, actor_id, case_id, evidence_id, mac, queued_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, clock_timestamp()) RETURNING id"
                ),
                "try_sequencer": "SELECT pg_try_advisory_xact_lock(%s)",
                "queued": "SELECT EXISTS (SELECT 1 FROM {queue})",
                "lock_with_key": (
                    "SELECT size, frontier, (SELECT keyid FROM {key} WHERE purpose = 'log' "
                    "AND valid_until IS NULL) FROM {head} WHERE id = 1 FOR UPDATE"
                ),
                # Each queued entry with the newest log entry about its item (its prev).
                "batch": (
                    "SELECT q.id, q.body, q.action, q.actor_id, q.case_id, q.evidence_id, q.mac, p.{index}, "
                    "p.leaf_hash FROM (SELECT * FROM {queue} ORDER BY id LIMIT %s) q "
                    "LEFT JOIN LATERAL (SELECT {index}, leaf_hash FROM {entry} e "
                    "WHERE e.evidence_id = q.evidence_id ORDER BY e.{index} DESC LIMIT 1) p ON true "
                    "ORDER BY q.id"
                ),
                "write_batch": (
                    "WITH e AS (INSERT INTO {entry} ({index}, leaf, leaf_hash, time, action, actor_id, case_id, "
                    "evidence_id, signature, queue_id) SELECT * FROM unnest(%s::bigint[], %s::bytea[], "
                    "%s::bytea[], %s::timestamptz[], %s::varchar[], %s::bigint[], %s::uuid[], %s::uuid[], "
                    "%s::bytea[], %s::bigint[])), "
                    "n AS (INSERT INTO {node} (level, {index}, hash) "
                    "SELECT * FROM unnest(%s::smallint[], %s::bigint[], %s::bytea[])) "
                    "UPDATE {head} SET size = %s, frontier = %s, root = %s WHERE id = 1"
                ),
                "dequeue": (
                    "WITH d AS (DELETE FROM {queue} WHERE id = ANY(%s::bigint[])) SELECT pg_notify(%s, '')"
                ),
            }
        )
    if connection.features.has_select_for_update:
        templates["lock"] += " FOR UPDATE"
    # Only our table and column names are formatted in; every value is a parameter.
    return {key: template.format(**names) for key, template in templates.items()}


def _nodes_sql(sql: dict[str, str], count: int) -> str:
    return sql["nodes"] + ", ".join(["(%s, %s, %s)"] * count)


def _write_sql(sql: dict[str, str], node_count: int) -> str:
    parts = [f"e AS ({sql['entry']})"]
    if node_count:
        parts.append(f"n AS ({_nodes_sql(sql, node_count)})")
    return "WITH " + ", ".join(parts) + " " + sql["head"]


_warm = False


def _warm_log_key() -> None:
    """Load the log key once per process before any lock: its first load runs scrypt (~0.5 s)."""
    global _warm
    if _warm:
        return
    try:
        keys.active_private_key(SigningKey.Purpose.LOG)
        _warm = True
    except keys.KeyUnavailable:
        pass  # no log key yet (first run): entries before it are unsigned


def _fk_param(field: str, value):
    """A foreign key value as the backend stores it (uuid on PostgreSQL, hex text on SQLite)."""
    return LogEntry._meta.get_field(field).get_db_prep_value(value, connection)


def _split(blob: bytes) -> list[bytes]:
    return [blob[i : i + HASH_SIZE] for i in range(0, len(blob), HASH_SIZE)]


def tree_head() -> tuple[int, bytes]:
    head = LogHead.objects.get(pk=1)
    return head.size, bytes(head.root) or merkle.EMPTY_ROOT


def fetch_nodes(wanted: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Stored hashes of the perfect subtrees in ``wanted``, in one query.

    Raw SQL: building the same query from 20-40 OR'ed Q objects cost the ORM
    ~8 ms per proof at a million entries, against ~1 ms for the database.
    (A JOIN on a VALUES list, not "(level, index) IN (VALUES ...)", which
    SQLite answers with a full scan.)
    """
    if not wanted:
        return {}
    quote = connection.ops.quote_name
    inner = sorted((level, i) for level, i in wanted if level > 0)
    leaves = sorted(i for level, i in wanted if level == 0)
    parts, params = [], []
    if inner:
        values = ", ".join(["(%s, %s)"] * len(inner))
        # Table and column names are ours; every value is a query parameter.
        nodes_sql = "SELECT t.level, t.{i}, t.hash FROM w JOIN {table} t ON t.level = w.l AND t.{i} = w.i"
        parts.append(nodes_sql.format(i=quote("index"), table=TreeNode._meta.db_table))
        params += [x for pair in inner for x in pair]
    if leaves:
        leaves_sql = "SELECT 0, {i}, leaf_hash FROM {table} WHERE {i} IN ({marks})"
        parts.append(
            leaves_sql.format(
                i=quote("index"), table=LogEntry._meta.db_table, marks=", ".join(["%s"] * len(leaves))
            )
        )
        params += leaves
    sql = " UNION ALL ".join(parts)
    if inner:
        sql = f"WITH w (l, i) AS (VALUES {values}) " + sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        found = {(level, index): bytes(h) for level, index, h in cursor.fetchall()}
    missing = wanted - found.keys()
    if missing:
        raise LookupError(f"log tree nodes missing from the database: {sorted(missing)[:5]}")
    return found


def inclusion_proof(index: int, size: int) -> list[bytes]:
    return merkle.inclusion_proof(index, size, fetch_nodes(merkle.inclusion_nodes(index, size)))


def consistency_proof(first: int, second: int) -> list[bytes]:
    return merkle.consistency_proof(first, second, fetch_nodes(merkle.consistency_nodes(first, second)))


def root_at(size: int) -> bytes:
    """Root of the tree at an earlier size, from stored nodes."""
    if size == 0:
        return merkle.EMPTY_ROOT
    return merkle.range_hash(0, size, fetch_nodes(set(merkle.range_nodes(0, size))))


# --- checkpoints ------------------------------------------------------------


def checkpoint_text(origin: str, size: int, root: bytes) -> str:
    """C2SP tlog-checkpoint body: origin, tree size, base64 root hash."""
    return f"{origin}\n{size}\n{signing.b64(root)}\n"


def sign_checkpoint(keyids: list[str]) -> Checkpoint:
    """Sign the current tree head with several log keys in one note (a key rotation's bridge).

    Runs in the caller's transaction, which holds the log lock: the head cannot move.
    """
    from .models import SigningKey

    size, root = tree_head()
    text = checkpoint_text(settings.CUSTODY_LOG_ORIGIN, size, root)
    lines = [
        signing.note_signature_line(text, SigningKey.objects.get(pk=keyid).name, keys.load_private_key(keyid))
        for keyid in keyids
    ]
    note = text + "\n" + "".join(line + "\n" for line in lines)
    return Checkpoint.objects.create(size=size, root=root, note=note, created_at=timezone.now())


def checkpoint_at(size: int) -> Checkpoint:
    """A signed checkpoint for the tree at ``size`` (an earlier size than the head is fine)."""
    found = Checkpoint.objects.filter(size=size).first()
    return found if found is not None else _sign_checkpoint(size, root_at(size))


def latest_checkpoint() -> Checkpoint:
    """The signed checkpoint for the current tree, signing a new one if the tree grew."""
    size, root = tree_head()
    latest = Checkpoint.objects.order_by("-size").first()
    if latest is not None and latest.size == size:
        return latest
    return _sign_checkpoint(size, root)


def _sign_checkpoint(size: int, root: bytes) -> Checkpoint:
    from .keys import active_private_key

    signer_row, signer = active_private_key("log")
    note = signing.sign_note(
        checkpoint_text(settings.CUSTODY_LOG_ORIGIN, size, root), signer_row.name, signer
    )
    try:
        with transaction.atomic():
            return Checkpoint.objects.create(size=size, root=root, note=note, created_at=timezone.now())
    except IntegrityError:  # another process signed the same size first
        return Checkpoint.objects.get(size=size)
