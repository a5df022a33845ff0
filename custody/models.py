"""Custody models. No logic in save() or signals: state changes live in services.py (one exception:
User.save() and SealedOnCreate.save() seal rows with an HMAC, and User.save() logs a new password as
account.password_changed, the entry its seal binds: see there)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import operator
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models, transaction
from django_otp.plugins.otp_totp.models import TOTPDevice

from .projection import log_subject


class Role(models.TextChoices):
    INVESTIGATOR = "investigator", "Investigator"
    AUDITOR = "auditor", "Auditor (read-only)"
    ADMIN = "admin", "Administrator"


class User(AbstractUser):
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.INVESTIGATOR)
    # HMAC, under the server's SECRET_KEY, of the account's id and the password hash the server
    # itself set (credential_mac): a hash written into the database by anyone else lets nobody in.
    credential_mac = models.BinaryField(null=True, blank=True, editable=False)
    # HMAC, under SECRET_KEY, of what the account may do (grants_mac: its name, role, active and
    # admin flags), made only where the server writes them from a log entry (the projection) or
    # makes the row: a role or flag written into the database by anyone else locks the account.
    grants_mac = models.BinaryField(null=True, blank=True, editable=False)
    # Whether the account has a second factor in force: projected from the log's
    # account.second_factor_enrolled / _removed entries (custody/projection.py), under the grants'
    # seal. Devices deleted in the database (or not rebuilt: they are not in the log) do not make
    # the password alone enough again.
    second_factor = models.BooleanField(default=False, editable=False)
    # The log index of the signed entry that last wrote the grants (user.*, account.second_factor_*)
    # and of the last account.password_changed entry, each under its seal: a row and seal of an
    # earlier moment, written back, are refused at use because the log holds a later entry about
    # the account (``SealKind.current``).
    grants_log_index = models.BigIntegerField(null=True, blank=True, editable=False)
    credential_log_index = models.BigIntegerField(null=True, blank=True, editable=False)

    def set_password(self, raw_password):
        super().set_password(raw_password)
        self._credential_set_here = True

    def set_unusable_password(self):
        super().set_unusable_password()
        self._credential_set_here = True
        self._credential_changed = True

    def save(self, *args, **kwargs):
        # The one exception to "no logic in save()": an integrity seal, not a state change. It is
        # made for a new account and renewed only after set_password() on this instance (a
        # change of password, Django's re-hash on login), never for a hash as it came from the
        # database, so no save of a user whose hash was replaced there blesses it.
        if self.pk is None:
            super().save(*args, **kwargs)  # the seals cover the id, which the insert gives
            self.credential_mac = credential_mac(self, settings.SECRET_KEY)
            self.grants_mac = grants_mac(self, settings.SECRET_KEY)
            super().save(update_fields=["credential_mac", "grants_mac"], using=kwargs.get("using"))
        elif getattr(self, "_credential_set_here", False):
            # A new password (set_password, set_unusable_password) is a signed log entry,
            # account.password_changed, whose index the seal binds: the hash and seal of before,
            # written back, are refused at use (a later entry about the password exists). Django's
            # re-hash on login (its setter clears _password before saving) keeps the password and
            # its entry: the seal is renewed with the same index.
            from . import log

            using = kwargs.get("using") or "default"
            changed = self._password is not None or getattr(self, "_credential_changed", False)
            with transaction.atomic(using=using):
                if changed:
                    entry = log.append(
                        "account.password_changed",
                        details={"user": {"id": self.pk, "username": self.username}},
                    )
                    self.credential_log_index = entry.index
                self.credential_mac = credential_mac(self, settings.SECRET_KEY)
                fields = kwargs.get("update_fields")
                if fields is not None and "password" in fields:
                    kwargs["update_fields"] = {*fields, "credential_mac", "credential_log_index"}
                super().save(*args, **kwargs)
        else:
            super().save(*args, **kwargs)
        self._credential_set_here = False
        self._credential_changed = False

    def credential_intact(self) -> bool:
        """Whether the password hash is the one the server set for this account (its HMAC)."""
        return CREDENTIAL_SEAL.intact(self)

    def grants_intact(self) -> bool:
        """Whether name, role, active and admin flags are the ones the server wrote (their HMAC)."""
        return GRANTS_SEAL.intact(self)

    def grants_current(self) -> bool:
        """``grants_intact``, and no signed log entry about the grants is later than the one the seal
        binds (so they are not an earlier state written back): one indexed query."""
        return GRANTS_SEAL.current(self)

    @property
    def is_custody_admin(self) -> bool:
        return self.is_active and (self.role == Role.ADMIN or self.is_superuser)

    @property
    def can_write(self) -> bool:
        return self.is_active and self.role in (Role.INVESTIGATOR, Role.ADMIN)


def _bound(row, field: str) -> list[str]:
    """The log index a seal binds, as sealed: nothing for a row bound to no entry (so such a seal is
    the one made before seals bound an index; any model version: the migrations use it)."""
    index = getattr(row, field, None)
    return [] if index is None else [str(index)]


def credential_mac(user, secret) -> bytes:
    """The HMAC of a user's id, password hash and the index of the account.password_changed entry
    that set it (none for the one set when the account was made)."""
    values = [str(user.pk), user.password, *_bound(user, "credential_log_index")]
    return seal("custody.user.credential", values, secret)


GRANT_FIELDS = ("username", "role", "is_active", "is_staff", "is_superuser", "second_factor")


def grants_mac(user, secret) -> bytes:
    """The seal of what an account may do: its id, name, role, active and admin flags, second factor,
    and the index of the log entry that last wrote them."""
    values = [str(user.pk)] + [str(getattr(user, f)) for f in GRANT_FIELDS] + _bound(user, "grants_log_index")
    return seal("custody.user.grants", values, secret)


def seal(purpose: str, values: list[str], secret) -> bytes:
    """An HMAC-SHA256 under ``secret`` (salted with ``purpose``) of a list of strings."""
    from django.utils.crypto import salted_hmac

    message = json.dumps(values, ensure_ascii=False).encode("utf-8")
    return salted_hmac(purpose, message, secret=secret, algorithm="sha256").digest()


def sealed_by_this_server(mac, seal_under) -> bool:
    """Whether ``mac`` is ``seal_under(secret)`` for SECRET_KEY or one of SECRET_KEY_FALLBACKS."""
    import hmac

    expected = bytes(mac or b"")
    return any(
        hmac.compare_digest(expected, seal_under(secret))
        for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    )


class SealedOnCreate:
    """A row sealed once, when the server makes it (the projection of a log entry, rebuild_state):
    ``mac`` is ``self._seal(SECRET_KEY)``, an HMAC of what the row grants. A row written into the
    database by anyone else, or changed there, fails ``seal_intact`` and grants nothing.

    As in User.save(): an integrity seal in save(), not a state change.
    """

    def _seal(self, secret) -> bytes:
        raise NotImplementedError

    def save(self, *args, **kwargs):
        if self._state.adding:
            self.mac = self._seal(settings.SECRET_KEY)
        super().save(*args, **kwargs)

    def seal_intact(self) -> bool:
        """Whether the server made this row (its HMAC, under SECRET_KEY or a fallback)."""
        return sealed_by_this_server(self.mac, self._seal)


class Case(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Unique among the cases one user can see, not globally: a global check
    # would tell an investigator that a case they may not see uses a
    # reference (custody/services.py, create_case).
    reference = models.CharField(max_length=100, db_index=True)
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="cases")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.reference}: {self.title}"


class Membership(SealedOnCreate, models.Model):
    case = models.ForeignKey(Case, on_delete=models.PROTECT)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    added_at = models.DateTimeField()
    # HMAC, under SECRET_KEY, of the case, the member and the index of the case.member_added entry
    # (membership_mac), made when the server makes the row from that entry: a membership written
    # into the database opens nothing, nor does one put back after a later case.member_removed.
    mac = models.BinaryField(null=True, blank=True, editable=False)
    log_index = models.BigIntegerField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["case", "user"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.case}"

    def _seal(self, secret) -> bytes:
        return membership_mac(self, secret)


def membership_mac(membership, secret) -> bytes:
    """The seal of a case membership: the case, the member and the index of the entry that made it."""
    values = [str(membership.case_id), str(membership.user_id), *_bound(membership, "log_index")]
    return seal("custody.case.membership", values, secret)


class ApiToken(SealedOnCreate, models.Model):
    """A REST token. Only its SHA-256 is stored; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="tokens")
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=12, help_text="first characters, to tell tokens apart")
    label = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # HMAC, under the server's SECRET_KEY, of the digest and the account the token was issued to
    # (token_mac): a row written into the database by anyone else, or moved to another account,
    # authenticates nobody. With it the index of the log entry that last wrote the row
    # (token.issued, token.revoked): a live row and seal put back after its revocation are refused.
    mac = models.BinaryField(null=True, blank=True, editable=False)
    log_index = models.BigIntegerField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    def _seal(self, secret) -> bytes:
        return token_mac(self, secret)


