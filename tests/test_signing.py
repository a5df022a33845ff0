"""signing.py against published vectors and its own round trips."""

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody import signing

# RFC 8032 section 7.1, TEST 1 (empty message).
RFC8032_SECRET = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIG = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
    "d25bf5f0595bbe24655141438e7a100b"
)


def test_ed25519_matches_rfc8032_test_1():
    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET)
    assert signing.raw_public_key(key.public_key()) == RFC8032_PUBLIC
    assert key.sign(b"") == RFC8032_SIG


def test_pae_matches_the_dsse_spec_example():
    # DSSE protocol.md: PAE("http://example.com/HelloWorld", "hello world")
    assert signing.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_dsse_round_trip_and_tamper_detection():
    key = Ed25519PrivateKey.generate()
    envelope = signing.sign_statement({"_type": "x", "n": 1}, key)
    keys = {signing.dsse_keyid(key.public_key()): key.public_key()}
    payload, keyid = signing.dsse_verify(envelope, keys)
    assert json.loads(payload) == {"_type": "x", "n": 1}
    assert keyid == envelope["signatures"][0]["keyid"]

    tampered = dict(envelope, payload=base64.b64encode(b'{"_type":"x","n":2}').decode())
    with pytest.raises(ValueError, match="does not verify"):
        signing.dsse_verify(tampered, keys)
    with pytest.raises(ValueError, match="no signature by a known key"):
        signing.dsse_verify(envelope, {})
    with pytest.raises(ValueError, match="malformed"):
        signing.dsse_verify({"payload": "!!"}, keys)


def test_keyid_is_sha256_of_der_spki():
    import hashlib

    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET).public_key()
    # DER SPKI of an Ed25519 key is a fixed 12-byte prefix then the raw key.
    der = bytes.fromhex("302a300506032b6570032100") + RFC8032_PUBLIC
    assert signing.public_key_der(key) == der
    assert signing.dsse_keyid(key) == hashlib.sha256(der).hexdigest()


def test_canonical_json_is_sorted_compact_utf8_and_refuses_floats():
    assert signing.canonical_json({"b": 1, "a": ["é", None, True]}) == '{"a":["é",null,true],"b":1}'.encode()
    with pytest.raises(TypeError):
        signing.canonical_json({"x": 1.5})


def test_signed_note_round_trip_and_vkey():
    key = Ed25519PrivateKey.generate()
    note = signing.sign_note("example.org/log\n3\nAAAA\n", "example.org/log", key)
    vkey = signing.note_verifier_key("example.org/log", key.public_key())
    assert vkey.startswith("example.org/log+")
    assert signing.verify_note(note, vkey) == "example.org/log\n3\nAAAA\n"
    assert note.split("\n")[4].startswith("\u2014 example.org/log ")
    with pytest.raises(ValueError):
        signing.verify_note(note.replace("\n3\n", "\n4\n"), vkey)
    other = signing.note_verifier_key("example.org/log", Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ValueError, match="no signature"):
        signing.verify_note(note, other)


def test_c2sp_vkey_key_id_rule():
    import hashlib

    key = Ed25519PrivateKey.from_private_bytes(RFC8032_SECRET).public_key()
    name, key_id, _ = signing.parse_verifier_key(signing.note_verifier_key("PeterNeumann", key))
    assert name == "PeterNeumann"
    assert key_id == hashlib.sha256(b"PeterNeumann\n\x01" + RFC8032_PUBLIC).digest()[:4]


def test_private_key_encryption_round_trip_and_wrong_passphrase():
    key = Ed25519PrivateKey.generate()
    blob = signing.encrypt_private_key(key, "s3cret", scrypt_n=2**10)
    doc = json.loads(blob)
    assert doc["kdf"]["name"] == "scrypt" and doc["kdf"]["n"] == 2**10
    assert b"s3cret" not in blob
    restored = signing.decrypt_private_key(blob, "s3cret")
    assert signing.raw_public_key(restored.public_key()) == signing.raw_public_key(key.public_key())
    with pytest.raises(ValueError, match="wrong passphrase"):
        signing.decrypt_private_key(blob, "guess")


def test_default_kdf_cost_is_strong():
    assert signing.SCRYPT_N >= 2**17
