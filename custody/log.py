"""The custody log: the only code that appends to it.

One RFC 9162 Merkle tree over all entries. Each entry is canonical JSON,
stored verbatim as the leaf bytes. ``append`` must run inside the caller's
transaction (the action and its entry commit or vanish together); it takes
the next index under a row lock on LogHead, so indexes are dense and in
commit order whatever the database's sequences do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from . import keys, merkle, signing
from .models import Checkpoint, LogEntry, LogHead, SigningKey, TreeNode
from .projection import ENTRY_VERSION, format_time

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

    Call inside ``transaction.atomic()``. ``public`` entries are written to be
    shown to anyone (publishing a result): their leaf names the evidence by
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
    sql = _statements(connection.vendor)
    _warm_log_key()
    with connection.cursor() as cursor:
        # Lock the head first: two appends must not take the same index, and
        # the frontier must be read and written by one appender at a time. The
        # lock is held to COMMIT, so everything below is raw SQL: with the ORM
        # the lock was held ~2.5 times as long (bench/log.py).
        cursor.execute(sql["lock"])
        index, frontier = cursor.fetchone()
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
        entry = {
            "v": ENTRY_VERSION,
            "index": index,
            "time": format_time(time),
            "actor": _actor(actor),
            "action": action,
            "case": {"id": str(case.pk), "reference": case.reference} if case is not None else None,
            "evidence": (
                {"id": str(evidence.pk), "sha256": evidence.blob_id} if evidence is not None else None
            ),
            "client": client or None,
            "reason": reason or None,
            "details": details or {},
        }
        if public:
            entry["case"] = entry["client"] = None
            entry["evidence"] = {"sha256": evidence.blob_id} if evidence is not None else None
            entry["public"] = True
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
    )
    row._state.adding, row._state.db = False, connection.alias
    row.entry = entry
    return row


@functools.cache
def _statements(vendor: str) -> dict[str, str]:
    """The append's SQL for one database backend (table and column names are ours)."""
    quote = connection.ops.quote_name
    names = {
        "entry": LogEntry._meta.db_table,
        "node": TreeNode._meta.db_table,
        "head": LogHead._meta.db_table,
        "key": SigningKey._meta.db_table,
        "index": quote("index"),
    }
    templates = {
        "lock": "SELECT size, frontier FROM {head} WHERE id = 1",
        "entry": (
            "INSERT INTO {entry} ({index}, leaf, leaf_hash, time, action, actor_id, case_id, evidence_id, "
            "signature) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ),
        "nodes": "INSERT INTO {node} (level, {index}, hash) VALUES ",
        "head": "UPDATE {head} SET size = %s, frontier = %s, root = %s WHERE id = 1",
        "log_key": "SELECT keyid FROM {key} WHERE purpose = 'log' AND valid_until IS NULL",
        "prev": "SELECT {index}, leaf_hash FROM {entry} WHERE evidence_id = %s ORDER BY {index} DESC LIMIT 1",
    }
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