def token_mac(token, secret) -> bytes:
    """The seal of an API token row: its digest, the account it authenticates, and when it was
    revoked ("" while live), so a revoked token written back to live in the database is refused."""
    revoked = "" if token.revoked_at is None else token.revoked_at.astimezone(dt.UTC).isoformat()
    values = [token.digest, str(token.user_id), revoked, *_bound(token, "log_index")]
    return seal("custody.api.token", values, secret)


class Blob(models.Model):
    """Stored bytes, named by their SHA-256; shared by evidence with the same content."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    sha1 = models.CharField(max_length=40)
    md5 = models.CharField(max_length=32)
    size = models.BigIntegerField()
    stored_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"sha256:{self.sha256}"


class Evidence(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    case = models.ForeignKey(Case, on_delete=models.PROTECT, related_name="evidence")
    # PROTECT: a blob can never be deleted while evidence refers to it.
    blob = models.ForeignKey(Blob, on_delete=models.PROTECT, related_name="evidence")
    original_name = models.CharField(max_length=255, help_text="sanitised; metadata only")
    description = models.TextField(blank=True)
    source = models.CharField(max_length=500, blank=True)
    media_type = models.CharField(max_length=255)
    submitted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    custodian = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    received_at = models.DateTimeField()
    log_index = models.BigIntegerField(help_text="index of the intake entry in the custody log")
    receipt = models.JSONField(help_text="DSSE envelope signed with the intake key")

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "evidence"

    def __str__(self) -> str:
        return f"{self.original_name} ({self.blob_id[:12]})"

    @property
    def sha256(self) -> str:
        return self.blob_id


class SigningKey(models.Model):
    """Public half and metadata of a signing key; the private half is a file."""

    class Purpose(models.TextChoices):
        LOG = "log", "custody log checkpoints"
        INTAKE = "intake", "intake receipts"
        RESULTS = "results", "analysis results"

    keyid = models.CharField(max_length=64, primary_key=True, help_text="hex SHA-256 of DER SPKI")
    purpose = models.CharField(max_length=16, choices=Purpose.choices)
    name = models.CharField(max_length=200)
    public_key_pem = models.TextField()
    valid_from = models.DateTimeField()
    valid_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["purpose", "valid_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["purpose"],
                condition=models.Q(valid_until__isnull=True),
                name="one_active_key_per_purpose",
            )
        ]

    def __str__(self) -> str:
        return f"{self.purpose} {self.keyid[:16]}"


class TrustRoot(models.Model):
    """One version of the trust root (custody/trustroot.py): a signed DSSE envelope, also in the log."""

    version = models.PositiveIntegerField(primary_key=True)
    envelope = models.JSONField()
    log_index = models.BigIntegerField(help_text="index of the trust_root.published entry")

    class Meta:
        ordering = ["version"]

    def __str__(self) -> str:
        return f"trust root version {self.version}"


class LogHead(models.Model):
    """The single row that serialises appends to the custody log.

    Appenders lock it (SELECT ... FOR UPDATE) to take the next index. It also
    holds the frontier of the Merkle tree (roots of the perfect subtrees on the
    right edge), so an append needs no other read.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    size = models.BigIntegerField(default=0)
    frontier = models.BinaryField(default=b"", help_text="concatenated 32-byte hashes")
    root = models.BinaryField(default=b"")

    def __str__(self) -> str:
        return f"log head at size {self.size}"


