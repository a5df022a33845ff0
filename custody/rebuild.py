"""Rebuild the custody tables from the log alone, into an empty database.

``manage.py rebuild_state --source-url URL`` reads the log (leaf bytes and
checkpoints) from the database at URL and writes, into the current (empty,
migrated) database, the log rows with their lookup columns taken from the
leaves, the Merkle tree's stored nodes and head recomputed from the leaves,
the signed checkpoints as they are, and every custody table through
``projection.changes``: the same function the services write with.

Nothing of the source's tables is read: what the rebuilt database holds is
what the log says. Not rebuilt, as they are not custody facts: password
hashes (accounts come back without a usable password), sessions, token
last-use times, analysis heartbeats, unfinished resumable uploads, and the
second factor's devices (TOTP keys, recovery codes). Whether an account has a
second factor in force is rebuilt (its enrolment and removal entries): such an
account comes back asking for a code it has no device for, and stays refused
until an administrator runs ``manage.py reset_second_factor`` for it
(``second_factor_without_device`` lists them). Result envelopes are read from
the blob store (their statement bytes are blobs named by the SHA-256 the log
records).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.apps import apps
from django.conf import settings
from django.core.management.color import no_style
from django.db import connections, transaction

from . import merkle, projection
from .models import Checkpoint, LogEntry, LogHead, TreeNode
from .projection import TABLES

BATCH = 2000


class RebuildError(Exception):
    pass


def _require_empty(target: str) -> None:
    for name, table in TABLES.items():
        if apps.get_model(table.model).objects.using(target).exists():
            raise RebuildError(f"the target database is not empty: it has {name} rows")
    if LogEntry.objects.using(target).exists():
        raise RebuildError("the target database already has log entries")


def rebuild(source: str, target: str = "default", progress: Callable[[str], None] | None = None) -> int:
    """Replay the log of database ``source`` into the empty database ``target``; returns the entry count."""
    say = progress or (lambda text: None)
    _require_empty(target)
    store = projection.ModelStore(target)
    origin = settings.CUSTODY_LOG_ORIGIN
    frontier: list[bytes] = []
    count = 0
    with transaction.atomic(using=target):
        rows = LogEntry.objects.using(source).order_by("index").values_list("index", "leaf", "signature")
        entries, nodes = [], []
        for index, leaf, signature in rows.iterator(chunk_size=BATCH):
            leaf = bytes(leaf)
            if index != count:
                raise RebuildError(f"the source log jumps from index {count - 1} to {index}")
            entry = json.loads(leaf)
            leaf_hash = merkle.leaf_hash(leaf)
            frontier, made = merkle.append_to_frontier(frontier, index, leaf_hash)
            nodes.extend(TreeNode(level=level, index=i, hash=h) for level, i, h in made if level > 0)
            # Apply before the row is written: a public entry's item is found
            # through the analysis that earlier entries created.
            for change in projection.changes(entry, origin):
                store.apply(change, entry["index"])
            # The entry's signature is the server's attestation, not derivable: kept as it is
            # (verify_log on the rebuilt database checks it against the log's keys).
            entries.append(_row(entry, leaf, leaf_hash, bytes(signature), target, entries))
            count += 1
            if len(entries) >= BATCH:
                _flush(target, entries, nodes)
                say(f"{count} entries replayed")
        _flush(target, entries, nodes)
        LogHead.objects.using(target).update_or_create(
            pk=1,
            defaults={
                "size": count,
                "frontier": b"".join(frontier),
                "root": merkle.root_from_frontier(frontier),
            },
        )
        for checkpoint in Checkpoint.objects.using(source).order_by("size").iterator():
            checkpoint.save(using=target, force_insert=True)
        _reset_sequences(target)
    return count


def second_factor_without_device(using: str = "default") -> list[str]:
    """Usernames of the accounts that have a second factor in force but no confirmed authenticator
    app (after a rebuild: every one that had enrolled). Each is refused at login until an
    administrator resets its second factor (``manage.py reset_second_factor``)."""
    from .models import User
    from .second_factor import without_device

    users = without_device(User.objects.using(using))
    return list(users.order_by("username").values_list("username", flat=True))


def _row(
    entry: dict, leaf: bytes, leaf_hash: bytes, signature: bytes, target: str, pending: list
) -> LogEntry:
    """A log row whose lookup columns come from its leaf, never from the source's columns."""
    evidence = entry.get("evidence") or {}
    case_id = (entry.get("case") or {}).get("id")
    evidence_id = evidence.get("id")
    if entry.get("public") and evidence:
        # A public announcement: the publication it announces names the item.
        published = (entry.get("details") or {}).get("published_entry")
        row = (
            LogEntry.objects.using(target)
            .filter(index=published)
            .values_list("evidence_id", "case_id")
            .first()
        )
        if row is None:  # still in this batch, not flushed yet
            row = next(((e.evidence_id, e.case_id) for e in pending if e.index == published), (None, None))
        evidence_id, case_id = row
    return LogEntry(
        index=entry["index"],
        leaf=leaf,
        leaf_hash=leaf_hash,
        time=projection.parse_time(entry["time"]),
        action=entry["action"],
        actor_id=(entry.get("actor") or {}).get("id"),
        case_id=case_id,
        evidence_id=evidence_id,
        signature=signature,
        subject=projection.subject_of(entry),
    )


def _flush(target: str, entries: list, nodes: list) -> None:
    LogEntry.objects.using(target).bulk_create(entries)
    TreeNode.objects.using(target).bulk_create(nodes)
    entries.clear()
    nodes.clear()


def _reset_sequences(target: str) -> None:
    """Rows were written with the log's ids; the database's counters must follow (PostgreSQL)."""
    connection = connections[target]
    models = [apps.get_model(t.model) for t in TABLES.values()]
    statements = connection.ops.sequence_reset_sql(no_style(), models)
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
