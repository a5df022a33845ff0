"""verify_log's entry signatures checked by worker processes find what the serial check finds."""

import pytest
from django.db import connection

from custody import audit, dbguard, entrysigs, log
from custody.models import LogEntry

from .conftest import run_verify_log, upload

CHUNK = 5


@pytest.fixture
def history(as_alice, case_a):
    """A few dozen entries: intakes, views and checkpoints."""
    items = [upload(as_alice, case_a, f"item {i} ".encode() * 50, name=f"{i}.bin").json() for i in range(3)]
    log.latest_checkpoint()
    for n in range(14):
        as_alice.get(f"/api/v1/evidence/{items[n % 3]['id']}/")
        if n % 7 == 6:
            log.latest_checkpoint()
    return items


def tamper(statement, params=()):
    dbguard.remove(connection)
    with connection.cursor() as cursor:
        cursor.execute(statement.replace("index", connection.ops.quote_name("index")), params)


def in_mid_chunk(after: int = 0) -> int:
    """The index of an entry in the middle of a chunk of CHUNK signed entries, after ``after``."""
    signed = [i for i, s in LogEntry.objects.order_by("index").values_list("index", "signature") if bytes(s)]
    position = next(p for p, i in enumerate(signed) if i > after and p % CHUNK == CHUNK // 2)
    return signed[position]


def both_ways() -> tuple[list[str], list[str]]:
    """The problems verify_log reports checking signatures here, and in 2 worker processes."""
    kwargs = {"check_blobs": False, "ask_witnesses": False}
    serial = audit.verify(workers=0, **kwargs)
    parallel = audit.verify(workers=2, chunk=CHUNK, **kwargs)
    return serial.problems, parallel.problems


def test_clean_log_verifies_both_ways(history):
    serial, parallel = both_ways()
    assert serial == [] and parallel == []
    code, out = run_verify_log("--skip-blobs", "--no-witnesses", "--workers", "2")
    assert code == 0 and "OK:" in out, out


def test_bad_signature_in_mid_chunk_is_reported_as_serially(history):
    index = in_mid_chunk()
    signature = bytearray(LogEntry.objects.get(index=index).signature)
    signature[10] ^= 0x01
    tamper("UPDATE custody_logentry SET signature = %s WHERE index = %s", [bytes(signature), index])
    serial, parallel = both_ways()
    assert serial == [entrysigs.BAD_SIGNATURE.format(index=index)]
    assert parallel == serial


def test_changed_leaf_in_mid_chunk_is_reported_as_serially(history):
    first = in_mid_chunk()
    second = in_mid_chunk(after=first + CHUNK)
    leaf = bytes(LogEntry.objects.get(index=second).leaf).replace(b'"alice"', b'"mallory"')
    tamper("UPDATE custody_logentry SET leaf = %s WHERE index = %s", [leaf, second])
    signature = bytearray(LogEntry.objects.get(index=first).signature)
    signature[-1] ^= 0x80
    tamper("UPDATE custody_logentry SET signature = %s WHERE index = %s", [bytes(signature), first])
    serial, parallel = both_ways()
    assert f"entry {second}: stored leaf hash does not match its leaf bytes" in serial
    # The changed leaf has another hash: the signature over the old one no longer fits.
    assert entrysigs.BAD_SIGNATURE.format(index=second) in serial
    assert entrysigs.BAD_SIGNATURE.format(index=first) in serial
    # The same problems; a worker's are reported when its chunk comes back.
    assert sorted(parallel) == sorted(serial)
    assert len(parallel) == len(serial)


def test_chunk_check_is_the_serial_check():
    """check_chunk, as a worker runs it, against each key valid at the entry (two at a rotation)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from custody import signing

    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    raw = [
        k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        for k in (old, new)
    ]
    hashes = [bytes([i]) * 32 for i in range(4)]
    signatures = [
        old.sign(signing.entry_message(hashes[0])),
        new.sign(signing.entry_message(hashes[1])),  # the second key of the rotation
        new.sign(signing.entry_message(hashes[1])),  # signs another entry's hash
        b"short",
    ]
    task = ([tuple(raw), (raw[0],)], [10, 11, 12, 13], b"".join(hashes), signatures, [0, 0, 0, 0])
    assert entrysigs.check_chunk(task) == [12, 13]
    # Only the old key valid at entry 11: the new key's signature does not count.
    assert entrysigs.check_chunk((task[0], [11], hashes[1], [signatures[1]], [1])) == [11]