class LogQueue(models.Model):
    """An entry waiting for its index (PostgreSQL only; custody/log.py).

    Written in the action's transaction, so the action and its entry commit or
    vanish together; the sequencer gives it its index, time and ``prev`` link,
    signs it, writes it to the log and deletes this row in one transaction.
    ``body`` is the canonical JSON of the entry without those fields. The
    database refuses UPDATE, and DELETE of a row no log entry names
    (custody/dbguard.py).
    """

    id = models.BigAutoField(primary_key=True)
    body = models.BinaryField()
    action = models.CharField(max_length=64)
    actor_id = models.BigIntegerField(null=True)
    case_id = models.UUIDField(null=True)
    evidence_id = models.UUIDField(null=True)
    # HMAC (SECRET_KEY) of the row's content: the sequencer signs only rows the app wrote.
    mac = models.BinaryField()
    queued_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"queued {self.action} #{self.pk}"


class LogEntry(models.Model):
    """One leaf of the custody log. ``leaf`` is the exact canonical JSON that was hashed.

    The other columns are copies of fields of the leaf, for queries only; the
    leaf bytes are the record.
    """

    index = models.BigIntegerField(primary_key=True)
    leaf = models.BinaryField()
    leaf_hash = models.BinaryField()
    time = models.DateTimeField()
    action = models.CharField(max_length=64)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    case = models.ForeignKey(
        Case, null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="log_entries"
    )
    evidence = models.ForeignKey(
        Evidence, null=True, on_delete=models.DO_NOTHING, db_constraint=False, related_name="log_entries"
    )
    # Ed25519 signature by the log key active when the entry was written, over
    # signing.entry_message(leaf_hash); empty only before the first log key exists.
    signature = models.BinaryField(default=b"", db_default=b"")
    # The LogQueue row this entry was sequenced from (PostgreSQL; null for an
    # entry appended directly). Not part of the leaf: the appender finds its
    # entry's index by it, and the queue's guard lets a queued row be deleted
    # only once an entry names it.
    queue_id = models.BigIntegerField(null=True, db_index=True)
    # The sealed row the entry writes (projection.subject_of, spelt by projection.log_subject:
    # "token:<digest>", "user:<id>", "password:<id>", "membership:<case>:<user>"), null for the others.
    # A copy of the leaf for queries, like action: a sealed row is refused at use while a later entry
    # about it exists.
    subject = models.CharField(max_length=120, null=True, blank=True)

    class Meta:
        ordering = ["index"]
        verbose_name_plural = "log entries"
        indexes = [
            # The append finds the previous entry about an item (its hash chain) with this.
            models.Index(fields=["evidence", "index"], name="logentry_item_chain"),
            # A sealed row's use asks whether a later entry about it exists (models.fresh).
            models.Index(fields=["subject", "index"], name="logentry_subject"),
        ]

    def __str__(self) -> str:
        return f"#{self.index} {self.action}"

    @property
    def decoded(self) -> dict:
        """The entry as the leaf records it (the leaf bytes are the record)."""
        import json

        return json.loads(bytes(self.leaf))


