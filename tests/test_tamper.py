"""The insider's changes: each made behind the app's back, each reported by verify_log in words.

Played as a database administrator would: raw SQL on the live database (with
the append-only triggers dropped where they are in the way), Django's own
`createsuperuser`, `loaddata` and the shell's ORM. The untouched database
passes; every change here is named (which row, which field, what the log
says, what the table says) and makes verify_log exit non-zero.
"""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.db import connection

from custody import dbguard, log, merkle, signing
from custody.models import ApiToken, Evidence, LogEntry, Membership, SigningKey, User
from forensics.models import Analysis

from .busy import busy_history
from .conftest import run_verify_log


@pytest.fixture
def history(alice, bob, case_a, case_b):
    return busy_history(alice, bob, case_a, case_b)


def verify() -> tuple[int, str]:
    return run_verify_log("--skip-blobs")


def sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement.replace("index", connection.ops.quote_name("index")), params)


def reported(*phrases: str) -> str:
    code, out = verify()
    assert code == 1, out
    for phrase in phrases:
        assert phrase in out, f"{phrase!r} not in:\n{out}"
    return out


def test_untouched_database_passes(history):
    code, out = verify()
    assert code == 0, out


def test_deleted_evidence_row_and_its_blob(history):
    item = history["other"]
    sql(
        "DELETE FROM custody_evidence WHERE id = %s",
        [item.pk.hex if connection.vendor == "sqlite" else item.pk],
    )
    sql("DELETE FROM custody_blob WHERE sha256 = %s", [item.blob_id])
    reported(
        f"evidence {item.pk}: the log records it, the table has no such row",
        f"blob {item.blob_id}: the log records it, the table has no such row",
    )


def _pk(value):
    return value.hex if connection.vendor == "sqlite" else value


def test_item_moved_to_another_case(history, case_b):
    item = history["item"]
    sql("UPDATE custody_evidence SET case_id = %s WHERE id = %s", [_pk(case_b.pk), _pk(item.pk)])
    reported(f"evidence {item.pk}: case_id: log says '{item.case_id}', table says '{case_b.pk}'")


def test_changed_custodian(history, alice, bob):
    item = history["item"]  # bob holds it after the accepted handover
    sql("UPDATE custody_evidence SET custodian_id = %s WHERE id = %s", [alice.pk, _pk(item.pk)])
    reported(f"evidence {item.pk}: custodian_id: log says {bob.pk} (bob), table says {alice.pk} (alice)")


def test_renamed_item_through_the_shell_orm(history):
    item = history["item"]
    Evidence.objects.filter(pk=item.pk).update(original_name="harmless.ogg", description="nothing here")
    reported(
        f"evidence {item.pk}: original_name: log says 'leak.ogg', table says 'harmless.ogg'",
        f"evidence {item.pk}: description: log says '', table says 'nothing here'",
    )


def test_added_membership(history, case_b, alice):
    Membership.objects.create(case=case_b, user=alice, added_at=history["item"].received_at)
    reported(
        f"membership of user {alice.pk} (alice) in case {case_b.pk}: the table has it, no log entry accounts for it"
    )


def test_removed_membership(history, case_a, bob):
    Membership.objects.filter(case=case_a, user=bob).delete()
    reported(
        f"membership of user {bob.pk} (bob) in case {case_a.pk}: the log records it, the table has no such row"
    )


def test_user_made_administrator(history, bob):
    sql(
        "UPDATE custody_user SET role = 'admin', is_superuser = %s, is_staff = %s WHERE id = %s",
        [True, True, bob.pk],
    )
    reported(
        f"user {bob.pk} (bob): role: log says 'investigator', table says 'admin'",
        f"user {bob.pk} (bob): is_superuser: log says False, table says True",
    )


def test_deactivated_user_reactivated(history):
    erin = history["erin"]
    User.objects.filter(pk=erin.pk).update(is_active=False)
    reported(f"user {erin.pk} (erin): is_active: log says True, table says False")


def test_createsuperuser_refuses_and_djangos_own_is_caught(history, monkeypatch):
    """`manage.py createsuperuser` refuses; Django's original command, run by hand, is reported."""
    from django.contrib.auth.management.commands.createsuperuser import Command as DjangoCreateSuperuser
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="create_user"):
        call_command("createsuperuser", "--noinput", "--username", "mallory", "--email", "m@example.org")
    assert not User.objects.filter(username="mallory").exists()
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a long password 3")
    call_command(DjangoCreateSuperuser(), "--noinput", "--username", "mallory", "--email", "m@example.org")
    mallory = User.objects.get(username="mallory")
    reported(f"user {mallory.pk} (unknown to the log): the table has it, no log entry accounts for it")


