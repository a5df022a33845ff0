"""Witness cosignatures on checkpoints: C2SP tlog-cosignature, Ed25519 (cosignature/v1).

Pure module (only ``cryptography`` and the project's pure ``signing``), so
the witness (``python -m custody.witness``) and the offline tools run
without Django.

- A cosignature is a signed-note signature line on a checkpoint:
  ``— <name> base64(key id || timestamp || signature)``, timestamp a
  big-endian u64 of POSIX seconds.
- Key id = SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4]: the
  algorithm byte is 0x04, not the 0x01 of ordinary note keys, so a
  cosigner key can never be mistaken for a log key.
- Signed message: "cosignature/v1\\n" "time <secs>\\n" then the whole
  checkpoint body (origin, size, root, any extension lines).
- Verifier key (vkey): ``<name>+<hex key id>+base64(0x04 || public key)``.
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from . import signing

COSIGNATURE_ALG_ED25519 = 0x04
SIGNATURE_DASH = "\u2014 "
MAX_TIMESTAMP = 2**63 - 1
HASH_SIZE = 32


# --- keys -------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or c == "+" for c in name):
        raise ValueError("a cosigner name cannot be empty or contain spaces or '+'")


def key_id(name: str, public_key: Ed25519PublicKey) -> bytes:
    """The 4-byte cosigner key id (algorithm byte 0x04)."""
    raw = signing.raw_public_key(public_key)
    return hashlib.sha256(name.encode() + b"\n" + bytes([COSIGNATURE_ALG_ED25519]) + raw).digest()[:4]


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """C2SP vkey for an Ed25519 cosigner: ``name+<hex key id>+base64(0x04 || key)``."""
    _check_name(name)
    material = bytes([COSIGNATURE_ALG_ED25519]) + signing.raw_public_key(public_key)
    return f"{name}+{key_id(name, public_key).hex()}+{signing.b64(material)}"


@dataclass(frozen=True)
class Cosigner:
    """A cosigner's public identity, from its verifier key."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey
    vkey: str


def parse_verifier_key(vkey: str) -> Cosigner:
    """Parse and check a cosigner vkey; ValueError names what is wrong."""
    vkey = vkey.strip()
    try:
        # Names cannot contain "+", base64 can: split from the left.
        name, hex_id, material_b64 = vkey.split("+", 2)
        material = signing.b64decode(material_b64)
        kid = bytes.fromhex(hex_id)
    except ValueError:
        raise ValueError(f"malformed cosigner verifier key {vkey[:80]!r}") from None
    _check_name(name)
    if len(material) != 33 or len(kid) != 4:
        raise ValueError("cosigner verifier key is not an Ed25519 key")
    if material[0] != COSIGNATURE_ALG_ED25519:
        raise ValueError(
            f"verifier key has signature type 0x{material[0]:02x}; an Ed25519 cosigner key has 0x04"
        )
    public_key = Ed25519PublicKey.from_public_bytes(material[1:])
    if key_id(name, public_key) != kid:
        raise ValueError("verifier key id does not match its name and key")
    return Cosigner(name=name, key_id=kid, public_key=public_key, vkey=vkey)


def generate_key(name: str) -> tuple[Ed25519PrivateKey, str]:
    """A new witness key and its verifier key."""
    _check_name(name)
    key = Ed25519PrivateKey.generate()
    return key, verifier_key(name, key.public_key())


# --- checkpoints ------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    body: str  # the exact note text, final newline included


def split_note(note: str) -> tuple[str, list[str]]:
    """Split a signed note into its text (with final newline) and its signature lines.

    Structure only, no signature is checked. ValueError if it is not a signed note.
    """
    text, sep, block = note.partition("\n\n")
    if not sep or not text or not block.endswith("\n"):
        raise ValueError("not a signed note: no blank line before the signatures, or no final newline")
    lines = block[:-1].split("\n")
    for line in lines:
        if not line.startswith(SIGNATURE_DASH) or len(line[2:].split(" ")) != 2:
            raise ValueError("malformed signature line in note")
    return text + "\n", lines


