"""The database refuses log changes; verify_log catches what is done behind its back."""

import os
import stat

import pytest
from django.db import DatabaseError, connection, transaction

from custody import dbguard, log
from custody.models import Evidence, LogEntry
from custody.storage import blob_store

from .conftest import run_verify_log, upload


@pytest.fixture
def populated(as_alice, case_a):
    items = [upload(as_alice, case_a, f"item {i} ".encode() * 100, name=f"{i}.bin").json() for i in range(4)]
    log.latest_checkpoint()
    as_alice.get(f"/api/v1/evidence/{items[0]['id']}/")
    log.latest_checkpoint()
    as_alice.get(f"/api/v1/evidence/{items[1]['id']}/")  # one entry beyond the last checkpoint
    return items


def run_verify() -> tuple[int, str]:
    return run_verify_log()


def sql(statement, params=()):
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def test_clean_log_verifies(populated):
    code, out = run_verify()
    assert code == 0, out
    assert "OK:" in out and "4 blobs" in out and "4 receipts" in out


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE custody_logentry SET action = 'x' WHERE index = 1",
        "DELETE FROM custody_logentry WHERE index = 1",
        "UPDATE custody_treenode SET hash = hash WHERE level = 1",
        "DELETE FROM custody_checkpoint",
    ],
)
def test_database_refuses_update_and_delete_of_log_rows(populated, statement):
    statement = statement.replace("index", connection.ops.quote_name("index"))
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        sql(statement)
    assert LogEntry.objects.filter(index=1).exclude(action="x").exists()


def tamper(statement, params=()):
    """What someone with database rights could do: drop the guard, then edit."""
    dbguard.remove(connection)
    sql(statement.replace("index", connection.ops.quote_name("index")), params)


def test_edited_leaf_is_caught(populated):
    leaf = bytes(LogEntry.objects.get(index=5).leaf).replace(b'"alice"', b'"mallory"')
    tamper("UPDATE custody_logentry SET leaf = %s WHERE index = 5", [leaf])
    code, out = run_verify()
    assert code == 1
    assert "entry 5: stored leaf hash does not match its leaf bytes" in out


def test_edit_with_recomputed_hashes_is_caught_by_the_signed_checkpoints(populated):
    from custody import merkle

    leaf = bytes(LogEntry.objects.get(index=5).leaf).replace(b'"alice"', b'"mallory"')
    tamper(
        "UPDATE custody_logentry SET leaf = %s, leaf_hash = %s WHERE index = 5",
        [leaf, merkle.leaf_hash(leaf)],
    )
    code, out = run_verify()
    assert code == 1
    assert "signed root differs from the root recomputed from the leaves" in out
    assert "does not match its children" in out


def test_deleted_entry_is_caught(populated):
    tamper("DELETE FROM custody_logentry WHERE index = 3")
    code, out = run_verify()
    assert code == 1
    assert "log indexes jump from 2 to 4" in out


def test_deleted_last_entry_is_caught(populated):
    last = LogEntry.objects.order_by("-index").first().index
    tamper("DELETE FROM custody_logentry WHERE index = %s", [last])
    code, out = run_verify()
    assert code == 1 and "tree head says" in out


def test_inserted_entry_is_caught(populated):
    from custody import merkle, signing

    size, _ = log.tree_head()
    leaf = signing.canonical_json({"index": size, "action": "evidence.received", "forged": True})
    tamper(
        "INSERT INTO custody_logentry (index, leaf, leaf_hash, time, action, signature) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        [size, leaf, merkle.leaf_hash(leaf), "2026-01-01T00:00:00Z", "evidence.received", b""],
    )
    code, out = run_verify()
    assert code == 1 and f"tree head says {size} entries, the table holds {size + 1}" in out


def test_forged_checkpoint_is_caught(populated):
    note = log.latest_checkpoint().note
    forged = note.replace("\n", "\n", 1)  # same text ...
    forged = forged.split("\n")
    forged[2] = "A" * 43 + "="  # ... with another root
    tamper("UPDATE custody_checkpoint SET note = %s", ["\n".join(forged)])
    code, out = run_verify()
    assert code == 1 and "signature does not verify with any log key" in out


def test_changed_blob_byte_is_caught(populated):
    path = blob_store().path(populated[2]["sha256"])
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    with open(path, "r+b") as f:
        f.seek(10)
        f.write(b"X")
    code, out = run_verify()
    assert code == 1
    assert f"blob {populated[2]['sha256']}: content no longer matches" in out


def test_missing_blob_is_caught(populated):
    os.unlink(blob_store().path(populated[3]["sha256"]))
    code, out = run_verify()
    assert code == 1 and "file is missing" in out


def test_evidence_pointed_at_other_bytes_is_caught(populated):
    Evidence.objects.filter(pk=populated[0]["id"]).update(blob_id=populated[1]["sha256"])
    code, out = run_verify()
    assert code == 1
    assert f"evidence {populated[0]['id']}: blob_id: log says '{populated[0]['sha256']}'" in out


@pytest.mark.slow
def test_appends_during_verify_do_not_look_like_tampering(transactional_db, as_alice, case_a, monkeypatch):
    """verify_log reads one snapshot: entries committed while it runs are not half-seen.

    Appends commit on another connection right after the first leaf is read,
    before the tree head and the nodes are; without a snapshot the head and
    nodes would run ahead of the leaves already hashed.
    """
    import threading

    from custody import audit, services
    from custody.models import User

    evidence = Evidence.objects.get(pk=upload(as_alice, case_a, b"watched").json()["id"])
    log.latest_checkpoint()
    alice = User.objects.get(username="alice")
    streamed = audit._leaf_rows  # the leaves, index order (raw rows on PostgreSQL, the ORM on SQLite)
    appended = []

    def append_elsewhere():
        from django.db import connection as own

        try:
            for _ in range(3):
                services.record_view(actor=alice, evidence=evidence, client="10.0.0.2")
        finally:
            own.close()

    def stream_while_appending():
        rows = streamed()
        first = next(rows, None)
        if not appended:
            appended.append(True)
            writer = threading.Thread(target=append_elsewhere)
            writer.start()
            writer.join()
        if first is not None:
            yield first
        yield from rows

    monkeypatch.setattr(audit, "_leaf_rows", stream_while_appending)
    before = LogEntry.objects.count()
    report = audit.verify(check_blobs=False)
    assert report.ok, report.problems
    assert report.entries == before
    assert LogEntry.objects.count() == before + 3  # the appends did happen, after the snapshot