def test_loaddata_user_and_membership(history, case_a, tmp_path):
    fixture = tmp_path / "mallory.json"
    fixture.write_text(
        json.dumps(
            [
                {
                    "model": "custody.user",
                    "pk": 9999,
                    "fields": {"username": "mallory", "password": "", "role": "admin", "is_superuser": True},
                },
                {
                    "model": "custody.membership",
                    "pk": 9999,
                    "fields": {"case": str(case_a.pk), "user": 9999, "added_at": "2026-01-01T00:00:00Z"},
                },
            ]
        )
    )
    call_command("loaddata", str(fixture), verbosity=0)
    reported(
        "user 9999 (unknown to the log): the table has it, no log entry accounts for it",
        f"membership of user 9999 (unknown to the log) in case {case_a.pk}: the table has it",
    )


def test_django_permission_granted(history, bob):
    from django.contrib.auth.models import Permission

    bob.user_permissions.add(Permission.objects.first())
    reported("1 user permission row(s) exist; the app never grants any")


def test_token_inserted_for_another_user(history, alice):
    ApiToken.objects.create(
        user=alice, digest="ab" * 32, prefix="cst_forged", label="", created_at=history["item"].received_at
    )
    reported(f"API token {'ab' * 32}: the table has it, no log entry accounts for it")


def test_revoked_token_revived(history):
    token = ApiToken.objects.filter(revoked_at__isnull=False).get()
    ApiToken.objects.filter(pk=token.pk).update(revoked_at=None)
    reported(f"API token {token.digest}: revoked_at: log says '")


def test_two_signed_results_swapped(history):
    done, stale = history["done"], history["stale"]
    Analysis.objects.filter(pk=done.pk).update(
        envelope=stale.envelope, statement_sha256=stale.statement_sha256
    )
    Analysis.objects.filter(pk=stale.pk).update(
        envelope=done.envelope, statement_sha256=done.statement_sha256
    )
    reported(
        f"analysis {done.pk}: envelope: log says",
        f"analysis {done.pk}: statement_sha256: log says '{done.statement_sha256}'",
        f"analysis {stale.pk}: statement_sha256: log says '{stale.statement_sha256}'",
    )


def test_result_marked_published_with_no_log_entry(history):
    stale = history["stale"]
    Analysis.objects.filter(pk=stale.pk).update(published_at=stale.finished_at, publish_log_index=5)
    reported(
        f"analysis {stale.pk}: published_at: log says None",
        f"analysis {stale.pk}: publish_log_index: log says None",
    )


def test_analysis_parameters_changed(history):
    done = history["done"]
    Analysis.objects.filter(pk=done.pk).update(parameters={"delay": 0.5})
    reported(f'analysis {done.pk}: parameters: log says {{"delay": 0.01')


def test_handover_marked_accepted(history):
    from custody.models import Transfer

    refused = Transfer.objects.get(status="refused")
    Transfer.objects.filter(pk=refused.pk).update(status="accepted")
    reported(f"handover {refused.pk}: status: log says 'refused', table says 'accepted'")


def test_blob_digests_changed(history):
    item = history["item"]
    sql("UPDATE custody_blob SET md5 = %s WHERE sha256 = %s", ["0" * 32, item.blob_id])
    reported(f"blob {item.blob_id}: md5: log says")


def test_log_row_case_and_evidence_columns_cleared(history):
    row = LogEntry.objects.filter(action="evidence.downloaded").get()
    dbguard.remove(connection)
    sql(
        "UPDATE custody_logentry SET case_id = NULL, evidence_id = NULL, actor_id = NULL WHERE index = %s",
        [row.index],
    )
    reported(
        f"entry {row.index}: the row's case column says None, its signed leaf says '{row.case_id}'",
        f"entry {row.index}: the row's evidence column says None",
        f"entry {row.index}: the row's actor column says None",
    )


