"""Signed intake receipts: checked with openssl by hand, and with the project's code."""

import base64
import hashlib
import json
import subprocess

from custody import signing
from custody.keys import public_keys
from custody.services import INTAKE_PREDICATE_TYPE

from .conftest import require_tool, upload


def keys_by_id(client) -> dict:
    body = client.get("/api/v1/keys/").json()
    return {k["keyid"]: k for k in body["keys"]}


def test_keys_endpoint_is_public_and_lists_each_purpose(custody_db):
    from rest_framework.test import APIClient

    body = APIClient().get("/api/v1/keys/").json()
    assert {k["purpose"] for k in body["keys"]} == {"log", "intake", "results"}
    for k in body["keys"]:
        key = signing.load_public_key_pem(k["public_key_pem"])
        assert k["keyid"] == signing.dsse_keyid(key)
        assert k["valid_until"] is None
    name, _, _ = signing.parse_verifier_key(body["log_vkey"])
    assert name == "custody.localhost/log"


def test_receipt_statement_records_the_intake(as_alice, case_a, alice):
    data = b"\x00\x01 recording bytes"
    body = upload(as_alice, case_a, data, name="rec.ogg", source="WhatsApp export").json()
    envelope = as_alice.get(f"/api/v1/evidence/{body['id']}/receipt/").json()
    assert envelope == body["receipt"]
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == INTAKE_PREDICATE_TYPE
    assert statement["subject"] == [
        {
            "name": "rec.ogg",
            "digest": {
                "sha256": hashlib.sha256(data).hexdigest(),
                "sha1": hashlib.sha1(data).hexdigest(),  # noqa: S324 - forensic interoperability, not security
                "md5": hashlib.md5(data).hexdigest(),  # noqa: S324
            },
        }
    ]
    p = statement["predicate"]
    assert p["case"] == {"id": str(case_a.pk), "reference": "A-1"}
    assert (p["original_name"], p["size"], p["source"]) == ("rec.ogg", len(data), "WhatsApp export")
    assert p["submitter"] == {"id": alice.pk, "username": "alice"}
    assert p["log"]["index"] == body["log_index"]
    assert p["received_at"].endswith("Z")
    assert p["evidence"] == body["id"]


def test_receipt_verifies_with_project_code(as_alice, case_a):
    body = upload(as_alice, case_a).json()
    payload, keyid = signing.dsse_verify(body["receipt"], public_keys("intake"))
    assert json.loads(payload)["subject"][0]["digest"]["sha256"] == body["sha256"]
    # Not with the results or log key: purposes are separate.
    assert keyid in keys_by_id(as_alice) and keys_by_id(as_alice)[keyid]["purpose"] == "intake"


def test_receipt_verifies_with_openssl_by_hand(as_alice, case_a, tmp_path):
    """What the README tells an auditor to do: rebuild PAE, then openssl pkeyutl."""
    openssl = require_tool("openssl")
    body = upload(as_alice, case_a, b"bytes for openssl").json()
    envelope = body["receipt"]
    key = keys_by_id(as_alice)[envelope["signatures"][0]["keyid"]]
    (tmp_path / "intake.pub.pem").write_text(key["public_key_pem"])
    payload = base64.b64decode(envelope["payload"])
    payload_type = envelope["payloadType"].encode()
    pae = b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)
    (tmp_path / "pae.bin").write_bytes(pae)
    (tmp_path / "sig.bin").write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))

    def verify():
        return subprocess.run(
            [
                openssl,
                "pkeyutl",
                "-verify",
                "-pubin",
                "-inkey",
                "intake.pub.pem",
                "-rawin",
                "-in",
                "pae.bin",
                "-sigfile",
                "sig.bin",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )

    result = verify()
    assert result.returncode == 0 and "Signature Verified Successfully" in result.stdout, result
    # One changed byte of the statement and openssl refuses it.
    tampered = pae[:-2] + bytes([pae[-2] ^ 1]) + pae[-1:]
    (tmp_path / "pae.bin").write_bytes(tampered)
    result = verify()
    assert result.returncode != 0 and "Signature Verification Failure" in result.stdout


def test_rotated_key_stays_published_and_old_receipts_still_verify(as_alice, case_a):
    import io

    from django.core.management import call_command

    from custody.models import LogEntry

    old = upload(as_alice, case_a, b"before rotation").json()
    call_command("rotate_key", "intake", stdout=io.StringIO())
    new = upload(as_alice, case_a, b"after rotation").json()
    keys = as_alice.get("/api/v1/keys/").json()["keys"]
    intake = [k for k in keys if k["purpose"] == "intake"]
    assert len(intake) == 2 and sum(k["valid_until"] is None for k in intake) == 1
    assert old["receipt"]["signatures"][0]["keyid"] != new["receipt"]["signatures"][0]["keyid"]
    for body in (old, new):
        signing.dsse_verify(body["receipt"], public_keys("intake"))
    actions = list(LogEntry.objects.filter(action__startswith="key.").values_list("action", flat=True))
    assert actions[-2:] == ["key.retired", "key.added"]
