"""The custody log as the foundation uses it: dense indexes, exact leaves, a root anyone can recompute."""

import hashlib
import json

from custody import log, merkle
from custody.models import LogEntry, LogHead

from .conftest import upload


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 MTH written out from the definition, independent of custody.merkle."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])).digest()


def test_entries_are_dense_canonical_and_the_root_matches(as_alice, case_a):
    for i in range(5):
        upload(as_alice, case_a, f"item {i}".encode())
    entries = list(LogEntry.objects.order_by("index"))
    assert [e.index for e in entries] == list(range(len(entries)))
    for e in entries:
        leaf = bytes(e.leaf)
        decoded = json.loads(leaf)
        assert decoded["index"] == e.index and decoded["action"] == e.action
        assert leaf == json.dumps(decoded, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        assert bytes(e.leaf_hash) == hashlib.sha256(b"\x00" + leaf).digest()
    head = LogHead.objects.get(pk=1)
    assert head.size == len(entries)
    assert bytes(head.root) == reference_root([bytes(e.leaf) for e in entries])


def test_intake_entry_names_case_evidence_actor_and_client(as_alice, case_a, alice):
    body = upload(as_alice, case_a, b"abc", name="x.txt").json()
    entry = json.loads(bytes(LogEntry.objects.get(index=body["log_index"]).leaf))
    assert entry["action"] == "evidence.received"
    assert entry["actor"] == {"id": alice.pk, "username": "alice"}
    assert entry["case"] == {"id": str(case_a.pk), "reference": "A-1"}
    assert entry["evidence"] == {"id": body["id"], "sha256": body["sha256"]}
    assert entry["client"] == "127.0.0.1"
    assert entry["details"]["md5"] == body["md5"]


def test_inclusion_and_consistency_proofs_from_stored_nodes(as_alice, case_a):
    for i in range(9):
        upload(as_alice, case_a, f"proof {i}".encode())
    size, root = log.tree_head()
    for entry in LogEntry.objects.all():
        proof = log.inclusion_proof(entry.index, size)
        assert merkle.verify_inclusion(bytes(entry.leaf_hash), entry.index, size, proof, root)
    for first in range(1, size):
        proof = log.consistency_proof(first, size)
        assert merkle.verify_consistency(first, size, log.root_at(first), root, proof)


def test_append_outside_a_transaction_is_refused(custody_db):
    import pytest
    from django.db import transaction

    # pytest-django wraps the test in a transaction; leave it to see the guard.
    with transaction.atomic():
        pass
    conn = transaction.get_connection()
    saved = conn.in_atomic_block
    conn.in_atomic_block = False
    try:
        with pytest.raises(RuntimeError, match="inside the action's transaction"):
            log.append("test.action")
    finally:
        conn.in_atomic_block = saved