class TreeNode(models.Model):
    """Hash of a perfect, aligned subtree of the log: leaves [index*2**level, (index+1)*2**level).

    Level 0 lives in LogEntry.leaf_hash; these rows make proofs O(log n) reads.
    """

    level = models.PositiveSmallIntegerField()
    index = models.BigIntegerField()
    hash = models.BinaryField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["level", "index"], name="unique_tree_node")]

    def __str__(self) -> str:
        return f"node {self.level}/{self.index}"


class Checkpoint(models.Model):
    """A signed tree head (C2SP tlog-checkpoint in a signed note)."""

    size = models.BigIntegerField(primary_key=True)
    root = models.BinaryField()
    note = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["size"]

    def __str__(self) -> str:
        return f"checkpoint at size {self.size}"


class Timestamp(models.Model):
    """An RFC 3161 time-stamp token from one TSA over one checkpoint (custody/timestamps.py).

    The token is stamped over the checkpoint's signed text (the note body, up
    to the blank line), so it proves that a tree of this size and root existed
    at ``gen_time`` on the TSA's clock. The token is the evidence; ``gen_time``
    is a copy of the time inside it, for queries only.
    """

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="timestamps")
    tsa_url = models.CharField(max_length=500)
    token = models.BinaryField(help_text="DER TimeStampToken (CMS SignedData over TSTInfo)")
    gen_time = models.DateTimeField(help_text="genTime in the token")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["checkpoint", "gen_time"]
        constraints = [
            # One token per TSA per checkpoint: a retry or a second worker adds nothing.
            models.UniqueConstraint(fields=["checkpoint", "tsa_url"], name="one_timestamp_per_tsa")
        ]

    def __str__(self) -> str:
        return f"time-stamp of checkpoint {self.checkpoint_id} by {self.tsa_url}"


