"""The trust root: what an auditor pins, out of band, to check this server without believing it.

A trust root is a DSSE envelope (payload type ``TRUST_ROOT_TYPE``) over a
canonical JSON document naming the log's origin, every signing key with its
purpose and validity (retired ones too, so old signatures stay checkable),
the witnesses that cosign checkpoints with the quorum required, and the
certificates of the RFC 3161 time-stamp authorities.

Versions form a chain, TUF style: version N+1 names the SHA-256 of version
N's payload and is signed by every key that was active in version N (the
keys it replaces among them) and by every key active in itself. A client
pinned to any version follows the chain forward, checking each step, and
ends with the newest root: a forger would need the private keys of the
root the client already trusts.

The fingerprint an auditor prints, mails or files with a court is the
SHA-256 of the payload: ``jq -r .payload ROOT.json | base64 -d | sha256sum``.

Pure module (``cryptography`` only): the offline verifier uses it. The
functions that read the database live in services (``update_trust_root``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from . import signing

TRUST_ROOT_TYPE = "application/vnd.custody-server.trust-root+json"
DOCUMENT_TYPE = "urn:custody-server:trust-root:v1"


class TrustRootError(ValueError):
    pass


@dataclass(frozen=True)
class Root:
    """A verified trust root: the document and its fingerprint."""

    doc: dict
    fingerprint: str
    envelope: dict

    @property
    def version(self) -> int:
        return self.doc["version"]

    def keys(self, purpose: str | None = None) -> dict[str, dict]:
        return {k["keyid"]: k for k in self.doc["keys"] if purpose is None or k["purpose"] == purpose}

    def active_keyids(self) -> list[str]:
        return sorted(k["keyid"] for k in self.doc["keys"] if k.get("valid_until") is None)

    def log_verifier_keys(self) -> list[str]:
        return [k["vkey"] for k in self.doc["keys"] if k["purpose"] == "log" and k.get("vkey")]

    def key_valid_at(self, keyid: str, purpose: str, time: str) -> tuple[bool, str]:
        """Whether ``keyid`` was a ``purpose`` key at ``time`` (RFC 3339 UTC, compared as text)."""
        key = self.keys().get(keyid)
        if key is None:
            return False, f"key {keyid[:16]} is not in the trust root"
        if key["purpose"] != purpose:
            return False, f"key {keyid[:16]} is a {key['purpose']} key, not a {purpose} key"
        if time < key["valid_from"] or (key.get("valid_until") is not None and time > key["valid_until"]):
            until = key.get("valid_until") or "now"
            return False, f"key {keyid[:16]} was valid from {key['valid_from']} to {until}, not at {time}"
        return True, f"{purpose} key {keyid[:16]} of the trust root, valid at {time}"

    def public_key(self, keyid: str):
        return signing.load_public_key_pem(self.keys()[keyid]["public_key_pem"])


def fingerprint(envelope: dict) -> str:
    return hashlib.sha256(signing.b64decode(envelope["payload"])).hexdigest()


def sign(doc: dict, private_keys: list) -> dict:
    """A DSSE envelope over the document, one signature per key."""
    payload = signing.canonical_json(doc)
    message = signing.pae(TRUST_ROOT_TYPE, payload)
    return {
        "payload": signing.b64(payload),
        "payloadType": TRUST_ROOT_TYPE,
        "signatures": [
            {"keyid": signing.dsse_keyid(key.public_key()), "sig": signing.b64(key.sign(message))}
            for key in private_keys
        ],
    }


def _parse(envelope: dict) -> tuple[dict, bytes]:
    try:
        if envelope["payloadType"] != TRUST_ROOT_TYPE:
            raise TrustRootError(f"not a trust root (payload type {envelope['payloadType']!r})")
        payload = signing.b64decode(envelope["payload"])
        doc = json.loads(payload)
        if doc.get("_type") != DOCUMENT_TYPE or not isinstance(doc.get("version"), int):
            raise TrustRootError("not a trust root document")
        if not isinstance(doc.get("keys"), list) or not isinstance(envelope.get("signatures"), list):
            raise TrustRootError("trust root lacks its keys or signatures")
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, TrustRootError):
            raise
        raise TrustRootError(f"malformed trust root: {exc}") from None
    for key in doc["keys"]:
        public = signing.load_public_key_pem(key["public_key_pem"])
        if signing.dsse_keyid(public) != key["keyid"]:
            raise TrustRootError(f"trust root key {key['keyid'][:16]}: its key id does not match the key")
        if key["purpose"] == "log" and key.get("vkey") != signing.note_verifier_key(key["name"], public):
            raise TrustRootError(f"trust root log key {key['keyid'][:16]}: its verifier key does not match")
    return doc, payload


def _signed_by(envelope: dict, payload: bytes, keyid: str, pem: str) -> bool:
    message = signing.pae(TRUST_ROOT_TYPE, payload)
    public = signing.load_public_key_pem(pem)
    for sig in envelope["signatures"]:
        if isinstance(sig, dict) and sig.get("keyid") == keyid:
            try:
                public.verify(signing.b64decode(sig["sig"]), message)
                return True
            except Exception:  # noqa: BLE001, S112 - a bad signature counts as none; try others
                continue
    return False


def _require_signatures(envelope: dict, payload: bytes, doc: dict, by: dict, what: str) -> None:
    """Every key active in ``by`` (a root document) must have signed ``envelope``."""
    active = [k for k in by["keys"] if k.get("valid_until") is None]
    if not active:
        raise TrustRootError(f"{what}: the signing root has no active key")
    missing = [
        k["keyid"][:16] for k in active if not _signed_by(envelope, payload, k["keyid"], k["public_key_pem"])
    ]
    if missing:
        raise TrustRootError(f"{what}: not signed by key(s) {', '.join(missing)}")


def load_pinned(envelope: dict) -> Root:
    """The root the auditor pinned: trusted as given, but it must be well formed and self-signed."""
    doc, payload = _parse(envelope)
    _require_signatures(envelope, payload, doc, doc, f"trust root version {doc['version']}")
    return Root(doc, hashlib.sha256(payload).hexdigest(), envelope)


def follow(pinned: Root, later: list[dict]) -> tuple[Root, list[str]]:
    """Follow the chain from ``pinned`` through ``later`` envelopes; returns the newest root and the steps.

    Versions at or below the pinned one are ignored (a bundle may carry the
    whole chain); each newer one must be the next version, name its
    predecessor's fingerprint, and be signed by every key active in its
    predecessor and in itself. Raises TrustRootError at the first bad step.
    """
    by_version: dict[int, dict] = {}
    for envelope in later:
        doc, _ = _parse(envelope)
        if doc["version"] > pinned.version:
            if doc["version"] in by_version and by_version[doc["version"]] != envelope:
                raise TrustRootError(f"two different trust roots claim version {doc['version']}")
            by_version[doc["version"]] = envelope
    current, steps = pinned, []
    for version in sorted(by_version):
        if version != current.version + 1:
            raise TrustRootError(f"trust root version {current.version + 1} is missing from the chain")
        envelope = by_version[version]
        doc, payload = _parse(envelope)
        what = f"trust root version {version}"
        if doc.get("previous") != f"sha256:{current.fingerprint}":
            raise TrustRootError(f"{what} does not name version {current.version} as its predecessor")
        if doc.get("origin") != current.doc.get("origin"):
            raise TrustRootError(f"{what} changes the log origin")
        _require_signatures(envelope, payload, doc, current.doc, what + " (keys of the root it replaces)")
        _require_signatures(envelope, payload, doc, doc, what + " (its own keys)")
        current = Root(doc, hashlib.sha256(payload).hexdigest(), envelope)
        steps.append(
            f"trust root version {version} ({current.fingerprint[:16]}) signed by version {version - 1}"
        )
    return current, steps


def same_content(a: dict, b: dict) -> bool:
    """Whether two root documents say the same (ignoring version, predecessor and issue time)."""

    def strip(doc: dict) -> dict:
        return {k: v for k, v in doc.items() if k not in ("version", "previous", "issued_at")}

    return strip(a) == strip(b)
