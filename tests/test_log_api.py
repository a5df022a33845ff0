"""The log over HTTP, checked the way an outside auditor would: independently of custody.merkle/signing."""

import base64
import hashlib
import threading

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from rest_framework.test import APIClient

from custody.models import LogEntry, LogHead, LogQueue

from .conftest import upload


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaf_hashes: list[bytes]) -> bytes:
    if not leaf_hashes:
        return h(b"")
    if len(leaf_hashes) == 1:
        return leaf_hashes[0]
    k = 1 << ((len(leaf_hashes) - 1).bit_length() - 1)
    return h(b"\x01" + mth(leaf_hashes[:k]) + mth(leaf_hashes[k:]))


def verify_inclusion(leaf_hash, index, size, proof, root) -> bool:
    """RFC 9162 2.1.3.2, written for this test."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = h(b"\x01" + p + r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = h(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof) -> bool:
    """RFC 9162 2.1.4.2, written for this test."""
    if first == second:
        return not proof and first_root == second_root
    if first & (first - 1) == 0:  # a power of two: the first root starts the path
        proof = [first_root, *proof]
    if not proof:
        return False
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = h(b"\x01" + c + fr)
            sr = h(b"\x01" + c + sr)
            while fn & 1 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = h(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0


def parse_and_verify_checkpoint(note: str, vkey: str) -> tuple[str, int, bytes]:
    """C2SP signed-note + tlog-checkpoint, parsed by hand."""
    name, key_id_hex, key_b64 = vkey.split("+", 2)
    key_bytes = base64.b64decode(key_b64)
    assert key_bytes[0] == 1 and len(key_bytes) == 33
    assert h(name.encode() + b"\n" + key_bytes)[:4].hex() == key_id_hex
    body, sigs = note.split("\n\n", 1)
    body += "\n"
    line = sigs.rstrip("\n").split("\n")[0]
    assert line.startswith(f"\u2014 {name} ")
    sig = base64.b64decode(line.split(" ")[2])
    assert sig[:4].hex() == key_id_hex
    Ed25519PublicKey.from_public_bytes(key_bytes[1:]).verify(sig[4:], body.encode())
    origin, size, root = body.rstrip("\n").split("\n")
    return origin, int(size), base64.b64decode(root)


@pytest.fixture
def grown_log(as_alice, case_a):
    for i in range(6):
        upload(as_alice, case_a, f"entry {i}".encode())


def test_checkpoint_entries_and_proofs_verify_independently(grown_log, as_carol):
    public = APIClient()
    vkey = public.get("/api/v1/keys/").json()["log_vkey"]
    note = public.get("/api/v1/log/checkpoint").content.decode()
    origin, size, root = parse_and_verify_checkpoint(note, vkey)
    assert origin == "custody.localhost/log" and size == LogHead.objects.get().size

    entries = as_carol.get("/api/v1/log/entries/", {"start": 0, "end": size}).json()
    assert [e["index"] for e in entries] == list(range(size))
    leaf_hashes = []
    for e in entries:
        if e.get("redacted"):
            leaf_hashes.append(base64.b64decode(e["leaf_hash"]))
        else:
            leaf = base64.b64decode(e["leaf"])
            assert e["entry"]["index"] == e["index"]
            leaf_hashes.append(h(b"\x00" + leaf))
    assert mth(leaf_hashes) == root

    for index in range(size):
        proof = public.get("/api/v1/log/proof/inclusion/", {"index": index, "size": size}).json()
        hashes = [base64.b64decode(x) for x in proof["hashes"]]
        assert verify_inclusion(leaf_hashes[index], index, size, hashes, root), index
        assert not verify_inclusion(leaf_hashes[index], index ^ 1, size, hashes, root) or size == 1

    for first in range(1, size + 1):
        proof = public.get("/api/v1/log/proof/consistency/", {"first": first, "second": size}).json()
        hashes = [base64.b64decode(x) for x in proof["hashes"]]
        assert verify_consistency(first, size, mth(leaf_hashes[:first]), root, hashes), first


def test_checkpoint_grows_and_old_checkpoint_stays_consistent(as_alice, case_a):
    public = APIClient()
    vkey = public.get("/api/v1/keys/").json()["log_vkey"]
    _, old_size, old_root = parse_and_verify_checkpoint(
        public.get("/api/v1/log/checkpoint").content.decode(), vkey
    )
    upload(as_alice, case_a, b"more")
    _, new_size, new_root = parse_and_verify_checkpoint(
        public.get("/api/v1/log/checkpoint").content.decode(), vkey
    )
    assert new_size > old_size
    proof = public.get("/api/v1/log/proof/consistency/", {"first": old_size, "second": new_size}).json()
    assert verify_consistency(
        old_size, new_size, old_root, new_root, [base64.b64decode(x) for x in proof["hashes"]]
    )


def test_outsiders_see_only_leaf_hashes_of_cases_they_cannot_see(grown_log, as_dave):
    entries = as_dave.get("/api/v1/log/entries/", {"start": 0, "end": 1000}).json()
    case_entries = {e.index for e in LogEntry.objects.exclude(case=None)}
    for e in entries:
        if e["index"] in case_entries:
            assert e == {"index": e["index"], "redacted": True, "leaf_hash": e["leaf_hash"]}


@pytest.mark.parametrize(
    "params",
    [
        {"index": "x"},
        {"index": -1},
        {"index": 10**6},
        {"index": 2, "size": 1},
        {},
    ],
)
def test_bad_inclusion_requests_are_400(grown_log, params):
    response = APIClient().get("/api/v1/log/proof/inclusion/", params)
    assert response.status_code == 400 and "detail" in response.json()


@pytest.mark.parametrize("params", [{"first": 0, "second": 3}, {"first": 5, "second": 2}, {"first": "a"}])
def test_bad_consistency_requests_are_400(grown_log, params):
    response = APIClient().get("/api/v1/log/proof/consistency/", params)
    assert response.status_code == 400 and "detail" in response.json()


def test_entries_need_authentication(grown_log):
    assert APIClient().get("/api/v1/log/entries/").status_code == 401


@pytest.mark.slow
def test_concurrent_appends_are_dense_and_match_the_root(transactional_db, evidence_for_threads):
    """Many threads, each with its own database connection, appending at once."""
    from django.db import connection

    from custody import services
    from custody.models import Evidence, User

    evidence = Evidence.objects.get(pk=evidence_for_threads)
    user = User.objects.get(username="alice")
    errors = []

    def work():
        try:
            for _ in range(15):
                services.record_view(actor=user, evidence=evidence, client="10.0.0.1")
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    before = LogHead.objects.get().size
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    # On PostgreSQL views are queued: an appender sequences for a short budget
    # and leaves the rest to the next one, wait_for or the beat (custody/log.py).
    # Nothing comes after the last view here, so the beat's drain stands in.
    from custody import log

    log.drain()
    assert not LogQueue.objects.exists()
    rows = list(LogEntry.objects.order_by("index").values_list("index", "leaf"))
    assert [i for i, _ in rows] == list(range(len(rows)))
    assert len(rows) == before + 8 * 15
    head = LogHead.objects.get()
    assert bytes(head.root) == mth([h(b"\x00" + bytes(leaf)) for _, leaf in rows])


@pytest.fixture
def evidence_for_threads(transactional_db, as_alice, case_a):
    return upload(as_alice, case_a, b"shared").json()["id"]