class Transfer(models.Model):
    """A custody handover: released by the custodian, then accepted or refused by the receiver."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        ACCEPTED = "accepted", "accepted"
        REFUSED = "refused", "refused"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    evidence = models.ForeignKey(Evidence, on_delete=models.PROTECT, related_name="transfers")
    from_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    to_user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    purpose = models.CharField(max_length=500)
    location = models.CharField(max_length=500)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    released_at = models.DateTimeField()
    release_log_index = models.BigIntegerField()
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_log_index = models.BigIntegerField(null=True, blank=True)
    decision_note = models.CharField(max_length=1000, blank=True)

    class Meta:
        ordering = ["released_at"]
        constraints = [
            # At most one open handover per item: custody is never in two hands.
            models.UniqueConstraint(
                fields=["evidence"], condition=models.Q(status="pending"), name="one_pending_transfer"
            )
        ]

    def __str__(self) -> str:
        return f"{self.evidence_id}: {self.from_user} -> {self.to_user} ({self.status})"


class ResumableUpload(models.Model):
    """An evidence upload in progress over the tus 1.0 protocol (custody/tus.py).

    The bytes go to a file under FILE_UPLOAD_TEMP_DIR; ``offset`` counts the
    bytes received and kept. When the last byte arrives the file becomes
    evidence through the same intake service as a multipart upload, and
    ``evidence`` points at it. Not evidence yet, so not in the custody log.

    ``staged`` lists, with an upload staging store (CUSTODY_UPLOAD_STAGING),
    the objects that hold the first ``offset`` bytes for the other web nodes:
    ``{"start", "end", "name", "sha256"}`` each, written before the offset
    that counts them.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    length = models.BigIntegerField()
    offset = models.BigIntegerField(default=0)
    filename = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    source = models.CharField(max_length=500, blank=True)
    declared_sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    evidence = models.ForeignKey(Evidence, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    staged = models.JSONField(default=list, blank=True)
    # HMAC, under the server's SECRET_KEY, of what the upload becomes when its last byte
    # arrives (upload_record_mac): the database role alone cannot change it unnoticed.
    mac = models.BinaryField(null=True, blank=True, editable=False)
    # The SHA-256 of the first ``offset`` bytes (of the whole file once ``evidence`` is set),
    # as the server hashed them when it counted them: a process that re-reads the partial file
    # checks it against this before it goes on.
    offset_sha256 = models.CharField(max_length=64, blank=True, default="")
    # The partial file's st_ctime_ns on the host that last counted bytes, once it had: a file
    # changed since (a write, whoever made it, sets its ctime, which nobody can set back) is
    # hashed again from the start, and checked, before any more bytes are added.
    file_ctime = models.BigIntegerField(null=True, blank=True)
    # HMAC, under SECRET_KEY, of the progress (upload_progress_mac): offset, offset_sha256,
    # evidence, staged and file_ctime, renewed by the server each time it counts bytes or links the
    # evidence. A row whose progress the server did not seal is refused wherever it is read.
    progress_mac = models.BinaryField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"upload {self.id} ({self.offset}/{self.length} bytes)"


UPLOAD_RECORD_FIELDS = (
    "id", "case_id", "created_by_id", "length", "filename", "description", "source", "declared_sha256",
)  # fmt: skip


def upload_record_mac(upload, secret) -> bytes:
    """The HMAC of the fields of a resumable upload that its intake entry is made of.

    Works on a model instance of any version (the migration that added it uses it too).
    """
    return seal("custody.tus.upload", [str(getattr(upload, name)) for name in UPLOAD_RECORD_FIELDS], secret)


def upload_progress_mac(upload, secret) -> bytes:
    """The HMAC of how far a resumable upload has come: the bytes counted (``offset``), the
    SHA-256 of those bytes, the evidence they became (if any), the staged pieces that hold them
    and the partial file's ctime after they were written.

    Works on a model instance of any version (the migration that added it uses it too).
    """
    staged = json.dumps(upload.staged, sort_keys=True, separators=(",", ":"))
    values = [
        str(upload.id),
        str(upload.offset),
        upload.offset_sha256,
        str(upload.evidence_id or ""),
        staged,
        "" if upload.file_ctime is None else str(upload.file_ctime),
    ]
    return seal("custody.tus.progress", values, secret)


def seal_upload_progress(upload) -> None:
    """Seal the progress the server itself has just counted (never values read back unchecked)."""
    upload.progress_mac = upload_progress_mac(upload, settings.SECRET_KEY)


def upload_progress_intact(upload) -> bool:
    """Whether the upload's progress is as the server last recorded it (its HMAC)."""
    return sealed_by_this_server(upload.progress_mac, lambda secret: upload_progress_mac(upload, secret))


class Cosignature(models.Model):
    """A witness's cosignature on a checkpoint (C2SP tlog-cosignature), checked on receipt.

    ``line`` is the signature line as the witness sent it (no newline):
    appended to the checkpoint's note it makes the witnessed checkpoint.
    """

    checkpoint = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="cosignatures")
    witness_name = models.CharField(max_length=255)
    witness_vkey = models.CharField(max_length=500, help_text="C2SP cosigner verifier key")
    line = models.TextField(help_text="signature line: — <name> base64(key id || timestamp || signature)")
    signed_at = models.DateTimeField(help_text="the timestamp inside the cosignature")
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["checkpoint", "witness_name"]
        constraints = [
            # One cosignature per witness and checkpoint: the first one received is kept.
            models.UniqueConstraint(fields=["checkpoint", "witness_vkey"], name="one_cosignature_per_witness")
        ]

    def __str__(self) -> str:
        return f"{self.witness_name} on checkpoint {self.checkpoint_id}"


