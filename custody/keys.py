"""Signing keys: private halves encrypted in files under CUSTODY_KEY_DIR, public halves in the DB.

Keys are never in the database or the repository. One active key per
purpose (log checkpoints, intake receipts, analysis results); retired keys
keep their rows, with validity windows, so old signatures stay checkable.
"""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

from . import signing
from .models import SigningKey
from .storage import fsync_dir, make_dirs_durable

_cache: dict[str, Ed25519PrivateKey] = {}
_cache_lock = threading.Lock()


class KeyUnavailable(Exception):
    pass


def passphrase() -> str:
    if settings.CUSTODY_KEY_PASSPHRASE:
        return settings.CUSTODY_KEY_PASSPHRASE
    path = Path(settings.CUSTODY_KEY_PASSPHRASE_FALLBACK_FILE)
    if not path.exists():
        make_dirs_durable(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            # Keys are encrypted under it: lost in a crash, they could never be opened again.
            f.flush()
            os.fsync(f.fileno())
        fsync_dir(path.parent)
    return path.read_text().strip()


def key_path(keyid: str) -> Path:
    return Path(settings.CUSTODY_KEY_DIR) / f"{keyid}.key"


def generate_key_file() -> tuple[str, Ed25519PrivateKey]:
    """Create a new key, write it encrypted (mode 0600) and return (keyid, key)."""
    key = Ed25519PrivateKey.generate()
    keyid = signing.dsse_keyid(key.public_key())
    path = key_path(keyid)
    make_dirs_durable(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signing.encrypt_private_key(key, passphrase(), settings.CUSTODY_KEY_SCRYPT_N))
        f.flush()
        os.fsync(f.fileno())
    # The database will name this key as active: its file's entry must be on
    # disk too, or a crash leaves signatures nobody can make.
    fsync_dir(path.parent)
    with _cache_lock:
        _cache[keyid] = key
    return keyid, key


def key_name(purpose: str) -> str:
    """Name used in signed notes: the log origin for the log key (C2SP convention)."""
    origin = settings.CUSTODY_LOG_ORIGIN
    return origin if purpose == SigningKey.Purpose.LOG else f"{origin}/{purpose}"


def load_private_key(keyid: str) -> Ed25519PrivateKey:
    with _cache_lock:
        if keyid in _cache:
            return _cache[keyid]
    path = key_path(keyid)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        raise KeyUnavailable(
            f"private key {keyid[:16]} is not in {path.parent}; restore the key directory"
        ) from None
    key = signing.decrypt_private_key(blob, passphrase())
    if signing.dsse_keyid(key.public_key()) != keyid:
        raise KeyUnavailable(f"key file {path.name} holds a different key")
    with _cache_lock:
        _cache[keyid] = key
    return key


def active_key_row(purpose: str) -> SigningKey:
    row = SigningKey.objects.filter(purpose=purpose, valid_until__isnull=True).first()
    if row is None:
        raise KeyUnavailable(
            f"no active {purpose} key: run `python manage.py ensure_keys` (the release step does)"
        )
    return row


def active_private_key(purpose: str) -> tuple[SigningKey, Ed25519PrivateKey]:
    row = active_key_row(purpose)
    return row, load_private_key(row.keyid)


def public_keys(purpose: str | None = None) -> dict[str, Ed25519PublicKey]:
    rows = SigningKey.objects.all()
    if purpose:
        rows = rows.filter(purpose=purpose)
    return {row.keyid: signing.load_public_key_pem(row.public_key_pem) for row in rows}


def log_verifier_key() -> str:
    row = active_key_row(SigningKey.Purpose.LOG)
    return signing.note_verifier_key(row.name, signing.load_public_key_pem(row.public_key_pem))