def parse_checkpoint_body(body: str) -> Checkpoint:
    """C2SP tlog-checkpoint text: origin, decimal size (no leading zeros), base64 root, extensions."""
    if not body.endswith("\n"):
        raise ValueError("checkpoint text must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3 or not lines[0] or any(not line for line in lines):
        raise ValueError("checkpoint needs an origin, a size and a root hash line")
    origin, size_text, root_text = lines[:3]
    if not size_text.isascii() or not size_text.isdigit() or (size_text != "0" and size_text[0] == "0"):
        raise ValueError("checkpoint size must be a decimal number without leading zeros")
    size = int(size_text)
    if size > MAX_TIMESTAMP:
        raise ValueError("checkpoint size out of range")
    try:
        root = signing.b64decode(root_text)
    except ValueError:
        raise ValueError("checkpoint root hash is not base64") from None
    if len(root) != HASH_SIZE:
        raise ValueError("checkpoint root hash is not 32 bytes")
    return Checkpoint(origin=origin, size=size, root=root, body=body)


# --- cosignatures -----------------------------------------------------------


def signed_message(checkpoint_body: str, timestamp: int) -> bytes:
    """The exact bytes an Ed25519 cosignature/v1 signs (check them with openssl pkeyutl -rawin)."""
    if not checkpoint_body.endswith("\n"):
        raise ValueError("checkpoint text must end with a newline")
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("cosignature timestamp out of range")
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_body}".encode()


def sign(checkpoint_body: str, name: str, key: Ed25519PrivateKey, timestamp: int | None = None) -> str:
    """A cosignature line (no trailing newline) on a checkpoint's text."""
    _check_name(name)
    if timestamp is None:
        timestamp = int(time.time())
    signature = key.sign(signed_message(checkpoint_body, timestamp))
    blob = key_id(name, key.public_key()) + struct.pack(">Q", timestamp) + signature
    return f"{SIGNATURE_DASH}{name} {signing.b64(blob)}"


@dataclass(frozen=True)
class ParsedLine:
    name: str
    key_id: bytes
    timestamp: int
    signature: bytes


def parse_line(line: str) -> ParsedLine:
    """Split a cosignature line into name, key id, timestamp and signature (nothing verified)."""
    line = line.rstrip("\n")
    if not line.startswith(SIGNATURE_DASH):
        raise ValueError("a signature line starts with an em dash and a space")
    try:
        name, blob_b64 = line[2:].split(" ")
        blob = signing.b64decode(blob_b64)
    except ValueError:
        raise ValueError("malformed signature line") from None
    if len(blob) != 4 + 8 + 64:
        raise ValueError("not an Ed25519 cosignature (wrong length)")
    (timestamp,) = struct.unpack(">Q", blob[4:12])
    if timestamp > MAX_TIMESTAMP:
        raise ValueError("cosignature timestamp out of range")
    return ParsedLine(name=name, key_id=blob[:4], timestamp=timestamp, signature=blob[12:])


def verify(checkpoint_body: str, line: str, vkey: str | Cosigner) -> int:
    """Verify one cosignature line by the cosigner ``vkey``; return its timestamp.

    ValueError if the line is not by this cosigner or does not verify.
    """
    cosigner = vkey if isinstance(vkey, Cosigner) else parse_verifier_key(vkey)
    parsed = parse_line(line)
    if parsed.name != cosigner.name or parsed.key_id != cosigner.key_id:
        raise ValueError(f"signature line is not by cosigner {cosigner.name}")
    try:
        cosigner.public_key.verify(parsed.signature, signed_message(checkpoint_body, parsed.timestamp))
    except InvalidSignature:
        raise ValueError(f"cosignature by {cosigner.name} does not verify") from None
    return parsed.timestamp


def cosignatures_by(note: str, cosigners: list[Cosigner]) -> dict[str, tuple[str, int]]:
    """The verifying cosignatures in a signed note: {vkey: (line, timestamp)}.

    Lines by unknown keys are ignored (as signed-note says); a line that
    claims a known name and key id but does not verify is an error.
    """
    body, lines = split_note(note)
    wanted = {(c.name, c.key_id): c for c in cosigners}
    found: dict[str, tuple[str, int]] = {}
    for line in lines:
        try:
            parsed = parse_line(line)
        except ValueError:
            continue  # another algorithm's signature, e.g. the log's own
        cosigner = wanted.get((parsed.name, parsed.key_id))
        if cosigner is not None and cosigner.vkey not in found:
            found[cosigner.vkey] = (line, verify(body, line, cosigner))
    return found


def openssl_material(checkpoint_body: str, line: str) -> tuple[bytes, bytes]:
    """(message, 64-byte signature) of a cosignature line, for ``openssl pkeyutl -verify -rawin``."""
    parsed = parse_line(line)
    return signed_message(checkpoint_body, parsed.timestamp), parsed.signature


def add_signature_lines(note: str, lines: list[str]) -> str:
    """The note with extra signature lines appended (each line without its newline)."""
    if not note.endswith("\n"):
        raise ValueError("a signed note ends with a newline")
    return note + "".join(line.rstrip("\n") + "\n" for line in lines)


def public_key_pem(vkey: str) -> str:
    """PEM public key of a cosigner vkey (for openssl)."""
    return signing.public_key_pem(parse_verifier_key(vkey).public_key)