class WitnessStatus(models.Model):
    """Where the log stands with one configured witness: what it last cosigned, what went wrong."""

    class State(models.TextChoices):
        NEW = "new", "not contacted yet"
        OK = "ok", "cosigned"
        REFUSED = "refused", "REFUSED the log's checkpoint"
        UNREACHABLE = "unreachable", "unreachable"

    witness_vkey = models.CharField(max_length=500, unique=True)
    witness_name = models.CharField(max_length=255)
    url = models.CharField(max_length=500)
    last_cosigned_size = models.BigIntegerField(default=0)
    state = models.CharField(max_length=16, choices=State.choices, default=State.NEW)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["witness_name"]
        verbose_name_plural = "witness statuses"

    def __str__(self) -> str:
        return f"{self.witness_name} ({self.state})"


# --- the TOTP key, encrypted --------------------------------------------------------------


class TotpKeyRefused(ValueError):
    """A TOTP key that no configured SECRET_KEY encrypted for this account (written or moved in the
    database by someone else): it gives no codes."""


def _totp_cipher(secret):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = secret.encode() if isinstance(secret, str) else bytes(secret)
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=b"custody.totp-key.v1").derive(raw)
    return AESSIV(key)


# The device's columns the key is bound to (as AES-SIV associated data): its row and account, and
# how codes are made from the key and how far from now one is taken. A key moved to another row
# (another account's, or her own new device's: an old phone's key) does not open, nor does one
# whose step, start, digits or tolerance were changed in the table (a tolerance widened so that
# guesses pass). Not drift, last_t or the throttle's columns, which django-otp changes as codes
# are checked.
TOTP_BOUND_FIELDS = ("pk", "user_id", "step", "t0", "digits", "tolerance")


def _totp_context(device) -> list[bytes]:
    return [b"custody.totp-key.v1"] + [str(getattr(device, name)).encode() for name in TOTP_BOUND_FIELDS]


def seal_totp_key(raw: bytes, device, secret=None) -> str:
    """The TOTP key as stored: AES-SIV under a key derived from SECRET_KEY, bound to the device's row
    (``TOTP_BOUND_FIELDS``; hex, so it fits django-otp's column: a 20-byte key takes 72 of its 80
    characters). ``device``: a saved row of any model version (the migration uses it too)."""
    cipher = _totp_cipher(settings.SECRET_KEY if secret is None else secret)
    return cipher.encrypt(raw, _totp_context(device)).hex()