def test_intake_key_row_added_and_receipt_resigned(history, case_a):
    """Mallory adds her own intake key to the table and re-signs a receipt with a new submitter."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    item = history["third"] if "third" in history else history["copy"]
    key = Ed25519PrivateKey.generate()
    keyid = signing.dsse_keyid(key.public_key())
    SigningKey.objects.create(
        keyid=keyid,
        purpose="intake",
        name="mallory",
        public_key_pem=signing.public_key_pem(key.public_key()),
        valid_from=item.received_at,
        valid_until=item.received_at,
    )
    statement = json.loads(signing.b64decode(item.receipt["payload"]))
    statement["predicate"]["submitter"] = {"id": 9999, "username": "mallory"}
    Evidence.objects.filter(pk=item.pk).update(receipt=signing.sign_statement(statement, key))
    reported(
        f"key {keyid}: the table has it, no log entry accounts for it",
        f"evidence {item.pk}: receipt: log says",
    )


def test_retired_key_validity_stretched(history):
    import datetime as dt

    retired = SigningKey.objects.filter(valid_until__isnull=False).get()
    SigningKey.objects.filter(pk=retired.pk).update(valid_until=retired.valid_until + dt.timedelta(days=365))
    reported(f"key {retired.keyid}: valid_until: log says '")


def test_forged_entry_appended_with_the_tree_recomputed(history, case_a, alice):
    """A full append behind the app's back (leaf, nodes, head): the projection shows what it claims.

    The forged entry makes mallory a member, consistently with the tree; the
    next checkpoint the server signs would cover it. What verify_log can tell
    from the log alone: the entry names a user no entry created, and its
    item chain does not link (for entries about an item).
    """
    size, _ = log.tree_head()
    item = history["item"]
    forged = {
        "v": 2,
        "index": size,
        "time": "2099-01-01T00:00:00.000000Z",
        "actor": {"id": alice.pk, "username": "alice"},
        "action": "evidence.downloaded",
        "case": {"id": str(case_a.pk), "reference": case_a.reference},
        "evidence": {"id": str(item.pk), "sha256": item.blob_id},
        "client": None,
        "reason": "never happened",
        "details": {},
        "prev": None,
    }
    leaf = signing.canonical_json(forged)
    _append_behind_the_back(leaf)
    reported(
        f"entry {size}: no valid signature by the log key of that point",
        f"entry {size}: links to None as the previous entry about item {item.pk}",
    )


def test_forged_membership_appended_consistently(history, case_b, alice):
    """No item, a well-formed entry, a consistent tree: only the missing entry signature tells."""
    size, _ = log.tree_head()
    forged = {
        "v": 2,
        "index": size,
        "time": "2099-01-01T00:00:00.000000Z",
        "actor": None,
        "action": "case.member_added",
        "case": {"id": str(case_b.pk), "reference": case_b.reference},
        "evidence": None,
        "client": None,
        "reason": None,
        "details": {"user": {"id": alice.pk, "username": "alice"}, "role": "investigator"},
    }
    _append_behind_the_back(signing.canonical_json(forged))
    from custody import projection

    Membership.objects.create(case=case_b, user=alice, added_at=projection.parse_time(forged["time"]))
    out = reported(f"entry {size}: no valid signature by the log key of that point")
    assert (
        "membership of user" not in out
    )  # the tables agree with the (forged) log: the signature is what catches it


def _append_behind_the_back(leaf: bytes) -> None:
    """What an insider with the schema in hand does: leaf, completed nodes and head, all consistent."""
    from custody.models import LogHead, TreeNode

    head = LogHead.objects.get(pk=1)
    frontier = [bytes(head.frontier)[i : i + 32] for i in range(0, len(bytes(head.frontier)), 32)]
    leaf_hash = merkle.leaf_hash(leaf)
    frontier, nodes = merkle.append_to_frontier(frontier, head.size, leaf_hash)
    entry = json.loads(leaf)
    LogEntry.objects.create(
        index=head.size,
        leaf=leaf,
        leaf_hash=leaf_hash,
        time=head and Evidence.objects.first().received_at,
        action=entry["action"],
        actor_id=(entry.get("actor") or {}).get("id"),
        case_id=(entry.get("case") or {}).get("id"),
        evidence_id=(entry.get("evidence") or {}).get("id"),
    )
    TreeNode.objects.bulk_create(TreeNode(level=lv, index=i, hash=h) for lv, i, h in nodes if lv > 0)
    dbguard.remove(connection)
    LogHead.objects.filter(pk=1).update(
        size=head.size + 1, frontier=b"".join(frontier), root=merkle.root_from_frontier(frontier)
    )


def test_public_announcement_that_says_other_than_its_publication(history):
    """An insider edits the public announcement (its leaf, with the tree recomputed): reported."""
    row = LogEntry.objects.get(action="result.announced")
    entry = json.loads(bytes(row.leaf))
    entry["details"]["public_statement_sha256"] = "0" * 64
    leaf = signing.canonical_json(entry)
    dbguard.remove(connection)
    LogEntry.objects.filter(index=row.index).update(leaf=leaf, leaf_hash=merkle.leaf_hash(leaf))
    reported(f"entry {row.index}: is not the public announcement of the publication in entry {row.index - 1}")
