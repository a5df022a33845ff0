"""Signatures: Ed25519 keys, DSSE envelopes, in-toto statements, C2SP signed notes.

Pure module (only ``cryptography``), so the offline verifier and the tests
can use it without Django.

- DSSE v1: the signature covers PAE(payloadType, payload) =
  "DSSEv1" SP len(type) SP type SP len(body) SP body, lengths in ASCII decimal.
- DSSE keyid: hex SHA-256 of the DER SubjectPublicKeyInfo of the public key.
- C2SP signed-note: key id = SHA-256(name || 0x0A || 0x01 || public key)[:4];
  signature line "— <name> <base64(key id || signature)>".
- Private keys at rest: scrypt (n=2**17, r=8, p=1 by default) derives an AES-256-GCM key
  from the passphrase; PKCS#8's BestAvailableEncryption would use 2,048 rounds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
NOTE_ALG_ED25519 = 0x01


def canonical_json(value: Any, allow_floats: bool = False) -> bytes:
    """Canonical JSON bytes: sorted keys, no insignificant whitespace, UTF-8.

    RFC 8785 for strings, integers, booleans, null, lists and objects. Floats
    are where serialisers disagree, so log entries (whose bytes anyone must be
    able to re-derive) refuse them. Analysis statements allow finite floats
    (``allow_floats``): their signature covers the exact payload bytes, so
    verifying them never needs re-serialisation.
    """

    def check(v: Any) -> None:
        if isinstance(v, float):
            if not allow_floats:
                raise TypeError("floats are not allowed in canonical JSON; use int or str")
            if v != v or v in (float("inf"), float("-inf")):
                raise TypeError("NaN and infinities are not JSON")
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise TypeError("object keys must be strings")
                check(item)
        elif isinstance(v, list | tuple):
            for item in v:
                check(item)

    check(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# --- keys -------------------------------------------------------------------


def public_key_der(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def load_public_key_pem(pem: str | bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def dsse_keyid(public_key: Ed25519PublicKey) -> str:
    """DSSE keyid: hex SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(public_key_der(public_key)).hexdigest()


SCRYPT_N = 2**17  # 128 MiB and ~0.4 s per derivation: once per process and key


def encrypt_private_key(key: Ed25519PrivateKey, passphrase: str, scrypt_n: int = SCRYPT_N) -> bytes:
    """Serialise a private key encrypted under a passphrase (JSON, versioned).

    The KDF parameters are stored in the file, so ``scrypt_n`` can be raised
    later without breaking existing keys.
    """
    params = {"n": scrypt_n, "r": 8, "p": 1}
    salt = os.urandom(16)
    nonce = os.urandom(12)
    kek = Scrypt(salt=salt, length=32, **params).derive(passphrase.encode())
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    public = raw_public_key(key.public_key())
    # The public key is authenticated data: a swapped public half is detected.
    ciphertext = AESGCM(kek).encrypt(nonce, raw, public)
    doc = {
        "format": "custody-ed25519-key/v1",
        "kdf": {"name": "scrypt", **params, "salt": b64(salt)},
        "cipher": {"name": "aes-256-gcm", "nonce": b64(nonce)},
        "public_key": b64(public),
        "ciphertext": b64(ciphertext),
    }
    return canonical_json(doc)