def open_totp_key(device) -> tuple[bytes, object]:
    """(the TOTP key, the secret it was sealed under) for a device's stored key, or TotpKeyRefused."""
    from cryptography.exceptions import InvalidTag

    try:
        sealed = bytes.fromhex(device.key)
    except ValueError:
        raise TotpKeyRefused("not a stored key") from None
    for secret in [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]:
        try:
            return _totp_cipher(secret).decrypt(sealed, _totp_context(device)), secret
        except (InvalidTag, ValueError):
            continue
    raise TotpKeyRefused("the TOTP key was not stored by this server for this device")


class SealedTOTPDevice(TOTPDevice):
    """django-otp's TOTP device with its key stored encrypted under SECRET_KEY (``seal_totp_key``):
    reading the table gives no codes, and a key written there, moved from another row, or left on a
    row whose code parameters were changed gives none either (``bin_key`` raises TotpKeyRefused). django-otp itself only loads devices to tell
    whether a session is verified; every code is checked through this model (second_factor.py)."""

    class Meta:
        proxy = True

    @property
    def bin_key(self) -> bytes:
        return open_totp_key(self)[0]

    def key_intact(self) -> bool:
        try:
            open_totp_key(self)
        except TotpKeyRefused:
            return False
        return True


# --- the seals, in one place ---------------------------------------------------------------


@dataclass(frozen=True)
class SealKind:
    """One HMAC seal under SECRET_KEY on the rows of one model (verify_log, reseal_credentials and
    the projection all go through this list, so a new seal is added here once).

    ``projected``: the projection writes the sealed columns from signed log entries, so it renews
    the seal after each write, and only if the seal held before (``renewing_seal``).
    """

    model: type
    field: str
    seal_of: Callable  # (row, secret) -> bytes
    plural: str  # how reseal_credentials counts them
    label: Callable  # row -> how a report names it
    broken: str  # what verify_log says of a row whose seal does not hold
    remedy: str  # what the row's owner does when reseal_credentials cannot move it
    projected: bool
    bound: str  # the column (under the seal) that holds the index of the entry that last wrote the row
    subject: Callable  # row -> the LogEntry.subject of the entries that write it (projection.subject_of)

    def intact(self, row) -> bool:
        return sealed_by_this_server(getattr(row, self.field), lambda secret: self.seal_of(row, secret))

    def claim(self, row) -> tuple[str, int | None]:
        """(subject, bound index) of a row: what ``fresh`` asks the log about."""
        return self.subject(row), getattr(row, self.bound)

    def current(self, row) -> bool:
        """The seal holds and is current: no signed log entry about the row is later than the one
        the seal binds, or (``as_the_log_says``) the row's values are those the log's entries make.
        A row and seal saved at an earlier moment and written back hold (an HMAC of those values)
        but are not current. One indexed query (LogEntry.subject, index) when nothing is amiss."""
        return self.intact(row) and all_current((self, row))


def all_current(*rows: tuple[SealKind, object]) -> bool:
    """Whether each (kind, row), whose seal holds, is current (``SealKind.current``): one query for
    all of them, and one more per row only when the log holds a later entry about some row."""
    if fresh(*(kind.claim(row) for kind, row in rows)):
        return True
    return all(fresh(kind.claim(row)) or as_the_log_says(kind, row) for kind, row in rows)


def as_the_log_says(kind: SealKind, row, before: int | None = None, using: str | None = None) -> bool:
    """Whether a sealed row's values are those the signed log entries about it make (those before
    ``before``): for a row whose seal binds an earlier entry. Its earlier state written back is
    refused where it differs from the current one (a token live again, a membership back, an account
    active again or without its second factor); put back as the log says (after a change in the
    database that the server's own writes did not bless), it is harmless and opens again. A password
    hash is no custody fact: the log cannot vouch for it, so an earlier one is always refused."""
    from . import projection

    if kind is CREDENTIAL_SEAL:
        return False
    table = next(t for t in projection.TABLES.values() if t.model == kind.model._meta.label)
    entries = LogEntry.objects.using(using or "default").filter(subject=kind.subject(row))
    if before is not None:
        entries = entries.filter(index__lt=before)
    state = None
    for leaf in entries.order_by("index").values_list("leaf", flat=True):
        entry = json.loads(bytes(leaf))
        try:
            made = projection.changes(entry, settings.CUSTODY_LOG_ORIGIN)
        except projection.ProjectionError:
            return False
        for change in made:
            if change.table != table.name:
                continue
            if change.op == "delete":
                state = None
            elif change.op == "update":
                state = {**(state or {}), **change.fields}
            else:
                state = dict(change.fields)
    if state is None:
        return False
    return all(
        projection.normalize(table, column, getattr(row, column)) == value for column, value in state.items()
    )


