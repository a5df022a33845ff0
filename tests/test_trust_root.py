"""The trust root: pinned out of band, rotated TUF-style, bridged for the log key; verify_log follows it."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody import audit, log, services, signing, trustroot
from custody.models import Checkpoint, SigningKey, TrustRoot

from .conftest import run_verify_log


def newest() -> TrustRoot:
    return TrustRoot.objects.order_by("-version").first()


def test_first_root_names_every_key_and_is_self_signed(custody_db, client):
    root = trustroot.load_pinned(newest().envelope)
    assert root.version == 1 and root.doc["previous"] is None
    assert {k["purpose"] for k in root.doc["keys"]} == {"log", "intake", "results"}
    assert sorted(root.active_keyids()) == sorted(SigningKey.objects.values_list("keyid", flat=True))
    response = client.get("/api/v1/trust-root/")
    assert response.status_code == 200 and response.json() == newest().envelope
    assert response["Custody-Trust-Root-Fingerprint"] == root.fingerprint


@pytest.mark.parametrize("purpose", ["log", "intake", "results"])
def test_rotation_publishes_a_version_signed_by_the_key_it_replaces(custody_db, purpose):
    pinned = trustroot.load_pinned(newest().envelope)
    old = SigningKey.objects.get(purpose=purpose, valid_until__isnull=True)
    new = services.rotate_signing_key(actor=None, purpose=purpose)
    chain = [row.envelope for row in TrustRoot.objects.order_by("version")]
    latest, steps = trustroot.follow(pinned, chain)
    assert latest.version == 2 and len(steps) == 1
    assert {s["keyid"] for s in latest.envelope["signatures"]} >= {old.keyid, new.keyid}
    assert latest.keys()[old.keyid]["valid_until"] is not None
    assert latest.keys()[new.keyid]["valid_until"] is None
    # Without the replaced key's signature the step is refused.
    stripped = dict(
        latest.envelope, signatures=[s for s in latest.envelope["signatures"] if s["keyid"] != old.keyid]
    )
    with pytest.raises(trustroot.TrustRootError, match="keys of the root it replaces"):
        trustroot.follow(pinned, [stripped])


def test_log_key_rotation_is_bridged_by_a_checkpoint_signed_with_both_keys(custody_db):
    old_vkey = trustroot.load_pinned(newest().envelope).log_verifier_keys()[0]
    services.rotate_signing_key(actor=None, purpose="log")
    bridge = Checkpoint.objects.order_by("-size").first()
    new_vkey = [v for v in trustroot.load_pinned(newest().envelope).log_verifier_keys() if v != old_vkey]
    assert signing.verify_note(bridge.note, old_vkey) == signing.verify_note(bridge.note, new_vkey[-1])
    report = audit.verify(check_blobs=False)
    assert report.ok, report.problems


def test_a_forged_next_version_is_refused(custody_db):
    pinned = trustroot.load_pinned(newest().envelope)
    mallory = Ed25519PrivateKey.generate()
    doc = dict(pinned.doc, version=2, previous=f"sha256:{pinned.fingerprint}")
    doc["keys"] = [
        {
            "keyid": signing.dsse_keyid(mallory.public_key()),
            "purpose": "intake",
            "name": "mallory",
            "public_key_pem": signing.public_key_pem(mallory.public_key()),
            "valid_from": "2026-01-01T00:00:00.000000Z",
            "valid_until": None,
        }
    ]
    forged = trustroot.sign(doc, [mallory])
    with pytest.raises(trustroot.TrustRootError, match="not signed by key"):
        trustroot.follow(pinned, [forged])


def verify_log(*args) -> tuple[int, str]:
    return run_verify_log("--skip-blobs", *args)


def test_verify_log_follows_the_pinned_root(custody_db, tmp_path):
    pinned = tmp_path / "root.json"
    pinned.write_text(json.dumps(newest().envelope))
    services.rotate_signing_key(actor=None, purpose="results")
    code, out = verify_log("--trust-root", str(pinned))
    assert code == 0, out
    assert f"trust root: version 2 ({trustroot.fingerprint(newest().envelope)})" in out


def test_verify_log_refuses_a_root_this_server_never_published(custody_db, tmp_path):
    other = Ed25519PrivateKey.generate()
    doc = json.loads(signing.b64decode(newest().envelope["payload"]))
    doc["keys"] = [
        dict(
            doc["keys"][0],
            keyid=signing.dsse_keyid(other.public_key()),
            purpose="intake",
            public_key_pem=signing.public_key_pem(other.public_key()),
            name="other",
        )
    ]
    pinned = tmp_path / "other.json"
    pinned.write_text(json.dumps(trustroot.sign(doc, [other])))
    code, out = verify_log("--trust-root", str(pinned))
    assert code == 1 and "is not one this server published" in out


def test_a_key_added_to_the_table_and_the_root_rewritten_is_caught(custody_db):
    """An insider rewrites the newest root row; the log entry that published it still says otherwise."""
    row = newest()
    mallory = Ed25519PrivateKey.generate()
    doc = json.loads(signing.b64decode(row.envelope["payload"]))
    TrustRoot.objects.filter(pk=row.pk).update(envelope=trustroot.sign(doc, [mallory]))
    report = audit.verify(check_blobs=False)
    assert any("trust root version 1: envelope: log says" in p for p in report.problems), report.problems
    assert any("trust root chain: trust root version 1: not signed by key" in p for p in report.problems)


def test_config_change_publishes_a_new_version_and_nothing_else_does(custody_db, settings, tmp_path):
    assert services.update_trust_root().version == 1  # nothing changed
    settings.CUSTODY_TSA_URLS = ["http://127.0.0.1:9/tsa"]
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n")
    settings.CUSTODY_TSA_CA_FILES = [ca]
    root = services.update_trust_root()
    assert root.version == 2
    assert trustroot.load_pinned(root.envelope).doc["tsa"]["urls"] == ["http://127.0.0.1:9/tsa"]
    assert log.tree_head()[0] > 0