def decrypt_private_key(blob: bytes, passphrase: str) -> Ed25519PrivateKey:
    doc = json.loads(blob)
    if doc.get("format") != "custody-ed25519-key/v1":
        raise ValueError("unknown key file format")
    kdf = doc["kdf"]
    kek = Scrypt(salt=b64decode(kdf["salt"]), length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(
        passphrase.encode()
    )
    public = b64decode(doc["public_key"])
    try:
        raw = AESGCM(kek).decrypt(b64decode(doc["cipher"]["nonce"]), b64decode(doc["ciphertext"]), public)
    except Exception:
        raise ValueError("wrong passphrase or damaged key file") from None
    key = Ed25519PrivateKey.from_private_bytes(raw)
    if raw_public_key(key.public_key()) != public:
        raise ValueError("key file public half does not match its private half")
    return key


# --- DSSE -------------------------------------------------------------------


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def dsse_sign(payload: bytes, payload_type: str, key: Ed25519PrivateKey) -> dict:
    sig = key.sign(pae(payload_type, payload))
    return {
        "payload": b64(payload),
        "payloadType": payload_type,
        "signatures": [{"keyid": dsse_keyid(key.public_key()), "sig": b64(sig)}],
    }


def dsse_verify(envelope: dict, public_keys: dict[str, Ed25519PublicKey]) -> tuple[bytes, str]:
    """Verify a DSSE envelope against {keyid: public key}.

    Returns (payload bytes, keyid that verified). Raises ValueError naming the
    problem otherwise. A signature whose keyid is unknown is skipped; at least
    one must verify.
    """
    try:
        payload = b64decode(envelope["payload"])
        payload_type = envelope["payloadType"]
        signatures = envelope["signatures"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed DSSE envelope: {exc}") from None
    if not isinstance(payload_type, str) or not isinstance(signatures, list) or not signatures:
        raise ValueError("malformed DSSE envelope: no signatures")
    message = pae(payload_type, payload)
    for entry in signatures:
        keyid = entry.get("keyid") if isinstance(entry, dict) else None
        key = public_keys.get(keyid or "")
        if key is None:
            continue
        try:
            key.verify(b64decode(entry["sig"]), message)
        except (InvalidSignature, KeyError, ValueError):
            raise ValueError(f"signature by key {keyid} does not verify") from None
        return payload, keyid
    raise ValueError("no signature by a known key")


def in_toto_statement(subject: list[dict], predicate_type: str, predicate: dict) -> dict:
    return {
        "_type": IN_TOTO_STATEMENT_TYPE,
        "subject": subject,
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def sign_statement(statement: dict, key: Ed25519PrivateKey) -> dict:
    return dsse_sign(canonical_json(statement, allow_floats=True), IN_TOTO_PAYLOAD_TYPE, key)


# --- log entries ------------------------------------------------------------------

ENTRY_SIGNATURE_CONTEXT = b"custody-log-entry/v1\n"


def entry_message(leaf_hash: bytes) -> bytes:
    """What the log key signs for one entry (a context string keeps it apart from checkpoint notes)."""
    return ENTRY_SIGNATURE_CONTEXT + leaf_hash


# --- C2SP signed notes ------------------------------------------------------


def note_key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(
        name.encode() + b"\n" + bytes([NOTE_ALG_ED25519]) + raw_public_key(public_key)
    ).digest()[:4]


def note_verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """C2SP vkey: <name>+<hex key id>+<base64(0x01 || public key)>."""
    return f"{name}+{note_key_id(name, public_key).hex()}+{b64(bytes([NOTE_ALG_ED25519]) + raw_public_key(public_key))}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes, Ed25519PublicKey]:
    try:
        # Names cannot contain "+", base64 can: split from the left.
        name, hex_id, key_b64 = vkey.split("+", 2)
        key_bytes = b64decode(key_b64)
        key_id = bytes.fromhex(hex_id)
    except ValueError:
        raise ValueError("malformed verifier key") from None
    if len(key_bytes) != 33 or key_bytes[0] != NOTE_ALG_ED25519 or len(key_id) != 4:
        raise ValueError("verifier key is not an Ed25519 note key")
    public_key = Ed25519PublicKey.from_public_bytes(key_bytes[1:])
    if note_key_id(name, public_key) != key_id:
        raise ValueError("verifier key id does not match its name and key")
    return name, key_id, public_key


def sign_note(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """Sign a note body (must end with a newline) as a C2SP signed note."""
    if not text.endswith("\n"):
        raise ValueError("note text must end with a newline")
    if any(c in name for c in " +\n"):
        raise ValueError("note key names cannot contain spaces, '+' or newlines")
    return f"{text}\n{note_signature_line(text, name, key)}\n"


def note_signature_line(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """One signature line of a C2SP signed note (without the newline)."""
    sig = key.sign(text.encode())
    return f"\u2014 {name} {b64(note_key_id(name, key.public_key()) + sig)}"


def verify_note(note: str, vkey: str) -> str:
    """Verify a signed note with a C2SP verifier key; return the note text.

    Raises ValueError if no signature line by this key verifies.
    """
    name, key_id, public_key = parse_verifier_key(vkey)
    text, sep, sigblock = note.rpartition("\n\n")
    if not sep or not sigblock.endswith("\n"):
        raise ValueError("malformed signed note")
    text += "\n"
    for line in sigblock[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise ValueError("malformed signature line in note")
        try:
            line_name, sig_b64 = line[2:].split(" ")
            sig = b64decode(sig_b64)
        except ValueError:
            raise ValueError("malformed signature line in note") from None
        if line_name != name or sig[:4] != key_id:
            continue
        try:
            public_key.verify(sig[4:], text.encode())
        except InvalidSignature:
            raise ValueError(f"note signature by {name} does not verify") from None
        return text
    raise ValueError(f"note carries no signature by {name}")