def fresh(*claims: tuple[str, int | None], before: int | None = None, using: str | None = None) -> bool:
    """Whether the log holds no entry about any ``subject`` later than its ``bound`` (and, with
    ``before``, earlier than that index: the entry being applied). One query, on the
    (subject, index) index, however many claims."""
    if not claims:
        return True
    where = functools.reduce(
        operator.or_,
        (models.Q(subject=subject, index__gt=-1 if bound is None else bound) for subject, bound in claims),
    )
    later = LogEntry.objects.using(using or "default").filter(where)
    if before is not None:
        later = later.filter(index__lt=before)
    return not later.exists()


def _user_label(user) -> str:
    return f"user {user.pk} ({user.username})"


GRANTS_SEAL = SealKind(
    User,
    "grants_mac",
    grants_mac,
    "account grant(s)",
    _user_label,
    "name, role or flags not written by the server (their HMAC does not match): the account is refused "
    "until they are put back",
    "verify_log names what the log says they are",
    projected=True,
    bound="grants_log_index",
    subject=lambda user: log_subject("user", user.pk),
)

CREDENTIAL_SEAL = SealKind(
    User,
    "credential_mac",
    credential_mac,
    "account(s)",
    _user_label,
    "password hash not set by the server (its HMAC does not match): nobody can log in with it",
    "set a new password with manage.py changepassword",
    projected=False,
    bound="credential_log_index",
    subject=lambda user: log_subject("password", user.pk),
)

MEMBERSHIP_SEAL = SealKind(
    Membership,
    "mac",
    membership_mac,
    "case membership(s)",
    lambda m: f"membership of user {m.user_id} in case {m.case_id}",
    "row not made by the server (its HMAC does not match): it opens nothing",
    "verify_log says whether the log accounts for it; if so, remove and add it again",
    projected=True,
    bound="log_index",
    subject=lambda m: log_subject("membership", m.case_id, m.user_id),
)

TOKEN_SEAL = SealKind(
    ApiToken,
    "mac",
    token_mac,
    "API token(s)",
    lambda token: f"API token {token.prefix}… (user {token.user_id})",
    "row not made by the server for this account, or its revocation changed (its HMAC does not "
    "match): it authenticates nobody",
    "one issued under a key no longer configured: its owner gets a new token",
    projected=True,
    bound="log_index",
    subject=lambda token: log_subject("token", token.digest),
)

SEALS: tuple[SealKind, ...] = (CREDENTIAL_SEAL, GRANTS_SEAL, MEMBERSHIP_SEAL, TOKEN_SEAL)


@contextlib.contextmanager
def renewing_seal(kind: SealKind, rows, index: int, **where):
    """Around a write of the server's own to one row of ``kind.model`` (``rows``: its queryset),
    recorded by the log entry at ``index``: after the write, bind the row to that index and seal it
    again under SECRET_KEY, but only if its seal held before the write and was the newest (no entry
    about the row between the one it binds and this one), or the row is new. A seal broken in the
    database stays broken, and so does an earlier row and seal written back: no write of the
    server's blesses a value written there by someone else."""
    before = rows.filter(**where).first()
    renew = before is None or (
        kind.intact(before)
        and (
            fresh(kind.claim(before), before=index, using=rows.db)
            or as_the_log_says(kind, before, before=index, using=rows.db)
        )
    )
    yield
    if renew:
        row = rows.filter(**where).first()
        if row is not None:  # deleted by the write
            setattr(row, kind.bound, index)
            rows.filter(pk=row.pk).update(
                **{kind.bound: index, kind.field: kind.seal_of(row, settings.SECRET_KEY)}
            )
